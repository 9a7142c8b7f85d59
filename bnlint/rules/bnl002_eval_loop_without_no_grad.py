from __future__ import annotations

from collections.abc import Callable, Iterator
from functools import cache

import libcst as cst

from bnlint.analysis.calls import keyword_arg
from bnlint.analysis.flow import ModelCall
from bnlint.analysis.freezing import GradFreeze, grad_freezes, grad_unfreezes
from bnlint.analysis.loops import Evaluation
from bnlint.analysis.model import SemanticModel
from bnlint.analysis.modes import FunctionFlow, ModeAnalysis
from bnlint.analysis.names import dotted_name
from bnlint.analysis.state import Grad, Mode, is_under
from bnlint.analysis.summaries import Need
from bnlint.analysis.walk import descendants
from bnlint.diagnostic import Severity
from bnlint.rules.base import Anchor, Finding, FixPlan, NodeEdit, Rule
from bnlint.rules.mode_fixes import MODE_RULE_TRIGGERS, loop_anchor, spelled, wrap_in_with

NO_GRAD = "torch.no_grad"
_WASTE = "every forward pass records a graph that is never used, costing memory and time"
_VOLATILE = " (`volatile=True` has had no effect since PyTorch 0.4)"


class EvalLoopWithoutNoGrad(Rule):
    """
    ## What it does
    Finds evaluation loops (as BNL001 defines them) that call a model with autograd on:
    no `torch.no_grad()`, `torch.inference_mode()`, `torch.set_grad_enabled(False)` or
    decorator of those reaches the loop. Also finds calls, in this file or (on the
    command line) in another file of the project, to a function whose evaluation loop
    leaves autograd to its caller, made with autograd on. Code written for PyTorch 0.3
    that marks its inputs `Variable(x, volatile=True)` gets a note: that flag has had no
    effect since 0.4.

    ## Why is this bad?
    With autograd on, every forward pass keeps its activations for a backward
    pass that never comes: evaluation uses several times the memory it needs
    (out-of-memory errors at batch sizes that train fine) and runs slower. The
    results are the same, so the mistake goes unnoticed.

    ## Known problems
    Loops that compute gradients on purpose (`torch.autograd.grad`, `requires_grad_()`:
    adversarial evaluation, saliency maps) and loops with a training step are not
    evaluation. A loop that turns autograd off itself around some of its model calls
    leaves it on for the others by choice (a test-time adaptation step after a no-grad
    forward pass), so it is not reported either. Hugging Face's `model.generate(...)`
    and pipelines (`pipeline(prompt)`, `pipe(image)`) switch autograd off themselves,
    and so does a helper of the project that runs the model under its own
    `torch.no_grad()` (`net_process(model, image)`, an RL agent's `act(state)`); a
    tokenizer's, a loss's or a dataset's methods are not the model. The grad mode
    inside a model's `inference`, `infer`, `predict` or `sample` method is the
    class's choice (PyG's and diffusion models' are decorated): it is read from
    the class where bnlint sees it, and is unknown elsewhere. A model whose
    parameters the function stops requiring gradients before the loop (`for p in
    net.parameters(): p.requires_grad = False`) records no graph. A function that
    leaves autograd to its callers is quiet when no caller is visible (flake8, stdin, a
    single file); a decorator defined in the file is read for the grad context it opens
    around the function (`with torch.no_grad(): return func(*args)`), and one from
    elsewhere named for grad or inference (yolov5's `smart_inference_mode()`) is taken
    to set it; other grad modes set by decorators or context managers bnlint does not
    know are unknown, and unknown is never reported.

    ## Fix safety
    In a function named for evaluation that has no training step and computes
    no gradients, the fix decorates the function with `@torch.no_grad()`;
    otherwise it wraps the loop (or the call) in `with torch.no_grad():`. Both
    are safe when nothing trains after the loop in that function: the values
    computed are the same, only no graph is recorded. When training follows
    (whose backward pass might reach tensors computed in the loop) the fix is
    unsafe. No fix is offered where re-indenting would change a multi-line
    string, or the file does not import torch.
    """

    code = "BNL002"
    name = "eval-loop-without-no-grad"
    summary = "an evaluation loop calls a model with autograd on"
    severity = Severity.WARNING
    fixable = True
    triggers = MODE_RULE_TRIGGERS

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        analysis = model.modes
        # Models whose parameters stop requiring gradients (no graph is recorded),
        # and where they require them again. Looked for once a loop would be reported.
        freezes = cache(
            lambda: (
                [f for f in grad_freezes(model) if not f.norms_only],
                list(grad_unfreezes(model)),
            )
        )
        for flow in analysis.all_flows():
            yield from self._loops(model, analysis, flow, freezes)
        for _flow, need in analysis.broken_needs(Need.NO_GRAD):
            requirement = need.requirement
            header = _no_grad(model)
            fix = None
            if header is not None and not need.callee_trains:
                fix = wrap_in_with(model, need.statement, header, True, f"Wrap in `with {header}:`")
            yield Finding(
                need.node,
                f"autograd is on when `{need.callee.rsplit('.', 1)[-1]}` runs its "
                f"{requirement.detail} (in `{requirement.where}`): {_WASTE}; "
                "call it under `with torch.no_grad():`",
                fix,
            )

    def _loops(
        self,
        model: SemanticModel,
        analysis: ModeAnalysis,
        flow: FunctionFlow,
        freezes: Callable[[], tuple[list[GradFreeze], list[GradFreeze]]],
    ) -> Iterator[Finding]:
        # One finding per loop, naming the model itself over its methods
        # (``encoder`` over ``encoder.initHidden``) where it calls both.
        by_loop: dict[cst.CSTNode, Evaluation] = {}
        for evaluation in flow.evaluations:
            loop = evaluation.loop.node
            if loop in flow.roles.autograd_loops or not _grad_on(analysis, flow, evaluation.call):
                continue
            if _frozen_before(model, flow, *freezes(), evaluation):
                continue
            named = by_loop.get(loop)
            if named is None or evaluation.call.key.count(".") < named.call.key.count("."):
                by_loop[loop] = evaluation
        decorated = False
        for evaluation in by_loop.values():
            call, loop = evaluation.call, evaluation.loop
            # Grad.ON in a function: enabled in it, which a decorator would not undo.
            decorate = call.grad is Grad.CALLER and _can_decorate(flow)
            if decorate and decorated:
                continue  # one decorator fixes every loop of the function: one finding
            decorated = decorated or decorate
            remedy = (
                f"decorate `{flow.scope.name}` with `@torch.no_grad()`"  # type: ignore[union-attr]
                if decorate
                else "wrap the loop in `with torch.no_grad():`"
            )
            yield Finding(
                loop_anchor(loop.node),
                f"autograd is on in this {evaluation.why} calling `{call.key}`: {_WASTE}"
                f"{_VOLATILE if _marks_volatile(loop.node) else ''}; {remedy}",
                _fix(model, analysis, flow, loop.statement, loop.loops, decorate),
            )


