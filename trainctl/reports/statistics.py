"""The statistics that say whether a difference is real: Student's t (intervals of a mean over
seeds, paired tests) and the paired bootstrap over test samples.

numpy and math only: scipy is a test dependency, and the commands that read run folders start
without torch. The t distribution's quantile comes from its exact distribution function for an
integer number of degrees of freedom (Abramowitz & Stegun 26.7.3 and 26.7.4, a finite sum of
powers of cos θ), inverted by bisection: exact to the float, for any degrees of freedom, in a
few microseconds, where a printed table would stop at 30 and then approximate.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

LEVEL = 0.95  # every interval trainctl reports
RESAMPLES = 2000  # bootstrap resamples
BOOTSTRAP_SEED = 0  # the same runs give the same interval every time


def t_central_probability(t: float, df: int) -> float:
    """P(|T| ≤ t) for Student's t with `df` degrees of freedom (a positive integer)."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be at least 1, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    sin, cos_squared = math.sin(theta), math.cos(theta) ** 2
    if df % 2 == 1:  # 2/π (θ + sin θ (cos θ + 2/3 cos³θ + ... + (2·4···(ν−3))/(1·3···(ν−2)) cos^(ν−2) θ))
        term = math.cos(theta)
        series = term if df > 1 else 0.0
        for j in range(1, (df - 1) // 2):
            term *= cos_squared * (2 * j) / (2 * j + 1)
            series += term
        return min(1.0, 2 / math.pi * (theta + sin * series))
    term = series = 1.0  # sin θ (1 + 1/2 cos²θ + (1·3)/(2·4) cos⁴θ + ... + (1·3···(ν−3))/(2·4···(ν−2)) cos^(ν−2) θ)
    for j in range(1, df // 2):
        term *= cos_squared * (2 * j - 1) / (2 * j)
        series += term
    return min(1.0, sin * series)


def t_quantile(probability: float, df: int) -> float:
    """The q with P(T ≤ q) = probability, for 0.5 ≤ probability < 1 (e.g. 0.975 for a 95% interval)."""
    if not 0.5 <= probability < 1:
        raise ValueError(f"probability must be in [0.5, 1), got {probability}")
    central = 2 * probability - 1  # P(|T| ≤ q)
    low, high = 0.0, 1.0
    while t_central_probability(high, df) < central:
        low, high = high, high * 2
    while high - low > 1e-13 * max(1.0, high):
        middle = (low + high) / 2
        if t_central_probability(middle, df) < central:
            low = middle
        else:
            high = middle
    return (low + high) / 2


@dataclass(frozen=True)
class MeanInterval:
    """A mean over n values with its sample standard deviation (ddof=1) and a Student t interval
    of the mean; with one value there is neither spread nor interval (None)."""

    n: int
    mean: float
    sd: float | None
    low: float | None
    high: float | None


def mean_interval(values: Sequence[float], level: float = LEVEL) -> MeanInterval:
    array = np.asarray(values, dtype=np.float64)
    mean = float(array.mean())
    if len(array) < 2:
        return MeanInterval(len(array), mean, None, None, None)
    sd = float(array.std(ddof=1))
    half = t_quantile((1 + level) / 2, len(array) - 1) * sd / math.sqrt(len(array))
    return MeanInterval(len(array), mean, sd, mean - half, mean + half)


@dataclass(frozen=True)
class PairedTest:
    """A paired t test of differences (b − a) over matching seeds."""

    interval: MeanInterval  # of the mean difference
    p_value: float | None  # two-sided; None with fewer than two pairs


def paired_t_test(differences: Sequence[float], level: float = LEVEL) -> PairedTest:
    interval = mean_interval(differences, level)
    if interval.sd is None:
        return PairedTest(interval, None)
    if interval.sd == 0:  # every seed moved by exactly the same amount
        return PairedTest(interval, 1.0 if interval.mean == 0 else 0.0)
    t = interval.mean / (interval.sd / math.sqrt(interval.n))
    return PairedTest(interval, 1 - t_central_probability(t, interval.n - 1))


def welch_interval(a: Sequence[float], b: Sequence[float], level: float = LEVEL) -> tuple[float, float, float] | None:
    """Mean(b) − mean(a) with a Welch interval (unpaired, unequal variances), the Welch–Satterthwaite
    degrees of freedom rounded down (a slightly wider, safer interval); None below two values each."""
    if len(a) < 2 or len(b) < 2:
        return None
    xa, xb = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    va, vb = xa.var(ddof=1) / len(xa), xb.var(ddof=1) / len(xb)
    difference = float(xb.mean() - xa.mean())
    if va + vb == 0:
        return difference, difference, difference
    df = (va + vb) ** 2 / (va**2 / (len(xa) - 1) + vb**2 / (len(xb) - 1))
    half = t_quantile((1 + level) / 2, max(1, math.floor(df))) * math.sqrt(va + vb)
    return difference, difference - half, difference + half


def paired_bootstrap(
    statistic: Callable[[np.ndarray], np.ndarray],
    samples: int,
    resamples: int = RESAMPLES,
    seed: int = BOOTSTRAP_SEED,
) -> np.ndarray:
    """`statistic(indices)` over `resamples` resamples of `samples` test samples drawn with
    replacement, one row per resample. Both runs of a pair are scored on the same resample (the
    statistic computes both), which is what makes the bootstrap paired.

    The scheme, for anyone reproducing an interval: `rng = numpy.random.default_rng(seed)`, then
    per resample `rng.integers(0, samples, size=samples)`.
    """
    rng = np.random.default_rng(seed)
    rows = [np.atleast_1d(statistic(rng.integers(0, samples, size=samples))) for _ in range(resamples)]
    return np.stack(rows)


def percentile_interval(values: np.ndarray, level: float = LEVEL) -> tuple[np.ndarray, np.ndarray]:
    """The percentile interval of bootstrap values, per column (numpy's linear percentile)."""
    tail = (1 - level) / 2 * 100
    return np.percentile(values, tail, axis=0), np.percentile(values, 100 - tail, axis=0)
