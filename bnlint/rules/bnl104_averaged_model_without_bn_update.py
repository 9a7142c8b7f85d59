from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.architectures import contains_batch_norm
from bnlint.analysis.calls import argument, keyword_arg
from bnlint.analysis.data import Role, role_from_name
from bnlint.analysis.model import SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.walk import children
from bnlint.rules.base import Finding, Rule

AVERAGED_MODEL = "torch.optim.swa_utils.AveragedModel"
UPDATE_BN = "torch.optim.swa_utils.update_bn"
_RECALIBRATION_WORDS = ("bn", "batch_norm", "batchnorm", "recalib")


class AveragedModelWithoutBnUpdate(Rule):
    """
    ## What it does
    Finds `torch.optim.swa_utils.AveragedModel` (SWA or EMA) of a model with
    BatchNorm, built without `use_buffers=True` in a file that never calls
    `update_bn(...)`.

    ## Why is this bad?
    `AveragedModel` averages parameters only. Its BatchNorm buffers are the ones
    copied when it was built, so the averaged weights are used with statistics
    that belong to other weights, and its accuracy is far below what it should be.
    `update_bn` recomputes the statistics with one pass over the training data;
    `use_buffers=True` averages the buffers along with the weights (the usual
    choice for EMA).

    ## Known problems
    Reported only when the model is known to have BatchNorm: a layer or project
    class visible in the file, or a known architecture (ResNet, EfficientNet,
    MobileNet ...). Only the file itself is searched for `update_bn`; a
    recalibration done elsewhere is assumed when the averaged model is passed to
    a function whose name mentions `bn`, `batch_norm` or `recalib`, or to a
    function defined outside the file together with the training data. An
    averaged model that loads a saved state (`load_state_dict`) gets its buffers
    from the checkpoint and is not reported.

    ## Fix safety
    No automatic fix: where `update_bn(loader, swa_model)` belongs (after the
    last `update_parameters`, before evaluation) and with which loader depends on
    the training loop.
    """

    code = "BNL104"
    name = "averaged-model-without-bn-update"
    summary = "`AveragedModel` without `update_bn(...)` or `use_buffers=True`"
    triggers = ("AveragedModel",)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        if any(site.qualname == UPDATE_BN for site in model.calls):
            return
        for site in model.calls:
            if site.qualname != AVERAGED_MODEL or _uses_buffers(site.node):
                continue
            averaged = argument(site.node, "model", 0)
            if averaged is None or not contains_batch_norm(model, averaged.value, site.function):
                continue
            names = _names_bound_to(model, site.node)
            if _loads_state(model, names) or _recalibrated_elsewhere(model, names):
                continue
            yield Finding(
                site.node,
                "`AveragedModel` averages the weights but keeps the BatchNorm statistics it "
                "was built with; call `torch.optim.swa_utils.update_bn(train_loader, "
                "swa_model)` after training, or pass `use_buffers=True`",
            )


def _uses_buffers(call: cst.Call) -> bool:
    arg = keyword_arg(call, "use_buffers")
    return arg is not None and not (isinstance(arg.value, cst.Name) and arg.value.value == "False")


def _names_bound_to(model: SemanticModel, call: cst.Call) -> set[str]:
    """The names the averaged model is stored in, also through a conditional
    (``swa_model = AveragedModel(model) if args.swa else None``)."""
    names = set()
    for assignment in model.assignments:
        name = dotted_name(assignment.target)
        if name is not None and assignment.value is not None and _holds(assignment.value, call):
            names.add(name)
    return names


def _holds(value: cst.BaseExpression, call: cst.Call) -> bool:
    if value is call:
        return True
    if isinstance(value, cst.IfExp):
        return _holds(value.body, call) or _holds(value.orelse, call)
    return False


def _loads_state(model: SemanticModel, names: set[str]) -> bool:
    """``swa_model.load_state_dict(checkpoint["swa"])``: buffers come from the checkpoint."""
    for site in model.calls:
        func = site.node.func
        if (
            isinstance(func, cst.Attribute)
            and func.attr.value == "load_state_dict"
            and dotted_name(func.value) in names
        ):
            return True
    return False


def _recalibrated_elsewhere(model: SemanticModel, names: set[str]) -> bool:
    defined_here = {function.name for function in model.functions}
    for site in model.calls:
        passed = [dotted_name(arg.value) for arg in site.node.args]
        if not any(name in names for name in passed):
            continue
        called = dotted_name(site.node.func) or ""
        if any(word in called.lower() for word in _RECALIBRATION_WORDS):
            return True
        with_training_data = any(
            role_from_name(name) is Role.TRAIN for name in _names_in(site.node) if name
        )
        if with_training_data and called.rsplit(".", 1)[-1] not in defined_here:
            return True  # ``finish_swa(swa_model, train_loader)`` from another module
    return False


def _names_in(call: cst.Call) -> list[str | None]:
    """Names passed to ``call``, also inside subscripts (``loaders["train"]``)."""
    found: list[str | None] = []
    for arg in call.args:
        stack: list[cst.CSTNode] = [arg.value]
        while stack:
            node = stack.pop()
            if isinstance(node, cst.SimpleString):
                text = node.evaluated_value
                found.append(text if isinstance(text, str) else None)
            elif isinstance(node, cst.Name | cst.Attribute):
                found.append(dotted_name(node))
            stack.extend(children(node))
    return found
