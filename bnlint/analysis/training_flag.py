"""Functional layers that take a ``training`` flag, and how a call sets it."""

from __future__ import annotations

import enum

import libcst as cst

from bnlint.analysis.calls import argument, has_star_args, is_true_literal


class FlagState(enum.Enum):
    MISSING = "missing"  # not passed: the function's default applies
    LITERAL_TRUE = "literal_true"  # passed as the literal ``True``
    SET = "set"  # passed as anything else (a flag, ``self.training``, ``False``)
    UNKNOWN = "unknown"  # ``*args``/``**kwargs`` may bind it


def training_flag(call: cst.Call, name: str, position: int) -> tuple[FlagState, cst.Arg | None]:
    """How ``call`` binds the parameter ``name`` found at ``position``."""
    arg = argument(call, name, position)
    if arg is None:
        return (FlagState.UNKNOWN if has_star_args(call) else FlagState.MISSING), None
    if is_true_literal(arg.value):
        return FlagState.LITERAL_TRUE, arg
    return FlagState.SET, arg
