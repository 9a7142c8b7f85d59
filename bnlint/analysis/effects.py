"""What single calls mean to the mode analysis: mode switches, grad switches,
training steps, exports, and the values that are fresh models.

Pure classification of one node at a time; the flow interpreter decides what
each one does to the state.
"""

from __future__ import annotations

import re

import libcst as cst

from bnlint.analysis.calls import argument, keyword_arg, positional_args
from bnlint.analysis.frameworks import (
    EVAL_MODE_LOADER_PREFIXES,
    EXPORTERS,
    GRAD_MODE_CONTEXTS,
    GRADIENT_CALLS,
    MODE_DEPENDENT_TORCH_CLASSES,
    ONNX_EXPORT,
    SET_GRAD_ENABLED,
    TRAIN_MODE_FACTORIES,
)
from bnlint.analysis.names import dotted_name
from bnlint.analysis.state import Grad, Mode

# -- mode switches ------------------------------------------------------------------


def mode_switch(call: cst.Call) -> tuple[str, Mode] | None:
    """``m.eval()`` -> (``m``, EVAL); ``m.train()``, ``m.train(False)``,
    ``m.train(mode=flag)`` (UNKNOWN); also through ``m.to(device).train()``."""
    mode = switched_mode(call)
    if mode is None:
        return None
    receiver = call.func.value  # type: ignore[attr-defined]
    while (
        isinstance(receiver, cst.Call)
        and isinstance(receiver.func, cst.Attribute)
        and (receiver.func.attr.value in SAME_MODULE_METHODS or switched_mode(receiver))
    ):
        receiver = receiver.func.value
    key = dotted_name(receiver)
    return (key, mode) if key is not None else None


def switched_mode(call: cst.Call) -> Mode | None:
    """The mode ``x.eval()`` or ``x.train(...)`` puts ``x`` in, whatever ``x`` is.
    Not ``trainer.train(resume=...)`` or ultralytics' ``model.train(data=...)``."""
    func = call.func
    if not isinstance(func, cst.Attribute) or func.attr.value not in ("eval", "train"):
        return None
    if func.attr.value == "eval":
        return Mode.EVAL if not call.args else None
    if not call.args:
        return Mode.TRAIN
    if len(call.args) != 1 or call.args[0].star:
        return None
    arg = call.args[0]
    if arg.keyword is not None and arg.keyword.value != "mode":
        return None
    literal = _bool_literal(arg.value)
    if literal is None:
        return Mode.UNKNOWN
    return Mode.TRAIN if literal else Mode.EVAL


def _bool_literal(node: cst.BaseExpression) -> bool | None:
    if isinstance(node, cst.Name) and node.value in ("True", "False"):
        return node.value == "True"
    return None


# -- autograd -----------------------------------------------------------------------


def grad_context(qualname: str | None, expr: cst.BaseExpression) -> Grad | None:
    """The grad flag inside ``with expr:`` (or under a decorator ``expr``)."""
    if qualname is None:
        return None
    if qualname in GRAD_MODE_CONTEXTS:
        if qualname.endswith("enable_grad"):
            return Grad.ON
        if isinstance(expr, cst.Call) and qualname.endswith("inference_mode"):
            mode = argument(expr, "mode", 0)
            if mode is not None:
                literal = _bool_literal(mode.value)
                return Grad.UNKNOWN if literal is None else (Grad.OFF if literal else Grad.ON)
        return Grad.OFF
    if qualname in SET_GRAD_ENABLED and isinstance(expr, cst.Call):
        return grad_setting(expr)
    return None


def grad_setting(call: cst.Call) -> Grad:
    """``torch.set_grad_enabled(False)`` -> OFF; a non-literal flag -> UNKNOWN."""
    arg = argument(call, "mode", 0)
    literal = _bool_literal(arg.value) if arg is not None else None
    if literal is None:
        return Grad.UNKNOWN
    return Grad.ON if literal else Grad.OFF


def computes_gradients(call: cst.Call, qualname: str | None) -> bool:
    """``torch.autograd.grad(...)``, ``x.requires_grad_()``: evaluation that needs autograd."""
    if qualname in GRADIENT_CALLS:
        return True
    func = call.func
    return isinstance(func, cst.Attribute) and func.attr.value in ("requires_grad_", "retain_grad")


