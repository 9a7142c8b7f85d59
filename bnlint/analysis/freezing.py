"""Freezing: which modules a file freezes, and how (BNL101, BNL102).

Two ways to freeze, and they do different things to BatchNorm:

- *by gradient*: ``m.requires_grad_(False)``, ``p.requires_grad = False`` over
  ``m.parameters()`` (also filtered by name), ``setattr(p, "requires_grad",
  False)``, an optimizer param group with ``lr=0``, timm's ``freeze`` told to keep
  the BatchNorm layers. The weights stop moving; running statistics do not.
- *by eval mode*: ``backbone.eval()`` on a sub-module, ``m.eval()`` on the
  BatchNorm layers a ``.modules()`` loop visits, ``model.apply(set_bn_eval)``.
  Running statistics stop moving, until an ancestor's ``.train()`` switches them
  back.

Each freeze names the frozen module by a dotted key in its scope. ``places``
maps a key to the names it has at module level and in the callers of the
function it is in (through parameters and return values), so that a freeze in
``set_requires_grad(model)`` and a ``model.train()`` in ``train_one_epoch(model)``
can meet on ``model_ft``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from itertools import pairwise

import libcst as cst

from bnlint.analysis.architectures import BATCH_NORM_CLASSES, contains_batch_norm
from bnlint.analysis.calls import is_zero_literal, keyword_arg, positional_args
from bnlint.analysis.effects import PARAMETER_ATTRIBUTES, switched_mode
from bnlint.analysis.model import FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.state import Mode, is_under
from bnlint.analysis.values import assigned_values
from bnlint.analysis.walk import children, descendants

Scope = FunctionInfo | None
REQUIRES_GRAD = "requires_grad"
_PARAMETER_ITERATORS = frozenset({"parameters", "named_parameters"})
_MODULE_ITERATORS = frozenset({"modules", "named_modules", "children", "named_children"})
# Name filters that pick the norm layers' parameters (``bn1.weight``, ``norm.bias``).
_NORM_NAME = re.compile(r"bn|norm", re.IGNORECASE)
# Sub-modules of the BatchNorm architectures (torchvision, timm) that hold
# BatchNorm layers: ``model.layer4``, ``model.features``; not ``fc``/``classifier``.
_BATCH_NORM_STAGE = re.compile(
    r"^(layer\d|features|blocks|stages?\d*|stem|trunk_output|backbone|encoder|body|bn\d*)$"
)
# timm's ``freeze(model, [...], include_bn_running_stats=True)`` swaps BatchNorm for
# FrozenBatchNorm2d unless told not to.
_TIMM_FREEZE = frozenset({"timm.utils.model.freeze", "timm.utils.freeze"})
_TIMM_KEEPS_BATCH_NORM = "include_bn_running_stats"


@dataclass(frozen=True)
class Place:
    """A module as a dotted key in a scope."""

    scope: Scope
    key: str


@dataclass(frozen=True)
class GradFreeze:
    """Parameters of ``key`` frozen by gradient at ``node``. ``norms_only``: only
    its norm layers' parameters (a ``.modules()`` loop with an ``isinstance`` test,
    a ``"bn" in name`` filter)."""

    node: cst.CSTNode
    key: str
    scope: Scope
    norms_only: bool = False


@dataclass(frozen=True)
class EvalFreeze:
    """``key`` (or, ``norms_only``, its norm layers) put in eval mode by ``call``;
    ``statement`` is what re-applies it: the ``.eval()`` line, or the whole loop
    over ``.modules()``."""

    call: cst.Call
    statement: cst.CSTNode
    key: str
    scope: Scope
    norms_only: bool


# -- freezing by gradient -------------------------------------------------------------


def grad_freezes(model: SemanticModel) -> Iterator[GradFreeze]:
    """Every freeze by gradient in the file."""
    for target, node, scope, flag in _requires_grad_settings(model):
        if flag is False:
            freeze = _freeze_of(model, target, node, scope)
            if freeze is not None:
                yield freeze
    for site in model.calls:
        yield from _library_freezes(model, site.node, site.function)


def grad_unfreezes(model: SemanticModel) -> Iterator[GradFreeze]:
    """``requires_grad = True`` (or ``requires_grad_()``) on a module's parameters:
    a freeze that is undone (a GAN's alternating steps, gradual unfreezing)."""
    for target, node, scope, flag in _requires_grad_settings(model):
        if flag is True:
            unfreeze = _freeze_of(model, target, node, scope)
            if unfreeze is not None:
                yield unfreeze


# What ``requires_grad`` is set on, where, in which scope, and to which literal
# (None: a value known only at run time).
_Setting = tuple[cst.BaseExpression, cst.CSTNode, Scope, bool | None]


def _requires_grad_settings(model: SemanticModel) -> Iterator[_Setting]:
    """``x.requires_grad = v``, ``x.requires_grad_(v)``, ``setattr(x, "requires_grad", v)``."""
    for assignment in model.assignments:
        target = assignment.target
        if isinstance(target, cst.Attribute) and target.attr.value == REQUIRES_GRAD:
            flag = _literal_bool(assignment.value)
            yield target.value, assignment.statement, assignment.function, flag
    for site in model.calls:
        call, func = site.node, site.node.func
        if isinstance(func, cst.Attribute) and func.attr.value == "requires_grad_":
            args = positional_args(call)
            given = keyword_arg(call, REQUIRES_GRAD) or (args[0] if args else None)
            flag = True if given is None else _literal_bool(given.value)
            yield func.value, call, site.function, flag
        elif dotted_name(func) == "setattr" and len(call.args) == 3:
            name = call.args[1].value
            if isinstance(name, cst.SimpleString) and name.evaluated_value == REQUIRES_GRAD:
                flag = _literal_bool(call.args[2].value)
                yield call.args[0].value, call, site.function, flag


def _library_freezes(model: SemanticModel, call: cst.Call, scope: Scope) -> Iterator[GradFreeze]:
    """timm's ``freeze`` told to keep BatchNorm, and param groups with ``lr=0``."""
    args = positional_args(call)
    if model.qualname(call.func) in _TIMM_FREEZE and args:
        keeps = keyword_arg(call, _TIMM_KEEPS_BATCH_NORM)
        key = dotted_name(args[0].value)
        if keeps is not None and _literal_bool(keeps.value) is False and key is not None:
            yield GradFreeze(call, key, scope)
    for element in _zero_lr_groups(call):
        key = dotted_name(element)
        if key is not None:
            yield GradFreeze(call, key, scope)


def _zero_lr_groups(call: cst.Call) -> Iterator[cst.BaseExpression]:
    """``{"params": m.parameters(), "lr": 0}`` in an optimizer's param groups: ``m``."""
    args = positional_args(call)
    groups = args[0].value if args else None
    if not isinstance(groups, cst.List | cst.Tuple):
        return
    for element in groups.elements:
        if not isinstance(element.value, cst.Dict):
            continue
        entries = {
            key.evaluated_value: entry.value
            for entry in element.value.elements
            if isinstance(entry, cst.DictElement) and isinstance(key := entry.key, cst.SimpleString)
        }
        params, lr = entries.get("params"), entries.get("lr")
        if lr is not None and is_zero_literal(lr) and _is_parameters_call(params):
            yield params.func.value  # type: ignore[union-attr]


def _is_parameters_call(expr: cst.BaseExpression | None) -> bool:
    return (
        isinstance(expr, cst.Call)
        and isinstance(expr.func, cst.Attribute)
        and expr.func.attr.value == "parameters"
    )


def _freeze_of(
    model: SemanticModel, frozen: cst.BaseExpression, node: cst.CSTNode, scope: Scope
) -> GradFreeze | None:
    """What freezing ``frozen`` (a parameter, a loop variable, a module) freezes."""
    if isinstance(frozen, cst.Attribute) and frozen.attr.value in PARAMETER_ATTRIBUTES:
        frozen = frozen.value  # ``m.weight``: the module ``m``
    name = dotted_name(frozen)
    if name is None:
        return None
    loop = _loop_binding(model, name, node, scope)
    if loop is None:
        return GradFreeze(node, name, scope)
    owner_key = dotted_name(loop.iter.func.value)  # type: ignore[attr-defined]
    if owner_key is None:
        return None
    if loop.iter.func.attr.value in _MODULE_ITERATORS:  # type: ignore[attr-defined]
        return _filtered_modules(model, loop, node, owner_key, scope)
    return _filtered_parameters(loop, node, owner_key, scope)


def _filtered_modules(
    model: SemanticModel, loop: cst.For, node: cst.CSTNode, owner_key: str, scope: Scope
) -> GradFreeze | None:
    """``for m in model.modules():`` freezing every module, or the BatchNorm layers
    behind an ``isinstance`` test; another test (``isinstance(m, nn.Conv2d)``) picks
    layers we cannot name."""
    if _guarded_by_batch_norm_test(loop.body, node, model):
        return GradFreeze(node, owner_key, scope, norms_only=True)
    return (
        GradFreeze(node, owner_key, scope) if _enclosing_if_tests(loop.body, node) == [] else None
    )


def _filtered_parameters(
    loop: cst.For, node: cst.CSTNode, owner_key: str, scope: Scope
) -> GradFreeze | None:
    """``for name, p in m.named_parameters(): if name.startswith("backbone"): ...``."""
    tests = _enclosing_if_tests(loop.body, node)
    if tests is None:
        return None
    if not tests:
        return GradFreeze(node, owner_key, scope)
    if len(tests) > 1:
        return None
    matched = _name_filter(tests[0])
    if matched is None:
        return None
    text, negated = matched
    if _NORM_NAME.search(text):  # the norm layers picked, or left trainable
        return None if negated else GradFreeze(node, owner_key, scope, norms_only=True)
    if negated:
        return GradFreeze(node, owner_key, scope)
    first = text.split(".", 1)[0]
    if not first.isidentifier():
        return None
    return GradFreeze(node, f"{owner_key}.{first}", scope)


def _name_filter(test: cst.BaseExpression) -> tuple[str, bool] | None:
    """``name.startswith("x")`` or ``"x" in name`` -> ("x", False); their negations
    -> ("x", True); anything else None."""
    negated = False
    if isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not):
        test, negated = test.expression, True
    if (
        isinstance(test, cst.Call)
        and isinstance(test.func, cst.Attribute)
        and test.func.attr.value == "startswith"
        and len(test.args) == 1
        and isinstance(test.args[0].value, cst.SimpleString)
    ):
        text = test.args[0].value.evaluated_value
        return (text, negated) if isinstance(text, str) else None
    if (
        isinstance(test, cst.Comparison)
        and len(test.comparisons) == 1
        and isinstance(test.left, cst.SimpleString)
    ):
        operator = test.comparisons[0].operator
        text = test.left.evaluated_value
        if not isinstance(text, str):
            return None
        if isinstance(operator, cst.In):
            return text, negated
        if isinstance(operator, cst.NotIn):
            return text, not negated
    return None


