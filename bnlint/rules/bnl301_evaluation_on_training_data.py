from __future__ import annotations

import re
from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.calls import argument, keyword_arg
from bnlint.analysis.data import Role, is_data_name, role_from_name
from bnlint.analysis.effects import is_training_step
from bnlint.analysis.frameworks import DATA_LOADERS
from bnlint.analysis.loops import is_unit_test, iterable_role, without_iteration_wrappers
from bnlint.analysis.model import (
    Assignment,
    CallSite,
    FunctionInfo,
    SemanticModel,
    StatementSite,
)
from bnlint.analysis.names import dotted_name, target_names
from bnlint.rules.base import Anchor, Finding, FixPlan, NodeEdit, Rule

_EVALUATION_FUNCTION = re.compile(
    r"^(validate|validation|evaluate|evaluation|eval|test|predict|infer)"
)


class EvaluationOnTrainingData(Rule):
    """
    ## What it does
    Finds validation that runs on the training data: an evaluation name bound to the
    training loader (`val_loader = train_loader`), a validation `DataLoader` built
    over the training dataset object, an evaluation function called with the
    training loader whose result is stored as a validation metric
    (`val_acc = evaluate(model, train_loader)`), a training loader passed as an
    evaluation keyword (`validate(loader=..., val_loader=train_loader)`), or a loop
    over the training loader that does not train and adds up validation results
    (`for x, y in train_loader: val_loss += ...`).

    ## Why is this bad?
    Validation on training data measures memorisation, not generalisation: the
    curve keeps improving while the model overfits, and early stopping, model
    selection and the reported numbers are all wrong.

    ## Known problems
    Roles come from names (`train_*`, `val_*`, `test_*`, `eval_*`). Measuring train
    accuracy on purpose is fine when it is named so (`train_acc = evaluate(model,
    train_loader)`), and so are splits of one dataset (`random_split`, `Subset` with
    index lists, k-fold), which build new objects (a helper named for validation that
    returns data, `train_data, val_data = validation_split(train_data)`, is one), and a
    loader with its own sampler (`DataLoader(train_data, sampler=valid_sampler)`), which
    reads the held-out part. A training loader passed for a parameter named for training
    (`eval_linear(train_data_loader=...)`) is training data on purpose. A loop over the
    training loader is judged by what it adds up: `train_correct += ...` is train
    accuracy, and a loop with a backward pass, an optimizer step (also inside a helper
    it calls) or a call named for training trains; one with a loop over the validation
    data inside, or a call given it (a step hidden in `model.optimize_parameters()` or
    written by hand, a test every N steps), leaves the validation to them. An evaluation
    function given the validation data too (`train_loss, val_loss =
    evaluate_model(model, train_loader, val_loader)`) measures both on purpose. An
    evaluation name bound to the training data only to be handed to calls whose results
    are stored under training names (`eval_dataset = self.train_dataset`, then
    `self.train_kernel = self.compute_kernel(eval_dataset)`) names a helper's parameter,
    not validation. A unit test (a `test*` function of a test file or a test class) that
    hands one small dataset to every split does so on purpose.

    ## Fix safety
    When exactly one validation or test loader is in scope, the fix passes it in
    place of the training loader. It is unsafe: it changes which data is evaluated,
    which is the point, but check it is the split you meant.
    """

    code = "BNL301"
    name = "evaluation-on-training-data"
    summary = "an evaluation loop runs over the training loader or dataset"
    fixable = True
    triggers = ("train",)

    def check(self, model: SemanticModel) -> Iterator[Finding]:
        # A unit test reuses one small dataset for every split on purpose.
        for assignment in model.assignments:
            if not is_unit_test(model, assignment.function):
                yield from self._aliased_or_rebuilt(model, assignment)
        for site in model.calls:
            if not is_unit_test(model, site.function):
                yield from self._evaluation_call(model, site)
        for loop in model.for_loops:
            if not is_unit_test(model, loop.function):
                yield from self._evaluation_loop(model, loop)

    def _aliased_or_rebuilt(
        self, model: SemanticModel, assignment: Assignment
    ) -> Iterator[Finding]:
        target = dotted_name(assignment.target)
        value = assignment.value
        if target is None or value is None or role_from_name(target) is not Role.EVAL:
            return
        source = dotted_name(value)
        if source is not None and is_data_name(source) and role_from_name(source) is Role.TRAIN:
            if not (
                _read_through_samplers(model, target, assignment)
                or _read_into_training_results(model, target, assignment)
            ):
                yield Finding(value, f"`{target}` is the training data `{source}`: " + _CONSEQUENCE)
            return
        if (
            isinstance(value, cst.Call)
            and model.qualname(value.func) in DATA_LOADERS
            and not _has_own_sampler(value)
        ):
            dataset = argument(value, "dataset", 0)
            name = dotted_name(dataset.value) if dataset else None
            if name is not None and role_from_name(name) is Role.TRAIN:
                yield Finding(
                    dataset,
                    f"the evaluation loader `{target}` is built over the training dataset "
                    f"`{name}`: " + _CONSEQUENCE,
                )

    def _evaluation_call(self, model: SemanticModel, site: CallSite) -> Iterator[Finding]:
        data = [
            (arg, name, role_from_name(name))
            for arg in site.node.args
            if (name := dotted_name(arg.value)) is not None and is_data_name(name)
        ]
        # ``evaluate_model(model, train_loader, val_loader)``: both splits, on purpose.
        given_evaluation_data = any(role is Role.EVAL for _, _, role in data)
        called = (dotted_name(site.node.func) or "").rsplit(".", 1)[-1].lower()
        for arg, name, role in data:
            if role is not Role.TRAIN:
                continue
            keyword = arg.keyword.value if arg.keyword else None
            if keyword is not None and role_from_name(keyword) is Role.TRAIN:
                continue  # ``eval_linear(train_data_loader=...)`` trains on it
            evaluation_keyword = keyword is not None and role_from_name(keyword) is Role.EVAL
            if evaluation_keyword or (
                not given_evaluation_data
                and _EVALUATION_FUNCTION.match(called)
                and _stored_as_validation(model, site.node)
            ):
                yield Finding(
                    arg.value,
                    f"validation runs on the training data `{name}`: " + _CONSEQUENCE,
                    _fix(model, site.function, arg.value),
                )

    def _evaluation_loop(self, model: SemanticModel, loop: StatementSite) -> Iterator[Finding]:
        """``for x, y in train_loader: ... val_loss += ...``: a loop that does not
        train, over training data, whose results are named for validation."""
        node = loop.node
        assert isinstance(node, cst.For)
        data = without_iteration_wrappers(node.iter)
        name = dotted_name(data)
        if (
            name is None
            or not is_data_name(name)
            or iterable_role(model, data, loop.function) is not Role.TRAIN
            or not _accumulates_validation(model, loop)
            or _trains(model, loop)
            or _evaluates_other_data(model, loop)
        ):
            return
        yield Finding(
            data,
            f"validation runs on the training data `{name}`: " + _CONSEQUENCE,
            _fix(model, loop.function, data),
        )


