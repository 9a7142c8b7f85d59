"""Fixes that need the live model: keep norm layers frozen, recompute BatchNorm statistics."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from bnlint.runtime._layers import NORM, kind, tracks_stats


def freeze_norm_layers(module: nn.Module, *, freeze_affine: bool = True) -> list[str]:
    """Put the norm layers under ``module`` in eval mode and keep them there; return their paths.

    Covers every layer with running statistics (all ``_BatchNorm`` variants,
    ``SyncBatchNorm``, ``InstanceNorm`` with ``track_running_stats``). Each such
    layer instance gets its own ``train`` attribute that always switches it to
    eval. ``nn.Module.train`` reaches children through that attribute, so a later
    ``model.train()`` on any ancestor (or ``layer.train()`` itself) leaves the
    layer in eval: this fixes BNL101 and cannot be undone by BNL102. The
    attribute survives ``copy.deepcopy`` (e.g. ``AveragedModel``) and pickling
    (loading then needs bnlint importable); ``del layer.train`` undoes it.
    With ``freeze_affine`` the layers' weight and bias stop requiring grad too.
    """
    frozen = []
    for name, layer in module.named_modules():
        if kind(layer) == NORM and tracks_stats(layer):
            layer.train = functools.partial(_stay_in_eval, layer)
            layer.train(False)
            if freeze_affine:
                layer.requires_grad_(False)
            frozen.append(name)
    return frozen


def _stay_in_eval(layer: nn.Module, mode: bool = True) -> nn.Module:
    """``train`` of a frozen norm layer: whatever ``mode`` asks, the layer stays in eval."""
    return type(layer).train(layer, False)


def _is_frozen(layer: nn.Module) -> bool:
    return "train" in layer.__dict__


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module,
    loader: Iterable[Any],
    num_batches: int | None = None,
    *,
    device: torch.device | str | None = None,
) -> int:
    """Reset and recompute the running statistics of ``model``'s norm layers from ``loader``.

    Like ``torch.optim.swa_utils.update_bn``: statistics are reset and recomputed
    as a cumulative average (``momentum=None``) over ``num_batches`` batches (all
    when None); a batch is a tensor or a list/tuple whose first item is the input.
    Unlike it, only the norm layers run in training mode: dropout and every other
    layer stay in eval, so the statistics are those of the activations seen at
    inference. Layers frozen with :func:`freeze_norm_layers` are left alone. Every
    module's mode and every layer's momentum are restored afterwards, also on
    error. Returns the number of batches used.
    """
    layers = [
        m for m in model.modules() if kind(m) == NORM and tracks_stats(m) and not _is_frozen(m)
    ]
    if not layers:
        return 0
    modes = {m: m.training for m in model.modules()}
    momenta = {m: m.momentum for m in layers}
    try:
        _prepare(model, layers)
        return _run(model, itertools.islice(loader, num_batches), device)
    finally:
        for module, mode in modes.items():
            module.training = mode
        for layer, momentum in momenta.items():
            layer.momentum = momentum


def _prepare(model: nn.Module, layers: list[nn.Module]) -> None:
    # Flags are set directly: a train() override (norm_eval, freeze_norm_layers) must not interfere.
    for module in model.modules():
        module.training = False
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
        layer.training = True


def _run(model: nn.Module, batches: Iterable[Any], device: torch.device | str | None) -> int:
    count = 0
    for batch in batches:
        inputs = batch[0] if isinstance(batch, (list, tuple)) else batch
        model(inputs if device is None else inputs.to(device))
        count += 1
    return count
