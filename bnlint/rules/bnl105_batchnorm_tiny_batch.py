from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.architectures import contains_batch_norm
from bnlint.analysis.calls import argument, has_star_args, keyword_arg
from bnlint.analysis.constants import resolve_int
from bnlint.analysis.data import Role, role_from_name
from bnlint.analysis.model import CallSite, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.rules.base import Finding, Rule

DATA_LOADERS = frozenset({"torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader"})


class BatchnormTinyBatch(Rule):
    """
    ## What it does
    Finds a training `DataLoader` with a batch size of 1 or 2 (a literal, a module
    constant, an argparse default or a config dict entry; `DataLoader`'s own default
    is 1) in a file that trains a model with BatchNorm.

    ## Why is this bad?
    BatchNorm normalises with the statistics of the batch. With one or two samples
    they are mostly noise, the running statistics drift, and the model evaluates
    badly; `BatchNorm1d` raises on a batch of one in training mode.

    ## Known problems
    The last, smaller batch of a loader without `drop_last=True` is not checked: it
    needs the dataset's size. The model is known to have BatchNorm only from layers
    and classes visible in the file and from known architectures (ResNet, EfficientNet,
    MobileNet, ...).

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
        if not loaders or not _trains_batch_norm_model(model):
            return
        for site in loaders:
            if has_star_args(site.node) or not _is_training_loader(model, site):
                continue  # ``**loader_kwargs`` may set the batch size
            batch_size = argument(site.node, "batch_size", 1)
            if batch_size is None:
                if keyword_arg(site.node, "batch_sampler") is None:
                    yield Finding(site.node, _message("the default batch size of 1"))
                continue
            value = resolve_int(model, batch_size.value, site.function)
            if value in (1, 2):
                yield Finding(batch_size, _message(f"a batch size of {value}"))


def _message(what: str) -> str:
    return (
        f"this training loader uses {what} with a BatchNorm model: batch statistics of "
        "one or two samples are noise and the running statistics drift; use a larger "
        "batch, drop_last=True, or GroupNorm/LayerNorm"
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
    targets = [dotted_name(a.target) for a in model.assignments if a.value is site.node]
    dataset = argument(site.node, "dataset", 0)
    names = [*targets, dotted_name(dataset.value) if dataset else None]
    roles = {role_from_name(name) for name in names if name}
    if Role.EVAL in roles:
        return False
    shuffle = keyword_arg(site.node, "shuffle")
    shuffled = (
        shuffle is not None
        and isinstance(shuffle.value, cst.Name)
        and shuffle.value.value == "True"
    )
    return Role.TRAIN in roles or shuffled