def _enclosing_if_tests(body: cst.CSTNode, node: cst.CSTNode) -> list[cst.BaseExpression] | None:
    """The tests of the ``if`` statements between ``body`` and ``node``; None when
    ``node`` sits in an ``else`` branch (the test is reversed there) or is not found."""
    path = _path_to(body, node)
    if path is None:
        return None
    tests = []
    for parent, child in pairwise(path):
        if isinstance(parent, cst.If):
            if child is not parent.body:
                return None if child is parent.orelse else tests
            tests.append(parent.test)
    return tests


def _path_to(root: cst.CSTNode, node: cst.CSTNode) -> list[cst.CSTNode] | None:
    stack: list[tuple[cst.CSTNode, list[cst.CSTNode]]] = [(root, [root])]
    while stack:
        current, path = stack.pop()
        if current is node:
            return path
        stack.extend((child, [*path, child]) for child in children(current))
    return None


def _loop_binding(
    model: SemanticModel, name: str, node: cst.CSTNode, scope: Scope
) -> cst.For | None:
    """The ``for`` over ``.parameters()``/``.modules()`` (or their ``named_``
    forms) that binds ``name`` and contains ``node``."""
    for site in model.for_loops:
        loop = site.node
        if site.function is not scope or not isinstance(loop, cst.For):
            continue
        iterated = loop.iter
        if not (
            isinstance(iterated, cst.Call)
            and isinstance(iterated.func, cst.Attribute)
            and iterated.func.attr.value in _PARAMETER_ITERATORS | _MODULE_ITERATORS
        ):
            continue
        target = loop.target
        if isinstance(target, cst.Tuple) and len(target.elements) == 2:
            target = target.elements[1].value
        if dotted_name(target) == name and _path_to(loop.body, node) is not None:
            return loop
    return None


