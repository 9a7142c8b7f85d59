"""Every fixture through ``bnlint --fix`` (and ``--fix --unsafe-fixes``) on a
temporary copy of the fixture tree: the CLI writes exactly what the checked
in-process fix computes (``properties.check_file``: fixes parse, fixing twice
changes nothing, nothing fixable is left, nothing outside the edits changes),
and a second ``--fix`` run finds nothing more to do.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnlint.cli import main
from bnlint.config import Config
from bnlint.discovery import discover
from bnlint.engine import lint_files, package_of
from tests.fixture_cases import FIXTURES
from tests.robustness.properties import Checked, Context, check_file

FLAGS = ["--isolated", "--no-cache", "--jobs", "1", "--quiet"]


def snapshot(root: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in sorted(root.rglob("*")) if path.is_file()}


def predict(files: list[Path], config: Config, unsafe: bool) -> dict[Path, Checked]:
    """The checked fix of each file, linted with the project index the CLI builds."""
    return {
        Path(result.path): check_file(
            Path(result.path).read_bytes(),
            result.path,
            unsafe,
            Context(config, package_of(Path(result.path)), result.project),
        )
        for result in lint_files(files, config)
    }


def fix(root: Path, unsafe: bool) -> str:
    args = [*FLAGS, "--fix", *(["--unsafe-fixes"] if unsafe else []), str(root)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code in (0, 1), result.output
    return result.output


@pytest.mark.parametrize("unsafe", [False, True], ids=["fix", "unsafe-fixes"])
def test_every_fixture_fixes_in_a_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, unsafe: bool
) -> None:
    root = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, root)
    monkeypatch.chdir(tmp_path)
    config = Config()
    files = discover([root], config)
    assert len(files) > 100
    expected = predict(files, config, unsafe)
    before = snapshot(root)

    output = fix(root, unsafe)
    for problem in ("Traceback", "internal error", "not fixed", "fix not applied"):
        assert problem not in output, output
    after = snapshot(root)
    assert set(after) == set(before), "files appeared or vanished (temporary files?)"
    wrong = [path for path in files if after[path] != expected[path].written]
    assert not wrong, f"the CLI wrote something else than the checked fix: {wrong}"
    untouched = set(before) - set(files)  # .expected snapshots and the like
    assert all(after[path] == before[path] for path in untouched)
    assert sum(c.fixes for c in expected.values()) > (40 if not unsafe else 50)

    fix(root, unsafe)
    assert snapshot(root) == after, "a second --fix run changed files again"
