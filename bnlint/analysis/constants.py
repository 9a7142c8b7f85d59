"""Integer settings as the script will see them: literals, module constants,
argparse defaults (``args.batch_size``) and config dict literals
(``config["train"]["batch_size"]``, ``dict(batch_size=2)``).

``None`` means the value is not known statically; a function parameter is never
known, because every caller may pass another value.
"""

from __future__ import annotations

import libcst as cst

from bnlint.analysis.calls import keyword_arg, positional_args
from bnlint.analysis.model import FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.values import assigned_values

_MAX_DEPTH = 4


def resolve_int(
    model: SemanticModel, expr: cst.BaseExpression, scope: FunctionInfo | None, depth: int = 0
) -> int | None:
    if isinstance(expr, cst.Integer):
        return int(expr.value.replace("_", ""), 0)
    if depth > _MAX_DEPTH:
        return None
    if isinstance(expr, cst.Subscript):
        entry = _dict_entry(model, expr, scope, depth)
        return resolve_int(model, entry, scope, depth + 1) if entry is not None else None
    name = dotted_name(expr)
    if name is None or _is_parameter(expr, scope):
        return None
    values = _values_with_scopes(model, name, scope)
    if values:
        resolved = {resolve_int(model, value, where, depth + 1) for value, where in values}
        return resolved.pop() if len(resolved) == 1 else None
    if isinstance(expr, cst.Attribute):
        return argparse_default(model, expr.attr.value, depth)
    return None


def _is_parameter(expr: cst.BaseExpression, scope: FunctionInfo | None) -> bool:
    """``batch_size`` inside ``def make_loader(batch_size)``: the caller decides.
    (``args.batch_size`` of a parameter ``args`` is still looked up: the parsed
    arguments are passed around whole.)"""
    return (
        isinstance(expr, cst.Name) and scope is not None and expr.value in scope.parameter_names()
    )


def _values_with_scopes(
    model: SemanticModel, name: str, scope: FunctionInfo | None
) -> list[tuple[cst.BaseExpression, FunctionInfo | None]]:
    """The values assigned to ``name``, each with the function it was assigned in
    (``self.batch_size = batch_size`` in ``__init__`` is read in ``__init__``)."""
    values = assigned_values(model, name, scope)
    where = {id(a.value): a.function for a in model.assignments if a.value is not None}
    return [(value, where.get(id(value), scope)) for value in values]


def argparse_default(model: SemanticModel, dest: str, depth: int = 0) -> int | None:
    """The integer default of the ``add_argument`` calls whose destination is
    ``dest``, when they all agree."""
    defaults = set()
    for site in model.calls:
        func = site.node.func
        if not (isinstance(func, cst.Attribute) and func.attr.value == "add_argument"):
            continue
        if dest not in _argparse_destinations(site.node):
            continue
        default = keyword_arg(site.node, "default")
        if default is None:
            return None
        defaults.add(resolve_int(model, default.value, site.function, depth + 1))
    return defaults.pop() if len(defaults) == 1 else None


def _argparse_destinations(call: cst.Call) -> set[str]:
    explicit = keyword_arg(call, "dest")
    if explicit is not None:
        return {_string(explicit.value) or ""}
    names = [_string(arg.value) for arg in positional_args(call)]
    return {n.lstrip("-").replace("-", "_") for n in names if n}


def _dict_entry(
    model: SemanticModel, expr: cst.Subscript, scope: FunctionInfo | None, depth: int
) -> cst.BaseExpression | None:
    """The one expression stored under ``config["batch_size"]``, or None."""
    key = _subscript_key(expr)
    if key is None:
        return None
    entries = dict_entries(model, expr.value, key, scope, depth + 1)
    return entries[0] if entries is not None and len(entries) == 1 else None


def dict_entries(
    model: SemanticModel,
    container: cst.BaseExpression,
    key: str,
    scope: FunctionInfo | None,
    depth: int = 0,
) -> list[cst.BaseExpression] | None:
    """The expressions stored under ``key`` in the dict ``container``: a dict
    literal, a ``dict(...)`` call, a variable assigned one (plus its item
    assignments ``config["batch_size"] = 2``), or an entry of another one
    (``config["train"]``). ``[]``: a known dict without the key; None: unknown."""
    if depth > _MAX_DEPTH:
        return None
    if isinstance(container, cst.Subscript):
        inner = _dict_entry(model, container, scope, depth + 1)
        return dict_entries(model, inner, key, scope, depth + 1) if inner is not None else None
    if isinstance(container, cst.Dict) or _is_dict_call(container):
        return _literal_entries(container, key)
    name = dotted_name(container)
    if name is None or _is_parameter(container, scope) or _dict_is_updated(model, name):
        return None
    values = assigned_values(model, name, scope)
    if not values:
        return None
    entries = _item_assignments(model, name, key)
    for value in values:
        found = dict_entries(model, value, key, scope, depth + 1)
        if found is None:
            return None
        entries.extend(found)
    return entries


def _is_dict_call(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Call) and dotted_name(node.func) == "dict"


def _literal_entries(container: cst.BaseExpression, key: str) -> list[cst.BaseExpression] | None:
    """``{"batch_size": 2}`` or ``dict(batch_size=2)`` -> ``[2]``; None when a
    ``**base`` unpacking may hold the key."""
    if isinstance(container, cst.Dict):
        for element in container.elements:
            if isinstance(element, cst.DictElement) and _string(element.key) == key:
                return [element.value]
        unpacks = any(isinstance(e, cst.StarredDictElement) for e in container.elements)
    else:
        assert isinstance(container, cst.Call)
        arg = keyword_arg(container, key)
        if arg is not None:
            return [arg.value]
        unpacks = any(arg.keyword is None for arg in container.args)  # dict(base, **more)
    return None if unpacks else []


def _subscript_key(expr: cst.Subscript) -> str | None:
    if len(expr.slice) != 1 or not isinstance(expr.slice[0].slice, cst.Index):
        return None
    return _string(expr.slice[0].slice.value)


def _item_assignments(model: SemanticModel, name: str, key: str) -> list[cst.BaseExpression]:
    """Values of ``config["batch_size"] = ...`` statements."""
    return [
        a.value
        for a in model.assignments
        if isinstance(a.target, cst.Subscript)
        and a.value is not None
        and dotted_name(a.target.value) == name
        and _subscript_key(a.target) == key
    ]


def _dict_is_updated(model: SemanticModel, name: str) -> bool:
    """``name.update(...)`` or ``name.setdefault(...)``: entries we cannot read."""
    return any(
        isinstance(site.node.func, cst.Attribute)
        and site.node.func.attr.value in {"update", "setdefault"}
        and dotted_name(site.node.func.value) == name
        for site in model.calls
    )


def _string(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None
