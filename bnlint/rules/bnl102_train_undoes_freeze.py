from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import libcst as cst

from bnlint.analysis.architectures import names_batch_norm_freezer
from bnlint.analysis.effects import switched_mode
from bnlint.analysis.freezing import (
    EvalFreeze,
    Place,
    eval_freezes,
    expression_statement_of,
    overrides_train_with_eval,
    places,
    same_module_or_inside,
)
from bnlint.analysis.model import FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.state import Mode
from bnlint.rules.base import Anchor, Finding, FixPlan, NodeEdit, Rule


class TrainUndoesFreeze(Rule):
    """
    ## What it does
    Finds a `.train()` call that switches back a part of the model frozen earlier
    in eval mode: a sub-module (`model.backbone.eval()`) or the BatchNorm layers
    of a `.modules()` loop (`if isinstance(m, nn.BatchNorm2d): m.eval()`) put in
    eval mode before the training loop, and an ancestor's `.train()` (typically at
    the top of every epoch, or in `train_one_epoch(model)`) that runs before
    training and is not followed by the same freeze.

    ## Why is this bad?
    `.train()` recurses into every sub-module: the frozen layers are back in
    training mode, BatchNorm normalises with batch statistics and updates its
    running statistics, and the freeze lasted until the first epoch started.

    ## Example
    ```python
    model.backbone.eval()
    for epoch in range(epochs):
        model.train()
        ...
    ```

    ## Use instead
    ```python
    for epoch in range(epochs):
        model.train()
        model.backbone.eval()
        ...
    ```
    or override `train()` to keep frozen norms in eval (the `norm_eval` pattern),
    or swap in `FrozenBatchNorm2d`.

    ## Known problems
    Reported only when the `.train()` runs after the freeze (later in the same
    function, or in another function of the file when the freeze is in the module
    body or a set-up function: `__init__`, `main`, `setup`, `build_*`, `freeze_*`),
    a training step follows it, and nothing re-applies the freeze after it: the
    same `.eval()`, a function that contains it, a helper named for freezing
    BatchNorm (`freeze_bn`, `set_bn_eval`), or a `train()` override that calls
    `.eval()`. A `.eval()` in any other function (a validation method) is not a
    freeze, nor is `.eval()` on `model.module` (the model a DDP wrapper holds).
    Lightning (2.2 and later) calls no `train()` when fitting starts and restores
    each sub-module's mode after validation, so a freeze in a LightningModule holds.

    ## Fix safety
    The fix inserts the freeze's `.eval()` line right after the `.train()` call,
    with the frozen module spelled from the `.train()` receiver. It is safe when
    the freeze runs unconditionally (a statement of its function's own body): it
    re-runs a call that binds no name on a module the code already froze, so it
    only restores what the author meant. A freeze under a condition
    (`if args.freeze_backbone:`) makes it unsafe: the inserted line would freeze
    also when the condition is false. Re-applying a freeze written as a loop
    over `.modules()` is not offered, since copying the loop would rebind its
    variable after the `.train()` call.
    """

    code = "BNL102"
    name = "train-undoes-freeze"
    summary = "`.train()` switches back norm layers that were frozen with `.eval()`"
    fixable = True
    triggers = (".eval()",)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        freezes = list(eval_freezes(model))
        if not freezes or overrides_train_with_eval(model):
            return
        for site in model.calls:
            if switched_mode(site.node) is not Mode.TRAIN:
                continue
            undone = [
                u for f in freezes if (u := _undoes(model, site.node, site.function, f, freezes))
            ]
            if undone:
                yield _finding(model, site.node, site.function, undone)


@dataclass(frozen=True)
class Undone:
    freeze: EvalFreeze
    respelled: str  # the frozen module spelled from the ``.train()`` receiver


def _undoes(
    model: SemanticModel,
    call: cst.Call,
    scope: FunctionInfo | None,
    freeze: EvalFreeze,
    freezes: list[EvalFreeze],
) -> Undone | None:
    receiver = dotted_name(call.func.value)  # type: ignore[attr-defined]
    if receiver is None or freeze.call is call or _calls_own_method(model, receiver, scope):
        return None
    respelled = _respelled(model, Place(scope, receiver), freeze)
    if respelled is None:
        return None
    if not _after_freeze(model, call, scope, freeze) or not _trains_after(model, call, scope):
        return None
    if _reapplied(model, call, scope, freeze, respelled, freezes):
        return None
    return Undone(freeze, respelled)


