"""What trainctl's training loop does beyond a hand-written loop, counted instead of timed.

Timings on a shared machine move with its load (the hand-written loop alone has moved 3× between
runs here); counts do not. For the digits MLP and CNN of bench/overhead.py (the same model, data,
Adam, batch size and per-epoch validation), each loop is run for 4 epochs and for 2, and the
difference is counted, so that set-up costs cancel and what is left is two epochs of steady work:

    torch ops     every op dispatched to a kernel (a TorchDispatchMode sees each one)
    host syncs    ops that copy a value to the host (`aten::_local_scalar_dense`: .item(), float(t), ...),
                  each a wait for the device on a GPU
    Python calls  Python function calls (sys.setprofile's "call" events): the interpreter's share

for the hand-written loop, trainctl's trainer (--quiet, no run folder) and the trainer as `train`
runs it (metrics.jsonl and checkpoints every epoch), per optimizer step, with ratios to the
hand-written loop. The counts are exact and repeat run to run; they say where the time goes, not
how long it takes.

    python bench/op_counts.py
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from overhead import JOBS, hand_written, through_trainctl  # the loops of bench/overhead.py
from torch.utils._python_dispatch import TorchDispatchMode

from trainctl.config.loading import load_config
from trainctl.training.build import build_training

SYNC = torch.ops.aten._local_scalar_dense.default
EPOCHS = (2, 4)


@dataclass
class Counts:
    ops: int = 0
    syncs: int = 0
    calls: int = 0

    def __sub__(self, other: Counts) -> Counts:
        return Counts(self.ops - other.ops, self.syncs - other.syncs, self.calls - other.calls)


class OpCounter(TorchDispatchMode):
    def __init__(self, counts: Counts):
        super().__init__()
        self.counts = counts

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts.ops += 1
        if func is SYNC:
            self.counts.syncs += 1
        return func(*args, **(kwargs or {}))


def counted(run: Callable[[], object]) -> Counts:
    counts = Counts()

    def profile(frame: object, event: str, arg: object) -> None:
        if event == "call":
            counts.calls += 1

    with OpCounter(counts):
        sys.setprofile(profile)
        try:
            run()
        finally:
            sys.setprofile(None)
    return counts


def two_epochs(loop: Callable[[object], object], path: Path, overrides: list[str]) -> Counts:
    """The counts of `loop` over EPOCHS[1] epochs less those over EPOCHS[0]."""
    runs = []
    for epochs in EPOCHS:
        config = load_config(path, [*overrides, f"trainer.epochs={epochs}"])
        runs.append(counted(lambda config=config: loop(config)))
    return runs[1] - runs[0]


def main() -> None:
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as workdir:
        loops: dict[str, Callable[[object], object]] = {
            "hand-written": lambda config: hand_written(config, build_training(config).data),
            "trainctl --quiet": lambda config: through_trainctl(config, False, None),
            "trainctl run": lambda config: through_trainctl(config, False, Path(workdir)),
        }
        for name, (path, overrides) in JOBS.items():
            config = load_config(path, overrides)
            data = build_training(config).data
            steps = (EPOCHS[1] - EPOCHS[0]) * -(-len(data.train) // config.data.batch_size)
            for loop in loops.values():  # first-call costs (lazy imports, caches) out of the counts
                loop(load_config(path, [*overrides, f"trainer.epochs={EPOCHS[1]}"]))
            print(
                f"{name}: {EPOCHS[1] - EPOCHS[0]} epochs ({steps} optimizer steps), counted as {EPOCHS[1]} - {EPOCHS[0]}"
            )
            print(
                f"  {'':<17} {'torch ops/step':>15} {'ratio':>6} {'syncs/epoch':>12} {'Python calls/step':>18} {'ratio':>6}"
            )
            base = None
            for label, loop in loops.items():
                counts = two_epochs(loop, path, overrides)
                base = base or counts
                print(
                    f"  {label:<17} {counts.ops / steps:15.1f} {counts.ops / base.ops:6.3f} "
                    f"{counts.syncs / (EPOCHS[1] - EPOCHS[0]):12.1f} {counts.calls / steps:18.1f} "
                    f"{counts.calls / base.calls:6.3f}"
                )


if __name__ == "__main__":
    main()
