from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.frameworks import GRAD_MODE_CONTEXTS
from bnlint.analysis.model import SemanticModel
from bnlint.rules.base import Anchor, Finding, FixPlan, NodeEdit, Rule

MODE_METHODS = frozenset({"eval", "train"})


class ModeCallMissingParens(Rule):
    """
    ## What it does
    Finds `x.eval` and `x.train` written as a statement of their own (on any
    object: `model`, `self.model`, `model.module`, a loop variable), and
    `torch.no_grad`, `torch.enable_grad` and `torch.inference_mode` (under any
    import: `from torch import no_grad`, `torch.autograd.no_grad`, ...) used
    without a call, as a statement or as `with torch.no_grad:`.

    ## Why is this bad?
    `model.eval` on its own line only looks the method up and throws it away: the
    model stays in training mode, so BatchNorm keeps using batch statistics and
    dropout stays on during evaluation. `with torch.no_grad:` raises a `TypeError`
    when the line finally runs, often at the end of a long training run. A bare
    `torch.no_grad` statement does nothing at all.

    ## Known problems
    The object is not checked: a bare `x.eval` statement does nothing whatever
    `x` is, but the message then talks about a mode that `x` may not have. A
    class whose `eval`/`train` attribute is a property with side effects would be
    reported; no PyTorch class does that. Uses as values (`switch = model.eval`,
    callbacks) and the decorator `@torch.no_grad`, valid without parentheses
    since torch 2.0, are not reported.

    ## Fix safety
    Adding `()` is safe: it does what the line was written to do. A bare
    `torch.no_grad` statement gets no fix, because `torch.no_grad()` on its own
    line does nothing either: use `with torch.no_grad():` around the code.
    """

    code = "BNL004"
    name = "mode-call-missing-parens"
    summary = "`model.eval`, `model.train` or `torch.no_grad` used without a call"
    fixable = True
    triggers = (".eval", ".train", "no_grad", "inference_mode", "enable_grad")

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for site in model.expression_statements:
            value = site.node.value
            if isinstance(value, cst.Attribute) and value.attr.value in MODE_METHODS:
                yield self._missing_call(model, value)
            elif model.qualname(value) in GRAD_MODE_CONTEXTS:
                text = model.code(value)
                yield Finding(
                    value,
                    f"`{text}` on its own line does nothing; "
                    f"use `with {text}():` around the code that needs it",
                )
        for site in model.with_items:
            item = site.item.item
            if model.qualname(item) in GRAD_MODE_CONTEXTS:
                text = model.code(item)
                yield Finding(
                    item,
                    f"`with {text}:` raises a TypeError when it runs; write `with {text}():`",
                    self._add_parens(item),
                )

    def _missing_call(self, model: SemanticModel, value: cst.Attribute) -> Finding:
        text = model.code(value)
        mode = "evaluation" if value.attr.value == "eval" else "training"
        receiver = model.code(value.value)
        return Finding(
            value,
            f"`{text}` without a call does nothing: `{receiver}` is not switched "
            f"to {mode} mode; write `{text}()`",
            self._add_parens(value),
        )

    @staticmethod
    def _add_parens(node: cst.CSTNode) -> FixPlan:
        return FixPlan((NodeEdit(node, Anchor.AFTER, "()"),), safe=True, description="Add `()`")
