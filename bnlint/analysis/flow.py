"""The abstract interpreter: walks one function body (or the module body) in
order, carrying a ``State``, and records what rules ask about.

No control-flow graph: ``if``/``else`` branches are walked from the same state
and joined; a loop body is walked until the state at its top stops changing,
and the state after the loop joins the skip path; ``return``/``raise``/
``continue``/``break`` end a path; ``with torch.no_grad():`` scopes the grad
flag; ``try`` handlers start from the join of the states before and after the
body. Calls go through ``call``: mode switches, grad switches, training steps,
exports, model calls, and calls to functions whose summaries are known.

What it sees is recorded in ``Events``, keyed by node, so the last (fixed
point) walk of a loop body wins.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import libcst as cst

from bnlint.analysis.effects import (
    MODE_PRESERVING_METHODS,
    computes_gradients,
    exported_module,
    grad_context,
    grad_setting,
    is_pure_call,
    is_training_step,
    mode_switch,
    runs_without_grad,
    switched_mode,
    without_moves,
)
from bnlint.analysis.frameworks import (
    MODULE_COPIES,
    MODULE_WRAPPERS,
    SET_GRAD_ENABLED,
)
from bnlint.analysis.names import dotted_name
from bnlint.analysis.state import (
    UNKNOWN_FACT,
    Grad,
    Mode,
    ModeFact,
    State,
    is_under,
    join,
    join_all,
)
from bnlint.analysis.summaries import (
    Need,
    Requirement,
    bind_arguments,
    substitute,
    substitute_grad,
)
from bnlint.analysis.walk import children

if TYPE_CHECKING:
    from bnlint.analysis.modes import Callee, ModeAnalysis

MAX_LOOP_PASSES = 4
Loops = tuple[cst.CSTNode, ...]  # enclosing loops, outermost first


@dataclass(eq=False)
class ModelCall:
    """``model(x)`` (or a helper that calls the model it is given)."""

    node: cst.Call
    key: str
    fact: ModeFact
    grad: Grad
    loops: Loops
    used: bool  # the result is used: not a bare statement (BN recalibration)
    statement: cst.CSTNode
    grad_set_by_callee: bool = False  # a helper run here turned autograd off itself


@dataclass(eq=False)
class Point:
    """A call that matters where it is: a training step, a gradient computation."""

    node: cst.Call
    loops: Loops


@dataclass(eq=False)
class ModeUse:
    """A call whose meaning depends on a value's mode: an export, a mode switch,
    a call that hands a model to code that may switch it."""

    node: cst.Call
    key: str
    fact: ModeFact | None  # before the call
    mode: Mode  # for a switch: the new mode
    loops: Loops
    statement: cst.CSTNode
    grad: Grad = Grad.UNKNOWN


@dataclass(eq=False)
class NeedAtCall:
    """A call to a function that needs something of the caller's state."""

    node: cst.Call
    callee: str  # its qualified name
    requirement: Requirement
    key: str  # the caller-side key ("" for grad)
    fact: ModeFact | None
    grad: Grad
    loops: Loops
    statement: cst.CSTNode
    same_file: bool
    callee_trains: bool


@dataclass(eq=False)
class LoopVisit:
    node: cst.CSTNode  # For, While or a comprehension
    iterable: cst.BaseExpression | None
    pre: State  # before the first iteration
    entry: State  # at the top of the body, all iterations joined
    back: State | None  # at the end of the body, when it loops back
    loops: Loops  # enclosing loops
    statement: cst.CSTNode  # the statement the loop is, or is in


@dataclass(eq=False)
class Events:
    model_calls: dict[cst.Call, ModelCall] = field(default_factory=dict)
    steps: dict[cst.Call, Point] = field(default_factory=dict)
    gradient_calls: dict[cst.Call, Point] = field(default_factory=dict)
    exports: dict[cst.Call, ModeUse] = field(default_factory=dict)
    switches: dict[cst.Call, ModeUse] = field(default_factory=dict)
    escapes: dict[cst.Call, ModeUse] = field(default_factory=dict)
    needs: dict[tuple[cst.Call, int], NeedAtCall] = field(default_factory=dict)
    loops: dict[cst.CSTNode, LoopVisit] = field(default_factory=dict)
    returns: dict[cst.CSTNode, tuple[State, ModeFact | None, str | None]] = field(
        default_factory=dict
    )


