from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from bnlint.analysis.calls import argument, is_zero_literal
from bnlint.analysis.frameworks import FUNCTIONAL_DROPOUT
from bnlint.analysis.model import CallSite, FunctionInfo, SemanticModel
from bnlint.analysis.training_flag import (
    FlagState,
    may_run_in_eval,
    set_by_training_flag,
    training_flag,
)
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
    reported, and `training=True` is the way to say so. A module-level helper
    function is checked when a method of an `nn.Module` of the same file calls
    it (directly or through other helpers) where the module may be in eval mode,
    and not when every such call passes a literal zero rate; static methods and
    helpers of other files are not checked. A rate that is a parameter defaulting
    to zero, which no call in the file sets (or only passes on the caller's own
    such parameter), is an opt-in left off: latent diffusion's
    `p_sample(..., noise_dropout=0.)` is not reported. Neither is a rate zeroed
    where the training flag is off (`if not training: dropout_p = 0.0`, as
    `F.multi_head_attention_forward` and its copies do).

    ## Fix safety
    Adding `training=self.training` to a dropout that defaults to `training=True`
    is safe: nothing changes in training mode and dropout turns off in eval mode,
    as `nn.Dropout` does (if the dropout was meant to stay on at inference, write
    `training=True` instead). The fix is unsafe for `alpha_dropout` and
    `feature_alpha_dropout` (training starts dropping, which changes the results
    of training) and for `torch.dropout(..., True)` (the `True` may be deliberate).
    In a helper function there is no fix: the helper needs a new `training`
    parameter and every caller must pass it, callers in other files included.
    A default of `True` would keep the bug for callers left unchanged, a default
    of `False` would silently stop dropout in their training, and a required
    parameter would break them; only a person can update every caller.
    """

    code = "BNL201"
    name = "functional-dropout-always-on"
    summary = "functional dropout without `training=self.training` inside an nn.Module"
    fixable = True
    triggers = ("dropout",)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for site in model.calls:
            if site.qualname not in FUNCTIONAL_DROPOUT:
                continue
            method = model.enclosing_module_method(site.function)
            if method is not None:
                yield from self._check_method_call(model, site, method)
            elif site.function is not None and _is_helper(site.function):
                yield from self._check_helper_call(model, site, site.function)

    def _check_method_call(
        self, model: SemanticModel, site: CallSite, method: FunctionInfo
    ) -> Iterator[Finding]:
        problem = _problem(model, site)
        if (
            problem is None
            or not may_run_in_eval(method, site.node)
            or _rate_left_at_zero(model, site)
            or _rate_follows_training(site)
        ):
            return
        parameter, default, arg = problem.parameter, problem.default, problem.arg
        flag = f"{method.self_name}.training"
        safe = default is True  # otherwise training behaviour changes too
        yield Finding(
            site.node,
            f"{problem.text}; pass `{parameter}={flag}`",
            set_keyword(model, site.node, arg, parameter, flag, safe=safe),
        )

    def _check_helper_call(
        self, model: SemanticModel, site: CallSite, helper: FunctionInfo
    ) -> Iterator[Finding]:
        problem = _problem(model, site)
        if problem is None:
            return
        callers = [
            (call, method)
            for call, method in model.module_method_callers(helper)
            if may_run_in_eval(method, call.node) and not _passes_zero_rate(site, helper, call)
        ]
        if not callers:
            return  # used outside modules only, or only with a zero rate
        method = callers[0][1]
        where = f"{method.cls.name}.{method.name}" if method.cls else method.name
        more = f" (and {len(callers) - 1} more)" if len(callers) > 1 else ""
        yield Finding(
            site.node,
            f"{problem.text}: the helper `{helper.name}` runs in `{where}`{more}; give "
            f"`{helper.name}` a `{problem.parameter}` parameter and pass "
            f"`{problem.parameter}=self.training` from the method",
            None,
        )


@dataclass(frozen=True)
class _Problem:
    text: str
    parameter: str
    default: bool | None
    arg: cst.Arg | None


def _problem(model: SemanticModel, site: CallSite) -> _Problem | None:
    """What is wrong with the training flag of this functional dropout call, if anything."""
    parameter, position, default = FUNCTIONAL_DROPOUT[site.qualname or ""]
    rate = argument(site.node, "p", 1)
    if rate is not None and is_zero_literal(rate.value):
        return None  # drops nothing in either mode
    state, arg = training_flag(site.node, parameter, position)
    func = model.code(site.node.func)
    if state is FlagState.MISSING and default is True:
        text = (
            f"`{func}` without `{parameter}=` defaults to `{parameter}=True` "
            "and stays on after `model.eval()`"
        )
    elif state is FlagState.MISSING and default is False:
        text = (
            f"`{func}` without `{parameter}=` defaults to `{parameter}=False` "
            "and never drops anything, not even in training"
        )
    elif state is FlagState.LITERAL_TRUE and default is None:
        text = f"`{func}(..., {parameter}=True)` stays on after `model.eval()`"
    else:
        return None  # set by the caller, deliberate, or a required argument is missing
    return _Problem(text, parameter, default, arg)


def _rate_follows_training(site: CallSite) -> bool:
    """The rate is zeroed where the training flag is off (``if not training:
    dropout_p = 0.0``, as ``F.multi_head_attention_forward`` does)."""
    rate = argument(site.node, "p", 1)
    return (
        rate is not None
        and site.function is not None
        and set_by_training_flag(rate.value, site.function)
    )


def _rate_left_at_zero(model: SemanticModel, site: CallSite) -> bool:
    """The rate is a parameter of the method that defaults to 0, and no call of
    the method in the file sets it: PyTorch's reference attention,
    ``torch.dropout(w, dropout_p, train=True)``, called without ``dropout_p``;
    latent diffusion's ``p_sample(..., noise_dropout=0.)``, which its sampling
    loop only hands its own ``noise_dropout=0.`` parameter."""
    rate = argument(site.node, "p", 1)
    if site.function is None or rate is None or not isinstance(rate.value, cst.Name):
        return False
    return _zero_unless_set(model, site.function, rate.value.value, depth=0)


def _zero_unless_set(model: SemanticModel, function: FunctionInfo, name: str, depth: int) -> bool:
    """``name`` is a parameter of ``function`` that defaults to 0, and every call
    of ``function`` in the file leaves it out or passes on such a parameter."""
    default = function.parameter_default(name)
    if default is None or not is_zero_literal(default) or depth > 3:
        return False
    for call in model.calls_of(function):
        passed = function.argument_for(call.node, name)
        if passed is None:
            continue
        value = passed.value
        if not (
            isinstance(value, cst.Name)
            and call.function is not None
            and _zero_unless_set(model, call.function, value.value, depth + 1)
        ):
            return False
    return True


def _is_helper(function: FunctionInfo) -> bool:
    """A module-level function (not a method, not nested)."""
    return function.cls is None and function.parent is None


def _passes_zero_rate(site: CallSite, helper: FunctionInfo, call: CallSite) -> bool:
    """The dropout rate is a parameter of the helper, and ``call`` (a direct call
    of the helper) passes a literal 0."""
    rate = argument(site.node, "p", 1)
    direct = isinstance(call.node.func, cst.Name) and call.node.func.value == helper.name
    if not direct or rate is None or not isinstance(rate.value, cst.Name):
        return False
    passed = helper.argument_for(call.node, rate.value.value)
    return passed is not None and is_zero_literal(passed.value)
