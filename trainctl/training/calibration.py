"""Calibration: whether a classifier's probabilities mean what they say, and temperature scaling
to make them.

Expected calibration error (Guo et al. 2017, "On Calibration of Modern Neural Networks"): the
top-label confidence of each sample (its predicted class's probability) falls in one of 15
equal-width bins (lower, upper]; ECE = Σ_bins (samples in the bin / n) · |accuracy − mean
confidence| of the bin. The same bins are the reliability diagram's.

Temperature scaling (same paper): logits / T with one T > 0 fitted on the validation split by
LBFGS on the negative log-likelihood; the predicted class never changes, only how sure it is.

ECE and the bins are numpy (compare and reports read them without torch); torch is imported only
by the functions that take tensors.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trainctl.errors import UserError

if TYPE_CHECKING:
    import torch

BINS = 15


def _bin_sums(confidences: np.ndarray, correct: np.ndarray, bins: int) -> tuple[np.ndarray, ...]:
    """Per equal-width bin (lower, upper]: the count, the sum of confidences and of correct answers.
    A confidence of exactly 0 joins the first bin."""
    confidences = np.asarray(confidences, dtype=np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # searchsorted(side="left") on the upper edges puts c in the bin with lower < c ≤ upper.
    index = np.clip(np.searchsorted(edges[1:], confidences, side="left"), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    confidence_sums = np.bincount(index, weights=confidences, minlength=bins)
    correct_sums = np.bincount(index, weights=np.asarray(correct, dtype=np.float64), minlength=bins)
    return edges, counts, confidence_sums, correct_sums


def reliability_bins(confidences: np.ndarray, correct: np.ndarray, bins: int = BINS) -> list[dict[str, Any]]:
    """Each equal-width bin of top-label confidence: its sample count, mean confidence and
    accuracy (None for an empty bin)."""
    edges, counts, confidence_sums, correct_sums = _bin_sums(confidences, correct, bins)
    return [
        {
            "lower": float(edges[b]),
            "upper": float(edges[b + 1]),
            "count": int(counts[b]),
            "confidence": float(confidence_sums[b] / counts[b]) if counts[b] else None,
            "accuracy": float(correct_sums[b] / counts[b]) if counts[b] else None,
        }
        for b in range(bins)
    ]


def expected_calibration_error(confidences: np.ndarray, correct: np.ndarray, bins: int = BINS) -> float:
    """Σ_bins (n_b / n)·|accuracy_b − confidence_b| = Σ_bins |Σ correct − Σ confidence| / n."""
    _, counts, confidence_sums, correct_sums = _bin_sums(confidences, correct, bins)
    total = counts.sum()
    return float(np.abs(correct_sums - confidence_sums).sum() / total) if total else 0.0


# ---- from model outputs --------------------------------------------------------------------------


def class_probabilities(
    outputs: torch.Tensor, output_kind: str, layout: str, temperature: float | None = None
) -> torch.Tensor | None:
    """Each class's probability from the model's outputs, as predict reports them: softmax of
    logits (sigmoid of a binary task's one logit), divided by the temperature first when the run
    is calibrated; exp of log-probabilities. None for outputs that are not probabilities in any
    sense (a regression loss's scores for classes)."""
    import torch

    from trainctl.data.prepare import predicting_outputs

    outputs = predicting_outputs(outputs, layout).float()
    scale = 1.0 if temperature is None else temperature
    if outputs.shape[-1] == 1:  # one logit for a binary task
        positive = torch.sigmoid(outputs[:, 0] / scale)
        return torch.stack([1 - positive, positive], dim=1)
    if output_kind == "logits":
        return (outputs / scale).softmax(dim=-1)
    if output_kind == "log-probabilities":
        return outputs.exp()
    return None


def calibration_record(
    probabilities: torch.Tensor, labels: torch.Tensor, temperature: float | None, uncalibrated: torch.Tensor | None
) -> dict[str, Any]:
    """What summary.json's test record (and eval's) holds about calibration: the ECE of the
    probabilities the run predicts with, the reliability bins, and for a calibrated run its
    temperature with the ECE and bins before it."""
    confidences, correct = _top_label(probabilities, labels)
    record: dict[str, Any] = {"bins": BINS}
    if temperature is not None and uncalibrated is not None:
        before, before_correct = _top_label(uncalibrated, labels)
        record.update(
            temperature=temperature,
            ece_before=expected_calibration_error(before, before_correct),
            reliability_before=reliability_bins(before, before_correct),
        )
    record["reliability"] = reliability_bins(confidences, correct)
    return {"ece": expected_calibration_error(confidences, correct), "calibration": record}


def _top_label(probabilities: torch.Tensor, labels: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    confidence, predicted = probabilities.max(dim=1)
    return confidence.double().cpu().numpy(), (predicted == labels).cpu().numpy()


# ---- temperature scaling -------------------------------------------------------------------------


def fit_temperature(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The T > 0 minimising the NLL of softmax(logits / T) (of sigmoid(logit / T) for one logit).
    T is optimised as log T, so it stays positive; LBFGS with a strong Wolfe line search
    converges in a few dozen evaluations on a one-parameter problem."""
    import torch
    import torch.nn.functional as F

    logits = logits.detach().double().cpu()
    labels = labels.detach().cpu()
    log_temperature = torch.zeros((), dtype=torch.float64, requires_grad=True)
    optimizer = torch.optim.LBFGS([log_temperature], lr=1.0, max_iter=200, line_search_fn="strong_wolfe")

    def negative_log_likelihood() -> torch.Tensor:
        optimizer.zero_grad()
        scaled = logits / log_temperature.exp()
        if scaled.shape[-1] == 1:
            loss = F.binary_cross_entropy_with_logits(scaled[:, 0], labels.double())
        else:
            loss = F.cross_entropy(scaled, labels)
        loss.backward()
        return loss

    optimizer.step(negative_log_likelihood)
    temperature = float(log_temperature.detach().exp())
    if not math.isfinite(temperature):
        raise UserError("trainer.calibrate: temperature scaling did not converge on the validation split")
    return temperature


def checkpoint_temperature(checkpoint: dict[str, Any], path: Path) -> float | None:
    """The temperature a calibrated run stored in its checkpoint; None for other checkpoints."""
    calibration = checkpoint.get("calibration")
    if calibration is None:
        return None
    value = calibration.get("temperature") if isinstance(calibration, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise UserError(
            f"{path}: calibration.temperature is {value!r}, not a positive number; the checkpoint is damaged"
        )
    return float(value)


def calibrate_checkpoint(model: torch.nn.Module, path: Path, loss_fn: torch.nn.Module, data: Any) -> float:
    """Fit the temperature of the checkpoint's model on the validation split and store it in the
    checkpoint (`calibration`), where eval and predict find it; returns it."""
    from trainctl.data.prepare import predicting_outputs
    from trainctl.training.checkpoint import load_checkpoint, load_model_state, save_checkpoint
    from trainctl.training.trainer import evaluate

    state = load_checkpoint(path)
    load_model_state(model, state, path)
    model.to(data.train.device)
    validation = evaluate(model, data.val, loss_fn, data, (), keep_outputs=True)
    assert validation.outputs is not None  # keep_outputs keeps them
    temperature = fit_temperature(predicting_outputs(validation.outputs, data.plan.layout), data.val.labels)
    state["calibration"] = {"method": "temperature", "temperature": temperature, "fitted_on": "val"}
    save_checkpoint(state, path)
    return temperature
