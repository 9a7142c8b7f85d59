"""``audit(model)``: the findings a live model's current state proves, without running it.

Checks (RULES.md codes):

- BNL101: norm layers that track running statistics are in training mode while
  all their parameters are frozen (``requires_grad`` off, or in an ``lr=0``
  parameter group of the optimizer passed in). Layers without parameters
  (``affine=False``) give no evidence of freezing and are not reported.
- BNL103: ``track_running_stats`` disagrees with the buffers: True without
  ``running_mean`` (switched on after construction), or False with buffers
  (switched off after construction).
- BNL106: the model is in eval mode and has BatchNorm layers without running
  statistics, which normalise with each test batch's own statistics.
- BNL001: the model is in eval mode but some norm layers that track running
  statistics are still in training mode (a partial ``.eval()``); dropout layers
  left in training mode are listed with them. Dropout layers alone in training
  mode are deliberate Monte-Carlo dropout and not reported.

Layers that share a fate are reported once per sub-module: a frozen ``backbone``
with 50 BatchNorm layers is one BNL101 finding on ``backbone``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import nn

from bnlint.diagnostic import Diagnostic
from bnlint.runtime._layers import (
    NORM,
    batch_stats_in_eval,
    common_path,
    describe,
    frozen,
    group,
    kind,
    module_names,
    sensitive_layers,
    tracks_stats,
)
from bnlint.runtime._report import Where, diagnostic


@dataclass(frozen=True)
class _Model:
    root: nn.Module
    names: dict[nn.Module, str]
    where: Where
    label: str

    def paths(self, keep: Callable[[nn.Module], bool]) -> list[str]:
        return [name for module, name in self.names.items() if keep(module)]

    def report(
        self, code: str, flagged: list[str], universe: list[str], says: str
    ) -> Iterator[Diagnostic]:
        """One diagnostic per group of flagged layers; ``says`` completes "<layers> ..."."""
        for members in group(flagged, universe):
            subject = describe(members, self.label)
            yield diagnostic(
                code, self.where, f"{subject} {says}", module=common_path(members), model=self.label
            )


def audit(
    model: nn.Module, *, optimizer: torch.optim.Optimizer | None = None, path: str = "<model>"
) -> list[Diagnostic]:
    """Inspect ``model`` as it is now and return its findings.

    ``path`` labels the diagnostics (line and column 1); the sub-module path is in
    each message and in ``extra["module"]``. Pass the ``optimizer`` to count
    parameters in ``lr=0`` groups as frozen.
    """
    target = _Model(model, module_names(model), Where(path, 1), type(model).__name__)
    zero_lr = _zero_lr_params(optimizer)
    return [
        *_frozen_but_training(target, zero_lr),
        *_toggled_flag(target),
        *_batch_stats_at_inference(target),
        *_partial_eval(target),
    ]


def _zero_lr_params(optimizer: torch.optim.Optimizer | None) -> frozenset[int]:
    if optimizer is None:
        return frozenset()
    return frozenset(id(p) for g in optimizer.param_groups if g.get("lr") == 0 for p in g["params"])


def _is_norm(module: nn.Module) -> bool:
    return kind(module) == NORM


def _frozen_but_training(target: _Model, zero_lr: frozenset[int]) -> Iterator[Diagnostic]:
    flagged = target.paths(
        lambda m: _is_norm(m) and tracks_stats(m) and m.training and frozen(m, zero_lr)
    )
    universe = target.paths(lambda m: _is_norm(m) and tracks_stats(m))
    yield from target.report(
        "BNL101",
        flagged,
        universe,
        "is in training mode with frozen parameters: its running statistics still change on every "
        "forward pass; put frozen norm layers in eval mode (bnlint.runtime.freeze_norm_layers) "
        "or use FrozenBatchNorm2d",
    )


def _toggled_flag(target: _Model) -> Iterator[Diagnostic]:
    universe = target.paths(_is_norm)
    switched_on = target.paths(
        lambda m: _is_norm(m) and m.track_running_stats and m.running_mean is None
    )
    switched_off = target.paths(
        lambda m: _is_norm(m) and not m.track_running_stats and m.running_mean is not None
    )
    yield from target.report(
        "BNL103",
        switched_on,
        universe,
        "has track_running_stats=True but no running statistics (the flag was set after "
        "construction): it normalises with batch statistics even in eval mode",
    )
    yield from target.report(
        "BNL103",
        switched_off,
        universe,
        "has running statistics but track_running_stats=False (the flag was cleared after "
        "construction): this does not freeze it; in training mode it normalises with batch "
        "statistics; use .eval() on the layer or FrozenBatchNorm2d",
    )


def _batch_stats_at_inference(target: _Model) -> Iterator[Diagnostic]:
    if target.root.training:
        return
    flagged = target.paths(lambda m: batch_stats_in_eval(m) and not m.track_running_stats)
    yield from target.report(
        "BNL106",
        flagged,
        target.paths(_is_norm),
        "has track_running_stats=False: in eval mode it normalises with each batch's own "
        "statistics, so predictions depend on batch composition",
    )


def _partial_eval(target: _Model) -> Iterator[Diagnostic]:
    if target.root.training:
        return
    layers = sensitive_layers(target.root)
    training = [m for m in layers if m.training]
    if not any(layers[m] == NORM for m in training):
        return  # only dropout in training mode: deliberate Monte-Carlo dropout
    yield from target.report(
        "BNL001",
        [target.names[m] for m in training],
        [target.names[m] for m in layers],
        f"is still in training mode although {target.label} is in eval mode (a partial "
        ".eval()): BatchNorm uses and updates batch statistics, dropout stays on; call .eval() "
        "on the whole model",
    )
