"""The learning-rate range test's arithmetic (Smith 2017, "Cyclical Learning Rates for Training
Neural Networks", section 3.3): the exponential schedule, the smoothing, the divergence stop and the
suggestion. Plain Python, no torch: `trainctl.training.lr_finder` runs the test, this reads it.

What it does differently from Lightning's and Ignite's finders, and why:

- It runs on a copy built from the config with its seed (`lr_finder`): the same config and seed
  give the same test. Lightning saves a checkpoint into the trainer's folder and loads it back,
  Ignite reloads model and optimizer from a temporary file; neither seeds the test nor restores the
  random state it used, so a run trained after their test differs from one trained without it.
- Each loss is paired with the rate whose update it shows: the loss of step k+1 is the first one
  measured after the update made at step k's rate. Both finders pair a step's loss with the rate of
  that same step, whose update it has not seen yet, and Lightning's schedule jumps two ratios after
  its first step.
- The smoothing is an exponential moving average with bias correction counted from the test's own
  first step, so the first smoothed values are the losses' mean, not a fraction of it (Lightning
  corrects with the trainer's global step: one step late, and hardly at all after earlier
  training; Ignite starts its average at one batch's loss).
- The average spans a twenty-fifth of the sweep (4 steps of 100) rather than a fixed 0.98 (about
  50 steps: half of a 100-step sweep, wider than the whole descent of a model that learns fast).
  The suggestion is read from the average run forwards and then backwards over the forward result,
  which has no lag: a forward average alone lags the raw curve by beta / (1 - beta) steps, which
  moves its steepest point and its minimum to higher rates.
- A non-finite loss stops the test at once (Ignite's `loss > 5 * best` is false for NaN, so its
  test runs on), and the divergence rule also works for losses that are negative or near zero.
- The steepest descent is measured per decade of the rate (Lightning differentiates with respect
  to the rate itself, which on an exponential sweep favours the smallest rates), only up to the
  minimum, and the suggestion combines it with a tenth of the minimum (see `suggest`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainctl.errors import UserError

MIN_STEPS = 5  # fewer cannot show a descent and its slope
DIVERGENCE_FACTOR = 4.0  # the test stops when the smoothed loss rises this far above its best (Lightning's)
SMOOTHING_SHARE = 25  # the average spans about 1/SMOOTHING_SHARE of the sweep's steps
MIN_DESCENT = 0.01  # a fall below the initial loss by less than this share of it is noise, not a descent
SAFETY_DECADES = 1.0  # the suggestion stays this many decades below the rate of the lowest loss


@dataclass(frozen=True)
class RangeSettings:
    """The sweep: `steps` optimizer steps whose rates rise exponentially from `min_lr` to `max_lr`."""

    min_lr: float = 1e-7
    max_lr: float = 10.0
    steps: int = 100
    divergence: float = DIVERGENCE_FACTOR

    def check(self) -> None:
        """A UserError naming the option for a sweep that cannot run."""
        for option, value in (("--min-lr", self.min_lr), ("--max-lr", self.max_lr)):
            if not math.isfinite(value) or value <= 0:
                raise UserError(f"{option} {value:g}: must be a positive number (the rates rise exponentially)")
        if self.min_lr >= self.max_lr:
            raise UserError(f"--min-lr {self.min_lr:g} must be below --max-lr {self.max_lr:g}")
        if self.steps < MIN_STEPS:
            raise UserError(f"--steps {self.steps}: at least {MIN_STEPS} steps are needed to see the loss fall")

    def rates(self) -> list[float]:
        return exponential_rates(self.min_lr, self.max_lr, self.steps)

    @property
    def smoothing(self) -> float:
        return smoothing_beta(self.steps)


def exponential_rates(min_lr: float, max_lr: float, steps: int) -> list[float]:
    """`steps` rates from `min_lr` to `max_lr` (both exactly), each a constant ratio above the one before."""
    ratio = math.log(max_lr / min_lr) / (steps - 1)
    inner = [min_lr * math.exp(ratio * index) for index in range(1, steps - 1)]
    return [min_lr, *inner, max_lr]


def smoothing_beta(steps: int) -> float:
    """The average's decay: its window (1 / (1 - beta) steps) is a twenty-fifth of the sweep, as
    the curve's features are a share of the sweep wide whatever its length; a sweep of at most 25
    steps is not smoothed."""
    window = max(1.0, steps / SMOOTHING_SHARE)
    return 1.0 - 1.0 / window


class MovingAverage:
    """The exponential moving average with bias correction: m_t = beta m_(t-1) + (1 - beta) x_t from
    m_0 = 0, divided by 1 - beta^t, so each value is a weighted mean of the values so far (the
    first is x_1 itself, not (1 - beta) x_1)."""

    def __init__(self, beta: float):
        self.beta, self.running, self.count = beta, 0.0, 0

    def add(self, value: float) -> float:
        """Take the next value; return the average so far."""
        self.count += 1
        self.running = self.beta * self.running + (1.0 - self.beta) * value
        return self.running / (1.0 - self.beta**self.count)


def moving_average(values: list[float], beta: float) -> list[float]:
    """The bias-corrected moving average after each value."""
    average = MovingAverage(beta)
    return [average.add(value) for value in values]


def centred_average(values: list[float], beta: float) -> list[float]:
    """The moving average run forwards, then backwards over its result: the backward pass cancels
    the forward one's lag, so a feature of the curve stays at the rate where it happened."""
    forward = moving_average(values, beta)
    return moving_average(forward[::-1], beta)[::-1]


