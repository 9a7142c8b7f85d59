from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.architectures import BATCH_NORM_CLASSES, contains_batch_norm
from bnlint.analysis.effects import mode_switch
from bnlint.analysis.flow import ModelCall
from bnlint.analysis.frameworks import DROPOUT_LAYERS
from bnlint.analysis.loops import is_unit_test
from bnlint.analysis.model import SemanticModel
from bnlint.analysis.modes import FunctionFlow
from bnlint.analysis.names import dotted_name
from bnlint.analysis.state import Grad, Mode
from bnlint.analysis.values import assigned_values
from bnlint.rules.base import Anchor, Finding, FixPlan, NodeEdit, Rule
from bnlint.rules.mode_fixes import MODE_RULE_TRIGGERS, line_indent, spelled

DROPOUT_CLASSES = tuple(f"torch.nn.{layer}" for layer in DROPOUT_LAYERS)


class WholeModelTrainForMcDropout(Rule):
    """
    ## What it does
    Finds `model.train()` (or `for m in model.modules(): m.train()`, or a project
    helper that calls `model.train()`) used at inference time: the model then
    runs, with its result used, under `torch.no_grad()`, in an evaluation loop
    (as BNL001 defines it) or in a function named for evaluation, with no
    training step in between. This is the usual way to get Monte-Carlo dropout
    samples, and it is wrong for any model with BatchNorm.

    ## Why is this bad?
    `.train()` switches every sub-module, not only dropout: BatchNorm normalises
    each test batch with its own statistics (predictions depend on what else is
    in the batch, and a batch of one breaks) and updates its running statistics
    with test data on every forward pass, slowly corrupting the model. The
    uncertainty estimates mix dropout noise with batch-composition noise.

    ## Known problems
    Forward passes whose output is thrown away (`model(x)` as a statement, `_ =
    model(x)`, or `x = net(z, net.shared(y))` with `x` never read, as BigGAN's standing
    statistics do), and forward passes over the training data (`for x, _ in
    train_loader`), are BatchNorm recalibration, as `torch.optim.swa_utils.update_bn`
    does on purpose, and are not reported. Enabling only the dropout modules (`if
    isinstance(m, nn.Dropout): m.train()`) is the correct form and is not reported. A
    model built where we can see it from torch's own layers with no BatchNorm among them
    (`nn.Sequential(nn.Linear(...), nn.Dropout(...))`) is not reported: `.train()`
    switches on only its dropout. A lone BatchNorm layer (`m = nn.BatchNorm1d(1)`, then
    `m.train()`) has no dropout to sample and is put in training mode for its batch
    statistics; it is not reported. A forward pass whose result is stored as a loss
    (`loss_dict = model(images, targets)`) is a validation loss from a model that
    returns its losses only in training mode, as torchvision's detectors do (their
    BatchNorm layers are frozen); it is not reported. A model whose layers we cannot
    see is reported, and the fix is still the safer habit. A unit test (and a helper
    only unit tests call) puts a model in training mode to test that mode, and is not
    reported.

    ## Fix safety
    The fix replaces `model.train()` with `model.eval()` followed by a loop that
    puts only the dropout modules (`nn.Dropout`, `Dropout1d/2d/3d`,
    `AlphaDropout`, `FeatureAlphaDropout`) in training mode. It is unsafe: the
    predictions change (BatchNorm now uses its running statistics, which is the
    point), and dropout implemented in other ways (functional dropout,
    custom modules) stops.
    """

    code = "BNL006"
    name = "whole-model-train-for-mc-dropout"
    summary = "`model.train()` used at inference time, e.g. for Monte-Carlo dropout"
    fixable = True
    # Not only "train": the switch may be in a helper of another file.
    triggers = MODE_RULE_TRIGGERS

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for flow in model.modes.all_flows():
            if is_unit_test(model, flow.scope):
                continue  # it puts the model in training mode to test that mode
            reported: set[cst.Call] = set()
            for call in flow.events.model_calls.values():
                switch = call.fact.switch
                if switch is None or switch in reported or not _at_inference(flow, call):
                    continue
                if _without_batch_norm(model, flow, switch):
                    continue  # training mode then switches on dropout and nothing else
                if _is_batch_norm_layer(model, flow, switch):
                    continue  # the BatchNorm layer itself: batch statistics on purpose
                if _returns_losses(model, call):
                    continue  # detection models return their losses only in training mode
                reported.add(switch)
                yield Finding(
                    switch, _message(model, switch, call.key), _fix(model, flow, switch, call.key)
                )


