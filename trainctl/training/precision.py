"""`trainer.precision`: the autocast context and gradient scaler each setting needs, and whether a device can do it."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import torch

from trainctl.errors import UserError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "16-mixed": torch.float16}


@dataclass(frozen=True)
class Precision:
    setting: str  # 32 | bf16 | 16-mixed
    device: torch.device

    def autocast(self) -> Any:
        """The context the forward pass and the loss run in."""
        if self.setting == "32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=AUTOCAST_DTYPES[self.setting])

    def grad_scaler(self) -> Any | None:
        """float16 gradients underflow without loss scaling; bfloat16 has float32's range and needs none."""
        return torch.amp.GradScaler(self.device.type) if self.setting == "16-mixed" else None


def check_precision(setting: str, device: torch.device) -> Precision:
    """The precision, or a UserError when the device cannot run it (never a silent fallback to 32)."""
    if setting != "32":
        if not torch.amp.is_autocast_available(device.type):
            raise UserError(
                f"trainer.precision: {setting} needs autocast, which torch does not support on "
                f"{device.type}; use precision: 32"
            )
        if setting == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise UserError(
                f"trainer.precision: bf16 is not supported by {torch.cuda.get_device_name(device)}; use 16-mixed or 32"
            )
    return Precision(setting, device)
