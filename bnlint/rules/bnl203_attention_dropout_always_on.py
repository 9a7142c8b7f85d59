from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.calls import argument, is_zero_literal, mentions_name
from bnlint.analysis.frameworks import SCALED_DOT_PRODUCT_ATTENTION
from bnlint.analysis.model import FunctionInfo, SemanticModel
from bnlint.analysis.walk import children
from bnlint.rules.base import Anchor, Finding, FixPlan, NodeEdit, Rule


def conditioned_on_training(value: cst.BaseExpression, function: FunctionInfo) -> bool:
    """Does ``value`` depend on a training flag: ``p if self.training else 0.0``,
    or a local that is assigned from one or under ``if self.training``?"""
    if mentions_name(value, "training"):
        return True
    if not isinstance(value, cst.Name):
        return False
    if value.value in function.parameter_names():
        return True  # the caller decides
    return _assigned_under_training(function.node.body, value.value, False)


def _assigned_under_training(node: cst.CSTNode, name: str, guarded: bool) -> bool:
    if isinstance(node, cst.Assign | cst.AnnAssign | cst.AugAssign):
        targets = (
            [t.target for t in node.targets] if isinstance(node, cst.Assign) else [node.target]
        )
        if any(isinstance(t, cst.Name) and t.value == name for t in targets):
            return guarded or (node.value is not None and mentions_name(node.value, "training"))
        return False
    if isinstance(node, cst.If | cst.While | cst.IfExp) and mentions_name(node.test, "training"):
        guarded = True
    return any(_assigned_under_training(child, name, guarded) for child in children(node))


class AttentionDropoutAlwaysOn(Rule):
    """
    ## What it does
    Finds `F.scaled_dot_product_attention(..., dropout_p=p)` inside an `nn.Module`
    method where `p` is not zero and does not depend on `self.training`.

    ## Why is this bad?
    `scaled_dot_product_attention` is a function: it applies `dropout_p` whenever it
    is called, whatever the module's mode. Attention weights are then dropped at
    inference too, so evaluation is noisy and worse. (Real cases: timm PR #1978,
    nanoGPT PR #240.)

    ## Known problems
    A `dropout_p` that is a parameter of the method is left to the caller and not
    reported.

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
            position = SCALED_DOT_PRODUCT_ATTENTION[site.qualname or ""]
            arg = argument(site.node, "dropout_p", position)
            if arg is None or is_zero_literal(arg.value):
                continue
            if conditioned_on_training(arg.value, site.function or method):
                continue
            value = model.code(arg.value).strip()
            self_name = method.self_name or "self"
            fix = None
            if method.self_name is not None:
                if not isinstance(arg.value, cst.Name | cst.Attribute | cst.Integer | cst.Float):
                    value = f"({value})"
                conditional = f"{value} if {self_name}.training else 0.0"
                fix = FixPlan(
                    (NodeEdit(arg.value, Anchor.REPLACE, conditional),),
                    safe=True,
                    description="Use `dropout_p` only in training mode",
                )
            yield Finding(
                arg,
                f"attention dropout `dropout_p={value}` stays on after `model.eval()`; "
                f"use `dropout_p={value} if {self_name}.training else 0.0`",
                fix,
            )
