"""trainctl against hand-written PyTorch doing the same job: the training loop, and the whole process.

Loop: for the digits MLP and the digits CNN (each with its config's model, Adam 1e-3, batch 64,
20 epochs, validation loss and accuracy every epoch, on the same preloaded tensors; trainctl also
computes precision, recall and F1 from its confusion matrix), a hand-written loop, trainctl's
trainer with its live progress bars on (rendered into memory), the same with --quiet, and the same
as `trainctl train` runs it (also writing metrics.jsonl and checkpoints every epoch). They
alternate in one process so that machine noise hits each alike; the report is the median training
time per step and its ratio to the hand-written loop.

Process: `trainctl train configs/digits_mlp.yaml --quiet` against `bench/hand_written_job.py`,
a plain script doing the same job (load the digits, split, standardise, train, validate, save
metrics and checkpoints, test the best epoch), each a fresh process with its imports, alternating;
median wall time, ratio, and peak memory (max RSS).

    python bench/overhead.py [--repeats 5] [--process-repeats 3]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console

from trainctl.config.loading import load_config
from trainctl.runs import RunFolder
from trainctl.training.build import build_model, build_training
from trainctl.training.progress import LiveReporter, QuietReporter
from trainctl.training.settings import fit_settings
from trainctl.training.trainer import Trainer

ROOT = Path(__file__).resolve().parent.parent
# No scheduler, no dropout: the hand-written loop is the plain one people write.
OVERRIDES = ["scheduler=null", "trainer.device=cpu"]
JOBS = {
    "digits MLP": (ROOT / "configs" / "digits_mlp.yaml", OVERRIDES),
    "digits CNN": (ROOT / "configs" / "digits_cnn.yaml", [*OVERRIDES, "model.dropout=0.0"]),
}


def hand_written(config, data) -> float:
    model = build_model(config, data)  # the same architecture, as a plain nn.Module
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = torch.nn.CrossEntropyLoss()
    x, y = data.train.inputs, data.train.targets
    generator = torch.Generator().manual_seed(config.seed)
    started = time.perf_counter()
    for _ in range(config.trainer.epochs):
        model.train()
        for index in torch.randperm(len(x), generator=generator).split(config.data.batch_size):
            loss = loss_fn(model(x[index]), y[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():  # what a hand-written loop reports each epoch: validation loss and accuracy
            outputs = model(data.val.inputs)
            val_loss = loss_fn(outputs, data.val.targets).item()
            accuracy = (outputs.argmax(1) == data.val.labels).float().mean().item()
    elapsed = time.perf_counter() - started
    assert accuracy > 0.9 and val_loss < 1.0
    return elapsed


def through_trainctl(config, progress: bool, workdir: Path | None) -> float:
    parts = build_training(config)
    reporter = (
        LiveReporter(Console(file=io.StringIO(), force_terminal=True, width=120)) if progress else QuietReporter()
    )
    run = RunFolder.create(workdir, "bench") if workdir is not None else None
    trainer = Trainer(parts, fit_settings(config, parts, run), reporter=reporter)
    return trainer.fit().seconds


def compare_loops(name: str, config, repeats: int) -> None:
    data = build_training(config).data
    steps = config.trainer.epochs * -(-len(data.train) // config.data.batch_size)
    hand_written(config, data)  # warm-up: first-call costs out of the way
    times: dict[str, list[float]] = {"hand-written": [], "trainctl": [], "trainctl --quiet": [], "trainctl run": []}
    with tempfile.TemporaryDirectory() as workdir:
        for _ in range(repeats):
            times["hand-written"].append(hand_written(config, data))
            times["trainctl"].append(through_trainctl(config, True, None))
            times["trainctl --quiet"].append(through_trainctl(config, False, None))
            times["trainctl run"].append(through_trainctl(config, True, Path(workdir)))
    base = statistics.median(times["hand-written"])
    print(
        f"{name}: {config.trainer.epochs} epochs, {steps} steps, {repeats} alternating repeats, "
        f"{torch.get_num_threads()} threads"
    )
    for label, values in times.items():
        median = statistics.median(values)
        print(f"  {label:<17} {1000 * median / steps:6.3f} ms/step  ratio {median / base:.3f}")
    per_epoch = (
        statistics.median(times["trainctl run"]) - statistics.median(times["trainctl"])
    ) / config.trainer.epochs
    print(f"  run folder (metrics.jsonl + checkpoints): {1000 * per_epoch:.1f} ms per epoch")


def timed_process(command: list[str], cwd: str) -> tuple[float, float]:
    """Wall seconds and peak memory (MiB) of one child process."""
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{command} failed")
    return elapsed, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def compare_processes(repeats: int) -> None:
    trainctl = [
        str(Path(sys.executable).parent / "trainctl"),
        "train",
        str(ROOT / "configs" / "digits_mlp.yaml"),
        "--quiet",
        "--set",
        "trainer.device=cpu",
        "--set",
        "output_dir=runs",
    ]
    script = [sys.executable, str(ROOT / "bench" / "hand_written_job.py")]
    results: dict[str, list[tuple[float, float]]] = {"hand-written script": [], "trainctl train": []}
    with tempfile.TemporaryDirectory() as workdir:
        timed_process(script, workdir)  # warm the file cache
        for _ in range(repeats):
            results["hand-written script"].append(timed_process(script, workdir))
            results["trainctl train"].append(timed_process(trainctl, workdir))
    base = statistics.median(seconds for seconds, _ in results["hand-written script"])
    print(f"whole process, digits MLP job (imports included), {repeats} alternating repeats")
    for label, values in results.items():
        median = statistics.median(seconds for seconds, _ in values)
        peak = max(memory for _, memory in values)
        print(f"  {label:<19} {median:6.2f} s  ratio {median / base:.3f}  peak memory {peak:,.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--process-repeats", type=int, default=3)
    args = parser.parse_args()
    for name, (path, overrides) in JOBS.items():
        compare_loops(name, load_config(path, overrides), args.repeats)
    if args.process_repeats:
        compare_processes(args.process_repeats)


if __name__ == "__main__":
    main()
