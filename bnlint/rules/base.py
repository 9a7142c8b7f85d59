"""What a rule is: a code, a name, documentation and a query over the semantic model.

Rules report ``Finding``s anchored on tree nodes; the engine turns them into
``Diagnostic``s with positions, so rules never deal with line numbers.
"""

from __future__ import annotations

import enum
import inspect
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import ClassVar

import libcst as cst

from bnlint.analysis.model import SemanticModel
from bnlint.diagnostic import Severity


class Anchor(enum.Enum):
    REPLACE = "replace"  # replace the node's text
    BEFORE = "before"  # insert just before the node
    AFTER = "after"  # insert just after the node
    LINE_BEFORE = "line_before"  # insert a whole line, indented like the node's line


@dataclass(frozen=True)
class NodeEdit:
    node: cst.CSTNode
    anchor: Anchor
    text: str


@dataclass(frozen=True)
class FixPlan:
    edits: tuple[NodeEdit, ...]
    safe: bool
    description: str


@dataclass(frozen=True)
class Finding:
    node: cst.CSTNode
    message: str
    fix: FixPlan | None = None
    severity: Severity | None = None  # None: the rule's own severity
    # Further lines (1-based) where a noqa comment also suppresses this finding.
    noqa_lines: tuple[int, ...] = field(default=())


class Documented:
    """A code bnlint reports, as ``bnlint rules`` and ``bnlint explain`` show it.

    The class docstring is the code's documentation, in the sections of ruff's
    rule pages: What it does, Why is this bad?, Known problems, Fix safety.
    """

    code: ClassVar[str]
    name: ClassVar[str]
    summary: ClassVar[str]
    severity: ClassVar[Severity] = Severity.ERROR
    fixable: ClassVar[bool] = False

    @classmethod
    def documentation(cls) -> str:
        return inspect.cleandoc(cls.__doc__ or "")


class Rule(Documented):
    """Base class of the rules. Subclasses set the class attributes, document
    the rule in their docstring and implement ``check``."""

    # Substrings of which at least one must appear in a file for the rule to
    # possibly fire: files matching no selected rule are never parsed.
    triggers: ClassVar[tuple[str, ...]] = ()

    def check(self, model: SemanticModel) -> Iterable[Finding]:
        raise NotImplementedError
