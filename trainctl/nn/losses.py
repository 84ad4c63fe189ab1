"""Loss modules behind the catalogue that torch does not provide in the form trainctl documents.

Every module takes the model's raw outputs and the encoded targets and returns the mean loss over
the batch. Losses with learned parameters (adaptive, uncertainty_sum) expose them to the
optimizer as ordinary `nn.Parameter`s and report their current values through `logged_values`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


def logged_values(loss_fn: nn.Module) -> dict[str, float]:
    """The learned values a loss wants written to metrics.jsonl each epoch ({} for most losses)."""
    report = getattr(loss_fn, "logged_values", None)
    return report() if callable(report) else {}


def sample_weights(loss_fn: nn.Module, targets: torch.Tensor) -> torch.Tensor | None:
    """Each sample's weight in the loss's mean, when the mean is not over samples alike: torch's
    cross-entropy and NLL with class weights divide a batch's summed loss by the summed weights of
    its targets' classes, not by its size. None: a plain mean over samples, or a sum of terms (each
    term normalises itself; a class-weighted term inside one is not seen here)."""
    weight = getattr(loss_fn, "weight", None)
    weighted_mean = isinstance(loss_fn, (nn.CrossEntropyLoss, nn.NLLLoss)) and loss_fn.reduction == "mean"
    if not weighted_mean or weight is None or targets.is_floating_point():  # class probabilities: a mean over samples
        return None
    return weight[targets]


# ---- distributions -------------------------------------------------------------------------------


class KLDivergenceFromLogits(nn.Module):
    """KL(p ‖ softmax(z)) with `batchmean`, the reduction that matches the definition of KL.

    torch's `kl_div` takes log-probabilities as input and sums over everything with 'sum', or
    divides by the element count with 'mean' (not KL); taking logits here removes both traps.
    """

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.kl_div(F.log_softmax(logits, dim=-1), target, reduction="batchmean")


class JensenShannonFromLogits(nn.Module):
    """JS(p, q) = ½ KL(p ‖ m) + ½ KL(q ‖ m), m = ½(p + q), q = softmax(z); symmetric, at most ln 2."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_q = F.log_softmax(logits, dim=-1)
        q = log_q.exp()
        log_m = torch.log((0.5 * (target + q)).clamp_min(torch.finfo(q.dtype).tiny))
        kl_pm = F.kl_div(log_m, target, reduction="batchmean")
        kl_qm = F.kl_div(log_m, log_q, reduction="batchmean", log_target=True)
        return 0.5 * (kl_pm + kl_qm)


# ---- regression ----------------------------------------------------------------------------------


class LogCosh(nn.Module):
    """mean(log cosh(ŷ − y)), to float32 precision for every residual (relative error below 3e-7).

    Small |r|: log cosh r = log1p(2·sinh²(r/2)), free of cancellation (the familiar
    |r| + softplus(−2|r|) − ln 2 subtracts numbers near ln 2 and returns 0 for |r| < 1e-4 in
    float32). Large |r|: |r| + softplus(−2|r|) − ln 2, where sinh² would overflow and the result is
    large enough that the subtraction costs nothing. Each branch sees its input clamped to its own
    side so the branch not taken has a finite gradient; the gradient is tanh(r) either way.
    """

    SWITCH = 4.0  # past it the large-|r| form is exact to float32 precision, below it sinh² cannot overflow

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        r = (prediction - target).abs()
        small = r.clamp(max=self.SWITCH)
        large = r.clamp(min=self.SWITCH)
        near_zero = torch.log1p(2 * torch.sinh(small / 2) ** 2)
        far = large + F.softplus(-2 * large) - math.log(2)
        return torch.where(r < self.SWITCH, near_zero, far).mean()


class Quantile(nn.Module):
    """Pinball loss: mean(max(q·(y − ŷ), (q − 1)·(y − ŷ))); its minimiser is the q-quantile."""

    def __init__(self, q: float):
        super().__init__()
        self.q = q

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        r = target - prediction
        return torch.maximum(self.q * r, (self.q - 1) * r).mean()


class GaussianNLL(nn.Module):
    """The model outputs a mean and a raw variance per target; variance = softplus(raw) + eps."""

    def __init__(self, eps: float = 1e-6, full: bool = False):
        super().__init__()
        self.eps = eps
        self.full = full

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mean, raw = outputs.chunk(2, dim=-1)
        variance = F.softplus(raw) + self.eps
        return F.gaussian_nll_loss(mean, target, variance, full=self.full, eps=self.eps)


# ---- classification ------------------------------------------------------------------------------


