"""``walk.children`` reads only the fields that can hold code: it trusts LibCST's
sequences to hold nodes only and never reads text or whitespace fields."""

from __future__ import annotations

import collections.abc
import dataclasses
import inspect
import typing
from collections.abc import Iterator

import libcst as cst

from bnlint.analysis.model import SemanticModel
from bnlint.analysis.walk import _CHILD_FIELDS, children, descendants


def node_classes() -> Iterator[type[cst.CSTNode]]:
    pending = [cst.CSTNode]
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if dataclasses.is_dataclass(cls) and not inspect.isabstract(cls):
            yield cls


def sequence_items(annotation: object) -> Iterator[object]:
    """The item types of every ``Sequence[...]`` in ``annotation`` (unions included)."""
    if typing.get_origin(annotation) is typing.Union:
        for member in typing.get_args(annotation):
            yield from sequence_items(member)
    elif typing.get_origin(annotation) is collections.abc.Sequence:
        yield typing.get_args(annotation)[0]


def only_nodes(annotation: object) -> bool:
    if typing.get_origin(annotation) is typing.Union:
        return all(only_nodes(member) for member in typing.get_args(annotation))
    return inspect.isclass(annotation) and issubclass(annotation, cst.CSTNode)


def test_every_sequence_children_reads_is_declared_to_hold_nodes_only() -> None:
    checked = 0
    for cls in node_classes():
        hints = typing.get_type_hints(cls)
        for name in _CHILD_FIELDS[cls]:
            for item in sequence_items(hints[name]):
                assert only_nodes(item), (cls.__name__, name, item)
                checked += 1
    assert checked > 50


def test_text_and_whitespace_are_not_children() -> None:
    module = cst.parse_module("total = count + 1  # a comment\n")
    assert children(cst.Name("total")) == []
    assert not any(
        isinstance(node, cst.Comment | cst.TrailingWhitespace) for node in descendants(module)
    )


def test_calls_are_recorded_with_the_function_they_run_in() -> None:
    source = (
        "@decorate()\n"
        "def outer(x=default()):\n"
        "    first()\n"
        "    class Local:\n"
        "        def method(self):\n"
        "            second()\n"
        "    def inner():\n"
        "        third()\n"
        "    fourth()\n"
        "last()\n"
    )
    model = SemanticModel(cst.parse_module(source))
    seen = [
        (cst.Module([]).code_for_node(site.node.func), site.function and site.function.name)
        for site in model.calls
    ]
    # Decorators and defaults count as the function's own: the model's convention.
    assert seen == [
        ("decorate", "outer"),
        ("default", "outer"),
        ("first", "outer"),
        ("second", "method"),
        ("third", "inner"),
        ("fourth", "outer"),
        ("last", None),
    ]
    method = next(f for f in model.functions if f.name == "method")
    inner = next(f for f in model.functions if f.name == "inner")
    assert method.cls is not None and method.cls.name == "Local" and method.parent.name == "outer"
    assert inner.cls is None and inner.parent.name == "outer"
