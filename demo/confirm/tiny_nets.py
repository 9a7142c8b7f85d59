"""Small models and random data shared by the `bnlint confirm` demo scripts."""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset


class SmallNet(nn.Module):
    """A small MLP with BatchNorm and dropout: both behave differently in eval mode."""

    def __init__(self, features=16, classes=4):
        super().__init__()
        self.backbone = nn.Sequential(nn.Linear(features, 32), nn.BatchNorm1d(32), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(32, classes))

    def forward(self, x):
        return self.head(self.backbone(x))


def random_loader(samples=256, batch_size=32, features=16, classes=4, shuffle=False, seed=0):
    generator = torch.Generator().manual_seed(seed)
    inputs = torch.randn(samples, features, generator=generator)
    labels = torch.randint(0, classes, (samples,), generator=generator)
    return DataLoader(TensorDataset(inputs, labels), batch_size=batch_size, shuffle=shuffle)
