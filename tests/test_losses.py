"""Every loss against an independent numpy implementation of its formula, edge cases included.

The references below are written from the formulas in the catalogue, in float64 numpy, without
calling the torch function under test.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
import pytest
import torch
from scipy import integrate

from trainctl.components.losses import LOSSES, LossContext
from trainctl.data.prepare import outputs_to_predictions
from trainctl.data.task import Task, plan_targets
from trainctl.errors import UserError
from trainctl.nn.losses import barron_log_partition, barron_rho
from trainctl.output import Output
from trainctl.training.loss_report import per_sample_losses
from trainctl.workflows import train

from helpers import write_config

RNG = np.random.default_rng(0)
CLASSES = 4


def build(name: str, task: Task, counts: tuple[int, ...] | None = None, **params):
    """The loss as `build_loss` makes it: the registry's builder with a LossContext."""
    info = LOSSES.get(name).info
    plan = plan_targets(info.target or "value", task, info.layout)
    if counts is None:
        counts = (10, 20, 30, 40)[: task.num_classes] if task.kind == "classification" else ()
    resolved = LOSSES.get(name).params.model_validate(params).model_dump(mode="json")
    return LOSSES.get(name).build(LossContext(task, plan, counts), resolved)


CLASSIFICATION = Task("classification", num_classes=CLASSES, class_names=tuple("abcd"))
BINARY = Task("classification", num_classes=2, class_names=("no", "yes"))
REGRESSION = Task("regression", num_targets=3)


def torch_loss(module, outputs: np.ndarray, target: np.ndarray, target_dtype=torch.float32):
    out = torch.tensor(outputs, dtype=torch.float32, requires_grad=True)
    value = module(out, torch.tensor(target, dtype=target_dtype))
    value.backward()
    assert torch.isfinite(out.grad).all(), "gradient not finite"
    return value.item(), out.grad


# ---- numpy references ----------------------------------------------------------------------------


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def log_sigmoid(z):
    return -np.logaddexp(0, -z)


def rho(x, alpha, c):
    z = (x / c) ** 2
    if alpha == 2:
        return 0.5 * z
    if alpha == 0:
        return np.log(0.5 * z + 1)
    b = abs(alpha - 2)
    return b / alpha * ((z / b + 1) ** (alpha / 2) - 1)


@functools.cache
def log_partition(alpha):
    value, _ = integrate.quad(lambda x: math.exp(-rho(x, alpha, 1.0)), -np.inf, np.inf, limit=500)
    return math.log(value)


REGRESSION_REFERENCES = {
    "mse": (lambda p, y: np.mean((p - y) ** 2), {}),
    "l1": (lambda p, y: np.mean(np.abs(p - y)), {}),
    "huber": (
        lambda p, y: np.mean(np.where(np.abs(p - y) <= 0.7, 0.5 * (p - y) ** 2, 0.7 * (np.abs(p - y) - 0.35))),
        {"delta": 0.7},
    ),
    "smooth_l1": (
        lambda p, y: np.mean(np.where(np.abs(p - y) < 0.7, 0.5 * (p - y) ** 2 / 0.7, np.abs(p - y) - 0.35)),
        {"beta": 0.7},
    ),
    "log_cosh": (lambda p, y: np.mean(np.logaddexp(p - y, y - p) - np.log(2)), {}),
    "quantile": (lambda p, y: np.mean(np.maximum(0.9 * (y - p), -0.1 * (y - p))), {"q": 0.9}),
    "robust": (lambda p, y: np.mean(rho(p - y, 0.5, 1.3)), {"alpha": 0.5, "scale": 1.3}),
}

