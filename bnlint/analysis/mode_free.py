"""Does a module run the same in training and eval mode? Only when we can see
everything it is built from: torch's own layers without dropout or norm
statistics, and classes of the file that build nothing else and never read
``self.training``. Anything we cannot see is not mode-free.
"""

from __future__ import annotations

import re

import libcst as cst

from bnlint.analysis.effects import without_moves
from bnlint.analysis.frameworks import torch_layer
from bnlint.analysis.model import ClassInfo, FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.values import assigned_values
from bnlint.analysis.walk import descendants

# Layers and functions whose result depends on the mode: dropout in all its
# forms, norm statistics, recurrent and attention layers (their dropout), RReLU.
_MODE_DEPENDENT = re.compile(
    r"dropout|batch_?norm|instance_?norm|rnn|lstm|gru|transformer|multihead|rrelu|training",
    re.IGNORECASE,
)
_MODULE_BASE = "torch.nn.Module"
_MAX_DEPTH = 4


def is_mode_free(model: SemanticModel, key: str, scope: FunctionInfo | None) -> bool:
    """``model = Net().to(device)`` with a class ``Net`` of this file that only
    builds ``nn.Linear`` and ``nn.ReLU``: training mode changes nothing."""
    values = assigned_values(model, key, scope)
    return bool(values) and all(_built_mode_free(model, v, 0) for v in values)


def _built_mode_free(model: SemanticModel, value: cst.BaseExpression, depth: int) -> bool:
    value = without_moves(value)
    if not isinstance(value, cst.Call) or depth > _MAX_DEPTH:
        return False
    qualified = model.qualname(value.func) or ""
    if qualified == "torch.nn.Sequential":
        return all(_built_mode_free(model, arg.value, depth + 1) for arg in value.args)
    if qualified:
        return _torch_layer_is_mode_free(qualified)
    local = model.class_named(value.func)
    return local is not None and _class_is_mode_free(model, local, depth + 1)


def _torch_layer_is_mode_free(qualified: str) -> bool:
    """``torch.nn.Linear``, ``torch.nn.parameter.Parameter``; not containers,
    which hold what we cannot see, nor ``Dropout``, ``BatchNorm2d``, ``LSTM``."""
    layer = torch_layer(qualified)
    return layer is not None and not _depends(layer)


def _class_is_mode_free(model: SemanticModel, cls: ClassInfo, depth: int) -> bool:
    """A class of the file derived from ``nn.Module`` (or such a class) that
    builds and calls nothing mode-dependent and never reads its mode."""
    if depth > _MAX_DEPTH:
        return False
    for base in cls.bases:
        local = model.class_named(base)
        if model.qualname(base) != _MODULE_BASE and not (
            local is not None and _class_is_mode_free(model, local, depth + 1)
        ):
            return False
    for node in descendants(cls.node.body):
        if isinstance(node, cst.Name | cst.Attribute):
            if _depends(dotted_name(node) or "") or _switches_mode(node):
                return False
        elif isinstance(node, cst.Call) and not _call_is_mode_free(model, node, depth):
            return False
    return True


def _call_is_mode_free(model: SemanticModel, call: cst.Call, depth: int) -> bool:
    """A layer this class builds: one of torch's that is mode-free, or a mode-free
    class of the file. Other calls are arithmetic on tensors, whose names
    ``_depends`` has already checked."""
    name = dotted_name(call.func) or ""
    if not name.rsplit(".", 1)[-1][:1].isupper():
        return True
    local = model.class_named(call.func)
    if local is not None:
        return _class_is_mode_free(model, local, depth + 1)
    qualified = model.qualname(call.func) or ""
    return qualified.startswith("torch.") and (
        not qualified.startswith("torch.nn.") or _torch_layer_is_mode_free(qualified)
    )


def _depends(name: str) -> bool:
    return _MODE_DEPENDENT.search(name.rsplit(".", 1)[-1]) is not None


def _switches_mode(node: cst.Name | cst.Attribute) -> bool:
    return isinstance(node, cst.Attribute) and node.attr.value in ("train", "eval")
