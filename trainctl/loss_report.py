"""Where the loss comes from: mean loss per class, quantiles of the per-sample loss, and the
samples with the highest loss, which is where mislabelled samples and outliers show up."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainctl.data import PreparedData, Split

QUANTILES = {"min": 0.0, "p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9, "p99": 0.99, "max": 1.0}


@torch.no_grad()
def per_sample_losses(loss_fn: torch.nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """The loss of each sample on its own: works for every loss, built-in or plugin, whatever its
    reduction, because each call sees a batch of one."""
    return np.array([loss_fn(outputs[i : i + 1], targets[i : i + 1]).item() for i in range(len(outputs))])


def _describe(value: torch.Tensor, data: PreparedData) -> Any:
    if data.task.kind == "classification":
        return data.task.class_names[int(value)]
    values = value.reshape(-1).tolist()
    return values[0] if len(values) == 1 else values


def loss_report(
    loss_fn: torch.nn.Module, outputs: torch.Tensor, split: Split, data: PreparedData, worst: int
) -> dict[str, Any]:
    losses = per_sample_losses(loss_fn, outputs, split.targets)
    report: dict[str, Any] = {"quantiles": {name: float(np.quantile(losses, q)) for name, q in QUANTILES.items()}}
    if data.task.kind == "classification":
        labels = split.labels.cpu().numpy()
        report["per_class"] = {
            name: float(losses[labels == k].mean()) if (labels == k).any() else None
            for k, name in enumerate(data.task.class_names)
        }
    predictions = data.predictions(outputs).cpu()
    labels = split.labels.cpu()
    order = np.argsort(-losses, kind="stable")[:worst]
    report["worst"] = [
        {
            "row": int(split.rows[i]) if split.rows is not None else int(i),
            "target": _describe(labels[i], data),
            "prediction": _describe(predictions[i], data),
            "loss": float(losses[i]),
        }
        for i in order
    ]
    return report