class DivergenceCheck:
    """The online stop rule, fed one loss per step: a non-finite loss, or a smoothed loss (the
    forward average: it sees only the steps so far) more than `factor` times its best. "Times" is
    read as a rise of (factor - 1) times the best's size: the same for a positive best, and a rule
    that still means something for a negative one (a Gaussian NLL's)."""

    def __init__(self, beta: float, factor: float = DIVERGENCE_FACTOR):
        self.average, self.factor = MovingAverage(beta), factor
        self.best = math.inf
        self.reason = ""  # why the test stopped; empty while it goes on

    def add(self, loss: float) -> bool:
        """Take a step's loss; True when the test should stop here."""
        if not math.isfinite(loss):
            self.reason = f"the loss was {loss}"
            return True
        smoothed = self.average.add(loss)
        self.best = min(self.best, smoothed)
        if smoothed > self.best + (self.factor - 1.0) * abs(self.best):
            self.reason = f"the smoothed loss rose above {self.factor:g}× its best"
            return True
        return False


@dataclass(frozen=True)
class Sweep:
    """What a range test measured: each tested rate and the loss measured after its update."""

    rates: list[float]  # the rates tested, in order (all of the schedule unless it stopped)
    losses: list[float]  # finite; losses[i] is the first loss measured after an update at rates[i]
    initial_loss: float  # of the first batch, before any update: what a descent must go below
    settings: RangeSettings
    stop_reason: str = ""  # why it stopped before the schedule's end; empty when it ran through
    stopped_at: float | None = None  # the rate whose loss stopped it (not in `rates`)


RULE = (
    "the lower of the steepest point and a tenth of the minimum: the steepest point can sit at the "
    "edge of a cliff, a tenth of the minimum can lie past the fastest descent, and a rate too high "
    "costs the run where one a little low costs only some speed"
)


@dataclass(frozen=True)
class Suggestion:
    """The suggested rate and what it was chosen from. `lr` is None when the loss never fell
    clearly: `problem` says why and what to change."""

    lr: float | None
    smoothed: list[float]  # the centred average the choice was read from, one per tested rate
    problem: str = ""
    chosen: str = ""  # which of the two rates it is, and why
    steepest_lr: float = math.nan
    steepest_slope: float = math.nan  # the smoothed loss's change per decade of the rate there
    minimum_lr: float = math.nan
    minimum_loss: float = math.nan
    notes: tuple[str, ...] = ()  # what makes it less certain, and what to change

    def reasoning(self) -> list[str]:
        """How the rate was chosen, a line per step, for the command's output."""
        if self.lr is None:
            return [f"no suggestion: {self.problem}"]
        return [
            f"steepest descent of the smoothed loss: lr={self.steepest_lr:.2g} "
            f"({self.steepest_slope:+.3g} per decade of lr)",
            f"lowest smoothed loss: {self.minimum_loss:.4g} at lr={self.minimum_lr:.2g}",
            f"suggestion: lr={self.lr:.2g}, {self.chosen}",
            f"  rule: {RULE}",
        ]


