"""The torch modules the example registers; imported only by the builders, so listings never import torch."""

from __future__ import annotations

import torch
from torch import nn


class ResidualBlock(nn.Module):
    """x + W₂·act(W₁·LayerNorm(x)): the block adds a correction, so deep stacks start near the identity."""

    def __init__(self, width: int, dropout: float) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.LayerNorm(width),
            nn.Linear(width, width),
            nn.GELU(),
            nn.Dropout(dropout),
            nn.Linear(width, width),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResidualMLP(nn.Module):
    """Flatten, project to `width`, `blocks` residual blocks, a final LayerNorm and a linear head."""

    def __init__(self, inputs: int, outputs: int, *, width: int, blocks: int, dropout: float) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Flatten(), nn.Linear(inputs, width))
        self.blocks = nn.Sequential(*(ResidualBlock(width, dropout) for _ in range(blocks)))
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, outputs))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


class SmoothedFocal(nn.Module):
    """mean over samples of −Σₖ qₖ·(1 − pₖ)^γ·log pₖ, with p = softmax(z) and q the smoothed one-hot
    target (1 − ε on the true class, plus ε/K on every class). γ = ε = 0 is cross-entropy."""

    def __init__(self, gamma: float, smoothing: float) -> None:
        super().__init__()
        self.gamma = gamma
        self.smoothing = smoothing

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_p = torch.log_softmax(logits, dim=-1)
        classes = logits.shape[-1]
        q = torch.full_like(log_p, self.smoothing / classes)
        q.scatter_add_(-1, target.unsqueeze(-1), torch.full_like(log_p[:, :1], 1.0 - self.smoothing))
        weight = (1.0 - log_p.exp()).pow(self.gamma)
        return -(q * weight * log_p).sum(dim=-1).mean()
