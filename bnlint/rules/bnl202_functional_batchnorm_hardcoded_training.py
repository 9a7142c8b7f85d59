from __future__ import annotations

from collections.abc import Iterator

from bnlint.analysis.frameworks import FUNCTIONAL_BATCH_NORM
from bnlint.analysis.model import SemanticModel
from bnlint.analysis.training_flag import FlagState, training_flag
from bnlint.rules.base import Finding, Rule
from bnlint.rules.fixes import set_keyword


class FunctionalBatchNormHardcodedTraining(Rule):
    """
    ## What it does
    Finds `F.batch_norm(..., training=True)` (the literal `True`, by keyword or
    position) inside an `nn.Module` method.

    ## Why is this bad?
    With `training=True` the layer normalises every batch with that batch's own
    statistics and updates the running buffers, also after `model.eval()`.
    Predictions then depend on what else is in the batch, and evaluating the model
    changes it.

    ## Known problems
    None known. Test-time adaptation methods that want batch statistics at test
    time should say so with `# noqa: BNL202`.

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
            position = FUNCTIONAL_BATCH_NORM[site.qualname or ""]
            state, arg = training_flag(site.node, "training", position)
            if state is not FlagState.LITERAL_TRUE:
                continue
            fix = None
            if method.self_name is not None:
                fix = set_keyword(
                    site.node, arg, "training", f"{method.self_name}.training", safe=True
                )
            yield Finding(
                site.node,
                f"`{model.code(site.node.func)}(..., training=True)` normalises with batch "
                "statistics and updates the running stats even in eval mode; "
                f"pass `training={method.self_name or 'self'}.training`",
                fix,
            )
