from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.calls import argument
from bnlint.analysis.frameworks import BATCH_NORM_RUNNING_STATS, FUNCTIONAL_BATCH_NORM
from bnlint.analysis.model import FunctionInfo, SemanticModel
from bnlint.analysis.training_flag import FlagState, may_run_in_eval, training_flag
from bnlint.analysis.values import values_at
from bnlint.rules.base import Finding, Rule
from bnlint.rules.fixes import set_keyword

# Tensor methods that return a new tensor: the running statistics handed over
# are a copy, and the buffers they came from are never updated.
_COPIES = frozenset({"repeat", "repeat_interleave", "clone"})


class FunctionalBatchNormHardcodedTraining(Rule):
    """
    ## What it does
    Finds `F.batch_norm(..., training=True)` (the literal `True`, by keyword or
    position) in a method of an `nn.Module`, when the call is given running
    statistics.

    ## Why is this bad?
    With `training=True` the layer normalises every batch with that batch's own
    statistics and updates the running buffers, also after `model.eval()`.
    Predictions then depend on what else is in the batch, and evaluating the model
    changes it.

    ## Known problems
    A call whose `running_mean` or `running_var` is `None`, a freshly built
    tensor or a copy (`self.running_mean.repeat(b)`) keeps no statistics, so
    `training=True` is the only choice: weight standardisation (timm's
    `StdConv2d`, HF's `WeightStandardizedConv2d`) and adaptive instance norm
    through `batch_norm` (MUNIT's AdaIN) do this and are not reported. Neither
    are calls that run only in training (in `__init__`, Lightning's
    `training_step`, mmengine's `train_step`, or under `if self.training:`).
    Test-time adaptation methods that want batch statistics at test time should
    say so with `# noqa: BNL202`.

    ## Fix safety
    Safe: `training=self.training` is the same in training mode and uses the
    running statistics in eval mode, as `nn.BatchNorm2d` does.
    """

    code = "BNL202"
    name = "functional-batchnorm-hardcoded-training"
    summary = "`F.batch_norm(..., training=True)` inside an nn.Module"
    fixable = True
    triggers = ("batch_norm",)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for site, method in model.module_method_calls(FUNCTIONAL_BATCH_NORM):
            qualname = site.qualname or ""
            state, arg = training_flag(site.node, "training", FUNCTIONAL_BATCH_NORM[qualname])
            if (
                state is not FlagState.LITERAL_TRUE
                or not _keeps_running_stats(model, site.node, qualname, method)
                or not may_run_in_eval(method, site.node)
            ):
                continue
            flag = f"{method.self_name}.training"
            yield Finding(
                site.node,
                f"`{model.code(site.node.func)}(..., training=True)` normalises with batch "
                "statistics and updates the running stats even in eval mode; "
                f"pass `training={flag}`",
                set_keyword(model, site.node, arg, "training", flag, safe=True),
            )


def _keeps_running_stats(
    model: SemanticModel, call: cst.Call, qualname: str, method: FunctionInfo
) -> bool:
    """False when a running statistic is ``None`` or a new tensor: one that a
    ``torch`` call builds right there (``torch.zeros(c)``), or a copy
    (``running_mean = self.running_mean.repeat(b)``, MUNIT's AdaIN, which is
    instance norm on purpose): no buffer is updated."""
    for name, position in BATCH_NORM_RUNNING_STATS.get(qualname, ()):
        arg = argument(call, name, position)
        if arg is None:
            return False  # missing, or hidden in `**kwargs`: nothing is proven
        value = arg.value
        if isinstance(value, cst.Name) and value.value == "None":
            return False
        if _new_tensor(model, value) or (
            isinstance(value, cst.Name)
            and (values := values_at(model, value, method))
            and all(_new_tensor(model, v) for v in values)
        ):
            return False
    return True


def _new_tensor(model: SemanticModel, value: cst.BaseExpression) -> bool:
    if not isinstance(value, cst.Call):
        return False
    if (model.qualname(value.func) or "").startswith("torch."):
        return True
    return isinstance(value.func, cst.Attribute) and value.func.attr.value in _COPIES
