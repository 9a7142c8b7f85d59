"""Reading source files exactly, so that a fixed file can be written back exactly.

The text keeps its newline characters; the encoding (BOM and coding cookie
included) is remembered for writing.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import os
import re
import stat
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class InputError(Exception):
    """Input bnlint cannot lint (BNL902): the message says why, and ``line`` and
    ``column`` (1-based) where, when that is known."""

    def __init__(self, message: str, line: int = 1, column: int = 1) -> None:
        super().__init__(message)
        self.line, self.column = line, column


class UnreadableSource(InputError):
    """The file cannot be read or decoded."""


@dataclass(frozen=True)
class SourceFile:
    text: str
    encoding: str  # "utf-8-sig" when the file starts with a BOM

    @property
    def newline(self) -> str:
        return newline_of(self.text)

    def encode(self, text: str) -> bytes:
        return text.encode(self.encoding)


@functools.lru_cache(maxsize=8)
def newline_of(text: str) -> str:
    """The newline style of ``text``; cached, as every fix of a file asks again."""
    for newline in ("\r\n", "\n", "\r"):
        if newline in text:
            return newline
    return "\n"


def read_source(path: Path) -> SourceFile:
    try:
        mode = path.stat().st_mode
    except FileNotFoundError as error:
        reason = "broken symbolic link" if path.is_symlink() else "no such file"
        raise UnreadableSource(f"cannot read file: {reason}") from error
    except OSError as error:
        raise UnreadableSource(f"cannot read file: {error.strerror}") from error
    if not stat.S_ISREG(mode):
        raise UnreadableSource("cannot read file: not a regular file")
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnreadableSource(f"cannot read file: {error.strerror or error}") from error
    return decode_source(data)


# Where a coding cookie may be, split at every newline Python accepts: a file
# may end its lines with "\r" alone, which ``BytesIO.readline`` does not see.
_FIRST_TWO_LINES = re.compile(rb"(?:[^\r\n]*(?:\r\n|\r|\n)?){0,2}")
# A coding cookie, as ``tokenize`` looks for one: ``# -*- coding: latin-1 -*-``.
_CODING_COOKIE = re.compile(rb"^[ \t\f]*#.*?coding[:=][ \t]*[-\w.]+", re.ASCII)


def decode_source(data: bytes) -> SourceFile:
    if b"\0" in data:
        raise UnreadableSource("binary content (null bytes): not a Python source file")
    first_lines = _FIRST_TWO_LINES.match(data).group().splitlines(keepends=True)  # type: ignore[union-attr]
    declared = any(_CODING_COOKIE.match(line) for line in first_lines)
    lines = iter(first_lines)
    try:
        encoding, _ = tokenize.detect_encoding(lambda: next(lines, b""))
    except SyntaxError as error:
        if declared:
            raise UnreadableSource(f"bad encoding declaration: {error.msg}") from error
        encoding = "utf-8"  # undeclared and not UTF-8: the decoding below says where
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line, column = _position_of_byte(data, error.start, encoding)
        hint = "" if declared else " (no coding cookie names another encoding)"
        raise UnreadableSource(
            f"cannot decode byte 0x{data[error.start]:02x} as {encoding}: {error.reason}{hint}",
            line,
            column,
        ) from error
    except (UnicodeError, LookupError) as error:  # a cookie naming rot13, base64, punycode...
        raise UnreadableSource(f"cannot decode as {encoding}: {error}") from error
    if text.startswith("\ufeff"):
        text = text[1:]  # detect_encoding says "utf-8-sig", but be sure
    return SourceFile(text, encoding)


def _position_of_byte(data: bytes, offset: int, encoding: str) -> tuple[int, int]:
    """The line and column of the character that starts at byte ``offset``; the
    bytes before it decode (they come before the first undecodable one)."""
    line_start = data.rfind(b"\n", 0, offset) + 1
    try:
        column = len(data[line_start:offset].decode(encoding)) + 1
    except (UnicodeError, LookupError):  # a multi-byte encoding that "\n" does not split
        column = offset - line_start + 1
    return data.count(b"\n", 0, offset) + 1, column


class NotWritten(OSError):
    """Why a fixed file was not written; the file on disk is as it was."""


def write_fixed(path: Path, original: SourceFile, text: str) -> None:
    """Replace the file ``path``, read as ``original``, with ``text`` in the same
    encoding. Refused with ``NotWritten`` when the file changed since it was
    read, or when its encoding would not write the untouched code back byte for
    byte (as ``unicode_escape`` would not): a fix must change nothing else."""
    try:
        data, expected = original.encode(text), original.encode(original.text)
    except (UnicodeError, LookupError) as error:
        raise NotWritten(f"cannot encode the fixed code as {original.encoding}: {error}") from error
    current = path.read_bytes()
    if current != expected:
        try:
            unchanged = decode_source(current).text == original.text
        except UnreadableSource:
            unchanged = False
        if unchanged:
            raise NotWritten(
                f"its encoding ({original.encoding}) would not write the rest back byte for byte"
            )
        raise NotWritten(CHANGED_WHILE_RUNNING)
    write_atomically(path, data, expected)


CHANGED_WHILE_RUNNING = "the file changed on disk while bnlint was running"


def write_atomically(path: Path, data: bytes, expected: bytes | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory
    and a rename, keeping the file's permissions and owner, and, through a
    symbolic link, the link. ``expected``: the bytes the file must still hold
    just before the rename. On any failure, an interrupt included, the original
    is untouched and the temporary file is removed; ``NotWritten`` says why."""
    path = Path(os.path.realpath(path))
    status = path.stat()
    # Root may write anything, but a file without write permission was made
    # read-only on purpose; and a rename would replace it regardless.
    if not os.access(path, os.W_OK) or not status.st_mode & _ANY_WRITE:
        raise NotWritten("the file is read-only")
    _remove_stale_temporaries(path)
    temporary = path.with_name(f"{_TEMPORARY_PREFIX.format(name=path.name)}{os.getpid()}.tmp")
    try:
        try:
            with open(temporary, "xb") as stream:
                stream.write(data)
                stream.flush()
                os.fsync(stream.fileno())
        except OSError as error:
            reason = error.strerror or str(error)
            raise NotWritten(f"cannot write a temporary file in its folder: {reason}") from error
        os.chmod(temporary, stat.S_IMODE(status.st_mode))
        _keep_owner(temporary, status)
        if expected is not None and path.read_bytes() != expected:
            raise NotWritten(CHANGED_WHILE_RUNNING)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