@dataclass(eq=False)
class _Frame:
    node: cst.CSTNode
    breaks: list[State] = field(default_factory=list)
    continues: list[State] = field(default_factory=list)


_COMPREHENSIONS = (cst.ListComp, cst.SetComp, cst.GeneratorExp, cst.DictComp)
_LEAVES = (
    cst.Name,
    cst.Integer,
    cst.Float,
    cst.Imaginary,
    cst.SimpleString,
    cst.Ellipsis,
)
_SUB_MODULE_ITERATORS = frozenset({"modules", "named_modules", "children", "named_children"})


class Interpreter:
    """Walks the statements of one function; ``analysis`` answers questions about
    names (qualified names, callees, classes) and ``events`` records what matters."""

    def __init__(self, analysis: ModeAnalysis, function_key: object, events: Events) -> None:
        self.analysis = analysis
        self.function_key = function_key
        self.events = events
        self._frames: list[_Frame] = []
        self._statement: cst.CSTNode | None = None
        self._unused: cst.Call | None = None
        self._arguments_of: dict[cst.Call, list[cst.Call]] = {}
        self._handlers: dict[type, Callable[[cst.CSTNode, State], State | None]] = {
            cst.SimpleStatementLine: self._simple_line,
            cst.If: self._if,
            cst.For: self._for,
            cst.While: self._while,
            cst.With: self._with,
            cst.Try: self._try,
            cst.TryStar: self._try,
            cst.Match: self._match,
        }

    # -- statements ---------------------------------------------------------------

    def block(self, statements: Sequence[cst.CSTNode], state: State | None) -> State | None:
        for statement in statements:
            if state is None:
                return None
            handler = self._handlers.get(type(statement))
            if handler is not None:
                self._statement = statement
                state = handler(statement, state)
        return state

    def _suite(self, suite: cst.BaseSuite, state: State | None) -> State | None:
        if isinstance(suite, cst.SimpleStatementSuite):
            return self._small_statements(suite.body, state)
        return self.block(suite.body, state)

    def _simple_line(self, line: cst.CSTNode, state: State) -> State | None:
        assert isinstance(line, cst.SimpleStatementLine)
        return self._small_statements(line.body, state)

    def _small_statements(
        self, statements: Sequence[cst.BaseSmallStatement], state: State | None
    ) -> State | None:
        for small in statements:
            if state is None:
                return None
            state = self._small(small, state)
        return state

    def _small(self, node: cst.BaseSmallStatement, state: State) -> State | None:
        if isinstance(node, cst.Expr):
            if isinstance(node.value, cst.Call):
                self._unused = node.value
            elif _is_bare_switch(node.value):
                # ``model.eval`` without a call (BNL004): judge the code as its
                # fix makes it, so that one mistake is reported once.
                intended = Mode.EVAL if node.value.attr.value == "eval" else Mode.TRAIN
                state.set_mode(dotted_name(node.value.value), ModeFact(intended))  # type: ignore[arg-type]
            return self.expression(node.value, state)
        if isinstance(node, cst.Assign):
            return self._assign([t.target for t in node.targets], node.value, state)
        if isinstance(node, cst.AnnAssign):
            if node.value is None:
                return state
            return self._assign([node.target], node.value, state)
        if isinstance(node, cst.AugAssign):
            state = self.expression(node.value, state)
            self._forget(node.target, state)
            return state
        if isinstance(node, cst.Return):
            if node.value is not None:
                state = self.expression(node.value, state)
            fact, key = self.value(node.value, state) if node.value is not None else (None, None)
            self.events.returns[node] = (state, fact, key)
            return None
        if isinstance(node, cst.Raise):
            return None
        if isinstance(node, cst.Break | cst.Continue):
            if self._frames:
                frame = self._frames[-1]
                (frame.breaks if isinstance(node, cst.Break) else frame.continues).append(state)
            return None
        if isinstance(node, cst.Del):
            self._forget(node.target, state)
        return state

    def _if(self, node: cst.CSTNode, state: State) -> State | None:
        assert isinstance(node, cst.If)
        state = self.expression(node.test, state)
        body = self._suite(node.body, state.copy())
        orelse: State | None = state
        if isinstance(node.orelse, cst.If):
            orelse = self._if(node.orelse, state.copy())
        elif isinstance(node.orelse, cst.Else):
            orelse = self._suite(node.orelse.body, state.copy())
        return join(body, orelse)

    def _for(self, node: cst.CSTNode, state: State) -> State | None:
        assert isinstance(node, cst.For)
        state = self.expression(node.iter, state)
        statement = self._statement
        whole_model = _whole_model_train(node)

        def body(entry: State) -> State | None:
            entry = entry.copy()
            self._forget(node.target, entry)
            self._statement = statement
            end = self._suite(node.body, entry)
            if end is not None and whole_model is not None:
                key, call = whole_model
                end.set_mode(key, ModeFact(Mode.TRAIN, call))
            return end

        after, breaks = self._loop(node, node.iter, state, body)
        if whole_model is not None:
            # ``model.modules()`` is never empty: the loop does run.
            after.set_mode(whole_model[0], ModeFact(Mode.TRAIN, whole_model[1]))
        if node.orelse is not None:
            after = self._suite(node.orelse.body, after)
        return join(after, breaks)

    def _while(self, node: cst.CSTNode, state: State) -> State | None:
        assert isinstance(node, cst.While)
        statement = self._statement
        forever = isinstance(node.test, cst.Name) and node.test.value == "True"

        def body(entry: State) -> State | None:
            self._statement = statement
            entry = self.expression(node.test, entry.copy())
            return self._suite(node.body, entry)

        after: State | None
        after, breaks = self._loop(node, None, state, body)
        if forever:
            after = None  # only a ``break`` leaves ``while True``
        elif node.orelse is not None:
            after = self._suite(node.orelse.body, after)
        return join(after, breaks)

    def _loop(
        self,
        node: cst.CSTNode,
        iterable: cst.BaseExpression | None,
        pre: State,
        body: Callable[[State], State | None],
    ) -> tuple[State, State | None]:
        """Walk ``body`` until the state at its top is stable. Returns the state
        when the loop ends normally, and the join of the ``break`` paths."""
        enclosing = tuple(frame.node for frame in self._frames)
        statement = self._statement
        entry = pre
        frame = _Frame(node)
        back: State | None = None
        for _ in range(MAX_LOOP_PASSES):
            frame = _Frame(node)
            self._frames.append(frame)
            try:
                end = body(entry)
            finally:
                self._frames.pop()
            back = join_all([end, *frame.continues])
            widened = join(pre, back)
            assert widened is not None
            if widened == entry:
                break
            entry = widened
        self.events.loops[node] = LoopVisit(
            node, iterable, pre, entry, back, enclosing, statement or node
        )
        return entry, join_all(frame.breaks)

    def _with(self, node: cst.CSTNode, state: State) -> State | None:
        assert isinstance(node, cst.With)
        grad = None
        for item in node.items:
            expr = item.item
            setting = grad_context(self.analysis.qualname(_callee_expr(expr)), expr)
            if setting is not None:
                grad = setting
                if isinstance(expr, cst.Call):
                    for arg in expr.args:
                        state = self.expression(arg.value, state)
            else:
                state = self.expression(expr, state)
            if item.asname is not None:
                self._forget(item.asname.name, state)
        if grad is None:
            return self._suite(node.body, state)
        outer = state.grad
        inner = state.copy()
        inner.grad = grad
        before = {id(path) for path in self._early_exits()}
        end = self._suite(node.body, inner)
        if end is not None:
            end.grad = outer
        for path in self._early_exits():
            if id(path) not in before:
                path.grad = outer  # leaving the ``with`` early leaves its grad flag too
        return end

    def _early_exits(self) -> list[State]:
        """Paths that left the statements walked so far by return, break or continue."""
        paths = [state for state, _, _ in self.events.returns.values()]
        for frame in self._frames:
            paths.extend(frame.breaks)
            paths.extend(frame.continues)
        return paths

    def _try(self, node: cst.CSTNode, state: State) -> State | None:
        assert isinstance(node, cst.Try | cst.TryStar)
        before = {id(path) for path in self._early_exits()}
        body = self._suite(node.body, state.copy())
        # An exception may leave the body anywhere: before it or after it, roughly.
        handler_entry = join(state, body)
        ends = []
        for handler in node.handlers:
            start = handler_entry.copy() if handler_entry else None
            if start is not None and handler.name is not None:
                self._forget(handler.name.name, start)
            ends.append(self._suite(handler.body, start))
        if node.orelse is not None:
            body = self._suite(node.orelse.body, body)
        after = join_all([body, *ends])
        if node.finalbody is not None:
            self._finally_on_early_exits(node.finalbody, before)
            if after is None:
                self._suite(node.finalbody.body, state.copy())
                return None
            after = self._suite(node.finalbody.body, after)
        return after

    def _finally_on_early_exits(self, finalbody: cst.Finally, before: set[int]) -> None:
        """A ``return``, ``break`` or ``continue`` in the ``try`` runs ``finally``
        on its way out (``try: return ... finally: model.train()``)."""
        for node, (path, fact, key) in list(self.events.returns.items()):
            if id(path) not in before:
                end = self._suite(finalbody.body, path.copy())
                if end is not None:
                    self.events.returns[node] = (end, fact, key)
        for frame in self._frames:
            for paths in (frame.breaks, frame.continues):
                kept = []
                for path in paths:
                    end = path if id(path) in before else self._suite(finalbody.body, path.copy())
                    if end is not None:
                        kept.append(end)
                paths[:] = kept

    def _match(self, node: cst.CSTNode, state: State) -> State | None:
        assert isinstance(node, cst.Match)
        state = self.expression(node.subject, state)
        ends = [self._suite(case.body, state.copy()) for case in node.cases]
        return join_all([state, *ends])

    def loop_body_once(self, loop: cst.For | cst.While, state: State) -> State | None:
        """Walk one pass of ``loop``'s body from ``state`` (the loop itself not
        repeated): what the second pass would see if it started from ``state``."""
        self._statement = loop
        if isinstance(loop, cst.For):
            self._forget(loop.target, state)
        else:
            state = self.expression(loop.test, state)
        return self._suite(loop.body, state)

    # -- assignments --------------------------------------------------------------

    def _assign(
        self, targets: list[cst.BaseExpression], value: cst.BaseExpression, state: State
    ) -> State:
        state = self.expression(value, state)
        fact, alias = self.value(value, state)
        wrapper = self.analysis.wraps_as_module(value)
        for target in targets:
            key = dotted_name(target)
            if key is None:
                self._forget(target, state)
                continue
            if alias is not None and is_under(alias, key):
                # ``model = model.module``: keep what the value was before rebinding.
                fact, alias = state.fact(alias) or fact, None
            if alias != key:  # else ``model = model.to(device)``: nothing new
                state.forget(key)
                if alias is not None:
                    state.alias(key, alias)
                elif fact is not None:
                    state.modes[key] = fact
                elif isinstance(value, cst.Call):
                    self._construct(value, key, state)
            if wrapper:  # ``model.module.eval()`` switches what ``model(x)`` runs
                state.alias(f"{key}.module", key)
        return state

    def _construct(self, call: cst.Call, key: str, state: State) -> None:
        """``key = SomeClass(...)``: a model in training mode, or an object whose
        ``__init__`` sets or stores models (``self.model = model``)."""
        fresh = self.analysis.fresh_instance(call, key, state)
        if fresh is not None:
            state.modes[key] = fresh
            return
        init = self.analysis.constructor(call, self.function_key)
        if init is None:
            return
        bound = bind_arguments(init.summary, call, None)
        instance = init.summary.params[0] if init.summary.params else "self"
        for sub_key, mode in init.summary.effects:
            if is_under(sub_key, instance) and sub_key != instance and Mode.CALLER not in mode:
                state.set_mode(key + sub_key[len(instance) :], ModeFact(mode))
        for sub_key, stored in init.summary.stores:
            root, dot, rest = stored.partition(".")
            value = bound.get(root) if bound else None
            stored_key = dotted_name(value) if value is not None else None
            if stored_key is not None and state.fact(stored_key) is not None:
                state.alias(key + sub_key[len(instance) :], stored_key + dot + rest)

    def _forget(self, target: cst.BaseExpression, state: State) -> None:
        if isinstance(target, cst.Tuple | cst.List):
            for element in target.elements:
                self._forget(element.value, state)
            return
        if isinstance(target, cst.StarredElement):
            self._forget(target.value, state)
            return
        key = dotted_name(target)
        if key is not None:
            state.forget(key)

    def value(
        self, expr: cst.BaseExpression | None, state: State
    ) -> tuple[ModeFact | None, str | None]:
        """What a value is, as far as modes go: (its modes, or the key it aliases)."""
        if expr is None:
            return None, None
        expr = without_moves(expr)
        key = dotted_name(expr)
        if key is not None:
            return (None, key) if state.fact(key) is not None else (None, None)
        if not isinstance(expr, cst.Call):
            return None, None
        func = expr.func
        if isinstance(func, cst.Attribute):
            mode = switched_mode(expr)
            if mode is not None:
                inner, alias = self.value(func.value, state)
                if alias is not None:
                    return None, alias  # the switch is already in the state
                return (ModeFact(mode) if inner is not None else None), None
        qualname = self.analysis.qualname(func)
        if qualname in MODULE_WRAPPERS or qualname in MODULE_COPIES:
            args = [arg for arg in expr.args if arg.keyword is None]
            if not args:
                return None, None
            inner, alias = self.value(args[0].value, state)
            if qualname in MODULE_COPIES and alias is not None:
                return state.fact(alias), None
            return inner, alias
        return self.analysis.constructed(expr, qualname, self.function_key, state)

    # -- expressions --------------------------------------------------------------

    def expression(self, node: cst.CSTNode, state: State) -> State:
        """Walk the calls in ``node`` in evaluation order."""
        kind = type(node)
        if kind in _LEAVES:
            return state
        if kind is cst.Call:
            assert isinstance(node, cst.Call)
            unused = self._unused is node
            self._unused = None
            state = self.expression(node.func, state)
            for arg in node.args:
                if type(arg.value) is cst.Call:
                    self._arguments_of.setdefault(node, []).append(arg.value)
                state = self.expression(arg.value, state)
            return self.call(node, state, used=not unused)
        if kind is cst.Lambda:
            return state
        if kind in _COMPREHENSIONS:
            return self._comprehension(node, state)  # type: ignore[arg-type]
        if kind is cst.IfExp:
            assert isinstance(node, cst.IfExp)
            state = self.expression(node.test, state)
            body = self.expression(node.body, state.copy())
            orelse = self.expression(node.orelse, state.copy())
            return join(body, orelse) or state
        if kind is cst.BooleanOperation:
            assert isinstance(node, cst.BooleanOperation)
            state = self.expression(node.left, state)
            right = self.expression(node.right, state.copy())
            return join(state, right) or state
        for child in children(node):
            state = self.expression(child, state)
        return state

    def _comprehension(
        self, node: cst.ListComp | cst.SetComp | cst.GeneratorExp | cst.DictComp, state: State
    ) -> State:
        first = node.for_in
        state = self.expression(first.iter, state)

        def body(entry: State) -> State | None:
            entry = entry.copy()
            clause: cst.CompFor | None = first
            while clause is not None:
                if clause is not first:
                    entry = self.expression(clause.iter, entry)
                self._forget(clause.target, entry)
                for condition in clause.ifs:
                    entry = self.expression(condition.test, entry)
                clause = clause.inner_for_in
            if isinstance(node, cst.DictComp):
                entry = self.expression(node.key, entry)
                return self.expression(node.value, entry)
            return self.expression(node.elt, entry)

        return self._loop(node, first.iter, state, body)[0]

    # -- calls --------------------------------------------------------------------

    def call(self, node: cst.Call, state: State, used: bool = True) -> State:
        qualname = self.analysis.qualname(node.func)
        if qualname in SET_GRAD_ENABLED:
            state.grad = grad_setting(node)
            return state
        entered = self._entered_grad_context(node)
        if entered is not None:  # never exited: the flag holds for the code after it
            state.grad = entered
            return state
        switch = mode_switch(node)
        if switch is not None:
            return self._switch(node, switch[0], switch[1], state)
        if is_training_step(node, qualname):
            self.events.steps[node] = Point(node, self._loops())
            state.after_training_step()
            return state
        if computes_gradients(node, qualname):
            self.events.gradient_calls[node] = Point(node, self._loops())
        exported = exported_module(node, qualname)
        if exported is not None:
            self._export(node, exported, state)
            return state
        callee = self.analysis.callee(node, qualname, self.function_key)
        if callee is not None:
            return self._apply(node, callee, state, used)
        if self._model_call(node, state, used):
            return state
        return self._unknown_call(node, qualname, state)

    def _loops(self) -> Loops:
        return tuple(frame.node for frame in self._frames)

    def _here(self) -> cst.CSTNode:
        assert self._statement is not None
        return self._statement

    def _entered_grad_context(self, node: cst.Call) -> Grad | None:
        """The grad flag ``torch.no_grad().__enter__()`` sets, as a ``with`` would."""
        func = node.func
        if type(func) is not cst.Attribute or func.attr.value != "__enter__":
            return None
        context = func.value
        return grad_context(self.analysis.qualname(_callee_expr(context)), context)

    def _switch(self, node: cst.Call, key: str, mode: Mode, state: State) -> State:
        before = state.fact(key)
        self.events.switches[node] = ModeUse(
            node, key, before, mode, self._loops(), self._here(), state.grad
        )
        state.set_mode(key, ModeFact(mode, node if mode is Mode.TRAIN else None))
        return state

    def _export(self, node: cst.Call, exported: cst.BaseExpression, state: State) -> None:
        key = dotted_name(exported)
        if key is None:
            return
        fact = self.analysis.fact(state, key, self.function_key)
        self.events.exports[node] = ModeUse(
            node, key, fact, Mode.EVAL, self._loops(), self._here(), state.grad
        )

    def _model_call(self, node: cst.Call, state: State, used: bool) -> bool:
        func = node.func
        key = dotted_name(func)
        grad = state.grad
        if isinstance(func, cst.Attribute):
            if func.attr.value in ("forward", "generate"):
                key = dotted_name(func.value)
                # Hugging Face's ``generate`` is decorated with ``torch.no_grad()``.
                grad = Grad.OFF if func.attr.value == "generate" else grad
            elif func.attr.value in _INFERENCE_METHODS:
                # A method of a class we cannot see (a callee would have been
                # found): libraries often decorate it with ``torch.no_grad()``.
                grad = Grad.UNKNOWN
            elif func.attr.value in MODE_PRESERVING_METHODS:
                return False  # ``model.parameters()`` does not run the model
            elif func.attr.value in ("eval", "train"):
                # Not a mode switch (``call`` tried that): OGB's ``evaluator.eval(results)``,
                # a trainer's ``train(data)``. Neither runs a forward pass here.
                return False
        if key is None:
            return False
        fact = self.analysis.fact(state, key, self.function_key)
        if fact is None or not self.analysis.may_be_model(key, fact, self.function_key):
            return False
        if runs_without_grad(key):
            grad = Grad.OFF
        self._record_model_call(node, key, fact, grad, used)
        return True

    def _record_model_call(
        self,
        node: cst.Call,
        key: str,
        fact: ModeFact,
        grad: Grad,
        used: bool,
        grad_set_by_callee: bool = False,
    ) -> None:
        loops = self._loops()
        # A dead store only matters where an unused output changes the verdict:
        # in loops (evaluation) and for models in training mode (BNL006).
        if used and (loops or fact.is_train):
            used = not self._stored_and_never_read(node)
        self.events.model_calls[node] = ModelCall(
            node, key, fact, grad, loops, used, self._here(), grad_set_by_callee
        )
        if not used:
            self._discard_inputs(node)

    def _discard_inputs(self, node: cst.Call) -> None:
        """The forward passes computing the inputs of a forward pass whose output is
        thrown away (``net(z, net.shared(y))``) are thrown away with it."""
        for argument in self._arguments_of.get(node, ()):
            feeding = self.events.model_calls.get(argument)
            if feeding is not None and feeding.used:
                feeding.used = False
            self._discard_inputs(argument)

    def _stored_and_never_read(self, node: cst.Call) -> bool:
        """``x = net(z)`` with ``x`` never read, or ``_ = net(z)``: the output is
        thrown away, as in BigGAN's standing statistics and DFQ's re-estimation."""
        model, scope = self.analysis.model, self.function_key
        stores = model.results_of(node)
        return bool(stores) and all(
            isinstance(store.target, cst.Name)
            and not isinstance(store.statement, cst.AugAssign)  # ``total += net(x)`` reads it
            and (store.target.value == "_" or model.name_count(scope, store.target.value) == 1)  # type: ignore[arg-type]
            for store in stores
        )

    def _apply(self, node: cst.Call, callee: Callee, state: State, used: bool) -> State:
        """A call to a function whose summary we know."""
        summary = callee.summary
        bound = bind_arguments(summary, node, callee.receiver)
        if bound is None:
            return self._unknown_call(node, None, state)
        mapping = {name: dotted_name(value) for name, value in bound.items()}

        def caller_key_of(key: str) -> str | None:
            """The caller's key for a callee key: through a parameter, or the same
            module global when the caller sees it."""
            root, dot, rest = key.partition(".")
            if root in mapping:
                caller = mapping[root]
                return None if caller is None else caller + dot + rest
            if callee.same_file and self.analysis.sees_global(key, self.function_key):
                return key
            return None

        loops = self._loops()
        for index, requirement in enumerate(summary.requirements):
            caller_key = caller_key_of(requirement.key) if requirement.key else ""
            if requirement.key and caller_key is None:
                continue
            if requirement.need is Need.NO_GRAD and self.analysis.method_runs_without_grad(
                caller_key, self.function_key
            ):
                continue  # ``agent.act(state)``, whose ``act`` turns autograd off itself
            if requirement.need is Need.EVAL and any(
                effect is Mode.EVAL and caller_key_of(key) == caller_key
                for key, effect in summary.effects
            ):
                # crnn.pytorch's ``val(crnn, ...)``: ``net.eval()`` on the parameter,
                # then the global ``crnn``, the same model, runs in eval mode.
                continue
            fact = self.analysis.fact(state, caller_key, self.function_key) if caller_key else None
            self.events.needs[(node, index)] = NeedAtCall(
                node,
                callee.name,
                requirement,
                caller_key or "",
                fact,
                state.grad,
                loops,
                self._here(),
                callee.same_file,
                summary.trains,
            )
        receiver = mapping.get(summary.params[0]) if summary.bound_method else None
        for key in summary.calls:
            caller_key = caller_key_of(key)
            fact = self.analysis.fact(state, caller_key, self.function_key) if caller_key else None
            if (
                caller_key is not None
                and fact is not None
                and self.analysis.may_be_model(caller_key, fact, self.function_key)
            ):
                owner = state.owner(caller_key)
                if receiver is not None and owner is not None and is_under(receiver, owner):
                    # ``policy.act(x)`` runs ``policy.head`` in the mode of ``policy``:
                    # the model the caller runs, and the one to switch, is ``policy``.
                    caller_key = receiver
                off_in_callee = key in summary.calls_without_grad
                grad = Grad.OFF if off_in_callee else state.grad
                self._record_model_call(node, caller_key, fact, grad, used, off_in_callee)
        if summary.trains:
            self.events.steps[node] = Point(node, loops)
            state.after_training_step()
        # Parents first: switching ``self`` resets ``self.model``, not the reverse.
        for key, effect in sorted(summary.effects, key=lambda item: item[0].count(".")):
            caller_key = caller_key_of(key)
            if caller_key is None:
                continue
            before = self.analysis.fact(state, caller_key, self.function_key)
            modes = substitute(effect, before.modes if before else Mode.UNKNOWN)
            if before is None and _switched_a_part(effect):
                # ``self.network.eval()`` in a method of a predictor this caller does
                # not know as a model: that is no evidence the predictor is one.
                continue
            switch = node if modes is Mode.TRAIN and not summary.trains else None
            if Mode.CALLER in effect and before is not None and modes is before.modes:
                switch = before.switch
            if modes in (Mode.TRAIN, Mode.EVAL):
                self.events.switches[node] = ModeUse(
                    node, caller_key, before, modes, loops, self._here(), state.grad
                )
            state.set_mode(caller_key, ModeFact(modes, switch))
        if summary.grad_effect is not None:
            state.grad = substitute_grad(summary.grad_effect, state.grad)
        self._escape_unbound(node, bound, state)
        return state

    def _escape_unbound(
        self, node: cst.Call, bound: dict[str, cst.BaseExpression], state: State
    ) -> None:
        """Arguments the summary did not bind (extra positionals) went somewhere unknown."""
        values = {id(value) for value in bound.values()}
        for arg in node.args:
            if id(arg.value) not in values:
                key = dotted_name(arg.value)
                if key is not None:
                    self._escape(node, key, state)

    def _unknown_call(self, node: cst.Call, qualname: str | None, state: State) -> State:
        """A call we know nothing about may switch any model handed to it."""
        func = node.func
        if is_pure_call(func, qualname):
            return state
        if isinstance(func, cst.Attribute):
            receiver = dotted_name(func.value)
            if receiver is not None and (
                func.attr.value == "apply"
                or (
                    func.attr.value not in MODE_PRESERVING_METHODS
                    and state.canonical(receiver) in state.modes
                    and not self.analysis.is_stored_callable(func, self.function_key)
                )
            ):
                self._escape(node, receiver, state)
        for arg in node.args:
            key = dotted_name(arg.value)
            if key is not None:
                self._escape(node, key, state)
        return state

    def _escape(self, node: cst.Call, key: str, state: State) -> None:
        before = self.analysis.fact(state, key, self.function_key)
        if before is None or before.modes is Mode.UNKNOWN:
            return
        self.events.escapes[node] = ModeUse(
            node, key, before, Mode.UNKNOWN, self._loops(), self._here(), state.grad
        )
        canonical = state.canonical(key)
        for sub_key in [k for k in state.modes if k.startswith(canonical + ".")]:
            del state.modes[sub_key]
        state.modes[canonical] = UNKNOWN_FACT


