from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Literal

import libcst as cst

from bnlint.analysis.architectures import contains_batch_norm, freezes_batch_norm
from bnlint.analysis.calls import argument, is_true_literal, keyword_arg, mentions_name
from bnlint.analysis.constants import dict_entries, resolve_int
from bnlint.analysis.data import Role, role_from_arguments, role_from_name
from bnlint.analysis.frameworks import DATA_LOADERS
from bnlint.analysis.model import CallSite, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.values import assigned_values
from bnlint.rules.base import Finding, Rule

BATCH_SIZE = "batch_size"
# ``batch_size``, ``batchsize``, ``n_crops_in_batch``; not ``batch_first``.
_BATCH_SIZE_NAME = re.compile(r"batch_?size|in_batch|batch$", re.IGNORECASE)
# Arguments that make ``batch_size`` irrelevant when it is not given.
_BATCHING_ARGUMENTS = ("batch_sampler", "sampler")


class BatchnormTinyBatch(Rule):
    """
    ## What it does
    Finds a training `DataLoader` with a batch size of 1 or 2 (a literal, a module
    constant, an argparse default, a config dict entry or a `**loader_kwargs` dict;
    `DataLoader`'s own default is 1) in a file that trains a model with BatchNorm.

    ## Why is this bad?
    BatchNorm normalises with the statistics of the batch. With one or two samples
    they are mostly noise, the running statistics drift, and the model evaluates
    badly; `BatchNorm1d` raises on a batch of one in training mode.

    ## Known problems
    The last, smaller batch of a loader without `drop_last=True` is not checked: it
    needs the dataset's size. The model is known to have BatchNorm only from layers
    and classes visible in the file and from known architectures (ResNet,
    EfficientNet, MobileNet ...). A file that freezes BatchNorm (`FrozenBatchNorm2d`,
    timm's `freeze_batch_norm_2d`, a `freeze_bn` helper, `.eval()` on the layers of
    a `.modules()` loop) is not reported. A loader is a training loader unless its
    name, its dataset (`train=False`, `split="val"`) or the function returning it
    (`val_dataloader`) says evaluation (an attack that back-propagates to test
    images is not training), and when a loop that calls `backward()` iterates it,
    its name, dataset or function says training, or it is shuffled and no loop in
    the file iterates it. A dataset built with a batch size of its own
    (`SceneDataset(data, batch_size)`) returns whole batches and is not reported.

    ## Fix safety
    No automatic fix: a larger batch, gradient accumulation with frozen BatchNorm,
    or GroupNorm/LayerNorm are design choices.
    """

    code = "BNL105"
    name = "batchnorm-tiny-batch"
    summary = "a model with BatchNorm trained with a batch size of 1 or 2"
    triggers = ("DataLoader",)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        loaders = [site for site in model.calls if site.qualname in DATA_LOADERS]
        if not loaders or not _trains_batch_norm_model(model) or freezes_batch_norm(model):
            return
        for site in loaders:
            if not _is_training_loader(model, site):
                continue
            batch_size = _batch_size(model, site)
            if isinstance(batch_size, str):  # _DEFAULT
                yield Finding(site.node, _message("the default batch size of 1"))
            elif isinstance(batch_size, cst.BaseExpression):
                value = resolve_int(model, batch_size, site.function)
                if value in (1, 2):
                    yield Finding(batch_size, _message(f"a batch size of {value}"))


# The loader uses DataLoader's default batch size.
_DEFAULT: Literal["default"] = "default"
BatchSize = cst.BaseExpression | Literal["default"] | None


def _batch_size(model: SemanticModel, site: CallSite) -> BatchSize:
    """The expression that sets the batch size, ``_DEFAULT``, or None when unknown."""
    given = argument(site.node, BATCH_SIZE, 1)
    if given is not None:
        return given.value
    for arg in site.node.args:
        if arg.star == "*":
            return None
        if arg.star == "**":  # ``**loader_kwargs``: look inside the dict it names
            entry = _kwargs_entry(model, arg.value, site)
            if not isinstance(entry, str):
                return entry
    if any(keyword_arg(site.node, name) for name in _BATCHING_ARGUMENTS):
        return None
    return _DEFAULT


