from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

import bnlint.runtime
from bnlint.rules import RULES_BY_CODE
from bnlint.runtime._report import NAMES

ROOT = Path(__file__).resolve().parents[2]


def test_import_without_torch_says_how_to_install() -> None:
    code = "import sys; sys.modules['torch'] = None; import bnlint.runtime"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1
    assert 'pip install "bnlint[runtime]"' in result.stderr
    assert result.stderr.count("Traceback") == 1


def test_public_api() -> None:
    assert set(bnlint.runtime.__all__) == {
        "LayerEvent",
        "Monitor",
        "audit",
        "freeze_norm_layers",
        "recalibrate_batchnorm",
    }


def test_codes_and_names_agree_with_the_rule_registry() -> None:
    for code, name in NAMES.items():
        if code in RULES_BY_CODE:
            assert RULES_BY_CODE[code].name == name, code
