"""The result cache: a warm run parses nothing and prints the same bytes, and
an unchanged run reads one entry; any change to the text, the config, bnlint or
a dependency is a miss; a broken entry is a miss; concurrent runs share a cache
safely; --fix, --no-cache, clean."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import libcst
import pytest
from click.testing import CliRunner, Result

import bnlint
from bnlint import engine
from bnlint.cache import (
    CACHE_DIR_NAME,
    CACHEDIR_TAG,
    RUN_ENTRY_PREFIX,
    ResultCache,
    decode_diagnostic,
    encode_diagnostic,
    open_cache,
)
from bnlint.cli import main
from bnlint.config import Config
from bnlint.diagnostic import Diagnostic, Edit, Fix, Severity
from bnlint.source import SourceFile
from tests.conftest import BAD_MODEL

OLD = 1_000_000_000  # an mtime long past: the stat fast path trusts it


def run(*args: str) -> Result:
    return CliRunner().invoke(main, ["--jobs", "1", *args], catch_exceptions=False)


@pytest.fixture
def lints(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths linted (and parsed) in this process, in order."""
    linted: list[str] = []
    real_lint_file, real_parse = engine.lint_file, libcst.parse_module

    def counting_lint(path: Path, *args: object, **kwargs: object) -> object:
        linted.append(str(path))
        return real_lint_file(path, *args, **kwargs)

    def counting_parse(source: str, *args: object, **kwargs: object) -> object:
        linted.append("parse")
        return real_parse(source, *args, **kwargs)

    monkeypatch.setattr(engine, "lint_file", counting_lint)
    monkeypatch.setattr(libcst, "parse_module", counting_parse)
    return linted


def age(*paths: Path) -> None:
    for path in paths:
        os.utime(path, ns=(OLD, OLD))


def entries(project: Path, runs: bool = False) -> list[Path]:
    """The per-file entries, or with ``runs`` the whole-run ones."""
    folder = project / CACHE_DIR_NAME / bnlint.__version__
    return sorted(p for p in folder.iterdir() if p.name.startswith(RUN_ENTRY_PREFIX) == runs)


def test_warm_run_parses_nothing_and_prints_the_same(project: Path, lints: list[str]) -> None:
    (project / "clean.py").write_text("import torch\n")
    age(project / "model.py", project / "clean.py")
    cold = run("--show-source", ".")
    assert sorted(lints) == ["clean.py", "model.py", "parse"]
    lints.clear()
    warm = run("--show-source", ".")
    assert lints == []
    assert warm.exit_code == cold.exit_code == 1
    assert warm.output_bytes == cold.output_bytes
    assert "F.dropout(x, 0.1)\n" in warm.output  # the source line, read for the hit


def test_a_recently_modified_file_is_hashed_not_trusted(project: Path, lints: list[str]) -> None:
    # Modified within the last seconds, so its mtime could hide a second change.
    cold = run("model.py")
    lints.clear()
    warm = run("model.py")
    assert lints == []
    assert warm.output == cold.output


def test_the_cache_folder_is_tagged_and_ignored(project: Path) -> None:
    run("model.py")
    cache = project / CACHE_DIR_NAME
    assert (cache / ".gitignore").read_text() == "*\n"
    assert (cache / "CACHEDIR.TAG").read_text() == CACHEDIR_TAG
    assert len(entries(project)) == 1


def test_the_cache_lives_beside_the_config_file(project: Path) -> None:
    (project / "pyproject.toml").write_text("[tool.bnlint]\n")
    (project / "src").mkdir()
    (project / "src" / "train.py").write_text(BAD_MODEL)
    os.chdir(project / "src")
    run("train.py")
    assert (project / CACHE_DIR_NAME).is_dir()
    assert not (project / "src" / CACHE_DIR_NAME).exists()


def test_a_changed_text_is_a_miss_even_with_the_same_size_and_mtime(
    project: Path, lints: list[str]
) -> None:
    path = project / "model.py"
    age(path)
    run("model.py")
    # Same length, same mtime: only the ctime tells (and then the hash).
    path.write_text(BAD_MODEL.replace("F.dropout(x, 0.1)", "F.dropout(x, 0.2)"))
    age(path)
    lints.clear()
    result = run("model.py")
    assert lints == ["model.py", "parse"]
    assert "BNL201" in result.output


def test_a_changed_config_is_a_miss(project: Path, lints: list[str]) -> None:
    age(project / "model.py")
    run("model.py")
    lints.clear()
    result = run("--select", "BNL004", "model.py")
    assert lints == ["model.py", "parse"]
    assert "BNL201" not in result.output and "BNL004" in result.output
    lints.clear()
    assert "BNL201" in run("model.py").output
    assert lints == []  # the first configuration's entries are still there


