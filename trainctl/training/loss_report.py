"""Where the loss comes from: mean loss per class, quantiles of the per-sample loss, and the
samples with the highest loss, which is where mislabelled samples and outliers show up."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainctl.data.prepare import PreparedData, Split
from trainctl.nn.losses import WeightedSum

QUANTILES = {"min": 0.0, "p25": 0.25, "median": 0.5, "p75": 0.75, "p90": 0.9, "p99": 0.99, "max": 1.0}


@torch.no_grad()
def per_sample_losses(loss_fn: torch.nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """Each sample's share of the loss over all the given samples, scaled so that their mean is that loss.

    For most losses that is the sample's loss on its own: a batch of one works for every loss,
    built-in or plugin, whatever its reduction. A class-weighted cross-entropy (or NLL) is
    Σ w_y·l / Σ w_y, where a batch of one cancels the weight (w_y·l / w_y = l); there each value is
    w_y·l / w̄, w̄ the mean weight of the samples: the weighted values, whose sum divided by the sum
    of the weights (n·w̄) is the loss. A composite combines its terms' shares as it combines their losses.
    """
    return _sample_shares(loss_fn, outputs, targets).double().cpu().numpy()


def _sample_shares(loss_fn: torch.nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    if isinstance(loss_fn, WeightedSum):  # each term may weigh its samples differently
        return loss_fn.combine([_sample_shares(term, outputs, targets) for term in loss_fn.terms])
    alone = _each_alone(loss_fn, outputs, targets)
    weights = _weighted_mean_weights(loss_fn, targets)
    return alone if weights is None else alone * weights / weights.mean()


# From this many samples, batches of one are run as one vectorised call (torch.func.vmap): 3 to 60
# times faster for the catalogue's losses (adaptive: 8.9 s against 0.15 s for 5,000 samples), but its
# first call in a process costs 0.5 to 1 s of setup, more than a test split of digits takes one by one.
VECTORISED_FROM = 4096


def _each_alone(loss_fn: torch.nn.Module, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Each sample's loss as a batch of one."""
    if len(outputs) >= VECTORISED_FROM:
        alone = torch.func.vmap(
            lambda output, target: loss_fn(output.unsqueeze(0), target.unsqueeze(0)), chunk_size=4096
        )
        try:
            return alone(outputs, targets)
        except Exception:  # a loss vmap cannot batch (data-dependent branches, .item()): one by one
            pass
    return torch.stack([loss_fn(outputs[i : i + 1], targets[i : i + 1]) for i in range(len(outputs))])


def _weighted_mean_weights(loss_fn: torch.nn.Module, targets: torch.Tensor) -> torch.Tensor | None:
    """The per-sample weights of a loss whose batch value is Σ w·l / Σ w (torch's class-weighted
    cross_entropy and nll with reduction 'mean'), or None for a plain mean."""
    if not isinstance(loss_fn, (torch.nn.CrossEntropyLoss, torch.nn.NLLLoss)) or loss_fn.reduction != "mean":
        return None
    if loss_fn.weight is None or targets.dtype.is_floating_point:  # probability targets are not weighted by class
        return None
    return loss_fn.weight[targets]


def _describe(value: torch.Tensor, data: PreparedData) -> Any:
    if data.task.kind == "classification":
        return data.task.class_names[int(value)]
    values = value.reshape(-1).tolist()
    return values[0] if len(values) == 1 else values


def loss_report(
    losses: np.ndarray, outputs: torch.Tensor, split: Split, data: PreparedData, worst: int
) -> dict[str, Any]:
    """From each sample's loss (`per_sample_losses`): quantiles, the mean per class, the worst samples."""
    report: dict[str, Any] = {"quantiles": {name: float(np.quantile(losses, q)) for name, q in QUANTILES.items()}}
    if data.task.kind == "classification":
        label_array = split.labels.cpu().numpy()
        report["per_class"] = {
            name: float(losses[label_array == k].mean()) if (label_array == k).any() else None
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
            **({"file": data.files[int(split.rows[i])]} if data.files and split.rows is not None else {}),
        }
        for i in order
    ]
    return report
