"""What bnlint knows about PyTorch and the frameworks around it, as plain data."""

from __future__ import annotations

# Base classes whose subclasses are nn.Modules. Any CamelCase class under
# ``torch.nn`` (Linear, Sequential, ...) also counts: see ``is_torch_module_class``.
MODULE_BASES = frozenset(
    {
        "torch.nn.Module",
        "lightning.LightningModule",
        "lightning.pytorch.LightningModule",
        "lightning.pytorch.core.LightningModule",
        "pytorch_lightning.LightningModule",
        "pytorch_lightning.core.LightningModule",
        "transformers.PreTrainedModel",
        "transformers.modeling_utils.PreTrainedModel",
        "diffusers.ModelMixin",
        "diffusers.models.modeling_utils.ModelMixin",
        "mmengine.model.BaseModule",
        "mmengine.model.BaseModel",
        "mmcv.runner.BaseModule",
    }
)

# Suffixes of framework base classes that are nn.Modules wherever they are
# imported from (``BertPreTrainedModel`` from a relative transformers import).
MODULE_BASE_SUFFIXES = ("PreTrainedModel", "LightningModule")


def is_torch_module_class(qualified: str) -> bool:
    """True for ``torch.nn.X`` classes (``torch.nn.Linear``, ``torch.nn.modules.conv.Conv2d``)."""
    if qualified in MODULE_BASES:
        return True
    if not qualified.startswith("torch.nn."):
        return False
    last = qualified.rsplit(".", 1)[-1]
    return last[:1].isupper() and last not in {"Parameter", "Buffer"}


def is_framework_module_base(qualified: str) -> bool:
    return is_torch_module_class(qualified) or qualified.rsplit(".", 1)[-1].endswith(
        MODULE_BASE_SUFFIXES
    )


# Functional dropout: qualified name -> (name of the training parameter, its
# position, its default). ``torch.dropout(input, p, train)`` has no default.
FUNCTIONAL_DROPOUT = {
    "torch.nn.functional.dropout": ("training", 2, True),
    "torch.nn.functional.dropout1d": ("training", 2, True),
    "torch.nn.functional.dropout2d": ("training", 2, True),
    "torch.nn.functional.dropout3d": ("training", 2, True),
    "torch.nn.functional.alpha_dropout": ("training", 2, False),
    "torch.nn.functional.feature_alpha_dropout": ("training", 2, False),
    "torch.dropout": ("train", 2, None),
    "torch.feature_dropout": ("train", 2, None),
    "torch.alpha_dropout": ("train", 2, None),
    "torch.feature_alpha_dropout": ("train", 2, None),
}

FUNCTIONAL_BATCH_NORM = {
    "torch.nn.functional.batch_norm": 5,
}

SCALED_DOT_PRODUCT_ATTENTION = {
    "torch.nn.functional.scaled_dot_product_attention": 4,
}

# torchvision.ops.stochastic_depth(input, p, mode, training=True)
STOCHASTIC_DEPTH = {
    "torchvision.ops.stochastic_depth": 3,
    "torchvision.ops.stochastic_depth.stochastic_depth": 3,
}

# Calls that return an nn.Module (prefixes of qualified names).
MODEL_FACTORIES = (
    "torchvision.models.",
    "timm.create_model",
    "torch.hub.load",
    "transformers.AutoModel",
    "transformers.AutoModelFor",
    "ultralytics.YOLO",
)

# Module methods that frameworks call only in training mode (Lightning's
# ``training_step``, mmengine's ``BaseModel.train_step``), and ``__init__``,
# which builds the module: dropout or batch statistics there are meant to be on.
TRAINING_ONLY_METHODS = frozenset({"__init__", "training_step", "train_step"})

# Positions of ``running_mean`` and ``running_var`` in the functional batch norm.
# Without running statistics (``None``) ``training=True`` is the only valid call:
# timm's and HF's weight standardisation normalise the weights this way.
BATCH_NORM_RUNNING_STATS = {
    "torch.nn.functional.batch_norm": (("running_mean", 1), ("running_var", 2)),
}

# Gradient-mode context managers, under every name torch exports them.
GRAD_MODE_CONTEXTS = frozenset(
    {
        "torch.no_grad",
        "torch.enable_grad",
        "torch.inference_mode",
        "torch.autograd.no_grad",
        "torch.autograd.enable_grad",
        "torch.autograd.inference_mode",
        "torch.autograd.grad_mode.no_grad",
        "torch.autograd.grad_mode.enable_grad",
        "torch.autograd.grad_mode.inference_mode",
    }
)