_FOR_DROPOUT = re.compile(r"dropout|mc_|monte", re.IGNORECASE)
_TRAINER = re.compile(r"trainer", re.IGNORECASE)
_HARM = (
    "BatchNorm normalises with each batch's statistics and updates its running stats with test data"
)


def _message(model: SemanticModel, switch: cst.Call, key: str) -> str:
    code = model.code(switch).strip()
    helper = dotted_name(switch.func) or ""
    switched = mode_switch(switch)
    trains = switched is None or _TRAINER.search(switched[0].rsplit(".", 1)[-1]) is not None
    if trains and not _FOR_DROPOUT.search(helper):
        # A helper that ends in ``net.train()`` (TRADES' attack before scoring), or
        # a Hugging Face ``trainer.train()``, which trains and leaves the model in
        # training mode; not one that means to turn dropout on (``enable_dropout``).
        return (
            f"`{code}` leaves `{key}` in training mode, and inference follows: dropout is "
            f"active and {_HARM}; call `{key}.eval()` after it"
        )
    return (
        f"`{code}` before inference puts all of `{key}` in training mode, not only dropout: "
        f"{_HARM}; switch on only the dropout modules"
    )


def _at_inference(flow: FunctionFlow, call: ModelCall) -> bool:
    if not call.fact.is_train or not call.used or flow.roles.trains_at(call.loops):
        return False
    if flow.roles.over_training_data(call):
        return False  # BatchNorm recalibration on the training set (SWA's update_bn)
    return (
        call.grad is Grad.OFF
        or flow.roles.evaluation(call) is not None
        or flow.roles.evaluation_function
    )


def _returns_losses(model: SemanticModel, call: ModelCall) -> bool:
    """``loss_dict = model(images, targets)``: a validation loss from a model
    whose losses only come in training mode (torchvision's and maskrcnn-benchmark's
    detectors, whose BatchNorm layers are frozen)."""
    return any("loss" in name.rsplit(".", 1)[-1].lower() for name in model.result_names(call.node))


def _without_batch_norm(model: SemanticModel, flow: FunctionFlow, switch: cst.Call) -> bool:
    """``net.train()`` where ``net`` is built, where we can see it, without BatchNorm."""
    func = switch.func
    receiver = func.value if isinstance(func, cst.Attribute) else None
    return receiver is not None and contains_batch_norm(model, receiver, flow.scope) is False


def _is_batch_norm_layer(model: SemanticModel, flow: FunctionFlow, switch: cst.Call) -> bool:
    """``m.train()`` where ``m = nn.BatchNorm1d(1)``: there is no dropout to sample,
    the layer is put in training mode for its batch statistics."""
    func = switch.func
    name = dotted_name(func.value) if isinstance(func, cst.Attribute) else None
    values = assigned_values(model, name, flow.scope) if name is not None else []
    return bool(values) and all(
        isinstance(value, cst.Call) and model.qualname(value.func) in BATCH_NORM_CLASSES
        for value in values
    )


def _fix(model: SemanticModel, flow: FunctionFlow, switch: cst.Call, key: str) -> FixPlan | None:
    """``model.train()`` alone on its line -> eval, then dropout modules only.
    Not ``m.train()`` in a loop over ``model.modules()``: the loop is the problem."""
    if mode_switch(switch) != (key, Mode.TRAIN):
        return None
    statement = _statement_of(flow, switch)
    if statement is None:
        return None
    classes = [spelled(model, name) for name in DROPOUT_CLASSES]
    if None in classes:
        return None
    indent = line_indent(model, statement)
    unit = model.module.default_indent
    newline = model.module.default_newline
    lines = [
        f"{key}.eval()",
        f"{indent}for submodule in {key}.modules():",
        f"{indent}{unit}if isinstance(submodule, ({', '.join(classes)})):",  # type: ignore[arg-type]
        f"{indent}{unit}{unit}submodule.train()",
    ]
    edit = NodeEdit(statement, Anchor.REPLACE, newline.join(lines))
    return FixPlan((edit,), False, "Put only the dropout modules in training mode")


def _statement_of(flow: FunctionFlow, switch: cst.Call) -> cst.SimpleStatementLine | None:
    """The line ``switch`` is alone on, as an expression statement."""
    for use in flow.events.switches.values():
        statement = use.statement
        if use.node is switch and isinstance(statement, cst.SimpleStatementLine):
            only = statement.body[0] if len(statement.body) == 1 else None
            if isinstance(only, cst.Expr) and only.value is switch:
                return statement
    return None
