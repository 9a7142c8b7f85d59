"""Fast child iteration over LibCST trees.

``CSTNode.visit`` rebuilds every node it passes through, which costs as much as
the parse itself. Reading the dataclass fields directly allocates nothing.
Whitespace and punctuation fields never hold code, and text fields (a name's
or a number's ``value``) never hold a node, so neither is read.
"""

from __future__ import annotations

import dataclasses
import typing
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
        "trailing_whitespace",
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


class _ChildFields(dict[type, tuple[str, ...]]):
    """Per node class, the fields that may hold a code-bearing node, in source
    order; worked out on first sight of the class."""

    def __missing__(self, node_type: type) -> tuple[str, ...]:
        fields = dataclasses.fields(node_type)
        declared = [f.name for f in fields]
        ordered = [name for name in _SOURCE_ORDER.get(node_type, ()) if name in declared]
        text = {f.name for f in fields if _is_text(f.type)}
        names = self[node_type] = tuple(
            name
            for name in (*ordered, *(n for n in declared if n not in ordered))
            if name not in _SKIPPED_FIELDS
            and not name.startswith("whitespace")
            and name not in text
        )
        return names


def _is_text(annotation: object) -> bool:
    return annotation is str or typing.get_origin(annotation) is typing.Literal


class _NodeClasses(dict[type, bool]):
    """Whether a class is a LibCST node. isinstance against CSTNode goes through
    ABCMeta, which is slow in this hot loop; a dict lookup is not."""

    def __missing__(self, value_type: type) -> bool:
        known = self[value_type] = issubclass(value_type, cst.CSTNode)
        return known


_CHILD_FIELDS = _ChildFields()
_IS_NODE = _NodeClasses()


def children(node: cst.CSTNode) -> list[cst.CSTNode]:
    """The direct code-bearing children of ``node``, in source order."""
    found = []
    for name in _CHILD_FIELDS[type(node)]:
        value = getattr(node, name)
        value_type = type(value)
        if value_type is tuple or value_type is list:
            found.extend(value)  # LibCST's sequences hold nodes only
        elif _IS_NODE[value_type]:
            found.append(value)
    return found


def descendants(node: cst.CSTNode) -> Iterator[cst.CSTNode]:
    """``node`` and every code-bearing node below it, depth first."""
    pending = [node]
    while pending:
        current = pending.pop()
        yield current
        pending.extend(children(current))
