"""Does a model contain BatchNorm? From known architectures, project classes and
``nn.Sequential`` literals. ``None`` means we cannot tell, and rules stay quiet.
"""

from __future__ import annotations

import re

import libcst as cst

from bnlint.analysis.calls import keyword_arg, positional_args
from bnlint.analysis.effects import SAME_MODULE_METHODS
from bnlint.analysis.frameworks import (
    BATCH_NORM_FREEZERS,
    MODULE_COPIES,
    MODULE_WRAPPERS,
    torch_layer,
)
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
# Detection models are left out on purpose: torchvision's Faster R-CNN, RetinaNet
# and friends swap in FrozenBatchNorm2d when they load pretrained weights.
_WITH_BATCH_NORM = re.compile(
    r"^(resnet|resnext|wide_resnet|seresnet|senet|densenet|efficientnet|mobilenet|mnasnet|regnet"
    r"|vgg\d+_bn|inception|googlenet|shufflenet|mixnet|rexnet|ghostnet|hrnet|darknet|cspdarknet"
    r"|yolo|deeplab|fcn_resnet|lraspp|ssdlite|dla|dpn|tresnet|res2net|resnest|selecsls"
    r"|tf_efficientnet|tf_mobilenet|lcnet|hardcorenas|levit)",
    re.IGNORECASE,
)
_WITHOUT_BATCH_NORM = re.compile(
    r"^(vit|deit|swin|convnext|beit|cait|bert|roberta|gpt|llama|t5|bart|distilbert|albert|xlnet"
    r"|vgg\d+$|alexnet|squeezenet|mlp_mixer|mixer|eva|nfnet|nf_|dm_nfnet|poolformer|coat)",
    re.IGNORECASE,
)
# Variants of BatchNorm families built with another norm: timm's ``resnet50_gn``,
# the BiT ``resnetv2_50x1_bit`` (GroupNorm), EvoNorm and FRN variants.
_OTHER_NORM_VARIANT = re.compile(r"(_gn|_bit|_evos|_evob|_frn)(_|$)", re.IGNORECASE)
# Hybrids of a family without BatchNorm on a convolutional stem that may have it
# (timm's ``vit_small_resnet26d_224``).
_HYBRID = re.compile(r"resnet|efficientnet|_r\d+_", re.IGNORECASE)
_FACTORY_NAME_ARGUMENT = {
    # factory -> position of the architecture name
    "timm.create_model": 0,
    "torch.hub.load": 1,
    "torchvision.models.get_model": 0,
    "ultralytics.YOLO": 0,
}
# Calls that return the module they are given, or a copy or wrapper of it.
_SAME_MODULE_METHODS = SAME_MODULE_METHODS | {"train", "eval"}
_SAME_MODULE_WRAPPERS = (
    MODULE_WRAPPERS | MODULE_COPIES | {"torch.nn.SyncBatchNorm.convert_sync_batchnorm"}
)


def architecture_has_batch_norm(name: str) -> bool | None:
    """``resnet50`` -> True, ``vit_base_patch16_224`` -> False, ``my_net`` -> None.

    ``name`` is a bare architecture name: no module path, no pretrained tag."""
    if _WITH_BATCH_NORM.match(name):
        return not _OTHER_NORM_VARIANT.search(name)
    if _WITHOUT_BATCH_NORM.match(name):
        return None if _HYBRID.search(name) else False
    return None


def _architecture_of_string(text: str) -> str:
    """``timm/resnet50.a1_in1k`` and ``hf-hub:timm/resnet50.a1_in1k`` -> ``resnet50``;
    ``yolov8n.pt`` -> ``yolov8n``."""
    return text.rsplit("/", 1)[-1].rsplit(":", 1)[-1].split(".", 1)[0]


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
    found = _any_contains(model, assigned_values(model, name, scope), scope, depth)
    if found is None and isinstance(expr, cst.Attribute):
        return _attribute_contains(model, expr, scope, depth)
    return found


def _call_contains(
    model: SemanticModel, call: cst.Call, scope: FunctionInfo | None, depth: int
) -> bool | None:
    if isinstance(call.func, cst.Attribute) and call.func.attr.value in _SAME_MODULE_METHODS:
        return _contains(model, call.func.value, scope, depth + 1)  # same module, moved
    qualified = model.qualname(call.func) or ""
    if qualified in BATCH_NORM_CLASSES:
        return True
    if qualified in _SAME_MODULE_WRAPPERS:
        args = positional_args(call)
        return _contains(model, args[0].value, scope, depth + 1) if args else None
    architecture = _architecture_name(call, qualified)
    if architecture is not None:
        norm_layer = keyword_arg(call, "norm_layer")
        if norm_layer is not None:  # ``resnet50(norm_layer=FrozenBatchNorm2d)``
            return True if model.qualname(norm_layer.value) in BATCH_NORM_CLASSES else None
        return architecture_has_batch_norm(architecture)
    if qualified in {"torch.nn.Sequential", "torch.nn.ModuleList"}:
        return _any_contains(model, [a.value for a in call.args], scope, depth)
    local = model.class_named(call.func)
    if local in model.module_classes:
        return class_has_batch_norm(model, local, depth + 1)
    if not qualified and isinstance(call.func, cst.Name):  # ``act = nn.ReLU`` ... ``act()``
        classes = assigned_values(model, call.func.value, scope)
        layers = [_torch_layer_has_batch_norm(model.qualname(c) or "") for c in classes]
        return False if layers and all(has is False for has in layers) else None
    return _torch_layer_has_batch_norm(qualified)