def _guarded_by_batch_norm_test(body: cst.CSTNode, node: cst.CSTNode, model: SemanticModel) -> bool:
    """An ``if`` around ``node`` (inside ``body``) that tests for BatchNorm:
    ``isinstance(m, nn.BatchNorm2d)``, ``classname.find("BatchNorm") != -1``."""
    return any(
        not (isinstance(test, cst.UnaryOperation) and isinstance(test.operator, cst.Not))
        and _names_batch_norm(model, test)
        for test in _enclosing_if_tests(body, node) or []
    )


def _names_batch_norm(model: SemanticModel, expr: cst.BaseExpression) -> bool:
    """``nn.BatchNorm2d``, ``(nn.BatchNorm1d, nn.BatchNorm2d)``, ``_BatchNorm``, or
    a class name compared as a string (``"BatchNorm"``)."""
    for current in descendants(expr):
        if isinstance(current, cst.SimpleString) and "BatchNorm" in current.value:
            return True
        if isinstance(current, cst.Name | cst.Attribute):
            qualified = model.qualname(current) or dotted_name(current) or ""
            if qualified in BATCH_NORM_CLASSES or "BatchNorm" in qualified.rsplit(".", 1)[-1]:
                return True
    return False


def _literal_bool(value: cst.BaseExpression | None) -> bool | None:
    if isinstance(value, cst.Name) and value.value in ("True", "False"):
        return value.value == "True"
    return None


