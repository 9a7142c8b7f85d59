"""`bnlint confirm`: lint, run the script under the monitor, judge each static finding."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

pytest.importorskip("torch")

from bnlint.cli import main
from bnlint.confirm import CONTRADICTED, NOT_REACHED, RunOutcome, judge, run_script
from bnlint.diagnostic import Diagnostic

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "demo" / "confirm"

MODEL = """\
import sys
import torch
from torch import nn

model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Dropout(0.1), nn.Linear(8, 2))
"""


def confirm(*args: str) -> tuple[int, dict]:
    result = CliRunner().invoke(main, ["confirm", "--format", "json", *args])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    report = json.loads(result.stdout[result.stdout.index('{\n  "run"') :])
    return result.exit_code, report


def statuses(report: dict) -> dict[tuple[str, str, int], str]:
    return {(Path(f["path"]).name, f["code"], f["line"]): f["status"] for f in report["findings"]}


def write(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(MODEL + textwrap.dedent(body))
    return path


def test_demo_evaluation_mistakes_are_confirmed() -> None:
    status, report = confirm(str(DEMO / "eval_mistakes.py"), "--epochs", "1")
    found = statuses(report)
    assert status == 1
    assert report["run"]["ending"] == "finished"
    assert found[("eval_mistakes.py", "BNL001", 30)] == "confirmed"
    evidence = next(f for f in report["findings"] if f["code"] == "BNL001")["evidence"]
    assert [(e["line"], e["model"]) for e in evidence] == [(31, "SmallNet")]
    # test() evaluates in eval mode with autograd on: a static finding once BNL002 sees it.
    assert found.get(("eval_mistakes.py", "BNL002", 41)) in {"confirmed", "runtime-only", None}
    assert any(f["code"] == "BNL002" and f["status"] != NOT_REACHED for f in report["findings"])
    # Findings of the folder's other scripts: their files never ran.
    assert found[("export_in_train_mode.py", "BNL005", 35)] == NOT_REACHED


def test_demo_export_and_unrestored_train_mode_are_confirmed() -> None:
    status, report = confirm("--limit-batches", "2", str(DEMO / "export_in_train_mode.py"))
    found = statuses(report)
    assert status == 1
    assert found[("export_in_train_mode.py", "BNL005", 35)] == "confirmed"
    assert found[("export_in_train_mode.py", "BNL003", 28)] == "confirmed"


def test_demo_frozen_backbone_drift_is_found_at_run_time() -> None:
    status, report = confirm(str(DEMO / "frozen_backbone.py"))
    runtime = {(f["code"], f["line"]) for f in report["findings"] if f["status"] != NOT_REACHED}
    assert status == 1
    assert ("BNL101", 25) in runtime
    # The validation loop over the training loader: found statically, confirmed by the run.
    assert statuses(report)[("frozen_backbone.py", "BNL301", 31)] == "confirmed"


def test_a_failing_script_is_reported_with_what_ran(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "crash.py",
        """
        with torch.no_grad():
            for _ in range(2):
                out = model(torch.randn(4, 4))
        raise ValueError("disk full")
        """,
    )
    result = CliRunner().invoke(main, ["confirm", str(script)])
    assert result.exit_code == 1
    assert "it failed with an uncaught exception" in result.stdout
    assert "ValueError: disk full" in result.stdout
    assert 'crash.py", line 10' in result.stdout
    assert "runpy" not in result.stdout
    # The evaluation passes before the crash were seen (statically found too, or not).
    assert "BNL001 CONFIRMED" in result.stdout or "BNL001 RUNTIME ONLY" in result.stdout


def test_sys_exit_status_is_reported(tmp_path: Path) -> None:
    script = write(tmp_path, "bye.py", "sys.exit(3)\n")
    status, report = confirm(str(script))
    assert status == 1
    assert (report["run"]["ending"], report["run"]["exit_status"]) == ("exited", 3)
    clean = write(tmp_path, "fine.py", "sys.exit(0)\n")
    assert confirm(str(clean))[0] == 0


def test_arguments_reach_the_script_and_are_restored(tmp_path: Path) -> None:
    (tmp_path / "helper_for_confirm.py").write_text("SCALE = 3\n")
    script = write(
        tmp_path,
        "uses_sibling.py",
        """
        import os
        from helper_for_confirm import SCALE
        assert __name__ == "__main__"
        os.chdir(os.path.dirname(os.path.dirname(__file__)))
        sys.exit(SCALE * int(sys.argv[1]) + len(sys.argv[2:]))
        """,
    )
    argv, path, cwd = sys.argv[:], sys.path[:], os.getcwd()
    _, report = confirm(str(script), "2", "--flag")
    assert report["run"]["exit_status"] == 7
    assert (sys.argv, sys.path, os.getcwd()) == (argv, path, cwd)
    assert "helper_for_confirm" not in sys.modules


def test_autograd_is_restored_after_the_script(tmp_path: Path) -> None:
    """A script that switches autograd off for good, or a timeout that interrupts
    ``no_grad().__enter__``, must not leave it off in the caller's process."""
    import torch

    script = write(tmp_path, "grad_off.py", "torch.set_grad_enabled(False)\n")
    confirm(str(script))
    assert torch.is_grad_enabled()


