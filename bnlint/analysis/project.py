"""The project index: what each file of a linted project tells the others.

Linting a file yields its ``FileFacts``: the summaries of its functions, its
nn.Module classes, and the project names its own result depended on. The CLI
builds a ``ProjectIndex`` from the facts of every file and re-lints a file
only when what its names hold in the index differs from what it was linted
with (its fingerprint). Facts are small plain data: they pickle to worker
processes and convert to JSON for a cache.

Re-linting is the costly part, so a file is only re-linted for what can change
its result: any fact about its dependencies when it is *sensitive* (it
evaluates, trains, exports, passes a need on or loops with autograd off), else only
summaries that create events in a caller (needs, training steps). Known gap:
a file that is not sensitive on its own and whose only model is an imported
project class with no other evidence of being a module is judged without
knowing that class.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import PurePath
from typing import Any

from bnlint.analysis.summaries import Summary

# Fingerprint of a result that used nothing from other files.
NO_DEPENDENCIES = ""
# Packages no linted project defines: their names are never looked up.
_OUTSIDE = frozenset({"torch", "torchvision", "numpy", *sys.stdlib_module_names})


def is_outside_project(qualified: str) -> bool:
    """``torch.optim.SGD``, ``os.path.join``: names of the standard library and torch."""
    return qualified.partition(".")[0] in _OUTSIDE


def module_name(path: str, package: str | None) -> str | None:
    """``pkg/engine.py`` in package ``pkg`` -> ``pkg.engine``; a script -> its stem."""
    pure = PurePath(path)
    if pure.suffix not in (".py", ".ipynb") or not pure.stem.isidentifier():
        return None
    if pure.stem == "__init__":
        return package
    return f"{package}.{pure.stem}" if package else pure.stem


@dataclass(frozen=True)
class FileFacts:
    module: str | None
    summaries: dict[str, Summary]  # qualified name -> summary, non-trivial ones only
    module_classes: frozenset[str]  # qualified names of the file's nn.Module classes
    classes: frozenset[str]  # qualified names of all its classes
    dependencies: frozenset[str]  # project names the file's result looked up
    fingerprint: str  # what those names held in the index the file was linted with
    # The file evaluates, trains, exports or passes needs on: every fact about its
    # dependencies may change its result. Otherwise only summaries that make events do.
    sensitive: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "module": self.module,
            "summaries": {name: s.to_json() for name, s in sorted(self.summaries.items())},
            "module_classes": sorted(self.module_classes),
            "classes": sorted(self.classes),
            "dependencies": sorted(self.dependencies),
            "fingerprint": self.fingerprint,
            "sensitive": self.sensitive,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FileFacts:
        return cls(
            data["module"],
            {name: Summary.from_json(s) for name, s in data["summaries"].items()},
            frozenset(data["module_classes"]),
            frozenset(data["classes"]),
            frozenset(data["dependencies"]),
            data["fingerprint"],
            bool(data["sensitive"]),
        )


class ProjectIndex:
    """Summaries and classes by qualified name, over every file of the project.
    A name that two files define (two scripts both called ``utils.py``) is
    ambiguous and left out: unknown is safer than wrong."""

    def __init__(self, facts: Iterable[FileFacts] = ()) -> None:
        self._summaries: dict[str, Summary] = {}
        self._classes: dict[str, bool] = {}  # qualified name -> is an nn.Module
        ambiguous: set[str] = set()
        seen_modules: set[str] = set()
        for file in facts:
            if file.module is None:
                continue
            if file.module in seen_modules:
                ambiguous.add(file.module)
            seen_modules.add(file.module)
            for name, summary in file.summaries.items():
                self._summaries[name] = summary
            for name in file.classes:
                self._classes[name] = name in file.module_classes
        if ambiguous:
            for table in (self._summaries, self._classes):
                for name in [n for n in table if _defined_in(n, ambiguous)]:
                    del table[name]

    def summary(self, name: str) -> Summary | None:
        return self._summaries.get(name)

    def is_module_class(self, name: str) -> bool | None:
        """True/False for a project class, None for a name the project does not define."""
        return self._classes.get(name)

    def fingerprint(self, names: Iterable[str], sensitive: bool = True) -> str:
        """A stable hash of what ``names`` hold in this index ("" if nothing): all
        of it for a ``sensitive`` file, else only the summaries that make events
        (re-linting a file its other facts cannot change is the costliest waste)."""
        held = []
        for name in sorted(set(names)):
            summary = self._summaries.get(name)
            is_module = self._classes.get(name) if sensitive else None
            if summary is not None and not (sensitive or summary.makes_events):
                summary = None
            if summary is not None or is_module is not None:
                held.append([name, summary.to_json() if summary else None, is_module])
        if not held:
            return NO_DEPENDENCIES
        text = json.dumps(held, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()

    def is_stale(self, facts: FileFacts) -> bool:
        """Was the file linted with other summaries than this index holds?"""
        return self.fingerprint(facts.dependencies, facts.sensitive) != facts.fingerprint


def _defined_in(name: str, modules: set[str]) -> bool:
    """Is ``name`` (``pkg.mod.Class.method``) inside one of ``modules``?"""
    prefix = name
    while "." in prefix:
        prefix = prefix.rpartition(".")[0]
        if prefix in modules:
            return True
    return False
