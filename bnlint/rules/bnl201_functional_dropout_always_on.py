from __future__ import annotations

from collections.abc import Iterator

from bnlint.analysis.calls import argument, is_zero_literal
from bnlint.analysis.frameworks import FUNCTIONAL_DROPOUT
from bnlint.analysis.model import CallSite, FunctionInfo, SemanticModel
from bnlint.analysis.training_flag import FlagState, may_run_in_eval, training_flag
from bnlint.rules.base import Finding, Rule
from bnlint.rules.fixes import set_keyword


class FunctionalDropoutAlwaysOn(Rule):
    """
    ## What it does
    Finds functional dropout (`F.dropout`, `dropout1d/2d/3d`, `alpha_dropout`,
    `feature_alpha_dropout`, `torch.dropout`, under any import spelling) called in
    a method of an `nn.Module` without a `training` argument. Also finds
    `torch.dropout(x, p, True)`, whose `train` argument has no default: the
    reference implementation in the `scaled_dot_product_attention` docs writes
    `train=True`, and copies of it into a `forward` drop at inference.

    ## Why is this bad?
    Unlike `nn.Dropout`, the functional form does not know the module's mode. Its
    default is `training=True`, so dropout keeps dropping activations after
    `model.eval()`: evaluation is noisy and lower than it should be. (torchvision's
    Swin `shifted_window_attention` had exactly this bug, fixed in pytorch/vision#7224.)
    `alpha_dropout` and `feature_alpha_dropout` default to `training=False`
    instead, so without the argument they never drop anything, not even in training.

    ## Known problems
    Only calls in instance methods of classes known to be `nn.Module`s are
    checked: subclasses of `nn.Module` (directly, through another module class
    of the file, or through a framework base such as `LightningModule` or
    `PreTrainedModel`), or of an imported class when they define `forward`.
    Calls that run only in training (in `__init__`, Lightning's `training_step`,
    mmengine's `train_step`, under `if self.training:`, or after
    `if not self.training: return`) and calls with `p=0` are not reported. An
    explicit `training=True` on the `F.` functions is taken as deliberate
    (Monte-Carlo dropout) and not reported; dropout meant to stay on at
    inference but written without the argument (Tacotron 2's pre-net) is
    reported, and `training=True` is the way to say so. Helper functions and
    static methods that a `forward` calls are not checked yet.

    ## Fix safety
    Adding `training=self.training` to a dropout that defaults to `training=True`
    is safe: nothing changes in training mode and dropout turns off in eval mode,
    as `nn.Dropout` does (if the dropout was meant to stay on at inference, write
    `training=True` instead). The fix is unsafe for `alpha_dropout` and
    `feature_alpha_dropout` (training starts dropping, which changes the results
    of training) and for `torch.dropout(..., True)` (the `True` may be deliberate).
    """

    code = "BNL201"
    name = "functional-dropout-always-on"
    summary = "functional dropout without `training=self.training` inside an nn.Module"
    fixable = True
    triggers = ("dropout",)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for site, method in model.module_method_calls(FUNCTIONAL_DROPOUT):
            yield from self._check_call(model, site, method)

    def _check_call(
        self, model: SemanticModel, site: CallSite, method: FunctionInfo
    ) -> Iterator[Finding]:
        parameter, position, default = FUNCTIONAL_DROPOUT[site.qualname or ""]
        rate = argument(site.node, "p", 1)
        if rate is not None and is_zero_literal(rate.value):
            return  # drops nothing in either mode
        state, arg = training_flag(site.node, parameter, position)
        func = model.code(site.node.func)
        if state is FlagState.MISSING and default is True:
            problem = (
                f"`{func}` without `{parameter}=` defaults to `{parameter}=True` "
                "and stays on after `model.eval()`"
            )
        elif state is FlagState.MISSING and default is False:
            problem = (
                f"`{func}` without `{parameter}=` defaults to `{parameter}=False` "
                "and never drops anything, not even in training"
            )
        elif state is FlagState.LITERAL_TRUE and default is None:
            problem = f"`{func}(..., {parameter}=True)` stays on after `model.eval()`"
        else:
            return  # set by the caller, deliberate, or a required argument is missing
        if not may_run_in_eval(method, site.node):
            return
        flag = f"{method.self_name}.training"
        safe = default is True  # otherwise training behaviour changes too
        yield Finding(
            site.node,
            f"{problem}; pass `{parameter}={flag}`",
            set_keyword(model, site.node, arg, parameter, flag, safe=safe),
        )
