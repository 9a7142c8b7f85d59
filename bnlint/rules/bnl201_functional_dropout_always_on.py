from __future__ import annotations

from collections.abc import Iterator

from bnlint.analysis.frameworks import FUNCTIONAL_DROPOUT
from bnlint.analysis.model import SemanticModel
from bnlint.analysis.training_flag import FlagState, training_flag
from bnlint.rules.base import Finding, Rule
from bnlint.rules.fixes import set_keyword


class FunctionalDropoutAlwaysOn(Rule):
    """
    ## What it does
    Finds functional dropout (`F.dropout`, `dropout1d/2d/3d`, `alpha_dropout`,
    `feature_alpha_dropout`, `torch.dropout`) called inside an `nn.Module` method
    without a `training` argument, or with `training=True` written out.

    ## Why is this bad?
    Unlike `nn.Dropout`, the functional form does not know the module's mode. Its
    default is `training=True`, so dropout keeps dropping activations after
    `model.eval()`: evaluation is noisy and lower than it should be. (torchvision's
    Swin `shifted_window_attention` had exactly this bug, fixed in pytorch/vision#7224.)
    `alpha_dropout` and `feature_alpha_dropout` default to `training=False`
    instead, so without the argument they never drop anything, not even in training.

    ## Known problems
    Only calls inside methods of classes known to be `nn.Module`s are checked (a
    subclass of `nn.Module`, of another module class in the file, or of a framework
    base such as `LightningModule` or `PreTrainedModel`). A helper function called
    from `forward` is the semantic model's call-graph case.

    ## Fix safety
    Safe: `training=self.training` gives the same result in training mode and turns
    dropout off in eval mode, which is what the module promises.
    """

    code = "BNL201"
    name = "functional-dropout-always-on"
    summary = "functional dropout without `training=self.training` inside an nn.Module"
    fixable = True
    triggers = ("dropout",)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for site, method in model.module_method_calls(FUNCTIONAL_DROPOUT):
            parameter, position, default = FUNCTIONAL_DROPOUT[site.qualname or ""]
            state, arg = training_flag(site.node, parameter, position)
            if state is FlagState.MISSING and default is None:
                continue  # a required argument is missing: Python reports that
            if state not in {FlagState.MISSING, FlagState.LITERAL_TRUE}:
                continue
            func = model.code(site.node.func)
            if state is FlagState.LITERAL_TRUE:
                problem = f"`{func}(..., {parameter}=True)` stays on after `model.eval()`"
            elif default:
                problem = (
                    f"`{func}` without `{parameter}=` defaults to `{parameter}=True` "
                    "and stays on after `model.eval()`"
                )
            else:
                problem = (
                    f"`{func}` without `{parameter}=` defaults to `{parameter}=False` "
                    "and never drops anything, not even in training"
                )
            fix = None
            if method.self_name is not None:
                flag = f"{method.self_name}.training"
                fix = set_keyword(site.node, arg, parameter, flag, safe=True)
            yield Finding(
                site.node,
                f"{problem}; pass `{parameter}={method.self_name or 'self'}.training`",
                fix,
            )
