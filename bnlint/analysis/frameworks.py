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


def torch_layer(qualified: str) -> str | None:
    """``Linear`` for ``torch.nn.Linear`` (or ``torch.nn.modules.linear.Linear``):
    the name of one of torch's own layers. None for anything else, and for the
    containers (``ModuleList``, ``ModuleDict``), which hold what we cannot see."""
    package, _, layer = qualified.rpartition(".")
    if package not in _TORCH_LAYER_PACKAGES and not package.startswith("torch.nn.modules."):
        return None
    if not layer[:1].isupper() or layer.startswith("Module"):
        return None
    return layer


_TORCH_LAYER_PACKAGES = frozenset({"torch.nn", "torch.nn.modules", "torch.nn.parameter"})


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

# Library classes and helpers that freeze BatchNorm layers (last name component:
# torchvision.ops, detectron2.layers and timm.layers all export FrozenBatchNorm2d).
BATCH_NORM_FREEZERS = frozenset(
    {
        "FrozenBatchNorm2d",
        "freeze_batch_norm_2d",
        "convert_frozen_batchnorm",
        "freeze_norm_layers",
    }
)

# Lightning hooks that the framework runs in eval mode under no-grad.
EVALUATION_HOOKS = frozenset({"validation_step", "test_step", "predict_step"})

# -- the mode analysis (BNL001-BNL006) -------------------------------------------

# torch.nn's dropout layers, in the order a fix spells them.
DROPOUT_LAYERS = (
    "Dropout",
    "Dropout1d",
    "Dropout2d",
    "Dropout3d",
    "AlphaDropout",
    "FeatureAlphaDropout",
)

# torch.nn classes whose forward depends on the training flag: only these (and
# project modules, which may contain anything) are tracked as models. A Linear
# layer or a loss behaves the same in both modes. A dropout layer on its own is
# not a model either: it is noise on purpose (a denoising autoencoder's
# corrupted inputs, at test time too).
MODE_DEPENDENT_TORCH_CLASSES = frozenset(
    {
        "Sequential",
        "ModuleList",
        "ModuleDict",
        "BatchNorm1d",
        "BatchNorm2d",
        "BatchNorm3d",
        "LazyBatchNorm1d",
        "LazyBatchNorm2d",
        "LazyBatchNorm3d",
        "SyncBatchNorm",
        "Transformer",
        "TransformerEncoder",
        "TransformerDecoder",
        "TransformerEncoderLayer",
        "TransformerDecoderLayer",
        "MultiheadAttention",
        "RNN",
        "LSTM",
        "GRU",
    }
)

# Calls that build a new module in training mode (prefixes of qualified names).
TRAIN_MODE_FACTORIES = (
    "torchvision.models.",
    "timm.create_model",
    "timm.models.create_model",
)
# ``from_pretrained`` of these libraries calls ``model.eval()`` before returning.
EVAL_MODE_LOADER_PREFIXES = ("transformers.", "diffusers.")

# Wrappers whose result runs the module they wrap: its mode is the module's.
MODULE_WRAPPERS = frozenset(
    {
        "torch.compile",
        "torch.nn.DataParallel",
        "torch.nn.parallel.DataParallel",
        "torch.nn.parallel.DistributedDataParallel",
        "torch.distributed.fsdp.FullyShardedDataParallel",
    }
)
# Of those, the ones that hold the module they wrap as ``.module``: switching
# ``model.module`` switches everything the wrapper runs.
WRAPPERS_WITH_MODULE = frozenset(
    {
        "torch.nn.DataParallel",
        "torch.nn.parallel.DataParallel",
        "torch.nn.parallel.DistributedDataParallel",
        "torch.distributed.fsdp.FullyShardedDataParallel",
    }
)
# Calls that return a copy of a module, in the mode the original is in.
MODULE_COPIES = frozenset({"copy.deepcopy", "torch.optim.swa_utils.AveragedModel"})

# Exporters that record the graph of the mode the module is in, by the position
# of the module argument. ``torch.onnx.export`` switches to eval itself unless
# told ``training=TrainingMode.PRESERVE``.
EXPORTERS = {
    "torch.jit.trace": 0,
    "torch.jit.trace_module": 0,
    "torch.export.export": 0,
    "torch.onnx.export": 0,
}
ONNX_EXPORT = "torch.onnx.export"

# ``torch.set_grad_enabled(flag)`` under every name torch exports it.
SET_GRAD_ENABLED = frozenset(
    {
        "torch.set_grad_enabled",
        "torch.autograd.set_grad_enabled",
        "torch.autograd.grad_mode.set_grad_enabled",
    }
)
# Calls that compute gradients without a training step: an evaluation loop
# that makes them (adversarial evaluation, saliency maps) needs autograd on.
GRADIENT_CALLS = frozenset({"torch.autograd.grad", "torch.func.grad", "torch.func.vjp"})

# Hooks that Lightning runs with the module in eval mode under no-grad, by prefix.
LIGHTNING_EVALUATION_PREFIXES = (
    "validation_",
    "test_",
    "predict_",
    "on_validation_",
    "on_test_",
    "on_predict_",
)
# Methods of a transformers ``Trainer`` subclass that the Trainer runs with the
# model in eval mode under no-grad.
HF_TRAINER_EVALUATION_METHODS = frozenset(
    {"evaluate", "evaluation_loop", "prediction_loop", "prediction_step", "predict"}
)

# torch.utils.data.DataLoader under both of its import paths.
DATA_LOADERS = frozenset({"torch.utils.data.DataLoader", "torch.utils.data.dataloader.DataLoader"})
