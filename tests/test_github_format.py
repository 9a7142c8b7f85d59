"""``--format github`` workflow annotations, and the GitHub Action that runs them."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnlint.cli import main
from bnlint.diagnostic import Diagnostic, Severity
from bnlint.output import Report
from bnlint.output.github import render

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOK = Path(__file__).parent / "data" / "notebooks" / "train.ipynb"
DROPOUT_TITLE = "title=BNL201 (functional-dropout-always-on)"
EXPECTED = [
    f"::error file=model.py,line=8,col=16,endLine=8,endColumn=33,{DROPOUT_TITLE}::"
    "`F.dropout` without `training=` defaults to `training=True` and stays on after "
    "`model.eval()`; pass `training=self.training`",
    "::error file=model.py,line=12,col=1,endLine=12,endColumn=11,"
    "title=BNL004 (mode-call-missing-parens)::`model.eval` without a call does nothing: "
    "`model` is not switched to evaluation mode; write `model.eval()`",
]


def test_annotations_for_a_file(project: Path) -> None:
    result = CliRunner().invoke(main, ["--format", "github", "model.py"])
    assert result.exit_code == 1
    assert result.output.splitlines() == EXPECTED  # no summary line: the log stays clean


def test_paths_are_relative_with_forward_slashes(project: Path) -> None:
    (project / "pkg").mkdir()
    (project / "model.py").rename(project / "pkg" / "model.py")
    result = CliRunner().invoke(main, ["--format", "github", str(project / "pkg")])
    assert result.output.startswith("::error file=pkg/model.py,line=8,")


def test_escaping_of_data_and_properties() -> None:
    diagnostic = Diagnostic(
        "odd,name:v2.py", 3, 4, 3, 9, "BNL999", "a:b,c", "100% sure\r\nreally", Severity.WARNING
    )
    (line,) = render(Report([diagnostic])).splitlines()
    assert line == (
        "::warning file=odd%2Cname%3Av2.py,line=3,col=4,endLine=3,endColumn=9,"
        "title=BNL999 (a%3Ab%2Cc)::100%25 sure%0D%0Areally"
    )


def test_notebook_annotations_point_into_the_file(project: Path) -> None:
    shutil.copy(NOTEBOOK, project / "train.ipynb")
    result = CliRunner().invoke(main, ["--format", "github", "train.ipynb"])
    first = result.output.splitlines()[0]
    assert first.startswith(f"::error file=train.ipynb,line=40,{DROPOUT_TITLE}::cell 3:7:24: ")
    assert "F.dropout(x, 0.2)" in NOTEBOOK.read_text().splitlines()[39]


# -- action.yml ---------------------------------------------------------------------------


def load_action() -> dict:
    yaml = pytest.importorskip("yaml")
    return yaml.safe_load((ROOT / "action.yml").read_text())


def test_action_is_a_composite_that_installs_this_repository() -> None:
    action = load_action()
    assert set(action["inputs"]) == {"paths", "args", "python-version"}
    assert action["inputs"]["paths"]["default"] == "."
    assert action["runs"]["using"] == "composite"
    setup, install, lint = action["runs"]["steps"]
    assert setup["uses"].startswith("actions/setup-python@")
    assert '"$GITHUB_ACTION_PATH"' in install["run"]
    assert "--format github" in lint["run"]
    # Inputs reach the script through the environment only (no script injection).
    assert "${{" not in install["run"] + lint["run"]


def test_action_lint_step_annotates_and_fails(project: Path) -> None:
    """Run the action's lint step as the runner would: bash, inputs in the environment."""
    lint = load_action()["runs"]["steps"][2]
    (project / "skipped.py").write_text("model.eval\n")
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash to run the step with")
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "BNLINT_PATHS": "model.py",
        "BNLINT_ARGS": "--no-cache --select BNL0,BNL2",
    }
    proc = subprocess.run(
        [bash, "-e", "-c", lint["run"]],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1  # findings fail the step
    assert proc.stdout.splitlines() == EXPECTED