def _in_body(model: SemanticModel, loop: StatementSite, node: cst.CSTNode) -> bool:
    body = loop.node.body  # type: ignore[attr-defined]
    within = loop.function.node if loop.function is not None else None
    return model.order.contains(body, node, within=within)


def _trains(model: SemanticModel, loop: StatementSite) -> bool:
    """A training step, or a call to something named for training, in the loop,
    or a helper of the project that steps the optimizer."""
    return any(
        is_training_step(site.node, site.qualname)
        or role_from_name((dotted_name(site.node.func) or "").rsplit(".", 1)[-1]) is Role.TRAIN
        for site in model.calls
        if site.function is loop.function and _in_body(model, loop, site.node)
    ) or model.modes.trains_in(loop.node, loop.function)


def _evaluates_other_data(model: SemanticModel, loop: StatementSite) -> bool:
    """A loop over evaluation data inside, or a call given it: the validation
    results are theirs. KAIR tests every N steps of a loop whose step is
    ``model.optimize_parameters()``; a hand-written optimizer has no step we know
    of, and calls ``evaluate(model, valid_dataset)`` every N steps."""
    scope = loop.function
    return any(
        inner is not loop
        and inner.function is scope
        and _in_body(model, loop, inner.node)
        and iterable_role(model, inner.node.iter, scope) is Role.EVAL  # type: ignore[attr-defined]
        for inner in model.for_loops
    ) or any(
        site.function is scope
        and _in_body(model, loop, site.node)
        and any(_is_evaluation_data(arg.value) for arg in site.node.args)
        for site in model.calls
    )


