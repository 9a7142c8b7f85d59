from __future__ import annotations

from collections.abc import Iterator

from bnlint.analysis.calls import is_true_literal
from bnlint.analysis.frameworks import STOCHASTIC_DEPTH
from bnlint.analysis.model import CallSite, FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.training_flag import FlagState, may_run_in_eval, training_flag
from bnlint.rules.base import Finding, Rule
from bnlint.rules.fixes import set_keyword

_DROP_PATH_NAMES = ("drop_path", "droppath", "stochastic_depth", "drop_connect")


def local_drop_path_helpers(model: SemanticModel) -> dict[str, int]:
    """Module-level drop-path functions of this file whose ``training`` parameter
    defaults to ``True``: name -> position of that parameter."""
    helpers = {}
    for function in model.functions:
        if function.parent is not None or function.cls is not None:
            continue
        if not any(part in function.name.lower() for part in _DROP_PATH_NAMES):
            continue
        params = [*function.node.params.posonly_params, *function.node.params.params]
        for position, param in enumerate(params):
            default = param.default
            if param.name.value == "training" and default is not None and is_true_literal(default):
                helpers[function.name] = position
    return helpers


class StochasticDepthAlwaysOn(Rule):
    """
    ## What it does
    Finds `torchvision.ops.stochastic_depth(...)`, or a drop-path function defined
    at the top level of the same file whose `training` parameter defaults to
    `True`, called in a method of an `nn.Module` without a `training` argument.

    ## Why is this bad?
    Stochastic depth randomly drops whole residual branches. Called as a function
    it does not know the module's mode, so with the default `training=True` it keeps
    dropping branches at inference: predictions are random and accuracy drops.

    ## Known problems
    Drop-path helpers imported from other files of the project are not checked
    yet. timm's `drop_path` defaults to `training=False`, and so does the copy
    most projects carry; those are not this bug. An explicit `training=True` is
    taken as deliberate, and calls that run only in training (in `__init__`,
    Lightning's `training_step`, mmengine's `train_step`, or under
    `if self.training:`) are not reported.

    ## Fix safety
    Safe: `training=self.training` is unchanged in training mode and turns the
    branch dropping off in eval mode, as `torchvision.ops.StochasticDepth` does.
    """

    code = "BNL204"
    name = "stochastic-depth-always-on"
    summary = "stochastic depth / drop path without `training=self.training` inside an nn.Module"
    fixable = True
    triggers = ("stochastic_depth", "drop_path", "droppath", "drop_connect")

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        helpers = local_drop_path_helpers(model)
        for site in model.calls:
            position = STOCHASTIC_DEPTH.get(site.qualname or "")
            if position is None and site.qualname is None:
                position = helpers.get(dotted_name(site.node.func) or "")
            if position is None:
                continue
            method = model.enclosing_module_method(site.function)
            if method is not None:
                yield from self._check_call(model, site, position, method)

    def _check_call(
        self, model: SemanticModel, site: CallSite, position: int, method: FunctionInfo
    ) -> Iterator[Finding]:
        state, _ = training_flag(site.node, "training", position)
        if state is not FlagState.MISSING or not may_run_in_eval(method, site.node):
            return
        flag = f"{method.self_name}.training"
        yield Finding(
            site.node,
            f"`{model.code(site.node.func)}` without `training=` keeps dropping residual "
            f"branches after `model.eval()`; pass `training={flag}`",
            set_keyword(model, site.node, None, "training", flag, safe=True),
        )
