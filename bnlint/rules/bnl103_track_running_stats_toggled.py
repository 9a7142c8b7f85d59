from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.model import FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.rules.base import Finding, Rule

FLAG = "track_running_stats"
_BUFFERS = frozenset({"running_mean", "running_var"})
_INSTANCE_NORM = re.compile(r"instance_?norm", re.IGNORECASE)
_BATCH_NORM = re.compile(r"batch_?norm|\bbn\b", re.IGNORECASE)


class TrackRunningStatsToggled(Rule):
    """
    ## What it does
    Finds `track_running_stats` set to `False` on an existing BatchNorm layer
    (`m.track_running_stats = False`, also through `setattr`), typically to
    "freeze" its statistics, or to make it normalise with batch statistics.

    ## Why is this bad?
    The flag is read at construction time to create the running buffers; turning
    it off later does neither. In training mode the layer still normalises every
    batch with that batch's own statistics (it only stops updating its buffers),
    and in eval mode it still uses the old buffers: the flag and the buffers
    disagree. A frozen backbone is trained on batch-normalised features and
    evaluated on features normalised with stale statistics; an AdaBN-style
    "use the test batch's statistics" silently keeps the training ones.

    ## Known problems
    Not reported: a class setting `self.track_running_stats` on itself (a custom
    norm layer); test-time adaptation that also drops the buffers
    (`m.running_mean = None; m.running_var = None`, as TENT does), which makes flag
    and buffers agree; a layer put in eval mode right there (`m.eval()`), which is
    what freezes it; a temporary switch that saves the old value first
    (`saved = m.track_running_stats`) or sets it back in the same function or in
    the context manager's `__exit__` (vissl's activation checkpointing, so that the
    recomputed forward pass does not count a batch twice); and values computed at run
    time (`m.track_running_stats = not freeze_bn`), which may be `True`. A function
    that names InstanceNorm and never BatchNorm (Opacus' fixer for InstanceNorm
    layers) is about InstanceNorm, where the flag does what it says.

    ## Fix safety
    No automatic fix: the right change is `m.eval()` on the layer (re-applied after
    every `.train()`, see BNL102) or `FrozenBatchNorm2d` to freeze it, or
    `running_mean`/`running_var` set to `None` for batch statistics everywhere, and
    which one depends on what the code means.
    """

    code = "BNL103"
    name = "track-running-stats-toggled"
    summary = "`track_running_stats = False` on an existing BatchNorm: it does not freeze it"
    triggers = (FLAG,)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        for assignment in model.assignments:
            target = assignment.target
            if not (
                isinstance(target, cst.Attribute)
                and target.attr.value == FLAG
                and _is_false(assignment.value)
            ):
                continue
            if self._reported(model, target.value, assignment.function, assignment.statement):
                yield self._finding(model, target.attr, target.value)
        for site in model.calls:
            func, args = site.node.func, site.node.args
            if not (isinstance(func, cst.Name) and func.value == "setattr" and len(args) == 3):
                continue
            name, value = args[1].value, args[2].value
            if (
                isinstance(name, cst.SimpleString)
                and name.evaluated_value == FLAG
                and _is_false(value)
                and self._reported(model, args[0].value, site.function, site.node)
            ):
                yield self._finding(model, site.node, args[0].value)

    @staticmethod
    def _reported(
        model: SemanticModel,
        layer: cst.BaseExpression,
        function: FunctionInfo | None,
        switch: cst.CSTNode,
    ) -> bool:
        name = dotted_name(layer)
        if function is not None and name == function.self_name:
            return False  # a norm layer's own constructor or method
        return not (
            _drops_buffers(model, name, function)
            or _saves_flag(model, name, function)
            or _sets_it_back(model, function, switch)
            or _puts_in_eval(model, name, function)
            or _about_instance_norm(model, function)
        )

    @staticmethod
    def _finding(model: SemanticModel, node: cst.CSTNode, layer: cst.BaseExpression) -> Finding:
        name = model.code(layer).strip()
        return Finding(
            node,
            f"`{name}.{FLAG} = False` does not freeze this BatchNorm or give it batch "
            "statistics: in training mode it still normalises with each batch's statistics, "
            f"in eval mode with the old running ones; to freeze it use `{name}.eval()` "
            "(kept after `.train()`) or FrozenBatchNorm2d",
        )


def _about_instance_norm(model: SemanticModel, function: FunctionInfo | None) -> bool:
    """Opacus' InstanceNorm fixer: a function whose code (decorators and
    annotations included) names InstanceNorm and never BatchNorm. InstanceNorm
    normalises each sample with its own statistics in training mode anyway, and
    the flag then makes eval mode do the same."""
    if function is None:
        return False
    code = model.code(function.node)
    return _INSTANCE_NORM.search(code) is not None and _BATCH_NORM.search(code) is None


def _is_false(value: cst.BaseExpression | None) -> bool:
    return isinstance(value, cst.Name) and value.value == "False"


def _drops_buffers(model: SemanticModel, layer: str | None, function: FunctionInfo | None) -> bool:
    """Test-time adaptation (TENT): ``running_mean``/``running_var`` set to None too."""
    return any(
        a.function is function
        and isinstance(a.target, cst.Attribute)
        and a.target.attr.value in _BUFFERS
        and dotted_name(a.target.value) == layer
        and isinstance(a.value, cst.Name)
        and a.value.value == "None"
        for a in model.assignments
    )


def _saves_flag(model: SemanticModel, layer: str | None, function: FunctionInfo | None) -> bool:
    """``saved = m.track_running_stats`` before the switch: a temporary toggle that is
    restored (no-grad forward passes that must not move the statistics)."""
    return any(
        a.function is function
        and isinstance(a.value, cst.Attribute)
        and a.value.attr.value == FLAG
        and dotted_name(a.value.value) == layer
        for a in model.assignments
    )


def _sets_it_back(model: SemanticModel, function: FunctionInfo | None, switch: cst.CSTNode) -> bool:
    """A temporary toggle: the flag is also set to something other than False in
    the same function (vissl's checkpointed blocks: ``m.track_running_stats =
    m.training`` before a block, False after it, so that recomputing its forward
    pass does not count the batch twice), or in the ``__exit__`` of the context
    manager whose ``__enter__`` this is (mammoth's ``bn_track_stats``). Not in
    another branch of an ``if enabled: ... else: ...``: that is a setter."""
    if function is None:
        return False
    scopes = {function}
    if function.cls is not None and function.name == "__enter__":
        scopes.add(function.cls.methods.get("__exit__"))  # type: ignore[arg-type]
    return any(
        a.function in scopes
        and isinstance(a.target, cst.Attribute)
        and a.target.attr.value == FLAG
        and not _is_false(a.value)
        and not model.in_exclusive_branches(a.statement, switch, function)
        for a in model.assignments
    )


def _puts_in_eval(model: SemanticModel, layer: str | None, function: FunctionInfo | None) -> bool:
    """``m.eval()`` next to the switch: eval mode is what freezes the layer, and the
    flag only matters again after a ``.train()`` (BNL102's concern)."""
    return any(
        site.function is function
        and isinstance(site.node.func, cst.Attribute)
        and site.node.func.attr.value == "eval"
        and dotted_name(site.node.func.value) == layer
        for site in model.calls
    )
