"""A run over a tree of bad files reports every good file, one line per bad file,
exits 1 and prints no traceback (the spine issue's bad-input contract)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from bnlint.config import Config
from bnlint.engine import lint_files
from bnlint.source import UnreadableSource, decode_source
from tests.conftest import BAD_MODEL


def build_tree(root: Path) -> None:
    (root / "good.py").write_text(BAD_MODEL)
    (root / "syntax.py").write_text("import torch\ndef f(:\n    pass\n")
    (root / "py2.py").write_text('import torch\nprint "hello"\n')
    (root / "latin.py").write_bytes(
        "# -*- coding: latin-1 -*-\n# caf\xe9\nimport torch\n".encode("latin-1")
    )
    (root / "undecodable.py").write_bytes(b"import torch\nx = '\xff\xfe'\n")
    (root / "blob.py").write_bytes(bytes(range(256)) * 8)
    (root / "empty.py").write_text("")
    body = "".join(f"def f{i}(x):\n    return F.relu(x) + {i}\n" for i in range(100_000))
    (root / "generated.py").write_text("import torch.nn.functional as F\n" + body)
    assert (root / "generated.py").stat().st_size > 4_000_000
    (root / "broken.py").symlink_to(root / "missing-target.py")
    (root / "unreadable.py").write_text(BAD_MODEL)
    (root / "unreadable.py").chmod(0)  # root reads it anyway: see the in-process test


def test_bad_input_tree(tmp_path: Path) -> None:
    root = tmp_path / "tree"
    root.mkdir()
    build_tree(root)
    proc = subprocess.run(
        [sys.executable, "-m", "bnlint", "."], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stdout + proc.stderr
    by_file: dict[str, list[str]] = {}
    for line in proc.stdout.splitlines()[:-1]:
        by_file.setdefault(line.split(":", 1)[0], []).append(line)
    assert [line.split(" ", 2)[1] for line in by_file.pop("good.py")] == ["BNL201", "BNL004"]
    expected = {
        "syntax.py": "BNL901 syntax error",
        "py2.py": "BNL901 syntax error: Missing parentheses in call to 'print'",
        "undecodable.py": "BNL902 cannot decode",
        "blob.py": "BNL902 binary content",
        "broken.py": "BNL902 cannot read file: broken symbolic link",
        "unreadable.py": "BNL902 cannot read file",
    }
    if os.geteuid() == 0:
        del expected["unreadable.py"]
        assert len(by_file.pop("unreadable.py")) == 2  # its findings, read as root
    assert set(by_file) == set(expected)  # latin.py, empty.py, generated.py are clean
    for name, start in expected.items():
        (line,) = by_file[name]
        assert line.split(": ", 1)[1].startswith(start), line


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bnlint", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "path does not exist" in proc.stderr


def test_unreadable_file_is_reported_and_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked, good = tmp_path / "locked.py", tmp_path / "good.py"
    locked.write_text(BAD_MODEL)
    good.write_text(BAD_MODEL)
    read_bytes = Path.read_bytes

    def refuse(path: Path) -> bytes:
        if path.name == "locked.py":
            raise PermissionError(13, "Permission denied")
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse)
    results = lint_files([locked, good], Config())
    assert [d.message for d in results[0].diagnostics] == ["cannot read file: Permission denied"]
    assert [d.code for d in results[1].diagnostics] == ["BNL201", "BNL004"]


@pytest.mark.parametrize(
    ("data", "line", "column", "message"),
    [
        (
            b"import torch\nx = '\xff\xfe'\n",
            2,
            6,
            "cannot decode byte 0xff as utf-8: invalid start byte"
            " (no coding cookie names another encoding)",
        ),
        # Not a bad declaration: there is none, and the first line is Latin-1.
        (
            b"# Augmentations \xe9crites\nimport torch\n",
            1,
            17,
            "cannot decode byte 0xe9 as utf-8: invalid continuation byte"
            " (no coding cookie names another encoding)",
        ),
        (
            b"# -*- coding: ascii -*-\nname = 'caf\xe9'\n",
            2,
            12,
            "cannot decode byte 0xe9 as ascii: ordinal not in range(128)",
        ),
        (b"# -*- coding: klingon -*-\n", 1, 1, "bad encoding declaration: unknown encoding"),
    ],
)
def test_undecodable_bytes_are_reported_where_they_are(
    data: bytes, line: int, column: int, message: str
) -> None:
    with pytest.raises(UnreadableSource) as raised:
        decode_source(data)
    assert (raised.value.line, raised.value.column) == (line, column)
    assert str(raised.value).startswith(message)
