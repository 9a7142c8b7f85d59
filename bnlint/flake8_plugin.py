"""flake8 entry point: ``flake8 --select BNL`` runs the same core as ``bnlint``.

flake8 wants 0-based columns from plugins and adds 1 itself; it applies
``# noqa`` and reports unparsable files (E999/E902) on its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from bnlint import __version__
from bnlint.config import Config
from bnlint.engine import lint_source, package_of
from bnlint.rules import INPUT_CODES


class Flake8Plugin:
    name = "bnlint"
    version = __version__

    # flake8 classifies plugins by their parameters: ``tree`` makes this an AST
    # plugin (flake8 has already parsed the file with ``ast``; bnlint uses LibCST).
    def __init__(self, tree: object, filename: str, lines: list[str]) -> None:
        self.filename = filename
        self.lines = lines

    def run(self) -> Iterator[tuple[int, int, str, type]]:
        path = Path(self.filename)
        package = package_of(path) if path.is_file() else None
        source = "".join(self.lines)
        for diagnostic in lint_source(source, self.filename, Config(), package, noqa=False):
            if diagnostic.code in INPUT_CODES:
                continue
            yield (
                diagnostic.line,
                diagnostic.column - 1,
                f"{diagnostic.code} {diagnostic.message}",
                type(self),
            )
