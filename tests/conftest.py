from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

BAD_MODEL = textwrap.dedent(
    """\
    import torch
    import torch.nn.functional as F
    from torch import nn


    class Head(nn.Module):
        def forward(self, x):
            return F.dropout(x, 0.1)


    model = Head()
    model.eval
    """
)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temporary project folder with one bad file, as the current directory."""
    (tmp_path / "model.py").write_text(BAD_MODEL)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NO_COLOR", raising=False)
    return tmp_path
