from __future__ import annotations

import re
from collections.abc import Iterator

from bnlint.analysis.flow import ModeUse
from bnlint.analysis.loops import is_test_file, is_unit_test
from bnlint.analysis.mode_free import is_mode_free
from bnlint.analysis.model import SemanticModel
from bnlint.analysis.modes import FunctionFlow
from bnlint.analysis.names import dotted_name
from bnlint.analysis.summaries import Need
from bnlint.rules.base import Finding, Rule
from bnlint.rules.mode_fixes import MODE_RULE_TRIGGERS, line_before

_BAKED = "dropout and batch statistics are baked into the exported graph"


# Calls that train the module they are given: ``train(model, ...)``, ``fit``,
# Ignite's ``create_supervised_trainer``, a ``Trainer``.
_TRAINS = re.compile(r"(^|_)(train|trainer|fit)(_|$)", re.IGNORECASE)


class ExportInTrainMode(Rule):
    """
    ## What it does
    Finds `torch.jit.trace`, `torch.jit.trace_module`, `torch.export.export` and
    `torch.onnx.export(..., training=TrainingMode.PRESERVE)` applied to a model
    in training mode: freshly built or loaded (`Net()` plus `load_state_dict`),
    or left in training mode by a training loop. Also finds calls to a project
    function that exports the model it is given, made with a model in training
    mode.

    ## Why is this bad?
    Tracing and export record the operations that run, and in training mode
    those are dropout's random masks and BatchNorm's batch statistics. The
    exported model then gives noisy predictions that depend on the batch, and
    nothing fails: the bug shows up as poor accuracy in production.

    ## Known problems
    `torch.onnx.export` switches to eval mode itself unless told to preserve the
    mode, so only the `PRESERVE` form is checked; `training=TrainingMode.TRAINING`
    is taken as deliberate. A traced module handed to a trainer afterwards
    (`model = torch.jit.trace(model, x)`, then `create_supervised_trainer(model,
    ...)`) is traced to be trained, and is not reported. Neither is a module built,
    where we can see it, only from torch layers without dropout or norm statistics
    (a class of the file with `nn.Linear` and `nn.ReLU`): its graph is the same in
    both modes. `torch.jit.script` keeps the mode switchable and is not reported.
    Neither is an export in a test file or a unit test: it compares the trace
    with the module in the same mode, and ships no graph.
    Models of unknown mode (a parameter without visible callers, a model handed to
    code bnlint does not know) are never reported.

    ## Fix safety
    The fix inserts `model.eval()` before the export. It is safe when the model
    is a local of the function or script and nothing trains after the export in
    that function; otherwise unsafe: training that follows would run in eval
    mode unless it calls `model.train()` first.
    """

    code = "BNL005"
    name = "export-in-train-mode"
    summary = "a model is traced or exported in training mode"
    fixable = True
    triggers = MODE_RULE_TRIGGERS

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        analysis = model.modes
        for flow, export in analysis.exports():
            if export.fact is None or not export.fact.is_train or _in_tests(model, flow):
                continue
            if _traced_for_training(model, flow, export) or is_mode_free(
                model, export.key, flow.scope
            ):
                continue
            func = model.code(export.node.func).strip()
            safe = not analysis.belongs_to_caller(export.key, flow.scope) and not (
                analysis.trained_after(flow, export.key, export.statement, export.loops)
            )
            yield Finding(
                export.node,
                f"`{func}` records `{export.key}` in training mode: {_BAKED}; "
                f"call `{export.key}.eval()` before the export",
                line_before(export.statement, f"{export.key}.eval()", safe, "Call `.eval()` first"),
            )
        for flow, need in analysis.broken_needs(Need.EXPORT):
            if is_mode_free(model, need.key, flow.scope) or _in_tests(model, flow):
                continue
            requirement = need.requirement
            callee = need.callee.rsplit(".", 1)[-1]
            safe = not analysis.belongs_to_caller(need.key, flow.scope) and not (
                analysis.trained_after(flow, need.key, need.statement, need.loops)
            )
            yield Finding(
                need.node,
                f"`{need.key}` is in training mode when `{callee}` runs "
                f"{requirement.detail} (in `{requirement.where}`): {_BAKED}; "
                f"call `{need.key}.eval()` before the call",
                line_before(need.statement, f"{need.key}.eval()", safe, "Call `.eval()` first"),
            )


def _in_tests(model: SemanticModel, flow: FunctionFlow) -> bool:
    """A test file or a unit test: it traces to compare, and ships no graph."""
    return is_test_file(model.path) or is_unit_test(model, flow.scope)


def _traced_for_training(model: SemanticModel, flow: FunctionFlow, export: ModeUse) -> bool:
    """``model = torch.jit.trace(model, x)``, then ``create_supervised_trainer(model,
    ...)``: the traced module is trained, so training mode is what it should record."""
    scope = flow.scope
    traced = {
        dotted_name(a.target)
        for a in model.assignments
        if a.value is export.node and a.function is scope
    } - {None}
    within = scope.node if scope is not None else None
    return bool(traced) and any(
        _TRAINS.search((dotted_name(site.node.func) or "").rsplit(".", 1)[-1])
        and any(dotted_name(arg.value) in traced for arg in site.node.args)
        and model.order.starts_after(site.node, export.statement, within)
        for site in model.calls
        if site.function is scope
    )
