"""Loop roles: which loops train, which evaluate a model, and over what.

A loop *trains* when a training step (``backward``, an optimizer step, or a
call to a function that trains) runs anywhere in its body. A model call is
*evaluated* by the outermost loop around it that does not train and that
evaluates by RULES.md's definition: it iterates an evaluation source
(``val_loader``, ``loaders["test"]``, ``DataLoader(val_set)``), or it is in a
function named for evaluation (``validate``, ``evaluate``, ``test``,
``predict``, ``infer*``, ``eval_*``), or the call runs with autograd off and
the loop is not over training data. A call whose result is thrown away
(``model(x)`` as a statement: BatchNorm recalibration) is not evaluated.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import PurePath

import libcst as cst

from bnlint.analysis.calls import positional_args
from bnlint.analysis.data import Role, role_from_arguments, role_from_name
from bnlint.analysis.effects import is_training_step
from bnlint.analysis.flow import Events, LoopVisit, ModelCall
from bnlint.analysis.model import CallSite, FunctionInfo, SemanticModel
from bnlint.analysis.names import dotted_name
from bnlint.analysis.state import Grad
from bnlint.analysis.values import assigned_values
from bnlint.analysis.walk import descendants

_EVALUATION_FUNCTION = re.compile(
    r"^_*(validate|validation|evaluate|evaluation|eval|test|testing|predict|prediction"
    r"|inference|infer\w*|val|valid)(_|$)"
    r"|_(validate|validation|evaluate|evaluation|eval|test|predict|prediction|inference)$"
)
# Calls that pass an iterable through: ``enumerate(val_loader)``, ``tqdm(...)``.
_ITERABLE_WRAPPERS = frozenset(
    {"enumerate", "tqdm", "iter", "zip", "islice", "track", "progress_bar", "trange", "list"}
)


def is_test_file(path: str) -> bool:
    """A pytest file, whose ``test_*`` functions are tests, not evaluation."""
    name = PurePath(path).name
    return name.startswith("test_") or name.endswith("_test.py") or name == "conftest.py"


# A unit-test class: pytest collects ``Test*``, unittest runs ``TestCase``s and
# their mixins (gpytorch's ``BaseModelTestCase``).
_TEST_CLASS = re.compile(r"^Test([A-Z_]|$)|Test(Case|s)?$")  # not ``Tester``


def is_evaluation_function(model: SemanticModel, function: FunctionInfo | None) -> bool:
    if function is None or not _EVALUATION_FUNCTION.search(function.name):
        return False
    return not is_unit_test(model, function)


def is_unit_test(
    model: SemanticModel, function: FunctionInfo | None, _seen: frozenset[str] = frozenset()
) -> bool:
    """A ``test*`` function of a test file or a test class that only the test
    runner calls, or only other unit tests (a shared ``_test_forward(self,
    batch_size)``). micronet's ``*_test.py`` scripts call their ``test_*``
    functions from ``__main__`` to evaluate a model."""
    if (
        function is None
        or not function.name.lstrip("_").startswith("test")
        or function.name in _seen
        or not _holds_unit_tests(function, model.path)
    ):
        return False
    seen = _seen | {function.name}
    callers = [site.function for site in model.calls_of(function)]
    if function.name.startswith("_"):  # a helper: a unit test only through its callers
        return bool(callers) and all(is_unit_test(model, c, seen) for c in callers)
    return all(is_unit_test(model, caller, seen) for caller in callers)


def _holds_unit_tests(function: FunctionInfo, path: str) -> bool:
    """Are the ``test*`` functions here unit tests: in a test file or a test class?"""
    cls = function.cls
    return is_test_file(path) or (
        cls is not None
        and (
            _TEST_CLASS.search(cls.name) is not None
            or any(_TEST_CLASS.search(dotted_name(base) or "") for base in cls.bases)
        )
    )


def without_iteration_wrappers(iterable: cst.BaseExpression) -> cst.BaseExpression:
    """``train_loader`` for ``enumerate(tqdm(train_loader))``."""
    while isinstance(iterable, cst.Call):
        called = (dotted_name(iterable.func) or "").rsplit(".", 1)[-1]
        args = positional_args(iterable)
        if called not in _ITERABLE_WRAPPERS or not args:
            break
        iterable = args[0].value
    return iterable


def iterable_role(
    model: SemanticModel, iterable: cst.BaseExpression | None, scope: FunctionInfo | None
) -> Role | None:
    """Train or evaluation data, from the iterable's name or how it was built."""
    for _ in range(2):  # through one assignment
        if iterable is None:
            return None
        iterable = without_iteration_wrappers(iterable)
        counted = _counted(iterable)
        if counted is not None:  # ``range(len(val_x))``: the role of ``val_x``
            iterable = counted
            continue
        if isinstance(iterable, cst.Call):
            called = (dotted_name(iterable.func) or "").rsplit(".", 1)[-1]
            args = positional_args(iterable)
            by_arguments = role_from_arguments(iterable)
            if by_arguments is not None:
                return by_arguments
            if args and dotted_name(args[0].value) is not None:
                role = role_from_name(dotted_name(args[0].value) or "")
                if role is not None:  # ``DataLoader(val_set)``
                    return role
            return role_from_name(called) if called else None  # ``val_dataloader()``
        if isinstance(iterable, cst.Subscript):
            return _subscript_role(iterable)
        name = dotted_name(iterable)
        if name is None:
            return None
        role = role_from_name(name)
        if role is not None:
            return role
        values = assigned_values(model, name, scope)
        iterable = values[0] if len(values) == 1 else None
    return None


