"""Fine-tune a small CNN + attention head on CIFAR-10 (demo for bnlint).

This script has the silent train/eval mistakes bnlint exists to catch. Run
`bnlint demo/` to see them; every one of them trains without an error.
"""

import argparse

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader
from torchvision import datasets, transforms


class ConvBlock(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(cout)

    def forward(self, x):
        return F.relu(self.bn(self.conv(x)))


class AttentionHead(nn.Module):
    def __init__(self, dim, heads=4, attn_drop=0.1, proj_drop=0.1):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)
        self.attn_drop = attn_drop
        self.proj_drop = proj_drop

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).unbind(2)
        x = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), dropout_p=self.attn_drop
        )
        x = self.proj(x.transpose(1, 2).reshape(b, n, c))
        return F.dropout(x, self.proj_drop)


class Net(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.backbone = nn.Sequential(ConvBlock(3, 32), nn.MaxPool2d(2), ConvBlock(32, 64))
        self.head = AttentionHead(64)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.backbone(x).flatten(2).transpose(1, 2)
        return self.fc(self.head(x).mean(1))


def evaluate(model, loader):
    model.eval
    correct = total = 0
    for images, labels in loader:
        correct += (model(images).argmax(1) == labels).sum().item()
        total += labels.numel()
    return correct / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--checkpoint", default="pretrained.pt")
    args = parser.parse_args()

    train_tf = transforms.Compose(
        [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor()]
    )
    train_set = datasets.CIFAR10("data", train=True, transform=train_tf, download=True)
    val_set = datasets.CIFAR10("data", train=False, transform=train_tf, download=True)
    train_loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True)
    val_loader = DataLoader(val_set, batch_size=256)

    model = Net()
    model.load_state_dict(torch.load(args.checkpoint))
    # Freeze the pretrained backbone and fine-tune the head only.
    for p in model.backbone.parameters():
        p.require_grad = False
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-4)

    for epoch in range(args.epochs):
        for images, labels in train_loader:
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        print(f"epoch {epoch}: val acc {evaluate(model, val_loader):.3f}")

    example = torch.randn(1, 3, 32, 32)
    traced = torch.jit.trace(model, example)
    traced.save("model.pt")

    with torch.no_grad:
        print("train acc", evaluate(model, train_loader))


if __name__ == "__main__":
    main()
