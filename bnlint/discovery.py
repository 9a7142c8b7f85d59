"""Which files to lint: recursive discovery with excludes; named files always count."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from bnlint.config import Config

SOURCE_SUFFIXES = (".py", ".pyi", ".ipynb")


def discover(
    paths: Iterable[Path], config: Config, suffixes: tuple[str, ...] = SOURCE_SUFFIXES
) -> list[Path]:
    """Files under ``paths``, sorted, without duplicates. A file named on the
    command line is always included, whatever its name or the excludes."""
    found: dict[str, Path] = {}
    for path in paths:
        if path.is_dir():
            for file in _walk(path, config, suffixes):
                found.setdefault(os.path.normpath(file), file)
        else:
            found.setdefault(os.path.normpath(path), path)
    return [found[key] for key in sorted(found)]


def _walk(root: Path, config: Config, suffixes: tuple[str, ...]) -> Iterator[Path]:
    # Plain strings until a file is found: Path joins cost more than the walk.
    join = os.path.join
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(
            name
            for name in subdirectories
            if not config.is_excluded(join(directory, name))
            and not os.path.exists(join(directory, name, "pyvenv.cfg"))
        )
        for name in sorted(files):
            if name.endswith(suffixes) and not config.is_excluded(file := join(directory, name)):
                yield Path(file)
