"""Train a small classifier on random data; its evaluation code has two silent bugs.

`bnlint demo/confirm` finds them statically; `bnlint confirm demo/confirm/eval_mistakes.py`
runs the script and confirms them on the live model:

- `evaluate()` never calls `model.eval()`: BatchNorm uses batch statistics and
  updates its running statistics on the validation data, dropout stays on (BNL001);
- `test()` switches to eval mode but keeps autograd on (BNL002).
"""

import argparse

import torch
import torch.nn.functional as F
from tiny_nets import SmallNet, random_loader


def train_one_epoch(model, loader, optimizer):
    model.train()
    for inputs, labels in loader:
        optimizer.zero_grad()
        loss = F.cross_entropy(model(inputs), labels)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def evaluate(model, loader):
    correct = total = 0
    for inputs, labels in loader:
        logits = model(inputs)
        correct += (logits.argmax(1) == labels).sum().item()
        total += labels.numel()
    return correct / total


def test(model, loader):
    model.eval()
    correct = total = 0
    for inputs, labels in loader:
        logits = model(inputs)
        correct += (logits.argmax(1) == labels).sum().item()
        total += labels.numel()
    return correct / total


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    torch.manual_seed(0)
    model = SmallNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_loader = random_loader(shuffle=True, seed=1)
    val_loader = random_loader(seed=2)
    for epoch in range(args.epochs):
        train_one_epoch(model, train_loader, optimizer)
        print(f"epoch {epoch}: validation accuracy {evaluate(model, val_loader):.2f}")
    print(f"test accuracy {test(model, random_loader(seed=3)):.2f}")


if __name__ == "__main__":
    main()
