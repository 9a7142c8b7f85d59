"""The mode analysis of one file: which model is in which mode, with autograd
on or off, wherever it is used; what each function needs of its callers.

Only functions that can matter are walked: those that switch modes or grad,
train, export, loop in an evaluation setting, or call such a function (see
``_entry_points``). A function called from one of them is walked on demand
for its summary, callees first; a recursive call is an unknown call.

Rules read ``ModeAnalysis`` through ``SemanticModel.modes``: evaluation loops
and the modes there, calls to functions whose needs the caller breaks,
training steps after a switch to eval mode, exports, and ``train()`` before
inference.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

import libcst as cst

from bnlint.analysis.effects import (
    MODULE_EVIDENCE_METHODS,
    PURE_BUILTINS,
    fresh_library_model,
    grad_context,
    is_plumbing,
    looks_like_class,
    without_moves,
)
from bnlint.analysis.flow import (
    Events,
    Interpreter,
    LoopVisit,
    ModelCall,
    ModeUse,
    NeedAtCall,
)
from bnlint.analysis.frameworks import (
    EXPORTERS,
    GRAD_MODE_CONTEXTS,
    HF_TRAINER_EVALUATION_METHODS,
    LIGHTNING_EVALUATION_PREFIXES,
    SET_GRAD_ENABLED,
    WRAPPERS_WITH_MODULE,
)
from bnlint.analysis.loops import Evaluation, LoopRoles, is_evaluation_function, iterable_role
from bnlint.analysis.mode_free import class_is_mode_free
from bnlint.analysis.model import (
    LOOP_TYPES,
    ClassInfo,
    FunctionInfo,
    SemanticModel,
    StatementSite,
)
from bnlint.analysis.names import dotted_name, target_names
from bnlint.analysis.project import FileFacts, module_name
from bnlint.analysis.state import Grad, Mode, ModeFact, State, join_all
from bnlint.analysis.summaries import Need, Requirement, Summary, bind_arguments
from bnlint.analysis.training_flag import mentions_training
from bnlint.analysis.values import assigned_values
from bnlint.analysis.walk import descendants

Scope = FunctionInfo | None  # None: the module body
_MARKER_METHODS = frozenset(
    {"eval", "train", "backward", "manual_backward", "step", "apply", "generate"}
)
_MARKER_CALLS = GRAD_MODE_CONTEXTS | SET_GRAD_ENABLED | frozenset(EXPORTERS)
# A decorator from another file named so may set autograd: it is unknown.
_GRAD_DECORATOR_NAME = re.compile(r"grad|inference")
_OTHER_FRAMEWORKS = ("tensorflow", "keras", "tf_keras", "jax", "flax", "paddle", "mindspore")
# Libraries whose model objects run their own inference loops and modes.
_SELF_MANAGING = ("ultralytics.",)


@dataclass(frozen=True)
class Callee:
    name: str  # qualified name, for messages
    summary: Summary
    receiver: cst.BaseExpression | None  # the instance a method is called on
    same_file: bool


@dataclass(eq=False)
class FunctionFlow:
    """One walked function: what it saw, and its summary."""

    scope: Scope
    entry: State
    events: Events
    roles: LoopRoles
    summary: Summary
    evaluations: list[Evaluation] = field(default_factory=list)


@dataclass(frozen=True)
class TrainingUse:
    node: cst.Call
    key: str
    fact: ModeFact | None
    loops: tuple[cst.CSTNode, ...]


@dataclass(frozen=True)
class RestoreProblem:
    """BNL003: a training step that, from the second pass of ``loop`` on, runs
    in eval mode because the loop switches ``key`` to eval and not back."""

    flow: FunctionFlow
    loop: LoopVisit
    key: str
    switch: cst.Call | None  # the call that leaves it in eval mode


class ModeAnalysis:
    def __init__(self, model: SemanticModel) -> None:
        self.model = model
        self.module = module_name(model.path, model.package)
        self.flows: dict[Scope, FunctionFlow] = {}
        self._in_progress: set[Scope] = set()
        self._functions_by_name = {
            f.name: f for f in model.functions if f.cls is None and f.parent is None
        }
        self._classes_by_name = model.classes_by_name
        self._locals = _local_names(model)
        self._module_globals = self._locals.get(None, set()) - set(self._functions_by_name)
        self._evidence = _module_evidence(model)
        self._class_cache: dict[tuple[str, Scope], ClassInfo | str | None] = {}
        self._wrappers_by_class: dict[ClassInfo, set[str]] = {}
        self._decorator_grads: dict[FunctionInfo, Grad | None] = {}
        self._has_evaluation_loops = False  # set by ``_entry_points``
        if _written_for_another_framework(model):
            return  # TensorFlow's model.predict(...) has no modes or autograd of ours
        for scope in self._entry_points():
            self.flow_of(scope)

    # -- which functions to walk ----------------------------------------------------

    def _entry_points(self) -> list[Scope]:
        """Functions that switch modes or grad, train, export or may evaluate, and
        (transitively) the functions that call them: they pass the models."""
        marked: set[Scope] = set()
        callees: dict[Scope, set[Scope]] = {}
        for site in self.model.calls:
            if self._is_marker(site.node, site.qualname):
                marked.add(site.function)
            target = self._call_target(site.node, site.function)
            if target is True:
                marked.add(site.function)  # a project function with a summary
            elif target is not None:
                callees.setdefault(site.function, set()).add(target)
        for site in self.model.loops:
            if self._may_evaluate(site):
                self._has_evaluation_loops = True
                marked.add(site.function)
        for function in self.model.functions:
            grads = {self._grad_decorator(d.decorator) for d in function.node.decorators}
            if grads & {Grad.OFF, Grad.ON}:  # an unknown flag can make no finding
                marked.add(function)
        changed = True
        while changed:
            changed = False
            for scope, targets in callees.items():
                if scope not in marked and targets & marked:
                    marked.add(scope)
                    changed = True
        ordered: list[Scope] = [f for f in self.model.functions if f in marked]
        return [*ordered, None] if None in marked else ordered

    def _call_target(self, call: cst.Call, scope: Scope) -> FunctionInfo | bool | None:
        """The function of this file ``call`` runs, True for a project function
        with a summary, None if neither."""
        func = call.func
        if isinstance(func, cst.Name):
            target = self._functions_by_name.get(func.value)
            cls = self._classes_by_name.get(func.value)
            if cls is not None:
                target = self._method(cls, "__init__")
            if target is not None:
                return target
        elif isinstance(func, cst.Attribute) and (receiver := dotted_name(func.value)):
            method = self._method_of(receiver, func.attr.value, scope)
            if method is not None:
                return method
        qualname = self.model.qualname(func)
        if qualname is not None and self._project_summary(qualname) is not None:
            return True
        return None

    def _is_marker(self, call: cst.Call, qualname: str | None) -> bool:
        if qualname in _MARKER_CALLS:
            return True
        func = call.func
        return isinstance(func, cst.Attribute) and func.attr.value in _MARKER_METHODS

    def _may_evaluate(self, site: StatementSite) -> bool:
        """A loop that may evaluate: in an evaluation function, or over named data."""
        if is_evaluation_function(self.model, site.function):
            return True
        node = site.node
        if isinstance(node, cst.For):
            iterable: cst.BaseExpression | None = node.iter
        elif isinstance(node, cst.ListComp | cst.SetComp | cst.GeneratorExp | cst.DictComp):
            iterable = node.for_in.iter
        else:
            return False
        return iterable_role(self.model, iterable, site.function) is not None

    def _grad_decorator(self, decorator: cst.BaseExpression) -> Grad | None:
        target = decorator.func if isinstance(decorator, cst.Call) else decorator
        qualname = self.model.qualname(target)
        known = grad_context(qualname, decorator)
        if known is not None:
            return known
        local = self._functions_by_name.get(dotted_name(target) or "")
        if local is not None:
            if local not in self._decorator_grads:
                self._decorator_grads[local] = self._grad_contexts_in(local.node)
            return self._decorator_grads[local]
        # Another file's decorator (yolov5's ``smart_inference_mode()``): by its name.
        name = (qualname or dotted_name(target) or "").rsplit(".", 1)[-1]
        return Grad.UNKNOWN if _GRAD_DECORATOR_NAME.search(name.lower()) else None

    def _grad_contexts_in(self, node: cst.CSTNode) -> Grad | None:
        """What the grad contexts named in a decorator of this file set around the
        function it wraps (``with torch.no_grad(): return func(*args)``): OFF when
        each turns autograd off, UNKNOWN when they differ, None when it names none."""
        grads = set()
        called = set()
        for current in descendants(node):
            if isinstance(current, cst.Call):
                called.add(current.func)
                grads.add(grad_context(self.model.qualname(current.func), current))
            elif isinstance(current, cst.Name | cst.Attribute) and current not in called:
                grads.add(grad_context(self.model.qualname(current), current))
        grads.discard(None)
        if not grads:
            return None
        return grads.pop() if len(grads) == 1 else Grad.UNKNOWN

    def _method_of(self, receiver: str, name: str, scope: Scope) -> FunctionInfo | None:
        """The method of this file that ``receiver.name`` names, if we can tell."""
        if scope is not None and scope.cls is not None and receiver == scope.self_name:
            return self._method(scope.cls, name)
        cls = self._class_of(receiver, scope)
        return self._method(cls, name) if isinstance(cls, ClassInfo) else None

    # -- walking ------------------------------------------------------------------

    def flow_of(self, scope: Scope) -> FunctionFlow | None:
        """The walked flow of ``scope`` (walked now if needed); None while it is
        being walked (a recursive call)."""
        if scope in self.flows:
            return self.flows[scope]
        if scope in self._in_progress:
            return None
        self._in_progress.add(scope)
        try:
            flow = self._walk(scope)
        finally:
            self._in_progress.discard(scope)
        self.flows[scope] = flow
        return flow

    def _walk(self, scope: Scope) -> FunctionFlow:
        events = Events()
        entry = self._entry_state(scope)
        interpreter = Interpreter(self, scope, events)
        body = scope.node.body.body if scope is not None else self.model.module.body
        end = interpreter.block(body, entry.copy())
        roles = LoopRoles(self.model, scope, events)
        flow = FunctionFlow(scope, entry, events, roles, Summary(()))
        for call in events.model_calls.values():
            evaluation = roles.evaluation(call)
            if evaluation is not None:
                flow.evaluations.append(evaluation)
        flow.summary = self._summarise(flow, end)
        return flow

    def _entry_state(self, scope: Scope) -> State:
        if scope is None:
            return State(grad=Grad.ON)
        state = State(grad=Grad.CALLER)
        for name in scope.parameter_names():
            state.modes[name] = ModeFact(Mode.CALLER)
        for decorator in scope.node.decorators:
            grad = self._grad_decorator(decorator.decorator)
            if grad is not None:
                state.grad = grad
        self_name = scope.self_name
        if self_name is not None:
            for attribute in self._wrapper_attributes(scope.cls):
                key = f"{self_name}.{attribute}"  # ``self.model.module.eval()``
                state.alias(f"{key}.module", key)  # switches what ``self.model(x)`` runs
        if self_name is not None and self._run_by_framework_in_eval(scope):
            state.modes[self_name] = ModeFact(Mode.EVAL)
            state.grad = Grad.OFF
        return state

    def _wrapper_attributes(self, cls: ClassInfo | None) -> set[str]:
        """Attributes that some method of ``cls`` sets to a wrapper holding what it
        runs as ``.module`` (``self.model = DDP(net)`` in ``__init__``)."""
        if cls is None:
            return set()
        if cls not in self._wrappers_by_class:
            found = set()
            for assignment in self.model.assignments:
                method = assignment.function
                if method is None or method.cls is not cls or assignment.value is None:
                    continue
                target = dotted_name(assignment.target) or ""
                owner, dot, attribute = target.partition(".")
                if (
                    dot
                    and owner == method.self_name
                    and "." not in attribute
                    and self.wraps_as_module(assignment.value)
                ):
                    found.add(attribute)
            self._wrappers_by_class[cls] = found
        return self._wrappers_by_class[cls]

    def _run_by_framework_in_eval(self, method: FunctionInfo) -> bool:
        """Lightning's evaluation hooks; an HF ``Trainer`` subclass's evaluation methods."""
        cls = method.cls
        assert cls is not None
        if cls in self.model.module_classes and method.name.startswith(
            LIGHTNING_EVALUATION_PREFIXES
        ):
            return True
        return method.name in HF_TRAINER_EVALUATION_METHODS and self._is_hf_trainer(cls)

    def _is_hf_trainer(self, cls: ClassInfo) -> bool:
        for base in cls.bases:
            qualified = self.model.qualname(base) or ""
            if qualified.startswith(("transformers.", "trl.")) and qualified.endswith("Trainer"):
                return True
            local = self._classes_by_name.get(dotted_name(base) or "")
            if local is not None and local is not cls and self._is_hf_trainer(local):
                return True
        return False

    # -- questions the interpreter asks ---------------------------------------------

    def qualname(self, node: cst.BaseExpression) -> str | None:
        return self.model.imports.resolve(node)

    def wraps_as_module(self, value: cst.BaseExpression) -> bool:
        """``DDP(net)``, ``nn.DataParallel(net).cuda()``: a wrapper that holds
        what it wraps as ``.module``."""
        value = without_moves(value)
        return isinstance(value, cst.Call) and self.qualname(value.func) in WRAPPERS_WITH_MODULE

    def fact(self, state: State, key: str, scope: Scope) -> ModeFact | None:
        """The modes of ``key``; a module global read inside a function is
        whatever the caller's state says (CALLER)."""
        found = state.fact(key)
        if found is not None or scope is None:
            return found
        root = key.split(".", 1)[0]
        if root in self._module_globals and root not in self._locals.get(scope, set()):
            return ModeFact(Mode.CALLER)
        return None

    def sees_global(self, key: str, scope: Scope) -> bool:
        """Does ``scope`` see the module global that ``key`` starts with?"""
        root = key.split(".", 1)[0]
        return root in self._module_globals and (
            scope is None or root not in self._locals.get(scope, set())
        )

    def is_stored_callable(self, func: cst.Attribute, scope: Scope) -> bool:
        """``self.criterion(...)`` where ``self.criterion = nn.CrossEntropyLoss()``:
        an attribute holding a callable, not a method, so ``self`` is not handed on."""
        key = dotted_name(func)
        if key is None or is_plumbing(key):
            return key is not None
        cls = scope.cls if scope is not None else None
        if cls is None or dotted_name(func.value) != scope.self_name:
            return False
        return self._method(cls, func.attr.value) is None and bool(
            self.model.attribute_assignments(cls, f"self.{func.attr.value}")
        )

    def may_be_model(self, key: str, fact: ModeFact, scope: Scope) -> bool:
        if fact.modes is Mode.UNKNOWN or is_plumbing(key) or self._names_method(key, scope):
            return False
        root = key.split(".", 1)[0]
        if root in PURE_BUILTINS:
            return False
        return self.model.imports.resolve_dotted(root) is None or root in self.model.rebound_imports

    def _names_method(self, key: str, scope: Scope) -> bool:
        """``sampler.sample`` where ``sampler`` is built from a class of this file
        that defines ``sample``: a method call, not a sub-module's forward pass."""
        owner, _, attr = key.rpartition(".")
        if not owner or attr in ("forward", "__call__"):
            return False
        cls = self._class_of(owner, scope)
        return isinstance(cls, ClassInfo) and self._method(cls, attr) is not None

    def method_runs_without_grad(self, key: str, scope: Scope) -> bool:
        """``agent.act`` where ``agent`` is built from a class (of this file or the
        project) whose ``act`` runs models only under its own ``torch.no_grad()``:
        calling it needs no no_grad around it."""
        owner, _, attr = key.rpartition(".")
        callee = self._method_callee(owner, attr, scope, None) if owner else None
        return (
            callee is not None
            and not callee.summary.requirements
            and set(callee.summary.calls) <= callee.summary.calls_without_grad
        )

    def callee(self, call: cst.Call, qualname: str | None, scope: Scope) -> Callee | None:
        """The function ``call`` runs, with its summary, if we know it."""
        func = call.func
        if isinstance(func, cst.Name):
            local = self._functions_by_name.get(func.value)
            if local is not None:
                return self._local_callee(local, None)
            if func.value in self._classes_by_name:
                init = self.constructor(call, scope)
                return Callee(init.name, _unbound(init.summary), None, True) if init else None
        elif isinstance(func, cst.Attribute) and qualname is None:
            receiver = dotted_name(func.value)
            if receiver is None:
                return None
            return self._method_callee(receiver, func.attr.value, scope, func.value)
        if qualname is not None:
            summary = self._project_summary(qualname)
            if summary is not None:
                return Callee(qualname, summary, None, same_file=False)
            init = self.constructor(call, scope)
            if init is not None:
                return Callee(init.name, _unbound(init.summary), None, same_file=False)
        return None

    def _method_callee(
        self, receiver: str, name: str, scope: Scope, node: cst.BaseExpression | None
    ) -> Callee | None:
        """The method ``receiver.name`` runs, of this file or the project, with its
        summary; ``node`` is the receiver as written, if there is a call."""
        method = self._method_of(receiver, name, scope)
        if method is not None:
            return self._local_callee(method, node)
        cls = self._class_of(receiver, scope)
        if isinstance(cls, str):
            summary = self._project_summary(f"{cls}.{name}")
            if summary is not None:
                return Callee(f"{cls}.{name}", summary, node, same_file=False)
        return None

    def _local_callee(
        self, function: FunctionInfo, receiver: cst.BaseExpression | None
    ) -> Callee | None:
        flow = self.flow_of(function)
        if flow is None:
            return None
        return Callee(self._qualified(function), flow.summary, receiver, same_file=True)

    def constructor(self, call: cst.Call, scope: Scope) -> Callee | None:
        """The ``__init__`` that ``call`` runs, if it builds a class whose
        ``__init__`` we know (its summary binds the instance first)."""
        local = self._classes_by_name.get(dotted_name(call.func) or "")
        if local is not None:
            init = self._method(local, "__init__")
            return self._local_callee(init, None) if init is not None else None
        qualname = self.qualname(call.func)
        if qualname is None:
            return None
        summary = self._project_summary(qualname + ".__init__")
        return Callee(qualname, summary, None, same_file=False) if summary else None

    def _method(self, cls: ClassInfo, name: str, depth: int = 0) -> FunctionInfo | None:
        """``name`` of ``cls`` or of a base class in the same file."""
        if name in cls.methods:
            return cls.methods[name]
        if depth > 5:
            return None
        for base in cls.bases:
            local = self._classes_by_name.get(dotted_name(base) or "")
            if local is not None and local is not cls:
                found = self._method(local, name, depth + 1)
                if found is not None:
                    return found
        return None

    def _class_of(self, key: str, scope: Scope) -> ClassInfo | str | None:
        """The class ``key`` was built from in ``scope``: a class of this file, or
        the qualified name of a project class."""
        if (key, scope) not in self._class_cache:
            self._class_cache[key, scope] = self._find_class_of(key, scope)
        return self._class_cache[key, scope]

    def _find_class_of(self, key: str, scope: Scope) -> ClassInfo | str | None:
        """One class that every construction assigned to ``key`` names. Other
        values are names (``self.model = best_model``, a copy kept during
        training), which do not say what class they hold."""
        values = [without_moves(v) for v in assigned_values(self.model, key, scope)]
        built = [v for v in values if not isinstance(v, cst.Name | cst.Attribute)]
        classes = {self._class_built_by(v) for v in built}
        return classes.pop() if built and len(classes) == 1 else None

    def _class_built_by(self, value: cst.BaseExpression) -> ClassInfo | str | None:
        if not isinstance(value, cst.Call):
            return None
        local = self._classes_by_name.get(dotted_name(value.func) or "")
        if local is not None:
            return local
        qualname = self.qualname(value.func)
        if qualname is not None and self._project_class(qualname) is not None:
            return qualname
        return None

    def constructed(
        self, call: cst.Call, qualname: str | None, scope: Scope, state: State
    ) -> tuple[ModeFact | None, str | None]:
        """The modes of what ``call`` returns: a freshly built or loaded model,
        or a model a project function returns."""
        func = call.func
        if qualname is not None:
            if qualname.startswith(_SELF_MANAGING):
                return None, None
            library = fresh_library_model(qualname)
            if library is not None and qualname.rsplit(".", 1)[-1] in _CONTAINERS:
                return _built_module(call, state), None  # of the modules it is given
            if library is not None:
                return ModeFact(library), None
            is_module = self._project_class(qualname)
            if is_module is not None:
                return (_built_module(call, state) if is_module else None), None
        local_class = self.model.class_named(func)
        if local_class is not None:
            if local_class not in self.model.module_classes or _is_plain_loss(
                self.model, local_class
            ):
                return None, None
            if self._runs_in_eval(local_class):
                return ModeFact(Mode.EVAL), None
            return _built_module(call, state), None
        if isinstance(func, cst.Attribute) and func.attr.value == "load_from_checkpoint":
            # Lightning restores a module in training mode.
            owner = self._classes_by_name.get(dotted_name(func.value) or "")
            if owner is not None and owner in self.model.module_classes:
                return ModeFact(Mode.TRAIN), None
        callee = self.callee(call, qualname, scope)
        if callee is None:
            return None, None
        summary = callee.summary
        if summary.returns is not None:
            return ModeFact(summary.returns), None
        if summary.returns_key is not None:
            bound = bind_arguments(summary, call, callee.receiver)
            root, dot, rest = summary.returns_key.partition(".")
            value = bound.get(root) if bound else None
            key = dotted_name(value) if value is not None else None
            if key is not None and state.fact(key) is not None:
                return None, key + dot + rest
        return None, None

    def _runs_in_eval(self, cls: ClassInfo) -> bool:
        """A frozen feature extractor: a module class whose ``__init__`` puts in
        eval mode every module its ``forward`` runs (``self.model.eval()``), and
        whose ``forward`` does not read its own flag, runs in eval mode from the
        start, though that flag says training."""
        init, forward = self._method(cls, "__init__"), self._method(cls, "forward")
        if init is None or forward is None or not init.self_name or not forward.self_name:
            return False
        flow = self.flow_of(init)
        if flow is None:
            return False
        switched = set()
        for key, mode in flow.summary.effects:
            owner, dot, attribute = key.partition(".")
            if owner == init.self_name and dot and "." not in attribute and mode is Mode.EVAL:
                switched.add(attribute)
        run = set()
        for site in self.model.calls:
            owner, dot, called = (dotted_name(site.node.func) or "").partition(".")
            if site.function is forward and owner == forward.self_name and dot:
                run.add(called.partition(".")[0])
        return bool(run) and run <= switched and not mentions_training(forward.node)

    def fresh_instance(self, call: cst.Call, target: str, state: State) -> ModeFact | None:
        """``model = Net()`` with ``Net`` imported from code we cannot see: a module
        in training mode if the file uses ``model`` as one (``model.parameters()``),
        unless it wraps a model that may be in another mode."""
        qualname = self.qualname(call.func)
        if qualname is not None and qualname.startswith((*_SELF_MANAGING, "torch.")):
            return None  # torch's own classes are known by name (``fresh_library_model``)
        if not looks_like_class(call.func) or target not in self._evidence:
            return None
        local = self._classes_by_name.get(dotted_name(call.func) or "")
        if local is not None and self.model.is_plain_class(local):
            return None  # a wrapper of this file that holds a model and is none
        return _built_module(call, state)

    def _project_summary(self, qualname: str) -> Summary | None:
        return self.model.project_summary(qualname)

    def _project_class(self, qualname: str) -> bool | None:
        return self.model.project_module_class(qualname)

    def _qualified(self, function: FunctionInfo) -> str:
        names = [function.name]
        if function.cls is not None:
            names.insert(0, function.cls.name)
        return ".".join([self.module or "<module>", *names])

    # -- summaries ------------------------------------------------------------------

    def _summarise(self, flow: FunctionFlow, end: State | None) -> Summary:
        scope = flow.scope
        if scope is None:
            return Summary(())
        params = [
            p.name.value for p in (*scope.node.params.posonly_params, *scope.node.params.params)
        ]
        keyword_only = [p.name.value for p in scope.node.params.kwonly_params]
        events = flow.events
        exits = [state for state, _, _ in events.returns.values()]
        exit_state = join_all([end, *exits])
        returns, returns_key = self._returns(events)
        calls = self._direct_calls(flow)
        return Summary(
            tuple(params),
            tuple(keyword_only),
            scope.self_name is not None,
            tuple(self._requirements(flow)),
            tuple(self._effects(scope, exit_state)),
            self._grad_effect(scope, exit_state),
            bool(events.steps),
            tuple(calls),
            returns,
            returns_key,
            tuple(self._stores(scope, exit_state)),
            frozenset(key for key, grad in calls.items() if grad is Grad.OFF),
        )

    def _grad_effect(self, scope: FunctionInfo, exit_state: State | None) -> Grad | None:
        """The grad flag the function leaves its caller with; a ``@torch.no_grad()``
        decorator restores the caller's flag on return."""
        if exit_state is None or exit_state.grad is Grad.CALLER:
            return None
        if any(self._grad_decorator(d.decorator) for d in scope.node.decorators):
            return None
        return exit_state.grad

    def _requirements(self, flow: FunctionFlow) -> Iterator[Requirement]:
        seen: set[tuple[Need, str]] = set()
        for requirement in self._raw_requirements(flow):
            if (requirement.need, requirement.key) not in seen:
                seen.add((requirement.need, requirement.key))
                yield requirement

    def _raw_requirements(self, flow: FunctionFlow) -> Iterator[Requirement]:
        where = self._where(flow)
        for evaluation in flow.evaluations:
            call = evaluation.call
            if call.fact.from_caller:
                yield Requirement(Need.EVAL, call.key, where, evaluation.why, call.key)
            if call.grad is Grad.CALLER and evaluation.loop.node not in flow.roles.autograd_loops:
                # Keyed on the model when it is the caller's too: only a model counts.
                if call.fact.from_caller:
                    yield Requirement(Need.NO_GRAD, call.key, where, evaluation.why, call.key)
                elif call.fact.modes & (Mode.TRAIN | Mode.EVAL):
                    yield Requirement(Need.NO_GRAD, "", where, evaluation.why, "")
        for export in flow.events.exports.values():
            if export.fact is not None and export.fact.from_caller:
                detail = f"the export `{self.model.code(export.node.func).strip()}`"
                yield Requirement(Need.EXPORT, export.key, where, detail, export.key)
        for use in self.training_uses(flow):
            if use.fact is not None and use.fact.from_caller:
                yield Requirement(Need.TRAIN, use.key, where, "a training step", use.key)
        for need in flow.events.needs.values():
            requirement, fact = need.requirement, need.fact
            caller_model = fact is not None and fact.from_caller
            if requirement.need is Need.NO_GRAD:
                known_model = not need.key or (fact is not None and _is_known_model(fact))
                if need.grad is Grad.CALLER and (caller_model or known_model):
                    yield requirement.rekeyed(need.key if caller_model else "")
            elif caller_model and not (
                requirement.need is Need.TRAIN and self._in_evaluation(flow, need.loops)
            ):
                yield requirement.rekeyed(need.key)

    def _in_evaluation(self, flow: FunctionFlow, loops: tuple[cst.CSTNode, ...]) -> bool:
        return any(e.loop.node in loops for e in flow.evaluations)

    def _effects(self, scope: FunctionInfo, exit_state: State | None) -> Iterator[tuple[str, Mode]]:
        if exit_state is None:
            return
        roots = set(scope.parameter_names())
        for key, fact in exit_state.modes.items():
            root = key.split(".", 1)[0]
            if fact.modes is Mode.CALLER:
                continue
            if root in roots or self.sees_global(key, scope):
                yield key, fact.modes

    def _stores(self, scope: FunctionInfo, exit_state: State | None) -> Iterator[tuple[str, str]]:
        """``self.model = model``: instance keys that alias another parameter."""
        instance = scope.self_name
        if exit_state is None or instance is None:
            return
        others = set(scope.parameter_names()) - {instance}
        for key, target in exit_state.aliases.items():
            if key.startswith(instance + ".") and target.split(".", 1)[0] in others:
                yield key, target

    def _direct_calls(self, flow: FunctionFlow) -> dict[str, Grad]:
        """The caller's models it runs outside its own evaluations and training,
        each with the grad flag of its first run (OFF: under its own no_grad)."""
        evaluated = {id(e.call) for e in flow.evaluations}
        calls: dict[str, Grad] = {}
        for call in flow.events.model_calls.values():
            if (
                call.fact.from_caller
                and id(call) not in evaluated
                and call.key not in calls
                and not flow.roles.trains_at(call.loops)
            ):
                calls[call.key] = call.grad
        return calls

    def _returns(self, events: Events) -> tuple[Mode | None, str | None]:
        facts = [(fact, key) for _, fact, key in events.returns.values()]
        if not facts:
            return None, None
        if all(fact is not None and Mode.CALLER not in fact.modes for fact, _ in facts):
            modes = Mode(0)
            for fact, _ in facts:
                assert fact is not None
                modes |= fact.modes
            return modes, None
        keys = {key for _, key in facts}
        if len(keys) == 1 and None not in keys:
            return None, keys.pop()
        return None, None

    def _where(self, flow: FunctionFlow) -> str:
        assert flow.scope is not None
        return self._qualified(flow.scope)

    # -- what rules ask -------------------------------------------------------------

    def all_flows(self) -> list[FunctionFlow]:
        return list(self.flows.values())

    def trains_in(self, loop: cst.CSTNode, scope: Scope) -> bool:
        """Does a training step run in ``loop`` of ``scope``, also one inside a
        function it calls (``_apply_gradient_step(loss, model, optimizer)``)?"""
        flow = self.flows.get(scope)
        return flow is not None and loop in flow.roles.training_loops

    def training_uses(self, flow: FunctionFlow) -> Iterator[TrainingUse]:
        """Model calls in a training step's loop (or function), and calls to
        functions that train a model they are given."""
        evaluated = {id(e.call) for e in flow.evaluations}
        for call in flow.events.model_calls.values():
            if id(call) not in evaluated and flow.roles.trains_at(call.loops):
                yield TrainingUse(call.node, call.key, call.fact, call.loops)
        for need in flow.events.needs.values():
            if need.requirement.need is Need.TRAIN and need.key:
                yield TrainingUse(need.node, need.key, need.fact, need.loops)

    def broken_needs(self, need: Need) -> Iterator[tuple[FunctionFlow, NeedAtCall]]:
        """Calls that give a function what it must not get (a model in training
        mode for EVAL and EXPORT, autograd on for NO_GRAD), reported at the
        innermost place of this file where every call chain breaks the need: a
        call whose caller itself passes the need on is reported when every chain
        into that caller breaks it; a call into a function of this file is left
        out when every chain into it breaks the need (the report is inside it,
        down to the loop itself, see ``every_call_breaks``)."""
        for flow, at_call in self._needs(need):
            requirement = at_call.requirement
            if not _breaks(at_call):
                passed = self._passed_on_key(at_call)
                if passed is None or not self._chains_break(
                    flow, need, passed, requirement.where, set()
                ):
                    continue
            callee = self._flow_by_name().get(at_call.callee)
            if (
                callee is not None
                and at_call.same_file
                and self._chains_break(callee, need, requirement.key, requirement.where, set())
            ):
                continue
            yield flow, at_call

    def _needs(self, need: Need) -> Iterator[tuple[FunctionFlow, NeedAtCall]]:
        for flow in self.flows.values():
            for at_call in flow.events.needs.values():
                if at_call.requirement.need is need:
                    yield flow, at_call

    def every_call_breaks(self, flow: FunctionFlow, need: Need, key: str) -> bool:
        """Is ``flow``'s function called in this file, and does every chain of
        calls that reaches it break its need ``need`` on ``key``?"""
        if flow.scope is None:
            return False
        return self._chains_break(flow, need, key, self._qualified(flow.scope), set())

    def _chains_break(
        self, flow: FunctionFlow, need: Need, key: str, origin: str, seen: set[Scope]
    ) -> bool:
        if flow.scope is None or flow.scope in seen:
            return False
        seen.add(flow.scope)
        calls = [
            at_call
            for at_call in self._calls_by_callee().get(self._qualified(flow.scope), ())
            if at_call.requirement.need is need
            and at_call.requirement.key == key
            and at_call.requirement.where == origin
        ]
        if not calls:
            return False
        for at_call in calls:
            if _breaks(at_call):
                continue
            caller = self._flow_of_call(at_call)
            passed = self._passed_on_key(at_call)
            if caller is None or passed is None:
                return False
            if not self._chains_break(caller, need, passed, origin, seen):
                return False
        return True

    def _passed_on_key(self, at_call: NeedAtCall) -> str | None:
        """The key a call passes a need on with, to its own caller; None if it
        does not pass it on (the caller's own state decides)."""
        fact = at_call.fact
        from_caller = fact is not None and fact.from_caller
        if at_call.requirement.need is not Need.NO_GRAD:
            return at_call.key if from_caller else None
        if at_call.grad is not Grad.CALLER:
            return None
        if from_caller:
            return at_call.key
        # The caller's own model, or a need on no model: only its callers' grad decides.
        # A value the caller does not know as a model (lerobot's ``env``) passes nothing.
        return "" if _on_known_model(at_call) else None

    def _flow_of_call(self, at_call: NeedAtCall) -> FunctionFlow | None:
        for flow in self.flows.values():
            if any(n is at_call for n in flow.events.needs.values()):
                return flow
        return None

    def _calls_by_callee(self) -> dict[str, list[NeedAtCall]]:
        index: dict[str, list[NeedAtCall]] = {}
        for flow in self.flows.values():
            for at_call in flow.events.needs.values():
                if at_call.same_file:
                    index.setdefault(at_call.callee, []).append(at_call)
        return index

    def _flow_by_name(self) -> dict[str, FunctionFlow]:
        return {self._qualified(s): f for s, f in self.flows.items() if s is not None}

    def restore_problems(self) -> Iterator[RestoreProblem]:
        """BNL003, loop by loop, innermost first."""
        for flow in self.flows.values():
            reported: set[tuple[cst.CSTNode, str]] = set()
            visits = sorted(flow.events.loops.values(), key=lambda v: -len(v.loops))
            for visit in visits:
                if not isinstance(visit.node, cst.For | cst.While) or visit.back is None:
                    continue
                problem = self._restore_problem(flow, visit, reported)
                if problem is not None:
                    yield problem

    def _restore_problem(
        self, flow: FunctionFlow, visit: LoopVisit, reported: set[tuple[cst.CSTNode, str]]
    ) -> RestoreProblem | None:
        assert visit.back is not None
        for use in self.training_uses(flow):
            if visit.node not in use.loops:
                continue
            canonical = visit.entry.canonical(use.key)
            back = visit.back.fact(use.key)
            if back is None or Mode.EVAL not in back.modes:
                continue
            if back.modes & (Mode.UNKNOWN | Mode.CALLER) or (visit.node, canonical) in reported:
                continue
            if not self._first_pass_trains(flow, visit, use):
                continue
            if not self._second_pass_evaluates(flow, visit, use):
                continue
            for loop in (visit.node, *visit.loops):
                reported.add((loop, canonical))
            switch = self._last_eval_switch(flow, visit, use.key)
            return RestoreProblem(flow, visit, use.key, switch)
        return None

    def _first_pass_trains(self, flow: FunctionFlow, visit: LoopVisit, use: TrainingUse) -> bool:
        """On the first pass, the step trains in training mode: eval mode there is
        not a deliberate setting made before the loop; and the pass itself leaves
        the model in eval mode (not an enclosing loop's validation)."""
        fact, end = self._rewalk(flow, visit, self._first_pre(flow, visit), use)
        left = end.fact(use.key) if end is not None else None
        return fact is not None and fact.is_train and left is not None and Mode.EVAL in left.modes

    def _first_pre(self, flow: FunctionFlow, visit: LoopVisit) -> State:
        """The state before ``visit``'s loop on the first pass of every enclosing
        loop (``visit.pre`` joins all their passes: a validation in an inner loop
        pollutes it)."""
        if not visit.loops:
            return visit.pre
        outer = flow.events.loops[visit.loops[-1]]
        assert isinstance(outer.node, cst.For | cst.While)
        events = Events()
        start = self._first_pre(flow, outer).copy()
        Interpreter(self, flow.scope, events).loop_body_once(outer.node, start)
        inner = events.loops.get(visit.node)
        return inner.pre if inner is not None else visit.pre

    def _second_pass_evaluates(
        self, flow: FunctionFlow, visit: LoopVisit, use: TrainingUse
    ) -> bool:
        """Coming round in eval mode, the step still runs in eval mode."""
        start = visit.pre.copy()
        start.set_mode(use.key, ModeFact(Mode.EVAL))
        fact, _ = self._rewalk(flow, visit, start, use)
        return fact is not None and fact.is_eval

    def _rewalk(
        self, flow: FunctionFlow, visit: LoopVisit, start: State, use: TrainingUse
    ) -> tuple[ModeFact | None, State | None]:
        """The modes of the used model at ``use`` when the body runs once from
        ``start``, and the state at the end of that pass."""
        assert isinstance(visit.node, cst.For | cst.While)
        events = Events()
        end = Interpreter(self, flow.scope, events).loop_body_once(visit.node, start.copy())
        call = events.model_calls.get(use.node)
        if call is not None:
            return call.fact, end
        needs = [n for n in events.needs.values() if n.node is use.node and n.key == use.key]
        return (needs[0].fact if needs else None), end

    def _last_eval_switch(self, flow: FunctionFlow, visit: LoopVisit, key: str) -> cst.Call | None:
        canonical = visit.entry.canonical(key)
        found = None
        for switch in flow.events.switches.values():
            if (
                switch.mode is Mode.EVAL
                and visit.node in switch.loops
                and visit.entry.canonical(switch.key) == canonical
            ) and (found is None or self._runs_after(flow, switch.node, found)):
                found = switch.node
        return found

    def exports(self) -> Iterator[tuple[FunctionFlow, ModeUse]]:
        for flow in self.flows.values():
            for export in flow.events.exports.values():
                yield flow, export

    def switches(self) -> Iterator[tuple[FunctionFlow, ModeUse]]:
        for flow in self.flows.values():
            for switch in flow.events.switches.values():
                yield flow, switch

    def model_calls(self, flow: FunctionFlow) -> Iterator[ModelCall]:
        yield from flow.events.model_calls.values()

    def belongs_to_caller(self, key: str, scope: Scope) -> bool:
        """Is ``key`` the caller's (a parameter, the instance, a module global read
        in a function)? Switching its mode here switches it for the caller too."""
        if scope is None:
            return False
        root = key.split(".", 1)[0]
        return root in scope.parameter_names() or root not in self._locals.get(scope, set())

    def steps_after(
        self, flow: FunctionFlow, statement: cst.CSTNode, loops: tuple[cst.CSTNode, ...]
    ) -> bool:
        """Does a training step run after ``statement``: later in the function,
        or anywhere in a loop around it?"""
        return any(
            set(step.loops) & set(loops) or self._runs_after(flow, step.node, statement)
            for step in flow.events.steps.values()
        )

    def trained_after(
        self, flow: FunctionFlow, key: str, statement: cst.CSTNode, loops: tuple[cst.CSTNode, ...]
    ) -> bool:
        """Is ``key`` trained in the mode it has here, after ``statement``: later
        in the function or anywhere in a loop around it? (A helper that calls
        ``model.train()`` itself before training does not count.)"""
        root = key.split(".", 1)[0]
        for use in self.training_uses(flow):
            if use.key.split(".", 1)[0] != root:
                continue
            if set(use.loops) & set(loops) or self._runs_after(flow, use.node, statement):
                return True
        return False

    def _runs_after(self, flow: FunctionFlow, node: cst.CSTNode, statement: cst.CSTNode) -> bool:
        """Is ``node`` later in ``flow``'s function than ``statement``?"""
        function = flow.scope.node if flow.scope is not None else None
        return self.model.order.starts_after(node, statement, function)

    # -- facts for the project index ------------------------------------------------

    def file_facts(self) -> FileFacts:
        sensitive = self._is_sensitive()
        summaries = {}
        for scope, flow in self.flows.items():
            if scope is None:
                continue
            exported = flow.summary.for_other_files()
            if not exported.is_trivial:
                summaries[self._qualified(scope)] = exported
        prefix = f"{self.module}." if self.module else ""
        classes = {c: prefix + c.name for c in self.model.classes}
        return FileFacts(
            self.module,
            summaries,
            frozenset(classes[c] for c in self.model.module_classes),
            frozenset(classes.values()),
            frozenset(self.model.project_dependencies),
            self.model.project_fingerprint(sensitive),
            sensitive,
        )

    def _is_sensitive(self) -> bool:
        """Does the file evaluate, train, export, pass needs on, or loop in a ``with``
        that turns autograd off (inference: BNL006 judges a helper's ``model.train()``
        there)? See ``FileFacts``."""
        return (
            self._has_evaluation_loops
            or any(
                flow.evaluations or flow.events.steps or flow.events.exports or flow.events.needs
                for flow in self.flows.values()
            )
            or any(
                self._turns_grad_off(site.item.item) and _contains_loop(site.statement.body)
                for site in self.model.with_items
            )
        )

    def _turns_grad_off(self, context: cst.BaseExpression) -> bool:
        # ``with``, not decorators: a decorated ``forward`` or ``generate`` is the
        # library side of inference, and a third of transformers has one.
        func = context.func if isinstance(context, cst.Call) else context
        return self.model.qualname(func) in GRAD_MODE_CONTEXTS


