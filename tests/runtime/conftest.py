from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

# Tiny models on 2 cores: thread start-up costs more than it saves.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
