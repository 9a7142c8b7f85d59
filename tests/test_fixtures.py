"""Every fixture: good ones are clean, bad ones give exactly their expected output
and, where fixable, fix to their ``.fixed.py`` snapshot.

Set BNLINT_UPDATE_FIXTURES=1 to rewrite the snapshots; review the diff.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bnlint.config import Config
from bnlint.diagnostic import Severity
from bnlint.discovery import discover
from bnlint.engine import lint_files, lint_source
from bnlint.fixer import fix_text
from tests.fixture_cases import FIXTURES, Case, cases

UPDATE = os.environ.get("BNLINT_UPDATE_FIXTURES") == "1"
CONFIG = Config()


def lint_case(case: Case) -> list[str]:
    results = lint_files(discover([case.path], CONFIG), CONFIG)
    assert not [r.internal_error for r in results if r.internal_error]
    base = case.path if case.path.is_dir() else case.path.parent
    return [
        f"{Path(d.path).relative_to(base)}:{d.line}:{d.column}: {d.code} {d.message}"
        for r in results
        for d in sorted(r.diagnostics, key=lambda d: d.sort_key)
    ]


def check_snapshot(path: Path, actual: str) -> None:
    if UPDATE:
        path.write_text(actual)
    assert path.exists(), f"missing snapshot {path.name}: run with BNLINT_UPDATE_FIXTURES=1"
    assert actual == path.read_text()


ALL_CASES = cases()


@pytest.mark.parametrize("case", [c for c in ALL_CASES if not c.bad], ids=str)
def test_good_fixture_is_clean(case: Case) -> None:
    assert lint_case(case) == []


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.bad], ids=str)
def test_bad_fixture_output(case: Case) -> None:
    lines = lint_case(case)
    assert any(f": {case.code} " in line for line in lines), f"{case} does not trigger {case.code}"
    check_snapshot(case.expected, "".join(f"{line}\n" for line in lines))


@pytest.mark.parametrize("case", [c for c in ALL_CASES if c.bad and not c.path.is_dir()], ids=str)
def test_bad_fixture_fix(case: Case) -> None:
    source = case.path.read_text()
    path = str(case.path)

    def lint(text: str) -> list:
        return lint_source(text, path, CONFIG)

    outcome = fix_text(source, lint, unsafe=True)
    if outcome.text == source:
        assert not case.fixed.exists(), f"{case.fixed.name} exists but nothing is fixed"
        assert not any(d.fix for d in lint(source))
        return
    check_snapshot(case.fixed, outcome.text)
    assert not [d for d in outcome.remaining if d.code == case.code and d.fix is not None]


@pytest.mark.parametrize(
    ("fixture", "severity"),
    [
        ("BNL001/bad_mode_free_model_latent.py", Severity.WARNING),
        ("BNL001/bad_lstm_without_dropout_latent.py", Severity.WARNING),
        ("BNL001/bad_layer_in_a_variable_latent.py", Severity.WARNING),
        ("BNL001/bad_rebound_by_to_device_latent.py", Severity.WARNING),
        ("BNL001/bad_lstm_with_dropout.py", Severity.ERROR),
        ("BNL003/bad_mode_free_model_latent.py", Severity.WARNING),
        ("BNL001/bad_indexed_validation_inside_epoch_loop.py", Severity.ERROR),
        ("BNL003/bad_flat_script.py", Severity.ERROR),
    ],
)
def test_wrong_mode_of_a_model_without_dropout_or_norm_is_a_warning(
    fixture: str, severity: Severity
) -> None:
    """Training mode changes nothing in a model we can see has neither: the
    finding is a latent bug, a warning; with dropout or BatchNorm, an error."""
    path = FIXTURES / fixture
    found = lint_source(path.read_text(), str(path), CONFIG)
    assert found and {d.severity for d in found} == {severity}
