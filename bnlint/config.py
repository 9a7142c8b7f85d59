"""Configuration: ``[tool.bnlint]`` in pyproject.toml, overridden by CLI flags.

Selection works like ruff: a code is enabled when the longest prefix that
matches it comes from ``select``/``extend-select`` rather than ``ignore``.
"""

from __future__ import annotations

import fnmatch
import functools
import os
import re
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

from bnlint.rules import ALL_CODES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DEFAULT_EXCLUDE = (
    ".bzr",
    ".direnv",
    ".eggs",
    ".git",
    ".hg",
    ".ipynb_checkpoints",
    ".mypy_cache",
    ".nox",
    ".pytest_cache",
    ".ruff_cache",
    ".svn",
    ".tox",
    ".venv",
    "__pycache__",
    "__pypackages__",
    "_build",
    "build",
    "dist",
    "node_modules",
    "site-packages",
    "venv",
)

CODE_LISTS = ("select", "ignore", "extend-select")
PATTERN_LISTS = ("exclude", "extend-exclude")
KNOWN_KEYS = frozenset({*CODE_LISTS, *PATTERN_LISTS, "per-file-ignores"})


class ConfigError(Exception):
    """A usage or configuration mistake: reported in one line, exit code 2."""


@dataclass(frozen=True)
class Config:
    select: tuple[str, ...] = ("BNL",)
    ignore: tuple[str, ...] = ()
    extend_select: tuple[str, ...] = ()
    exclude: tuple[str, ...] = DEFAULT_EXCLUDE
    extend_exclude: tuple[str, ...] = ()
    per_file_ignores: tuple[tuple[str, tuple[str, ...]], ...] = ()
    # Directory that relative patterns are matched from (the pyproject's folder).
    root: Path = field(default_factory=Path.cwd)
    source: Path | None = None  # the file the settings came from

    def is_enabled(self, code: str, path: str | None = None) -> bool:
        ignored = self.ignore + (self._ignored_for(path) if path else ())
        best_select = max(
            (len(p) for p in self.select + self.extend_select if _matches(code, p)), default=-1
        )
        best_ignore = max((len(p) for p in ignored if _matches(code, p)), default=-1)
        return best_select >= 0 and best_select > best_ignore

    def _ignored_for(self, path: str) -> tuple[str, ...]:
        if not self.per_file_ignores:
            return ()  # the usual case: no path to resolve, once per rule and file
        relative = self.relative(path)
        codes: list[str] = []
        for pattern, pattern_codes in self.per_file_ignores:
            if _glob_match(relative, pattern, PurePosixPath(relative).name):
                codes.extend(pattern_codes)
        return tuple(codes)

    def relative(self, path: str) -> str:
        try:
            return Path(path).resolve().relative_to(self.root.resolve()).as_posix()
        except ValueError:
            return Path(path).as_posix()

    def is_excluded(self, path: str | Path) -> bool:
        """Discovery tests each directory on the way down, so a pattern without
        ``/`` only needs to match the last component (like .gitignore)."""
        name = os.path.basename(path)
        name_patterns, path_patterns = _split_patterns(self.exclude + self.extend_exclude)
        if name_patterns.match(os.path.normcase(name)):
            return True
        if not path_patterns:
            return False  # no path to resolve: most of discovery's time otherwise
        relative = self.relative(os.fspath(path))
        return any(_glob_match(relative, p, name) for p in path_patterns)

    def fingerprint(self) -> str:
        """A stable text of everything that changes results, for the cache key."""
        return repr((self.select, self.ignore, self.extend_select, self.per_file_ignores))


def _matches(code: str, prefix: str) -> bool:
    return prefix == "ALL" or code.startswith(prefix)


@functools.lru_cache(maxsize=16)
def _split_patterns(patterns: tuple[str, ...]) -> tuple[re.Pattern[str], tuple[str, ...]]:
    """The patterns of a name alone, as one regex (matched like ``fnmatch``), and
    the patterns of a path."""
    names = [os.path.normcase(p.rstrip("/")) for p in patterns if "/" not in p.rstrip("/")]
    regex = re.compile("|".join(fnmatch.translate(name) for name in names) or "(?!)")
    return regex, tuple(p for p in patterns if "/" in p.rstrip("/"))


def _glob_match(relative: str, pattern: str, name: str) -> bool:
    pattern = pattern.rstrip("/")
    if "/" not in pattern:
        return fnmatch.fnmatch(name, pattern)
    return fnmatch.fnmatch(relative, pattern.removeprefix("./")) or fnmatch.fnmatch(
        relative, pattern.removeprefix("./") + "/*"
    )


# -- loading ----------------------------------------------------------------


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml with a ``[tool.bnlint]`` table, from ``start`` up."""
    directory = start.resolve()
    if not directory.is_dir():
        directory = directory.parent
    for candidate in (directory, *directory.parents):
        pyproject = candidate / "pyproject.toml"
        if pyproject.is_file() and _bnlint_table(_read_toml(pyproject)) is not None:
            return pyproject
    return None


def _bnlint_table(pyproject: dict[str, Any]) -> Any:
    """``[tool.bnlint]`` of a parsed pyproject.toml, or None. A ``tool`` key that
    is not a table is another tool's mistake, not bnlint's configuration."""
    tool = pyproject.get("tool")
    return tool.get("bnlint") if isinstance(tool, dict) else None


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as error:
        raise ConfigError(f"cannot read {path}: {error.strerror}") from error
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not valid TOML: {error}") from error
    except RecursionError as error:  # tomllib recurses into nested arrays and tables
        raise ConfigError(f"{path} is not valid TOML: nested too deeply") from error


def load_config(path: Path | None) -> Config:
    """Settings from ``path`` (a pyproject.toml or a bnlint TOML file), or defaults."""
    if path is None:
        return Config()
    data = _read_toml(path)
    if path.name == "pyproject.toml":
        table = _bnlint_table(data)
        data = {} if table is None else table
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: [tool.bnlint] must be a table")
    return apply_settings(Config(root=path.parent.resolve(), source=path), data, str(path))


def apply_settings(config: Config, data: dict[str, Any], origin: str) -> Config:
    """Validate ``data`` (TOML keys, or CLI flags under the same names) onto ``config``."""
    unknown = sorted(set(data) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(f"{origin}: unknown option {', '.join(map(repr, unknown))}")
    changes: dict[str, Any] = {}
    for key in CODE_LISTS:
        if key in data:
            changes[key.replace("-", "_")] = validate_codes(
                _string_list(data[key], key, origin), origin
            )
    for key in PATTERN_LISTS:
        if key in data:
            changes[key.replace("-", "_")] = _string_list(data[key], key, origin)
    if "per-file-ignores" in data:
        changes["per_file_ignores"] = _per_file_ignores(data["per-file-ignores"], origin)
    return replace(config, **changes)


def _string_list(value: Any, key: str, origin: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ConfigError(f"{origin}: '{key}' must be a list of strings")
    return tuple(item.strip() for item in value if item.strip())


def _per_file_ignores(value: Any, origin: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: 'per-file-ignores' must be a table of pattern = [codes]")
    return tuple(
        (
            pattern,
            validate_codes(_string_list(codes, f"per-file-ignores.{pattern}", origin), origin),
        )
        for pattern, codes in value.items()
    )


def validate_codes(codes: tuple[str, ...], origin: str) -> tuple[str, ...]:
    for code in codes:
        if code != "ALL" and not any(known.startswith(code) for known in ALL_CODES):
            raise ConfigError(f"{origin}: unknown rule code or prefix '{code}'")
    return codes