# -- does the frozen part have BatchNorm? -------------------------------------------


def freeze_has_batch_norm(model: SemanticModel, freeze: GradFreeze) -> bool:
    """True only when the code shows BatchNorm in the frozen part."""
    if freeze.norms_only:
        return True
    for place in places(model, freeze.scope, freeze.key):
        if _place_has_batch_norm(model, place):
            return True
    return False


def _place_has_batch_norm(model: SemanticModel, place: Place) -> bool:
    expr = cst.parse_expression(place.key)
    if contains_batch_norm(model, expr, place.scope):
        return True
    if not isinstance(expr, cst.Attribute) or not _BATCH_NORM_STAGE.match(expr.attr.value):
        return False
    # ``resnet50().layer4``: a stage of an architecture with BatchNorm.
    owner = dotted_name(expr.value)
    return owner is not None and any(
        contains_batch_norm(model, value, place.scope) is True
        for value in assigned_values(model, owner, place.scope)
    )


# -- names across functions -----------------------------------------------------------


def places(model: SemanticModel, scope: Scope, key: str, depth: int = 0) -> list[Place]:
    """``key`` in ``scope``, and the names callers give it: through a parameter of
    a top-level function, its return value (``model = build_model()``), or the
    module global a function reads."""
    found = [Place(scope, key)]
    if scope is None or depth > 2:
        return found
    root, _, rest = key.partition(".")
    suffix = f".{rest}" if rest else ""
    if root in scope.parameter_names():
        for caller_scope, argument in _arguments_for(model, scope, root):
            found += places(model, caller_scope, argument + suffix, depth + 1)
    elif root == scope.self_name:
        return found
    elif not any(a.function is scope for a in model.assignments_by_target.get(root, ())):
        found.append(Place(None, key))
    position = _returned_position(scope, root)
    if position is not None:
        for caller_scope, target in _results_of(model, scope, position):
            found += places(model, caller_scope, target + suffix, depth + 1)
    return found