def _torch_layer_has_batch_norm(qualified: str) -> bool | None:
    """``torch.nn.Linear``, ``torch.nn.ReLU``: one of torch's own layers, which is
    a BatchNorm or has none. Containers and anything else: we cannot tell."""
    layer = torch_layer(qualified)
    return None if layer is None else "BatchNorm" in layer


def _architecture_name(call: cst.Call, qualified: str) -> str | None:
    """The architecture a torchvision builder or a model factory call builds."""
    if qualified.startswith("torchvision.models.") and qualified not in _FACTORY_NAME_ARGUMENT:
        return qualified.rsplit(".", 1)[-1]
    position = _FACTORY_NAME_ARGUMENT.get(qualified)
    if position is None:
        return None
    args = positional_args(call)
    arg = keyword_arg(call, "model_name") or (args[position] if position < len(args) else None)
    if arg is not None and isinstance(arg.value, cst.SimpleString):
        text = arg.value.evaluated_value
        return _architecture_of_string(text) if isinstance(text, str) else None
    return None


def _any_contains(
    model: SemanticModel, exprs: list[cst.BaseExpression], scope: FunctionInfo | None, depth: int
) -> bool | None:
    """True when one of ``exprs`` has BatchNorm, False when we can see that none
    has, else None."""
    found = [_contains(model, expr, scope, depth + 1) for expr in exprs]
    if True in found:
        return True
    return False if found and all(has is False for has in found) else None


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
        cls = model.class_named(value.func) if isinstance(value, cst.Call) else None
        if cls in model.module_classes:
            return cls
    return None


def class_has_batch_norm(model: SemanticModel, cls: ClassInfo, depth: int = 0) -> bool | None:
    """A project module class that mentions a BatchNorm class (a layer in
    ``__init__``, a ``norm_layer=nn.BatchNorm2d`` default), builds a layer or a
    project class that has one, or derives from such a class. An ``isinstance``
    test (weight initialisation, a ``train()`` override) builds nothing and does
    not count."""
    if depth > 6:
        return None
    if any(_base_has_batch_norm(model, base, depth) for base in cls.bases):
        return True
    init = cls.methods.get("__init__")
    stack: list[cst.CSTNode] = [cls.node.body]
    while stack:
        node = stack.pop()
        if (
            isinstance(node, cst.Name | cst.Attribute)
            and model.qualname(node) in BATCH_NORM_CLASSES
        ):
            return True
        if isinstance(node, cst.Call):
            if dotted_name(node.func) == "isinstance":
                continue
            if _call_contains(model, node, init, depth + 1):
                return True
        stack.extend(children(node))
    return None


def _base_has_batch_norm(model: SemanticModel, base: cst.BaseExpression, depth: int) -> bool:
    """``class Net(ResNet)`` with torchvision's ResNet, or a project class with BatchNorm."""
    qualified = model.qualname(base) or ""
    if qualified.startswith("torchvision.models."):
        return architecture_has_batch_norm(qualified.rsplit(".", 1)[-1]) is True
    local = model.class_named(base)
    return local in model.module_classes and class_has_batch_norm(model, local, depth + 1) is True


# Project helpers named for freezing BatchNorm: ``freeze_bn``, ``fix_bn``,
# ``set_bn_eval``, ``freeze_batchnorm``, ``bn_eval``.
_FREEZER_NAME = re.compile(
    r"(freeze|fix|frozen)_?(bn|batch_?norm|norm)|(bn|batch_?norm)_?eval", re.IGNORECASE
)


def names_batch_norm_freezer(name: str) -> bool:
    """``freeze_bn``, ``set_bn_eval``, ``FrozenBatchNorm2d``: a call (or the function
    handed to ``model.apply``) whose last name says it freezes BatchNorm."""
    return name in BATCH_NORM_FREEZERS or bool(_FREEZER_NAME.search(name))


def freezes_batch_norm(model: SemanticModel) -> bool:
    """Does the file freeze BatchNorm anywhere: ``FrozenBatchNorm2d`` and the library
    helpers, a helper named for it (also handed to ``model.apply``), or ``.eval()``
    on the sub-modules a loop over ``.modules()`` visits?"""
    for site in model.calls:
        called = (dotted_name(site.node.func) or "").rsplit(".", 1)[-1]
        if names_batch_norm_freezer(called):
            return True
        if any(_FREEZER_NAME.search(dotted_name(arg.value) or "") for arg in site.node.args):
            return True
        func = site.node.func
        if (
            isinstance(func, cst.Attribute)
            and func.attr.value == "eval"
            and isinstance(func.value, cst.Name)
            and _visits_sub_modules(model, func.value.value, site.function)
        ):
            return True
    return False


_SUB_MODULE_ITERATORS = frozenset({"modules", "named_modules", "children", "named_children"})


def _visits_sub_modules(model: SemanticModel, name: str, scope: FunctionInfo | None) -> bool:
    """``for m in model.modules()`` or ``for _, m in model.named_modules()`` binds ``name``."""
    for site in model.for_loops:
        loop = site.node
        if not (site.function is scope and isinstance(loop, cst.For)):
            continue
        iterates = (
            isinstance(loop.iter, cst.Call)
            and isinstance(loop.iter.func, cst.Attribute)
            and loop.iter.func.attr.value in _SUB_MODULE_ITERATORS
        )
        targets = [loop.target]
        if isinstance(loop.target, cst.Tuple):
            targets = [element.value for element in loop.target.elements]
        if iterates and any(dotted_name(target) == name for target in targets):
            return True
    return False
