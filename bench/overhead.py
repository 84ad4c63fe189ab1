"""trainctl's training loop against a hand-written PyTorch loop doing the same job.

The job is the default digits MLP (64-256-256-10, Adam 1e-3, batch 64, 20 epochs, validation
accuracy every epoch) on the same preloaded tensors. trainctl runs with its live progress bars on
(rendered into memory), once without a run folder (the loop itself) and once as `trainctl train`
runs it, also writing metrics.jsonl and checkpoints every epoch. All three alternate several times
in one process so that machine noise hits each; the report is the median training time of each
and its ratio to the hand-written loop.

    python bench/overhead.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import io
import statistics
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from torch import nn

from trainctl.build import build_training
from trainctl.config import load_config
from trainctl.progress import LiveReporter
from trainctl.runs import RunFolder
from trainctl.trainer import Trainer

CONFIG = Path(__file__).resolve().parent.parent / "configs" / "digits_mlp.yaml"
OVERRIDES = ["scheduler=null", "trainer.device=cpu"]  # the hand-written loop has no scheduler


def hand_written(data, epochs: int, batch_size: int, seed: int) -> float:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    x, y = data.train.inputs, data.train.targets
    generator = torch.Generator().manual_seed(seed)
    started = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for index in torch.randperm(len(x), generator=generator).split(batch_size):
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            accuracy = (model(data.val.inputs).argmax(1) == data.val.labels).float().mean().item()
    elapsed = time.perf_counter() - started
    assert accuracy > 0.9
    return elapsed


def through_trainctl(config, workdir: Path | None) -> float:
    parts = build_training(config)
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    run = RunFolder.create(workdir, "bench") if workdir is not None else None
    trainer = Trainer(
        model=parts.model, loss_fn=parts.loss_fn, optimizer=parts.optimizer, data=parts.data,
        metrics=config.metrics, epochs=config.trainer.epochs, batch_size=config.data.batch_size,
        monitor=config.trainer.monitor, seed=config.seed, run=run, config=config.to_dict(),
        reporter=LiveReporter(console),
    )
    return trainer.fit().seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    config = load_config(CONFIG, OVERRIDES)
    data = build_training(config).data
    steps = config.trainer.epochs * -(-len(data.train) // config.data.batch_size)

    hand_written(data, 2, config.data.batch_size, config.seed)  # warm-up: first-call costs out of the way
    times: dict[str, list[float]] = {"hand-written": [], "trainctl loop": [], "trainctl run": []}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(args.repeats):
            times["hand-written"].append(hand_written(data, config.trainer.epochs, config.data.batch_size, config.seed))
            times["trainctl loop"].append(through_trainctl(config, None))
            times["trainctl run"].append(through_trainctl(config, Path(workdir)))

    base = statistics.median(times["hand-written"])
    print(f"digits MLP, {config.trainer.epochs} epochs, {steps} steps, {args.repeats} alternating repeats, "
          f"{torch.get_num_threads()} threads")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"  {name:<14} median {median:.3f} s  ({1000 * median / steps:.2f} ms/step)  ratio {median / base:.3f}")
    per_epoch = (statistics.median(times["trainctl run"]) - statistics.median(times["trainctl loop"])) / config.trainer.epochs
    print(f"  run folder (metrics.jsonl + checkpoints) costs {1000 * per_epoch:.1f} ms per epoch")


if __name__ == "__main__":
    main()
