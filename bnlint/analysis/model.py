"""The semantic model of one file: what rules query instead of walking the tree.

Built in a single iterative pass over the LibCST tree. It records imports,
classes (and which are nn.Modules), functions (and which class they belong to),
calls with their qualified names, expression statements, assignments, ``with``
items and loops, each with its enclosing function.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Container, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from itertools import pairwise
from typing import TYPE_CHECKING, Any, ClassVar

import libcst as cst

from bnlint.analysis.calls import argument, keyword_arg
from bnlint.analysis.frameworks import is_framework_module_base
from bnlint.analysis.names import ImportTable, dotted_name, target_names
from bnlint.analysis.positions import Positions, SourceOrder
from bnlint.analysis.project import is_outside_project
from bnlint.analysis.walk import children, descendants
from bnlint.source import line_starts

if TYPE_CHECKING:
    from bnlint.analysis.modes import ModeAnalysis
    from bnlint.analysis.project import FileFacts, ProjectIndex
    from bnlint.analysis.summaries import Summary


# Loops: ``for``, ``while`` and comprehensions.
LOOP_TYPES = (cst.For, cst.While, cst.ListComp, cst.SetComp, cst.DictComp, cst.GeneratorExp)


@dataclass(eq=False)
class ClassInfo:
    node: cst.ClassDef
    name: str
    bases: list[cst.BaseExpression]
    methods: dict[str, FunctionInfo] = field(default_factory=dict)


@dataclass(eq=False)
class FunctionInfo:
    node: cst.FunctionDef
    name: str
    cls: ClassInfo | None  # set for methods, not for functions nested in them
    parent: FunctionInfo | None

    @property
    def self_name(self) -> str | None:
        """The name of the instance parameter of a method (usually ``self``)."""
        if self.cls is None or _is_static(self.node):
            return None
        params = self.node.params.posonly_params or self.node.params.params
        return params[0].name.value if params else None

    def parameter_names(self) -> list[str]:
        return [param.name.value for param in self._parameters()]

    def parameter_default(self, parameter: str) -> cst.BaseExpression | None:
        """The default value of ``parameter``, if it has one."""
        return next((p.default for p in self._parameters() if p.name.value == parameter), None)

    def _parameters(self) -> list[cst.Param]:
        p = self.node.params
        return [*p.posonly_params, *p.params, *p.kwonly_params]

    def argument_for(self, call: cst.Call, parameter: str) -> cst.Arg | None:
        """What ``call``, a call of this function, passes for ``parameter``: by
        keyword, or by position (a method's ``self`` is its receiver, not an argument)."""
        if parameter not in self.parameter_names():
            return None
        p = self.node.params
        positional = [param.name.value for param in (*p.posonly_params, *p.params)]
        if self.self_name is not None:
            positional = positional[1:]
        if parameter in positional:
            return argument(call, parameter, positional.index(parameter))
        return keyword_arg(call, parameter)


def _is_static(node: cst.FunctionDef) -> bool:
    return any(dotted_name(d.decorator) in {"staticmethod", "classmethod"} for d in node.decorators)


@dataclass(eq=False)
class CallSite:
    node: cst.Call
    qualname: str | None
    function: FunctionInfo | None


@dataclass(eq=False)
class Assignment:
    target: cst.BaseExpression
    value: cst.BaseExpression | None
    statement: cst.CSTNode
    function: FunctionInfo | None


@dataclass(eq=False)
class WithItemSite:
    item: cst.WithItem
    statement: cst.With
    function: FunctionInfo | None


@dataclass(eq=False)
class StatementSite:
    node: cst.CSTNode
    function: FunctionInfo | None


class SemanticModel:
    """Facts about one parsed file. ``package`` resolves relative imports;
    ``project`` holds what the other files of the project tell this one."""

    def __init__(
        self,
        module: cst.Module,
        path: str = "<stdin>",
        package: str | None = None,
        project: ProjectIndex | None = None,
    ) -> None:
        self.module = module
        self.path = path
        self.package = package
        self.project = project
        # Project names this file's analysis looked up, found or not: its result
        # depends on what they hold (see ``project_fingerprint``).
        self.project_dependencies: set[str] = set()
        self.imports = ImportTable(package)
        self.classes: list[ClassInfo] = []
        self.functions: list[FunctionInfo] = []
        self.calls: list[CallSite] = []
        self.expression_statements: list[StatementSite] = []
        self.assignments: list[Assignment] = []
        self.with_items: list[WithItemSite] = []
        self.for_loops: list[StatementSite] = []
        self.loops: list[StatementSite] = []  # for, while and comprehensions
        self.positions = Positions(module)
        self.order = SourceOrder(module)
        self._name_counts: dict[FunctionInfo | None, Counter[str]] = {}  # see name_count
        self._collect()

    # What the walk collects: it depends on the file's text alone.
    _COLLECTED = (
        "module",
        "path",
        "package",
        "imports",
        "classes",
        "functions",
        "calls",
        "expression_statements",
        "assignments",
        "with_items",
        "for_loops",
        "loops",
        "positions",
        "order",
        "_name_counts",  # filled on demand, from the text alone
    )

    def for_project(self, project: ProjectIndex | None) -> SemanticModel:
        """This file's model against another state of the project: what the walk
        collected is shared, and all that the project decides is worked out anew."""
        twin = object.__new__(SemanticModel)
        for name in self._COLLECTED:
            setattr(twin, name, getattr(self, name))
        twin.project = project
        twin.project_dependencies = set()
        return twin

    # -- building -----------------------------------------------------------

    def _collect(self) -> None:
        self._collect_below(self.module, None, None)
        # Calls were recorded before imports further down the file were seen.
        for site in self.calls:
            site.qualname = self.imports.resolve(site.node.func)

    def _collect_below(
        self, root: cst.CSTNode, function: FunctionInfo | None, cls: ClassInfo | None
    ) -> None:
        """Record the nodes below ``root``, which all run in ``function`` and
        ``cls``. Only a ``def`` or a ``class`` changes that: its subtree is
        collected by a nested call (Python's indentation limit bounds the depth)."""
        records = self._RECORDS
        pending = children(root)
        pending.reverse()  # popped in source order
        while pending:
            node = pending.pop()
            node_type = type(node)
            if node_type is cst.FunctionDef:
                self._collect_below(node, self._on_function(node, function, cls), None)
                continue
            if node_type is cst.ClassDef:
                self._collect_below(node, function, self._on_class(node))
                continue
            record = records.get(node_type)
            if record is not None:
                record(self, node, function)
            below = children(node)
            if below:
                below.reverse()
                pending.extend(below)

    # Each handler below records one kind of node found in ``function``.

    def _on_call(self, node: cst.Call, function: FunctionInfo | None) -> None:
        self.calls.append(CallSite(node, None, function))

    def _on_import(self, node: cst.Import | cst.ImportFrom, function: FunctionInfo | None) -> None:
        self.imports.add(node)

    def _on_function(
        self, node: cst.FunctionDef, function: FunctionInfo | None, cls: ClassInfo | None
    ) -> FunctionInfo:
        info = FunctionInfo(node, node.name.value, cls, function)
        self.functions.append(info)
        if cls is not None:
            cls.methods[info.name] = info
        return info

    def _on_class(self, node: cst.ClassDef) -> ClassInfo:
        info = ClassInfo(node, node.name.value, [base.value for base in node.bases])
        self.classes.append(info)
        return info

    def _on_expression_statement(self, node: cst.Expr, function: FunctionInfo | None) -> None:
        self.expression_statements.append(StatementSite(node, function))

    def _on_assign(self, node: cst.Assign, function: FunctionInfo | None) -> None:
        for target in node.targets:
            self.assignments.append(Assignment(target.target, node.value, node, function))

    def _on_single_assign(
        self, node: cst.AnnAssign | cst.AugAssign, function: FunctionInfo | None
    ) -> None:
        self.assignments.append(Assignment(node.target, node.value, node, function))

    def _on_with(self, node: cst.With, function: FunctionInfo | None) -> None:
        for item in node.items:
            self.with_items.append(WithItemSite(item, node, function))

    def _on_loop(self, node: cst.CSTNode, function: FunctionInfo | None) -> None:
        site = StatementSite(node, function)
        self.loops.append(site)
        if type(node) is cst.For:
            self.for_loops.append(site)

    _RECORDS: ClassVar[dict[type, Callable[[Any, Any, FunctionInfo | None], None]]] = {
        cst.Call: _on_call,
        cst.Import: _on_import,
        cst.ImportFrom: _on_import,
        cst.Expr: _on_expression_statement,
        cst.Assign: _on_assign,
        cst.AnnAssign: _on_single_assign,
        cst.AugAssign: _on_single_assign,
        cst.With: _on_with,
        **dict.fromkeys(LOOP_TYPES, _on_loop),
    }

    # -- queries ------------------------------------------------------------

    def qualname(self, node: cst.BaseExpression) -> str | None:
        return self.imports.resolve(node)

    def code(self, node: cst.CSTNode) -> str:
        """The source text of ``node`` (whitespace it owns included)."""
        return self.module.code_for_node(node)

    def guarding_tests(self, node: cst.CSTNode, function: FunctionInfo | None) -> list[str]:
        """The tests of the ``if`` branches that hold ``node`` in ``function``,
        outermost first (``elif x:`` holds its body under ``x``)."""
        path = self._path_to(node, function)
        return [
            self.code(outer.test).strip()
            for outer, below in pairwise(path)
            if isinstance(outer, cst.If) and below is outer.body
        ]

    def in_exclusive_branches(
        self, a: cst.CSTNode, b: cst.CSTNode, function: FunctionInfo | None
    ) -> bool:
        """Are ``a`` and ``b`` in two branches of one ``if``/``elif``/``else``
        chain of ``function``, so that no run reaches both?"""
        path_a, path_b = self._path_to(a, function), self._path_to(b, function)
        for outer, below_a, below_b in zip(path_a, path_a[1:], path_b[1:], strict=False):
            if below_a is not below_b:  # where the two paths part
                return isinstance(outer, cst.If) and (
                    (below_a is outer.body and below_b is outer.orelse)
                    or (below_a is outer.orelse and below_b is outer.body)
                )
        return False

    def _path_to(self, node: cst.CSTNode, function: FunctionInfo | None) -> list[cst.CSTNode]:
        """The nodes from ``function`` (or the module) down to ``node``; empty if
        ``node`` is not in it."""
        within = function.node if function is not None else None
        path: list[cst.CSTNode] = [within if within is not None else self.module]
        while path[-1] is not node:
            below = next(
                (c for c in children(path[-1]) if self.order.contains(c, node, within=within)),
                None,
            )
            if below is None:
                return []
            path.append(below)
        return path

    @cached_property
    def modes(self) -> ModeAnalysis:
        """The flow-sensitive mode analysis (BNL001-BNL006), run on first use."""
        from bnlint.analysis.modes import ModeAnalysis  # builds on this module

        return ModeAnalysis(self)

    @cached_property
    def source_lines(self) -> list[str]:
        """The file's lines (with their line breaks), for building fixes; split
        only where Python ends a line (``str.splitlines`` also splits at form feeds)."""
        code = self.module.code
        return [code[start:end] for start, end in pairwise((*line_starts(code), len(code)))]

    @cached_property
    def assignments_by_target(self) -> dict[str, list[Assignment]]:
        """Assignments by the dotted name they assign (``model``, ``self.model``)."""
        index: dict[str, list[Assignment]] = {}
        for assignment in self.assignments:
            name = dotted_name(assignment.target)
            if name is not None:
                index.setdefault(name, []).append(assignment)
        return index

    @cached_property
    def rebound_imports(self) -> frozenset[str]:
        """Imported names the module then binds to what a call returns:
        ``import model`` and ``model = model.RNNModel(...)`` (word-language-model
        scripts). Past that line the name holds the call's result, not the module.
        ``amp = None`` after a failed import is not a rebinding of this kind."""
        return frozenset(
            name
            for name, assignments in self.assignments_by_target.items()
            if self.imports.resolve_dotted(name) is not None
            and any(
                a.function is None and type(a.value) is cst.Call and type(a.target) is cst.Name
                for a in assignments
            )
        )

    def results_of(self, call: cst.BaseExpression) -> list[Assignment]:
        """The assignments that store what ``call`` returns (``x = call``,
        ``a, b = call``, ``total += call``)."""
        return self._assignments_by_value.get(call, [])

    def result_names(self, call: cst.BaseExpression) -> list[str]:
        """The names ``call``'s result is stored under (``val_acc``, ``loss_dict``,
        ``self.train_kernel``)."""
        return [name for a in self.results_of(call) for name in target_names(a.target)]

    @cached_property
    def _assignments_by_value(self) -> dict[cst.BaseExpression, list[Assignment]]:
        index: dict[cst.BaseExpression, list[Assignment]] = {}
        for assignment in self.assignments:
            if assignment.value is not None:
                index.setdefault(assignment.value, []).append(assignment)
        return index

    # -- the project ----------------------------------------------------------------

    def project_summary(self, qualified: str) -> Summary | None:
        """The summary of a function of another project file, if the project has one."""
        if is_outside_project(qualified):
            return None
        self.project_dependencies.add(qualified)
        return self.project.summary(qualified) if self.project is not None else None

    def project_module_class(self, qualified: str) -> bool | None:
        """Whether a class of another project file is an nn.Module (None: not a project class)."""
        if is_outside_project(qualified):
            return None
        self.project_dependencies.add(qualified)
        return self.project.is_module_class(qualified) if self.project is not None else None

    def project_facts(self) -> FileFacts | None:
        """What this file tells the project index, if the mode analysis ran on it."""
        analysis = self.__dict__.get("modes")  # the cached property, if computed
        return analysis.file_facts() if analysis is not None else None

    def project_fingerprint(self, sensitive: bool) -> str:
        """What the project names this file looked up held, as a stable hash."""
        if self.project is None:
            return ""
        return self.project.fingerprint(self.project_dependencies, sensitive)

    @cached_property
    def classes_by_name(self) -> dict[str, ClassInfo]:
        return {c.name: c for c in self.classes}

    def class_named(self, expr: cst.BaseExpression) -> ClassInfo | None:
        """The class of this file that ``expr`` (``Net``, a call's func) names. A
        name defined twice (a notebook's exercise, then its solution) names the
        last definition before ``expr``."""
        definitions = self._class_definitions.get(dotted_name(expr) or "")
        if not definitions:
            return None
        if len(definitions) == 1:
            return definitions[0]
        before = [c for c in definitions if self.order.starts_after(expr, c.node)]
        return before[-1] if before else definitions[-1]

    @cached_property
    def _class_definitions(self) -> dict[str, list[ClassInfo]]:
        """Each class name's definitions, in source order."""
        found: dict[str, list[ClassInfo]] = {}
        for cls in self.classes:
            found.setdefault(cls.name, []).append(cls)
        return found

    @cached_property
    def module_classes(self) -> frozenset[ClassInfo]:
        """Classes that are nn.Modules: by a framework base, a same-file chain, or
        an unresolvable base together with a ``forward`` method."""
        found: set[ClassInfo] = set()
        changed = True
        while changed:
            changed = False
            for cls in self.classes:
                if cls not in found and self._has_module_base(cls, found):
                    found.add(cls)
                    changed = True
        return frozenset(found)

    def is_plain_class(self, cls: ClassInfo, depth: int = 0) -> bool:
        """Is ``cls`` built only from classes of this file and ``object``, none an
        nn.Module, so that no base we cannot see may make it one?"""
        if cls in self.module_classes or depth > 20:
            return False
        for base in cls.bases:
            local = self.class_named(base)
            if local is not None and local is not cls:
                if not self.is_plain_class(local, depth + 1):
                    return False
            elif dotted_name(base) != "object":
                return False
        return True

    def _has_module_base(self, cls: ClassInfo, known: set[ClassInfo]) -> bool:
        for base in cls.bases:
            qualified = self.qualname(base)
            if qualified is not None and is_framework_module_base(qualified):
                return True
            local = self.class_named(base)
            if local is not None and local in known:
                return True
            if qualified is not None and local is None and self.project_module_class(qualified):
                return True
            if qualified is not None and local is None and "forward" in cls.methods:
                # Imported from a project module we cannot see: a ``forward``
                # method is the structural sign of an nn.Module.
                return not qualified.startswith(("torch.", "builtins."))
        return False

    def module_method_calls(
        self, qualnames: Container[str]
    ) -> Iterator[tuple[CallSite, FunctionInfo]]:
        """Calls to ``qualnames`` made inside nn.Module methods, with the method."""
        for site in self.calls:
            if site.qualname in qualnames:
                method = self.enclosing_module_method(site.function)
                if method is not None:
                    yield site, method

    def module_method_callers(
        self, function: FunctionInfo
    ) -> Iterator[tuple[CallSite, FunctionInfo]]:
        """Calls of the module-level ``function`` made from nn.Module methods,
        directly or through other module-level helpers of the file, each with the
        method it runs in."""
        seen = {function}
        pending = [function]
        while pending:
            helper = pending.pop()
            for site in self._calls_by_last_name.get(helper.name, ()):
                if not isinstance(site.node.func, cst.Name):
                    continue  # ``obj.helper(...)`` is some other object's method
                method = self.enclosing_module_method(site.function)
                if method is not None:
                    yield site, method
                elif (
                    site.function is not None
                    and _is_top_level(site.function)
                    and site.function not in seen
                ):
                    seen.add(site.function)
                    pending.append(site.function)

    def attribute_assignments(self, cls: ClassInfo, target: str) -> list[Assignment]:
        """Assignments to ``target`` (``self.lstm``) in the methods of ``cls``."""
        return [
            a
            for a in self.assignments_by_target.get(target, ())
            if a.function is not None and a.function.cls is cls
        ]

    def name_count(self, function: FunctionInfo | None, name: str) -> int:
        """How often ``name`` is written or read in ``function`` (None: the module)."""
        counts = self._name_counts.get(function)
        if counts is None:
            root = function.node if function is not None else self.module
            counts = Counter(n.value for n in descendants(root) if type(n) is cst.Name)
            self._name_counts[function] = counts
        return counts[name]

    def expected_to_raise(self, node: cst.CSTNode) -> bool:
        """Is ``node`` in a block a test expects to raise (``with pytest.raises(...)``,
        ``with self.assertRaises(...)``)? That code runs only to fail."""
        return any(
            self.order.contains(
                block.statement, node, within=block.function.node if block.function else None
            )
            for block in self._raising_blocks
        )

    @cached_property
    def _raising_blocks(self) -> list[WithItemSite]:
        return [
            site
            for site in self.with_items
            if isinstance(site.item.item, cst.Call)
            and (dotted_name(site.item.item.func) or "").rsplit(".", 1)[-1] in _EXPECTED_RAISES
        ]

    def calls_of(self, function: FunctionInfo) -> list[CallSite]:
        """The calls that may run ``function``: ``helper(...)``,
        ``self.p_sample(...)``, any call whose last name is the function's."""
        return self._calls_by_last_name.get(function.name, [])

    @cached_property
    def _calls_by_last_name(self) -> dict[str, list[CallSite]]:
        index: dict[str, list[CallSite]] = {}
        for site in self.calls:
            name = dotted_name(site.node.func)
            if name is not None:
                index.setdefault(name.rsplit(".", 1)[-1], []).append(site)
        return index

    def enclosing_module_method(self, function: FunctionInfo | None) -> FunctionInfo | None:
        """The nn.Module method that ``function`` is, or is nested in."""
        while function is not None:
            if function.cls is not None and function.cls in self.module_classes:
                return function
            function = function.parent
        return None


# Context managers of tests that expect the block to raise.
_EXPECTED_RAISES = frozenset({"raises", "assertRaises", "assertRaisesRegex", "assertRaisesRegexp"})


def _is_top_level(function: FunctionInfo) -> bool:
    return function.cls is None and function.parent is None