def _kwargs_entry(model: SemanticModel, kwargs: cst.BaseExpression, site: CallSite) -> BatchSize:
    entries = dict_entries(model, kwargs, BATCH_SIZE, site.function)
    if entries is None or len(entries) > 1:
        return None
    return entries[0] if entries else _DEFAULT


def _message(what: str) -> str:
    return (
        f"this training loader uses {what} with a BatchNorm model: batch statistics of "
        "one or two samples are noise and the running statistics drift; use a larger "
        "batch, frozen BatchNorm, or GroupNorm/LayerNorm"
    )


def _trains_batch_norm_model(model: SemanticModel) -> bool:
    trains = any(
        isinstance(site.node.func, cst.Attribute) and site.node.func.attr.value == "backward"
        for site in model.calls
    )
    return trains and any(
        isinstance(a.value, cst.Call) and contains_batch_norm(model, a.value, a.function)
        for a in model.assignments
    )


def _is_training_loader(model: SemanticModel, site: CallSite) -> bool:
    """Training data: not named or built for evaluation, and iterated by a loop that
    calls ``backward()`` or named or built for training; ``shuffle=True`` counts only
    when no loop in the file iterates it (a shuffled loader that feeds a statistics
    loop is not training)."""
    dataset = argument(site.node, "dataset", 0)
    if dataset is not None and _batches_itself(model, dataset.value, site):
        return False
    names = _names_bound_to(model, site)
    roles = {role_from_name(name) for name in names}
    if site.function is not None:  # Lightning's ``train_dataloader``/``val_dataloader``
        roles.add(role_from_name(site.function.name))
    if dataset is not None:
        roles.add(_role_of_dataset(model, dataset.value, site))
    if Role.EVAL in roles:
        return False  # also an attack that back-propagates to the test images
    loops = [loop for loop in _loops(model) if _iterated_name(loop.iter) in names]
    if Role.TRAIN in roles or any(mentions_name(loop.body, "backward") for loop in loops):
        return True
    shuffle = keyword_arg(site.node, "shuffle")
    return not loops and shuffle is not None and is_true_literal(shuffle.value)


def _names_bound_to(model: SemanticModel, site: CallSite) -> set[str]:
    return {
        name
        for assignment in model.assignments
        if assignment.value is site.node and (name := dotted_name(assignment.target))
    }


def _loops(model: SemanticModel) -> Iterator[cst.For]:
    for site in model.for_loops:
        if isinstance(site.node, cst.For):
            yield site.node


def _iterated_name(iterable: cst.BaseExpression) -> str | None:
    """``loader``, ``enumerate(loader)``, ``tqdm(loader, ...)``: the loader's name."""
    while isinstance(iterable, cst.Call) and iterable.args:
        iterable = iterable.args[0].value
    return dotted_name(iterable)


def _dataset_calls(
    model: SemanticModel, dataset: cst.BaseExpression, site: CallSite
) -> list[cst.Call]:
    """The calls that built ``dataset``: itself, or what its variable was assigned."""
    name = dotted_name(dataset)
    built = [dataset] if name is None else assigned_values(model, name, site.function)
    return [value for value in built if isinstance(value, cst.Call)]


def _role_of_dataset(
    model: SemanticModel, dataset: cst.BaseExpression, site: CallSite
) -> Role | None:
    """``train_set``, ``CIFAR10(train=False)``, or a variable assigned one of them."""
    name = dotted_name(dataset)
    if name is not None and role_from_name(name) is not None:
        return role_from_name(name)
    for call in _dataset_calls(model, dataset, site):
        if role_from_arguments(call) is not None:
            return role_from_arguments(call)
    return None


def _batches_itself(model: SemanticModel, dataset: cst.BaseExpression, site: CallSite) -> bool:
    """A dataset built with a batch size (``SceneDataset(data, args.batch_size)``)
    returns whole batches, and the loader's batch of 1 is one of them."""
    for call in _dataset_calls(model, dataset, site):
        for arg in call.args:
            name = arg.keyword.value if arg.keyword else dotted_name(arg.value) or ""
            if _BATCH_SIZE_NAME.search(name.rsplit(".", 1)[-1]):
                return True
    return False