def test_a_new_bnlint_version_is_a_miss(
    project: Path, lints: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    age(project / "model.py")
    run("model.py")
    monkeypatch.setattr(bnlint, "__version__", "99.0")
    lints.clear()
    run("model.py")
    assert lints == ["model.py", "parse"]


def test_another_dependency_fingerprint_is_a_miss(project: Path) -> None:
    path = project / "model.py"
    age(path)
    cache = open_cache(project / CACHE_DIR_NAME, Config())
    assert cache is not None
    found = engine.lint_source(BAD_MODEL, "model.py", Config())
    _, slot = cache.lookup(path, None, dependencies="engine.py@1")
    cache.store(slot, SourceFile(BAD_MODEL, "utf-8"), found)
    assert cache.lookup(path, None, dependencies="engine.py@1")[0] == found
    assert cache.lookup(path, None, dependencies="engine.py@2")[0] is None
    assert cache.lookup(path, "pkg", dependencies="engine.py@1")[0] is None


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated
        lambda data: data[:-3] + bytes([data[-3] ^ 1]) + data[-2:],  # one bit flipped
        lambda data: b"",
        lambda data: data.replace(b"bnlint-cache 1", b"bnlint-cache 0"),
    ],
    ids=["truncated", "bit-flip", "empty", "old-format"],
)
def test_a_damaged_entry_is_a_miss_and_is_rewritten(
    project: Path, lints: list[str], damage: object
) -> None:
    age(project / "model.py")
    cold = run("model.py")
    [entry], [whole_run] = entries(project), entries(project, runs=True)
    intact = {path: path.read_bytes() for path in (entry, whole_run)}
    for path, data in intact.items():
        path.write_bytes(damage(data))  # type: ignore[operator]
    lints.clear()
    assert run("model.py").output == cold.output
    assert lints == ["model.py", "parse"]
    assert {path: path.read_bytes() for path in intact} == intact


