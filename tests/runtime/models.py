"""Small models, loaders and training loops shared by the runtime tests.

Lines marked ``# site: NAME`` are where the monitor must locate its findings;
:func:`site` returns their line numbers.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset


def site(name: str, path: str = __file__) -> int:
    """The line of ``path`` that carries the comment ``# site: name``."""
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if line.rstrip().endswith(f"# site: {name}"):
            return number
    raise LookupError(name)


def dataset(n: int = 32, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 3, 8, 8, generator=generator), torch.arange(n) % 4)


def loader(data: Dataset | None = None, batch_size: int = 8) -> DataLoader:
    return DataLoader(data if data is not None else dataset(), batch_size=batch_size)


class SmallCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn(self.conv(x)))
        return self.fc(self.drop(x.mean((2, 3))))


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class Backbone(nn.Module):
    """A ResNet-style backbone, standing in for a pretrained one."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(Block(8), Block(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layer1(F.relu(self.bn1(self.stem(x))))


class Classifier(nn.Module):
    """Backbone plus a trainable head with its own BatchNorm and dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.backbone = Backbone()
        self.head = nn.Sequential(
            nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.2), nn.Linear(8, 4)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x).mean((2, 3)))


def frozen_backbone_classifier() -> Classifier:
    model = Classifier()
    model.backbone.requires_grad_(False)
    return model


def sgd(model: nn.Module) -> torch.optim.Optimizer:
    return torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)


def train_epoch(model: nn.Module, data: DataLoader, optimizer: torch.optim.Optimizer) -> None:
    for x, y in data:
        loss = F.cross_entropy(model(x), y)  # site: train
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


@torch.no_grad()
def evaluate(model: nn.Module, data: DataLoader) -> float:
    """A correct evaluation function, as long as the caller puts the model in eval mode."""
    correct = 0
    for x, y in data:
        logits = model(x)  # site: evaluate
        correct += int((logits.argmax(1) == y).sum())
    return correct / len(data.dataset)
