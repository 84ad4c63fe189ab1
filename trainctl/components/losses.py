"""The loss catalogue: each loss with its formula, what it expects, and when to use it.

Each loss's metadata is a `LossInfo`, read by the listings, by target encoding and by `trainctl validate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from trainctl.data.task import TARGET_DESCRIPTIONS, OutputLayout, TargetKind, TargetPlan, Task
from trainctl.errors import UserError
from trainctl.registry import Registry


@dataclass(frozen=True, kw_only=True)
class LossInfo:
    """What a loss expects and how the listings describe it."""

    task: Literal["classification", "regression", "distribution", "any"]  # any: a composite, of its terms' task
    formula: str
    output: str  # what the model should output, in words
    use_when: str
    # What the loss compares against (see `trainctl.data.task`): decides target encoding. A
    # composite names neither this nor `input`: its terms decide, and must agree.
    target: TargetKind | None = None
    input: Literal["logits", "log-probabilities", "values"] | None = None  # what it expects of the model
    layout: OutputLayout = "values"  # regression outputs: values | log_rate (Poisson) | mean_variance (two per target)
    expected: Literal["ln_classes", "ln_2"] | None = None  # a fresh model's loss, where there is a clear value
    composite: bool = False  # built from `terms`, each a registered loss
    example: dict[str, Any] | None = None  # the parameters `list-losses NAME` shows; default: the defaults

    def __post_init__(self) -> None:
        if self.composite != (self.task == "any"):
            raise ValueError("task 'any' is for composite losses, and a composite's task is 'any'")
        if self.composite and (self.target is not None or self.input is not None):
            raise TypeError("a composite loss takes its target and input from its terms: give neither")
        if not self.composite:
            missing = [key for key in ("target", "input") if getattr(self, key) is None]
            if missing:
                raise TypeError(f"missing metadata field {', '.join(map(repr, missing))} (every loss but a composite)")

    @property
    def target_text(self) -> str:
        """The target in words, as the listings show it."""
        return "what the terms expect" if self.target is None else TARGET_DESCRIPTIONS[self.target]


LOSSES = Registry("loss", LossInfo)

Positive = Annotated[float, Field(gt=0)]
NonNegative = Annotated[float, Field(ge=0)]


@dataclass(frozen=True)
class LossContext:
    task: Task
    plan: TargetPlan
    class_counts: tuple[int, ...] = ()  # training labels per class, for `class_weight: balanced`


@dataclass(frozen=True)
class LossProfile:
    target: TargetKind
    input: str
    layout: OutputLayout = "values"


def profile(name: str, params: dict[str, Any]) -> LossProfile:
    """What a configured loss expects; a composite's comes from its terms, which must agree."""
    info = LOSSES.get(name).info
    if info.target is not None and info.input is not None:  # every loss but a composite
        return LossProfile(info.target, info.input, info.layout)
    profiles = {profile(term["name"], term) for term in params.get("terms", [])}
    if len(profiles) != 1:
        kinds = ", ".join(sorted(f"{p.target} targets from {p.input}" for p in profiles)) or "no terms"
        raise UserError(
            f"the terms of loss {name!r} must expect the same targets and model outputs; they expect: {kinds}"
        )
    return profiles.pop()


# ---- regression ----------------------------------------------------------------------------------


@LOSSES.register(
    "mse",
    summary="Mean squared error",
    task="regression",
    target="value",
    input="values",
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
    input="values",
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
    input="values",
    formula="mean(½r² if |r| ≤ δ else δ(|r| − ½δ)),  r = ŷ − y",
    output="values",
    use_when="regression with some outliers: MSE's smooth fit for small errors, L1's robustness for large ones",
)
def huber(context: LossContext, *, delta: Positive = 1.0) -> Any:
    from torch import nn

    return nn.HuberLoss(delta=delta)


@LOSSES.register(
    "smooth_l1",
    summary="Smooth L1: Huber divided by beta, so large errors cost |r| − ½β",
    task="regression",
    target="value",
    input="values",
    formula="mean(½r²/β if |r| < β else |r| − ½β),  r = ŷ − y",
    output="values",
    use_when="box regression and other targets where L1's scale is wanted with a smooth minimum",
)
def smooth_l1(context: LossContext, *, beta: Positive = 1.0) -> Any:
    from torch import nn

    return nn.SmoothL1Loss(beta=beta)


