"""The per-file result cache: an unchanged file is re-linted without parsing.

A file's result depends on bnlint itself, the effective configuration, the
file's path and package, its text, and (with the project index) the summaries
of the other files it uses. The first three name the file's *slot*, one entry
file in the cache folder; the entry records the text's hash, the dependency
fingerprint and the file's project facts, and is only reused when the text
matches and the fingerprint does (checked here, or by the caller against the
project index it builds from every file's facts).

To avoid even reading the file, an entry also records the file's stat
signature (mtime, ctime, size, inode) taken before the file was read: when it
is unchanged the entry is used as it is, otherwise the file is read and
hashed. A file modified in the last two seconds gets no signature, because a
second change within the same timestamp tick would not show in its mtime.

A run over the same files also leaves one *run entry*: every file's stat
signature and final diagnostics. When no signature has changed, the next run
over those files reads that entry alone: no per-file entries, no project
index. Any changed, new or recent file, and it is not used.

Entries are written to a temporary file and renamed, so a reader sees a whole
old entry or a whole new one, and carry a checksum of their body: anything
unreadable, truncated or malformed is a miss, never an error.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import libcst

import bnlint
from bnlint.config import Config
from bnlint.diagnostic import Diagnostic, Edit, Fix, Severity
from bnlint.source import SourceFile, UnreadableSource, read_source

CACHE_DIR_NAME = ".bnlint_cache"
# https://bford.info/cachedir/: backup tools skip folders holding this file.
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by bnlint.\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)
_MAGIC = b"bnlint-cache 1\n"  # bump the number when the entry format changes
_DIGEST_LENGTH = 64  # hex sha256
# Coarse filesystem timestamps (FAT has 2 s) hide a second change this soon after a first.
_RECENT_NS = 2_000_000_000

Signature = tuple[int, int, int, int]
RUN_ENTRY_PREFIX = "run-"  # per-file entries are named by a bare hash


class Uncacheable(Exception):
    """A diagnostic holds a value the entry format cannot store exactly."""


@dataclass(frozen=True)
class Slot:
    """Where one file's entry lives, and what the file looked like before it was read."""

    name: str
    signature: Signature | None  # None: the file is too new (or gone) to trust its stat
    dependencies: str
    facts: dict[str, Any] | None = None  # what the file tells the project index (JSON)


def default_cache_dir(config: Config) -> Path:
    """``.bnlint_cache`` in the project root: the config file's folder, else the
    current directory (both are ``config.root``)."""
    return config.root / CACHE_DIR_NAME