def _counted(iterable: cst.BaseExpression) -> cst.BaseExpression | None:
    """``val_x`` for ``range(len(val_x))`` and ``range(0, len(val_x))``."""
    if not (isinstance(iterable, cst.Call) and dotted_name(iterable.func) == "range"):
        return None
    args = positional_args(iterable)
    stop = args[-1].value if 1 <= len(args) <= 2 else None
    if isinstance(stop, cst.Call) and dotted_name(stop.func) == "len" and len(stop.args) == 1:
        return stop.args[0].value
    return None


def _subscript_role(subscript: cst.Subscript) -> Role | None:
    """``loaders["val"]``, ``dataloaders["test"]``."""
    if len(subscript.slice) != 1 or not isinstance(subscript.slice[0].slice, cst.Index):
        return None
    key = subscript.slice[0].slice.value
    if isinstance(key, cst.SimpleString) and isinstance(key.evaluated_value, str):
        return role_from_name(key.evaluated_value)
    return None


def _reads_any(node: cst.CSTNode, names: set[str]) -> bool:
    return bool(names) and any(
        isinstance(current, cst.Name) and current.value in names for current in descendants(node)
    )


def _loops_switching_grad(events: Events) -> set[cst.CSTNode]:
    """Loops whose body turns autograd off around some model calls and leaves it
    on for others: the loop manages autograd itself, and what runs with it on
    does so by choice (a test-time adaptation step after a no-grad forward)."""
    off: set[cst.CSTNode] = set()
    on: set[cst.CSTNode] = set()
    for call in events.model_calls.values():
        if call.grad is Grad.OFF and not call.grad_set_by_callee:
            off.update(call.loops)
        elif call.grad is Grad.ON or call.grad is Grad.CALLER:
            on.update(call.loops)
    return off & on


@dataclass(frozen=True)
class Evaluation:
    """A model call and the loop that evaluates it."""

    call: ModelCall
    loop: LoopVisit
    why: str  # "evaluation loop over `val_loader`", for messages