def _frozen_before(
    model: SemanticModel,
    flow: FunctionFlow,
    freezes: list[GradFreeze],
    unfreezes: list[GradFreeze],
    evaluation: Evaluation,
) -> bool:
    """``for p in crnn.parameters(): p.requires_grad = False`` before the loop, in
    its function: the frozen model's forward passes record no graph. Not when it
    is unfrozen again in between, or given a new layer (``model.fc = nn.Linear(...)``:
    trainable)."""
    statement, key = evaluation.loop.statement, evaluation.call.key
    within = flow.scope.node if flow.scope is not None else None

    def between(node: cst.CSTNode, freeze: GradFreeze) -> bool:
        return model.order.starts_after(node, freeze.node, within) and model.order.starts_after(
            statement, node, within
        )

    def thawed(freeze: GradFreeze) -> bool:
        new_layers = (
            a.statement
            for a in model.assignments
            if a.function is flow.scope
            and type(a.target) is cst.Attribute
            and is_under(dotted_name(a.target) or "", freeze.key)
        )
        unfrozen = (
            u.node
            for u in unfreezes
            if u.scope is flow.scope
            and (is_under(u.key, freeze.key) or is_under(freeze.key, u.key))
        )
        return any(between(node, freeze) for node in (*new_layers, *unfrozen))

    return any(
        freeze.scope is flow.scope
        and is_under(key, freeze.key)
        and model.order.starts_after(statement, freeze.node, within)
        and not thawed(freeze)
        for freeze in freezes
    )


def _marks_volatile(loop: cst.CSTNode) -> bool:
    """``Variable(x, volatile=True)``: PyTorch 0.3's way to turn autograd off."""
    return any(
        isinstance(node, cst.Call) and keyword_arg(node, "volatile") is not None
        for node in descendants(loop)
    )


def _grad_on(analysis: ModeAnalysis, flow: FunctionFlow, call: ModelCall) -> bool:
    """Autograd is on here, or the function leaves it to its callers and every
    call in this file makes it with autograd on."""
    if call.grad is Grad.ON:
        return bool(call.fact.modes & (Mode.TRAIN | Mode.EVAL))
    if call.grad is not Grad.CALLER:
        return False
    key = call.key if call.fact.from_caller else ""
    return analysis.every_call_breaks(flow, Need.NO_GRAD, key)


def _can_decorate(flow: FunctionFlow) -> bool:
    """An evaluation function that trains nothing and computes no gradients."""
    return (
        flow.scope is not None
        and flow.roles.evaluation_function
        and not flow.events.steps
        and not flow.events.gradient_calls
    )


def _fix(
    model: SemanticModel,
    analysis: ModeAnalysis,
    flow: FunctionFlow,
    statement: cst.CSTNode,
    loops: tuple[cst.CSTNode, ...],
    decorate: bool,
) -> FixPlan | None:
    header = _no_grad(model)
    if header is None:
        return None
    if decorate:
        assert flow.scope is not None
        edit = NodeEdit(flow.scope.node, Anchor.LINE_BEFORE, f"@{header}")
        return FixPlan((edit,), True, f"Decorate with `@{header}`")
    safe = not analysis.steps_after(flow, statement, loops)
    return wrap_in_with(model, statement, header, safe, f"Wrap in `with {header}:`")


def _no_grad(model: SemanticModel) -> str | None:
    spelling = spelled(model, NO_GRAD)
    return f"{spelling}()" if spelling is not None else None
