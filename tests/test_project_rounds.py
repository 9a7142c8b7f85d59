"""The project rounds re-lint a file with what the other files said of
themselves. The process that linted it first keeps its tree and what the
semantic model collected from it, so the file is parsed and walked once; the
result is what a fresh parse gives; nothing is kept after the run."""

from __future__ import annotations

import gc
import shutil
from collections import Counter
from pathlib import Path

import pytest

from bnlint import engine
from bnlint.analysis.model import SemanticModel
from bnlint.config import Config
from bnlint.engine import lint_files
from bnlint.trees import KeptTrees

# train.py calls engine.evaluate(model, ...) with the model in training mode:
# only the project round, which knows evaluate's summary, finds it.
PROJECT = Path(__file__).resolve().parent.parent / "fixtures" / "BNL001" / "bad_engine_evaluate"


@pytest.fixture
def files(tmp_path: Path) -> list[Path]:
    shutil.copytree(PROJECT, tmp_path / "project")
    return sorted((tmp_path / "project").glob("*.py"))


def codes(results: list[engine.FileResult]) -> dict[str, list[str]]:
    return {Path(r.path).name: [d.code for d in r.diagnostics] for r in results}


def test_a_re_linted_file_is_parsed_and_walked_once(
    files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: Counter[str] = Counter()
    real_parse = engine.parse_module

    def counting_parse(source: str) -> object:
        parsed[source] += 1
        return real_parse(source)

    linted: Counter[str] = Counter()
    real_lint_file = engine.lint_file

    def counting_lint_file(path: Path, *args: object) -> object:
        linted[path.name] += 1
        return real_lint_file(path, *args)

    walked: Counter[str] = Counter()
    real_collect = SemanticModel._collect

    def counting_collect(model: SemanticModel) -> None:
        walked[Path(model.path).name] += 1
        real_collect(model)

    monkeypatch.setattr(engine, "parse_module", counting_parse)
    monkeypatch.setattr(engine, "lint_file", counting_lint_file)
    monkeypatch.setattr(SemanticModel, "_collect", counting_collect)
    results = lint_files(files, Config(), jobs=1)
    assert codes(results) == {"engine.py": [], "train.py": ["BNL001"]}
    assert linted["train.py"] == 2  # the first round, then the project round
    assert sorted(parsed.values()) == [1, 1]
    assert walked == {"engine.py": 1, "train.py": 1}
    assert len(engine._KEPT_TREES) == 0  # freed with the run


def test_kept_trees_are_frozen_for_the_run_and_thawed_after(
    files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    frozen_while_linting = []
    real_lint_file = engine.lint_file

    def lint_file(path: Path, *args: object) -> object:
        frozen_while_linting.append(gc.get_freeze_count())
        return real_lint_file(path, *args)

    monkeypatch.setattr(engine, "lint_file", lint_file)
    gc.enable()
    lint_files(files, Config(), jobs=1)
    assert frozen_while_linting[0] == 0 and frozen_while_linting[-1] > 0  # the project round
    assert gc.get_freeze_count() == 0


def test_without_kept_trees_the_result_is_the_same(
    files: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    kept = codes(lint_files(files, Config(), jobs=1))
    monkeypatch.setattr(engine, "_KEPT_TREES", KeptTrees(budget=0))
    assert codes(lint_files(files, Config(), jobs=1)) == kept


def test_a_tree_is_only_given_back_for_the_text_it_came_from() -> None:
    trees = KeptTrees()
    model = SemanticModel(engine.parse_module("x = 1\n"), "a.py")
    trees.keep("a.py", "x = 1\n", model, likely=True)
    kept = trees.get("a.py", "x = 1\n")
    assert kept is not None and kept.module is model.module and kept.calls is model.calls
    assert trees.get("a.py", "x = 2\n") is None
    assert trees.get("b.py", "x = 1\n") is None


def test_unlikely_trees_use_a_third_of_the_budget() -> None:
    trees = KeptTrees(budget=30)
    model = SemanticModel(engine.parse_module("\n"))
    trees.keep("rarely.py", "#" * 8, model, likely=False)
    trees.keep("rarely_too.py", "#" * 8, model, likely=False)  # 16 > 30 // 3
    trees.keep("usually.py", "#" * 20, model, likely=True)
    trees.keep("over.py", "#" * 3, model, likely=True)  # 31 > 30
    assert len(trees) == 2
    assert trees.get("rarely.py", "#" * 8) and trees.get("usually.py", "#" * 20)


def test_a_model_for_another_project_keeps_nothing_the_project_decided(
    files: list[Path],
) -> None:
    train = next(path for path in files if path.name == "train.py")
    model = SemanticModel(engine.parse_module(train.read_text()), str(train))
    assert model.modes.file_facts() is not None  # the project's part, for no project
    twin = model.for_project(None)
    assert "modes" in vars(model) and "modes" not in vars(twin)
    assert vars(twin).keys() == vars(SemanticModel(model.module, str(train))).keys()
    assert twin.functions is model.functions