# -- training steps -----------------------------------------------------------------

_OPTIMIZER_NAME = re.compile(r"(^|_)(opt|optim|optimizer|optimiser)s?(_|\d|$)", re.IGNORECASE)
_BACKWARD_METHODS = frozenset({"backward", "manual_backward"})


def is_training_step(call: cst.Call, qualname: str | None) -> bool:
    """``loss.backward()``, ``optimizer.step()``, ``scaler.step(optimizer)``,
    ``accelerator.backward(loss)``, Lightning's ``self.manual_backward(loss)``."""
    if qualname == "torch.autograd.backward":
        return True
    func = call.func
    if not isinstance(func, cst.Attribute):
        return False
    method = func.attr.value
    if method in _BACKWARD_METHODS:
        return True
    if method != "step":
        return False
    receiver = (dotted_name(func.value) or "").rsplit(".", 1)[-1]
    if _OPTIMIZER_NAME.search(receiver):
        return True
    # ``scaler.step(optimizer)``: a GradScaler steps the optimizer it is given.
    return any(
        _OPTIMIZER_NAME.search((dotted_name(a.value) or "").rsplit(".", 1)[-1]) for a in call.args
    )


# -- exports ------------------------------------------------------------------------


def exported_module(call: cst.Call, qualname: str | None) -> cst.BaseExpression | None:
    """The module a tracing exporter records in its current mode, if ``call`` is one."""
    position = EXPORTERS.get(qualname or "")
    if position is None:
        return None
    if qualname == ONNX_EXPORT:
        training = keyword_arg(call, "training")
        if training is None or not (dotted_name(training.value) or "").endswith("PRESERVE"):
            return None  # the exporter switches to eval mode itself
    args = positional_args(call)
    if position >= len(args):
        return None
    return args[position].value


# -- fresh models -------------------------------------------------------------------


def fresh_library_model(qualname: str) -> Mode | None:
    """The mode of a module a library call builds or loads, if it is one we know:
    torchvision and timm builders give training mode, HF and diffusers
    ``from_pretrained`` eval mode, mode-dependent ``torch.nn`` classes training mode."""
    if qualname.startswith(TRAIN_MODE_FACTORIES):
        return Mode.TRAIN
    if qualname.endswith(".from_pretrained") and qualname.startswith(EVAL_MODE_LOADER_PREFIXES):
        return Mode.EVAL
    if qualname.startswith("torch.nn."):
        last = qualname.rsplit(".", 1)[-1]
        return Mode.TRAIN if last in MODE_DEPENDENT_TORCH_CLASSES else None
    return None


# Methods of nn.Module that return the module itself.
SAME_MODULE_METHODS = frozenset(
    {"to", "cuda", "cpu", "half", "float", "double", "bfloat16", "to_empty", "requires_grad_"}
)


def without_moves(expr: cst.BaseExpression) -> cst.BaseExpression:
    """``model`` for ``model.to(device).cuda()``: calls that return the module
    they are called on, in the mode it is in, peeled off."""
    while (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value in SAME_MODULE_METHODS
    ):
        expr = expr.func.value
    return expr


