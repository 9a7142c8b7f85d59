"""The shapes every part of bnlint exchanges: diagnostics, fixes and text edits.

Lines are 1-based and columns are 1-based character offsets, as users see them
in editors and in flake8/ruff output. A fix is a list of edits on exact source
ranges; the fixer applies them and checks the result.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field, replace
from typing import Any


class Severity(str, enum.Enum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Edit:
    """Replace the text from (line, column) up to (end_line, end_column) with ``content``."""

    line: int
    column: int
    end_line: int
    end_column: int
    content: str

    def to_json(self) -> dict[str, Any]:
        return {
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "content": self.content,
        }


@dataclass(frozen=True)
class Fix:
    edits: tuple[Edit, ...]
    safe: bool
    description: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "safe": self.safe,
            "description": self.description,
            "edits": [edit.to_json() for edit in self.edits],
        }


@dataclass(frozen=True)
class Diagnostic:
    path: str
    line: int
    column: int
    end_line: int
    end_column: int
    code: str
    name: str
    message: str
    severity: Severity = Severity.ERROR
    fix: Fix | None = None
    # Extra location information a front end may add (a notebook cell, a module path).
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def sort_key(self) -> tuple[str, int, int, int, str]:
        # A notebook's lines count from the top of each cell: the cell comes first.
        return (self.path, self.extra.get("cell", 0), self.line, self.column, self.code)

    def with_path(self, path: str) -> Diagnostic:
        return replace(self, path=path)

    def to_json(self) -> dict[str, Any]:
        data = {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "end_line": self.end_line,
            "end_column": self.end_column,
            "code": self.code,
            "name": self.name,
            "message": self.message,
            "severity": self.severity.value,
            "fix": self.fix.to_json() if self.fix else None,
        }
        data.update(self.extra)
        return data
