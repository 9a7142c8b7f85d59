"""Parsed trees a process keeps between the rounds of one run.

The project rounds (``engine.lint_files``) re-lint files with what the other
files said of themselves. Such a file's text has not changed and its parse is
most of its cost, so the process that linted it keeps its tree for the next
round, up to a budget, with what the semantic model's walk collected from it
(the model without the project's part, ``SemanticModel.for_project``). A tree
is only reused for the very text it came from.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bnlint.analysis.model import SemanticModel

# About 35 bytes per character of source for a tree and its model (26 for the
# tree alone; tracemalloc on ultralytics' trainer.py): some 50 MB per process.
MAX_KEPT_CHARACTERS = 1_500_000


class KeptTrees:
    def __init__(self, budget: int = MAX_KEPT_CHARACTERS) -> None:
        self.budget = budget
        self._trees: dict[str, tuple[str, SemanticModel]] = {}
        self._characters = 0

    def get(self, path: str, source: str) -> SemanticModel | None:
        """The model kept for ``path``, if its tree was parsed from ``source``."""
        kept = self._trees.get(path)
        return kept[1] if kept is not None and kept[0] == source else None

    def keep(self, path: str, source: str, model: SemanticModel, likely: bool) -> None:
        """Keep ``model`` for ``path`` while the budget allows. A tree ``likely``
        to be needed may use all of it, others a third, so that the many files
        rarely re-linted cannot crowd out the few that usually are."""
        budget = self.budget if likely else self.budget // 3
        if path not in self._trees and self._characters + len(source) <= budget:
            self._trees[path] = (source, model.for_project(None))
            self._characters += len(source)

    def __len__(self) -> int:
        return len(self._trees)

    def clear(self) -> None:
        self._trees.clear()
        self._characters = 0