_MODEL_NAME = re.compile(r"(^|_)(model|module|net|network)s?$")


def _written_for_another_framework(model: SemanticModel) -> bool:
    """A file that imports TensorFlow, Keras or JAX and nothing of torch (the TF
    versions of Hugging Face's course notebooks)."""
    imports = model.imports
    return imports.binds_any(_OTHER_FRAMEWORKS) and not imports.binds_any(("torch",))


def _built_module(call: cst.Call, state: State) -> ModeFact | None:
    """A module just built is in training mode, unless it wraps a model that may
    be in another mode: what runs then is the wrapped model, in its own mode."""
    if any(_wraps_other_mode(arg, state) for arg in call.args):
        return None
    return ModeFact(Mode.TRAIN)


def _wraps_other_mode(arg: cst.Arg, state: State) -> bool:
    """``Wrapper(model=nn_model)``: an argument that is a model not known to be in
    training mode (the caller's, one in eval, or one we cannot follow)."""
    key = dotted_name(_modules_of(arg.value))
    if key is None:
        return False
    fact = state.fact(key)
    if fact is not None:
        return not fact.is_train
    named = arg.keyword.value if arg.keyword is not None else key.rsplit(".", 1)[-1]
    return _MODEL_NAME.search(named) is not None


# torch.nn containers: what they run is the modules given to them.
_CONTAINERS = frozenset({"Sequential", "ModuleList", "ModuleDict"})