def open_cache(directory: Path, config: Config) -> ResultCache | None:
    """The cache in ``directory`` (created, tagged and git-ignored if new), or None
    if it cannot be created: a read-only checkout is linted without a cache."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for name, text in ((".gitignore", "*\n"), ("CACHEDIR.TAG", CACHEDIR_TAG)):
            if not (directory / name).exists():
                (directory / name).write_text(text)
        cache = ResultCache(directory, config)
        cache.folder.mkdir(exist_ok=True)
    except OSError:
        return None
    return cache


def clear_cache(directory: Path) -> bool:
    """Delete ``directory`` if it is a bnlint cache (it holds our CACHEDIR.TAG), so
    a mistyped ``--cache-dir`` never deletes anything else. True if deleted."""
    tag = directory / "CACHEDIR.TAG"
    try:
        if tag.read_text() != CACHEDIR_TAG:
            return False
    except (OSError, UnicodeDecodeError):
        return False
    shutil.rmtree(directory)
    return True


class ResultCache:
    """The entries of one bnlint build and one effective configuration."""

    def __init__(self, directory: Path, config: Config) -> None:
        self.folder = directory / bnlint.__version__
        namespace = "\0".join((_build_fingerprint(), config.fingerprint(), str(config.root)))
        self._namespace = namespace.encode("utf-8", "surrogatepass")
        # Plain strings: a warm run does little else than join them, thousands of times.
        self._folder = os.fspath(self.folder)
        self._cwd = os.getcwd()

    def lookup(
        self, path: Path, package: str | None, dependencies: str | None = ""
    ) -> tuple[list[Diagnostic] | None, Slot]:
        """The cached diagnostics of ``path`` (None on a miss), and the slot to
        ``store`` a fresh result in. ``package`` is the dotted package the file is
        linted as; ``dependencies`` fingerprints what it used of other files.
        With ``dependencies=None`` any fingerprint matches, and a hit's slot
        carries the stored one and the file's project facts: the caller checks
        them against the project index."""
        slot = Slot(self._slot_name(path, package), _signature(path), dependencies or "")
        entry = self._read(slot.name, _is_entry)
        if entry is None or dependencies not in (None, entry["dependencies"]):
            return None, slot
        if slot.signature is None or entry["signature"] != list(slot.signature):
            try:
                content = content_hash(read_source(path))
            except UnreadableSource:
                return None, slot
            if content != entry["content"]:
                return None, slot
            if slot.signature is not None:  # remember the new stat: next time, no read
                self._write(slot.name, {**entry, "signature": list(slot.signature)})
        if dependencies is None:
            slot = replace(slot, dependencies=entry["dependencies"], facts=entry.get("facts"))
        try:
            return [decode_diagnostic(item) for item in entry["diagnostics"]], slot
        except (KeyError, TypeError, ValueError):
            return None, slot

    def lookup_run(
        self, files: list[Path], packages: list[str | None]
    ) -> list[list[Diagnostic]] | None:
        """Each file's diagnostics from the last run over exactly ``files``, if no
        file has changed since (by its stat signature); else None."""
        entry = self._read(self._run_name(files, packages), _is_run_entry)
        if entry is None or len(entry["signatures"]) != len(files):
            return None
        for path, stored in zip(files, entry["signatures"], strict=True):
            signature = _signature(path)
            if signature is None or list(signature) != stored:
                return None
        found: list[list[Diagnostic]] = [[] for _ in files]
        try:
            for index, encoded in entry["diagnostics"]:
                found[index] = [decode_diagnostic(item) for item in encoded]
        except (KeyError, TypeError, ValueError, IndexError):
            return None
        return found

    def store_run(
        self,
        files: list[Path],
        packages: list[str | None],
        signatures: list[Signature | None],
        diagnostics: list[list[Diagnostic]],
    ) -> None:
        """Record a run's final result; not if a file's signature cannot be trusted."""
        if None in signatures:
            return
        try:
            encoded = [
                [index, [encode_diagnostic(d) for d in found]]
                for index, found in enumerate(diagnostics)
                if found
            ]
        except Uncacheable:
            return
        entry = {"signatures": [list(s) for s in signatures if s], "diagnostics": encoded}
        self._write(self._run_name(files, packages), entry)

    def store(self, slot: Slot, source: SourceFile, diagnostics: list[Diagnostic]) -> None:
        """Record ``diagnostics`` as the result of ``source`` (the text read after
        ``slot`` was looked up). Results that cannot be stored exactly are not."""
        try:
            encoded = [encode_diagnostic(d) for d in diagnostics]
        except Uncacheable:
            return
        entry = {
            "content": content_hash(source),
            "dependencies": slot.dependencies,
            "signature": list(slot.signature) if slot.signature else None,
            "diagnostics": encoded,
            "facts": slot.facts,
        }
        self._write(slot.name, entry)

    def _slot_name(self, path: Path, package: str | None) -> str:
        # The shown path, and the file it means (a relative path depends on the cwd).
        where = f"{os.path.join(self._cwd, path)}\0{path}\0{package or ''}"
        return hashlib.sha256(
            self._namespace + b"\0" + where.encode("utf-8", "surrogatepass")
        ).hexdigest()

    def _run_name(self, files: list[Path], packages: list[str | None]) -> str:
        # The shown paths, and the folder they are relative to.
        digest = hashlib.sha256(self._namespace + b"\0" + os.fsencode(self._cwd))
        for path, package in zip(files, packages, strict=True):
            digest.update(f"\0{path}\0{package or ''}".encode("utf-8", "surrogatepass"))
        return f"{RUN_ENTRY_PREFIX}{digest.hexdigest()}"

    def _read(self, name: str, valid: Callable[[Any], bool]) -> dict[str, Any] | None:
        try:
            with open(os.path.join(self._folder, name), "rb") as entry:
                data = entry.read()
        except OSError:
            return None
        body_start = len(_MAGIC) + _DIGEST_LENGTH + 1
        digest, body = data[len(_MAGIC) : body_start - 1], data[body_start:]
        if (
            not data.startswith(_MAGIC)
            or data[body_start - 1 : body_start] != b"\n"
            or hashlib.sha256(body).hexdigest().encode() != digest
        ):
            return None
        try:
            entry = json.loads(body)
        except ValueError:
            return None
        return entry if valid(entry) else None

    def _write(self, name: str, entry: dict[str, Any]) -> None:
        body = json.dumps(entry, separators=(",", ":")).encode()
        data = _MAGIC + hashlib.sha256(body).hexdigest().encode() + b"\n" + body
        # Unique per writer, so two runs never write into the same temporary file.
        temporary = self.folder / f"{name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
        try:
            temporary.write_bytes(data)
            os.replace(temporary, self.folder / name)
        except OSError:  # a full disk or a vanished folder costs a miss next time
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)


def content_hash(source: SourceFile) -> str:
    """The hash of what linting sees: the decoded text, and the encoding fixes write back."""
    digest = hashlib.sha256(source.encoding.encode() + b"\0")
    digest.update(source.text.encode("utf-8", "surrogatepass"))
    return digest.hexdigest()


def _signature(path: Path) -> Signature | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    if time.time_ns() - stat.st_mtime_ns < _RECENT_NS:
        return None
    return (stat.st_mtime_ns, stat.st_ctime_ns, stat.st_size, stat.st_ino)


def _build_fingerprint() -> str:
    """bnlint's version, plus the size and mtime of its own modules (so an edited
    rule in a source checkout never reuses the old rule's results), and of the
    Python and LibCST it runs on (their parsers decide syntax errors)."""
    parts = [bnlint.__version__, sys.version]
    package = Path(bnlint.__file__).parent
    for module in [Path(libcst.__file__), *sorted(package.rglob("*.py"))]:
        stat = module.stat()
        parts.append(f"{module}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


def _is_run_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("signatures"), list)
        and isinstance(entry.get("diagnostics"), list)
    )


def _is_entry(entry: Any) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("content"), str)
        and isinstance(entry.get("dependencies"), str)
        and isinstance(entry.get("diagnostics"), list)
        and (entry.get("signature") is None or isinstance(entry["signature"], list))
    )


# -- diagnostics as JSON, exactly ---------------------------------------------------


def encode_diagnostic(diagnostic: Diagnostic) -> list[Any]:
    fix = diagnostic.fix
    return [
        diagnostic.path,
        diagnostic.line,
        diagnostic.column,
        diagnostic.end_line,
        diagnostic.end_column,
        diagnostic.code,
        diagnostic.name,
        diagnostic.message,
        diagnostic.severity.value,
        None if fix is None else [fix.safe, fix.description, [_edit_fields(e) for e in fix.edits]],
        _to_plain(diagnostic.extra),
    ]


def decode_diagnostic(item: list[Any]) -> Diagnostic:
    path, line, column, end_line, end_column, code, name, message, severity, fix, extra = item
    if fix is not None:
        safe, description, edits = fix
        fix = Fix(tuple(Edit(*edit) for edit in edits), safe, description)
    return Diagnostic(
        path,
        line,
        column,
        end_line,
        end_column,
        code,
        name,
        message,
        Severity(severity),
        fix,
        _from_plain(extra),
    )


def _edit_fields(edit: Edit) -> list[Any]:
    return [edit.line, edit.column, edit.end_line, edit.end_column, edit.content]


_SCALARS = (str, int, float, bool, type(None))


def _to_plain(value: Any) -> Any:
    """JSON for ``extra`` values that decodes to equal values of the same types:
    tuples and dicts are tagged, since JSON would turn a tuple into a list."""
    if type(value) in _SCALARS:
        return value
    if type(value) is list:
        return [_to_plain(item) for item in value]
    if type(value) is tuple:
        return {"tuple": [_to_plain(item) for item in value]}
    if type(value) is dict and all(type(key) is str for key in value):
        return {"dict": [[key, _to_plain(item)] for key, item in value.items()]}
    raise Uncacheable(f"cannot cache a {type(value).__name__}")


def _from_plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_from_plain(item) for item in value]
    if isinstance(value, dict):
        if "tuple" in value:
            return tuple(_from_plain(item) for item in value["tuple"])
        return {key: _from_plain(item) for key, item in value["dict"]}
    return value
