"""Fine-tune only the head of a small network whose backbone is "frozen".

The backbone's parameters get `requires_grad = False`, but `model.train()`
keeps its BatchNorm in training mode: its running statistics keep moving on
every batch, so the frozen backbone still changes (BNL101). The validation loop
also reads the training loader (BNL301).
"""

import torch
import torch.nn.functional as F
from tiny_nets import SmallNet, random_loader


def main():
    torch.manual_seed(0)
    model = SmallNet()
    for parameter in model.backbone.parameters():
        parameter.requires_grad = False
    optimizer = torch.optim.Adam(model.head.parameters(), lr=1e-3)
    train_loader = random_loader(shuffle=True, seed=1)
    for epoch in range(2):
        model.train()
        for inputs, labels in train_loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(inputs), labels)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            val_loss = 0.0
            for inputs, labels in train_loader:
                logits = model(inputs)
                val_loss += F.cross_entropy(logits, labels).item()
        print(f"epoch {epoch}: loss {val_loss / len(train_loader):.3f}")


if __name__ == "__main__":
    main()
