"""The promises every lint and every fix keep, checked on one file's bytes.

Shared by the property tests, the fixture test and ``bench/fix_sweep.py``:

- linting raises nothing, and every diagnostic points inside the file;
- every fixed text parses (when the original did);
- fixing the fixed text again changes nothing, byte for byte;
- after fixing, no finding with an applicable fix remains;
- each fix round changes the text only inside the edit ranges it was offered,
  and the bytes written are the original encoding of the fixed text, so the
  code outside the edits is unchanged byte for byte.

A failed promise raises ``Broken`` with the reason; a bug in bnlint raises
whatever it raises.
"""

from __future__ import annotations

import ast
import itertools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path

import libcst as cst

from bnlint.analysis.project import ProjectIndex
from bnlint.config import Config
from bnlint.diagnostic import Diagnostic
from bnlint.engine import lint_source
from bnlint.fixer import FixOutcome, fix_text
from bnlint.notebook import fix_notebook, is_notebook, lint_notebook
from bnlint.source import SourceFile, UnreadableSource, decode_source, line_starts

DEFAULT_CONFIG = Config(root=Path("/"))


class Broken(AssertionError):
    """A promise of the linter or the fixer does not hold for this input."""


@dataclass(frozen=True)
class Checked:
    findings: int  # diagnostics of the original text (a BNL902 counts one)
    fixes: int  # problems the fixer fixed
    written: bytes  # what `--fix` must leave on disk


@dataclass(frozen=True)
class Context:
    """What the CLI lints a file with, besides its text."""

    config: Config = DEFAULT_CONFIG
    package: str | None = None
    project: ProjectIndex | None = None

    def lint(self, text: str, path: str) -> list[Diagnostic]:
        return lint_source(text, path, self.config, self.package, project=self.project)


def check_file(
    data: bytes, path: str = "generated.py", unsafe: bool = False, context: Context = Context()
) -> Checked:
    """Check every promise on the file ``path`` holding ``data``."""
    try:
        source = decode_source(data)
    except UnreadableSource:
        return Checked(1, 0, data)  # one BNL902 line, nothing to fix
    if is_notebook(path):
        return _check_notebook(data, source, path, unsafe, context)
    return _check_python(data, source, path, unsafe, context)


def _check_python(
    data: bytes, source: SourceFile, path: str, unsafe: bool, context: Context
) -> Checked:
    rounds: list[tuple[str, list[Diagnostic]]] = []

    def lint(text: str) -> list[Diagnostic]:
        diagnostics = context.lint(text, path)
        _check_inside(text, diagnostics)
        rounds.append((text, diagnostics))
        return diagnostics

    outcome = fix_text(source.text, lint, unsafe)
    findings = len(rounds[0][1])
    if outcome.text == source.text:
        return Checked(findings, 0, data)
    _check_parses(source.text, outcome.text)
    for (before, diagnostics), (after, _) in itertools.pairwise(rounds):
        _check_only_edited(before, after, _applicable(diagnostics, unsafe))
    _check_nothing_left(outcome, unsafe)
    again = fix_text(outcome.text, lambda text: context.lint(text, path), unsafe)
    if again.text != outcome.text:
        raise Broken(f"fixing twice changes the code again:\n{_excerpt(outcome.text, again.text)}")
    if source.encode(source.text) != data:
        return Checked(findings, outcome.applied, data)  # write_fixed refuses: nothing changes
    return Checked(findings, outcome.applied, source.encode(outcome.text))


def _check_notebook(
    data: bytes, source: SourceFile, path: str, unsafe: bool, context: Context
) -> Checked:
    """Notebooks: lint and fix raise nothing, the result is still JSON, a second
    fix changes nothing and nothing applicable is left."""
    config, package = context.config, context.package
    findings = len(lint_notebook(source.text, path, config, package))
    outcome = fix_notebook(source.text, path, config, package, unsafe)
    if outcome.text == source.text:
        return Checked(findings, 0, data)
    try:
        json.loads(outcome.text)
    except ValueError as error:
        raise Broken(f"the fixed notebook is not JSON: {error}") from error
    _check_nothing_left(outcome, unsafe)
    if fix_notebook(outcome.text, path, config, package, unsafe).text != outcome.text:
        raise Broken("fixing the notebook twice changes it again")
    return Checked(findings, outcome.applied, source.encode(outcome.text))


