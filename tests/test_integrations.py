"""The real flake8 and pre-commit, run in subprocesses against this checkout."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bnlint.config import Config
from bnlint.discovery import discover
from bnlint.engine import lint_file, lint_files
from bnlint.rules import INPUT_CODES
from tests.conftest import BAD_MODEL

REPO = Path(__file__).resolve().parent.parent
FLAKE8_LINE = re.compile(r"^(?P<path>.+?):(?P<line>\d+):(?P<col>\d+): (?P<code>BNL\d+) ")


def test_flake8_reports_what_bnlint_reports() -> None:
    paths = [REPO / "fixtures", REPO / "demo"]
    proc = subprocess.run(
        [sys.executable, "-m", "flake8", "--isolated", "--select", "BNL", *map(str, paths)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode in (0, 1), proc.stderr
    from_flake8 = set()
    for line in proc.stdout.splitlines():
        match = FLAKE8_LINE.match(line)
        assert match, line
        path = str(Path(match["path"]).resolve())
        from_flake8.add((path, int(match["line"]), int(match["col"]), match["code"]))
    config = Config()
    files = discover(paths, config)
    # flake8 hands the plugin one file at a time: bnlint's single-file mode. A
    # file it cannot parse or read it reports itself (E999, E902), not the plugin.
    single_file = {
        (str(Path(d.path).resolve()), d.line, d.column, d.code)
        for path in files
        for d in lint_file(path, config).diagnostics
        if d.code not in INPUT_CODES
    }
    assert len(single_file) > 10
    assert from_flake8 == single_file
    # The command line also sees the other files of the project: never less.
    project = {
        (str(Path(d.path).resolve()), d.line, d.column, d.code)
        for result in lint_files(files, config)
        for d in result.diagnostics
    }
    assert project > single_file


def git(cwd: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")
def test_pre_commit_hooks(tmp_path: Path) -> None:
    repo = tmp_path / "user-repo"
    repo.mkdir()
    git(repo, "init", "-q")
    git(repo, "config", "user.email", "ci@example.com")
    git(repo, "config", "user.name", "ci")
    (repo / "model.py").write_text(BAD_MODEL)
    git(repo, "add", "model.py")
    env = {**os.environ, "PRE_COMMIT_HOME": str(tmp_path / "pre-commit-home")}

    def try_hook(hook: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pre_commit", "try-repo", str(REPO), hook, "--all-files"],
            cwd=repo,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )

    checked = try_hook("bnlint")
    assert checked.returncode == 1, checked.stdout + checked.stderr
    assert "model.py:8:16: BNL201" in checked.stdout
    fixed = try_hook("bnlint-fix")
    assert fixed.returncode == 1  # pre-commit fails a hook that changed files
    assert "F.dropout(x, 0.1, training=self.training)" in (repo / "model.py").read_text()
    git(repo, "add", "model.py")
    assert try_hook("bnlint").returncode == 0
