from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.model import Assignment, CallSite, SemanticModel
from bnlint.analysis.values import Kind, kind_of
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
    in-place method with a boolean. On a module even the right spelling would do
    nothing: modules have no `requires_grad` flag, only the `requires_grad_()`
    method that sets it on every parameter.

    ## Known problems
    Only values the analysis can see are tensors, parameters or modules are
    checked: loop variables over `.parameters()`/`.modules()`, `.weight`/`.bias`,
    and names assigned from `torch` calls, `nn` layers or model classes. A
    misspelt flag on an object built elsewhere is not reported, and neither is an
    attribute that a class of the same file sets on `self` in `__init__` (a flag
    of its own).

    ## Fix safety
    Safe: on a tensor or parameter the attribute is renamed to `requires_grad`; on
    a module the assignment becomes `module.requires_grad_(value)`. Either way the
    line then does what it was written to do.
    """

    code = "BNL107"
    name = "misspelt-requires-grad"
    summary = "assignment to a misspelling of `requires_grad`: the freeze does nothing"
    fixable = True
    triggers = ("grad", "gard", "requ")

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for assignment in model.assignments:
            target = assignment.target
            if isinstance(target, cst.Attribute) and is_misspelling(target.attr.value):
                yield from self._check_assignment(model, assignment, target)
        for site in model.calls:
            func = site.node.func
            if isinstance(func, cst.Name) and func.value == "setattr":
                yield from self._check_setattr(model, site)

    def _check_assignment(
        self, model: SemanticModel, assignment: Assignment, target: cst.Attribute
    ) -> Iterator[Finding]:
        if assignment.value is None or target.attr.value in _own_attributes(model):
            return  # an annotation only, or a flag of the file's own classes
        kind = kind_of(model, target.value, assignment.function)
        if kind is None:
            return
        if kind is not Kind.MODULE:
            edit = NodeEdit(target.attr, Anchor.REPLACE, CORRECT)
            yield self._rename(model, target.attr, target.value, edit)
            return
        statement = assignment.statement
        if isinstance(statement, cst.Assign) and len(statement.targets) == 1:
            yield self._module_finding(model, target.attr, target.value, statement, statement.value)
        else:  # ``a = m.require_grad = False`` or ``m.require_grad: bool = ...``: no fix
            yield self._module_finding(model, target.attr, target.value, None, assignment.value)

    def _check_setattr(self, model: SemanticModel, site: CallSite) -> Iterator[Finding]:
        args = site.node.args
        if len(args) != 3 or not isinstance(args[1].value, cst.SimpleString):
            return
        literal = args[1].value
        attribute = literal.evaluated_value
        if not isinstance(attribute, str) or not is_misspelling(attribute):
            return
        if attribute in _own_attributes(model):
            return
        receiver = args[0].value
        kind = kind_of(model, receiver, site.function)
        if kind is Kind.MODULE:
            yield self._module_finding(model, literal, receiver, site.node, args[2].value)
        elif kind is not None:
            quoted = f"{literal.prefix}{literal.quote}{CORRECT}{literal.quote}"
            yield self._rename(model, literal, receiver, NodeEdit(literal, Anchor.REPLACE, quoted))

    def _rename(
        self, model: SemanticModel, node: cst.CSTNode, receiver: cst.BaseExpression, edit: NodeEdit
    ) -> Finding:
        wrong = _attribute_text(model, node)
        problem = (
            f"assigning to `{wrong}` replaces the in-place method"
            if wrong == CORRECT + "_"
            else f"`{wrong}` is not `{CORRECT}`: this sets a new attribute"
        )
        return Finding(
            node,
            f"{problem} on `{model.code(receiver)}` and its `{CORRECT}` flag does not change",
            FixPlan((edit,), safe=True, description=f"Rename to `{CORRECT}`"),
        )

    def _module_finding(
        self,
        model: SemanticModel,
        node: cst.CSTNode,
        receiver: cst.BaseExpression,
        replaced: cst.CSTNode | None,
        value: cst.BaseExpression,
    ) -> Finding:
        call = f"{model.code(receiver)}.{CORRECT}_({model.code(value).strip()})"
        fix = None
        if replaced is not None:
            edit = NodeEdit(replaced, Anchor.REPLACE, call)
            fix = FixPlan((edit,), safe=True, description=f"Call `{CORRECT}_()` on the module")
        return Finding(
            node,
            f"`{_attribute_text(model, node)}` is not `{CORRECT}`, and a module has no "
            f"`{CORRECT}` flag anyway: no parameter changes; use `{call}`",
            fix,
        )


def _attribute_text(model: SemanticModel, node: cst.CSTNode) -> str:
    return model.code(node).strip("\"'")


def _own_attributes(model: SemanticModel) -> frozenset[str]:
    """Attributes that classes of this file give their instances in ``__init__``
    (``self.require_grad = require_grad``): flags of their own, not typos."""
    return frozenset(
        target.attr.value
        for a in model.assignments
        if a.function is not None
        and a.function.name == "__init__"
        and a.function.self_name is not None
        and isinstance(target := a.target, cst.Attribute)
        and isinstance(target.value, cst.Name)
        and target.value.value == a.function.self_name
    )