def suggest(sweep: Sweep) -> Suggestion:
    """The suggested rate: the lower of the steepest descent of the smoothed loss and a tenth of
    the rate where the smoothed loss is lowest.

    Both are common rules (Lightning's steepest point; fastai's minimum / 10), and each fails in
    its own way. The steepest point is where each step gains most, but where the descent ends in a
    sudden cliff it lies right at the cliff's edge, and a rate at the edge of a short test tends to
    diverge in a long run. A tenth of the minimum keeps a decade of margin from where the loss stops
    falling, but ignores where the descent is: after a long slow descent it lands past the steepest
    point. The lower of the two has that margin and is never past the fastest descent. When a tenth
    of the minimum is below the tested range, the steepest point is taken, with a note.
    """
    rates, losses = sweep.rates, sweep.losses
    smoothed = centred_average(losses, sweep.settings.smoothing)
    if len(smoothed) < 3:
        return Suggestion(None, smoothed, _too_short(sweep))
    lowest = min(range(len(smoothed)), key=smoothed.__getitem__)
    initial = sweep.initial_loss
    if lowest < 2 or initial - smoothed[lowest] <= MIN_DESCENT * abs(initial):
        return Suggestion(None, smoothed, _no_descent(sweep, smoothed[lowest]))
    # The descent is the last stretch before the minimum that stays below the initial loss: a fall
    # back from a loss the first rates blew up is a recovery, not a rate that trains well.
    above = [index for index in range(lowest) if smoothed[index] >= initial]
    first = above[-1] if above else 0
    slopes = slopes_per_decade(rates[first : lowest + 1], smoothed[first : lowest + 1])
    steepest = first + min(range(len(slopes)), key=slopes.__getitem__)
    steepest_lr, margin = rates[steepest], rates[lowest] / 10**SAFETY_DECADES
    if margin < rates[0]:
        lr, chosen = steepest_lr, "the steepest point (a tenth of the minimum is below the tested range)"
    elif margin < steepest_lr:
        lr, chosen = margin, f"a tenth of the minimum (lower than the steepest point, lr={steepest_lr:.2g})"
    else:
        lr, chosen = steepest_lr, f"the steepest point (lower than a tenth of the minimum, lr={margin:.2g})"
    return Suggestion(
        lr,
        smoothed,
        chosen=chosen,
        steepest_lr=steepest_lr,
        steepest_slope=slopes[steepest - first],
        minimum_lr=rates[lowest],
        minimum_loss=smoothed[lowest],
        notes=_notes(sweep, lowest, steepest, margin),
    )


def slopes_per_decade(rates: list[float], values: list[float]) -> list[float]:
    """The change of `values` per decade of the rate at each point: central differences inside,
    one-sided at the ends."""
    decades = [math.log10(rate) for rate in rates]
    slopes = []
    for index in range(len(values)):
        before, after = max(index - 1, 0), min(index + 1, len(values) - 1)
        slopes.append((values[after] - values[before]) / (decades[after] - decades[before]))
    return slopes


def _notes(sweep: Sweep, lowest: int, steepest: int, margin: float) -> tuple[str, ...]:
    notes = []
    if steepest == 0:
        notes.append(
            f"the loss fell fastest at the first rate, --min-lr {sweep.settings.min_lr:g}: lower --min-lr "
            "to see where the descent starts"
        )
    if lowest == len(sweep.rates) - 1 and not sweep.stop_reason:
        notes.append(
            f"the loss was still falling at --max-lr {sweep.settings.max_lr:g}: the minimum may lie "
            "higher; raise --max-lr to see it"
        )
    if margin < sweep.rates[0]:
        notes.append(
            f"the loss was lowest within a decade of --min-lr {sweep.settings.min_lr:g}: lower --min-lr "
            "to see the whole descent"
        )
    return tuple(notes)


def _too_short(sweep: Sweep) -> str:
    return (
        f"the test stopped at step {len(sweep.losses) + 1} ({sweep.stop_reason} at lr={sweep.stopped_at:.2g}), too "
        f"early to see the loss fall; the range starts too high: lower --min-lr (now {sweep.settings.min_lr:g})"
    )


def _no_descent(sweep: Sweep, lowest_loss: float) -> str:
    return (
        f"the smoothed loss never fell clearly below the initial loss ({sweep.initial_loss:.4g} before any "
        f"update; lowest {lowest_loss:.4g}): the range starts too high, or the model does not learn with this "
        f"config; lower --min-lr (now {sweep.settings.min_lr:g}) or check the config with trainctl validate"
    )
