"""Faults while ``bnlint --fix`` writes: a read-only file or folder, a full disk,
a crash between the temporary file and the rename, Ctrl-C in the middle of a
run. In every case the original bytes are intact, no temporary file is left,
and stderr names the file not fixed and why.

Exit codes: a file that could not be written keeps its findings, so the run
exits 1 (problems); Ctrl-C exits 130 (128 + SIGINT) after saying which file it
stopped at.
"""

from __future__ import annotations

import errno
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

import bnlint.cli
import bnlint.source
from bnlint.cli import EXIT_INTERRUPTED, EXIT_PROBLEMS, main
from bnlint.source import temporary_files

BAD = b"import torch\nmodel.eval\n"
FIXED = b"import torch\nmodel.eval()\n"
FLAGS = ["--isolated", "--no-cache", "--jobs", "1", "--quiet", "--fix"]


@pytest.fixture
def bad_file(tmp_path: Path) -> Path:
    path = tmp_path / "train.py"
    path.write_bytes(BAD)
    return path


def fix(*paths: Path) -> tuple[int, str]:
    result = CliRunner().invoke(main, [*FLAGS, *map(str, paths)], catch_exceptions=False)
    return result.exit_code, result.stderr


def assert_not_fixed(path: Path, code: int, stderr: str, reason: str) -> None:
    assert path.read_bytes() == BAD
    assert temporary_files(path) == []
    assert f"bnlint: {path}: not fixed" in stderr and reason in stderr, stderr
    assert "Traceback" not in stderr
    assert code == EXIT_PROBLEMS


def fail_on_temporary(monkeypatch: pytest.MonkeyPatch, error: OSError) -> None:
    """Make opening a bnlint temporary file raise ``error``."""
    monkeypatch.setattr(bnlint.source, "open", _raise(error), raising=False)


class FullDisk(io.FileIO):
    """A file on a full disk: the open works, the write does not."""

    def write(self, data: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_read_only_file(bad_file: Path) -> None:
    bad_file.chmod(0o444)  # refused even for root, who could write it
    code, stderr = fix(bad_file)
    assert_not_fixed(bad_file, code, stderr, "the file is read-only")


def test_read_only_folder(bad_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if os.geteuid() == 0:  # root writes in a read-only folder: simulate the refusal
        fail_on_temporary(monkeypatch, PermissionError(errno.EACCES, "Permission denied"))
    bad_file.parent.chmod(0o555)
    try:
        code, stderr = fix(bad_file)
    finally:
        bad_file.parent.chmod(0o755)
    assert_not_fixed(bad_file, code, stderr, "cannot write a temporary file in its folder")
    assert "Permission denied" in stderr


@pytest.mark.parametrize("where", ["open", "write", "fsync"])
def test_full_disk(bad_file: Path, monkeypatch: pytest.MonkeyPatch, where: str) -> None:
    full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    if where == "open":
        fail_on_temporary(monkeypatch, full)
    elif where == "write":
        opened = lambda path, mode: FullDisk(path, mode.replace("b", ""))  # noqa: E731
        monkeypatch.setattr(bnlint.source, "open", opened, raising=False)
    else:  # the disk fills up as the data is flushed (quota, network file systems)
        monkeypatch.setattr(os, "fsync", _raise(full))
    code, stderr = fix(bad_file)
    assert_not_fixed(bad_file, code, stderr, "No space left on device")


def _raise(error: BaseException):  # type: ignore[no-untyped-def]
    def raising(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise error

    return raising


def test_rename_fails(bad_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "replace", _raise(OSError(errno.EIO, os.strerror(errno.EIO))))
    code, stderr = fix(bad_file)
    assert_not_fixed(bad_file, code, stderr, "Input/output error")


def test_leftover_of_a_killed_run_is_removed(bad_file: Path) -> None:
    """A run killed (SIGKILL) between the temporary file and the rename leaves
    it behind; the next run removes it, and keeps those of live processes."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], **_OUT)
    dead_pid = int(dead.stdout)
    leftover = bad_file.with_name(f".train.py.bnlint-{dead_pid}.tmp")
    leftover.write_bytes(b"half a fix")
    alive = bad_file.with_name(f".train.py.bnlint-{os.getppid()}.tmp")
    alive.write_bytes(b"another run's fix in progress")
    code, _ = fix(bad_file)
    assert bad_file.read_bytes() == FIXED
    assert temporary_files(bad_file) == [alive]
    assert code == 0


_OUT = {"capture_output": True, "text": True, "check": True}


def test_ctrl_c_in_the_middle_of_a_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    files = [tmp_path / f"file_{index:02}.py" for index in range(12)]
    for path in files:
        path.write_bytes(BAD)
    real = bnlint.source.write_atomically
    writes: list[Path] = []

    def interrupted_on_the_fifth(path: Path, *args, **kwargs):  # type: ignore[no-untyped-def]
        writes.append(path)
        if len(writes) == 5:
            # Between the temporary file and the rename: the worst moment.
            monkeypatch.setattr(os, "replace", _raise(KeyboardInterrupt()))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(bnlint.source, "write_atomically", interrupted_on_the_fifth)
    code, stderr = fix(tmp_path)
    contents = [path.read_bytes() for path in files]
    assert contents == [FIXED] * 4 + [BAD] * 8
    assert not any(temporary_files(path) for path in files)
    stopped = f"bnlint: interrupted: {files[4]} was not fixed (it is unchanged); 7 later files"
    assert stopped in stderr, stderr
    assert code == EXIT_INTERRUPTED


def test_ctrl_c_while_linting_exits_130_without_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "model.py").write_bytes(BAD)
    monkeypatch.setattr(bnlint.cli, "lint_files", _raise(KeyboardInterrupt()))
    result = CliRunner().invoke(bnlint.cli.main, [str(tmp_path)])
    assert (result.exit_code, result.stderr) == (EXIT_INTERRUPTED, "bnlint: interrupted\n")
    assert "130" in (bnlint.cli.__doc__ or "")
