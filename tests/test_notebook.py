"""Notebooks: code cells linted as one program, findings and fixes per cell."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from bnlint.cli import main
from bnlint.config import Config
from bnlint.diagnostic import Diagnostic, Edit, Fix
from bnlint.notebook import Program, fix_notebook, lint_notebook

NOTEBOOKS = Path(__file__).parent / "data" / "notebooks"
DROPOUT = (
    "`F.dropout` without `training=` defaults to `training=True` and stays on after "
    "`model.eval()`; pass `training=self.training`"
)
MISSING_CALL = (
    "`model.eval` without a call does nothing: `model` is not switched to evaluation mode; "
    "write `model.eval()`"
)
# Cells 1 and 4 are markdown; cell 2 has magics and a shell escape; cell 5 a
# shell assignment and `model?`; cell 6 is a %%time cell (with a `model.eval`
# that must not be reported); cell 7 has `model.train` with a noqa comment.
EXPECTED = [
    f"train.ipynb:cell 3:7:24: BNL201 {DROPOUT}",
    f"train.ipynb:cell 5:4:1: BNL004 {MISSING_CALL}",
]


def run(*args: str, input: str | None = None):
    return CliRunner().invoke(main, list(args), input=input, catch_exceptions=False)


@pytest.fixture
def train(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the fixture notebook in a temporary current directory."""
    monkeypatch.chdir(tmp_path)
    return Path(shutil.copy(NOTEBOOKS / "train.ipynb", tmp_path / "train.ipynb"))


def notebook(*cells: str | tuple[str, str], **top: object) -> str:
    """A notebook's JSON text: a string is a code cell, a pair is (cell_type, source)."""
    items = []
    for cell in cells:
        kind, source = cell if isinstance(cell, tuple) else ("code", cell)
        items.append({"cell_type": kind, "metadata": {}, "source": source})
    return json.dumps({"cells": items, "metadata": {}, "nbformat": 4, "nbformat_minor": 5, **top})


def codes(text: str) -> list[tuple[int, int, str]]:
    return [(d.extra["cell"], d.line, d.code) for d in lint_notebook(text, "n.ipynb", Config())]


# -- reporting ------------------------------------------------------------------------


def test_text_output_per_cell(train: Path) -> None:
    result = run("train.ipynb")
    assert result.exit_code == 1
    assert result.output.splitlines() == [*EXPECTED, "Found 2 problems (2 fixable with --fix)."]


def test_second_run_from_the_cache_is_the_same(train: Path) -> None:
    assert run("train.ipynb").output == run("train.ipynb").output
    assert (train.parent / ".bnlint_cache").is_dir()


def test_json_output_has_the_cell_and_cell_relative_positions(train: Path) -> None:
    first, second = json.loads(run("--format", "json", "train.ipynb").output)
    assert (first["cell"], first["line"], first["column"], first["code"]) == (3, 7, 24, "BNL201")
    assert (first["end_line"], first["end_column"]) == (7, 41)
    assert first["fix"]["edits"][0]["line"] == 7  # edits are in cell coordinates too
    assert (second["cell"], second["line"], second["column"]) == (5, 4, 1)
    # notebook_line is the line of the .ipynb file holding the code.
    lines = train.read_text().splitlines()
    assert "F.dropout(x, 0.2)" in lines[first["notebook_line"] - 1]
    assert '"model.eval\\n"' in lines[second["notebook_line"] - 1]


def test_directories_include_notebooks_but_not_checkpoints(train: Path) -> None:
    checkpoints = train.parent / "nb" / ".ipynb_checkpoints"
    checkpoints.mkdir(parents=True)
    shutil.copy(train, checkpoints / "train-checkpoint.ipynb")
    shutil.copy(train, train.parent / "nb" / "copy.ipynb")
    paths = {line.split(":")[0] for line in run("--quiet", ".").output.splitlines()}
    assert paths == {"train.ipynb", str(Path("nb/copy.ipynb"))}


def test_stdin_notebook(train: Path) -> None:
    result = run("--stdin-filename", "train.ipynb", "-", input=train.read_text())
    assert result.output.splitlines()[:2] == EXPECTED


def test_ipython_syntax_is_neutralised_and_never_reported() -> None:
    cells = [
        "%load_ext autoreload\n%autoreload 2\n!pip install timm \\\n    torchvision\nimport torch",
        "files = !ls data\nsizes, names = %sx du -s data\n%time model.eval\nmodel?\ntorch.nn??",
        "for step in range(3):\n    %time step\n    !echo {step}\n    model.eval",
        "%%bash\necho 'model.eval'\nmodel.eval",
        "/print 1 2\n,print a b\n;print a b",
    ]
    assert codes(notebook(*cells)) == [(3, 4, "BNL004")]