def _applicable(diagnostics: list[Diagnostic], unsafe: bool) -> list[Diagnostic]:
    return [d for d in diagnostics if d.fix is not None and (d.fix.safe or unsafe)]


def _check_inside(text: str, diagnostics: list[Diagnostic]) -> None:
    starts = line_starts(text)
    for d in diagnostics:
        if not (1 <= d.line <= d.end_line <= len(starts) and d.column >= 1 and d.end_column >= 1):
            raise Broken(f"diagnostic outside the file ({len(starts)} lines): {d}")
        for edit in d.fix.edits if d.fix else ():
            _offsets(text, starts, edit.line, edit.column, edit.end_line, edit.end_column)


def _offsets(
    text: str, starts: tuple[int, ...], line: int, column: int, end_line: int, end_column: int
) -> tuple[int, int]:
    """An edit's character range; each end must lie on its own line, in order."""
    if not (1 <= line <= end_line <= len(starts)):
        raise Broken(f"edit lines {line}-{end_line} outside the file ({len(starts)} lines)")
    start, end = _offset(text, starts, line, column), _offset(text, starts, end_line, end_column)
    if start > end:
        raise Broken(f"edit range {line}:{column}-{end_line}:{end_column} ends before it starts")
    return start, end


def _offset(text: str, starts: tuple[int, ...], line: int, column: int) -> int:
    line_end = starts[line] if line < len(starts) else len(text)
    offset = starts[line - 1] + column - 1
    if not starts[line - 1] <= offset <= line_end:
        raise Broken(f"edit position {line}:{column} is not on line {line}")
    return offset


def _check_parses(original: str, fixed: str) -> None:
    """The fixed text parses wherever the original did: with Python's own parser
    when it accepted the original, and always with LibCST (the fixer's check)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            ast.parse(original)
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            python_parses = False
        else:
            python_parses = True
        try:
            if python_parses:
                ast.parse(fixed)
            cst.parse_module(fixed)
        except (SyntaxError, cst.ParserSyntaxError) as error:
            raise Broken(f"the fixed code does not parse: {error}") from error


def _check_only_edited(before: str, after: str, offered: list[Diagnostic]) -> None:
    """``after`` keeps every character of ``before`` outside the ranges of the
    edits offered, in order: the parts between the ranges appear in ``after``
    with only edit text between them (a wildcard match, where the first
    leftmost match of each part is the right one)."""
    starts = line_starts(before)
    spans = sorted(
        _offsets(before, starts, e.line, e.column, e.end_line, e.end_column)
        for d in offered
        for e in d.fix.edits  # type: ignore[union-attr]
    )
    merged: list[list[int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    bounds = [0, *(offset for span in merged for offset in span), len(before)]
    parts = [before[bounds[i] : bounds[i + 1]] for i in range(0, len(bounds), 2)]
    if len(parts) == 1:
        if after != before:
            raise Broken(f"the text changed without a fix:\n{_excerpt(before, after)}")
        return
    position = len(parts[0])
    ok = after.startswith(parts[0])
    for part in parts[1:-1]:
        found = after.find(part, position) if ok else -1
        ok = found >= 0
        position = found + len(part)
    if not (ok and len(after) - len(parts[-1]) >= position and after.endswith(parts[-1])):
        raise Broken(f"a fix changed code outside its edit ranges:\n{_excerpt(before, after)}")


def _check_nothing_left(outcome: FixOutcome, unsafe: bool) -> None:
    if outcome.rejected:
        raise Broken(f"a rule offered fixes that break the code: {outcome.rejected}")
    left = _applicable(outcome.remaining, unsafe)
    if left:
        raise Broken(f"fixable findings remain after fixing: {left}")


def _excerpt(before: str, after: str) -> str:
    """The first differing line, before and after, for a readable failure."""
    for number, (old, new) in enumerate(
        zip(before.splitlines(), after.splitlines(), strict=False), 1
    ):
        if old != new:
            return f"line {number}:\n- {old!r}\n+ {new!r}"
    return f"(lengths {len(before)} and {len(after)})"
