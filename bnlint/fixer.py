"""Applying fixes: non-overlapping edits, re-lint to a fixed point, verify, never break.

A round applies every fix whose edits do not overlap an earlier one, re-parses
the result, and lints again; fixes left out because of overlaps get their turn
in the next round. A fix whose result does not parse is dropped and reported.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import libcst as cst

from bnlint.diagnostic import Diagnostic, Edit, Fix
from bnlint.source import line_starts

MAX_ROUNDS = 10

Linter = Callable[[str], list[Diagnostic]]


@dataclass
class FixOutcome:
    text: str
    applied: int  # problems fixed
    remaining: list[Diagnostic]  # diagnostics of the final text
    rejected: list[str] = field(default_factory=list)  # fixes dropped because they broke the code


def fix_text(text: str, lint: Linter, unsafe: bool = False) -> FixOutcome:
    """Fix ``text`` with the diagnostics ``lint`` reports, until nothing is left to fix."""
    diagnostics = lint(text)
    outcome = FixOutcome(text, 0, diagnostics)
    rejected_keys: set[tuple[str, tuple[Edit, ...]]] = set()
    for _ in range(MAX_ROUNDS):
        fixes = [
            d
            for d in diagnostics
            if d.fix is not None
            and (d.fix.safe or unsafe)
            and (d.code, d.fix.edits) not in rejected_keys
        ]
        if not fixes:
            break
        new_text, applied = _apply_round(outcome.text, fixes, outcome, rejected_keys)
        if applied == 0:
            break
        outcome.text = new_text
        outcome.applied += applied
        diagnostics = lint(new_text)
    outcome.remaining = diagnostics
    return outcome


def _apply_round(
    text: str,
    fixes: list[Diagnostic],
    outcome: FixOutcome,
    rejected_keys: set[tuple[str, tuple[Edit, ...]]],
) -> tuple[str, int]:
    chosen = _non_overlapping(text, fixes)
    candidate = apply_fixes(text, [d.fix for d in chosen])  # type: ignore[misc]
    if _parses(candidate):
        return candidate, len(chosen)
    # Some fix breaks the code: add them one at a time and keep only the good ones.
    kept: list[Diagnostic] = []
    for diagnostic in chosen:
        attempt = apply_fixes(text, [d.fix for d in [*kept, diagnostic]])  # type: ignore[misc]
        if _parses(attempt):
            kept.append(diagnostic)
        else:
            rejected_keys.add((diagnostic.code, diagnostic.fix.edits))  # type: ignore[union-attr]
            outcome.rejected.append(
                f"{diagnostic.path}:{diagnostic.line}:{diagnostic.column}: {diagnostic.code} "
                "fix not applied: the result would not parse"
            )
    return apply_fixes(text, [d.fix for d in kept]), len(kept)  # type: ignore[misc]


def _non_overlapping(text: str, fixes: list[Diagnostic]) -> list[Diagnostic]:
    starts = line_starts(text)
    taken: list[tuple[int, int]] = []  # sorted, pairwise disjoint and not touching
    chosen = []
    for diagnostic in sorted(fixes, key=lambda d: d.sort_key):
        spans = [_span(starts, edit) for edit in diagnostic.fix.edits]  # type: ignore[union-attr]
        if not _disjoint(spans) or any(_overlaps_taken(taken, span) for span in spans):
            continue
        for span in spans:
            bisect.insort(taken, span)
        chosen.append(diagnostic)
    return chosen


def _overlaps_taken(taken: list[tuple[int, int]], span: tuple[int, int]) -> bool:
    """Whether ``span`` overlaps or touches a span of ``taken``: touching insertions
    at the same point also count, as their order would be arbitrary. Only the last
    taken span starting at or before ``span``'s end can reach it."""
    index = bisect.bisect_right(taken, (span[1], math.inf))
    return index > 0 and taken[index - 1][1] >= span[0]


def _disjoint(spans: list[tuple[int, int]]) -> bool:
    """The edits of one fix must not overlap each other, or applying them is ambiguous."""
    ordered = sorted(spans)
    return all(a[1] <= b[0] and a != b for a, b in itertools.pairwise(ordered))


def _span(starts: Sequence[int], edit: Edit) -> tuple[int, int]:
    return _offset(starts, edit.line, edit.column), _offset(starts, edit.end_line, edit.end_column)


def _offset(starts: Sequence[int], line: int, column: int) -> int:
    return starts[line - 1] + column - 1


def apply_fixes(text: str, fixes: list[Fix]) -> str:
    """Apply the edits of non-overlapping ``fixes`` to ``text``, in one pass
    (splicing edit by edit copied the whole text once per edit)."""
    starts = line_starts(text)
    spans = sorted((*_span(starts, edit), edit.content) for fix in fixes for edit in fix.edits)
    pieces = []
    position = 0
    for start, end, content in spans:
        if start < position:
            raise ValueError("overlapping edits")
        pieces += [text[position:start], content]
        position = end
    pieces.append(text[position:])
    return "".join(pieces)


def _parses(text: str) -> bool:
    try:
        cst.parse_module(text)
    except (cst.ParserSyntaxError, RecursionError, MemoryError):
        return False
    return True