# ``return model``: the whole result; ``return model, size``: its position.
_WHOLE = -1


def _returned_position(function: FunctionInfo, name: str) -> int | None:
    """Where ``function``'s final ``return`` puts ``name``: ``_WHOLE`` for
    ``return name``, ``i`` for the i-th element of a returned tuple, else None."""
    body = function.node.body
    last = body.body[-1] if isinstance(body, cst.IndentedBlock) and body.body else None
    if not isinstance(last, cst.SimpleStatementLine) or not isinstance(last.body[0], cst.Return):
        return None
    value = last.body[0].value
    if isinstance(value, cst.Tuple):
        names = [dotted_name(element.value) for element in value.elements]
        return names.index(name) if name in names else None
    return _WHOLE if value is not None and dotted_name(value) == name else None


def _results_of(
    model: SemanticModel, function: FunctionInfo, position: int
) -> Iterator[tuple[Scope, str]]:
    """The names ``x = function(...)`` (or ``x, size = function(...)``) binds the
    part of the top-level ``function``'s result at ``position`` to."""
    if function.cls is not None or function.parent is not None:
        return
    for assignment in model.assignments:
        value, target = assignment.value, assignment.target
        if not (isinstance(value, cst.Call) and dotted_name(value.func) == function.name):
            continue
        if position != _WHOLE:
            elements = target.elements if isinstance(target, cst.Tuple) else []
            target = elements[position].value if position < len(elements) else None
        name = dotted_name(target) if target is not None else None
        if name is not None:
            yield assignment.function, name


def _arguments_for(
    model: SemanticModel, function: FunctionInfo, parameter: str
) -> Iterator[tuple[Scope, str]]:
    """The dotted names that calls of the top-level ``function`` pass to ``parameter``."""
    if function.cls is not None or function.parent is not None:
        return
    for site in model.calls:
        if dotted_name(site.node.func) != function.name:
            continue
        bound = function.argument_for(site.node, parameter)
        name = dotted_name(bound.value) if bound is not None else None
        if name is not None:
            yield site.function, name


def same_module_or_inside(inner: Place, outer: Place) -> bool:
    """Is ``inner`` the module ``outer`` names or one of its sub-modules? ``self.``
    keys meet across the methods of one class."""
    return _same_namespace(inner.scope, outer.scope, inner.key) and is_under(inner.key, outer.key)


def _same_namespace(a: Scope, b: Scope, key: str) -> bool:
    if a is b:
        return True
    if key.startswith("self.") and a is not None and b is not None:
        return a.cls is not None and a.cls is b.cls
    return False


def related(model: SemanticModel, inner: Place, outer: Place) -> bool:
    """``same_module_or_inside`` for any of the names the two places have."""
    outers = places(model, outer.scope, outer.key)
    return any(
        same_module_or_inside(i, o) for i in places(model, inner.scope, inner.key) for o in outers
    )


# -- copies that are not trained ------------------------------------------------------

# EMA and momentum copies: ``model_ema``, ``ema``, ``momentum_encoder``,
# ``target_net``, MoCo's ``encoder_k``, ``swa_model``, ``shadow``.
_AVERAGED_COPY_NAME = re.compile(
    r"(^|_)(ema|momentum|target|teacher_ema|average[d]?|avg|swa|shadow|key)(_|$)|_k$",
    re.IGNORECASE,
)


def is_averaged_copy(model: SemanticModel, place: Place) -> bool:
    """A copy whose weights follow another model (EMA, MoCo/BYOL momentum encoders):
    named for it, or its parameters zipped with another module's to update them.
    Such copies often run in training mode on purpose (MoCo's shuffled BatchNorm)."""
    last = place.key.rsplit(".", 1)[-1]
    if _AVERAGED_COPY_NAME.search(last):
        return True
    for site in model.calls:
        if dotted_name(site.node.func) != "zip":
            continue
        for arg in site.node.args:
            value = arg.value
            if _is_parameters_call(value):
                owner = dotted_name(value.func.value)  # type: ignore[attr-defined]
                if owner is not None and related(model, place, Place(site.function, owner)):
                    return True
    return False