def test_automagic_lines_are_ipython_when_they_are_no_python() -> None:
    # IPython runs `pip install ...` as `%pip install ...`; `curl ...` fails there too.
    magics = "pip install -q transformers\nmatplotlib inline\ncd ..\nmodel.eval"
    assert codes(notebook(magics)) == [(1, 4, "BNL004")]
    python = "time = 3\nls = time\nls -time\ncurl https://example.com"
    found = lint_notebook(notebook(python), "n.ipynb", Config())
    assert [(d.extra["cell"], d.line, d.code) for d in found] == [(1, 4, "BNL901")]


def test_lines_that_only_look_like_ipython_are_python() -> None:
    strings = 'doc = """\n%d items\n!important\nwhy?\n"""\nmodel.eval'
    brackets = "ok = (1\n    != 2)\nmodel.eval"
    program = Program.build([(1, strings), (2, brackets)])
    assert "pass" not in program.text.replace(f"pass  # {program.tag}\n", "")
    assert codes(notebook(strings, brackets)) == [(1, 6, "BNL004"), (2, 3, "BNL004")]


def test_noqa_and_skip_file_work_in_cells() -> None:
    assert codes(notebook("model.eval  # noqa: BNL004", "model.train  # noqa")) == []
    assert codes(notebook("# bnlint: skip-file", "model.eval")) == []


def test_a_syntax_error_is_reported_in_its_cell() -> None:
    found = lint_notebook(notebook("x = 1", "def broken(:\n    pass"), "n.ipynb", Config())
    assert [(d.extra["cell"], d.line, d.code) for d in found] == [(2, 1, "BNL901")]


def test_a_syntax_error_names_lines_of_its_cell() -> None:
    # Python counts the lines of the whole program; the message counts the cell's.
    cells = ("import torch\nx = 1", "y = 2\n\ndef todo():\n# your code here")
    (found,) = lint_notebook(notebook(*cells), "n.ipynb", Config())
    assert (found.extra["cell"], found.line) == (2, 4)
    assert found.message.endswith("after function definition on line 3")


def test_a_block_does_not_run_on_into_the_next_cell() -> None:
    # Jupyter runs each cell on its own: a loop without a body is an error, even
    # when the next cell is indented (IPython strips that cell's indentation).
    found = codes(notebook("for i in range(3):", "    model.eval"))
    assert found == [(1, 1, "BNL901")]


def test_notebooks_in_other_languages_are_skipped() -> None:
    r_kernel = {"kernelspec": {"language": "R", "name": "ir"}}
    cells = [{"cell_type": "code", "source": "f <- function(x) { x }"}]
    text = json.dumps({"cells": cells, "nbformat": 4})
    assert codes(text) == [(1, 1, "BNL901")]
    other = json.loads(text) | {"metadata": r_kernel}
    assert codes(json.dumps(other)) == []


@pytest.mark.parametrize(
    ("content", "where", "message"),
    [
        ('{"cells": [', "1:12", "not a notebook: invalid JSON: Expecting value"),
        ('{"cells": [\n  {"cell_type": "code",', "2:24", "Expecting property name"),
        (
            '{"nbformat": 3, "worksheets": []}',
            "1:1",
            "not a Jupyter notebook in nbformat 4 (nbformat 3)",
        ),
        ("[1, 2]", "1:1", "not a Jupyter notebook in nbformat 4"),
        ('{"nbformat": 4, "cells": {}}', "1:1", "not a valid notebook: no list of cells"),
        (
            '{"nbformat": 4, "cells": [{"cell_type": "code"}]}',
            "1:1",
            "cell 1 has no type or source",
        ),
        ("[" * 100_000 + "]" * 100_000, "1:1", "not a notebook: JSON nested too deeply"),
    ],
)
def test_a_broken_notebook_is_one_bnl902_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: str, where: str, message: str
) -> None:
    """At the place the JSON parser gives, where it gives one."""
    monkeypatch.chdir(tmp_path)
    Path("broken.ipynb").write_text(content)
    Path("ok.py").write_text("model.eval\n")
    result = run("--quiet", "broken.ipynb", "ok.py")
    assert result.exit_code == 1
    broken, ok = result.output.splitlines()
    assert broken.startswith(f"broken.ipynb:{where}: BNL902 ") and message in broken
    assert ok.startswith("ok.py:1:1: BNL004")


