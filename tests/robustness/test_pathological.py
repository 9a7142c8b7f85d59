"""Pathological files through the real command line, in a subprocess with a
timeout: each gives findings or a BNL901/BNL902 line in bounded time, never a
traceback. Then races with the file system, in-process: a file that changes
between lint and fix, and one deleted between discovery and reading.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

import bnlint.cli
from bnlint.cli import main

# A finding (BNL004, fixable) the valid inputs below all end with, so that a
# run that reads the whole file has something to say.
TAIL = "import torch\nmodel.eval\n"
FINDING = "BNL004"
FLAGS = ["--isolated", "--no-cache", "--jobs", "1"]


def nested(opening: str, closing: str, depth: int) -> str:
    return f"x = {opening * depth}1{closing * depth}\n{TAIL}"


# name -> (file text, what the output must hold, seconds allowed)
CASES: dict[str, tuple[str, str, float]] = {
    "parentheses_5000": (nested("(", ")", 5000), "BNL901", 30),
    "brackets_5000": (nested("[", "]", 5000), "BNL901", 30),
    "braces_and_calls_3000": (f"x = {'f({' * 3000}{'})' * 3000}\n{TAIL}", "BNL901", 30),
    "unary_minus_100000": (f"{TAIL}x = {'-' * 100_000}1\n", "BNL901", 30),
    "not_50000": (f"{TAIL}x = {'not ' * 50_000}1\n", "BNL901", 30),
    "await_chain_20000": (f"{TAIL}async def f():\n    {'await ' * 20_000}x\n", "BNL901", 30),
    # Deep, but within Python's limits: the analysis itself must cope.
    "parentheses_190": (nested("(", ")", 190), FINDING, 30),
    "unary_minus_190": (f"{TAIL}x = {'-' * 190}1\n", FINDING, 30),
    "if_99_deep": (
        TAIL + "".join(f"{'    ' * i}if x{i}:\n" for i in range(99)) + "    " * 99 + "pass\n",
        FINDING,
        30,
    ),
    "binary_chain_50000": (f"{TAIL}x = {' + '.join(['a'] * 50_000)}\n", "BNL901", 30),
    "attribute_chain_50000": (f"{TAIL}x = a{'.b' * 50_000}\n", "BNL901", 30),
    "string_line_1mb": (f"{TAIL}x = '{'a' * 1_000_000}'\n", FINDING, 30),
    "comment_line_1mb": (f"{TAIL}# {'model.eval ' * 90_000}\n", FINDING, 30),
    "list_line_100kb": (f"{TAIL}x = [{'1, ' * 33_000}]\n", FINDING, 60),
    "lines_50000": ("".join(f"x{i} = {i}\n" for i in range(50_000)) + TAIL, FINDING, 120),
    "null_bytes": (f"{TAIL}x = 1\0\n", "BNL902", 30),
    "tabs_then_spaces": (f"{TAIL}if x:\n\tif y:\n        pass\n", "BNL901", 30),
    "form_feeds": (f"\f{TAIL}\f\nif x:\n\f    pass\n", FINDING, 30),
    "form_feed_in_block": (f"{TAIL}if x:\n    \fpass\n", "BNL901", 30),
    "carriage_returns_only": (TAIL.replace("\n", "\r") + "if x:\r    pass\r", FINDING, 30),
    "lone_carriage_return_in_line": (f"{TAIL}x = 1\rif x:\r\n    pass\n", FINDING, 30),
    "invalid_utf8": (f"{TAIL}x = 'caf\udce9'\n", "BNL902", 30),
}


def run_bnlint(path: Path, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bnlint", *FLAGS, *args, str(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("name", list(CASES))
def test_pathological_file(tmp_path: Path, name: str) -> None:
    text, expected, timeout = CASES[name]
    path = tmp_path / f"{name}.py"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    result = run_bnlint(path, timeout=timeout)
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "internal error" not in output, output[-2000:]
    assert result.returncode == 1, output[-2000:]
    assert f" {expected} " in result.stdout, output[-2000:]


@pytest.mark.parametrize("name", ["form_feeds", "carriage_returns_only", "string_line_1mb"])
def test_pathological_file_fixes(tmp_path: Path, name: str) -> None:
    """--fix on odd layouts writes a file that parses, keeps its line endings,
    and touches nothing but the fixed line."""
    text, _, timeout = CASES[name]
    path = tmp_path / f"{name}.py"
    path.write_bytes(text.encode())
    result = run_bnlint(path, "--fix", timeout=timeout)
    assert "Traceback" not in result.stdout + result.stderr
    fixed = path.read_bytes().decode()
    compile(fixed, str(path), "exec")
    before, after = text.splitlines(keepends=True), fixed.splitlines(keepends=True)
    assert len(before) == len(after)
    changed = [(old, new) for old, new in zip(before, after, strict=True) if old != new]
    assert all(new.rstrip("\r\n") == old.rstrip("\r\n") + "()" for old, new in changed), changed
    endings = [
        (old[len(old.rstrip("\r\n")) :], new[len(new.rstrip("\r\n")) :]) for old, new in changed
    ]
    assert all(old == new for old, new in endings), endings


# -- the file system changing under a run ----------------------------------------


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, [*FLAGS, *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def after_linting(monkeypatch: pytest.MonkeyPatch, action: Callable[[], None]) -> None:
    """Run ``action`` once the CLI has linted, before it fixes."""
    real = bnlint.cli.lint_files

    def lint_then_act(*args, **kwargs):  # type: ignore[no-untyped-def]
        results = real(*args, **kwargs)
        action()
        return results

    monkeypatch.setattr(bnlint.cli, "lint_files", lint_then_act)


def test_file_rewritten_between_lint_and_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "train.py"
    path.write_text(TAIL)
    edited = TAIL + "# saved by the editor meanwhile\n"
    after_linting(monkeypatch, lambda: path.write_text(edited))
    code, _, stderr = invoke("--fix", str(path))
    assert path.read_text() == edited
    assert f"{path}: not fixed" in stderr and "changed on disk" in stderr, stderr
    assert code == 1


def test_file_rewritten_while_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The read sees one version, the disk holds another by the time of the write."""
    path = tmp_path / "train.py"
    path.write_text(TAIL)
    real_read = Path.read_bytes
    reads: list[Path] = []

    def read_then_edit(self: Path) -> bytes:
        data = real_read(self)
        if self == path and not reads:
            reads.append(self)
            self.write_text("model.eval()\n")  # the editor saves just after our read
        return data

    monkeypatch.setattr(Path, "read_bytes", read_then_edit)
    code, _, stderr = invoke("--fix", str(path))
    assert real_read(path) == b"model.eval()\n"
    assert "changed on disk" in stderr, stderr
    assert code == 1


def test_file_deleted_between_lint_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "train.py"
    path.write_text(TAIL)
    after_linting(monkeypatch, path.unlink)
    code, _, stderr = invoke("--fix", str(path))
    assert not path.exists()
    assert f"{path}: not fixed" in stderr and "No such file" in stderr, stderr
    assert code == 1


def test_file_deleted_between_discovery_and_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kept, gone = tmp_path / "kept.py", tmp_path / "gone.py"
    kept.write_text(TAIL)
    gone.write_text(TAIL)
    real = bnlint.cli.discover

    def discover_then_delete(*args, **kwargs):  # type: ignore[no-untyped-def]
        files = real(*args, **kwargs)
        gone.unlink()
        return files

    monkeypatch.setattr(bnlint.cli, "discover", discover_then_delete)
    code, stdout, stderr = invoke(str(tmp_path))
    assert f"{gone}:1:1: BNL902 cannot read file: no such file" in stdout, stdout + stderr
    assert f"{kept}:2:1: {FINDING}" in stdout
    assert code == 1