# Methods of nn.Module that leave its mode alone (anything else called on a
# model may switch it: a project's ``model.freeze()``).
MODE_PRESERVING_METHODS = SAME_MODULE_METHODS | frozenset(
    {
        "parameters",
        "named_parameters",
        "buffers",
        "named_buffers",
        "children",
        "named_children",
        "modules",
        "named_modules",
        "state_dict",
        "load_state_dict",
        "zero_grad",
        "register_forward_hook",
        "register_forward_pre_hook",
        "register_full_backward_hook",
        "register_buffer",
        "register_parameter",
        "add_module",
        "get_submodule",
        "get_parameter",
        "share_memory",
        "type",
        "forward",
        "generate",
        "save_pretrained",
        "push_to_hub",
        "num_parameters",
        "get_input_embeddings",
        "get_output_embeddings",
        "resize_token_embeddings",
        "gradient_checkpointing_enable",
        "print_trainable_parameters",
        "tie_weights",
        "compile",
        "size",
        "item",
        "numel",
        "detach",
        "keys",
        "values",
        "items",
        "get",
        "__call__",
        # Conventional initialisers: no forward pass, no switch.
        "reset_parameters",
        "init_weights",
        "init_hidden",
        "initHidden",
    }
)
# Calls that use a model without switching its mode: builtins, torch, logging.
_PURE_PREFIXES = (
    "torch.",
    "torchvision.",
    "numpy.",
    "math.",
    "logging.",
    "os.",
    "time.",
    "json.",
    "copy.",
    "wandb.",
    "builtins.",
)
_UNSWITCHING = ("torch.ao.", "torch.quantization.", "torch.fx.")
PURE_BUILTINS = frozenset(
    {
        "print",
        "len",
        "isinstance",
        "issubclass",
        "type",
        "id",
        "repr",
        "str",
        "hash",
        "getattr",
        "hasattr",
        "sum",
        "list",
        "tuple",
        "dict",
        "set",
        "zip",
        "enumerate",
        "range",
        "sorted",
        "reversed",
        "max",
        "min",
        "any",
        "all",
        "iter",
        "next",
        "vars",
        "dir",
        "format",
        "float",
        "int",
        "bool",
        "round",
        "abs",
        "super",
    }
)


def is_pure_call(func: cst.BaseExpression, qualname: str | None) -> bool:
    """Calls that can be handed a model without changing its mode."""
    if qualname is not None:
        return qualname.startswith(_PURE_PREFIXES) and not qualname.startswith(_UNSWITCHING)
    return isinstance(func, cst.Name) and func.value in PURE_BUILTINS


# Evidence, in the way a value is used, that it is an nn.Module.
MODULE_EVIDENCE_METHODS = frozenset(
    {
        "parameters",
        "named_parameters",
        "modules",
        "named_modules",
        "children",
        "named_children",
        "buffers",
        "named_buffers",
        "register_forward_hook",
        "register_forward_pre_hook",
        "requires_grad_",
        "eval",
    }
)


# Callables that hang off models and trainers but are data plumbing or
# bookkeeping, not the network: ``model.data_preprocessor(batch)``,
# ``self.criterion(out, y)``, ``self.tokenizer(text)``, ``testset.pull_image(i)``.
_NOT_A_NETWORK = re.compile(
    r"(^|_)(preprocessor|processor|tokenizer|transforms?|collate_fn|criterion|loss_fn|loss_func"
    r"|loss_function|loss"
    r"|metrics?|logger|writer|accelerator|callback"
    r"|datasets?|dataloader|loader|trainset|valset|testset)$"
    r"|^criterion_",  # ``criterion_cls``, ``criterion_seg``: one criterion per head
    re.IGNORECASE,
)


# Attributes that hold tensors, not sub-modules: ``model.fc.weight.t()`` is
# arithmetic on a parameter, not a forward pass.
PARAMETER_ATTRIBUTES = frozenset({"weight", "bias"})
_TENSOR_ATTRIBUTES = PARAMETER_ATTRIBUTES | {"data", "grad", "running_mean", "running_var"}
# Callables that switch autograd off themselves: diffusers' and transformers'
# pipelines (``pipeline(prompt)``, ``pipe(image)``).
_RUNS_WITHOUT_GRAD = re.compile(r"(^|_)(pipe|pipeline)$", re.IGNORECASE)


def is_plumbing(key: str) -> bool:
    """``model.data_preprocessor``, ``criterion``, ``tokenizer.batch_decode``,
    ``model.prototypes.weight.t``: called, but not a model. Plumbing or
    bookkeeping, a method of one, or a method of a tensor that a module holds."""
    root, *attributes = key.split(".")
    return any(
        _NOT_A_NETWORK.search(part) for part in (root, *attributes)
    ) or not _TENSOR_ATTRIBUTES.isdisjoint(attributes)


def runs_without_grad(key: str) -> bool:
    """``pipeline(prompt)``: a pipeline runs its models under ``torch.no_grad()``."""
    return _RUNS_WITHOUT_GRAD.search(key.rsplit(".", 1)[-1]) is not None


def looks_like_class(func: cst.BaseExpression) -> bool:
    """``Net(...)``, ``models.Net(...)``: a CamelCase call builds an object."""
    name = (dotted_name(func) or "").rsplit(".", 1)[-1]
    return name[:1].isupper() and not name.isupper()