def test_a_broken_notebook_in_a_subprocess_prints_no_traceback(tmp_path: Path) -> None:
    (tmp_path / "broken.ipynb").write_bytes(b"\x89PNG\r\n\x1a\n\0\0binary")
    proc = subprocess.run(
        [sys.executable, "-m", "bnlint", "--no-cache", "."],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.startswith("broken.ipynb:1:1: BNL902 binary content")


# -- fixing ---------------------------------------------------------------------------


def test_fix_rewrites_only_the_changed_sources(train: Path) -> None:
    before = train.read_text()
    result = run("--fix", "train.ipynb")
    assert result.output.splitlines()[-1] == "Fixed 2 problems, 0 remaining."
    after = train.read_text()
    changed = [
        (old, new)
        for old, new in zip(before.splitlines(), after.splitlines(), strict=True)
        if old != new
    ]
    assert changed == [
        (
            '    "        return self.fc(F.dropout(x, 0.2))"',
            '    "        return self.fc(F.dropout(x, 0.2, training=self.training))"',
        ),
        ('    "model.eval\\n",', '    "model.eval()\\n",'),
    ]
    assert after.endswith("}\n")  # everything else, outputs and ids included, is the same
    assert run("train.ipynb").exit_code == 0


def test_diff_of_a_notebook_writes_nothing(train: Path) -> None:
    before = train.read_bytes()
    result = run("--diff", "train.ipynb")
    assert result.exit_code == 1
    assert '+    "model.eval()\\n",' in result.output
    assert train.read_bytes() == before


def test_fix_keeps_other_json_styles(tmp_path: Path) -> None:
    """String sources, two-space indent, ASCII escapes, no final newline, odd key order."""
    cells = [
        {"source": "import torch\nlabel = 'caf\xe9'\nmodel.eval", "cell_type": "code", "id": "x"},
        {"cell_type": "markdown", "source": ["# caf\xe9"], "metadata": {"z": 1, "a": 2}},
    ]
    data = {"nbformat_minor": 4, "nbformat": 4, "cells": cells, "metadata": {}}
    text = json.dumps(data, indent=2)  # ensure_ascii: \u00e9 escapes
    outcome = fix_notebook(text, "n.ipynb", Config())
    assert outcome.applied == 1 and outcome.remaining == []
    cells[0]["source"] = "import torch\nlabel = 'caf\xe9'\nmodel.eval()"
    assert outcome.text == json.dumps(data, indent=2)


def test_fix_restores_magics_and_keeps_cells_apart() -> None:
    text = notebook(
        "%matplotlib inline\nmodel.eval\n!nvidia-smi",
        ("markdown", "text"),
        ["for batch in loader:\n", "    %time step(batch)\n", "    model.train"],
    )
    outcome = fix_notebook(text, "n.ipynb", Config())
    assert outcome.applied == 2
    sources = [cell["source"] for cell in json.loads(outcome.text)["cells"]]
    assert sources == [
        "%matplotlib inline\nmodel.eval()\n!nvidia-smi",
        "text",
        ["for batch in loader:\n", "    %time step(batch)\n", "    model.train()"],
    ]


def test_a_cell_indented_as_a_whole_runs_as_ipython_dedents_it() -> None:
    """IPython strips the first line's indentation from every line that has it:
    such a cell is no syntax error. Its findings keep the cell's columns, it gets
    no fix (an edit would need re-indenting), and fixing the others leaves it be."""
    indented = ["\n", "  # on the GPU\n", "  model.eval\n", "\n", "  y = model(x)\n"]
    text = notebook("import torch", indented, "model.train")
    found = lint_notebook(text, "n.ipynb", Config())
    assert [(d.extra["cell"], d.line, d.column, d.code) for d in found] == [
        (2, 3, 3, "BNL004"),
        (3, 1, 1, "BNL004"),
    ]
    assert found[0].fix is None and found[1].fix is not None
    outcome = fix_notebook(text, "n.ipynb", Config())
    sources = [cell["source"] for cell in json.loads(outcome.text)["cells"]]
    assert sources == ["import torch", indented, "model.train()"]


def cross_cell_linter(fix_line: int):
    """A stand-in for lint_source: one finding on program line 1 whose fix edits ``fix_line``."""

    def lint(text: str, path: str, config: Config, package: str | None) -> list[Diagnostic]:
        if "edited" in text:
            return []
        fix = Fix((Edit(fix_line, 1, fix_line, 1, "edited = 1\n"),), safe=True)
        return [Diagnostic(path, 1, 1, 1, 2, "BNL004", "n", "m", fix=fix)]

    return lint


@pytest.mark.parametrize(("fix_line", "kept"), [(1, True), (2, False), (3, False), (4, False)])
def test_a_fix_outside_its_cell_is_dropped(
    monkeypatch: pytest.MonkeyPatch, fix_line: int, kept: bool
) -> None:
    # Program lines: 1 `a = 1` (cell 1), 2 `%time a` (placeholder), 3 the separator, 4 `b = 2`.
    monkeypatch.setattr("bnlint.notebook.lint_source", cross_cell_linter(fix_line))
    text = notebook("a = 1\n%time a", "b = 2")
    (found,) = lint_notebook(text, "n.ipynb", Config())
    assert (found.fix is not None) is kept
    outcome = fix_notebook(text, "n.ipynb", Config())
    assert (outcome.applied == 1) is kept
    assert (outcome.text != text) is kept