def test_limit_batches_cuts_a_long_loop(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "long.py",
        """
        from torch.utils.data import DataLoader, TensorDataset
        loader = DataLoader(TensorDataset(torch.randn(100_000, 4)), batch_size=2)
        seen = sum(1 for _ in loader)
        sys.exit(seen)
        """,
    )
    _, report = confirm("--limit-batches", "3", str(script))
    assert report["run"]["exit_status"] == 3


def test_timeout_stops_an_endless_script_and_keeps_its_findings(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "endless.py",
        """
        while True:
            try:
                with torch.no_grad():
                    out = model(torch.randn(4, 4))
            except Exception:
                pass
        """,
    )
    status, report = confirm("--timeout", "1", str(script))
    assert report["run"]["ending"] == "timed out"
    assert 1 <= report["run"]["seconds"] < 10
    seen = {f["code"] for f in report["findings"] if f["status"] in {"confirmed", "runtime-only"}}
    assert seen == {"BNL001"}
    assert status == 1


def test_a_static_finding_the_run_disproves_is_contradicted(tmp_path: Path) -> None:
    script = write(
        tmp_path,
        "evaluates.py",
        """
        model.eval()
        with torch.no_grad():
            for _ in range(2):
                out = model(torch.randn(4, 4))
        """,
    )
    path = str(script)
    loop = Diagnostic(path, 9, 5, 9, 9, "BNL001", "eval-loop-in-train-mode", "static claim")
    grad = Diagnostic(path, 10, 19, 10, 24, "BNL002", "eval-loop-without-no-grad", "static claim")
    outcome = run_script(script, [], watched_lines={path: {9, 10}})
    verdicts = judge([loop, grad], outcome)
    assert [v.status for v in verdicts] == [CONTRADICTED, CONTRADICTED]
    assert "eval mode" in verdicts[0].reason and "autograd off" in verdicts[1].reason
    never = Diagnostic(path, 10, 19, 10, 24, "BNL001", "eval-loop-in-train-mode", "static claim")
    assert judge([never], RunOutcome(files_run={path}))[0].status == NOT_REACHED


def test_without_torch_it_says_how_to_install(tmp_path: Path) -> None:
    script = write(tmp_path, "plain.py", "")
    code = (
        "import sys; sys.modules['torch'] = None; from bnlint.cli import main; "
        f"sys.argv = ['bnlint', 'confirm', {str(script)!r}]; main()"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert 'pip install "bnlint[runtime]"' in result.stderr


def test_a_missing_script_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["confirm", str(tmp_path / "absent.py")])
    assert result.exit_code == 2
