"""Functional layers that take a ``training`` flag, and how a call sets it.

Also the questions the BNL2xx rules share: may this call run in eval mode,
and does a value (an attention ``dropout_p``) depend on the training flag?
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import libcst as cst

from bnlint.analysis.calls import (
    argument,
    has_star_args,
    is_true_literal,
    is_zero_literal,
    mentions_name,
)
from bnlint.analysis.frameworks import TRAINING_ONLY_METHODS
from bnlint.analysis.model import FunctionInfo
from bnlint.analysis.walk import children

TRAINING = "training"


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


def may_run_in_eval(method: FunctionInfo, node: cst.CSTNode) -> bool:
    """Can ``node``, in the nn.Module method ``method``, run in eval mode?

    Not in static and class methods (helpers: the caller decides), in ``__init__``
    and framework training hooks, or under ``if self.training:``.
    """
    if method.self_name is None or method.name in TRAINING_ONLY_METHODS:
        return False
    return not _inside_training_branch(method.node.body, node, guarded=False)


def depends_on_training(value: cst.BaseExpression, function: FunctionInfo) -> bool:
    """Does ``value`` (used in ``function``) follow the training flag?

    True for ``p if self.training else 0.0`` and other conditionals with a zero
    branch, anything that reads a ``training`` flag, a parameter of ``function``
    (the caller decides), and a local that is zero on some path, or assigned from
    a flag or under an ``if`` on one.
    """
    if isinstance(value, cst.Name) and value.value in function.parameter_names():
        return True
    return set_by_training_flag(value, function)


def set_by_training_flag(value: cst.BaseExpression, function: FunctionInfo) -> bool:
    """Is ``value`` zero, or set, where the training flag says: ``p if self.training
    else 0.0``, anything that reads a ``training`` flag, or a name zeroed on some
    path or assigned under an ``if`` on the flag (PyTorch's multi-head attention:
    ``if not training: dropout_p = 0.0``)?"""
    if _follows_flag(value):
        return True
    return isinstance(value, cst.Name) and _assigned_with_flag(
        function.node.body, value.value, guarded=False
    )


def _follows_flag(value: cst.BaseExpression) -> bool:
    if mentions_training(value):
        return True
    return isinstance(value, cst.IfExp) and (
        is_zero_literal(value.body) or is_zero_literal(value.orelse)
    )


def _assigned_with_flag(node: cst.CSTNode, name: str, guarded: bool) -> bool:
    if isinstance(node, cst.Assign | cst.AnnAssign | cst.AugAssign):
        if name not in _assigned_names(node) or node.value is None:
            return False
        return guarded or is_zero_literal(node.value) or _follows_flag(node.value)
    if isinstance(node, cst.If | cst.While) and mentions_training(node.test):
        guarded = True
    return any(_assigned_with_flag(child, name, guarded) for child in children(node))


def _assigned_names(node: cst.Assign | cst.AnnAssign | cst.AugAssign) -> list[str]:
    targets = [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
    return [t.value for t in targets if isinstance(t, cst.Name)]


def _inside_training_branch(node: cst.CSTNode, target: cst.CSTNode, guarded: bool) -> bool:
    if node is target:
        return guarded
    if isinstance(node, cst.IndentedBlock):
        return _inside_training_statements(node.body, target, guarded)
    if isinstance(node, cst.If | cst.IfExp):
        polarity = _training_polarity(node.test)
        if polarity is not None:
            branches = ((node.test, guarded), (node.body, polarity), (node.orelse, not polarity))
            return any(
                branch is not None and _inside_training_branch(branch, target, flag)
                for branch, flag in branches
            )
    return any(_inside_training_branch(child, target, guarded) for child in children(node))


def _inside_training_statements(
    statements: Sequence[cst.BaseStatement], target: cst.CSTNode, guarded: bool
) -> bool:
    """Statements in order: after ``if not self.training: return ...`` the rest
    of the block runs only in training (and after ``if self.training: return``,
    only in eval)."""
    for statement in statements:
        if _inside_training_branch(statement, target, guarded):
            return True
        exit_polarity = _early_exit_polarity(statement)
        if exit_polarity is not None:
            guarded = not exit_polarity
    return False


def _early_exit_polarity(statement: cst.BaseStatement) -> bool | None:
    """The polarity of ``if <training test>: ... return`` without an ``else``."""
    if not isinstance(statement, cst.If) or statement.orelse is not None:
        return None
    body = statement.body.body
    last = body[-1] if body else None
    if isinstance(last, cst.SimpleStatementLine):
        last = last.body[-1]
    if not isinstance(last, cst.Return | cst.Raise):
        return None
    return _training_polarity(statement.test)


def _training_polarity(test: cst.BaseExpression) -> bool | None:
    """True if ``test`` holds only in training (``self.training``, ``self.training
    and x``); False if it fails only in training (``not self.training``,
    ``not self.training or p == 0``); else None."""
    if _is_training_flag(test):
        return True
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        inner = _training_polarity(test.expression)
        return None if inner is None else not inner
    if isinstance(test, cst.BooleanOperation):
        # ``a and b`` implies each side; ``not (a or b)`` implies ``not`` of each side.
        wanted = isinstance(test.operator, cst.And)
        sides = (_training_polarity(test.left), _training_polarity(test.right))
        if wanted in sides:
            return wanted
        if not wanted and True in sides and _tracks_no_statistics(test.left, test.right):
            return True  # ``self.training or not self.track_running_stats``
    return None


def _tracks_no_statistics(*sides: cst.BaseExpression) -> bool:
    """``not self.track_running_stats``: a BatchNorm without running statistics
    normalises with batch statistics in eval mode too (PyTorch's own rule), so a
    branch taken in training or then is as good as a training-only one."""
    return any(
        isinstance(side, cst.UnaryOperation)
        and isinstance(side.operator, cst.Not)
        and isinstance(side.expression, cst.Attribute)
        and side.expression.attr.value == "track_running_stats"
        for side in sides
    )


def _is_training_flag(node: cst.BaseExpression) -> bool:
    if isinstance(node, cst.Attribute):
        return node.attr.value == TRAINING
    return isinstance(node, cst.Name) and node.value == TRAINING


def mentions_training(node: cst.CSTNode) -> bool:
    """``self.training`` or a ``training`` flag anywhere in ``node``."""
    return mentions_name(node, TRAINING)