def _modules_of(value: cst.BaseExpression) -> cst.BaseExpression:
    """``model`` for ``self.model[:k]`` and ``list(model.children())[:-1]``: the
    model whose modules an argument hands over, each in its own mode."""
    while True:
        if isinstance(value, cst.Subscript):
            value = value.value
        elif (
            isinstance(value, cst.Call)
            and dotted_name(value.func) in ("list", "tuple")
            and len(value.args) == 1
        ):
            value = value.args[0].value
        elif (
            isinstance(value, cst.Call)
            and isinstance(value.func, cst.Attribute)
            and value.func.attr.value in ("children", "modules")
        ):
            value = value.func.value
        else:
            return value


# ``FocalLoss``, ``DiceCriterion``, ``SoftCrossEntropyLoss2d``.
_LOSS_CLASS = re.compile(r"(Loss|Criterion)(\d*d)?$")


def _is_plain_loss(model: SemanticModel, cls: ClassInfo) -> bool:
    """A loss module of the file built only from what runs the same in both modes:
    not a model, and its mode has nothing to get wrong. A perceptual loss that
    holds a network keeps its mode."""
    return _LOSS_CLASS.search(cls.name) is not None and class_is_mode_free(model, cls)


def _contains_loop(node: cst.CSTNode) -> bool:
    """Inference loops over batches or samples; a no-grad block without one
    (weight initialisation, a single forward) runs no inference worth judging."""
    return any(isinstance(current, LOOP_TYPES) for current in descendants(node))


