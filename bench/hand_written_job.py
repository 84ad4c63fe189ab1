"""The job `trainctl train configs/digits_mlp.yaml` does, written by hand as a plain PyTorch script.

bench/overhead.py runs it as a fresh process beside the trainctl command to measure what trainctl
costs as a whole, imports included. It does the same work: load the digits, split 70/10/20 with a
seed, standardise on the training split, train a 64-256-256-10 MLP with Adam 1e-3 and a per-step
cosine schedule for 20 epochs in batches of 64, validate every epoch, append metrics to a JSON
lines file, save the last and best checkpoints every epoch, and test the best one.
"""

import json
import os
import time

import torch
from sklearn.datasets import load_digits
from torch import nn

torch.manual_seed(0)
digits = load_digits()
x = torch.tensor(digits.data, dtype=torch.float32)
y = torch.tensor(digits.target)
order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
n_test, n_val = int(0.2 * len(x)), int(0.1 * len(x))
test, val, train = order[:n_test], order[n_test : n_test + n_val], order[n_test + n_val :]
mean, std = x[train].mean(0), x[train].std(0).clamp(min=1e-6)
x = (x - mean) / std

model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
epochs, batch_size = 20, 64
steps = epochs * -(-len(train) // batch_size)
scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps)
loss_fn = nn.CrossEntropyLoss()
generator = torch.Generator().manual_seed(0)
os.makedirs("hand_written_run/checkpoints", exist_ok=True)
best = 0.0
with open("hand_written_run/metrics.jsonl", "w") as metrics:
    for epoch in range(1, epochs + 1):
        started = time.perf_counter()
        model.train()
        total = torch.zeros(())
        for index in train[torch.randperm(len(train), generator=generator)].split(batch_size):
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total += loss.detach() * len(index)
        model.eval()
        with torch.no_grad():
            val_loss = loss_fn(model(x[val]), y[val]).item()
            accuracy = (model(x[val]).argmax(1) == y[val]).float().mean().item()
        row = {
            "epoch": epoch,
            "train/loss": total.item() / len(train),
            "val/loss": val_loss,
            "val/accuracy": accuracy,
            "seconds": time.perf_counter() - started,
        }
        metrics.write(json.dumps(row) + "\n")
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch}
        torch.save(state, "hand_written_run/checkpoints/last.pt")
        if accuracy > best:
            best = accuracy
            torch.save(state, "hand_written_run/checkpoints/best.pt")
model.load_state_dict(torch.load("hand_written_run/checkpoints/best.pt", weights_only=True)["model"])
with torch.no_grad():
    test_accuracy = (model(x[test]).argmax(1) == y[test]).float().mean().item()
with open("hand_written_run/summary.json", "w") as summary:
    json.dump({"test_accuracy": test_accuracy}, summary)
print(f"test accuracy {test_accuracy:.4f}")