def test_an_unchanged_run_reads_one_entry_and_a_change_reads_them_all(
    project: Path, lints: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (project / "clean.py").write_text("import torch\n")
    age(project / "model.py", project / "clean.py")
    cold = run("--show-source", ".")
    looked_up: list[Path] = []
    real_lookup = ResultCache.lookup

    def counting_lookup(self: ResultCache, path: Path, *args: object, **kwargs: object) -> object:
        looked_up.append(path)
        return real_lookup(self, path, *args, **kwargs)

    monkeypatch.setattr(ResultCache, "lookup", counting_lookup)
    lints.clear()
    assert run("--show-source", ".").output_bytes == cold.output_bytes
    assert (lints, looked_up) == ([], [])
    (project / "clean.py").write_text("import torch  # changed\n")
    age(project / "clean.py")
    assert run("--show-source", ".").output_bytes == cold.output_bytes
    assert lints == ["clean.py"] and len(looked_up) == 2  # model.py: its own entry


def test_a_damaged_run_entry_falls_back_to_the_file_entries(
    project: Path, lints: list[str]
) -> None:
    age(project / "model.py")
    cold = run("model.py")
    [whole_run] = entries(project, runs=True)
    whole_run.write_bytes(whole_run.read_bytes()[:-5])
    lints.clear()
    assert run("model.py").output == cold.output
    assert lints == []


def test_diagnostics_round_trip_exactly() -> None:
    edits = (Edit(1, 1, 1, 1, "    model.eval()\r\n"), Edit(3, 5, 4, 1, "é\t\"'\\"))
    original = Diagnostic(
        "dir/ü.py",
        3,
        5,
        4,
        1,
        "BNL201",
        "functional-dropout-always-on",
        "`F.dropout` ... `training=`",
        Severity.WARNING,
        Fix(edits, safe=False, description="pass training=self.training"),
        {"noqa_lines": (2, 7), "cell": {"index": 3, "ids": ["a", None, 1.5, True]}, "n": []},
    )
    copy = decode_diagnostic(encode_diagnostic(original))
    assert copy == original
    assert copy.extra == original.extra
    assert type(copy.extra["noqa_lines"]) is tuple
    plain = Diagnostic("a.py", 1, 1, 1, 1, "BNL004", "n", "m")
    assert decode_diagnostic(encode_diagnostic(plain)) == plain


def test_a_result_that_cannot_be_stored_exactly_is_not_stored(project: Path) -> None:
    path = project / "model.py"
    cache = open_cache(project / CACHE_DIR_NAME, Config())
    assert cache is not None
    odd = Diagnostic("model.py", 1, 1, 1, 1, "BNL004", "n", "m", extra={"where": Path("x")})
    _, slot = cache.lookup(path, None)
    cache.store(slot, SourceFile(BAD_MODEL, "utf-8"), [odd])
    assert cache.lookup(path, None)[0] is None


def test_fix_on_a_warm_cache_fixes_and_the_next_run_sees_it(project: Path) -> None:
    age(project / "model.py")
    run("model.py")
    assert run("--fix", "model.py").output.splitlines()[-1] == "Fixed 2 problems, 0 remaining."
    result = run("model.py")
    assert (result.exit_code, result.output) == (0, "All checks passed!\n")


def test_no_cache_reads_and_writes_nothing(project: Path, lints: list[str]) -> None:
    run("--no-cache", "model.py")
    assert not (project / CACHE_DIR_NAME).exists()
    run("model.py")
    lints.clear()
    run("--no-cache", "model.py")
    assert lints == ["model.py", "parse"]


def test_cache_dir_option_and_clean(project: Path) -> None:
    elsewhere = project / "elsewhere"
    run("--cache-dir", str(elsewhere), "model.py")
    assert (elsewhere / "CACHEDIR.TAG").is_file()
    assert not (project / CACHE_DIR_NAME).exists()
    clean = CliRunner().invoke(main, ["clean", "--cache-dir", str(elsewhere)])
    assert (clean.exit_code, clean.output) == (0, f"Removed {elsewhere}.\n")
    assert not elsewhere.exists()
    run("model.py")
    assert CliRunner().invoke(main, ["clean"]).exit_code == 0
    assert not (project / CACHE_DIR_NAME).exists()
    again = CliRunner().invoke(main, ["clean"])
    assert again.output == f"No cache at {project / CACHE_DIR_NAME}.\n"


def test_clean_refuses_a_folder_that_is_not_a_cache(project: Path) -> None:
    result = CliRunner().invoke(main, ["clean", "--cache-dir", str(project)])
    assert result.exit_code == 2
    assert "is not a bnlint cache" in result.output
    assert (project / "model.py").is_file()


def test_an_unwritable_cache_folder_is_no_error(project: Path) -> None:
    (project / "blocked").write_text("a file where the cache folder should be")
    result = run("--cache-dir", str(project / "blocked" / "cache"), "model.py")
    assert result.exit_code == 1 and "BNL201" in result.output


def test_two_concurrent_runs_share_one_cache(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    for i in range(60):
        text = BAD_MODEL if i % 2 else "import torch\n\nx = torch.zeros(3)\n"
        (tree / f"m{i:02}.py").write_text(f"# {i}\n{text}")
    age(*tree.iterdir())
    command = [sys.executable, "-m", "bnlint", "--jobs", "2", "--cache-dir", "cache", "tree"]
    uncached = [sys.executable, "-m", "bnlint", "--no-cache", "tree"]
    expected = subprocess.run(uncached, cwd=tmp_path, capture_output=True)
    runs = [
        subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=120) for process in runs]
    assert outputs == [(expected.stdout, b"")] * 2
    folder = tmp_path / "cache" / bnlint.__version__
    names = [path.name for path in folder.iterdir()]
    assert len(names) == 61  # one entry per file and one for the run, no temporary files
    assert sum(name.startswith(RUN_ENTRY_PREFIX) for name in names) == 1
    warm = subprocess.run(command, cwd=tmp_path, capture_output=True)
    assert (warm.stdout, warm.stderr) == (expected.stdout, b"")


EVALUATE = """\
import torch


def evaluate(model, loader):
    total = 0.0
    with torch.no_grad():
        for images, labels in loader:
            total += model(images).sum().item()
    return total
"""

TRAIN = """\
import torch
from torch import nn

from engine import evaluate

model = nn.Sequential(nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
train_loader = [(torch.randn(8, 4), torch.zeros(8))]
val_loader = [(torch.randn(8, 4), torch.zeros(8))]

for epoch in range(3):
    model.train()
    for images, labels in train_loader:
        optimizer.zero_grad()
        model(images).sum().backward()
        optimizer.step()
    evaluate(model, val_loader)
"""


def test_a_result_that_used_another_file_is_not_reused_when_that_file_changes(
    tmp_path: Path, lints: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    engine_py, train_py, other_py = Path("engine.py"), Path("train.py"), Path("other.py")
    engine_py.write_text(EVALUATE)
    train_py.write_text(TRAIN)
    other_py.write_text(BAD_MODEL)
    age(engine_py, train_py, other_py)
    assert "train.py:17:5: BNL001" in run(".").output
    lints.clear()
    assert "train.py:17:5: BNL001" in run(".").output
    assert lints == []
    # `evaluate` now switches the model itself: train.py's call is fine.
    engine_py.write_text(EVALUATE.replace("    total", "    model.eval()\n    total"))
    age(engine_py)
    lints.clear()
    assert "BNL001" not in run(".").output
    assert sorted(set(lints) - {"parse"}) == ["engine.py", "train.py"]