def _is_known_model(fact: ModeFact) -> bool:
    """A value tracked as a model (built, loaded or switched), not a bare parameter."""
    return bool(fact.modes & (Mode.TRAIN | Mode.EVAL))


def _on_known_model(at_call: NeedAtCall) -> bool:
    """Is the need at this call on no value, or on one the caller tracks as a model?"""
    fact = at_call.fact
    return not at_call.key or (fact is not None and _is_known_model(fact))


def _breaks(at_call: NeedAtCall) -> bool:
    """Does the caller's state break the callee's need at this call?"""
    need = at_call.requirement.need
    fact = at_call.fact
    if need is Need.NO_GRAD:
        return at_call.grad is Grad.ON and _on_known_model(at_call)
    if fact is None or not fact.is_train:
        return False
    return need is not Need.EVAL or fact.switch is None  # BNL006's case otherwise


def _unbound(summary: Summary) -> Summary:
    """What calling a constructor does to its arguments: its ``__init__`` without
    the instance (what it does to the instance is ``Interpreter._construct``'s)."""
    if not summary.params:
        return summary
    instance = summary.params[0]

    def outside(key: str) -> bool:
        return key.split(".", 1)[0] != instance

    return Summary(
        summary.params[1:],
        summary.keyword_only,
        False,
        tuple(r for r in summary.requirements if outside(r.key)),
        tuple((k, m) for k, m in summary.effects if outside(k)),
        summary.grad_effect,
        summary.trains,
        tuple(k for k in summary.calls if outside(k)),
        calls_without_grad=frozenset(k for k in summary.calls_without_grad if outside(k)),
    )


def _local_names(model: SemanticModel) -> dict[Scope, set[str]]:
    """Names each function binds (assignments, loop targets, parameters)."""
    names: dict[Scope, set[str]] = {}
    for assignment in model.assignments:
        bound = names.setdefault(assignment.function, set())
        bound.update(name.split(".", 1)[0] for name in target_names(assignment.target))
    for site in model.for_loops:
        bound = names.setdefault(site.function, set())
        bound.update(target_names(site.node.target))  # type: ignore[attr-defined]
    for function in model.functions:
        names.setdefault(function, set()).update(function.parameter_names())
    return names


def _module_evidence(model: SemanticModel) -> set[str]:
    """Names the file uses as nn.Modules: ``x.parameters()``, ``x.eval()``, ...,
    ``torch.jit.trace(x, ...)``."""
    evidence = set()
    for site in model.calls:
        func = site.node.func
        if isinstance(func, cst.Attribute) and func.attr.value in MODULE_EVIDENCE_METHODS:
            name = dotted_name(func.value)
            if name is not None:
                evidence.add(name)
        elif site.qualname in EXPORTERS and site.node.args:
            name = dotted_name(site.node.args[0].value)
            if name is not None:
                evidence.add(name)
    return evidence
