"""Reading arguments of a call the way Python binds them."""

from __future__ import annotations

import libcst as cst

from bnlint.analysis.walk import descendants


def keyword_arg(call: cst.Call, name: str) -> cst.Arg | None:
    for arg in call.args:
        if arg.keyword is not None and arg.keyword.value == name:
            return arg
    return None


def positional_args(call: cst.Call) -> list[cst.Arg]:
    return [arg for arg in call.args if arg.keyword is None and not arg.star]


def has_star_args(call: cst.Call) -> bool:
    """``*args`` or ``**kwargs``: any parameter may be bound by them."""
    return any(arg.star for arg in call.args)


def argument(call: cst.Call, name: str, position: int) -> cst.Arg | None:
    """The argument bound to parameter ``name`` at ``position``, if given explicitly."""
    found = keyword_arg(call, name)
    if found is not None:
        return found
    positional = positional_args(call)
    return positional[position] if position < len(positional) else None


def is_true_literal(node: cst.BaseExpression) -> bool:
    return isinstance(node, cst.Name) and node.value == "True"


def is_zero_literal(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.Integer | cst.Float):
        return float(node.value.replace("_", "")) == 0.0
    return False


def mentions_name(node: cst.CSTNode, name: str) -> bool:
    """Does ``name`` appear as an identifier or attribute anywhere in ``node``?"""
    return any(
        isinstance(current, cst.Name) and current.value == name for current in descendants(node)
    )
