"""Hostile configuration: malformed pyproject.toml, wrong types for every
``[tool.bnlint]`` key, unknown codes, excludes that match everything, a
``--config`` file that does not exist. Each gives a one-line usage error
(exit 2, naming the file and the key) or a correct run; never a traceback.
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnlint.cli import EXIT_CLEAN, EXIT_ERROR, EXIT_PROBLEMS, main
from bnlint.config import CODE_LISTS, KNOWN_KEYS, PATTERN_LISTS, tomllib

BAD = "import torch\nmodel.eval\n"

# TOML values of every type but the right ones.
WRONG_VALUES: dict[str, str] = {
    "integer": "1",
    "float": "1.5",
    "boolean": "true",
    "datetime": "1979-05-27T07:32:00Z",
    "table": "{ a = 1 }",
    "integers": "[1, 2]",
    "nested lists": '[["BNL"]]',
    "mixed list": '["BNL", 1]',
    "list of tables": "[{ a = 1 }]",
}
LIST_KEYS = (*CODE_LISTS, *PATTERN_LISTS)


def test_every_key_is_covered() -> None:
    """A new key must come with its hostile cases here."""
    assert set(KNOWN_KEYS) == {*LIST_KEYS, "per-file-ignores"}


def run(project: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(
        main, ["--no-cache", "--jobs", "1", *args, str(project)], catch_exceptions=False
    )
    return result.exit_code, result.stdout, result.stderr


def project_with(tmp_path: Path, pyproject: str | bytes) -> Path:
    (tmp_path / "train.py").write_text(BAD)
    data = pyproject.encode() if isinstance(pyproject, str) else pyproject
    (tmp_path / "pyproject.toml").write_bytes(data)
    return tmp_path


def assert_usage_error(result: tuple[int, str, str], *named: str) -> None:
    code, stdout, stderr = result
    assert code == EXIT_ERROR, (code, stdout, stderr)
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bnlint: error: "), stderr
    assert all(name in lines[0] for name in named), (named, stderr)
    assert stdout == ""


def assert_linted(result: tuple[int, str, str]) -> None:
    code, stdout, stderr = result
    assert code == EXIT_PROBLEMS and "train.py:2:1: BNL004" in stdout, (code, stdout, stderr)


@pytest.mark.parametrize("kind", list(WRONG_VALUES))
@pytest.mark.parametrize("key", [*LIST_KEYS, "per-file-ignores"])
def test_wrong_type(tmp_path: Path, key: str, kind: str) -> None:
    if key == "per-file-ignores" and kind == "table":
        pytest.skip("a table is the right type; its values are tested below")
    project = project_with(tmp_path, f"[tool.bnlint]\n{key} = {WRONG_VALUES[kind]}\n")
    assert_usage_error(run(project), "pyproject.toml", f"'{key}'")


@pytest.mark.parametrize("kind", [k for k in WRONG_VALUES if k != "table"])
def test_wrong_type_in_per_file_ignores(tmp_path: Path, kind: str) -> None:
    pyproject = f'[tool.bnlint.per-file-ignores]\n"train.py" = {WRONG_VALUES[kind]}\n'
    assert_usage_error(run(project_with(tmp_path, pyproject)), "per-file-ignores.train.py")


@pytest.mark.parametrize("key", [*CODE_LISTS, "per-file-ignores"])
@pytest.mark.parametrize("code", ["XYZ123", "BNL9999", "bnl004", "E501", " ", "*"])
def test_unknown_code(tmp_path: Path, key: str, code: str) -> None:
    value = f'{{ "x.py" = ["{code}"] }}' if key == "per-file-ignores" else f'["{code}"]'
    result = run(project_with(tmp_path, f"[tool.bnlint]\n{key} = {value}\n"))
    if not code.strip():  # blank entries are ignored
        assert result[0] in (EXIT_CLEAN, EXIT_PROBLEMS), result
        return
    assert_usage_error(result, "pyproject.toml", f"'{code}'")


def test_unknown_code_on_the_command_line(tmp_path: Path) -> None:
    project = project_with(tmp_path, "")
    assert_usage_error(run(project, "--select", "BNL004,NOPE1"), "command line", "'NOPE1'")


def test_unknown_key(tmp_path: Path) -> None:
    project = project_with(tmp_path, "[tool.bnlint]\nselct = ['BNL']\n")
    assert_usage_error(run(project), "pyproject.toml", "'selct'")


MALFORMED: dict[str, str | bytes] = {
    "syntax error": "[tool.bnlint\nselect = ['BNL']\n",
    "duplicate key": "[tool.bnlint]\nselect = ['BNL']\nselect = ['BNL0']\n",
    "invalid utf-8": b"[tool.bnlint]\nselect = ['\xff']\n",
    "null byte": b"[tool.bnlint]\x00\n",
    "deep nesting": "x = " + "[" * 100_000 + "]" * 100_000 + "\n[tool.bnlint]\n",
    "deep tables": "x = " + "{a = " * 5_000 + "1" + "}" * 5_000 + "\n[tool.bnlint]\n",
    "bnlint not a table": "[tool]\nbnlint = 1\n",
    "bnlint a list": "[tool]\nbnlint = ['BNL']\n",
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_pyproject(tmp_path: Path, name: str) -> None:
    project = project_with(tmp_path, MALFORMED[name])
    assert_usage_error(run(project), str(tmp_path / "pyproject.toml"))


@pytest.mark.parametrize(
    "pyproject",
    [
        "tool = 1\n",  # another tool's mistake: not bnlint's configuration
        "[tool]\nother = 1\n",
        "",
        "[tool.bnlint]\n",
        "[project]\nname = 'x'\n[tool.bnlint]\nselect = []\n",  # nothing selected: a clean run
    ],
)
def test_pyproject_without_usable_settings_still_lints(tmp_path: Path, pyproject: str) -> None:
    code, stdout, stderr = run(project_with(tmp_path, pyproject))
    assert "Traceback" not in stderr
    if "select = []" in pyproject:
        assert code == EXIT_CLEAN and "BNL004" not in stdout, (code, stdout, stderr)
    else:
        assert_linted((code, stdout, stderr))


@pytest.mark.parametrize("pattern", ["*", "**", "*.py", "train*", "./", "/", ".", "[!x]*"])
@pytest.mark.parametrize("key", PATTERN_LISTS)
def test_exclude_everything(tmp_path: Path, key: str, pattern: str) -> None:
    """A run with nothing left to lint (or the patterns that match nothing) is
    correct: clean, or the usual findings, never an error."""
    code, stdout, stderr = run(project_with(tmp_path, f"[tool.bnlint]\n{key} = ['{pattern}']\n"))
    assert "Traceback" not in stderr and code in (EXIT_CLEAN, EXIT_PROBLEMS), (stdout, stderr)
    if code == EXIT_PROBLEMS:
        assert_linted((code, stdout, stderr))


def test_config_file_does_not_exist(tmp_path: Path) -> None:
    project = project_with(tmp_path, "")
    missing = tmp_path / "bnlint.toml"
    assert_usage_error(run(project, "--config", str(missing)), str(missing), "does not exist")


def test_config_file_is_a_folder(tmp_path: Path) -> None:
    project = project_with(tmp_path, "")
    (tmp_path / "settings").mkdir()
    code, _, stderr = run(project, "--config", str(tmp_path / "settings"))
    assert code == EXIT_ERROR and "settings" in stderr and "Traceback" not in stderr, stderr


@pytest.mark.parametrize(
    ("content", "named"),
    [
        ("select = 1\n", "'select'"),
        ("[tool.bnlint]\nselect = ['BNL']\n", "'tool'"),  # a bnlint.toml has no [tool] table
        ("select = [\n", "not valid TOML"),
    ],
)
def test_bad_config_file(tmp_path: Path, content: str, named: str) -> None:
    project = project_with(tmp_path, "")
    config = tmp_path / "bnlint.toml"
    config.write_text(content)
    assert_usage_error(run(project, "--config", str(config)), str(config), named)


def test_good_config_file_is_used(tmp_path: Path) -> None:
    project = project_with(tmp_path, "[tool.bnlint]\nselect = ['NOPE']\n")  # not read
    config = tmp_path / "bnlint.toml"
    config.write_text("ignore = ['BNL004']\n")
    code, stdout, stderr = run(project, "--config", str(config))
    assert code == EXIT_CLEAN and "BNL004" not in stdout, (stdout, stderr)


def test_datetime_case_is_a_datetime() -> None:
    """TOML datetimes load as ``datetime``: the case above tests one."""
    value = tomllib.loads(f"x = {WRONG_VALUES['datetime']}")["x"]
    assert isinstance(value, datetime.datetime)
