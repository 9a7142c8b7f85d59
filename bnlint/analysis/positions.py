"""Source positions, computed only for files that have something to report,
and source order, which costs less.

LibCST's PositionProvider behind a MetadataWrapper deep-copies the tree and
costs several times the parse. Most files produce no diagnostic, so positions
are computed on first request, with one code-generation pass over the tree
bnlint already holds.
"""

from __future__ import annotations

import libcst as cst
from libcst.metadata import CodeRange, PositionProvider

from bnlint.analysis.walk import children


class Positions:
    def __init__(self, module: cst.Module) -> None:
        self._module = module
        self._ranges: dict[cst.CSTNode, CodeRange] | None = None

    def __getitem__(self, node: cst.CSTNode) -> CodeRange:
        """The range of ``node``: 1-based lines, 0-based columns (LibCST's convention)."""
        if self._ranges is None:
            provider = PositionProvider()
            provider._gen_impl(self._module)  # one codegen pass over the existing tree
            self._ranges = provider._computed
        return self._ranges[node]


class SourceOrder:
    """Which of two nodes comes first in the source, by numbering the nodes of a
    subtree (a function) in one walk: far cheaper than positions, which
    generate the code of the whole file."""

    def __init__(self, module: cst.Module) -> None:
        self._module = module
        # Per numbered subtree: node -> (its number, the last number below it).
        self._spans: dict[cst.CSTNode, dict[cst.CSTNode, tuple[int, int]]] = {}

    def starts_after(
        self, node: cst.CSTNode, earlier: cst.CSTNode, within: cst.CSTNode | None = None
    ) -> bool:
        """Does ``node`` start after ``earlier`` ends? Numbering ``within`` (a
        function holding both) costs less than numbering the file."""
        spans = self._spans_of(node, earlier, within)
        return spans[node][0] > spans[earlier][1]

    def contains(
        self, outer: cst.CSTNode, inner: cst.CSTNode, within: cst.CSTNode | None = None
    ) -> bool:
        """Is ``inner`` ``outer`` or below it?"""
        spans = self._spans_of(outer, inner, within)
        return spans[outer][0] <= spans[inner][0] <= spans[outer][1]

    def _spans_of(
        self, a: cst.CSTNode, b: cst.CSTNode, within: cst.CSTNode | None
    ) -> dict[cst.CSTNode, tuple[int, int]]:
        spans = self._numbered(within if within is not None else self._module)
        if a not in spans or b not in spans:
            spans = self._numbered(self._module)
        return spans

    def _numbered(self, root: cst.CSTNode) -> dict[cst.CSTNode, tuple[int, int]]:
        spans = self._spans.get(root)
        if spans is None:
            spans = self._spans[root] = _number(root)
        return spans


def _number(root: cst.CSTNode) -> dict[cst.CSTNode, tuple[int, int]]:
    first: dict[cst.CSTNode, int] = {}
    spans: dict[cst.CSTNode, tuple[int, int]] = {}
    pending: list[tuple[cst.CSTNode, bool]] = [(root, False)]
    while pending:
        node, below_done = pending.pop()
        if below_done:
            spans[node] = (first[node], len(first) - 1)
            continue
        first[node] = len(first)
        pending.append((node, True))
        pending.extend((child, False) for child in reversed(children(node)))
    return spans
