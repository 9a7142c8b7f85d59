"""Reading source files exactly, so that a fixed file can be written back exactly.

The text keeps its newline characters; the encoding (BOM and coding cookie
included) is remembered for writing.
"""

from __future__ import annotations

import functools
import io
import os
import re
import stat
import tokenize
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path


class UnreadableSource(Exception):
    """The file cannot be read or decoded; the message says why (BNL902)."""


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


def decode_source(data: bytes) -> SourceFile:
    if b"\0" in data:
        raise UnreadableSource("binary content (null bytes): not a Python source file")
    try:
        encoding, _ = tokenize.detect_encoding(io.BytesIO(data).readline)
    except SyntaxError as error:
        raise UnreadableSource(f"bad encoding declaration: {error.msg}") from error
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError as error:
        line = data[: error.start].count(b"\n") + 1
        raise UnreadableSource(
            f"cannot decode as {encoding} (line {line}, byte {error.start}): {error.reason}"
        ) from error
    if text.startswith("\ufeff"):
        text = text[1:]  # detect_encoding says "utf-8-sig", but be sure
    return SourceFile(text, encoding)


def write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory
    and a rename, keeping the file's permissions. On any failure the original is
    untouched and the temporary file is removed."""
    mode = stat.S_IMODE(path.stat().st_mode)
    temporary = path.with_name(f".{path.name}.bnlint-{os.getpid()}.tmp")
    try:
        with open(temporary, "xb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, mode)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


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
