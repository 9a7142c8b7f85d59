"""``# noqa`` comments (flake8's spelling) and ``# bnlint: skip-file``."""

from __future__ import annotations

import re

# flake8's forms: a bare noqa comment, or one with codes after a colon, comma or space separated.
_NOQA = re.compile(
    r"#\s*noqa(?::[\s]?(?P<codes>[A-Z]+[0-9]+(?:[,\s]+[A-Z]+[0-9]+)*))?", re.IGNORECASE
)
_NOQA_CODES = re.compile(r"[A-Z]+[0-9]*", re.IGNORECASE)
_SKIP_FILE = re.compile(r"^[ \t]*#[ \t]*bnlint:[ \t]*skip-file\b", re.MULTILINE)

ALL = None  # a blanket noqa comment, without codes


def has_skip_file(text: str) -> bool:
    return "skip-file" in text and _SKIP_FILE.search(text) is not None


class NoqaMap:
    """For each line of a file, the codes its ``# noqa`` comment suppresses."""

    def __init__(self, text: str) -> None:
        self._lines = text.splitlines()
        self._cache: dict[int, frozenset[str] | bool | None] = {}

    def _codes_on(self, line: int) -> frozenset[str] | bool | None:
        if line not in self._cache:
            self._cache[line] = self._parse(line)
        return self._cache[line]

    def _parse(self, line: int) -> frozenset[str] | bool | None:
        if not 1 <= line <= len(self._lines) or "#" not in self._lines[line - 1]:
            return False
        match = _NOQA.search(self._lines[line - 1])
        if match is None:
            return False
        codes = match.group("codes")
        if not codes:
            return ALL
        return frozenset(code.upper() for code in _NOQA_CODES.findall(codes))

    def suppresses(self, code: str, lines: tuple[int, ...]) -> bool:
        for line in lines:
            codes = self._codes_on(line)
            if codes is ALL:
                return True
            if codes and any(code.startswith(prefix) for prefix in codes):
                return True
        return False
