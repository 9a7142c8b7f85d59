"""Runtime confirmation: check the live model and the real run, not just the source.

Needs PyTorch (``pip install "bnlint[runtime]"``); nothing else in bnlint imports torch.

Public API:

- :func:`audit` ``(model, *, optimizer=None, path="<model>") -> list[Diagnostic]``:
  findings visible in a model's current state (BNL001 partial eval, BNL101,
  BNL103, BNL106).
- :class:`Monitor` ``(*, limit_batches=None, record_events=False)``: context
  manager and decorator that watches forward passes, backward passes,
  optimizer steps, DataLoaders and exports through global hooks, then
  ``Monitor.findings()`` returns the confirmed findings located at the user's
  source lines (BNL001, BNL002, BNL003, BNL005, BNL101, BNL201, BNL203, BNL301).
- :func:`freeze_norm_layers` ``(module, *, freeze_affine=True) -> list[str]``:
  put norm layers in eval and keep them there across later ``.train()`` calls.
- :func:`recalibrate_batchnorm` ``(model, loader, num_batches=None, *, device=None) -> int``:
  reset and recompute BatchNorm running statistics from a loader.
- :class:`LayerEvent`: one recorded norm/dropout forward pass.
"""

try:
    import torch  # noqa: F401
except ImportError:
    raise ImportError(
        'bnlint.runtime needs PyTorch, which is not installed: pip install "bnlint[runtime]"'
    ) from None

from bnlint.runtime._records import LayerEvent
from bnlint.runtime.audit import audit
from bnlint.runtime.helpers import freeze_norm_layers, recalibrate_batchnorm
from bnlint.runtime.monitor import Monitor

__all__ = ["LayerEvent", "Monitor", "audit", "freeze_norm_layers", "recalibrate_batchnorm"]
