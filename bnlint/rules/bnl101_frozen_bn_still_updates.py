from __future__ import annotations

from collections.abc import Iterator

from bnlint.analysis.architectures import freezes_batch_norm
from bnlint.analysis.effects import switched_mode
from bnlint.analysis.freezing import (
    GradFreeze,
    Place,
    freeze_has_batch_norm,
    grad_freezes,
    grad_unfreezes,
    is_averaged_copy,
    overrides_train_with_eval,
    related,
)
from bnlint.analysis.model import CallSite, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.state import Mode
from bnlint.rules.base import Finding, Rule

LIGHTNING_TRAINING_HOOK = "training_step"


class FrozenBnStillUpdates(Rule):
    """
    ## What it does
    Finds a module frozen by gradient (`m.requires_grad_(False)`,
    `p.requires_grad = False` over `m.parameters()` or a name-filtered
    `m.named_parameters()`, `setattr(p, "requires_grad", False)`, BatchNorm weights
    frozen in a `.modules()` loop, an optimizer param group with `lr=0`, timm's
    `freeze(..., include_bn_running_stats=False)`) that has BatchNorm layers, in a
    file that then trains the model in training mode without ever putting those
    layers in eval mode.

    ## Why is this bad?
    `requires_grad = False` stops the weights, not the statistics: in training mode
    every forward pass still updates `running_mean`/`running_var`, and normalises
    with the batch's own statistics. The "frozen" backbone drifts towards the new
    data (and its small batches), and the features the head learns from are not
    the ones the pretrained weights produced.

    ## Example
    ```python
    model = torchvision.models.resnet50(weights="DEFAULT")
    for p in model.parameters():
        p.requires_grad = False
    model.fc = nn.Linear(2048, 10)
    for epoch in range(10):
        model.train()
        ...
    ```

    ## Use instead
    Put the frozen part's norm layers in eval mode after every `.train()`
    (`model.train(); model.layer4.eval()`), override `train()` to keep them there
    (mmdet's `norm_eval`), or swap in `FrozenBatchNorm2d`
    (`torchvision.ops.misc`, detectron2, timm's `freeze_batch_norm_2d`).

    ## Known problems
    BatchNorm is known only from layers and classes visible in the file and from
    known architectures (ResNet, DenseNet, EfficientNet, MobileNet, RegNet, VGG-BN;
    not ViT, ConvNeXt, Swin, BERT); unknown is quiet. The model must be trained in
    a mode the analysis proves to be training mode (after `.train()`, fresh from a
    factory, or in a Lightning `training_step`); a file that freezes only for
    feature extraction and evaluates is quiet. Any `.eval()` on the frozen part (or
    a part of it), on the BatchNorm layers of a `.modules()` loop, a helper named
    for it (`freeze_bn`, `set_bn_eval`), a `FrozenBatchNorm2d` swap, or a `train()`
    override that calls `.eval()` keeps the rule quiet: whether a later `.train()`
    undoes it is BNL102's question. So does `.eval()` on the whole model when the
    test that freezes also chooses it (`if args.weights == "freeze": model.eval()`);
    an `.eval()` for validation does not. A module that is unfrozen again
    (`requires_grad = True` on it or on a module holding it: a GAN's alternating
    steps) is not reported; unfreezing only a part (the new head) is. EMA and
    momentum copies (`model_ema`, MoCo's `encoder_k`, a module whose parameters are
    zipped with another's to update them) often run in training mode on purpose
    and are not reported. Lightning's `BaseFinetuning.freeze` is not a
    finding: with `train_bn=True` (its default) the BatchNorm layers are trained on
    purpose, and with `False` it stops their statistics itself.

    ## Fix safety
    No automatic fix: which layers to keep in eval mode, and where to re-apply it,
    is the author's decision.
    """

    code = "BNL101"
    name = "frozen-bn-still-updates"
    summary = "a frozen module's BatchNorm layers stay in training mode and keep updating"
    triggers = ("requires_grad", '"lr": 0', "'lr': 0", "include_bn_running_stats")

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        freezes = [f for f in grad_freezes(model) if freeze_has_batch_norm(model, f)]
        if not freezes or freezes_batch_norm(model) or overrides_train_with_eval(model):
            return
        trained = _trained_in_training_mode(model)
        evaluated = _eval_receivers(model)
        unfrozen = [Place(u.scope, u.key) for u in grad_unfreezes(model)]
        reported: set[tuple[object, str, bool]] = set()
        for freeze in freezes:
            frozen = Place(freeze.scope, freeze.key)
            identity = (freeze.scope, freeze.key, freeze.norms_only)
            if identity in reported or not _trains(model, frozen, trained):
                continue
            if _put_in_eval(model, freeze, evaluated, trained):
                continue
            if is_averaged_copy(model, frozen) or _unfrozen(model, frozen, unfrozen):
                continue
            reported.add(identity)
            yield Finding(freeze.node, _message(freeze))


