"""The semantic model of one file: what rules query instead of walking the tree.

Built in a single iterative pass over the LibCST tree. It records imports,
classes (and which are nn.Modules), functions (and which class they belong to),
calls with their qualified names, expression statements, assignments, ``with``
items and loops, each with its enclosing function.
"""

from __future__ import annotations

from collections.abc import Container, Iterator
from dataclasses import dataclass, field
from functools import cached_property

import libcst as cst

from bnlint.analysis.frameworks import is_framework_module_base
from bnlint.analysis.names import ImportTable, dotted_name
from bnlint.analysis.positions import Positions
from bnlint.analysis.walk import children


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
        p = self.node.params
        every = [*p.posonly_params, *p.params, *p.kwonly_params]
        return [param.name.value for param in every]


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


# The enclosing function and class of a node while the model is built.
Context = tuple[FunctionInfo | None, ClassInfo | None]


class SemanticModel:
    """Facts about one parsed file. ``package`` resolves relative imports."""

    def __init__(
        self, module: cst.Module, path: str = "<stdin>", package: str | None = None
    ) -> None:
        self.module = module
        self.path = path
        self.imports = ImportTable(package)
        self.classes: list[ClassInfo] = []
        self.functions: list[FunctionInfo] = []
        self.calls: list[CallSite] = []
        self.expression_statements: list[StatementSite] = []
        self.assignments: list[Assignment] = []
        self.with_items: list[WithItemSite] = []
        self.for_loops: list[StatementSite] = []
        self.positions = Positions(module)
        self._collect()

    # -- building -----------------------------------------------------------

    def _collect(self) -> None:
        handlers = {
            cst.Call: self._on_call,
            cst.Import: self._on_import,
            cst.ImportFrom: self._on_import,
            cst.FunctionDef: self._on_function,
            cst.ClassDef: self._on_class,
            cst.Expr: self._on_expression_statement,
            cst.Assign: self._on_assign,
            cst.AnnAssign: self._on_single_assign,
            cst.AugAssign: self._on_single_assign,
            cst.With: self._on_with,
            cst.For: self._on_for,
        }
        stack: list[tuple[cst.CSTNode, FunctionInfo | None, ClassInfo | None]] = [
            (self.module, None, None)
        ]
        while stack:
            node, function, cls = stack.pop()
            handler = handlers.get(type(node))
            if handler is not None:
                function, cls = handler(node, function, cls)
            kids = children(node)
            kids.reverse()  # popped in source order
            stack.extend((child, function, cls) for child in kids)
        # Calls were recorded before imports further down the file were seen.
        for site in self.calls:
            site.qualname = self.imports.resolve(site.node.func)

    # Each handler below records one kind of node and returns the context
    # (enclosing function, enclosing class) for the node's children.

    def _on_call(
        self, node: cst.Call, function: FunctionInfo | None, cls: ClassInfo | None
    ) -> Context:
        self.calls.append(CallSite(node, None, function))
        return function, cls

    def _on_import(
        self,
        node: cst.Import | cst.ImportFrom,
        function: FunctionInfo | None,
        cls: ClassInfo | None,
    ) -> Context:
        self.imports.add(node)
        return function, cls

    def _on_function(
        self, node: cst.FunctionDef, function: FunctionInfo | None, cls: ClassInfo | None
    ) -> Context:
        info = FunctionInfo(node, node.name.value, cls, function)
        self.functions.append(info)
        if cls is not None:
            cls.methods[info.name] = info
        return info, None

    def _on_class(
        self, node: cst.ClassDef, function: FunctionInfo | None, cls: ClassInfo | None
    ) -> Context:
        info = ClassInfo(node, node.name.value, [base.value for base in node.bases])
        self.classes.append(info)
        return function, info

    def _on_expression_statement(
        self, node: cst.Expr, function: FunctionInfo | None, cls: ClassInfo | None
    ) -> Context:
        self.expression_statements.append(StatementSite(node, function))
        return function, cls

    def _on_assign(
        self, node: cst.Assign, function: FunctionInfo | None, cls: ClassInfo | None
    ) -> Context:
        for target in node.targets:
            self.assignments.append(Assignment(target.target, node.value, node, function))
        return function, cls

    def _on_single_assign(
        self,
        node: cst.AnnAssign | cst.AugAssign,
        function: FunctionInfo | None,
        cls: ClassInfo | None,
    ) -> Context:
        self.assignments.append(Assignment(node.target, node.value, node, function))
        return function, cls

    def _on_with(
        self, node: cst.With, function: FunctionInfo | None, cls: ClassInfo | None
    ) -> Context:
        for item in node.items:
            self.with_items.append(WithItemSite(item, node, function))
        return function, cls

    def _on_for(
        self, node: cst.For, function: FunctionInfo | None, cls: ClassInfo | None
    ) -> Context:
        self.for_loops.append(StatementSite(node, function))
        return function, cls

    # -- queries ------------------------------------------------------------

    def qualname(self, node: cst.BaseExpression) -> str | None:
        return self.imports.resolve(node)

    def code(self, node: cst.CSTNode) -> str:
        """The source text of ``node`` (whitespace it owns included)."""
        return self.module.code_for_node(node)

    @cached_property
    def _classes_by_name(self) -> dict[str, ClassInfo]:
        return {c.name: c for c in self.classes}

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

    def _has_module_base(self, cls: ClassInfo, known: set[ClassInfo]) -> bool:
        for base in cls.bases:
            qualified = self.qualname(base)
            if qualified is not None and is_framework_module_base(qualified):
                return True
            local = self._classes_by_name.get(dotted_name(base) or "")
            if local is not None and local in known:
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

    def enclosing_module_method(self, function: FunctionInfo | None) -> FunctionInfo | None:
        """The nn.Module method that ``function`` is, or is nested in."""
        while function is not None:
            if function.cls is not None and function.cls in self.module_classes:
                return function
            function = function.parent
        return None