def _switched_a_part(effect: Mode) -> bool:
    """Is ``effect`` what switching a part of a value leaves on the whole: its
    own modes on entry (CALLER), partly changed (UNKNOWN) to TRAIN or EVAL?"""
    switched = bool(effect & (Mode.TRAIN | Mode.EVAL))
    return switched and Mode.CALLER in effect and Mode.UNKNOWN in effect


def _is_bare_switch(expr: cst.BaseExpression) -> bool:
    return (
        isinstance(expr, cst.Attribute)
        and expr.attr.value in ("eval", "train")
        and dotted_name(expr.value) is not None
    )


# Model methods that run inference, often under their own ``torch.no_grad()``:
# PyG's ``BasicGNN.inference``, diffusion models' ``sample``.
_INFERENCE_METHODS = frozenset({"inference", "infer", "predict", "sample"})


def _callee_expr(expr: cst.BaseExpression) -> cst.BaseExpression:
    return expr.func if isinstance(expr, cst.Call) else expr


def _whole_model_train(loop: cst.For) -> tuple[str, cst.Call] | None:
    """``for m in model.modules(): m.train()`` (unconditionally): the whole model
    in training mode. Returns (``model``, the ``m.train()`` call)."""
    iterable = loop.iter
    if not (
        isinstance(iterable, cst.Call)
        and isinstance(iterable.func, cst.Attribute)
        and iterable.func.attr.value in _SUB_MODULE_ITERATORS
    ):
        return None
    owner = dotted_name(iterable.func.value)
    target = loop.target
    if isinstance(target, cst.Tuple) and len(target.elements) == 2:
        target = target.elements[1].value
    if owner is None or not isinstance(target, cst.Name):
        return None
    body = loop.body.body if isinstance(loop.body, cst.IndentedBlock) else [loop.body]
    for statement in body:
        smalls = statement.body if isinstance(statement, cst.SimpleStatementLine) else []
        if isinstance(statement, cst.SimpleStatementSuite):
            smalls = statement.body
        for small in smalls:
            call = small.value if isinstance(small, cst.Expr) else None
            if isinstance(call, cst.Call):
                switch = mode_switch(call)
                if switch == (target.value, Mode.TRAIN):
                    return owner, call
    return None