@LOSSES.register(
    "log_cosh",
    summary="Log-cosh: about ½r² for small errors and |r| − ln 2 for large ones, smooth everywhere",
    task="regression",
    target="value",
    input="values",
    formula="mean(log cosh(ŷ − y))",
    output="values",
    use_when="like huber without a threshold to choose; twice differentiable",
)
def log_cosh(context: LossContext) -> Any:
    from trainctl.nn.losses import LogCosh

    return LogCosh()


@LOSSES.register(
    "quantile",
    summary="Pinball loss: the model learns the q-quantile of the target, not its mean",
    task="regression",
    target="value",
    input="values",
    formula="mean(max(q·(y − ŷ), (q − 1)·(y − ŷ)))",
    output="values (the q-quantile)",
    use_when="prediction intervals (q = 0.05 and 0.95) or asymmetric costs; q = 0.5 is the median (½·L1)",
)
def quantile(context: LossContext, *, q: Annotated[float, Field(gt=0, lt=1)] = 0.5) -> Any:
    from trainctl.nn.losses import Quantile

    return Quantile(q)


@LOSSES.register(
    "poisson_nll",
    summary="Poisson negative log-likelihood; the model outputs the log of the rate",
    task="regression",
    target="value",
    input="values",
    layout="log_rate",
    formula="mean(exp(z) − y·z),  z = log rate; prediction = exp(z)",
    output="log-rate (targets are counts ≥ 0, used unstandardised)",
    use_when="count targets (events, visits, cases) whose variance grows with their mean",
)
def poisson_nll(context: LossContext) -> Any:
    from torch import nn

    return nn.PoissonNLLLoss(log_input=True, full=False)


@LOSSES.register(
    "gaussian_nll",
    summary="Gaussian negative log-likelihood: the model predicts a mean and a variance per target",
    task="regression",
    target="value",
    input="values",
    layout="mean_variance",
    formula="mean(½(log σ² + (y − μ)²/σ²)),  σ² = softplus(raw) + eps",
    output="2 per target: mean, raw variance (output size doubles)",
    use_when="the noise level varies between samples and you want the model to say how sure it is",
)
def gaussian_nll(context: LossContext, *, eps: Positive = 1e-6, full: bool = False) -> Any:
    from trainctl.nn.losses import GaussianNLL

    return GaussianNLL(eps=eps, full=full)


# ---- classification ------------------------------------------------------------------------------


def _class_weights(weight: Any, context: LossContext, key: str) -> Any:
    import torch

    if weight is None:
        return None
    classes = context.task.num_classes
    if weight == "balanced":  # n / (C · n_c), as scikit-learn's class_weight="balanced"
        _refuse_absent_classes(context, key)
        counts = torch.tensor(context.class_counts, dtype=torch.float32)
        return counts.sum() / (classes * counts)
    if len(weight) != classes:
        raise UserError(f"loss.{key}: {len(weight)} weights given, but the dataset has {classes} classes")
    return torch.tensor(weight, dtype=torch.float32)


def _refuse_absent_classes(context: LossContext, key: str) -> None:
    """Balanced weights are n / (C · n_c): a class with no training sample has no such weight, and
    any number put in its place would be a guess that silently shapes the loss (scikit-learn
    refuses it too). Refused rather than warned about, so the run never starts on a made-up weight."""
    absent = [name for name, count in zip(context.task.class_names, context.class_counts) if count == 0]
    if absent:
        which = f"class {absent[0]!r} has" if len(absent) == 1 else f"classes {', '.join(map(repr, absent))} have"
        raise UserError(
            f"loss.{key}: balanced weights need every class in the training split, but {which} no training "
            "sample; give one weight per class as a list, or change the split"
        )


