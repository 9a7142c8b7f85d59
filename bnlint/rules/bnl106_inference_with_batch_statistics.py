from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.architectures import BATCH_NORM_CLASSES
from bnlint.analysis.calls import keyword_arg
from bnlint.analysis.frameworks import GRAD_MODE_CONTEXTS
from bnlint.analysis.model import SemanticModel
from bnlint.diagnostic import Severity
from bnlint.rules.base import Finding, Rule


class InferenceWithBatchStatistics(Rule):
    """
    ## What it does
    Finds BatchNorm layers built with `track_running_stats=False` in a file that
    also evaluates models (`.eval()`, `torch.no_grad()`, `torch.inference_mode()`).

    ## Why is this bad?
    Without running statistics, BatchNorm normalises with the statistics of the
    batch it is given, also in eval mode. Predictions then depend on what else is
    in the batch: a single image, a batch of one class, or a different batch size
    at serving time give different answers for the same input.

    ## Known problems
    Whether the model is evaluated is judged from the file alone. Some methods
    (test-time adaptation, some GAN discriminators) want batch statistics on
    purpose: say so with `# noqa: BNL106`. Reported as a warning.

    ## Fix safety
    No automatic fix: keep `track_running_stats=True` (the default), or document
    the choice with `# noqa: BNL106`.
    """

    code = "BNL106"
    name = "inference-with-batch-statistics"
    summary = "BatchNorm with `track_running_stats=False` in a model that is evaluated"
    severity = Severity.WARNING
    triggers = ("track_running_stats",)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        if not _evaluates(model):
            return
        for site in model.calls:
            if site.qualname not in BATCH_NORM_CLASSES:
                continue
            flag = keyword_arg(site.node, "track_running_stats")
            if (
                flag is not None
                and isinstance(flag.value, cst.Name)
                and flag.value.value == "False"
            ):
                yield Finding(
                    flag,
                    "BatchNorm without running statistics normalises with the statistics of "
                    "each batch also in eval mode, so predictions depend on the batch; keep "
                    "`track_running_stats=True` or document the choice with `# noqa: BNL106`",
                )


def _evaluates(model: SemanticModel) -> bool:
    for site in model.calls:
        func = site.node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "eval" and not site.node.args:
            return True
        if site.qualname in GRAD_MODE_CONTEXTS and site.qualname != "torch.enable_grad":
            return True
    return False
