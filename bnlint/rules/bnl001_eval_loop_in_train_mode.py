from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.loops import is_unit_test
from bnlint.analysis.model import SemanticModel
from bnlint.analysis.modes import FunctionFlow, ModeAnalysis
from bnlint.analysis.summaries import Need
from bnlint.diagnostic import Severity
from bnlint.rules.base import Finding, FixPlan, Rule
from bnlint.rules.mode_fixes import (
    MODE_RULE_TRIGGERS,
    TRAIN_MODE_HARM,
    bound_within,
    latent_only,
    line_before,
    loop_anchor,
)

# What training mode does to a model that has no dropout or norm statistics.
_LATENT_HARM = "nothing changes while it has no dropout or BatchNorm, but it will once it does"


class EvalLoopInTrainMode(Rule):
    """
    ## What it does
    Finds evaluation loops that run a model in training mode: no `.eval()` or
    `.train(False)` reaches the loop on any path. An evaluation loop is a loop
    (or comprehension) that calls a model on data named or built for evaluation
    (`val_loader`, `loaders["test"]`, `DataLoader(val_set)`, `split="test"`),
    any loop in a function named for evaluation (`validate`, `evaluate`, `test`,
    `predict`, `infer*`, `eval_*`), or a model call under `torch.no_grad()` in a
    loop with no training step that is neither inside a training loop nor
    followed by a training step (RL rollouts and DQN targets are part of
    training). `range(len(val_x))` iterates `val_x`. A model called through one
    of its own methods (`policy.act(obs)`) is `policy`. A model is in training
    mode when it was just built or loaded (`Net()`, `timm.create_model(...)`,
    `torchvision.models.resnet50(...)`, `Net()` plus `load_state_dict`), or
    after `.train()` and a training loop.

    Through function calls too: a function whose evaluation loop relies on the
    caller's mode (`def evaluate(model, loader)` without `model.eval()`) is
    reported where it is called with a model in training mode, in this file or,
    when the command line lints the project, in another file.

    ## Why is this bad?
    In training mode BatchNorm normalises each batch with its own statistics and
    updates its running statistics with the evaluation data, and dropout drops
    activations at random. The metrics are wrong (usually lower and noisy,
    depending on the batch size), and the model's BatchNorm statistics drift
    towards the validation set.

    ## Known problems
    A model we can see is built only from layers that run the same in both modes
    (`nn.Linear`, `nn.ReLU`, an `nn.LSTM` built without `dropout=`, local
    classes of those: no dropout, no norm statistics) is reported as a warning:
    the numbers are right until someone adds dropout or BatchNorm. Passed to the
    evaluation function, it is judged by what every call in the file passes.
    An instance of a module class whose `__init__` puts in eval mode every module
    its `forward` runs (a frozen feature extractor: `self.model.eval()`) runs in
    eval mode once built, though its own flag says training. A loss is not a model:
    a value named for one (`criterion`, `criterion_cls`, `loss_fn`, `loss_func`) or an instance
    of a `*Loss` class of the file built without dropout or norm statistics.

    Paths are not weighed: if any path reaches the loop with `.eval()` (say,
    under an `if`), nothing is reported. Models whose origin is unknown (a
    parameter no visible caller sets, a value returned by a library function
    bnlint does not know, a model handed to unknown code, which may switch it)
    are never reported. In single-file mode (flake8, stdin, one file) a function
    from another file is unknown, so `evaluate()` called from `train.py` is only
    judged when both files are linted together by the command line. Training
    mode set on purpose just before inference (`model.train()` with no training
    step in between) is BNL006's business. `torch.load` of a whole model keeps
    the mode it was saved in, which is not known. Forward passes whose output is
    thrown away (BatchNorm recalibration, `update_bn`-style) are not evaluation,
    and neither are Lightning's `validation_step`/`test_step`/`predict_step`, the
    evaluation methods of an HF `Trainer` subclass, or Ignite evaluators, which
    switch modes themselves. `.eval(...)` and `.train(...)` called with arguments
    that `nn.Module` does not take (OGB's `evaluator.eval(results)`, a trainer's
    `train(data)`) are other objects' methods: no switch, no forward pass. Nor
    is a no-grad loop of a helper that computes what its caller then trains on
    (PPO's advantages, `data = self.calc_advantage(data)` before the optimizer
    steps over `data`). A unit test (a `test*` function of a `test_*.py` file or
    of a `Test*`/`*TestCase` class) has no evaluation loops: it checks behaviour,
    such as a model and a reference copy agreeing under `torch.no_grad()`; and a
    dummy module without dropout or BatchNorm that it hands to an evaluation
    function is not reported, since no layer will ever be added to it.

    ## Fix safety
    The fix inserts `model.eval()` before the loop (or before the call). It is
    safe when the model is a local of the function or script and nothing trains
    after the loop in that function; otherwise it is unsafe, because training
    that follows would then run in eval mode unless it calls `model.train()`
    first (see BNL003).
    """

    code = "BNL001"
    name = "eval-loop-in-train-mode"
    summary = "an evaluation loop runs a model that is in training mode"
    fixable = True
    triggers = MODE_RULE_TRIGGERS

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        analysis = model.modes
        for flow in analysis.all_flows():
            yield from self._loops(analysis, flow)
        for flow, need in analysis.broken_needs(Need.EVAL):
            requirement = need.requirement
            severity = latent_only(model, need.key, flow.scope, at=need.node)
            if severity is not None and is_unit_test(model, flow.scope):
                continue  # a test's stand-in module
            yield Finding(
                need.node,
                f"`{need.key}` is in training mode when `{_short(need.callee)}` runs its "
                f"{requirement.detail} (in `{requirement.where}`): {_harm(severity)}; "
                f"call `{need.key}.eval()` before the call",
                _fix(analysis, flow, need.key, need.statement, need.loops),
                severity,
            )

    def _loops(self, analysis: ModeAnalysis, flow: FunctionFlow) -> Iterator[Finding]:
        reported = set()
        for evaluation in flow.evaluations:
            call, loop = evaluation.call, evaluation.loop
            if call.fact.is_train and call.fact.switch is None:
                where = ""
            elif call.fact.from_caller and analysis.every_call_breaks(flow, Need.EVAL, call.key):
                where = f" (every call of `{flow.scope.name}` in this file passes it so)"  # type: ignore[union-attr]
            else:
                continue
            if (loop.node, call.key) in reported:
                continue
            reported.add((loop.node, call.key))
            severity = latent_only(analysis.model, call.key, flow.scope, at=call.node)
            yield Finding(
                loop_anchor(loop.node),
                f"`{call.key}` is in training mode in this {evaluation.why}{where}: "
                f"{_harm(severity)}; call `{call.key}.eval()` before the loop",
                _fix(analysis, flow, call.key, loop.statement, loop.loops),
                severity,
            )


def _harm(severity: Severity | None) -> str:
    return TRAIN_MODE_HARM if severity is None else _LATENT_HARM


def _fix(
    analysis: ModeAnalysis,
    flow: FunctionFlow,
    key: str,
    statement: cst.CSTNode,
    loops: tuple[cst.CSTNode, ...],
) -> FixPlan | None:
    if bound_within(analysis.model, key, statement, flow.scope):
        return None  # the loop builds the model: there is no line before it to fix
    safe = not analysis.belongs_to_caller(key, flow.scope) and not analysis.trained_after(
        flow, key, statement, loops
    )
    return line_before(statement, f"{key}.eval()", safe, f"Call `{key}.eval()` first")


def _short(qualified: str) -> str:
    """``engine.Trainer.validate`` -> ``Trainer.validate``: the name as written."""
    parts = qualified.split(".")
    return ".".join(parts[-2:]) if len(parts) > 2 and parts[-2][:1].isupper() else parts[-1]
