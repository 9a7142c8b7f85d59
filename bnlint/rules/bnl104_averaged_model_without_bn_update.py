from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.architectures import contains_batch_norm
from bnlint.analysis.calls import argument, keyword_arg
from bnlint.analysis.model import CallSite, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.rules.base import Finding, Rule

AVERAGED_MODEL = "torch.optim.swa_utils.AveragedModel"
UPDATE_BN = "torch.optim.swa_utils.update_bn"


class AveragedModelWithoutBnUpdate(Rule):
    """
    ## What it does
    Finds `torch.optim.swa_utils.AveragedModel` (SWA or EMA) built without
    `use_buffers=True` in a file that never calls `update_bn(...)`.

    ## Why is this bad?
    `AveragedModel` averages parameters only. Its BatchNorm buffers are the ones
    copied when it was built, so the averaged weights are used with statistics
    that belong to other weights, and its accuracy is far below what it should be.
    `update_bn` recomputes the statistics with one pass over the training data;
    `use_buffers=True` averages the buffers along with the weights (the usual
    choice for EMA).

    ## Known problems
    Only the file itself is searched for `update_bn`; a recalibration done in
    another file through a helper is recognised when the averaged model is passed
    to a function whose name mentions `bn`, `batch_norm` or `recalib`. A model
    known to have no BatchNorm (ViT, BERT, GPT ...) is not reported.

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
            if (
                averaged is not None
                and contains_batch_norm(model, averaged.value, site.function) is False
            ):
                continue
            if _recalibrated_elsewhere(model, site):
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


def _recalibrated_elsewhere(model: SemanticModel, averaged: CallSite) -> bool:
    names = {dotted_name(a.target) for a in model.assignments if a.value is averaged.node} - {None}
    for site in model.calls:
        called = (dotted_name(site.node.func) or "").lower()
        recalibrates = any(word in called for word in ("bn", "batch_norm", "batchnorm", "recalib"))
        if recalibrates and any(dotted_name(arg.value) in names for arg in site.node.args):
            return True
    return False
