"""Fixture discovery shared by the tests: ``fixtures/<CODE>/{bad,good}_<name>``.

A case is a ``.py`` file or a folder (a small multi-file project). A bad case
has ``<case>.expected`` (the text output, paths relative to the case) and, when
any of its findings has a fix, ``bad_<name>.fixed.py`` with the fixed source.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"


@dataclass(frozen=True)
class Case:
    code: str
    path: Path

    @property
    def bad(self) -> bool:
        return self.path.name.startswith("bad_")

    @property
    def expected(self) -> Path:
        return self.path.with_name(self.path.name.removesuffix(".py") + ".expected")

    @property
    def fixed(self) -> Path:
        return self.path.with_name(self.path.name.removesuffix(".py") + ".fixed.py")

    def __str__(self) -> str:
        return f"{self.code}/{self.path.name}"


def cases() -> list[Case]:
    found = []
    for folder in sorted(FIXTURES.iterdir()):
        if not folder.is_dir():
            continue
        for path in sorted(folder.iterdir()):
            is_case = path.is_dir() or (
                path.suffix == ".py" and not path.name.endswith(".fixed.py")
            )
            if is_case and path.name.startswith(("bad_", "good_")):
                found.append(Case(folder.name, path))
    return found
