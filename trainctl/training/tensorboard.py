"""TensorBoard event files, for `logging.tensorboard: true`. The tensorboard package is optional."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainctl.errors import UserError, install_hint


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
    def __init__(self, folder: Path):
        self.writer = summary_writer_class()(log_dir=str(folder))

    def log(self, row: dict[str, Any]) -> None:
        for key, value in row.items():
            if key != "epoch" and isinstance(value, (int, float)):
                self.writer.add_scalar(key, value, row["epoch"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
