"""Integer settings as the script will see them: literals, module constants,
argparse defaults (``args.batch_size``) and config dict literals."""

from __future__ import annotations

import libcst as cst

from bnlint.analysis.calls import keyword_arg, positional_args
from bnlint.analysis.model import FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.values import assigned_values


def resolve_int(
    model: SemanticModel, expr: cst.BaseExpression, scope: FunctionInfo | None, depth: int = 0
) -> int | None:
    if isinstance(expr, cst.Integer):
        return int(expr.value.replace("_", ""), 0)
    if depth > 4:
        return None
    if isinstance(expr, cst.Subscript):
        return _dict_entry(model, expr, scope, depth)
    name = dotted_name(expr)
    if name is None:
        return None
    values = assigned_values(model, name, scope)
    if values:
        resolved = {resolve_int(model, value, scope, depth + 1) for value in values}
        return resolved.pop() if len(resolved) == 1 else None
    if isinstance(expr, cst.Attribute):
        return argparse_default(model, expr.attr.value)
    return None


def argparse_default(model: SemanticModel, dest: str) -> int | None:
    """The integer default of the ``add_argument`` whose destination is ``dest``."""
    for site in model.calls:
        func = site.node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "add_argument"):
            continue
        names = [_string(arg.value) for arg in positional_args(site.node)]
        dests = {n.lstrip("-").replace("-", "_") for n in names if n}
        explicit = keyword_arg(site.node, "dest")
        if explicit is not None:
            dests = {_string(explicit.value) or ""}
        default = keyword_arg(site.node, "default")
        if dest in dests and default is not None and isinstance(default.value, cst.Integer):
            return int(default.value.value.replace("_", ""), 0)
    return None


def _dict_entry(
    model: SemanticModel, expr: cst.Subscript, scope: FunctionInfo | None, depth: int
) -> int | None:
    """``config["batch_size"]`` where ``config = {"batch_size": 2, ...}``."""
    if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
        return None
    key = _string(expr.slice[0].slice.value)
    name = dotted_name(expr.value)
    if key is None or name is None:
        return None
    for value in assigned_values(model, name, scope):
        if isinstance(value, cst.Dict):
            for element in value.elements:
                if isinstance(element, cst.DictElement) and _string(element.key) == key:
                    return resolve_int(model, element.value, scope, depth + 1)
    return None


def _string(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None
