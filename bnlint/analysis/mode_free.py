"""Does a module run the same in training and eval mode? Only when we can see
everything it is built from: torch's own layers without dropout or norm
statistics (recurrent layers built without ``dropout``), and classes of the
file that build nothing else and never read ``self.training``. Anything we
cannot see is not mode-free.
"""

from __future__ import annotations

import re

import libcst as cst

from bnlint.analysis.calls import argument, is_zero_literal
from bnlint.analysis.effects import without_moves
from bnlint.analysis.frameworks import torch_layer
from bnlint.analysis.model import ClassInfo, FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.values import assigned_values, bound_before
from bnlint.analysis.walk import descendants

# Layers and functions whose result depends on the mode: dropout in all its
# forms, norm statistics, recurrent and attention layers (their dropout), RReLU.
_MODE_DEPENDENT = re.compile(
    r"dropout|batch_?norm|instance_?norm|rnn|lstm|gru|transformer|multihead|rrelu|training",
    re.IGNORECASE,
)
_MODULE_BASE = "torch.nn.Module"
_MAX_DEPTH = 4
# Recurrent layers drop between their layers only when built with ``dropout``
# (the sixth positional argument), which defaults to zero.
_RECURRENT = frozenset({"RNN", "LSTM", "GRU"})
_RECURRENT_DROPOUT_POSITION = 5


def is_mode_free(
    model: SemanticModel,
    key: str,
    scope: FunctionInfo | None,
    depth: int = 0,
    at: cst.CSTNode | None = None,
) -> bool:
    """``model = Net().to(device)`` with a class ``Net`` of this file that only
    builds ``nn.Linear`` and ``nn.ReLU``: training mode changes nothing. A
    parameter is mode-free when every call of its function in the file passes
    such a model. ``at``: where the model runs; a name bound more than once
    holds there what was bound last before it."""
    if depth > _MAX_DEPTH:
        return False
    # ``model = model.to(device)`` moves the module the name already holds.
    values = [v for v in assigned_values(model, key, scope) if dotted_name(without_moves(v)) != key]
    if at is not None and len(values) > 1:
        bound = [a.value for a in bound_before(model, key, scope, at) if a.value in values]
        values = bound[-1:] or values
    if values:
        return all(_built_mode_free(model, v, scope, depth) for v in values)
    passed = _passed_for(model, key, scope)
    return bool(passed) and all(
        _built_mode_free(model, value, caller, depth) for value, caller in passed
    )


def _passed_for(
    model: SemanticModel, parameter: str, function: FunctionInfo | None
) -> list[tuple[cst.BaseExpression, FunctionInfo | None]]:
    """What the file's calls of ``function`` pass for ``parameter``, with the
    function each call is in; empty if one of them leaves it to its default."""
    if function is None or parameter not in function.parameter_names():
        return []
    passed = []
    for site in model.calls_of(function):
        arg = function.argument_for(site.node, parameter)
        if arg is None:
            return []
        passed.append((arg.value, site.function))
    return passed


def _built_mode_free(
    model: SemanticModel, value: cst.BaseExpression, scope: FunctionInfo | None, depth: int
) -> bool:
    value = without_moves(value)
    if isinstance(value, cst.Name | cst.Attribute):  # a layer in a variable: ``act = nn.ReLU()``
        name = dotted_name(value)
        return name is not None and is_mode_free(model, name, scope, depth + 1)
    if not isinstance(value, cst.Call) or depth > _MAX_DEPTH:
        return False
    qualified = model.qualname(value.func) or ""
    if qualified == "torch.nn.Sequential":
        return all(_built_mode_free(model, arg.value, scope, depth + 1) for arg in value.args)
    if qualified:
        return _torch_layer_is_mode_free(qualified, value)
    local = model.class_named(value.func)
    return local is not None and class_is_mode_free(model, local, depth + 1)


