"""Qualified names through imports: ``F.dropout`` -> ``torch.nn.functional.dropout``.

A light import table instead of LibCST's QualifiedNameProvider, which costs
several times the parse (see DESIGN.md). Imports anywhere in the file count,
because training scripts often import inside functions.
"""

from __future__ import annotations

import libcst as cst


def dotted_name(node: cst.BaseExpression) -> str | None:
    """``a.b.c`` for a Name/Attribute chain, else None."""
    # Exact types: isinstance goes through ABCMeta, and this runs on most
    # expressions the analyses look at. LibCST's node classes have no subclasses.
    parts: list[str] = []
    while type(node) is cst.Attribute:
        parts.append(node.attr.value)
        node = node.value
    if type(node) is not cst.Name:
        return None
    if not parts:
        return node.value
    parts.append(node.value)
    return ".".join(reversed(parts))


def target_names(target: cst.BaseExpression) -> list[str]:
    """The names an assignment target binds: ``a``, ``self.a``, ``a, (b, c)``."""
    if isinstance(target, cst.Tuple | cst.List):
        return [name for element in target.elements for name in target_names(element.value)]
    name = dotted_name(target)
    return [name] if name is not None else []


# What a star import (``from models import *``) most likely brings: the module
# it star-imports imported torch under the names everyone uses.
STAR_IMPORTED_ALIASES = {
    "torch": "torch",
    "nn": "torch.nn",
    "F": "torch.nn.functional",
    "optim": "torch.optim",
}


class ImportTable:
    """Maps local names bound by imports to the qualified names they stand for.
    After a star import, ``torch``, ``nn``, ``F`` and ``optim`` that no import of
    the file binds are taken to be torch's (``STAR_IMPORTED_ALIASES``)."""

    def __init__(self, package: str | None = None) -> None:
        self._package = package
        self._bindings: dict[str, str] = {}
        self._star_imported = False

    def add(self, node: cst.Import | cst.ImportFrom) -> None:
        if isinstance(node, cst.Import):
            for alias in node.names:
                full = dotted_name(alias.name)
                if full is None:
                    continue
                if alias.asname is not None:
                    self._bind(alias.asname.name, full)
                else:
                    # ``import torch.nn`` binds ``torch`` to the package ``torch``.
                    head = full.split(".", 1)[0]
                    self._bind(cst.Name(head), head)
            return
        module = self._from_module(node)
        if isinstance(node.names, cst.ImportStar):
            self._star_imported = True
            return
        if module is None:
            return
        for alias in node.names:
            name = dotted_name(alias.name)
            if name is None:
                continue
            target = alias.asname.name if alias.asname is not None else alias.name
            self._bind(target, f"{module}.{name}" if module else name)

    def _bind(self, target: cst.BaseExpression, qualified: str) -> None:
        if isinstance(target, cst.Name):
            # First binding wins: later rebindings are usually try/except fallbacks.
            self._bindings.setdefault(target.value, qualified)

    def _from_module(self, node: cst.ImportFrom) -> str | None:
        module = dotted_name(node.module) if node.module is not None else ""
        level = len(node.relative)
        if level == 0:
            return module
        if self._package is None:
            # Unknown package: keep the dots so the name stays recognisably relative.
            return "." * level + (module or "")
        base = self._package.split(".")
        base = base[: len(base) - (level - 1)] if level > 1 else base
        return ".".join([*base, module] if module else base)

    def binds_any(self, packages: tuple[str, ...]) -> bool:
        """Does the file import anything from one of ``packages``?"""
        return any(
            bound == package or bound.startswith(package + ".")
            for bound in self._all_bindings().values()
            for package in packages
        )

    def resolve(self, node: cst.BaseExpression) -> str | None:
        """The qualified name of a Name/Attribute chain whose head is imported."""
        name = dotted_name(node)
        if name is None:
            return None
        return self.resolve_dotted(name)

    def resolve_dotted(self, name: str) -> str | None:
        head, _, rest = name.partition(".")
        bound = self._bound(head)
        if bound is None:
            return None
        return f"{bound}.{rest}" if rest else bound

    def _bound(self, local: str) -> str | None:
        bound = self._bindings.get(local)
        if bound is None and self._star_imported:
            return STAR_IMPORTED_ALIASES.get(local)
        return bound

    def _all_bindings(self) -> dict[str, str]:
        if not self._star_imported:
            return self._bindings
        aliases = {k: v for k, v in STAR_IMPORTED_ALIASES.items() if k not in self._bindings}
        return {**self._bindings, **aliases}  # the file's own imports first

    def spelling(self, qualified: str) -> str | None:
        """How the file can write ``qualified``: ``torch.no_grad`` is ``torch.no_grad``
        after ``import torch``, ``no_grad`` after ``from torch import no_grad``."""
        bindings = self._all_bindings()
        for local, bound in bindings.items():
            if qualified == bound:
                return local
        for local, bound in bindings.items():
            if qualified.startswith(bound + "."):
                return local + qualified[len(bound) :]
        return None
