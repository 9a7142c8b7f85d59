"""Train a small network, then trace it for deployment without `model.eval()`.

`torch.jit.trace` records the graph in training mode: dropout and batch
statistics are baked into the exported model (BNL005). The training loop also
switches to eval mode for validation and never back (BNL003).
"""

import sys

import torch
import torch.nn.functional as F
from tiny_nets import SmallNet, random_loader


def main(output):
    torch.manual_seed(0)
    model = SmallNet()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    train_loader = random_loader(shuffle=True, seed=1)
    val_loader = random_loader(seed=2)
    model.train()
    for epoch in range(2):
        for inputs, labels in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            for inputs, labels in val_loader:
                logits = model(inputs)
                print(f"epoch {epoch}: batch loss {F.cross_entropy(logits, labels).item():.3f}")
                break
    model.train()
    traced = torch.jit.trace(model, torch.randn(2, 16))
    if output:
        traced.save(output)


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else None)