def _calls_own_method(model: SemanticModel, receiver: str, scope: FunctionInfo | None) -> bool:
    """``self.train()`` in a class that is not an nn.Module: a trainer's own
    ``train`` method (its training loop), not a mode switch."""
    return (
        scope is not None
        and scope.cls is not None
        and receiver == scope.self_name
        and scope.cls not in model.module_classes
    )


def _respelled(model: SemanticModel, switched: Place, freeze: EvalFreeze) -> str | None:
    """The frozen module spelled from the switched one, if the switched module
    holds it (strictly: ``model.backbone.train()`` on a frozen ``model.backbone``
    is a deliberate unfreeze; for frozen norm layers the module itself counts)."""
    for frozen in places(model, freeze.scope, freeze.key):
        for outer in places(model, switched.scope, switched.key):
            if not same_module_or_inside(frozen, outer):
                continue
            suffix = frozen.key[len(outer.key) :]
            if not freeze.norms_only and _same_module_suffix(suffix):
                continue
            return switched.key + suffix
    return None


def _same_module_suffix(suffix: str) -> bool:
    """``""`` or ``.module`` (a DDP/DataParallel wrapper's module, ``torch.compile``'s
    ``_orig_mod``): the switched module itself, not a part of it."""
    return all(part in _WRAPPED_MODULE for part in suffix.split(".")[1:])


_WRAPPED_MODULE = frozenset({"module", "_orig_mod"})
# Functions that set a model up before training: a freeze there runs first.
_SETUP_FUNCTION = re.compile(r"init|setup|set_up|build|freeze|prepare|configure|main|create")


def _after_freeze(
    model: SemanticModel, call: cst.Call, scope: FunctionInfo | None, freeze: EvalFreeze
) -> bool:
    """In the same function: later, and not in a loop that also runs the freeze.
    Elsewhere: the freeze is in ``__init__``, a setup function or the module body."""
    if freeze.scope is not scope:
        return freeze.scope is None or bool(_SETUP_FUNCTION.search(freeze.scope.name.lower()))
    if not model.order.starts_after(call, freeze.call, _node(scope)):
        return False
    return not any(
        _contains(model, loop, freeze.call, scope) for loop in _loops_around(model, call, scope)
    )


def _trains_after(model: SemanticModel, call: cst.Call, scope: FunctionInfo | None) -> bool:
    flow = model.modes.flow_of(scope)
    switch = flow.events.switches.get(call) if flow is not None else None
    if flow is None or switch is None:
        return False
    return model.modes.steps_after(flow, switch.statement, switch.loops)


def _reapplied(
    model: SemanticModel,
    call: cst.Call,
    scope: FunctionInfo | None,
    freeze: EvalFreeze,
    respelled: str,
    freezes: list[EvalFreeze],
) -> bool:
    """Is the freeze run again after ``call``: the same freeze of the same module,
    the function that holds it, or a helper named for freezing BatchNorm, later in
    the function or in a loop around the call?"""
    again = {f.call for f in freezes if f.scope is scope and f.key == respelled}
    loops = _loops_around(model, call, scope)
    for site in model.calls:
        if site.function is not scope or site.node is call:
            continue
        if not (
            model.order.starts_after(site.node, call, _node(scope))
            or any(_contains(model, loop, site.node, scope) for loop in loops)
        ):
            continue
        if site.node is freeze.call or _runs_freeze(model, site.node, freeze):
            return True
        if site.node in again or _is_eval_of(site.node, respelled):
            return True
    return False


def _is_eval_of(call: cst.Call, key: str) -> bool:
    return (
        switched_mode(call) is Mode.EVAL and dotted_name(call.func.value) == key  # type: ignore[attr-defined]
    )


