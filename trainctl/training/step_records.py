"""Step records, for `logging.every_n_steps: N`: the training loss and learning rate of every Nth
optimizer step, made in one place (`StepRecorder`) and handed to each consumer: `steps.jsonl` in
the run folder, TensorBoard when it is on, and any tracker that subscribes.

A record of optimizer step `step` (`TrainingState.global_step` after it: from 1, across epochs,
continued by a resume):
- `loss`: the loss of the step's whole batch, the one its gradient was taken of: with
  `trainer.accumulate: K` the mean over the group's samples (a class-weighted loss weighted as in
  training); with several processes the mean over the global batch (one all-reduce per record, in
  which every rank takes part).
- `lr`: the rate the step trained with (the first parameter group's, as `metrics.jsonl`'s), read
  before a schedule moved it on.

Cost: with the setting off nothing is added (no handler, so the loop builds nothing per step). On
it, a step that is not recorded only counts; a recorded one reads its loss from the device, the
one host sync per N steps.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from trainctl.files import with_filename, write_atomically
from trainctl.runs import RunFolder
from trainctl.training.events import EpochEnd, Events, StepEnd

if TYPE_CHECKING:
    import torch

    from trainctl.ranks import Ranks

STEPS_FILE = "steps.jsonl"


@dataclass(frozen=True)
class StepRecord:
    step: int  # optimizer steps done, this one included
    epoch: int
    loss: float
    lr: float

    def row(self) -> dict[str, Any]:
        return {"step": self.step, "epoch": self.epoch, "loss": self.loss, "lr": self.lr}


StepConsumer = Callable[[StepRecord], None]


class StepRecorder:
    """The handlers that make a record every `every` optimizer steps: one on each step's end (every
    step_end is one optimizer step), one on each epoch's end (an epoch schedule moves the rate there)."""

    def __init__(
        self,
        every: int,
        optimizer: torch.optim.Optimizer,
        ranks: Ranks,
        steps_done: int,
        consumers: Sequence[StepConsumer],
    ):
        self.every, self.optimizer, self.ranks, self.consumers = every, optimizer, ranks, list(consumers)
        self.steps_done = steps_done  # a resume continues the numbering
        self.next_lr = self._lr()  # the rate the next step trains with

    def attach(self, events: Events) -> None:
        events.step_end.append(self.step_end)
        events.epoch_end.append(self.epoch_end)

    def step_end(self, end: StepEnd) -> None:
        self.steps_done += 1
        if self.steps_done % self.every == 0:
            self._record(end)
        if (self.steps_done + 1) % self.every == 0:  # only the rate of a step to be recorded is kept
            self.next_lr = self._lr()

    def epoch_end(self, end: EpochEnd) -> None:
        self.next_lr = self._lr()  # after the epoch's schedule step: the next epoch's first step's

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _record(self, end: StepEnd) -> None:
        loss = end.loss().detach().float()
        if self.ranks.distributed:
            loss = self.ranks.sum(loss) / self.ranks.world_size
        record = StepRecord(self.steps_done, end.epoch, float(loss), self.next_lr)  # the sync: once per N steps
        for consume in self.consumers:
            consume(record)


class StepsFile:
    """steps.jsonl: one JSON row per record, written as it is made so that a long run can be followed
    (`tail -f`) and read without TensorBoard; a row per N steps costs one small write."""

    def __init__(self, run: RunFolder, steps_done: int):
        self.path = run.path / STEPS_FILE  # a resume has dropped the rows past its checkpoint (keep_steps_through)
        try:
            self.file = self.path.open("a", encoding="utf-8")
        except OSError as error:
            raise with_filename(error, self.path) from None

    def __call__(self, record: StepRecord) -> None:
        try:
            self.file.write(json.dumps(record.row()) + "\n")
            self.file.flush()
        except OSError as error:  # a full disk names no file by itself
            raise with_filename(error, self.path) from None

    def close(self) -> None:
        self.file.close()


def keep_steps_through(run: RunFolder, step: int) -> None:
    """On a resume, drop steps.jsonl's rows past the checkpoint's step: they are trained again, and
    written again when step logging is still on (a resume may turn it off)."""
    path = run.path / STEPS_FILE
    if path.is_file():
        kept = [line for line in path.read_text(encoding="utf-8").splitlines() if _step_of(line) <= step]
        write_atomically("".join(line + "\n" for line in kept).encode("utf-8"), path)


def _step_of(line: str) -> float:
    """A row's step; infinity for a line that is not a row (one cut short by a kill), so it is dropped."""
    try:
        step = json.loads(line)["step"]
    except (ValueError, TypeError, KeyError):
        return float("inf")
    return step if isinstance(step, int) else float("inf")


@contextlib.contextmanager
def recording_steps(
    events: Events,
    every: int,
    optimizer: torch.optim.Optimizer,
    ranks: Ranks,
    steps_done: int,
    run: RunFolder | None,
    consumers: Sequence[StepConsumer] = (),
) -> Iterator[StepRecorder]:
    """Record every `every` optimizer steps while the block runs: to `run`'s steps.jsonl (rank 0
    passes its run folder, the others None) and to `consumers`. Every rank records, since the loss
    of a step is averaged over all of them."""
    steps_file = StepsFile(run, steps_done) if run is not None else None
    recorder = StepRecorder(every, optimizer, ranks, steps_done, [*([steps_file] if steps_file else []), *consumers])
    recorder.attach(events)
    try:
        yield recorder
    finally:
        if steps_file is not None:
            steps_file.close()
