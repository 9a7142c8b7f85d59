"""Fast child iteration over LibCST trees.

``CSTNode.visit`` rebuilds every node it passes through, which costs as much as
the parse itself. Reading the dataclass fields directly allocates nothing.
Whitespace and punctuation fields never hold code, so they are skipped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import libcst as cst

_SKIPPED_FIELDS = frozenset(
    {
        "lpar",
        "rpar",
        "comma",
        "semicolon",
        "colon",
        "dot",
        "equal",
        "leading_lines",
        "lines_after_decorators",
        "header",
        "footer",
        "lbracket",
        "rbracket",
        "lbrace",
        "rbrace",
        "newline",
        "operator",
        "asynchronous",
        "star",
        "whitespace",
    }
)

# Where a node's fields are not declared in source order.
_SOURCE_ORDER: dict[type, tuple[str, ...]] = {
    cst.FunctionDef: ("decorators", "name", "type_parameters", "params", "returns", "body"),
    cst.ClassDef: ("decorators", "name", "type_parameters", "bases", "keywords", "body"),
    cst.IfExp: ("body", "test", "orelse"),
    cst.ExceptHandler: ("type", "name", "body"),
    cst.ExceptStarHandler: ("type", "name", "body"),
    cst.MatchCase: ("pattern", "guard", "body"),
    cst.Arg: ("keyword", "value"),
    cst.ImportFrom: ("relative", "module", "names"),
    cst.Parameters: (
        "posonly_params",
        "posonly_ind",
        "params",
        "star_arg",
        "kwonly_params",
        "star_kwarg",
    ),
}
_child_fields: dict[type, tuple[str, ...]] = {}
# isinstance against CSTNode goes through ABCMeta, which is slow in this hot
# loop; remember per concrete class whether it is a node.
_is_node: dict[type, bool] = {}


def _fields_of(node_type: type) -> tuple[str, ...]:
    names = _child_fields.get(node_type)
    if names is None:
        declared = [f.name for f in dataclasses.fields(node_type)]
        ordered = [name for name in _SOURCE_ORDER.get(node_type, ()) if name in declared]
        names = tuple(
            name
            for name in (*ordered, *(n for n in declared if n not in ordered))
            if name not in _SKIPPED_FIELDS and not name.startswith("whitespace")
        )
        _child_fields[node_type] = names
    return names


def _node_class(value_type: type) -> bool:
    known = _is_node.get(value_type)
    if known is None:
        known = _is_node[value_type] = issubclass(value_type, cst.CSTNode)
    return known


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The direct code-bearing children of ``node``, in source order."""
    found = []
    for name in _fields_of(type(node)):
        value = getattr(node, name)
        value_type = type(value)
        if value_type is tuple or value_type is list:
            found.extend(item for item in value if _node_class(type(item)))
        elif _node_class(value_type):
            found.append(value)
    return found


def descendants(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """``node`` and every code-bearing node below it, depth first."""
    pending = [node]
    while pending:
        current = pending.pop()
        yield current
        pending.extend(children(current))