class Focal(nn.Module):
    """Focal loss (Lin et al. 2017): mean(−α_y (1 − p_y)^γ log p_y), p = softmax(z).

    γ = 0 and no α is cross-entropy; larger γ down-weights samples the model already gets right.

    Both factors come from the log-odds against the true class, a = logsumexp_{k≠y} z_k − z_y:
    −log p_y = softplus(a) and log(1 − p_y) = −softplus(−a). Neither cancels, so 1 − p_y keeps its
    digits when p_y rounds to 1, and (1 − p_y)^γ = exp(−γ·softplus(−a)) has a finite gradient for
    every γ ≥ 0; the naive (1 − p_y)^γ has an infinite one at p_y = 1 for 0 < γ < 1.
    """

    alpha: torch.Tensor | None  # a buffer: moves with the module to the model's device

    def __init__(self, gamma: float, alpha: torch.Tensor | None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("alpha", alpha)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
        true_logit = logits.gather(1, target.unsqueeze(1)).squeeze(1)
        others = logits.scatter(1, target.unsqueeze(1), float("-inf"))
        log_odds_against = others.logsumexp(1) - true_logit
        loss = torch.exp(-self.gamma * F.softplus(-log_odds_against)) * F.softplus(log_odds_against)
        if self.alpha is not None:
            loss = loss * self.alpha[target]
        return loss.mean()


# ---- robust and adaptive -------------------------------------------------------------------------


def barron_rho(x: torch.Tensor, alpha: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Barron's general robust loss ρ(x, α, c) (CVPR 2019), elementwise.

    ρ = |α−2|/α · (((x/c)²/|α−2| + 1)^(α/2) − 1), with its limits at α = 2 (½(x/c)²) and α = 0
    (log(½(x/c)² + 1)). Written as ρ = |α−2|·L/2 · exprel(α·L/2), L = log1p((x/c)²/|α−2|), which
    is the same for α ≠ 0 and is exact at α = 0 itself, so ρ and its slope in α keep their digits
    for small α (the quotient form subtracts two numbers of size 1/α in the slope).
    """
    alpha = torch.as_tensor(alpha, dtype=x.dtype, device=x.device)
    squared = (x / scale) ** 2
    beta = torch.clamp((alpha - 2).abs(), min=torch.finfo(x.dtype).eps)  # α = 2 takes the limit below
    half_log = 0.5 * torch.log1p(squared / beta)
    general = beta * half_log * exprel(alpha * half_log)
    return torch.where(alpha == 2, 0.5 * squared, general)


EXPREL_SERIES = tuple(1 / math.factorial(k + 1) for k in range(18))  # tᵏ/(k+1)!: the next term is < 1e-16 for |t| < 1


def exprel(t: torch.Tensor) -> torch.Tensor:
    """(eᵗ − 1)/t, 1 at t = 0, with full precision and an exact slope everywhere.

    For |t| < 1 a Taylor polynomial: expm1(t)/t itself is exact there, but its slope,
    eᵗ/t − expm1(t)/t², cancels. The powers are taken in one broadcast op, so the polynomial costs
    a few kernels rather than one per term.
    """
    inside = t.abs() < 1
    small = torch.where(inside, t, torch.zeros_like(t))
    powers = small.unsqueeze(-1) ** torch.arange(len(EXPREL_SERIES), dtype=t.dtype, device=t.device)
    # an elementwise product and a sum, not a matmul, which autocast would take to half precision
    series = (powers * torch.tensor(EXPREL_SERIES, dtype=t.dtype, device=t.device)).sum(-1)
    large = torch.where(inside, torch.ones_like(t), t)
    return torch.where(inside, series, torch.expm1(large) / large)


class Robust(nn.Module):
    """ρ(ŷ − y, α, c) with fixed α and c, averaged."""

    def __init__(self, alpha: float, scale: float):
        super().__init__()
        self.alpha = alpha
        self.scale = scale

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        alpha = torch.tensor(self.alpha, dtype=prediction.dtype, device=prediction.device)
        return barron_rho(prediction - target, alpha, torch.tensor(self.scale)).mean()


# Trapezoid rule for Z(α) = ∫ exp(−ρ(x, α, 1)) dx = 2∫ exp(u − ρ(eᵘ, α, 1)) du over u = log x. In u
# the integrand decays exponentially at both ends for every α ∈ [0, 2] (at least as e^(−|u|), the
# Cauchy tail of α = 0) and is analytic in a strip around the real line, where the trapezoid rule
# converges geometrically: this grid gives log Z and d log Z/dα to about 1e-10 and 3e-9 (relative)
# over the whole range (measured against 30-digit mpmath quadrature).
# The slope is why it is a quadrature and not a table: d log Z/dα → −∞ like ¼·log(2 − α) as α → 2,
# which a spline in α cannot follow; the rule below integrates it like any other α.
PARTITION_U_RANGE = (-30.0, 35.0)  # the tails beyond hold less than 1e-12 of Z and of its slope
PARTITION_U_STEP = 0.2


def barron_log_partition(alpha: torch.Tensor) -> torch.Tensor:
    """log Z(α) for α ∈ [0, 2], in float64 and differentiable in α, returned in α's dtype."""
    low, high = PARTITION_U_RANGE
    u = torch.arange(low, high + PARTITION_U_STEP / 2, PARTITION_U_STEP, dtype=torch.float64, device=alpha.device)
    rho = barron_rho(u.exp().unsqueeze(-1), alpha.double().unsqueeze(0), torch.tensor(1.0, dtype=torch.float64))
    log_z = math.log(2 * PARTITION_U_STEP) + torch.logsumexp(u.unsqueeze(-1) - rho, dim=0)
    return log_z.to(alpha.dtype)


class AdaptiveRobust(nn.Module):
    """Barron's adaptive loss: the negative log-likelihood −log p(x | α, c) = ρ(x, α, c) + log c + log Z(α).

    α (one per output, kept in [alpha_min, alpha_max] by a sigmoid) and the scale c (kept above
    scale_min by a softplus) are learned with the model. The log Z(α) term is what makes learning α
    meaningful: without it, making α small would always lower ρ.
    """

    def __init__(
        self,
        outputs: int,
        alpha_min: float,
        alpha_max: float,
        alpha_init: float,
        scale_init: float,
        scale_min: float = 1e-5,
    ):
        super().__init__()
        self.alpha_min, self.alpha_max, self.scale_min = alpha_min, alpha_max, scale_min
        fraction = (alpha_init - alpha_min) / (alpha_max - alpha_min)
        self.alpha_logit = nn.Parameter(torch.full((outputs,), math.log(fraction / (1 - fraction))))
        # softplus⁻¹(scale_init − scale_min)
        self.scale_raw = nn.Parameter(torch.full((outputs,), math.log(math.expm1(scale_init - scale_min))))

    def alpha(self) -> torch.Tensor:
        return self.alpha_min + (self.alpha_max - self.alpha_min) * torch.sigmoid(self.alpha_logit)

    def scale(self) -> torch.Tensor:
        return F.softplus(self.scale_raw) + self.scale_min

    def forward(self, prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        alpha, scale = self.alpha(), self.scale()
        nll = barron_rho(prediction - target, alpha, scale) + torch.log(scale) + barron_log_partition(alpha)
        return nll.mean()

    def logged_values(self) -> dict[str, float]:
        values = {}
        for name, tensor in (("alpha", self.alpha()), ("scale", self.scale())):
            for i, value in enumerate(tensor.detach().cpu().tolist()):
                values[f"loss/{name}" + (f"_{i}" if len(tensor) > 1 else "")] = value
        return values


# ---- composite -----------------------------------------------------------------------------------


class WeightedSum(nn.Module):
    """Σ wᵢ·Lᵢ over terms that share the model's outputs and targets."""

    def __init__(self, terms: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__()
        self.terms = nn.ModuleList(terms)
        self.weights = list(weights)

    def forward(self, outputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.combine([term(outputs, target) for term in self.terms])

    def combine(self, term_values: Sequence[torch.Tensor]) -> torch.Tensor:
        """The total from the terms' values: affine in each, so it also combines per-sample values
        (whose means are the terms' batch losses) into per-sample totals whose mean is the batch loss."""
        return torch.stack([w * value for w, value in zip(self.weights, term_values)]).sum(0)

    def logged_values(self) -> dict[str, float]:
        return {
            key.replace("loss/", f"loss/term{i}.", 1): value
            for i, term in enumerate(self.terms)
            for key, value in logged_values(term).items()
        }


class UncertaintyWeightedSum(WeightedSum):
    """Kendall et al. 2018: Σ wᵢ·(exp(−sᵢ)·Lᵢ + sᵢ), sᵢ = log σᵢ² learned; wᵢ a fixed prior (1 by default).

    A term that stays large gets a large σᵢ and so a small weight; the + sᵢ keeps σᵢ from growing forever.
    """

    def __init__(self, terms: Sequence[nn.Module], weights: Sequence[float]):
        super().__init__(terms, weights)
        self.log_variance = nn.Parameter(torch.zeros(len(terms)))

    def combine(self, term_values: Sequence[torch.Tensor]) -> torch.Tensor:
        total = term_values[0].new_zeros(())
        for i, (w, value) in enumerate(zip(self.weights, term_values)):
            s = self.log_variance[i]
            total = total + w * (torch.exp(-s) * value + s)
        return total

    def logged_values(self) -> dict[str, float]:
        values = super().logged_values()
        for i, s in enumerate(self.log_variance.detach().cpu().tolist()):
            values[f"loss/weight{i}"] = math.exp(-s)
        return values