@LOSSES.register(
    "cross_entropy",
    summary="Cross-entropy of softmax(logits) against the true class",
    task="classification",
    target="index",
    input="logits",
    expected="ln_classes",
    formula="Σᵢ Σ_k w_k·qᵢₖ·(−log softmax(zᵢ)_k) / Σᵢ w_yᵢ,  q = onehot(y), smoothed (1−ε)·onehot(y) + ε/C;  "
    "w = class_weight (all 1 without: the mean)",
    output="logits (no softmax: the loss applies it)",
    use_when="single-label classification, the default; label_smoothing against over-confidence, "
    "class_weight: balanced for imbalanced classes",
)
def cross_entropy(
    context: LossContext,
    *,
    label_smoothing: Annotated[float, Field(ge=0, lt=1)] = 0.0,
    # Per class, or balanced from the training labels. Named as in scikit-learn, and so that it
    # cannot be confused with a term's `weight` inside a composite loss.
    class_weight: Literal["balanced"] | list[Positive] | None = None,
) -> Any:
    from torch import nn

    return nn.CrossEntropyLoss(
        weight=_class_weights(class_weight, context, "class_weight"), label_smoothing=label_smoothing
    )


@LOSSES.register(
    "nll",
    summary="Negative log-likelihood of log-probabilities",
    task="classification",
    target="index",
    input="log-probabilities",
    expected="ln_classes",
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
    input="logits",
    expected="ln_2",
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
    "focal",
    summary="Focal loss (Lin et al. 2017): cross-entropy that down-weights easy, well-classified samples",
    task="classification",
    target="index",
    input="logits",
    formula="mean(−α_y·(1 − p_y)^γ·log p_y),  p = softmax(z)",
    output="logits",
    use_when="heavy class imbalance or many easy samples; γ = 0 without alpha is cross_entropy",
)
def focal(
    context: LossContext,
    *,
    gamma: NonNegative = 2.0,
    # A number α weighs class 1 by α and class 0 by 1 − α (binary, as in the paper); a list, each class.
    alpha: Annotated[float, Field(ge=0, le=1)] | list[NonNegative] | None = None,
) -> Any:
    import torch

    from trainctl.nn.losses import Focal

    weights = None
    if isinstance(alpha, float):
        if context.task.num_classes != 2:
            raise UserError(
                f"loss.alpha: a single alpha needs a binary dataset; give one weight per class "
                f"({context.task.num_classes} classes)"
            )
        weights = torch.tensor([1 - alpha, alpha])
    elif alpha is not None:
        weights = _class_weights(alpha, context, "alpha")
    return Focal(gamma, weights)


@LOSSES.register(
    "multi_margin",
    summary="Multi-class hinge loss: the true class's score must beat every other by a margin",
    task="classification",
    target="index",
    input="logits",
    formula="mean over samples of Σ_{k≠y} max(0, margin − z_y + z_k)^p / C",
    output="scores (logits)",
    use_when="SVM-style classification; stops pushing once the margin is met",
)
def multi_margin(context: LossContext, *, margin: Positive = 1.0, p: Literal[1, 2] = 1) -> Any:
    from torch import nn

    return nn.MultiMarginLoss(p=p, margin=margin)


# ---- distributions -------------------------------------------------------------------------------


@LOSSES.register(
    "kl_div",
    summary="KL(target ‖ softmax(logits)), averaged over samples",
    task="distribution",
    target="distribution",
    input="logits",
    expected="ln_classes",
    formula="Σ_samples Σ_k p_k·(log p_k − log softmax(z)_k) / batch size  (batchmean)",
    output="logits (trainctl applies log_softmax)",
    use_when="soft labels or distillation: targets are probability vectors (one-hot on a classification dataset)",
)
def kl_div(context: LossContext) -> Any:
    from trainctl.nn.losses import KLDivergenceFromLogits

    return KLDivergenceFromLogits()


@LOSSES.register(
    "js_divergence",
    summary="Jensen-Shannon divergence between the target distribution and softmax(logits)",
    task="distribution",
    target="distribution",
    input="logits",
    formula="½KL(p ‖ m) + ½KL(q ‖ m),  m = ½(p + q),  q = softmax(z)  (batchmean, ≤ ln 2)",
    output="logits (trainctl applies softmax)",
    use_when="a symmetric, bounded alternative to KL: robust to noisy soft labels",
)
def js_divergence(context: LossContext) -> Any:
    from trainctl.nn.losses import JensenShannonFromLogits

    return JensenShannonFromLogits()


# ---- robust and adaptive -------------------------------------------------------------------------


