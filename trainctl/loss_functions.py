"""Loss modules that torch does not provide in the form trainctl documents."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class KLDivergenceFromLogits(nn.Module):
    """KL(p ‖ softmax(z)) with `batchmean`, the reduction that matches the definition of KL.

    torch's `kl_div` takes log-probabilities as input and sums over everything with 'sum', or
    divides by the element count with 'mean' (not KL); taking logits here removes both traps.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits, dim=-1), target, reduction="batchmean")