def _torch_layer_is_mode_free(qualified: str, call: cst.Call) -> bool:
    """``torch.nn.Linear``, ``torch.nn.parameter.Parameter``, ``nn.LSTM(32, 64)``;
    not containers, which hold what we cannot see, nor ``Dropout``,
    ``BatchNorm2d``, ``LSTM(..., dropout=0.2)``."""
    layer = torch_layer(qualified)
    if layer in _RECURRENT:
        rate = argument(call, "dropout", _RECURRENT_DROPOUT_POSITION)
        return rate is None or is_zero_literal(rate.value)
    return layer is not None and not _depends(layer)


def class_is_mode_free(model: SemanticModel, cls: ClassInfo, depth: int = 0) -> bool:
    """A class of the file derived from ``nn.Module`` (or such a class) that
    builds and calls nothing mode-dependent and never reads its mode."""
    if depth > _MAX_DEPTH:
        return False
    for base in cls.bases:
        local = model.class_named(base)
        if model.qualname(base) != _MODULE_BASE and not (
            local is not None and class_is_mode_free(model, local, depth + 1)
        ):
            return False
    # Whole names only (``self.lstm``, not its ``lstm``), and not the called
    # ones, which ``_call_is_mode_free`` judges. A call or an attribute comes
    # before its parts in the walk, so they are skipped before they are seen.
    # (Exact types: isinstance goes through ABCMeta, and this walks whole classes.)
    skipped: set[cst.CSTNode] = set()
    for node in descendants(cls.node.body):
        if type(node) is cst.Call:
            skipped.add(node.func)
            if type(node.func) is cst.Name and node.func.value == "super":
                skipped.update(arg.value for arg in node.args)  # ``super(RNN, self)``
            elif not _call_is_mode_free(model, cls, node, depth):
                return False
            continue
        if type(node) is cst.Attribute:
            skipped.add(node.attr)
        elif type(node) is not cst.Name:
            continue
        if node not in skipped and (
            _names_mode_dependent(dotted_name(node) or "") or _switches_mode(node)
        ):
            return False
    return True


def _call_is_mode_free(model: SemanticModel, cls: ClassInfo, call: cst.Call, depth: int) -> bool:
    """A layer this class builds: one of torch's that is mode-free, or a mode-free
    class of the file. A method of the class, or a sub-module it builds itself
    (``self.lstm(x)``), is judged where it is written; other calls are
    arithmetic on tensors, unless their names say otherwise (``F.dropout``)."""
    name = dotted_name(call.func) or ""
    if name.startswith("self."):
        return _runs_own_code(model, cls, name)
    if not name.rsplit(".", 1)[-1][:1].isupper():
        return not _depends(name)
    local = model.class_named(call.func)
    if local is not None:
        return class_is_mode_free(model, local, depth + 1)
    qualified = model.qualname(call.func) or ""
    if qualified.startswith("unittest.mock."):
        return True  # a test double's return value (``MagicMock()``) has no mode
    return qualified.startswith("torch.") and (
        not qualified.startswith("torch.nn.") or _torch_layer_is_mode_free(qualified, call)
    )


def _runs_own_code(model: SemanticModel, cls: ClassInfo, name: str) -> bool:
    """``self.lstm(x)`` where the class sets ``self.lstm`` only to what it builds
    (a call, judged as one), or a method, its own or inherited
    (``self.register_buffer``). Not a module handed in (``self.inner_model =
    model``), which we cannot see."""
    if name.count(".") != 1:
        return not _depends(name)  # ``self.cache.sum()``: arithmetic on what it holds
    return all(isinstance(a.value, cst.Call) for a in model.attribute_assignments(cls, name))


def _names_mode_dependent(name: str) -> bool:
    """``F.dropout``, ``nn.BatchNorm2d``, ``self.training``. Not the attribute a
    sub-module is kept in (``self.lstm``): the call that builds it decides."""
    if name.startswith("self."):
        return name.rsplit(".", 1)[-1] == "training"
    return _depends(name)


def _depends(name: str) -> bool:
    return _MODE_DEPENDENT.search(name.rsplit(".", 1)[-1]) is not None


def _switches_mode(node: cst.Name | cst.Attribute) -> bool:
    return isinstance(node, cst.Attribute) and node.attr.value in ("train", "eval")
