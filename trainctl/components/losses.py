"""The loss catalogue: each loss with its formula, what it expects, and when to use it.

`target` says what the loss compares against (see `trainctl.task`), which decides how a dataset's
labels are turned into the loss's targets and how many outputs the model gets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from trainctl.registry import Registry
from trainctl.task import Task, TargetPlan

LOSSES = Registry("loss")

Positive = Annotated[float, Field(gt=0)]


@dataclass(frozen=True)
class LossContext:
    task: Task
    plan: TargetPlan


@LOSSES.register(
    "mse",
    summary="Mean squared error",
    task="regression",
    target="value",
    formula="mean((ŷ − y)²)",
    output="values",
    use_when="regression with roughly Gaussian noise and no gross outliers; on classes it fits one-hot vectors",
)
def mse(context: LossContext) -> Any:
    from torch import nn

    return nn.MSELoss()


@LOSSES.register(
    "l1",
    summary="Mean absolute error",
    task="regression",
    target="value",
    formula="mean(|ŷ − y|)",
    output="values",
    use_when="regression with outliers: predicts the median, and every error pulls with the same force",
)
def l1(context: LossContext) -> Any:
    from torch import nn

    return nn.L1Loss()


@LOSSES.register(
    "huber",
    summary="Huber loss: quadratic near zero, linear beyond delta",
    task="regression",
    target="value",
    formula="mean(½r² if |r| ≤ δ else δ(|r| − ½δ)),  r = ŷ − y",
    output="values",
    use_when="regression with some outliers: MSE's smooth fit for small errors, L1's robustness for large",
)
def huber(context: LossContext, *, delta: Positive = 1.0) -> Any:
    from torch import nn

    return nn.HuberLoss(delta=delta)


@LOSSES.register(
    "smooth_l1",
    summary="Smooth L1: Huber divided by beta, so large errors cost |r| − ½β",
    task="regression",
    target="value",
    formula="mean(½r²/β if |r| < β else |r| − ½β),  r = ŷ − y",
    output="values",
    use_when="box regression and other targets where L1's scale is wanted with a smooth minimum",
)
def smooth_l1(context: LossContext, *, beta: Positive = 1.0) -> Any:
    from torch import nn

    return nn.SmoothL1Loss(beta=beta)


@LOSSES.register(
    "cross_entropy",
    summary="Cross-entropy of softmax(logits) against the true class",
    task="classification",
    target="index",
    formula="mean(−log softmax(z)_y)  (smoothed: targets (1−ε)·onehot + ε/C)",
    output="logits (no softmax: the loss applies it)",
    use_when="single-label classification, the default; label smoothing against over-confidence",
)
def cross_entropy(context: LossContext, *, label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0) -> Any:
    from torch import nn

    return nn.CrossEntropyLoss(label_smoothing=label_smoothing)


@LOSSES.register(
    "nll",
    summary="Negative log-likelihood of log-probabilities",
    task="classification",
    target="index",
    formula="mean(−ŷ_y),  ŷ = log-probabilities",
    output="log-probabilities (end the model with log_softmax)",
    use_when="the model already outputs log_softmax; otherwise use cross_entropy",
)
def nll(context: LossContext) -> Any:
    from torch import nn

    return nn.NLLLoss()


@LOSSES.register(
    "bce_with_logits",
    summary="Binary cross-entropy on logits (sigmoid inside, numerically stable)",
    task="classification",
    target="binary",
    formula="mean(−w₊·y·log σ(z) − (1−y)·log(1−σ(z)))",
    output="logits (no sigmoid: the loss applies it)",
    use_when="binary classification (one output) or one-vs-rest over classes; pos_weight for rare positives",
)
def bce_with_logits(context: LossContext, *, pos_weight: Positive | None = None) -> Any:
    import torch
    from torch import nn

    weight = None if pos_weight is None else torch.tensor(pos_weight)
    return nn.BCEWithLogitsLoss(pos_weight=weight)


@LOSSES.register(
    "kl_div",
    summary="KL divergence from the target distribution to softmax(logits), per sample",
    task="distribution",
    target="distribution",
    formula="Σ_samples Σ_k p_k·(log p_k − log softmax(z)_k) / batch size  (batchmean)",
    output="logits (trainctl applies log_softmax)",
    use_when="soft labels or distillation: targets are probability vectors (one-hot on a classification dataset)",
)
def kl_div(context: LossContext) -> Any:
    from trainctl.loss_functions import KLDivergenceFromLogits

    return KLDivergenceFromLogits()
