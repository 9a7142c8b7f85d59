"""What the monitor remembers about batches, model calls and layer forward passes."""

from __future__ import annotations

import itertools
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from bnlint.runtime._report import Where

if TYPE_CHECKING:
    from bnlint.runtime.monitor import Monitor

# Enough to see the logits of a model that also returns caches or auxiliary heads.
_MAX_OUTPUTS = 16


@dataclass(frozen=True)
class LayerEvent:
    """One forward pass of a mode-sensitive norm or dropout layer (``record_events=True``)."""

    module: str  # dotted path under the top-level model
    model: str  # class name of the top-level model
    kind: str  # "norm" or "dropout"
    training: bool
    grad_enabled: bool
    # None when not measured: eval mode, or a dropout layer
    stats_changed: bool | None
    loader: Any  # the DataLoader the current batch came from, or None
    path: str  # user source line that called the top-level model
    line: int


@dataclass
class SiteRecord:
    """What the monitor saw at one user source line, contradictions included.

    ``bnlint confirm`` reads it to tell a static finding the run disproved
    (the line ran, the model was in eval mode) from one it never reached.
    """

    evaluations: int = 0  # settled evaluation passes of a model called from this line
    sensitive_evaluations: int = 0  # ... in which mode-sensitive layers ran
    train_mode_evaluations: int = 0  # ... that were reported as BNL001
    grad_evaluations: int = 0  # ... with autograd on
    exports: int = 0  # jit.trace/export/onnx.export of a module from this line
    train_mode_exports: int = 0  # ... with mode-sensitive layers in training mode (BNL005)


class Batch:
    """A batch yielded by a DataLoader; ``steps``: the optimizer step count at that moment."""

    __slots__ = ("loader", "steps")

    def __init__(self, loader: Any, steps: int) -> None:
        self.loader = loader
        self.steps = steps


@dataclass(eq=False)
class Call:
    """One call of a top-level model, from its forward pre-hook until its fate is known."""

    root: nn.Module
    where: Where
    grad: bool  # autograd on when the model was called
    training: bool  # root.training when the model was called
    batch: Batch | None
    steps: int  # step count at the start of the window in which a step makes this a training call
    recal: bool  # called from update_bn/recalibrate_batchnorm, or a BatchNorm had momentum=None
    train_layers: dict[nn.Module, str] = field(default_factory=dict)  # ordered set: layer -> kind
    sensitive: bool = False  # some mode-sensitive layer ran
    # frozen norm layers whose running statistics moved (an ordered set)
    drifted: dict[nn.Module, None] = field(default_factory=dict)
    outputs: list[weakref.ref] = field(default_factory=list)
    grad_outputs: bool = False
    backward: bool = False
    stepped: bool = False

    def saw_backward(self, grad: torch.Tensor) -> None:
        """Tensor hook on the outputs: reads nothing, returns None, so gradients are unchanged."""
        self.backward = True

    def outputs_dead(self) -> bool:
        return bool(self.outputs) and all(ref() is None for ref in self.outputs)

    def watch(self, output: Any) -> None:
        """Keep weak references to the output tensors and learn whether a backward reaches them."""
        tensors = list(itertools.islice(_tensors(output), _MAX_OUTPUTS))
        self.outputs = [weakref.ref(t) for t in tensors]
        if not self.grad:
            return
        for tensor in tensors:
            if tensor.requires_grad:
                tensor.register_hook(self.saw_backward)
                self.grad_outputs = True


def _tensors(value: Any, depth: int = 2) -> Iterator[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        yield value
    elif depth and isinstance(value, (list, tuple, dict)):
        for item in value.values() if isinstance(value, dict) else value:
            yield from _tensors(item, depth - 1)


class TrackedIterator:
    """Wraps a DataLoader iterator so the monitor knows which loader the current batch came from."""

    def __init__(self, iterator: Iterator[Any], loader: Any, monitor: Monitor) -> None:
        self._iterator = iterator
        self.loader = loader
        self.monitor: Monitor | None = monitor
        self.batch: Batch | None = None
        self.count = 0

    def __iter__(self) -> TrackedIterator:
        return self

    def __len__(self) -> int:
        return len(self._iterator)

    def __next__(self) -> Any:
        monitor = self.monitor
        if monitor is None:
            return next(self._iterator)
        if monitor.limit_batches is not None and self.count >= monitor.limit_batches:
            monitor._iterator_done(self)
            raise StopIteration
        try:
            item = next(self._iterator)
        except StopIteration:
            monitor._iterator_done(self)
            raise
        self.count += 1
        monitor._iterator_yielded(self)
        return item

    def __del__(self) -> None:
        # A `break` out of the loop drops the iterator: its last batch is over.
        if self.monitor is not None:
            self.monitor._iterator_done(self)
