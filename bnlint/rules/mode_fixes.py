"""Fix builders and messages shared by the mode rules (BNL001-BNL006)."""

from __future__ import annotations

import libcst as cst

from bnlint.analysis.mode_free import is_mode_free
from bnlint.analysis.model import FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name, target_names
from bnlint.analysis.state import prefixes
from bnlint.analysis.walk import descendants
from bnlint.diagnostic import Severity
from bnlint.rules.base import Anchor, FixPlan, NodeEdit

# Text that may hold a mode-rule finding: files without any are not parsed for them.
MODE_RULE_TRIGGERS = (
    "eval",
    "val",
    "test",
    "predict",
    "infer",
    "train",
    "no_grad",
    "inference_mode",
    "grad_enabled",
    "export",
    "trace",
)
LINE_BREAKS = "\r\n"
TRAIN_MODE_HARM = "BatchNorm uses batch statistics and updates its running stats, dropout is active"


def latent_only(
    model: SemanticModel, key: str, scope: FunctionInfo | None, at: cst.CSTNode | None = None
) -> Severity | None:
    """A warning, not an error, for a model we can see runs the same in both
    modes (no dropout, no norm statistics): the wrong mode changes nothing yet,
    only once such a layer is added. ``at``: where the model runs."""
    return Severity.WARNING if is_mode_free(model, key, scope, at=at) else None


def loop_anchor(loop: cst.CSTNode) -> cst.CSTNode:
    """Where a finding about a loop points: its iterable (or ``while`` test)."""
    if isinstance(loop, cst.For):
        return loop.iter
    if isinstance(loop, cst.While):
        return loop.test
    if isinstance(loop, cst.ListComp | cst.SetComp | cst.GeneratorExp | cst.DictComp):
        return loop.for_in.iter
    return loop


def line_before(statement: cst.CSTNode, text: str, safe: bool, description: str) -> FixPlan | None:
    """Insert ``text`` as a line of its own before ``statement``, if it starts a
    line of its own: a loop, or a simple statement line."""
    if not isinstance(statement, cst.For | cst.While | cst.SimpleStatementLine | cst.With):
        return None
    return FixPlan((NodeEdit(statement, Anchor.LINE_BEFORE, text),), safe, description)


def bound_within(
    model: SemanticModel, key: str, statement: cst.CSTNode, scope: FunctionInfo | None
) -> bool:
    """Is ``key`` (or a name it hangs off) bound inside ``statement``? A line
    before it would then name another object, or nothing yet: ``for i in
    range(5): model = build()``, ``for model in models:``."""
    names = set(prefixes(key))
    within = scope.node if scope is not None else None
    bindings = [
        a.statement
        for a in model.assignments
        if a.function is scope and dotted_name(a.target) in names
    ]
    bindings += [
        site.node
        for site in model.for_loops
        if site.function is scope
        and isinstance(site.node, cst.For)
        and names.intersection(target_names(site.node.target))
    ]
    return any(model.order.contains(statement, binding, within) for binding in bindings)


def line_indent(model: SemanticModel, statement: cst.CSTNode) -> str:
    """The indentation of the line ``statement`` starts, tabs included."""
    where = model.positions[statement].start
    return model.source_lines[where.line - 1][: where.column]


def spelled(model: SemanticModel, qualified: str) -> str | None:
    """``torch.no_grad`` as this file can write it, or None if it imports no way to."""
    return model.imports.spelling(qualified)


def wrap_in_with(
    model: SemanticModel, statement: cst.CSTNode, header: str, safe: bool, description: str
) -> FixPlan | None:
    """Put ``statement`` (a loop or a simple statement line) under ``with header:``,
    re-indenting its lines. None where re-indenting would change a multi-line
    string, or the statement does not start its own line."""
    if not isinstance(statement, cst.For | cst.While | cst.SimpleStatementLine):
        return None
    if _has_multiline_string(statement):
        return None
    where = model.positions[statement]
    lines = model.source_lines[where.start.line - 1 : where.end.line]
    lines[-1] = lines[-1][: where.end.column]
    lines[0] = lines[0][where.start.column :]
    indent = line_indent(model, statement)
    unit = model.module.default_indent
    newline = model.module.default_newline
    body = [lines[0].rstrip("\r\n")]
    body += [f"{unit}{line.rstrip(LINE_BREAKS)}" if line.strip() else "" for line in lines[1:]]
    text = f"with {header}:{newline}{indent}{unit}" + newline.join(body)
    return FixPlan((NodeEdit(statement, Anchor.REPLACE, text),), safe, description)


def _has_multiline_string(node: cst.CSTNode) -> bool:
    for current in descendants(node):
        if isinstance(current, cst.SimpleString) and "\n" in current.value:
            return True
        if isinstance(current, cst.FormattedString) and any(
            "\n" in getattr(part, "value", "") for part in current.parts
        ):
            return True
    return False
