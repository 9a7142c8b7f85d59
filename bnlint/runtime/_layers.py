"""Facts about layers shared by the audit and the monitor: kinds, mode sensitivity, names.

A layer is *mode-sensitive* when ``train()``/``eval()`` changes what it computes:
a norm layer that tracks running statistics (every ``_BatchNorm`` variant,
``SyncBatchNorm``, ``InstanceNorm*`` with ``track_running_stats=True``) or a
dropout layer with ``p > 0``. LayerNorm, GroupNorm and norms without running
statistics behave the same in both modes, so no rule cares about their mode.
"""

from __future__ import annotations

from collections.abc import Iterable

from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm, _NormBase
from torch.nn.modules.dropout import _DropoutNd

NORM = "norm"
DROPOUT = "dropout"

_KINDS: dict[type, str | None] = {}


def kind(module: nn.Module) -> str | None:
    """``NORM``, ``DROPOUT`` or None; cached per class because hooks ask on every forward."""
    cls = type(module)
    try:
        return _KINDS[cls]
    except KeyError:
        found = (
            NORM if issubclass(cls, _NormBase) else DROPOUT if issubclass(cls, _DropoutNd) else None
        )
        _KINDS[cls] = found
        return found


def tracks_stats(module: nn.Module) -> bool:
    """A norm layer that normalises with, and in training updates, running statistics."""
    # _buffers directly: nn.Module.__getattr__ is slow, and hooks ask on every forward.
    return module.track_running_stats and module._buffers.get("running_mean") is not None


def sensitive(module: nn.Module, layer_kind: str | None) -> bool:
    if layer_kind == NORM:
        return tracks_stats(module)
    return layer_kind == DROPOUT and module.p > 0


def sensitive_layers(root: nn.Module) -> dict[nn.Module, str]:
    """Mode-sensitive layers under ``root`` (itself included) with their kinds."""
    found = {}
    for module in root.modules():
        layer_kind = kind(module)
        if sensitive(module, layer_kind):
            found[module] = layer_kind
    return found


def batch_stats_in_eval(module: nn.Module) -> bool:
    """A BatchNorm without running statistics: in eval mode it still uses each batch's own."""
    return (
        isinstance(module, _BatchNorm)
        and module.running_mean is None
        and module.running_var is None
    )


def frozen(module: nn.Module, also_frozen: frozenset[int] = frozenset()) -> bool:
    """The layer has parameters and none of them is trained (``requires_grad`` off, or listed)."""
    params = [p for p in module._parameters.values() if p is not None]
    return bool(params) and all(not p.requires_grad or id(p) in also_frozen for p in params)


def module_names(root: nn.Module) -> dict[nn.Module, str]:
    """Each module's dotted path under ``root`` (the first one, for a module shared twice)."""
    return {module: name for name, module in root.named_modules()}


def group(flagged: Iterable[str], universe: Iterable[str]) -> list[list[str]]:
    """Collapse flagged module paths into groups under the highest all-flagged ancestor.

    ``universe`` is every path the question applies to (``flagged`` is a subset),
    so a frozen ``backbone`` with 50 BatchNorm layers is one group, not 50 findings.
    """
    flagged = list(dict.fromkeys(flagged))
    totals = _ancestor_counts(universe)
    hits = _ancestor_counts(flagged)
    groups: dict[str, list[str]] = {}
    for path in flagged:
        top = next((a for a in _ancestors(path) if hits[a] == totals.get(a, 0)), path)
        groups.setdefault(top, []).append(path)
    return list(groups.values())


def _ancestors(path: str) -> list[str]:
    """``"a.b.c"`` -> ``["", "a", "a.b", "a.b.c"]``: outermost first."""
    parts = path.split(".") if path else []
    return [""] + [".".join(parts[: i + 1]) for i in range(len(parts))]


def _ancestor_counts(paths: Iterable[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for path in paths:
        for ancestor in _ancestors(path):
            counts[ancestor] = counts.get(ancestor, 0) + 1
    return counts


def common_path(paths: list[str]) -> str:
    """The longest dotted prefix shared by ``paths`` ("" when only the root is shared)."""
    split = [p.split(".") if p else [] for p in paths]
    shared = []
    for parts in zip(*split, strict=False):
        if len(set(parts)) != 1:
            break
        shared.append(parts[0])
    return ".".join(shared)


def describe(paths: list[str], model: str) -> str:
    """``backbone (12 layers: backbone.bn1, backbone.layer1.0.bn1, ...)``, for a message."""
    if len(paths) == 1:
        return f"layer {paths[0]}" if paths[0] else model
    shown = ", ".join(paths[:3]) + (", ..." if len(paths) > 3 else "")
    head = common_path(paths)
    if not head:
        return f"{len(paths)} layers of {model} ({shown})"
    return f"{head} ({len(paths)} layers: {shown})"
