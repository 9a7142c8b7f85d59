"""[tool.bnlint] discovery and validation, CLI overrides, excludes, per-file-ignores."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from bnlint.cli import main
from tests.conftest import BAD_MODEL


def codes(*args: str) -> set[tuple[str, str]]:
    result = CliRunner().invoke(main, ["--format", "json", *args], catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return {(Path(item["path"]).name, item["code"]) for item in json.loads(result.output)}


def write_config(folder: Path, body: str) -> None:
    (folder / "pyproject.toml").write_text(f"[project]\nname = 'x'\n\n[tool.bnlint]\n{body}\n")


def test_nearest_pyproject_with_a_bnlint_table_applies(project: Path) -> None:
    write_config(project, 'ignore = ["BNL004"]')
    sub = project / "pkg"
    sub.mkdir()
    (sub / "pyproject.toml").write_text("[project]\nname = 'inner'\n")  # no [tool.bnlint]
    (sub / "model.py").write_text(BAD_MODEL)
    assert codes("pkg") == {("model.py", "BNL201")}


def test_cli_flags_win_over_the_file(project: Path) -> None:
    write_config(project, 'select = ["BNL004"]')
    assert codes("model.py") == {("model.py", "BNL004")}
    assert codes("--select", "BNL201", "model.py") == {("model.py", "BNL201")}


def test_isolated_and_explicit_config(project: Path) -> None:
    write_config(project, 'select = ["BNL004"]')
    assert codes("--isolated", "model.py") == {("model.py", "BNL004"), ("model.py", "BNL201")}
    other = project / "other.toml"
    other.write_text('select = ["BNL201"]\n')
    assert codes("--config", "other.toml", "model.py") == {("model.py", "BNL201")}


def test_unknown_key_and_code_are_usage_errors(project: Path) -> None:
    for body, named in (('selct = ["BNL"]', "selct"), ('ignore = ["XYZ1"]', "XYZ1")):
        write_config(project, body)
        result = CliRunner().invoke(main, ["model.py"])
        assert result.exit_code == 2
        assert named in result.output
        assert "Traceback" not in result.output


def test_wrong_type_and_malformed_toml(project: Path) -> None:
    write_config(project, 'select = "BNL0"\nper-file-ignores = 3')
    result = CliRunner().invoke(main, ["model.py"])
    assert result.exit_code == 2 and "per-file-ignores" in result.output
    (project / "pyproject.toml").write_text("[tool.bnlint\nselect = [")
    result = CliRunner().invoke(main, ["model.py"])
    assert result.exit_code == 2 and "not valid TOML" in result.output


def test_per_file_ignores(project: Path) -> None:
    write_config(project, '[tool.bnlint.per-file-ignores]\n"tests/*" = ["BNL2"]')
    (project / "tests").mkdir()
    (project / "tests" / "test_model.py").write_text(BAD_MODEL)
    assert codes(".") == {
        ("model.py", "BNL004"),
        ("model.py", "BNL201"),
        ("test_model.py", "BNL004"),
    }


def test_default_excludes_and_virtualenvs(project: Path) -> None:
    for folder in ("build", ".venv", "node_modules", "myenv"):
        (project / folder).mkdir()
        (project / folder / "bad.py").write_text(BAD_MODEL)
    (project / "myenv" / "pyvenv.cfg").write_text("home = /usr\n")
    assert {name for name, _ in codes(".")} == {"model.py"}


def test_exclude_options_and_explicit_files(project: Path) -> None:
    (project / "gen").mkdir()
    (project / "gen" / "bad.py").write_text(BAD_MODEL)
    assert {name for name, _ in codes("--extend-exclude", "gen", ".")} == {"model.py"}
    assert {name for name, _ in codes("--exclude", "model.py", ".")} == {"bad.py"}
    # A file named on the command line is linted whatever the excludes say.
    assert {name for name, _ in codes("--extend-exclude", "gen", "gen/bad.py")} == {"bad.py"}


def test_skip_file_comment(project: Path) -> None:
    (project / "model.py").write_text("# bnlint: skip-file\n" + BAD_MODEL)
    assert codes("model.py") == set()
