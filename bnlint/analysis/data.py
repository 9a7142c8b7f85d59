"""Where data comes from: which datasets are for training or evaluation, and
which transform pipelines are random.

Roles come from the code itself (``train=False``, ``split="val"``, a path
ending in ``val``) or from names (``val_set``, ``test_loader``); a name alone is
weaker evidence, and rules lower their severity for it.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass

import libcst as cst

from bnlint.analysis.calls import keyword_arg
from bnlint.analysis.model import CallSite, FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.values import assigned_values, values_at
from bnlint.analysis.walk import descendants


class Role(enum.Enum):
    TRAIN = "train"
    EVAL = "eval"


# A role word ends at an underscore, a digit, the end, or a data word glued to it
# (``trainloader``, ``testset``: the PyTorch tutorials' spelling).
_WORD_END = r"(_|$|\b|\d|loader|set|data|ds|dl|iter)"
_EVAL_WORDS = re.compile(
    r"(^|_|\b)(val|valid|validation|test|testing|eval|evaluation|dev|holdout)" + _WORD_END
)
_TRAIN_WORDS = re.compile(r"(^|_|\b)(train|training|trn)" + _WORD_END)
# "valid" as an adjective: the valid entries of a batch, not validation data.
_VALID_ENTRIES = re.compile(
    r"(^|_)(n|num|is|has|all|any)_valid(?=_|$)"
    r"|(^|_)valid_(masks?|idx|index|indices|inds|ids|count|len|length|pixels|points|tokens"
    r"|positions|entries|flags?)(?=_|$|\d)"
)


def role_from_name(name: str) -> Role | None:
    """``val_loader`` -> EVAL, ``train_ds`` -> TRAIN, ``loader`` -> None,
    ``valid_mask`` (the valid entries) -> None."""
    lowered = _VALID_ENTRIES.sub("_", name.lower().rsplit(".", 1)[-1])
    is_eval = _EVAL_WORDS.search(lowered) is not None
    is_train = _TRAIN_WORDS.search(lowered) is not None
    if is_eval == is_train:
        return None
    return Role.EVAL if is_eval else Role.TRAIN


_DATA_WORDS = re.compile(r"loader|dataset|data|(^|_)(dl|ds|set|split|samples|iter|gen)(_|$|\d)")
# A number about the data, not the data: ``train_set_size``, ``num_train_samples``.
_QUANTITY = re.compile(
    r"^(n|num|number)_|_(size|len|length|count|num|number|start|stop|end|offset|ratio|frac"
    r"|fraction|pct|percent|portion|shape|dim|steps|batches)$"
)


def is_data_name(name: str) -> bool:
    """``train_loader``, ``val_ds``, ``test_set``: a name for data, not a flag, a
    time or a number about the data (``train_set_size``)."""
    last = name.lower().rsplit(".", 1)[-1]
    return _DATA_WORDS.search(last) is not None and _QUANTITY.search(last) is None


def role_from_arguments(call: cst.Call) -> Role | None:
    """``train=False``, ``split="test"``, ``is_training=True``, ``root="data/val"``."""
    for keyword in ("train", "is_training", "training"):
        arg = keyword_arg(call, keyword)
        if (
            arg is not None
            and isinstance(arg.value, cst.Name)
            and arg.value.value in ("True", "False")
        ):
            return Role.TRAIN if arg.value.value == "True" else Role.EVAL
    for arg in call.args:
        text = _string_value(arg.value)
        if text is not None and (
            arg.keyword is None
            or arg.keyword.value in {"split", "mode", "subset", "root", "image_set"}
        ):
            role = role_from_name(re.sub(r"[/\\.\-]", "_", text.strip("/\\")))
            if role is not None:
                return role
    return None


def _string_value(node: cst.BaseExpression) -> str | None:
    if isinstance(node, cst.SimpleString):
        value = node.evaluated_value
        return value if isinstance(value, str) else None
    return None


@dataclass(frozen=True)
class DatasetSite:
    """A call that builds a dataset with a ``transform`` argument."""

    call: CallSite
    target: str | None  # the name it is assigned to, if any
    transform: cst.Arg
    # Pooled with other datasets (``ConcatDataset([train, test])``): the name the
    # pool is assigned to ("" for none), whose role is this dataset's.
    pooled_as: str | None = None

    @property
    def role(self) -> Role | None:
        if self.pooled_as is not None:
            return role_from_name(self.pooled_as) if self.pooled_as else None
        by_arguments = role_from_arguments(self.call.node)
        if by_arguments is Role.TRAIN and self.target and _EVAL_WORDS.search(self.target.lower()):
            return None  # ``train_eval_set``: training images, used to evaluate
        if by_arguments is not None:
            return by_arguments
        return role_from_name(self.target) if self.target else None

    @property
    def role_is_from_name_only(self) -> bool:
        return role_from_arguments(self.call.node) is None


_TRANSFORM_KEYWORDS = ("transform", "transforms")


def dataset_sites(model: SemanticModel) -> list[DatasetSite]:
    """Dataset constructions: calls that take a ``transform=`` argument (not
    ``None``), other than those passed for a parameter that is not data
    (MONAI's ``iteration_update=Interaction(transforms=...)``)."""
    targets = _assignment_targets(model)
    pooled = _pools(model, targets)
    not_data = {
        arg.value
        for site in model.calls
        for arg in site.node.args
        if arg.keyword is not None and not is_data_name(arg.keyword.value)
    }
    sites = []
    for site in model.calls:
        if site.node in not_data:
            continue
        for keyword in _TRANSFORM_KEYWORDS:
            arg = keyword_arg(site.node, keyword)
            if arg is not None:
                if not (isinstance(arg.value, cst.Name) and arg.value.value == "None"):
                    target = targets.get(site.node)
                    sites.append(DatasetSite(site, target, arg, pooled.get(site.node)))
                break
    return sites


_POOLS = re.compile(r"(Concat|Chain)Dataset$")


def _pools(model: SemanticModel, targets: dict[cst.Call, str]) -> dict[cst.Call, str]:
    """The calls that build a part of a ``ConcatDataset``, directly or through a
    local name (``test_split = ...; ConcatDataset([train_split, test_split])``),
    and the name each pool is assigned to ("" for none)."""
    pooled = {}
    for site in model.calls:
        if not _POOLS.search(dotted_name(site.node.func) or ""):
            continue
        parts = keyword_arg(site.node, "datasets") or next(iter(site.node.args), None)
        if parts is None or not isinstance(parts.value, cst.List | cst.Tuple):
            continue
        pool = targets.get(site.node, "")
        for element in parts.value.elements:
            for node in descendants(element.value):
                for call in _calls_named_by(model, node, site.function):
                    pooled[call] = pool
    return pooled


def _calls_named_by(
    model: SemanticModel, node: cst.CSTNode, scope: FunctionInfo | None
) -> list[cst.Call]:
    """``node`` if it is a call; the calls a name ``node`` was assigned."""
    if isinstance(node, cst.Call):
        return [node]
    if not isinstance(node, cst.Name):
        return []
    return [v for v in assigned_values(model, node.value, scope) if isinstance(v, cst.Call)]


def _assignment_targets(model: SemanticModel) -> dict[cst.Call, str]:
    targets = {}
    for assignment in model.assignments:
        if isinstance(assignment.value, cst.Call):
            name = dotted_name(assignment.target)
            if name is not None:
                targets[assignment.value] = name
    return targets


# -- transforms -------------------------------------------------------------------

# Deterministic transforms whose names start with "Random" (MONAI: "Rand") do
# not exist; these are the random ones that do not say so in their name.
_RANDOM_PREFIX = re.compile(r"^Rand(om)?[A-Z]")
_RANDOM_TRANSFORMS = frozenset(
    {
        "SamplePoints",  # PyTorch Geometric draws points from the mesh
        "FixedPoints",
        "ColorJitter",
        "RandAugment",
        "AutoAugment",
        "TrivialAugmentWide",
        "AugMix",
        "ElasticTransform",
        "ScaleJitter",
        # albumentations: random unless p=1.0 is given
        "HorizontalFlip",
        "VerticalFlip",
        "Flip",
        "Transpose",
        "ShiftScaleRotate",
        "Rotate",
        "SafeRotate",
        "HueSaturationValue",
        "RGBShift",
        "CoarseDropout",
        "GaussNoise",
        "ISONoise",
        "MotionBlur",
        "CLAHE",
        "ChannelShuffle",
        "GridDistortion",
        "OpticalDistortion",
        "Affine",
        "Perspective",
        "Sharpen",
        "Emboss",
        "ToGray",
        "Solarize",
        "Posterize",
        "Equalize",
    }
)
_RANDOM_FACTORIES = {
    # factory -> keyword whose True value makes it random
    "create_transform": "is_training",
}
_RANDOM_FACTORY_NAMES = frozenset({"transforms_imagenet_train"})
_LIST_GROWERS = frozenset({"append", "insert", "extend"})


def random_transform_in(
    model: SemanticModel, expr: cst.BaseExpression, scope: FunctionInfo | None
) -> str | None:
    """The name of a random augmentation in the pipeline ``expr`` (following
    variables assigned in ``scope`` or at module level), or None."""
    return _random_in(model, expr, scope, depth=0)


def _random_in(
    model: SemanticModel, expr: cst.BaseExpression, scope: FunctionInfo | None, depth: int
) -> str | None:
    if depth > 4:
        return None
    if isinstance(expr, cst.Name | cst.Attribute):
        for value in (*values_at(model, expr, scope), *_added_steps(model, expr, scope)):
            found = _random_in(model, value, scope, depth + 1)
            if found:
                return found
        return None
    if isinstance(expr, cst.List | cst.Tuple):
        for element in expr.elements:
            found = _random_in(model, element.value, scope, depth + 1)
            if found:
                return found
        return None
    if not isinstance(expr, cst.Call):
        return None
    name = (dotted_name(expr.func) or "").rsplit(".", 1)[-1]
    if _is_random_transform(name, expr):
        return name
    for arg in expr.args:  # Compose([...]), nn.Sequential(...), A.OneOf([...])
        found = _random_in(model, arg.value, scope, depth + 1)
        if found:
            return found
    return None


# Names of code that draws random numbers: ``np.random.rand``, ``torch.randn``,
# ``random.choice``, ``x.normal_()``, a ``RandomCrop``, a ``ColorJitter``.
_RANDOM_NAME = re.compile(
    r"rand|shuffle|choice|uniform|bernoulli|multinomial|normal_|jitter|noise|augment",
    re.IGNORECASE,
)


def names_random(name: str) -> bool:
    """``np.random.rand``, ``T.RandomCrop``, ``augment``: a name for random code."""
    return _RANDOM_NAME.search(name) is not None


def draws_random(model: SemanticModel, function: FunctionInfo) -> bool | None:
    """Does ``function`` call anything random? None when it defines functions of
    its own, whose calls we do not follow."""
    if any(other.parent is function for other in model.functions):
        return None
    return any(
        names_random(dotted_name(site.node.func) or "")
        or random_transform_in(model, site.node, function) is not None
        for site in model.calls
        if site.function is function
    )


def _added_steps(
    model: SemanticModel, steps: cst.BaseExpression, scope: FunctionInfo | None
) -> list[cst.BaseExpression]:
    """``steps.insert(0, RandomCrop(32))``: what calls in ``scope`` add to a list
    of steps."""
    name = dotted_name(steps)
    return [
        arg.value
        for site in model.calls
        if site.function is scope
        and isinstance(site.node.func, cst.Attribute)
        and site.node.func.attr.value in _LIST_GROWERS
        and dotted_name(site.node.func.value) == name
        for arg in site.node.args
    ]


def _is_random_transform(name: str, call: cst.Call) -> bool:
    if name in _RANDOM_FACTORY_NAMES:
        return True
    if name in _RANDOM_FACTORIES:
        arg = keyword_arg(call, _RANDOM_FACTORIES[name])
        return arg is not None and isinstance(arg.value, cst.Name) and arg.value.value == "True"
    if not (_RANDOM_PREFIX.match(name) or name in _RANDOM_TRANSFORMS):
        return False
    probability = keyword_arg(call, "p") or keyword_arg(call, "prob")
    chance = _number(probability.value) if probability is not None else None
    # ``RandomHorizontalFlip(p=0.0)``, ``HorizontalFlip(p=1.0)``: not random. A
    # ``RandRotated(prob=1.0)`` always rotates, by a random angle.
    return chance != 0.0 and not (chance == 1.0 and _FIXED_WHEN_CERTAIN.search(name))


# Random steps with nothing random left once they always apply.
_FIXED_WHEN_CERTAIN = re.compile(r"Flip|Grayscale|Invert|Equalize|AutoContrast|Apply")


def _number(node: cst.BaseExpression) -> float | None:
    if isinstance(node, cst.Integer | cst.Float):
        return float(node.value.replace("_", ""))
    return None