_TEMPORARY_PREFIX = ".{name}.bnlint-"
_ANY_WRITE = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH


def temporary_files(path: Path) -> list[Path]:
    """The temporary files ``write_atomically`` may have left beside ``path``."""
    pattern = glob.escape(_TEMPORARY_PREFIX.format(name=path.name)) + "*.tmp"
    return sorted(path.parent.glob(pattern))


def _remove_stale_temporaries(path: Path) -> None:
    """A run killed between writing its temporary file and the rename (SIGKILL,
    power loss) leaves that file behind: remove those of processes that are gone."""
    prefix = _TEMPORARY_PREFIX.format(name=path.name)
    for leftover in temporary_files(path):
        pid = leftover.name.removeprefix(prefix).removesuffix(".tmp")
        if pid.isdigit() and not _other_process_alive(int(pid)):
            leftover.unlink(missing_ok=True)


def _other_process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of an earlier process that had this id
    if os.name != "posix":
        return True  # os.kill(pid, 0) would end the process on Windows
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, another user's
    return True


def _keep_owner(temporary: Path, status: os.stat_result) -> None:
    """Root fixing a user's file must not hand it to root; others cannot chown."""
    if hasattr(os, "chown") and (status.st_uid, status.st_gid) != (os.getuid(), os.getgid()):
        with contextlib.suppress(PermissionError):
            os.chown(temporary, status.st_uid, status.st_gid)


_NEWLINE = re.compile(r"\r\n?|\n")


@functools.lru_cache(maxsize=8)
def line_starts(text: str) -> tuple[int, ...]:
    """Offset of the start of each line, splitting only where Python (and LibCST)
    does: form feeds and Unicode line separators do not end a line.

    Cached: every diagnostic and fix of a file asks for the same text's starts,
    and recomputing them each time made a file with many findings quadratic."""
    return (0, *(match.end() for match in _NEWLINE.finditer(text)))


def line_text(text: str, starts: Sequence[int], line: int) -> str:
    """Line ``line`` (1-based) without its newline."""
    end = starts[line] if line < len(starts) else len(text)
    return text[starts[line - 1] : end].rstrip("\r\n")
