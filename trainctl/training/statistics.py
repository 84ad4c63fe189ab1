"""Additive statistics gathered batch by batch on the device, turned into metrics once per split."""

from __future__ import annotations

import numpy as np
import torch

from trainctl.components.metrics import RegressionSums, per_class
from trainctl.ranks import Ranks


class ConfusionMatrix:
    def __init__(self, num_classes: int, device: torch.device):
        self.num_classes = num_classes
        self.counts = torch.zeros(num_classes * num_classes, dtype=torch.int64, device=device)

    def update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        self.counts += torch.bincount(labels * self.num_classes + predictions, minlength=self.num_classes**2)

    def sum_over_ranks(self, ranks: Ranks) -> None:
        ranks.sum(self.counts)

    def result(self) -> np.ndarray:
        return self.counts.view(self.num_classes, self.num_classes).cpu().numpy()

    @staticmethod
    def details(confusion: np.ndarray, class_names: tuple[str, ...]) -> dict:
        stats = per_class(confusion)
        return {
            "per_class": {
                name: {key: float(values[i]) if key != "support" else int(values[i]) for key, values in stats.items()}
                for i, name in enumerate(class_names)
            },
            "confusion_matrix": confusion.tolist(),
        }


class RegressionStatistics:
    def __init__(self, num_targets: int, device: torch.device):
        # float64 keeps SST = Σy² − (Σy)²/n accurate when targets are far from zero.
        self.sums = torch.zeros(4, num_targets, dtype=torch.float64, device=device)
        self.count = 0

    def update(self, predictions: torch.Tensor, labels: torch.Tensor) -> None:
        predictions, labels = predictions.double(), labels.double()
        error = predictions - labels
        self.sums += torch.stack([(error**2).sum(0), error.abs().sum(0), labels.sum(0), (labels**2).sum(0)])
        self.count += len(labels)

    def sum_over_ranks(self, ranks: Ranks) -> None:
        ranks.sum(self.sums)
        count = ranks.sum(torch.tensor([self.count], dtype=torch.int64, device=self.sums.device))
        self.count = int(count.item())

    def result(self) -> RegressionSums:
        sums = self.sums.cpu().numpy()
        return RegressionSums(self.count, sums[0], sums[1], sums[2], sums[3])