# -- freezing by eval mode ------------------------------------------------------------


def eval_freezes(model: SemanticModel) -> Iterator[EvalFreeze]:
    """``backbone.eval()`` on a sub-module (``model.backbone``, ``self.encoder``),
    ``m.eval()`` on the BatchNorm layers of a ``.modules()`` loop, and
    ``model.apply(set_bn_eval)``."""
    for site in model.calls:
        call = site.node
        if switched_mode(call) is not Mode.EVAL:
            continue
        receiver = dotted_name(call.func.value)  # type: ignore[attr-defined]
        if receiver is None:
            continue
        loop = _loop_binding(model, receiver, call, site.function)
        if loop is not None:
            owner = dotted_name(loop.iter.func.value)  # type: ignore[attr-defined]
            if owner is not None and _guarded_by_batch_norm_test(loop.body, call, model):
                yield EvalFreeze(call, loop, owner, site.function, norms_only=True)
        elif "." in receiver:
            statement = expression_statement_of(model, call, site.function)
            if statement is not None:
                yield EvalFreeze(call, statement, receiver, site.function, norms_only=False)
    yield from _applied_eval_freezes(model)


def _applied_eval_freezes(model: SemanticModel) -> Iterator[EvalFreeze]:
    """``model.apply(set_bn_eval)`` with a function of the file that calls ``.eval()``
    on the module it is given (on BatchNorm layers only, when it tests for them)."""
    for site in model.calls:
        func, args = site.node.func, site.node.args
        if not (isinstance(func, cst.Attribute) and func.attr.value == "apply" and len(args) == 1):
            continue
        key = dotted_name(func.value)
        helper = _function_named(model, dotted_name(args[0].value))
        statement = expression_statement_of(model, site.node, site.function)
        if key is None or helper is None or statement is None:
            continue
        guarded = _evals_its_argument(model, helper)
        if guarded is not None:
            yield EvalFreeze(site.node, statement, key, site.function, norms_only=guarded)


def _function_named(model: SemanticModel, name: str | None) -> FunctionInfo | None:
    return next((f for f in model.functions if f.cls is None and f.name == name), None)


def _evals_its_argument(model: SemanticModel, helper: FunctionInfo) -> bool | None:
    """Does ``helper(m)`` call ``m.eval()``: True behind a BatchNorm test, False
    without one, None if it does not?"""
    params = helper.parameter_names()
    if not params:
        return None
    found = None
    for site in model.calls:
        if (
            site.function is helper
            and switched_mode(site.node) is Mode.EVAL
            and dotted_name(site.node.func.value) == params[0]  # type: ignore[attr-defined]
        ):
            guarded = _guarded_by_batch_norm_test(helper.node.body, site.node, model)
            found = guarded if found is None else found and guarded
    return found


def expression_statement_of(
    model: SemanticModel, call: cst.Call, scope: Scope
) -> cst.CSTNode | None:
    """The expression statement that is exactly ``call`` (``model.train()`` as a line)."""
    for site in model.expression_statements:
        if site.function is scope and site.node.value is call:  # type: ignore[attr-defined]
            return site.node
    return None


# -- what keeps norm layers frozen ----------------------------------------------------


def overrides_train_with_eval(model: SemanticModel) -> bool:
    """A module class overriding ``train()`` that calls ``.eval()`` there: the
    ``norm_eval`` pattern of mmdet/mmcv, which keeps frozen norms in eval mode."""
    for cls in model.module_classes:
        method = cls.methods.get("train")
        if method is not None and any(
            site.function is method and switched_mode(site.node) is Mode.EVAL
            for site in model.calls
        ):
            return True
    return False
