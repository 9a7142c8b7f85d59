from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.effects import mode_switch
from bnlint.analysis.model import SemanticModel
from bnlint.analysis.modes import RestoreProblem
from bnlint.rules.base import Anchor, Finding, FixPlan, NodeEdit, Rule
from bnlint.rules.mode_fixes import MODE_RULE_TRIGGERS, latent_only, loop_anchor

_HARM = "it trains with frozen BatchNorm statistics and without dropout"
# A model that has no dropout or norm statistics trains the same in eval mode.
_LATENT_HARM = "it trains in eval mode, which changes nothing until it has dropout or BatchNorm"


class TrainModeNotRestored(Rule):
    """
    ## What it does
    Finds training loops (typically the epoch loop) that switch a model to eval
    mode, usually to validate, and do not switch it back with `.train()` before
    the next training step. The switch may be direct (`model.eval()`) or inside
    a function of the project (`validate(model, ...)` that calls `model.eval()`);
    so may the training step (`train_one_epoch(model, ...)`).

    ## Why is this bad?
    The first epoch trains in training mode; every later epoch trains in eval
    mode: BatchNorm uses its frozen running statistics instead of batch
    statistics and stops updating them, and dropout is off. The loss still goes
    down, so nothing looks broken, but the model trains differently from what
    was intended, regularisation is gone, and the final accuracy is lower.

    ## Known problems
    Reported only when the first pass provably trains in training mode: a model
    put in eval mode before the loop on purpose (frozen BatchNorm fine-tuning)
    is left alone, and so is any path bnlint cannot follow (a model handed to
    unknown code, a switch under a condition on both sides). A function called
    from another file is only known when the command line lints both files. A
    model we can see has no dropout and no norm statistics trains the same in
    eval mode: that finding is a warning.

    ## Fix safety
    The fix inserts `model.train()` at the top of the loop body. It is safe when
    the function freezes no part of the model (switches no sub-module's mode and
    calls no `.apply(...)` on it): `.train()` then restores exactly the mode the
    first pass trained in. Otherwise it is unsafe, because `.train()` also
    unfreezes sub-modules that were put in eval mode on purpose (re-apply the
    freeze after it, see BNL102).
    """

    code = "BNL003"
    name = "train-mode-not-restored"
    summary = "a model switched to eval inside a training loop is not switched back"
    fixable = True
    triggers = MODE_RULE_TRIGGERS

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for problem in model.modes.restore_problems():
            anchor = problem.switch or loop_anchor(problem.loop.node)
            key = problem.key
            severity = latent_only(model, key, problem.flow.scope)
            harm = _LATENT_HARM if severity else _HARM
            yield Finding(
                anchor,
                f"{_how_switched(model, problem)} in this training loop and not back: from "
                f"the second pass on {harm}; call `{key}.train()` at the top of the loop",
                _fix(problem),
                severity,
            )


def _how_switched(model: SemanticModel, problem: RestoreProblem) -> str:
    """Names the project function that leaves the model in eval mode, if one does."""
    switch = problem.switch
    if switch is None or mode_switch(switch) is not None:
        return f"`{problem.key}` is switched to eval mode"
    return f"`{model.code(switch.func).strip()}(...)` leaves `{problem.key}` in eval mode"


def _fix(problem: RestoreProblem) -> FixPlan | None:
    body = problem.loop.node.body  # type: ignore[attr-defined]
    if not isinstance(body, cst.IndentedBlock) or not body.body:
        return None
    safe = not _freezes_part_of(problem)
    edit = NodeEdit(body.body[0], Anchor.LINE_BEFORE, f"{problem.key}.train()")
    return FixPlan((edit,), safe, f"Call `{problem.key}.train()` at the top of the loop")


def _freezes_part_of(problem: RestoreProblem) -> bool:
    """Does the function switch a sub-module of the model, or ``apply`` to it?"""
    events = problem.flow.events
    prefix = problem.key + "."
    return any(use.key.startswith(prefix) for use in events.switches.values()) or any(
        use.key == problem.key or use.key.startswith(prefix) for use in events.escapes.values()
    )