def _message(freeze: GradFreeze) -> str:
    what = f"the BatchNorm layers of `{freeze.key}`"
    return (
        f"{what} are frozen by gradient but stay in training mode: their running_mean/"
        "running_var keep updating on every training forward pass; put them in eval mode "
        "after every `.train()` or use FrozenBatchNorm2d"
    )


def _trained_in_training_mode(model: SemanticModel) -> list[Place]:
    """Models that a training step may run in training mode, as the flow shows it,
    and the instance in a Lightning ``training_step`` (built in training mode, and
    Lightning keeps each sub-module's mode)."""
    found = []
    analysis = model.modes
    for flow in analysis.all_flows():
        for use in analysis.training_uses(flow):
            if use.fact is not None and _may_train(use.fact.modes):
                found.append(Place(flow.scope, use.key))
    for cls in model.module_classes:
        hook = cls.methods.get(LIGHTNING_TRAINING_HOOK)
        if hook is not None and hook.self_name is not None:
            found.append(Place(hook, hook.self_name))
    return found


def _may_train(modes: Mode) -> bool:
    """Training mode on some path (``if phase == "train": model.train()``), and
    nothing the analysis cannot follow."""
    return Mode.TRAIN in modes and not modes & (Mode.UNKNOWN | Mode.CALLER)


def _trains(model: SemanticModel, frozen: Place, trained: list[Place]) -> bool:
    """Is the frozen module, a module inside it or a module holding it trained?"""
    return any(related(model, frozen, place) or related(model, place, frozen) for place in trained)


def _unfrozen(model: SemanticModel, frozen: Place, unfrozen: list[Place]) -> bool:
    """Is the module (or a module holding it) given ``requires_grad = True``
    somewhere: a temporary freeze (a GAN's alternating steps)? Unfreezing a part
    (the new head) leaves the rest frozen."""
    return any(related(model, frozen, u) for u in unfrozen)


def _eval_receivers(model: SemanticModel) -> list[tuple[CallSite, Place]]:
    return [
        (site, Place(site.function, receiver))
        for site in model.calls
        if switched_mode(site.node) is Mode.EVAL
        and (receiver := dotted_name(site.node.func.value)) is not None  # type: ignore[attr-defined]
    ]


def _put_in_eval(
    model: SemanticModel,
    freeze: GradFreeze,
    evaluated: list[tuple[CallSite, Place]],
    trained: list[Place],
) -> bool:
    """``.eval()`` on the frozen module or a part of it, other than the whole
    trained model (that ``.eval()`` is for validation, and ``.train()`` follows)
    unless the test that freezes also chooses it: ``if args.weights == "freeze":
    model.eval()`` (barlowtwins' linear evaluation)."""
    frozen = Place(freeze.scope, freeze.key)
    freezing_tests: list[str] | None = None  # asked at most once
    for site, place in evaluated:
        if not related(model, place, frozen):
            continue
        if not any(related(model, t, place) for t in trained):
            return True
        chosen_by = model.guarding_tests(site.node, site.function)[-1:]
        if chosen_by and freezing_tests is None:
            freezing_tests = model.guarding_tests(freeze.node, freeze.scope)
        if chosen_by and chosen_by[0] in (freezing_tests or ()):
            return True
    return False
