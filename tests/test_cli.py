"""The command line's contracts: output, exit codes, selection, stdin, fixes."""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnlint import cli
from bnlint.cli import main
from tests.conftest import BAD_MODEL

EXPECTED_TEXT = [
    "model.py:8:16: BNL201 `F.dropout` without `training=` defaults to `training=True` and "
    "stays on after `model.eval()`; pass `training=self.training`",
    "model.py:12:1: BNL004 `model.eval` without a call does nothing: `model` is not "
    "switched to evaluation mode; write `model.eval()`",
]


def run(*args: str, input: str | bytes | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


def test_text_output_and_exit_code(project: Path) -> None:
    result = run("model.py")
    assert result.exit_code == 1
    assert result.output.splitlines() == [
        *EXPECTED_TEXT,
        "Found 2 problems (2 fixable with --fix).",
    ]


def test_no_path_lints_current_directory(project: Path) -> None:
    result = run()
    assert result.exit_code == 1
    assert result.output.splitlines()[:2] == EXPECTED_TEXT


def test_explicit_check_subcommand(project: Path) -> None:
    assert run("check", "model.py").output == run("model.py").output


def test_clean_file_exits_zero(project: Path) -> None:
    (project / "clean.py").write_text("import torch\n\nx = torch.zeros(3)\n")
    result = run("clean.py")
    assert (result.exit_code, result.output) == (0, "All checks passed!\n")


def test_missing_path_is_usage_error(project: Path) -> None:
    result = run("nope.py")
    assert result.exit_code == 2
    assert "path does not exist: nope.py" in result.output


@pytest.mark.parametrize(
    ("flags", "codes"),
    [
        (["--select", "BNL2"], {"BNL201"}),
        (["--ignore", "BNL201"], {"BNL004"}),
        (["--select", "BNL004,BNL201"], {"BNL004", "BNL201"}),
        (["--ignore", "BNL", "--extend-select", "BNL004"], {"BNL004"}),
        (["--select", "BNL", "--ignore", "BNL2"], {"BNL004"}),
    ],
)
def test_selection_by_code_and_prefix(project: Path, flags: list[str], codes: set[str]) -> None:
    result = run("--format", "json", *flags, "model.py")
    assert {item["code"] for item in json.loads(result.output)} == codes


def test_unknown_code_is_usage_error(project: Path) -> None:
    result = run("--select", "BNL999", "model.py")
    assert result.exit_code == 2
    assert "BNL999" in result.output


def test_json_fields(project: Path) -> None:
    result = run("--format", "json", "model.py")
    items = json.loads(result.output)
    assert result.exit_code == 1
    first = items[0]
    required = {"path", "line", "column", "end_line", "end_column", "code", "name", "message"}
    assert required | {"severity", "fix"} <= set(first)
    assert (first["line"], first["column"], first["code"]) == (8, 16, "BNL201")
    assert first["fix"]["safe"] is True
    edit = first["fix"]["edits"][0]
    assert edit == {
        "line": 8,
        "column": 32,
        "end_line": 8,
        "end_column": 32,
        "content": ", training=self.training",
    }


def test_exit_zero_statistics_quiet(project: Path) -> None:
    result = run("--exit-zero", "--statistics", "model.py")
    assert result.exit_code == 0
    assert "1      BNL004  mode-call-missing-parens" in result.output
    quiet = run("--quiet", "model.py")
    assert quiet.output.splitlines() == EXPECTED_TEXT


def test_show_source_puts_caret_under_column(project: Path) -> None:
    lines = run("--show-source", "model.py").output.splitlines()
    index = lines.index(EXPECTED_TEXT[0])
    assert lines[index + 1] == "            return F.dropout(x, 0.1)"
    assert lines[index + 2] == "    " + " " * 15 + "^"


def test_colour_only_on_a_terminal_and_never_with_no_color(project: Path) -> None:
    assert "\033[" not in run("model.py").output  # CliRunner is not a terminal
    pty = pytest.importorskip("pty")
    for env, coloured in (({}, True), ({"NO_COLOR": "1"}, False)):
        primary, secondary = pty.openpty()
        subprocess.run(
            [sys.executable, "-m", "bnlint", "model.py"],
            stdout=secondary,
            env={**os.environ, **env},
            cwd=project,
            timeout=60,
        )
        os.close(secondary)
        output = os.read(primary, 65536).decode()
        os.close(primary)
        assert ("\033[" in output) is coloured


def test_stdin_with_filename(project: Path) -> None:
    result = run("--stdin-filename", "pkg/model.py", "-", input=BAD_MODEL)
    assert result.exit_code == 1
    assert result.output.splitlines()[0].startswith("pkg/model.py:8:16: BNL201")


def test_stdin_fix_prints_fixed_code(project: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bnlint", "--fix", "-"],
        input=BAD_MODEL,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0
    assert "F.dropout(x, 0.1, training=self.training)" in proc.stdout
    assert proc.stdout.endswith("model.eval()\n")
    assert "Fixed 2 problems, 0 remaining." in proc.stderr


def test_diff_writes_nothing(project: Path) -> None:
    before = (project / "model.py").read_bytes()
    result = run("--diff", "model.py")
    assert result.exit_code == 1
    assert "+        return F.dropout(x, 0.1, training=self.training)" in result.output
    assert (project / "model.py").read_bytes() == before


def test_fix_applies_and_reports(project: Path) -> None:
    result = run("--fix", "model.py")
    assert result.exit_code == 0
    assert result.output.splitlines()[-1] == "Fixed 2 problems, 0 remaining."
    text = (project / "model.py").read_text()
    assert "F.dropout(x, 0.1, training=self.training)" in text
    assert run("model.py").exit_code == 0
    assert run("--diff", "model.py").exit_code == 0


def test_fix_keeps_crlf_bom_encoding_and_mode(project: Path) -> None:
    path = project / "model.py"
    path.write_bytes(b"\xef\xbb\xbf" + BAD_MODEL.replace("\n", "\r\n").encode())
    path.chmod(0o640)
    assert run("--fix", "model.py").exit_code == 0
    data = path.read_bytes()
    assert data.startswith(b"\xef\xbb\xbf")
    assert data.count(b"\r\n") == BAD_MODEL.count("\n") and b"\n" not in data.replace(b"\r\n", b"")
    assert (path.stat().st_mode & 0o777) == 0o640


def test_fix_keeps_latin1_with_cookie(project: Path) -> None:
    path = project / "latin.py"
    source = "# -*- coding: latin-1 -*-\n# caf\xe9\n" + BAD_MODEL
    path.write_bytes(source.encode("latin-1"))
    assert run("--fix", "latin.py").exit_code == 0
    assert path.read_bytes().decode("latin-1").startswith("# -*- coding: latin-1 -*-\n# caf\xe9\n")


def test_file_without_fixes_is_untouched(project: Path) -> None:
    path = project / "clean.py"
    path.write_text("import torch\n")
    os.utime(path, (1_000_000, 1_000_000))
    assert run("--fix", "clean.py").exit_code == 0
    assert path.stat().st_mtime == 1_000_000


def test_version_and_module_entry_point(project: Path) -> None:
    assert "bnlint, version" in run("--version").output
    proc = subprocess.run(
        [sys.executable, "-m", "bnlint", "model.py"], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 1 and proc.stdout.splitlines()[:2] == EXPECTED_TEXT


def test_rules_and_explain() -> None:
    listing = run("rules").output
    assert "BNL201  functional-dropout-always-on" in listing
    doc = run("explain", "BNL201")
    assert doc.exit_code == 0
    for heading in ("## What it does", "## Why is this bad?", "## Known problems", "## Fix safety"):
        assert heading in doc.output
    assert run("explain", "BNL999").exit_code == 2


def test_problems_with_the_input_are_documented_too() -> None:
    """A user who meets BNL901 in the output can look it up like any rule."""
    assert "BNL901  syntax-error" in run("rules").output
    doc = run("explain", "bnl901")
    assert doc.exit_code == 0 and "## Known problems" in doc.output
    assert "## Example" in doc.output  # from fixtures/BNL901
    assert run("explain", "BNL902").exit_code == 0


def test_the_command_exits_without_a_last_walk_over_the_heap(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    pyproject = (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    assert 'bnlint = "bnlint.cli:run"' in pyproject
    monkeypatch.setattr(sys, "argv", ["bnlint", "--version"])
    try:
        with pytest.raises(SystemExit) as exited:
            cli.run()
        assert exited.value.code == 0 and "bnlint" in capsys.readouterr().out
        assert gc.get_freeze_count() > 0  # Python's shutdown collection skips it all
    finally:
        gc.unfreeze()