def _runs_freeze(model: SemanticModel, call: cst.Call, freeze: EvalFreeze) -> bool:
    """A call of the function that holds the freeze (``self.freeze_backbone()``), or
    of a helper named for freezing BatchNorm (``model.apply(set_bn_eval)``)."""
    name = (dotted_name(call.func) or "").rsplit(".", 1)[-1]
    if freeze.scope is not None and name == freeze.scope.name:
        return True
    handed = [(dotted_name(arg.value) or "").rsplit(".", 1)[-1] for arg in call.args]
    return any(names_batch_norm_freezer(n) for n in [name, *handed] if n)


def _loops_around(
    model: SemanticModel, node: cst.CSTNode, scope: FunctionInfo | None
) -> list[cst.CSTNode]:
    return [
        site.node
        for site in model.loops
        if site.function is scope
        and isinstance(site.node, cst.For | cst.While)
        and _contains(model, site.node, node, scope)
    ]


def _contains(
    model: SemanticModel, outer: cst.CSTNode, inner: cst.CSTNode, scope: FunctionInfo | None
) -> bool:
    return model.order.contains(outer, inner, _node(scope))


def _node(scope: FunctionInfo | None) -> cst.FunctionDef | None:
    return scope.node if scope is not None else None


def _finding(
    model: SemanticModel, call: cst.Call, scope: FunctionInfo | None, undone: list[Undone]
) -> Finding:
    receiver = model.code(call.func.value).strip()  # type: ignore[attr-defined]
    first = undone[0]
    frozen = model.code(first.freeze.call).strip()
    what, pronoun = f"`{first.respelled}`", "it"
    if first.freeze.norms_only:
        what, pronoun = f"the BatchNorm layers of `{first.respelled}`", "them"
    message = (
        f"`{receiver}.train()` switches {what} back to training mode after `{frozen}` "
        f"froze {pronoun}: BatchNorm running statistics move again (and dropout is back on); "
        "re-apply the freeze right after this call"
    )
    return Finding(call, message, _fix(model, call, scope, undone))


def _fix(
    model: SemanticModel, call: cst.Call, scope: FunctionInfo | None, undone: list[Undone]
) -> FixPlan | None:
    lines = [_reapplying_line(model, u, scope) for u in undone]
    if None in lines:
        return None
    statement = expression_statement_of(model, call, scope)
    if statement is None:
        return None
    column = model.positions[statement].start.column
    line = model.source_lines[model.positions[statement].start.line - 1]
    if line[:column].strip():
        return None  # not the first statement on its line: ``if resume: model.train()``
    newline = model.module.default_newline
    unique = dict.fromkeys(line for line in lines if line is not None)
    text = "".join(f"{newline}{' ' * column}{line}" for line in unique)
    description = "Re-apply " + ", ".join(f"`{line}`" for line in unique) + " after `.train()`"
    safe = all(_runs_unconditionally(model, u.freeze) for u in undone)
    return FixPlan((NodeEdit(statement, Anchor.AFTER, text),), safe, description)


def _reapplying_line(
    model: SemanticModel, undone: Undone, scope: FunctionInfo | None
) -> str | None:
    """``model.backbone.eval()`` or ``model.apply(set_bn_eval)`` spelled for the
    ``.train()`` call's function; None for a loop, or a helper it cannot see."""
    freeze = undone.freeze
    func = freeze.call.func
    if not isinstance(func, cst.Attribute) or not isinstance(freeze.statement, cst.Expr):
        return None
    if func.attr.value == "eval":
        return f"{undone.respelled}.eval()"
    helper = model.code(freeze.call.args[0].value).strip()
    visible = freeze.scope is scope or any(
        f.name == helper and f.parent is None and f.cls is None for f in model.functions
    )
    return f"{undone.respelled}.apply({helper})" if visible else None


def _runs_unconditionally(model: SemanticModel, freeze: EvalFreeze) -> bool:
    """Is the freeze a statement of its function's own body (or the module's), not
    under an ``if args.freeze_backbone:`` that the re-applied line would drop?"""
    body = freeze.scope.node.body.body if freeze.scope is not None else model.module.body
    return any(
        isinstance(line, cst.SimpleStatementLine) and freeze.statement in line.body for line in body
    )
