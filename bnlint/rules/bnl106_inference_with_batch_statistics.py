from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.architectures import BATCH_NORM_CLASSES
from bnlint.analysis.calls import argument, positional_args
from bnlint.analysis.frameworks import EVALUATION_HOOKS, GRAD_MODE_CONTEXTS
from bnlint.analysis.model import CallSite, SemanticModel
from bnlint.diagnostic import Severity
from bnlint.rules.base import Finding, Rule

FLAG = "track_running_stats"
PARTIAL = "functools.partial"
NO_GRAD_CONTEXTS = GRAD_MODE_CONTEXTS - {
    "torch.enable_grad",
    "torch.autograd.enable_grad",
    "torch.autograd.grad_mode.enable_grad",
}


class InferenceWithBatchStatistics(Rule):
    """
    ## What it does
    Finds BatchNorm layers built with `track_running_stats=False` (also through
    `functools.partial(nn.BatchNorm2d, track_running_stats=False)`) in a file that
    also evaluates models: `.eval()`, or `torch.no_grad()` /
    `torch.inference_mode()` outside module methods, or Lightning's
    `validation_step` / `test_step` / `predict_step`.

    ## Why is this bad?
    Without running statistics, BatchNorm normalises with the statistics of the
    batch it is given, also in eval mode. Predictions then depend on what else is
    in the batch: a single image, a batch of one class, or a different batch size
    at serving time give different answers for the same input.

    ## Known problems
    Whether the model is evaluated is judged from the file alone: a model
    definition file that never evaluates is not reported (no-grad code inside a
    module's own methods, such as weight initialisation, does not count). Some
    methods (test-time adaptation, some GAN discriminators) want batch statistics
    on purpose: say so with `# noqa: BNL106`. Reported as a warning.

    ## Fix safety
    No automatic fix: keep `track_running_stats=True` (the default), or document
    the choice with `# noqa: BNL106`.
    """

    code = "BNL106"
    name = "inference-with-batch-statistics"
    summary = "BatchNorm with `track_running_stats=False` in a model that is evaluated"
    severity = Severity.WARNING
    triggers = ("BatchNorm",)  # every BatchNorm class name; the flag may be positional

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        if not _evaluates(model):
            return
        for site in model.calls:
            flag = _flag_of(model, site)
            if flag is not None and _is_false(flag.value):
                yield Finding(
                    flag,
                    "BatchNorm without running statistics normalises with the statistics of "
                    "each batch also in eval mode, so predictions depend on the batch; keep "
                    "`track_running_stats=True` or document the choice with `# noqa: BNL106`",
                )


def _is_false(value: cst.BaseExpression) -> bool:
    return isinstance(value, cst.Name) and value.value == "False"


def _flag_of(model: SemanticModel, site: CallSite) -> cst.Arg | None:
    """The ``track_running_stats`` argument of a BatchNorm construction, or of a
    ``functools.partial`` over a BatchNorm class (its arguments shift by one)."""
    if site.qualname in BATCH_NORM_CLASSES:
        return argument(site.node, FLAG, _flag_position(site.qualname))
    if site.qualname == PARTIAL:
        args = positional_args(site.node)
        layer = model.qualname(args[0].value) if args else None
        if layer in BATCH_NORM_CLASSES:
            return argument(site.node, FLAG, _flag_position(layer) + 1)
    return None


def _flag_position(qualname: str) -> int:
    """``BatchNorm2d(num_features, eps, momentum, affine, track_running_stats)``;
    the lazy classes have no ``num_features``."""
    return 3 if qualname.rsplit(".", 1)[-1].startswith("Lazy") else 4


def _evaluates(model: SemanticModel) -> bool:
    for site in model.calls:
        func = site.node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "eval" and not site.node.args:
            return True
        in_module = model.enclosing_module_method(site.function) is not None
        if site.qualname in NO_GRAD_CONTEXTS and not in_module:
            return True
    return any(method in EVALUATION_HOOKS for cls in model.module_classes for method in cls.methods)
