"""Source positions, computed only for files that have something to report.

LibCST's PositionProvider behind a MetadataWrapper deep-copies the tree and
costs several times the parse. Most files produce no diagnostic, so positions
are computed on first request, with one code-generation pass over the tree
bnlint already holds.
"""

from __future__ import annotations

import libcst as cst
from libcst.metadata import CodeRange, PositionProvider


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