class LoopRoles:
    """The roles of one function's loops, from what its walk recorded."""

    def __init__(self, model: SemanticModel, function: FunctionInfo | None, events: Events) -> None:
        self._model = model
        self._function = function
        self._events = events
        self.training_loops = {loop for step in events.steps.values() for loop in step.loops}
        self.autograd_loops = {
            loop for point in events.gradient_calls.values() for loop in point.loops
        } | _loops_switching_grad(events)
        self.evaluation_function = is_evaluation_function(model, function)
        self._unit_test = is_unit_test(model, function)
        self._roles: dict[cst.CSTNode, Role | None] = {}

    def role_of_data(self, visit: LoopVisit) -> Role | None:
        if visit.node not in self._roles:
            self._roles[visit.node] = iterable_role(self._model, visit.iterable, self._function)
        return self._roles[visit.node]

    def evaluation(self, call: ModelCall) -> Evaluation | None:
        """The outermost loop around ``call`` that evaluates it, if any. None in a
        unit test: its loops check behaviour (two implementations agree over
        ``test_cases``), they do not evaluate a model."""
        if not call.used or self._unit_test:
            return None
        for depth, loop in enumerate(call.loops):
            if loop in self.training_loops:
                continue
            visit = self._events.loops.get(loop)
            if visit is None:
                continue
            data = self.role_of_data(visit)
            if data is Role.EVAL or self.evaluation_function:
                return Evaluation(call, visit, self._describe(visit))
            if self._evaluates_without_grad(call, data, depth, visit):
                return Evaluation(call, visit, self._describe(visit))
        return None

    def _evaluates_without_grad(
        self, call: ModelCall, data: Role | None, depth: int, visit: LoopVisit
    ) -> bool:
        """A loop that turns autograd off around the model, over no training data,
        evaluates it. Not inside a loop that trains, before a training step of the
        same function, or computing what every caller's training loop reads, where
        no-grad work is part of training (an RL rollout, the returns or targets it
        computes), and not when a helper turned autograd off: its caller's loop
        decides."""
        return (
            call.grad is Grad.OFF
            and not call.grad_set_by_callee
            and data is not Role.TRAIN
            and not any(outer in self.training_loops for outer in call.loops[:depth])
            and not self._trains_after(visit.node)
        )

    def _trains_after(self, loop: cst.CSTNode) -> bool:
        within = self._function.node if self._function is not None else None
        return self._feeds_training or any(
            self._model.order.starts_after(step.node, loop, within)
            for step in self._events.steps.values()
        )

    @cached_property
    def _feeds_training(self) -> bool:
        """Does every call of this function in the file compute what a later
        training loop of its caller reads? Then its no-grad loops are part of
        training (PPO's ``data = self.calc_advantage(data)``, then the minibatch
        loop over ``data`` that steps the optimizer)."""
        if self._function is None or self.evaluation_function:
            return False
        calls = self._model.calls_of(self._function)
        return bool(calls) and all(self._read_by_training_loop(site) for site in calls)

    def _read_by_training_loop(self, call: CallSite) -> bool:
        model, caller = self._model, call.function
        within = caller.node if caller is not None else None
        results = set(model.result_names(call.node))
        steps = [
            site.node
            for site in model.calls
            if site.function is caller and is_training_step(site.node, site.qualname)
        ]
        return any(
            loop.function is caller
            and model.order.starts_after(loop.node, call.node, within)
            and any(model.order.contains(loop.node, step, within) for step in steps)
            and _reads_any(loop.node, results)
            for loop in model.loops
        )

    def over_training_data(self, call: ModelCall) -> bool:
        """Does a loop around ``call`` iterate over training data (``train_loader``)?"""
        visits = (self._events.loops.get(loop) for loop in call.loops)
        return any(v is not None and self.role_of_data(v) is Role.TRAIN for v in visits)

    def trains_at(self, loops: tuple[cst.CSTNode, ...]) -> bool:
        """Does a training step run in the innermost loop of ``loops`` (or, outside
        any loop, in the function)?"""
        return any(step.loops[: len(loops)] == loops for step in self._events.steps.values())

    def _describe(self, visit: LoopVisit) -> str:
        if visit.iterable is None:
            return "evaluation loop"
        text = self._model.code(visit.iterable).strip()
        if len(text) > 40 or "\n" in text:
            text = text.split("\n", 1)[0][:37] + "..."
        return f"evaluation loop over `{text}`"