# residual scales: ordinary, zero residuals, very large residuals
CASES = {
    "random": lambda y: y + RNG.normal(0, 1.5, y.shape),
    "zero residual": lambda y: y.copy(),
    "huge residual": lambda y: y + RNG.choice([-1, 1], y.shape) * 1e4,
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("name", REGRESSION_REFERENCES)
def test_regression_losses_match_their_formulas(name, case):
    reference, params = REGRESSION_REFERENCES[name]
    target = RNG.normal(0, 1, (16, 3))
    prediction = CASES[case](target).astype(np.float32).astype(np.float64)
    value, _ = torch_loss(build(name, REGRESSION, **params), prediction, target)
    expected = reference(prediction, target)
    assert value == pytest.approx(expected, rel=1e-5, abs=1e-6)
    if case == "zero residual":
        assert value == pytest.approx(0.0, abs=1e-6)


def test_all_equal_targets():
    target = np.full((8, 3), 2.5)
    for name, (reference, params) in REGRESSION_REFERENCES.items():
        prediction = np.linspace(-1, 1, 24).reshape(8, 3)
        value, _ = torch_loss(build(name, REGRESSION, **params), prediction, target)
        assert value == pytest.approx(reference(prediction, target), rel=1e-5), name


def test_poisson_nll():
    log_rate = RNG.normal(0, 1, (16, 3))
    counts = RNG.poisson(3, (16, 3)).astype(np.float64)
    value, _ = torch_loss(build("poisson_nll", REGRESSION), log_rate, counts)
    assert value == pytest.approx(np.mean(np.exp(log_rate) - counts * log_rate), rel=1e-5)


def test_gaussian_nll_on_classes_fits_one_hot_vectors_and_predicts_from_the_means(tmp_path):
    """A mean and a variance per class: the model has twice the outputs, and the class is the argmax
    of the means alone (a large variance output must not win)."""
    plan = plan_targets("value", CLASSIFICATION, "mean_variance")
    assert (plan.num_outputs, plan.encoding, plan.layout) == (2 * CLASSES, "one_hot", "mean_variance")
    means = torch.tensor([[0.1, 0.9, 0.0, 0.2], [0.7, 0.1, 0.3, 0.0]])
    variances = torch.tensor([[50.0, 0.0, 0.0, 0.0], [0.0, 0.0, 50.0, 0.0]])
    outputs = torch.cat([means, variances], dim=1)
    assert outputs_to_predictions(outputs, CLASSIFICATION, "mean_variance", None, None).tolist() == [1, 0]
    config = write_config(tmp_path, loss={"name": "gaussian_nll"}, trainer={"epochs": 30, "device": "cpu"})
    summary = train(config, out=tmp_path / "run", output=Output(quiet=True)).summary
    assert summary["test"]["accuracy"] > 0.8  # iris: it learns the classes from the means


@pytest.mark.parametrize("full", [False, True])
def test_gaussian_nll_predicts_mean_and_variance(full):
    assert plan_targets("value", REGRESSION, "mean_variance").num_outputs == 6
    outputs = RNG.normal(0, 1, (16, 6))
    target = RNG.normal(0, 1, (16, 3))
    value, _ = torch_loss(build("gaussian_nll", REGRESSION, full=full), outputs, target)
    mean, raw = outputs[:, :3], outputs[:, 3:]
    variance = np.log1p(np.exp(raw)) + 1e-6
    expected = np.mean(0.5 * (np.log(variance) + (target - mean) ** 2 / variance)) + (
        0.5 * np.log(2 * np.pi) if full else 0
    )
    assert value == pytest.approx(expected, rel=1e-5)


# ---- classification ------------------------------------------------------------------------------


def classification_inputs(extreme: bool = False, single_class: bool = False):
    logits = RNG.normal(0, 2, (20, CLASSES))
    if extreme:
        logits = RNG.choice([-1e4, 1e4], (20, CLASSES))
    labels = np.full(20, 2) if single_class else RNG.integers(0, CLASSES, 20)
    return logits.astype(np.float32).astype(np.float64), labels


EDGE = {"random": {}, "extreme logits": {"extreme": True}, "single class present": {"single_class": True}}


@pytest.mark.parametrize("edge", EDGE)
def test_cross_entropy(edge):
    logits, labels = classification_inputs(**EDGE[edge])
    value, _ = torch_loss(build("cross_entropy", CLASSIFICATION), logits, labels, torch.long)
    nll = -log_softmax(logits)[np.arange(20), labels]
    assert value == pytest.approx(nll.mean(), rel=1e-5)


def test_cross_entropy_label_smoothing():
    logits, labels = classification_inputs()
    value, _ = torch_loss(build("cross_entropy", CLASSIFICATION, label_smoothing=0.2), logits, labels, torch.long)
    targets = np.full((20, CLASSES), 0.2 / CLASSES)
    targets[np.arange(20), labels] += 0.8
    assert value == pytest.approx(np.mean(-(targets * log_softmax(logits)).sum(1)), rel=1e-5)


def test_cross_entropy_balanced_class_weight():
    logits, labels = classification_inputs()
    value, _ = torch_loss(build("cross_entropy", CLASSIFICATION, class_weight="balanced"), logits, labels, torch.long)
    counts = np.array([10, 20, 30, 40])
    weights = counts.sum() / (CLASSES * counts)  # scikit-learn's "balanced"
    from sklearn.utils.class_weight import compute_class_weight

    assert weights == pytest.approx(
        compute_class_weight("balanced", classes=np.arange(4), y=np.repeat(np.arange(4), counts))
    )
    nll = -log_softmax(logits)[np.arange(20), labels]
    assert value == pytest.approx((weights[labels] * nll).sum() / weights[labels].sum(), rel=1e-5)


@pytest.mark.parametrize("edge", EDGE)
def test_nll(edge):
    logits, labels = classification_inputs(**EDGE[edge])
    log_probabilities = log_softmax(logits)
    value, _ = torch_loss(build("nll", CLASSIFICATION), log_probabilities, labels, torch.long)
    assert value == pytest.approx(-log_probabilities[np.arange(20), labels].mean(), rel=1e-5)


@pytest.mark.parametrize("pos_weight", [None, 3.0])
@pytest.mark.parametrize("edge", ["random", "extreme logits"])
def test_bce_with_logits(pos_weight, edge):
    z = RNG.normal(0, 2, (20, 1)) if edge == "random" else RNG.choice([-1e4, 1e4], (20, 1))
    y = RNG.integers(0, 2, (20, 1)).astype(np.float64)
    value, _ = torch_loss(build("bce_with_logits", BINARY, pos_weight=pos_weight), z, y)
    w = pos_weight or 1.0
    expected = np.mean(-(w * y * log_sigmoid(z) + (1 - y) * log_sigmoid(-z)))
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("edge", EDGE)
def test_focal(edge):
    logits, labels = classification_inputs(**EDGE[edge])
    alpha = [0.1, 0.2, 0.3, 0.4]
    value, _ = torch_loss(build("focal", CLASSIFICATION, gamma=2.0, alpha=alpha), logits, labels, torch.long)
    log_p = log_softmax(logits)[np.arange(20), labels]
    expected = np.mean(-np.array(alpha)[labels] * (1 - np.exp(log_p)) ** 2 * log_p)
    assert value == pytest.approx(expected, rel=1e-5, abs=1e-7)


def test_focal_with_gamma_zero_is_cross_entropy_and_binary_alpha():
    logits, labels = classification_inputs()
    focal, _ = torch_loss(build("focal", CLASSIFICATION, gamma=0.0), logits, labels, torch.long)
    assert focal == pytest.approx(-log_softmax(logits)[np.arange(20), labels].mean(), rel=1e-5)
    binary_logits, binary_labels = logits[:, :2], labels % 2
    value, _ = torch_loss(build("focal", BINARY, gamma=1.0, alpha=0.25), binary_logits, binary_labels, torch.long)
    log_p = log_softmax(binary_logits)[np.arange(20), binary_labels]
    alpha_t = np.where(binary_labels == 1, 0.25, 0.75)
    assert value == pytest.approx(np.mean(-alpha_t * (1 - np.exp(log_p)) * log_p), rel=1e-5)


@pytest.mark.parametrize("p", [1, 2])
def test_multi_margin(p):
    logits, labels = classification_inputs()
    value, _ = torch_loss(build("multi_margin", CLASSIFICATION, margin=0.5, p=p), logits, labels, torch.long)
    true = logits[np.arange(20), labels][:, None]
    hinge = np.maximum(0, 0.5 - true + logits) ** p
    hinge[np.arange(20), labels] = 0
    assert value == pytest.approx(np.mean(hinge.sum(1) / CLASSES), rel=1e-5)


# ---- distributions -------------------------------------------------------------------------------


def soft_targets(one_hot: bool = False):
    if one_hot:
        return np.eye(CLASSES)[RNG.integers(0, CLASSES, 20)]
    p = RNG.random((20, CLASSES)) + 0.05
    return p / p.sum(1, keepdims=True)


def xlogy(x, y):
    return np.where(x > 0, x * np.log(np.where(x > 0, y, 1)), 0.0)


@pytest.mark.parametrize("one_hot", [False, True])
@pytest.mark.parametrize("edge", ["random", "extreme logits"])
def test_kl_div_is_batchmean_kl_from_logits(one_hot, edge):
    logits, _ = classification_inputs(extreme=edge == "extreme logits")
    p = soft_targets(one_hot)
    value, _ = torch_loss(build("kl_div", CLASSIFICATION), logits, p)
    log_q = log_softmax(logits)
    expected = np.sum(xlogy(p, p) - p * log_q) / len(p)
    assert value == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("one_hot", [False, True])
def test_js_divergence(one_hot):
    logits, _ = classification_inputs()
    p = soft_targets(one_hot)
    value, _ = torch_loss(build("js_divergence", CLASSIFICATION), logits, p)
    q = np.exp(log_softmax(logits))
    m = 0.5 * (p + q)
    expected = (0.5 * (xlogy(p, p) - xlogy(p, m)).sum() + 0.5 * (xlogy(q, q) - xlogy(q, m)).sum()) / len(p)
    assert value == pytest.approx(expected, rel=1e-5)
    assert value <= math.log(2)


# ---- Barron's robust and adaptive losses ---------------------------------------------------------


@pytest.mark.parametrize(
    "alpha, closed_form",
    [
        (2.0, lambda z: 0.5 * z),  # scaled L2
        (0.0, lambda z: np.log(0.5 * z + 1)),  # Cauchy / log
        (1.0, lambda z: np.sqrt(z + 1) - 1),  # pseudo-Huber / Charbonnier
        (-2.0, lambda z: 2 * z / (z + 4)),  # Geman-McClure
    ],
)
def test_barron_special_cases(alpha, closed_form):
    x = torch.linspace(-30, 30, 121, dtype=torch.float64)
    c = 1.7
    value = barron_rho(x, torch.tensor(alpha, dtype=torch.float64), torch.tensor(c, dtype=torch.float64))
    assert value.numpy() == pytest.approx(closed_form((x.numpy() / c) ** 2), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("limit", [0.0, 2.0])
def test_barron_is_continuous_at_its_limits(limit):
    x = torch.linspace(-5, 5, 41, dtype=torch.float64)
    at = barron_rho(x, torch.tensor(limit, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    near = barron_rho(x, torch.tensor(limit + 1e-6, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64))
    assert near.numpy() == pytest.approx(at.numpy(), rel=1e-4, abs=1e-6)


def high_precision_log_partition(alpha: float) -> tuple[float, float]:
    """log Z(α) and d log Z/dα by mpmath's tanh-sinh quadrature at 30 digits, over x itself, from
    the published ρ and its α-derivative (b = 2 − α): d log Z/dα = −∫ ∂ρ/∂α·e^(−ρ) dx / Z."""
    with mpmath.workdps(30):
        a, b = mpmath.mpf(alpha), 2 - mpmath.mpf(alpha)

        def rho(x):
            return (b / a) * ((x * x / b + 1) ** (a / 2) - 1)

        def rho_slope(x):
            power = (x * x / b + 1) ** (a / 2)
            return -2 / a**2 * (power - 1) + (b / a) * power * (
                mpmath.log1p(x * x / b) / 2 + a * x * x / (2 * b * (b + x * x))
            )

        pieces = [0, 1, 10, 100, 1e4, mpmath.inf]
        z = 2 * mpmath.quad(lambda x: mpmath.exp(-rho(x)), pieces)
        slope = -2 * mpmath.quad(lambda x: rho_slope(x) * mpmath.exp(-rho(x)), pieces) / z
        return float(mpmath.log(z)), float(slope)


# α as the loss holds it (float32), across the whole range adaptive allows: [0, 2]. The slope
# steepens without bound near 2 (like ¼·log(2 − α)); 0 is taken at 1e-10 (the quotient form of ρ
# has no value at 0 itself), a difference of about 1e-10 in the slope.
@pytest.mark.parametrize("alpha", [0.0, 0.001, 0.01, 0.1, 1.0, 1.5, 1.99, 1.999, 1.999999])
def test_log_partition_and_its_slope_match_high_precision_values(alpha):
    alpha32 = torch.tensor([alpha], dtype=torch.float32, requires_grad=True)
    log_z = barron_log_partition(alpha32)
    log_z.backward()
    expected, expected_slope = high_precision_log_partition(max(alpha32.item(), 1e-10))
    assert log_z.item() == pytest.approx(expected, rel=1e-6)
    assert alpha32.grad.item() == pytest.approx(expected_slope, rel=1e-6)


def test_log_partition_at_the_ends_of_the_range():
    # α = 0 is Cauchy-like, Z = √2·π; α = 2 is a Gaussian, Z = √(2π).
    values = barron_log_partition(torch.tensor([0.0, 2.0], dtype=torch.float64))
    assert values.tolist() == pytest.approx(
        [math.log(math.sqrt(2) * math.pi), math.log(math.sqrt(2 * math.pi))], rel=1e-9
    )


def test_barron_rho_slope_in_alpha_is_exact_near_zero():
    """The slope of ρ in α at α = 0 and 1e-3 in float32, against mpmath's derivative of the quotient form."""
    x = torch.tensor([0.3, 2.0, 50.0])
    for alpha in (0.0, 1e-3):
        a = torch.tensor(alpha, requires_grad=True)
        barron_rho(x, a, torch.tensor(1.0)).sum().backward()
        with mpmath.workdps(40):

            def rho_sum(t):
                return sum((2 - t) / t * ((float(v) ** 2 / (2 - t) + 1) ** (t / 2) - 1) for v in x)

            expected = float(mpmath.diff(rho_sum, mpmath.mpf(max(alpha, 1e-20))))
        assert a.grad.item() == pytest.approx(expected, rel=1e-6)


def test_adaptive_loss_is_the_negative_log_likelihood():
    loss = build("adaptive", REGRESSION, alpha_init=1.2, scale_init=0.8)
    prediction = RNG.normal(0, 1, (16, 3))
    target = RNG.normal(0, 1, (16, 3))
    value, _ = torch_loss(loss, prediction, target)
    expected = np.mean(rho(prediction - target, 1.2, 0.8) + np.log(0.8) + log_partition(1.2))
    assert value == pytest.approx(expected, rel=1e-4)


def test_adaptive_alpha_and_scale_receive_gradients_and_stay_in_range():
    loss = build("adaptive", REGRESSION)
    prediction = torch.randn(64, 3, dtype=torch.float32)
    loss(prediction, torch.randn(64, 3) * 5).backward()
    assert loss.alpha_logit.grad.abs().min() > 0 and loss.scale_raw.grad.abs().min() > 0
    with torch.no_grad():
        loss.alpha_logit.fill_(1e4)
    assert loss.alpha().max().item() <= 1.999 + 1e-6


def test_composite_sum_and_uncertainty_sum():
    logits, labels = classification_inputs()
    terms = [{"name": "cross_entropy", "weight": 1.0}, {"name": "focal", "weight": 0.5, "gamma": 2.0}]
    value, _ = torch_loss(build("sum", CLASSIFICATION, terms=terms), logits, labels, torch.long)
    log_p = log_softmax(logits)[np.arange(20), labels]
    ce = -log_p.mean()
    focal = np.mean(-((1 - np.exp(log_p)) ** 2) * log_p)
    assert value == pytest.approx(ce + 0.5 * focal, rel=1e-5)
    uncertainty = build("uncertainty_sum", CLASSIFICATION, terms=terms)
    with torch.no_grad():
        uncertainty.log_variance.copy_(torch.tensor([0.5, -1.0]))
    value, _ = torch_loss(uncertainty, logits, labels, torch.long)
    assert value == pytest.approx(math.exp(-0.5) * ce + 0.5 + 0.5 * (math.exp(1.0) * focal - 1.0), rel=1e-5)
    assert uncertainty.logged_values() == pytest.approx({"loss/weight0": math.exp(-0.5), "loss/weight1": math.exp(1.0)})


# ---- precision at the extremes -------------------------------------------------------------------


def focal_reference(logits, labels, gamma, alpha=None):
    """Float64, from the odds against the true class S = Σ_{k≠y} exp(z_k − z_y): p_y = 1/(1 + S),
    so −log p_y = log1p(S) and 1 − p_y = S/(1 + S) keep their digits when p_y is near 1."""
    true = logits[np.arange(len(labels)), labels][:, None]
    odds = np.exp(logits - true)
    odds[np.arange(len(labels)), labels] = 0
    s = odds.sum(1)
    weight = 1.0 if alpha is None else np.asarray(alpha)[labels]
    return np.mean(weight * (s / (1 + s)) ** gamma * np.log1p(s))


@pytest.mark.parametrize("gamma", [0.25, 0.5, 2.0])
def test_focal_is_finite_and_exact_when_p_rounds_to_one(gamma):
    """A logit margin of 30 rounds p_y to 1 in float32, where (1 − p)^γ has an infinite slope for γ < 1."""
    logits = np.array([[30.0, 0.0, 0.0, 0.0], [0.0, 30.0, -5.0, 2.0], [1.0, 0.5, -1.0, 0.0], [-3.0, 20.0, 0.0, 17.0]])
    labels = np.array([0, 1, 2, 3])
    value, grad = torch_loss(build("focal", CLASSIFICATION, gamma=gamma), logits, labels, torch.long)
    assert value == pytest.approx(focal_reference(logits, labels, gamma), rel=1e-5)
    reference = torch.tensor(logits, requires_grad=True)  # the published formula in float64 torch ops
    log_p = torch.log_softmax(reference, 1)[torch.arange(4), torch.tensor(labels)]
    (-((1 - log_p.exp()) ** gamma) * log_p).mean().backward()
    assert grad.numpy() == pytest.approx(reference.grad.numpy(), rel=1e-4, abs=1e-7)


@pytest.mark.slow
def test_focal_gamma_below_one_trains_digits_at_a_high_learning_rate(tmp_path):
    """Before the fix: 'the training loss became non-finite at epoch 1' (NaN gradients)."""
    from trainctl.workflows import train

    config = write_config(
        tmp_path,
        data={"name": "digits", "batch_size": 64},
        model={"name": "mlp", "hidden": [256, 256]},
        loss={"name": "focal", "gamma": 0.5},
        optimizer={"name": "adam", "lr": 1e-2},
        trainer={"epochs": 2, "device": "cpu"},
    )
    result = train(config, out=tmp_path / "run", output=Output(quiet=True))
    rows = result.run.read_metrics()
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(math.isfinite(row["train/loss"]) for row in rows)
    assert result.summary["test"]["accuracy"] > 0.8


def test_log_cosh_is_accurate_for_every_residual_in_float32():
    r = np.geomspace(1e-8, 1e3, 301)
    r = np.concatenate([r, -r]).astype(np.float32)
    loss = build("log_cosh", REGRESSION)
    values, gradients = [], []
    for residual in r:  # one element at a time: the value and gradient of that element alone
        value, grad = torch_loss(loss, np.array([[residual]]), np.zeros((1, 1)))
        values.append(value)
        gradients.append(grad.item())
    with mpmath.workdps(40):  # float64 itself loses log cosh r for r below 1e-8
        expected = np.array([float(mpmath.log(mpmath.cosh(mpmath.mpf(float(x))))) for x in r])
    assert np.max(np.abs(np.array(values) - expected) / expected) < 1e-6
    assert values[0] == pytest.approx(0.5e-16, rel=1e-6)  # ½r², where the old form returned 0
    assert np.max(np.abs(np.array(gradients) - np.tanh(r.astype(np.float64))) / np.abs(np.tanh(r))) < 1e-6


# ---- class weights -------------------------------------------------------------------------------


def weighted_cross_entropy_reference(logits, labels, weights, smoothing=0.0):
    """torch's documented weighted mean: Σᵢ Σ_k w_k·qᵢₖ·(−log p_ik) / Σᵢ w_yᵢ, q the (smoothed) one-hot."""
    q = np.full(logits.shape, smoothing / logits.shape[1])
    q[np.arange(len(labels)), labels] += 1 - smoothing
    numerators = -(np.asarray(weights) * q * log_softmax(logits)).sum(1)
    return numerators, np.asarray(weights)[labels]


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_weighted_cross_entropy_per_sample_losses_average_to_the_batch_loss(smoothing):
    logits, labels = classification_inputs()
    weights = [1.0, 2.0, 0.5, 3.0]
    loss = build("cross_entropy", CLASSIFICATION, class_weight=weights, label_smoothing=smoothing)
    outputs, targets = torch.tensor(logits, dtype=torch.float32), torch.tensor(labels)
    numerators, sample_weights = weighted_cross_entropy_reference(logits, labels, weights, smoothing)
    per_sample = per_sample_losses(loss, outputs, targets)
    # each sample's weighted loss over the mean weight: their sum over Σ w/w̄ (= n) is the batch loss
    assert per_sample == pytest.approx(numerators / sample_weights.mean(), rel=1e-5)
    assert per_sample.mean() == pytest.approx(numerators.sum() / sample_weights.sum(), rel=1e-5)
    assert per_sample.mean() == pytest.approx(loss(outputs, targets).item(), rel=1e-5)


def test_per_sample_losses_of_a_composite_with_a_weighted_term_average_to_its_loss():
    logits, labels = classification_inputs()
    terms = [{"name": "cross_entropy", "class_weight": [1.0, 2.0, 0.5, 3.0]}, {"name": "focal", "weight": 0.5}]
    outputs, targets = torch.tensor(logits, dtype=torch.float32), torch.tensor(labels)
    for name in ("sum", "uncertainty_sum"):
        loss = build(name, CLASSIFICATION, terms=terms)
        if name == "uncertainty_sum":
            with torch.no_grad():
                loss.log_variance.copy_(torch.tensor([0.5, -1.0]))
        assert per_sample_losses(loss, outputs, targets).mean() == pytest.approx(
            loss(outputs, targets).item(), rel=1e-5
        )


@pytest.mark.parametrize(
    ("name", "params", "shape"),
    [
        ("focal", {}, "classes"),  # vectorised
        ("adaptive", {}, "values"),  # vectorised, with its own parameters
        ("cross_entropy", {"class_weight": [1.0, 2.0, 0.5, 3.0], "label_smoothing": 0.1}, "classes"),  # one by one
        ("gaussian_nll", {}, "mean_and_variance"),  # one by one: vmap cannot batch its checks
    ],
)
def test_per_sample_losses_of_a_large_split_equal_a_batch_of_one_each(name, params, shape):
    """From VECTORISED_FROM samples on, the batches of one run through vmap where the loss allows it,
    and one by one where it does not: the same values either way."""
    from trainctl.training.loss_report import VECTORISED_FROM

    generator = torch.Generator().manual_seed(0)
    n = VECTORISED_FROM + 3
    task = CLASSIFICATION if shape == "classes" else REGRESSION
    outputs = torch.randn(n, {"classes": CLASSES, "values": 3, "mean_and_variance": 6}[shape], generator=generator)
    targets = torch.randint(0, CLASSES, (n,), generator=generator) if shape == "classes" else torch.randn(n, 3)
    loss = build(name, task, **params)
    with torch.no_grad():
        one_by_one = torch.stack([loss(outputs[i : i + 1], targets[i : i + 1]) for i in range(n)]).double()
        if "class_weight" in params:  # each weighted value over the mean weight (see per_sample_losses)
            weights = torch.tensor(params["class_weight"], dtype=torch.float64)[targets]
            one_by_one = one_by_one * weights / weights.mean()
    assert per_sample_losses(loss, outputs, targets) == pytest.approx(one_by_one.numpy(), rel=1e-5, abs=1e-6)


def test_balanced_class_weight_refuses_a_class_absent_from_training():
    with pytest.raises(UserError, match=r"loss\.class_weight: .*class 'b' has no training sample"):
        build("cross_entropy", CLASSIFICATION, counts=(10, 0, 30, 40), class_weight="balanced")
    with pytest.raises(UserError, match=r"classes 'a', 'd' have no training sample"):
        build("cross_entropy", CLASSIFICATION, counts=(0, 5, 30, 0), class_weight="balanced")


def test_listed_formulas_read_as_computed():
    assert LOSSES.get("kl_div").summary.startswith("KL(target ‖ softmax(logits))")
    formula = LOSSES.get("cross_entropy").info.formula
    assert "/ Σᵢ w_yᵢ" in formula and not formula.startswith("mean(")


# ---- the guard: every registered loss against an independent reference ---------------------------


def as_float32(values: np.ndarray) -> np.ndarray:
    """The values as torch will see them, so the reference and the loss start from the same numbers."""
    return values.astype(np.float32).astype(np.float64)


def regression_pair() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    target = rng.normal(0, 1, (6, 3))
    return as_float32(target + rng.normal(0, 1.5, (6, 3))), target


def logits_and_labels() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    logits = rng.normal(0, 2, (8, CLASSES))
    logits[0] = [30.0, 0.0, 0.0, 0.0]  # p_y rounds to 1 in float32
    return as_float32(logits), np.array([0, 1, 2, 3, 0, 1, 2, 3])


def logits_and_distributions() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(3)
    p = rng.random((8, CLASSES)) + 0.05
    return as_float32(rng.normal(0, 2, (8, CLASSES))), as_float32(p / p.sum(1, keepdims=True))


def gaussian_nll_reference(outputs, target):
    mean, variance = outputs[:, :3], np.logaddexp(0, outputs[:, 3:]) + 1e-6  # softplus(raw) + eps
    return np.mean(0.5 * (np.log(variance) + (target - mean) ** 2 / variance)) + 0.5 * np.log(2 * np.pi)


def cross_entropy_reference(logits, labels, weights=(1.0, 2.0, 0.5, 3.0), smoothing=0.1):
    numerators, sample_weights = weighted_cross_entropy_reference(logits, labels, weights, smoothing)
    return numerators.sum() / sample_weights.sum()


def kl_reference(logits, p):
    return np.sum(xlogy(p, p) - p * log_softmax(logits)) / len(p)


def js_reference(logits, p):
    q = np.exp(log_softmax(logits))
    m = 0.5 * (p + q)
    return (0.5 * (xlogy(p, p) - xlogy(p, m)).sum() + 0.5 * (xlogy(q, q) - xlogy(q, m)).sum()) / len(p)


def multi_margin_reference(logits, labels, margin=0.5, p=2):
    hinge = np.maximum(0, margin - logits[np.arange(len(labels)), labels][:, None] + logits) ** p
    hinge[np.arange(len(labels)), labels] = 0
    return np.mean(hinge.sum(1) / logits.shape[1])


def set_log_variances(loss) -> None:
    with torch.no_grad():
        loss.log_variance.copy_(torch.tensor([0.5, -1.0]))


@dataclass(frozen=True)
class Reference:
    task: Task
    inputs: Callable[[], tuple[np.ndarray, np.ndarray]]
    formula: Callable[[np.ndarray, np.ndarray], float]  # float64 numpy, from the published formula
    params: dict[str, Any] = field(default_factory=dict)
    target_dtype: torch.dtype = torch.float32
    setup: Callable[[Any], None] | None = None  # learned values set to something other than their start


def regression(name: str) -> Reference:
    formula, params = REGRESSION_REFERENCES[name]
    return Reference(REGRESSION, regression_pair, formula, params)


def classification(formula, **params) -> Reference:
    return Reference(CLASSIFICATION, logits_and_labels, formula, params, torch.long)


REFERENCES: dict[str, Reference] = {
    **{name: regression(name) for name in REGRESSION_REFERENCES},
    "poisson_nll": Reference(
        REGRESSION,
        lambda: (regression_pair()[0], np.arange(18.0).reshape(6, 3) % 5),
        lambda z, y: np.mean(np.exp(z) - y * z),
    ),
    "gaussian_nll": Reference(
        REGRESSION,
        lambda: (np.hstack(regression_pair()), regression_pair()[1][::-1].copy()),
        gaussian_nll_reference,
        {"full": True},
    ),
    "adaptive": Reference(
        REGRESSION,
        regression_pair,
        lambda p, y: np.mean(rho(p - y, 1.2, 0.8) + np.log(0.8) + log_partition(1.2)),
        {"alpha_init": 1.2, "scale_init": 0.8},
    ),
    "cross_entropy": classification(cross_entropy_reference, class_weight=[1.0, 2.0, 0.5, 3.0], label_smoothing=0.1),
    "nll": Reference(
        CLASSIFICATION,
        lambda: (log_softmax(logits_and_labels()[0]), logits_and_labels()[1]),
        lambda o, y: -np.mean(o[np.arange(len(y)), y]),
        target_dtype=torch.long,
    ),
    "bce_with_logits": Reference(
        BINARY,
        lambda: (logits_and_labels()[0][:, :1], (logits_and_labels()[1] % 2)[:, None] * 1.0),
        lambda z, y: np.mean(-(3.0 * y * log_sigmoid(z) + (1 - y) * log_sigmoid(-z))),
        {"pos_weight": 3.0},
    ),
    "focal": classification(
        lambda z, y: focal_reference(z, y, 0.5, [0.1, 0.2, 0.3, 0.4]), gamma=0.5, alpha=[0.1, 0.2, 0.3, 0.4]
    ),
    "multi_margin": classification(multi_margin_reference, margin=0.5, p=2),
    "kl_div": Reference(CLASSIFICATION, logits_and_distributions, kl_reference),
    "js_divergence": Reference(CLASSIFICATION, logits_and_distributions, js_reference),
    "sum": classification(
        lambda z, y: cross_entropy_reference(z, y, (1.0,) * CLASSES, 0.0) + 0.5 * focal_reference(z, y, 2.0),
        terms=[{"name": "cross_entropy"}, {"name": "focal", "weight": 0.5, "gamma": 2.0}],
    ),
    "uncertainty_sum": Reference(
        REGRESSION,
        regression_pair,
        lambda p, y: math.exp(-0.5) * np.mean((p - y) ** 2) + 0.5 + (math.exp(1.0) * np.mean(np.abs(p - y)) - 1.0),
        {"terms": [{"name": "mse"}, {"name": "l1"}]},
        setup=set_log_variances,
    ),
}


def numeric_gradient(formula: Callable[[np.ndarray], float], x: np.ndarray, step: float = 1e-6) -> np.ndarray:
    gradient = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        up, down = x.copy(), x.copy()
        up[index] += step
        down[index] -= step
        gradient[index] = (formula(up) - formula(down)) / (2 * step)
    return gradient


@pytest.mark.parametrize("name", LOSSES.names())
def test_every_registered_loss_matches_an_independent_reference(name):
    """A loss added to the catalogue without a reference here fails this test."""
    assert name in REFERENCES, f"loss {name!r} has no independent numeric reference: add one to REFERENCES"
    reference = REFERENCES[name]
    outputs, targets = reference.inputs()
    loss = build(name, reference.task, **reference.params)
    if reference.setup is not None:
        reference.setup(loss)
    value, gradient = torch_loss(loss, outputs, targets, reference.target_dtype)
    assert value == pytest.approx(reference.formula(outputs, targets), rel=1e-5, abs=1e-7)
    expected_gradient = numeric_gradient(lambda o: reference.formula(o, targets), outputs)
    assert gradient.numpy() == pytest.approx(expected_gradient, rel=1e-4, abs=1e-6)


def test_every_reference_names_a_registered_loss():
    assert set(REFERENCES) <= set(LOSSES.names())


def test_class_weighted_run_reports_per_sample_losses_that_average_to_its_test_loss(tmp_path):
    from trainctl.workflows import train

    config = write_config(tmp_path, loss={"name": "cross_entropy", "class_weight": [1.0, 4.0, 0.5]})
    test = train(config, out=tmp_path / "run", output=Output(quiet=True)).summary["test"]
    per_class, support = (
        test["loss_report"]["per_class"],
        {name: row["support"] for name, row in test["per_class"].items()},
    )
    average = sum(per_class[name] * support[name] for name in per_class) / sum(support.values())
    assert average == pytest.approx(test["loss"], rel=1e-5)
