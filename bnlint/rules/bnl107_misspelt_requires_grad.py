from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.model import SemanticModel
from bnlint.analysis.values import kind_of
from bnlint.rules.base import Anchor, Finding, FixPlan, NodeEdit, Rule

CORRECT = "requires_grad"


def is_misspelling(attribute: str) -> bool:
    """Within two edits of ``requires_grad`` (or its in-place method name)."""
    if attribute == CORRECT or abs(len(attribute) - len(CORRECT)) > 2:
        return False
    return attribute == CORRECT + "_" or _edit_distance(attribute, CORRECT) <= 2


def _edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions, swaps."""
    previous_previous: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            cost = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, previous_previous[j - 2] + 1)
            current.append(cost)
        previous_previous, previous = previous, current
    return previous[-1]


class MisspeltRequiresGrad(Rule):
    """
    ## What it does
    Finds assignments to a misspelling of `requires_grad` (`require_grad`,
    `requires_grads`, `requries_grad`, `requires_grad_ = ...`, also through
    `setattr`) on a value that is a tensor, a parameter or a module.

    ## Why is this bad?
    PyTorch objects accept any new attribute. `p.require_grad = False` creates an
    attribute nobody reads and the parameter keeps training: the layer you meant to
    freeze is updated by the optimizer. Assigning to `requires_grad_` replaces the
    in-place method with a boolean.

    ## Known problems
    Only values the analysis can see are tensors, parameters or modules are
    checked: loop variables over `.parameters()`/`.modules()`, `.weight`/`.bias`,
    and names assigned from `torch` calls, `nn` layers or model classes. A
    misspelt flag on an object built elsewhere is not reported.

    ## Fix safety
    The rename is safe: the line then does what it was written to do.
    """

    code = "BNL107"
    name = "misspelt-requires-grad"
    summary = "assignment to a misspelling of `requires_grad`: the freeze does nothing"
    fixable = True
    triggers = ("grad", "gard", "requ")

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for assignment in model.assignments:
            target = assignment.target
            if (
                isinstance(target, cst.Attribute)
                and is_misspelling(target.attr.value)
                and kind_of(model, target.value, assignment.function) is not None
            ):
                yield self._finding(model, target.attr, target.value, target.attr)
        for site in model.calls:
            func = site.node.func
            if not (isinstance(func, cst.Name) and func.value == "setattr"):
                continue
            args = site.node.args
            if len(args) != 3 or not isinstance(args[1].value, cst.SimpleString):
                continue
            literal = args[1].value
            attribute = literal.evaluated_value
            if (
                isinstance(attribute, str)
                and is_misspelling(attribute)
                and kind_of(model, args[0].value, site.function) is not None
            ):
                quote = literal.quote
                yield self._finding(
                    model,
                    literal,
                    args[0].value,
                    literal,
                    f"{literal.prefix}{quote}{CORRECT}{quote}",
                )

    def _finding(
        self,
        model: SemanticModel,
        node: cst.CSTNode,
        receiver: cst.BaseExpression,
        replaced: cst.CSTNode,
        replacement: str = CORRECT,
    ) -> Finding:
        wrong = model.code(node).strip("\"'")
        fix = FixPlan(
            (NodeEdit(replaced, Anchor.REPLACE, replacement),),
            safe=True,
            description=f"Rename to `{CORRECT}`",
        )
        return Finding(
            node,
            f"`{wrong}` is not `{CORRECT}`: this sets a new attribute on "
            f"`{model.code(receiver)}` and nothing is frozen",
            fix,
        )
