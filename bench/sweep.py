"""`trainctl sweep` against a hand-written in-process Optuna loop on the same 8-trial grid.

The grid: the digits MLP of configs/digits_mlp.yaml for 5 epochs, over optimizer.lr (1e-3, 3e-3),
model.hidden ([128], [256, 256]) and loss.label_smoothing (0.0, 0.1), one trial at a time.

The hand-written loop is what a user writes in ten minutes: load and split the digits once,
standardise them, then `study.optimize` over Optuna's GridSampler, each trial building the MLP, Adam
with a per-step cosine schedule, training in batches of 64 and validating every epoch (the trial's
value is its best validation accuracy). It keeps nothing on disk. `trainctl sweep` does the same
search with everything it keeps: a run folder per trial (checkpoints every epoch, metrics, curves,
the test evaluation of the best epoch), the study in SQLite, a leaderboard (its trials draw no figures: logging.figures is off in sweeps).

Each is a fresh process, imports included, and they alternate so that the machine's load hits
both alike; the report is each one's median wall time, the ratio of the medians and the median of
the ratios within each alternating pair, and the same for CPU time (user + system, the sweep's worker
processes included), which moves far less with the machine's load. Both run with OMP_NUM_THREADS=1 unless it is set: on a
small machine shared with other work, torch's OpenMP threads spin against the other processes (on
2 busy cores, 100 steps of this MLP took 24 s with two threads and 0.3 s with one), which would
measure the machine's load rather than either program.

    python bench/sweep.py [--repeats 3] [--jobs 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "digits_mlp.yaml"
EPOCHS = 5
GRID = {
    "optimizer.lr": [1e-3, 3e-3],
    "model.hidden": [[128], [256, 256]],
    "loss.label_smoothing": [0.0, 0.1],
}


def grid_options() -> list[str]:
    return [word for key, values in GRID.items() for word in ("--grid", f"{key}={json.dumps(values)[1:-1]}")]


def trainctl_command(out: Path, jobs: int) -> list[str]:
    return [
        str(Path(sys.executable).parent / "trainctl"),
        "sweep",
        str(CONFIG),
        *grid_options(),
        "--set",
        f"trainer.epochs={EPOCHS}",
        "--set",
        "trainer.device=cpu",
        "--jobs",
        str(jobs),
        "--out",
        str(out),
    ]


def hand_written_sweep() -> None:
    """The in-process loop, run by `python bench/sweep.py --hand-written` in a fresh process."""
    import optuna
    import torch
    from sklearn.datasets import load_digits
    from torch import nn

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    digits = load_digits()
    x = torch.tensor(digits.data, dtype=torch.float32)
    y = torch.tensor(digits.target)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    n_test, n_val = int(0.2 * len(x)), int(0.1 * len(x))
    val, train = order[n_test : n_test + n_val], order[n_test + n_val :]
    mean, std = x[train].mean(0), x[train].std(0).clamp(min=1e-6)
    x = (x - mean) / std

    def objective(trial: optuna.Trial) -> float:
        lr = trial.suggest_categorical("optimizer.lr", GRID["optimizer.lr"])
        hidden = trial.suggest_categorical("model.hidden", [str(h) for h in GRID["model.hidden"]])
        smoothing = trial.suggest_categorical("loss.label_smoothing", GRID["loss.label_smoothing"])
        torch.manual_seed(0)
        widths = [64, *json.loads(hidden), 10]
        layers: list[nn.Module] = []
        for n_in, n_out in itertools.pairwise(widths):
            layers += [nn.Linear(n_in, n_out), nn.ReLU()]
        model = nn.Sequential(*layers[:-1])
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, EPOCHS * -(-len(train) // 64))
        loss_fn = nn.CrossEntropyLoss(label_smoothing=smoothing)
        generator = torch.Generator().manual_seed(0)
        best = 0.0
        for _ in range(EPOCHS):
            model.train()
            for index in train[torch.randperm(len(train), generator=generator)].split(64):
                loss = loss_fn(model(x[index]), y[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
            model.eval()
            with torch.no_grad():
                best = max(best, (model(x[val]).argmax(1) == y[val]).float().mean().item())
        return best

    space = {key: [str(v) if isinstance(v, list) else v for v in values] for key, values in GRID.items()}
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.GridSampler(space, seed=0))
    study.optimize(objective, n_trials=8)
    if len(study.trials) != 8 or study.best_value < 0.9:
        raise SystemExit(f"the hand-written sweep went wrong: {len(study.trials)} trials, best {study.best_value}")


def timed(command: list[str]) -> tuple[float, float]:
    """Wall seconds, and CPU seconds (user + system) of the command and every process it waited for
    (the sweep's workers): the CPU time moves far less than the wall time with the machine's load."""
    environment = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=environment)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed:\n{result.stderr}")
    return elapsed, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=1, help="trainctl sweep --jobs")
    parser.add_argument("--hand-written", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.hand_written:
        hand_written_sweep()
        return
    hand_written = [sys.executable, str(Path(__file__).resolve()), "--hand-written"]
    labels = ("hand-written Optuna loop", "trainctl sweep")
    measured: dict[str, list[tuple[float, float]]] = {label: [] for label in labels}
    loads: list[float] = []  # the 1-minute load average before each pair
    with tempfile.TemporaryDirectory() as workdir:
        timed(hand_written)  # warm the file cache
        for repeat in range(args.repeats):
            loads.append(os.getloadavg()[0])
            measured[labels[0]].append(timed(hand_written))
            measured[labels[1]].append(timed(trainctl_command(Path(workdir) / f"sweep-{repeat}", args.jobs)))
    print(
        f"8-trial grid, digits MLP, {EPOCHS} epochs per trial, --jobs {args.jobs}, {args.repeats} alternating "
        f"repeats, OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}, load average "
        f"{statistics.median(loads):.1f} (median) on {os.cpu_count()} cores"
    )
    for kind, index in (("wall", 0), ("CPU", 1)):
        values = {label: [run[index] for run in runs] for label, runs in measured.items()}
        base = statistics.median(values[labels[0]])
        print(f"{kind} time:")
        for label in labels:
            median = statistics.median(values[label])
            shown = "  ".join(f"{value:.1f}" for value in values[label])
            print(f"  {label:<25} median {median:6.2f} s  ratio {median / base:.2f}  (runs: {shown})")
        pairs = zip(values[labels[1]], values[labels[0]], strict=True)
        print(f"  median of the pairs' ratios: {statistics.median(ours / theirs for ours, theirs in pairs):.2f}")


if __name__ == "__main__":
    main()
