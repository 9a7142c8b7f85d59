"""Does a model contain BatchNorm? From known architectures, project classes and
``nn.Sequential`` literals. ``None`` means we cannot tell, and rules stay quiet.
"""

from __future__ import annotations

import re

import libcst as cst

from bnlint.analysis.calls import keyword_arg, positional_args
from bnlint.analysis.model import ClassInfo, FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.values import assigned_values
from bnlint.analysis.walk import children

BATCH_NORM_CLASSES = frozenset(
    {
        "torch.nn.BatchNorm1d",
        "torch.nn.BatchNorm2d",
        "torch.nn.BatchNorm3d",
        "torch.nn.LazyBatchNorm1d",
        "torch.nn.LazyBatchNorm2d",
        "torch.nn.LazyBatchNorm3d",
        "torch.nn.SyncBatchNorm",
    }
)

# Architecture names (torchvision, timm, ultralytics) by whether they use BatchNorm.
_WITH_BATCH_NORM = re.compile(
    r"^(resnet|resnext|wide_resnet|seresnet|senet|densenet|efficientnet|mobilenet|mnasnet|regnet"
    r"|vgg\d+_bn|inception|googlenet|shufflenet|mixnet|rexnet|ghostnet|hrnet|darknet|cspdarknet"
    r"|yolo|unet|deeplab|fcn_resnet|lraspp|fasterrcnn_mobilenet|ssd|retinanet|dla|dpn|tresnet"
    r"|nfnet_bn|bn_|res2net|resnest|selecsls|tf_efficientnet|tf_mobilenet|lcnet|hardcorenas)",
    re.IGNORECASE,
)
_WITHOUT_BATCH_NORM = re.compile(
    r"^(vit|deit|swin|convnext|beit|cait|bert|roberta|gpt|llama|t5|bart|distilbert|albert|xlnet"
    r"|vgg\d+$|alexnet|squeezenet|mlp_mixer|mixer|eva|maxvit_rmlp|nfnet|nf_|poolformer|coat"
    r"|levit_conv)",
    re.IGNORECASE,
)
_FACTORY_NAME_ARGUMENT = {
    # factory -> position of the architecture name
    "timm.create_model": 0,
    "torch.hub.load": 1,
    "torchvision.models.get_model": 0,
    "ultralytics.YOLO": 0,
}


def architecture_has_batch_norm(name: str) -> bool | None:
    short = name.rsplit("/", 1)[-1].rsplit(".", 1)[-1]
    if _WITH_BATCH_NORM.match(short):
        return True
    if _WITHOUT_BATCH_NORM.match(short):
        return False
    return None


def contains_batch_norm(
    model: SemanticModel, expr: cst.BaseExpression, scope: FunctionInfo | None
) -> bool | None:
    """Whether the module ``expr`` holds has BatchNorm layers, as far as we can see."""
    return _contains(model, expr, scope, depth=0)


def _contains(
    model: SemanticModel, expr: cst.BaseExpression, scope: FunctionInfo | None, depth: int
) -> bool | None:
    if depth > 6:
        return None
    if isinstance(expr, cst.Call):
        return _call_contains(model, expr, scope, depth)
    name = dotted_name(expr)
    if name is None:
        return None
    for value in assigned_values(model, name, scope):
        found = _contains(model, value, scope, depth + 1)
        if found is not None:
            return found
    if isinstance(expr, cst.Attribute):
        return _attribute_contains(model, expr, scope, depth)
    return None


def _call_contains(
    model: SemanticModel, call: cst.Call, scope: FunctionInfo | None, depth: int
) -> bool | None:
    if isinstance(call.func, cst.Attribute) and call.func.attr.value in {
        "to",
        "cuda",
        "cpu",
        "half",
        "float",
    }:
        return _contains(model, call.func.value, scope, depth + 1)  # same module, moved
    qualified = model.qualname(call.func) or ""
    if qualified in BATCH_NORM_CLASSES:
        return True
    if qualified.startswith("torchvision.models."):
        return architecture_has_batch_norm(qualified)
    position = _FACTORY_NAME_ARGUMENT.get(qualified)
    if position is not None:
        args = positional_args(call)
        arg = keyword_arg(call, "model_name") or (args[position] if position < len(args) else None)
        if arg is not None and isinstance(arg.value, cst.SimpleString):
            text = arg.value.evaluated_value
            return architecture_has_batch_norm(text) if isinstance(text, str) else None
        return None
    if qualified in {"torch.nn.Sequential", "torch.nn.ModuleList"}:
        return _any_contains(model, [a.value for a in call.args], scope, depth)
    local = next((c for c in model.module_classes if c.name == dotted_name(call.func)), None)
    if local is not None:
        return class_has_batch_norm(model, local, depth + 1)
    return None


def _any_contains(
    model: SemanticModel, exprs: list[cst.BaseExpression], scope: FunctionInfo | None, depth: int
) -> bool | None:
    for expr in exprs:
        if _contains(model, expr, scope, depth + 1):
            return True
    return None


def _attribute_contains(
    model: SemanticModel, expr: cst.Attribute, scope: FunctionInfo | None, depth: int
) -> bool | None:
    """``model.backbone`` where ``model = Net()`` and ``Net.__init__`` sets ``self.backbone``."""
    owner = _class_of(model, expr.value, scope)
    if owner is None:
        return None
    init = owner.methods.get("__init__")
    if init is None:
        return None
    values = assigned_values(model, f"self.{expr.attr.value}", init)
    return _any_contains(model, values, init, depth)


def _class_of(
    model: SemanticModel, expr: cst.BaseExpression, scope: FunctionInfo | None
) -> ClassInfo | None:
    name = dotted_name(expr)
    if name is None:
        return None
    for value in assigned_values(model, name, scope):
        if isinstance(value, cst.Call):
            called = dotted_name(value.func)
            for cls in model.module_classes:
                if cls.name == called:
                    return cls
    return None


def class_has_batch_norm(model: SemanticModel, cls: ClassInfo, depth: int = 0) -> bool | None:
    """A project module class that mentions a BatchNorm class anywhere (a layer in
    ``__init__``, a ``norm_layer=nn.BatchNorm2d`` default), or builds a layer or a
    project class that has one."""
    if depth > 6:
        return None
    init = cls.methods.get("__init__")
    stack: list[cst.CSTNode] = [cls.node.body]
    while stack:
        node = stack.pop()
        if (
            isinstance(node, cst.Name | cst.Attribute)
            and model.qualname(node) in BATCH_NORM_CLASSES
        ):
            return True
        if isinstance(node, cst.Call) and _call_contains(model, node, init, depth + 1):
            return True
        stack.extend(children(node))
    return None
