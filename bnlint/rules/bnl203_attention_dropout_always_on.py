from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.calls import argument, is_zero_literal
from bnlint.analysis.frameworks import SCALED_DOT_PRODUCT_ATTENTION
from bnlint.analysis.model import CallSite, FunctionInfo, SemanticModel
from bnlint.analysis.training_flag import depends_on_training, may_run_in_eval
from bnlint.rules.base import Anchor, Finding, FixPlan, NodeEdit, Rule


class AttentionDropoutAlwaysOn(Rule):
    """
    ## What it does
    Finds `F.scaled_dot_product_attention(..., dropout_p=p)` in a method of an
    `nn.Module` where `p` is not zero in eval mode: not a literal zero, not
    conditioned on `self.training`, and the call itself not inside an
    `if self.training:` branch.

    ## Why is this bad?
    `scaled_dot_product_attention` is a function: it applies `dropout_p` whenever it
    is called, whatever the module's mode. Attention weights are then dropped at
    inference too, so evaluation is noisy and worse. (Real cases: timm PR #1978,
    nanoGPT PR #240.)

    ## Known problems
    `p` counts as conditioned when it is a conditional with a zero branch
    (`p if self.training else 0.0`, also on a flag of your own), reads a
    `training` flag, is a parameter of the method (the caller decides), or is a
    local that is set to zero on some path or assigned under an `if` on
    `training`. Calls that run only in training (in Lightning's `training_step`,
    mmengine's `train_step`, or under `if self.training:`) are not reported.
    Helper functions that a `forward` calls are not checked.

    ## Fix safety
    Safe: `dropout_p=p if self.training else 0.0` is unchanged in training mode and
    turns attention dropout off in eval mode.
    """

    code = "BNL203"
    name = "attention-dropout-always-on"
    summary = "`scaled_dot_product_attention(dropout_p=...)` not conditioned on `self.training`"
    fixable = True
    triggers = ("scaled_dot_product_attention",)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for site, method in model.module_method_calls(SCALED_DOT_PRODUCT_ATTENTION):
            yield from self._check_call(model, site, method)

    def _check_call(
        self, model: SemanticModel, site: CallSite, method: FunctionInfo
    ) -> Iterator[Finding]:
        position = SCALED_DOT_PRODUCT_ATTENTION[site.qualname or ""]
        arg = argument(site.node, "dropout_p", position)
        if arg is None or is_zero_literal(arg.value):
            return
        function = site.function or method
        if depends_on_training(arg.value, function) or not may_run_in_eval(method, site.node):
            return
        value = model.code(arg.value).strip()
        operand = value
        if isinstance(arg.value, cst.IfExp | cst.Lambda | cst.NamedExpr):
            operand = f"({value})"  # the only expressions that bind looser than `if`
        conditional = f"{operand} if {method.self_name}.training else 0.0"
        fix = FixPlan(
            (NodeEdit(arg.value, Anchor.REPLACE, conditional),),
            safe=True,
            description="Use `dropout_p` only in training mode",
        )
        yield Finding(
            arg,
            f"attention dropout `dropout_p={value}` stays on after `model.eval()`; "
            f"use `dropout_p={conditional}`",
            fix,
        )
