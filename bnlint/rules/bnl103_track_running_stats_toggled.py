from __future__ import annotations

from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.model import Assignment, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.rules.base import Finding, Rule

FLAG = "track_running_stats"


class TrackRunningStatsToggled(Rule):
    """
    ## What it does
    Finds `track_running_stats` assigned on an existing BatchNorm layer
    (`m.track_running_stats = False`, also through `setattr`), typically to
    "freeze" its statistics.

    ## Why is this bad?
    The flag is read at construction time to create the running buffers; changing
    it later does not freeze the layer. In training mode the layer then normalises
    every batch with that batch's own statistics and stops updating its buffers,
    and in eval mode it uses the buffers again: the flag and the buffers disagree,
    and the model behaves differently from what the flag says.

    ## Known problems
    A class that sets `self.track_running_stats` on itself (a custom norm layer's
    constructor) is not reported, nor is test-time adaptation that also drops the
    buffers (`m.running_mean = None; m.running_var = None`), which makes flag and
    buffers agree.

    ## Fix safety
    No automatic fix: the right change is `m.eval()` on the layer (re-applied after
    every `.train()`, see BNL102) or `FrozenBatchNorm2d`, and which one depends on
    the code around it.
    """

    code = "BNL103"
    name = "track-running-stats-toggled"
    summary = "`track_running_stats` assigned on an existing BatchNorm: it does not freeze it"
    triggers = (FLAG,)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for assignment in model.assignments:
            target = assignment.target
            if not (isinstance(target, cst.Attribute) and target.attr.value == FLAG):
                continue
            if not self._is_own_attribute(assignment) and not _drops_buffers(model, assignment):
                yield self._finding(model, target.attr, target.value)
        for site in model.calls:
            func, args = site.node.func, site.node.args
            if isinstance(func, cst.Name) and func.value == "setattr" and len(args) == 3:
                literal = args[1].value
                if isinstance(literal, cst.SimpleString) and literal.evaluated_value == FLAG:
                    yield self._finding(model, site.node, args[0].value)

    @staticmethod
    def _is_own_attribute(assignment: Assignment) -> bool:
        function = assignment.function
        target = assignment.target
        return (
            function is not None
            and isinstance(target, cst.Attribute)
            and dotted_name(target.value) == function.self_name
        )

    @staticmethod
    def _finding(model: SemanticModel, node: cst.CSTNode, layer: cst.BaseExpression) -> Finding:
        name = model.code(layer).strip()
        return Finding(
            node,
            f"setting `{name}.{FLAG}` does not freeze the layer: in training mode it "
            "normalises with each batch's statistics and stops updating its running "
            f"ones; use `{name}.eval()` (kept after `.train()`) or FrozenBatchNorm2d",
        )


def _drops_buffers(model: SemanticModel, flag: Assignment) -> bool:
    """Test-time adaptation (TENT): ``running_mean``/``running_var`` set to None too."""
    target = flag.target
    assert isinstance(target, cst.Attribute)
    layer = dotted_name(target.value)
    return any(
        a.function is flag.function
        and isinstance(a.target, cst.Attribute)
        and a.target.attr.value in {"running_mean", "running_var"}
        and dotted_name(a.target.value) == layer
        and isinstance(a.value, cst.Name)
        and a.value.value == "None"
        for a in model.assignments
    )
