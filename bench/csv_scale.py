"""trainctl against pandas and a hand-written PyTorch loop on large CSV tables: time and peak memory.

Tables of 200,000 and 1,000,000 rows are generated: 20 numeric columns, one text column (5 colours)
and an integer class label (3 classes). The job: read the CSV, split it 80/10/10, standardise the
numbers and one-hot encode the colours with the training rows' statistics, train an MLP
25-64-3 with Adam 1e-3 in batches of 512 for one epoch, then measure validation and test accuracy.

trainctl does it as `trainctl train` (which also writes metrics.jsonl, checkpoints, the test loss
report and curves.png); the reference is this file run with `--reference PATH`: pandas.read_csv,
pd.get_dummies and a plain PyTorch loop, saving the model once. Each run is a fresh process
(imports included), the contenders alternating so that machine noise hits each alike; the report
is the median wall time and the median peak memory (max RSS, from os.wait4), and their ratios to
the reference. torch runs on one thread in both: on a small, shared machine, two threads per
process make every step many times slower, whoever runs it.

`--compare-with DIR` times the trainctl of another checkout too (for a before/after), run with
PYTHONPATH=DIR; `--parquet` adds trainctl reading the same table from a Parquet file.

    python bench/csv_scale.py [--rows 200000 1000000] [--repeats 3] [--compare-with DIR] [--parquet]
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COLOURS = ["red", "green", "blue", "amber", "violet"]
BATCH, HIDDEN, FRACTION = 512, 64, 0.1


def write_table(rows: int, folder: Path) -> Path:
    """A CSV of `rows` rows (and the same table as Parquet): the label depends on three numbers
    and the colour, so both models have something to learn."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv
    import pyarrow.parquet

    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, 20))
    colour = rng.integers(0, len(COLOURS), rows)
    columns = {f"x{j}": pa.array(np.round(x[:, j] * 10 ** (j % 4), 4)) for j in range(20)}
    columns["colour"] = pa.array(np.array(COLOURS)[colour])
    score = x[:, 0] + x[:, 1] - x[:, 2] + (colour == 1)
    columns["label"] = pa.array(np.digitize(score, [-0.5, 0.5]))
    table = pa.table(columns)
    path = folder / f"table_{rows}.csv"
    pyarrow.csv.write_csv(table, path, pyarrow.csv.WriteOptions(quoting_style="none"))
    pyarrow.parquet.write_table(table, path.with_suffix(".parquet"))
    return path


def write_config(data: Path) -> Path:
    config = data.parent / f"{data.stem}_{data.suffix[1:]}.yaml"
    config.write_text(f"""name: {data.stem}
seed: 0
data: {{name: csv, path: {data.name}, target: label, batch_size: {BATCH}, val_fraction: {FRACTION}, test_fraction: {FRACTION}}}
model: {{name: mlp, hidden: [{HIDDEN}]}}
loss: {{name: cross_entropy}}
optimizer: {{name: adam, lr: 0.001}}
trainer: {{epochs: 1, device: cpu, threads: 1}}
metrics: [accuracy]
output_dir: runs
""")
    return config


def reference(path: str) -> None:
    """The job as a practitioner writes it with pandas and a plain PyTorch loop."""
    import numpy as np
    import pandas as pd
    import torch
    from torch import nn

    torch.set_num_threads(1)
    torch.manual_seed(0)
    frame = pd.read_csv(path)
    y = torch.tensor(frame.pop("label").to_numpy())
    order = np.random.default_rng(0).permutation(len(frame))
    held_out = math.ceil(FRACTION * len(frame))
    test, val, train = order[:held_out], order[held_out : 2 * held_out], order[2 * held_out :]
    numbers = frame.select_dtypes("number")
    mean, std = numbers.iloc[train].mean(), numbers.iloc[train].std(ddof=0)
    categories = sorted(frame["colour"].iloc[train].unique())
    one_hot = pd.get_dummies(pd.Categorical(frame["colour"], categories=categories))
    x = torch.from_numpy(
        np.concatenate([((numbers - mean) / std).to_numpy(np.float32), one_hot.to_numpy(np.float32)], 1)
    )
    del frame, numbers, one_hot
    model = nn.Sequential(nn.Linear(x.shape[1], HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, 3))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss()
    train = torch.as_tensor(train)
    for index in train[torch.randperm(len(train))].split(BATCH):
        loss = loss_fn(model(x[index]), y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.eval()
    with torch.no_grad():
        accuracies = [(model(x[rows]).argmax(1) == y[rows]).float().mean().item() for rows in (val, test)]
    torch.save(model.state_dict(), Path(path).with_suffix(".pt"))
    print(f"val accuracy {accuracies[0]:.3f}, test accuracy {accuracies[1]:.3f}")


def timed_process(command: list[str], cwd: Path, pythonpath: Path | None = None) -> tuple[float, float]:
    """Wall seconds and peak memory (MiB) of one child process."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else dict(os.environ)
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=cwd, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command)} failed")
    return elapsed, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def contenders(data: Path, compare_with: Path | None, parquet: bool) -> dict[str, tuple[list[str], Path | None]]:
    train = [sys.executable, "-m", "trainctl", "train"]
    found = {
        "pandas + hand-written loop": ([sys.executable, str(Path(__file__).resolve()), "--reference", str(data)], None),
        "trainctl": ([*train, str(write_config(data)), "--quiet"], ROOT),
    }
    if parquet:
        found["trainctl, Parquet"] = ([*train, str(write_config(data.with_suffix(".parquet"))), "--quiet"], ROOT)
    if compare_with is not None:
        found[f"trainctl of {compare_with.name}"] = (found["trainctl"][0], compare_with)
    return found


def compare(rows: int, folder: Path, repeats: int, compare_with: Path | None, parquet: bool) -> None:
    data = write_table(rows, folder)
    jobs = contenders(data, compare_with, parquet)
    results: dict[str, list[tuple[float, float]]] = {name: [] for name in jobs}
    timed_process(jobs["pandas + hand-written loop"][0], folder)  # warm the file cache
    for _ in range(repeats):
        for name, (command, pythonpath) in jobs.items():
            results[name].append(timed_process(command, folder, pythonpath))
    base_time = statistics.median(seconds for seconds, _ in results["pandas + hand-written loop"])
    base_memory = statistics.median(memory for _, memory in results["pandas + hand-written loop"])
    size = data.stat().st_size / 2**20
    print(f"{rows:,} rows ({size:,.0f} MiB of CSV), {repeats} alternating repeats, load {load()}")
    for name, values in results.items():
        seconds = statistics.median(seconds for seconds, _ in values)
        memory = statistics.median(memory for _, memory in values)
        print(
            f"  {name:<28} {seconds:7.2f} s  ×{seconds / base_time:5.2f}   "
            f"peak {memory:7,.0f} MiB  ×{memory / base_memory:5.2f}"
        )


def load() -> str:
    return " ".join(f"{value:.1f}" for value in os.getloadavg()) + f" on {os.cpu_count()} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compare-with", type=Path, help="another trainctl checkout to time as well")
    parser.add_argument("--parquet", action="store_true", help="also trainctl reading the table from Parquet")
    parser.add_argument("--reference", help=argparse.SUPPRESS)  # run the hand-written job on this CSV
    args = parser.parse_args()
    if args.reference:
        reference(args.reference)
        return
    compare_with = args.compare_with.resolve() if args.compare_with else None
    with tempfile.TemporaryDirectory() as folder:
        for rows in args.rows:
            compare(rows, Path(folder), args.repeats, compare_with, args.parquet)


if __name__ == "__main__":
    main()
