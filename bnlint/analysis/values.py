"""What kind of value an expression holds: an nn.Module, a parameter, a tensor.

Flow-insensitive and deliberately conservative: a kind is reported only when an
assignment or a loop in the same scope proves it. ``None`` means unknown, and
rules stay quiet on unknown.
"""

from __future__ import annotations

import enum

import libcst as cst

from bnlint.analysis.effects import PARAMETER_ATTRIBUTES, without_moves
from bnlint.analysis.frameworks import MODEL_FACTORIES, is_torch_module_class
from bnlint.analysis.model import Assignment, FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name


class Kind(enum.Enum):
    MODULE = "module"
    PARAMETER = "parameter"
    TENSOR = "tensor"


# Methods whose results are iterated to reach parameters or sub-modules; the
# ``named_`` ones yield (name, value) pairs.
_ITERATORS = {
    "parameters": Kind.PARAMETER,
    "named_parameters": Kind.PARAMETER,
    "buffers": Kind.TENSOR,
    "named_buffers": Kind.TENSOR,
    "modules": Kind.MODULE,
    "named_modules": Kind.MODULE,
    "children": Kind.MODULE,
    "named_children": Kind.MODULE,
}


def kind_of(
    model: SemanticModel, expr: cst.BaseExpression, scope: FunctionInfo | None
) -> Kind | None:
    if isinstance(expr, cst.Attribute) and expr.attr.value in PARAMETER_ATTRIBUTES:
        return Kind.PARAMETER
    name = dotted_name(expr)
    if name is None:
        return None
    loop_kind = _loop_target_kind(model, name, scope)
    if loop_kind is not None:
        return loop_kind
    for value in assigned_values(model, name, scope):
        kind = _kind_of_value(model, value)
        if kind is not None:
            return kind
    return None


def _loop_target_kind(model: SemanticModel, name: str, scope: FunctionInfo | None) -> Kind | None:
    for site in model.for_loops:
        if site.function is not scope:
            continue
        loop: cst.For = site.node  # type: ignore[assignment]
        if not isinstance(loop.iter, cst.Call) or not isinstance(loop.iter.func, cst.Attribute):
            continue
        kind = _ITERATORS.get(loop.iter.func.attr.value)
        if kind is None:
            continue
        target = loop.target
        if isinstance(target, cst.Tuple) and loop.iter.func.attr.value.startswith("named_"):
            elements = target.elements
            target = elements[1].value if len(elements) == 2 else target
        if dotted_name(target) == name:
            return kind
    return None


def assigned_values(
    model: SemanticModel, name: str, scope: FunctionInfo | None
) -> list[cst.BaseExpression]:
    """Values assigned to ``name`` in ``scope`` (for ``self.x``, in any method of
    the class); when there are none, at module level, where scripts build things."""
    in_class = scope.cls if scope is not None and name.startswith("self.") else None
    if in_class is not None:
        assignments = model.attribute_assignments(in_class, name)
    else:
        assignments = [a for a in model.assignments_by_target.get(name, ()) if a.function is scope]
    values = [a.value for a in assignments if a.value is not None]
    if not values and scope is not None and in_class is None:
        return assigned_values(model, name, None)
    return values


def values_at(
    model: SemanticModel, use: cst.BaseExpression, scope: FunctionInfo | None
) -> list[cst.BaseExpression]:
    """What the name ``use`` may hold where it is read: ``assigned_values``, but
    for a name assigned more than once in the function, the last assignment
    written before ``use`` (``transforms`` rebuilt for the test split holds the
    new pipeline there)."""
    name = dotted_name(use) or ""
    values = assigned_values(model, name, scope)
    if scope is None or len(values) < 2:
        return values
    return [a.value for a in bound_before(model, name, scope, use)][-1:] or values


def bound_before(
    model: SemanticModel, name: str, scope: FunctionInfo | None, use: cst.CSTNode
) -> list[Assignment]:
    """The assignments of a value to ``name`` in ``scope`` (None: the module body)
    written before ``use``, in source order."""
    within = scope.node if scope is not None else None
    return [
        assignment
        for assignment in model.assignments_by_target.get(name, ())
        if assignment.function is scope
        and assignment.value is not None
        and model.order.starts_after(use, assignment.statement, within=within)
    ]


def _kind_of_value(model: SemanticModel, value: cst.BaseExpression) -> Kind | None:
    value = without_moves(value)  # ``.to(device)`` and friends keep the kind
    if not isinstance(value, cst.Call):
        return None
    qualified = model.qualname(value.func)
    if qualified is not None:
        if qualified == "torch.nn.Parameter":
            return Kind.PARAMETER
        if is_torch_module_class(qualified) or qualified.startswith(MODEL_FACTORIES):
            return Kind.MODULE
        if qualified.startswith("torch.") and qualified != "torch.load":
            return Kind.TENSOR
        return None
    local = dotted_name(value.func)
    if any(cls.name == local for cls in model.module_classes):
        return Kind.MODULE
    return None