def _is_evaluation_data(value: cst.BaseExpression) -> bool:
    name = dotted_name(value)
    return name is not None and is_data_name(name) and role_from_name(name) is Role.EVAL


def _accumulates_validation(model: SemanticModel, loop: StatementSite) -> bool:
    """The loop assigns a name for validation results: ``val_loss += ...``."""
    return any(
        role_from_name(name) is Role.EVAL and not is_data_name(name)
        for assignment in model.assignments
        if assignment.function is loop.function and _in_body(model, loop, assignment.statement)
        for name in target_names(assignment.target)
    )


# A loader with its own sampler reads the part of the dataset the sampler picks:
# ``DataLoader(train_data, sampler=valid_sampler)`` is the held-out split.
_SPLITTING_SAMPLERS = ("sampler", "batch_sampler")


def _has_own_sampler(loader: cst.Call) -> bool:
    return any(keyword_arg(loader, name) for name in _SPLITTING_SAMPLERS)


def _read_through_samplers(model: SemanticModel, dataset: str, alias: Assignment) -> bool:
    """Do the loaders that may read ``dataset`` after ``alias`` bound it to the
    training data all have their own sampler? Then it is the held-out split:
    ``valid_data = train_data_v2`` (a copy given the evaluation transform), then
    ``DataLoader(valid_data, sampler=SubsetRandomSampler(valid_split))``."""
    function = alias.function
    within = function.node if function is not None else None
    loaders = [
        site.node
        for site in model.calls
        if site.function is function
        and model.qualname(site.node.func) in DATA_LOADERS
        and (read := argument(site.node, "dataset", 0)) is not None
        and dotted_name(read.value) == dataset
        and model.order.starts_after(site.node, alias.statement, within)
        and not model.in_exclusive_branches(alias.statement, site.node, function)
    ]
    return bool(loaders) and all(_has_own_sampler(loader) for loader in loaders)


def _read_into_training_results(model: SemanticModel, name: str, alias: Assignment) -> bool:
    """MeZO's ``eval_dataset = self.train_dataset``, read only as the argument of
    calls whose results are stored under training names (``self.train_train_kernel,
    self.train_targets = self.compute_kernel_cached(eval_dataset)``): a helper's
    parameter name, not validation."""
    function = alias.function
    if "." in name or function is None:
        return False
    readers = [
        site.node
        for site in model.calls
        if site.function is function
        and any(dotted_name(arg.value) == name for arg in site.node.args)
    ]
    stored = [name for call in readers for name in model.result_names(call)]
    return (
        bool(stored)
        and all(role_from_name(n) is Role.TRAIN for n in stored)
        and model.name_count(function, name) == 1 + len(readers)
    )


_CONSEQUENCE = (
    "the validation numbers measure memorisation, not generalisation; use the validation loader"
)


def _fix(
    model: SemanticModel, function: FunctionInfo | None, wrong: cst.BaseExpression
) -> FixPlan | None:
    """Use the one validation/test loader in scope instead."""
    candidates = {
        name for name in _names_in_scope(model, function) if role_from_name(name) is Role.EVAL
    }
    candidates = {name for name in candidates if "loader" in name.lower() or "_dl" in name}
    if len(candidates) != 1:
        return None
    (replacement,) = candidates
    return FixPlan(
        (NodeEdit(wrong, Anchor.REPLACE, replacement),),
        safe=False,
        description=f"Use `{replacement}`",
    )


def _names_in_scope(model: SemanticModel, function: FunctionInfo | None) -> set[str]:
    """Module names, the function's parameters and locals, and ``self.*`` attributes
    set anywhere in its class."""
    cls = function.cls if function is not None else None
    names = set(function.parameter_names()) if function is not None else set()
    for a in model.assignments:
        own_class = cls is not None and a.function is not None and a.function.cls is cls
        for name in target_names(a.target):
            if a.function in (function, None) or (own_class and name.startswith("self.")):
                names.add(name)
    return names


def _stored_as_validation(model: SemanticModel, call: cst.Call) -> bool:
    """``val_acc = evaluate(model, train_loader)``: the result is named for evaluation.
    Not ``train_data, val_data = validation_split(train_data)``: data named for
    validation is a split, not a result."""
    return any(
        role_from_name(name) is Role.EVAL and not is_data_name(name)
        for name in model.result_names(call)
    )