@LOSSES.register(
    "robust",
    summary="Barron's general robust loss with a fixed shape α and scale c (CVPR 2019)",
    task="regression",
    target="value",
    input="values",
    formula="mean(|α−2|/α·(((r/c)²/|α−2| + 1)^(α/2) − 1)),  r = ŷ − y",
    output="values",
    use_when="one knob from L2 (α=2) through pseudo-Huber (α=1), Cauchy (α=0) to Geman-McClure (α=−2): "
    "lower α ignores outliers more",
)
def robust(
    context: LossContext,
    *,
    alpha: Annotated[float, Field(ge=-100, le=100)] = 1.0,  # shape: 2 = L2, 1 = pseudo-Huber, 0 = Cauchy
    scale: Positive = 1.0,  # c: residuals below it are treated as inliers (in standardised target units)
) -> Any:
    from trainctl.nn.losses import Robust

    return Robust(alpha, scale)


@LOSSES.register(
    "adaptive",
    summary="Barron's adaptive robust loss: shape α and scale c are learned with the model",
    task="regression",
    target="value",
    input="values",
    formula="mean(ρ(r, α, c) + log c + log Z(α)),  α ∈ [alpha_min, alpha_max], c > 0 learned",
    output="values",
    use_when="outliers of unknown amount: the data chooses how robust to be; α and c are logged every epoch",
)
def adaptive(
    context: LossContext,
    *,
    alpha_min: Annotated[float, Field(ge=0, lt=2)] = 0.001,
    alpha_max: Annotated[float, Field(gt=0, le=2)] = 1.999,
    alpha_init: Annotated[float, Field(ge=0, le=2)] = 1.0,
    scale_init: Positive = 1.0,
) -> Any:
    from trainctl.nn.losses import AdaptiveRobust

    if not alpha_min < alpha_init < alpha_max:
        raise UserError(
            f"loss.alpha_init: must lie strictly between alpha_min ({alpha_min}) and alpha_max ({alpha_max})"
        )
    return AdaptiveRobust(context.plan.num_outputs, alpha_min, alpha_max, alpha_init, scale_init)


# ---- composite -----------------------------------------------------------------------------------


class LossTerm(BaseModel):
    """One term of a composite loss: a registered loss, its weight, and its own parameters."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)
    name: str
    weight: NonNegative = 1.0


def _build_terms(context: LossContext, terms: list[Any]) -> tuple[list[Any], list[float]]:
    modules, weights = [], []
    for term in terms:
        params = {k: v for k, v in dict(term).items() if k not in ("name", "weight")}
        modules.append(LOSSES.get(term["name"]).build(context, params))
        weights.append(term["weight"])
    return modules, weights


@LOSSES.register(
    "sum",
    summary="Weighted sum of losses that share the model's outputs and targets",
    task="any",
    composite=True,
    formula="Σ wᵢ·Lᵢ",
    output="what the terms expect (they must agree)",
    use_when="adding a regulariser or mixing criteria, e.g. cross_entropy + 0.1·focal",
    example={"terms": [{"name": "cross_entropy", "weight": 1.0}, {"name": "focal", "weight": 0.1, "gamma": 2.0}]},
)
def sum_(context: LossContext, *, terms: Annotated[list[LossTerm], Field(min_length=1)]) -> Any:
    from trainctl.nn.losses import WeightedSum

    return WeightedSum(*_build_terms(context, terms))


@LOSSES.register(
    "uncertainty_sum",
    summary="Sum whose weights are learned (Kendall et al. 2018): each term gets exp(−sᵢ), plus sᵢ",
    task="any",
    composite=True,
    formula="Σ wᵢ·(exp(−sᵢ)·Lᵢ + sᵢ),  sᵢ = log σᵢ² learned",
    output="what the terms expect (they must agree)",
    use_when="terms on different scales whose balance you would otherwise tune by hand; weights are logged",
    example={"terms": [{"name": "mse"}, {"name": "l1"}]},
)
def uncertainty_sum(context: LossContext, *, terms: Annotated[list[LossTerm], Field(min_length=1)]) -> Any:
    from trainctl.nn.losses import UncertaintyWeightedSum

    return UncertaintyWeightedSum(*_build_terms(context, terms))
