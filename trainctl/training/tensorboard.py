"""TensorBoard event files, for `logging.tensorboard: true`. The tensorboard package is optional.

Each epoch's metrics.jsonl row is written at its epoch to `tensorboard/`; with
`logging.every_n_steps`, each step record (`trainctl.training.step_records`) as `train_step/loss`
and `train_step/lr` at its optimizer step to `tensorboard/steps/`, a TensorBoard run of its own:
its axis counts steps, not epochs, and a resume hides what was written past the checkpoint on
each axis separately (`purge_step`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainctl.errors import UserError, install_hint

if TYPE_CHECKING:
    from trainctl.training.step_records import StepRecord


def summary_writer_class() -> Any:
    """torch's SummaryWriter, or a UserError saying how to install it (checked before a run starts)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise UserError(
            f"logging.tensorboard: the tensorboard package is not installed; {install_hint('tensorboard', 'tensorboard')}; "
            "or set logging.tensorboard: false"
        ) from None
    return SummaryWriter


class TensorBoardLogger:
    def __init__(self, folder: Path, purge_step: int | None = None):
        """`purge_step`, on a resume: the first step (or epoch) the run writes again. TensorBoard hides
        what the stopped run wrote from there on (past its checkpoint), so each appears once."""
        self.writer = summary_writer_class()(log_dir=str(folder), purge_step=purge_step)

    def log(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def log_step(self, record: StepRecord) -> None:
        self.writer.add_scalar("train_step/loss", record.loss, record.step)
        self.writer.add_scalar("train_step/lr", record.lr, record.step)

    def close(self) -> None:
        self.writer.close()
