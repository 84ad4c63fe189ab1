"""Whether two runs, or two groups of runs, really differ on the test split: each metric's
difference (second − first) with a 95% interval, said in words.

- Two runs scored on the same test samples: a paired bootstrap over those samples (2000
  resamples, seeded; `statistics.paired_bootstrap` gives the scheme). Both runs are scored on
  each resample, so what the two got right or wrong together cancels out. It needs each run's
  per-sample results (test_predictions.csv, written by train and by eval).
- Two groups (`train --repeats`): a paired t test over the seeds both finished (the per-seed
  differences), or a Welch interval when no seeds match; and the bootstrap over the test samples
  of the seed-averaged difference, when every run has per-sample results. The t interval holds
  the seed-to-seed variation; the bootstrap holds only the test sample's, so it is the narrower.

Metrics are recomputed from the per-sample results exactly as trainctl computes them (the
confusion matrix or regression sums through the metric registry), plus the mean loss (between
runs with the same loss only) and the expected calibration error. No torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.components.metrics import METRICS, RegressionSums, goal
from trainctl.errors import UserError
from trainctl.reports.compare import LOADER_KEYS, _lookup, cell_text, config_differences
from trainctl.reports.groups import GroupRecord, metric_values, read_group
from trainctl.reports.samples import SAMPLES_FILE, SampleTable, read_samples
from trainctl.reports.statistics import (
    LEVEL,
    RESAMPLES,
    paired_bootstrap,
    paired_t_test,
    percentile_interval,
    welch_interval,
)
from trainctl.run_contents import read_data_description, read_summary
from trainctl.training.calibration import expected_calibration_error

# Transforms change what a model sees, not which samples are in the test split: runs with and
# without augmentation are compared on the same samples.
NOT_THE_SPLIT = LOADER_KEYS | {"transforms"}


@dataclass
class Difference:
    """One metric's difference, second − first, with its interval."""

    metric: str
    estimate: float
    low: float
    high: float
    p_value: float | None = None  # the paired t test's, for groups

    def verdict(self, first: str, second: str) -> str:
        if self.low <= 0 <= self.high:
            return "no evidence of a difference"
        second_higher = self.low > 0
        better = second if second_higher == (goal(self.metric) == "max") else first
        return f"{better} is better"

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "difference": self.estimate,
            "interval": [self.low, self.high],
            **({"p_value": self.p_value} if self.p_value is not None else {}),
        }


@dataclass
class Test:
    """One way of putting an interval on the differences, and what it found."""

    method: str  # in words, for the heading
    differences: list[Difference]


@dataclass
class PairComparison:
    first: str  # labels
    second: str
    tests: list[Test] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # why a test could not be made

    def lines(self) -> list[str]:
        """The comparison in words: a heading per test, then a line per metric."""
        out = [f"differences {self.second} − {self.first} on the test split (95% intervals):"]
        for test in self.tests:
            out.append(f"  {test.method}:")
            out += [f"    {difference_line(d, self.first, self.second)}" for d in test.differences]
        out += [f"  {note}" for note in self.notes]
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "first": self.first,
            "second": self.second,
            "level": LEVEL,
            "tests": [
                {
                    "method": test.method,
                    "differences": [
                        {**d.to_dict(), "verdict": d.verdict(self.first, self.second)} for d in test.differences
                    ],
                }
                for test in self.tests
            ],
            "notes": self.notes,
        }


# ---- in words ---------------------------------------------------------------------------------------


def is_fraction(metric: str) -> bool:
    """Accuracy, precision, recall, F1 and ECE are fractions: their differences are in points."""
    return metric == "ece" or (metric in METRICS and METRICS.get(metric).info.task == "classification")


def signed(value: float, decimals: int) -> str:
    """+1.3, −0.6, 0.0 for exactly nothing; a value that rounds to zero gets the decimals it needs
    (up to two more), so an interval's edge near zero shows on which side it is."""
    if value == 0:
        return f"{0:.{decimals}f}"
    for places in range(decimals, decimals + 3):
        text = f"{value:+.{places}f}"
        if float(text) != 0:
            break
    else:
        text = f"{value:+.1g}"  # smaller still: its order of magnitude
    return text.replace("-", "−")


def difference_line(d: Difference, first: str, second: str) -> str:
    """'accuracy: +0.4 points, 95% interval [−0.6, +1.3]: no evidence of a difference'."""
    if is_fraction(d.metric):
        values = [v * 100 for v in (d.estimate, d.low, d.high)]
        decimals = 1 if max(map(abs, values)) >= 1 else 2
        estimate, low, high = (signed(v, decimals) for v in values)
        estimate += " points"
    else:
        estimate, low, high = (
            signed(v, 4) if abs(v) >= 1e-3 or v == 0 else f"{v:+.3g}" for v in (d.estimate, d.low, d.high)
        )
    p = "" if d.p_value is None else f" (p = {d.p_value:.2g})" if d.p_value >= 0.001 else " (p < 0.001)"
    return f"{d.metric}: {estimate}, {LEVEL:.0%} interval [{low}, {high}]{p}: {d.verdict(first, second)}"


# ---- what can be compared --------------------------------------------------------------------------


def data_identity(config: dict[str, Any]) -> dict[str, Any]:
    """The data settings that decide which samples are in the test split (not how they are batched)."""
    return {key: value for key, value in (config.get("data") or {}).items() if key not in NOT_THE_SPLIT}


def split_mismatch(first: dict[str, Any], second: dict[str, Any]) -> str | None:
    """Why two configs' test splits differ (the data keys that differ), or None when they are the same."""
    a, b = data_identity(first), data_identity(second)
    if a == b:
        return None
    keys = sorted(key for key in set(a) | set(b) if a.get(key) != b.get(key))
    return f"data.{', data.'.join(keys)}"


@dataclass
class Scored:
    """A run's per-sample test results and how to recompute its metrics on any resample."""

    samples: SampleTable
    num_classes: int  # 0 for regression

    def metrics(self, names: list[str], indices: np.ndarray) -> np.ndarray:
        s = self.samples
        values = []
        statistics = self._statistics(indices)
        for name in names:
            if name == "loss":
                values.append(s.losses[indices].mean())
            elif name == "ece":
                assert s.confidences is not None
                correct = s.targets[indices] == s.predictions[indices]
                values.append(expected_calibration_error(s.confidences[indices], correct))
            else:
                values.append(METRICS.get(name).build(statistics, {}))
        return np.asarray(values, dtype=np.float64)

    def _statistics(self, indices: np.ndarray) -> Any:
        s = self.samples
        if self.num_classes:
            k = self.num_classes
            codes = s.targets[indices] * k + s.predictions[indices]
            return np.bincount(codes, minlength=k * k).reshape(k, k)
        targets, predictions = s.targets[indices], s.predictions[indices]
        error = predictions - targets
        return RegressionSums(
            len(indices), (error**2).sum(0), np.abs(error).sum(0), targets.sum(0), (targets**2).sum(0)
        )

    def can_compute(self, name: str) -> bool:
        if name == "ece":
            return self.num_classes > 0 and self.samples.confidences is not None
        if name == "loss":
            return True
        if name not in METRICS:  # a plugin's metric not loaded here
            return False
        return METRICS.get(name).info.task == ("classification" if self.num_classes else "regression")


def load_scored(run: Path) -> Scored | str:
    """A run's per-sample results, or why there are none or they cannot be read (a note)."""
    path = run / SAMPLES_FILE
    if not path.is_file():
        return f"{run}: no per-sample test results: run trainctl eval {run} to write them"
    try:
        task = read_data_description(run / "data.json")["task"]
        classes = task["class_names"] if task["kind"] == "classification" else None
        return Scored(read_samples(path, classes), task["num_classes"] if classes is not None else 0)
    except UserError as error:  # the table of metrics is still worth showing: a note, not a failure
        return str(error)


def comparable_metrics(
    names: list[str], first: dict[str, Any], second: dict[str, Any], scored: list[Scored]
) -> list[str]:
    """The metrics both runs have and the per-sample results can give; the loss only for the same loss."""
    kept = []
    for name in names:
        if name == "loss" and first.get("loss") != second.get("loss"):
            continue  # a focal loss value says nothing next to a cross-entropy value
        if all(s.can_compute(name) for s in scored):
            kept.append(name)
    return kept


def bootstrap_test(firsts: list[Scored], seconds: list[Scored], names: list[str], what: str) -> Test:
    """The paired bootstrap of mean(second runs) − mean(first runs), on the same resamples."""
    count = len(firsts[0].samples.rows)

    def difference(indices: np.ndarray) -> np.ndarray:
        return _mean_metrics(seconds, names, indices) - _mean_metrics(firsts, names, indices)

    everything = np.arange(count)
    estimates = difference(everything)
    low, high = percentile_interval(paired_bootstrap(difference, count))
    differences = [Difference(name, float(estimates[k]), float(low[k]), float(high[k])) for k, name in enumerate(names)]
    return Test(f"paired bootstrap over {count} test samples ({RESAMPLES} resamples){what}", differences)


def _mean_metrics(runs: list[Scored], names: list[str], indices: np.ndarray) -> np.ndarray:
    return np.mean([run.metrics(names, indices) for run in runs], axis=0)


def same_samples(scored: list[Scored]) -> bool:
    first = scored[0].samples.rows
    return all(np.array_equal(s.samples.rows, first) for s in scored[1:])


# ---- two runs ---------------------------------------------------------------------------------------


def pair_labels(labels: list[str], configs: list[dict[str, Any]]) -> list[str]:
    """Labels short enough for a sentence: the given ones unless they name config values
    ("digits_mlp (loss.name=focal, ...)"), then the two values of the first key that sets the runs
    apart ("cross_entropy", "focal")."""
    if not any("(" in label for label in labels):
        return labels
    for key in config_differences(configs):
        values = [_lookup(config, key) for config in configs]
        if None not in values and not any(isinstance(value, (dict, list)) for value in values):
            texts = [cell_text(value) for value in values]
            if len(set(texts)) == len(texts):
                return texts
    return labels


def compare_two_runs(runs: list[Path], configs: list[dict[str, Any]], labels: list[str]) -> PairComparison:
    first, second = pair_labels(labels, configs)
    comparison = PairComparison(first, second)
    mismatch = split_mismatch(*configs)
    if mismatch:
        comparison.notes.append(
            f"no paired comparison: the runs were not scored on the same test split ({mismatch} differ)"
        )
        return comparison
    loaded = [load_scored(run) for run in runs]
    missing = [note for note in loaded if isinstance(note, str)]
    if missing:
        comparison.notes += missing
        return comparison
    scored = [s for s in loaded if isinstance(s, Scored)]
    if not same_samples(scored):
        comparison.notes.append("no paired comparison: the runs' per-sample results are not of the same test samples")
        return comparison
    names = comparable_metrics(_recorded_metrics(runs), configs[0], configs[1], scored)
    if not names:
        comparison.notes.append("no paired comparison: the runs' summaries record no test metric in common")
        return comparison
    comparison.tests.append(bootstrap_test(scored[:1], scored[1:], names, ""))
    return comparison


def _recorded_metrics(runs: list[Path]) -> list[str]:
    """The test metrics every run's summary records, in the first run's order."""
    recorded = [
        [key for key, value in read_summary(run / "summary.json").get("test", {}).items() if isinstance(value, float)]
        for run in runs
    ]
    return [name for name in recorded[0] if all(name in other for other in recorded[1:])]


# ---- two groups -------------------------------------------------------------------------------------


def compare_two_groups(folders: list[Path], labels: list[str]) -> PairComparison:
    records = [read_group(folder) for folder in folders]
    comparison = PairComparison(labels[0], labels[1])
    mismatch = split_mismatch(records[0].config, records[1].config)
    if mismatch:
        comparison.notes.append(
            f"no paired comparison: the groups were not scored on the same test split ({mismatch} differ)"
        )
        return comparison
    values = [metric_values(folder, record) for folder, record in zip(folders, records)]
    names = [name for name in values[0] if name in values[1]]
    if records[0].config.get("loss") != records[1].config.get("loss"):
        names = [name for name in names if name != "loss"]
    seeds_test = _seed_test(values, names)
    if seeds_test is not None:
        comparison.tests.append(seeds_test)
    else:
        comparison.notes.append("no test over seeds: each group needs two finished runs (or two seeds in common)")
    pooled = _pooled_bootstrap(folders, records, [r.config for r in records], names)
    if isinstance(pooled, Test):
        comparison.tests.append(pooled)
    else:
        comparison.notes.append(pooled)
    return comparison


def common_members(
    first: dict[str, dict[Any, float]], second: dict[str, dict[Any, float]], names: list[str]
) -> list[Any]:
    """The members (seeds, folds) with a value in both, in the first's order."""
    return [key for key in first.get(names[0], {}) if key in second.get(names[0], {})] if names else []


def paired_differences(
    first: dict[str, dict[Any, float]], second: dict[str, dict[Any, float]], names: list[str], common: list[Any]
) -> list[Difference]:
    """Each metric's mean difference (second − first) over members both have (two or more), with
    its paired t interval and p value."""
    differences = []
    for name in names:
        test = paired_t_test([second[name][key] - first[name][key] for key in common])
        i = test.interval
        assert i.low is not None and i.high is not None  # two pairs or more
        differences.append(Difference(name, i.mean, i.low, i.high, test.p_value))
    return differences


def _seed_test(values: list[dict[str, dict[int, float]]], names: list[str]) -> Test | None:
    """A paired t test over the seeds both groups finished; a Welch interval when fewer than two match."""
    first, second = values
    common = common_members(first, second, names)
    if len(common) >= 2:
        differences = paired_differences(first, second, names, common)
        return Test(f"paired t test over {len(common)} seeds (the difference per seed)", differences)
    welch = [(name, welch_interval(list(first[name].values()), list(second[name].values()))) for name in names]
    if not welch or any(interval is None for _, interval in welch):
        return None
    differences = [Difference(name, *interval) for name, interval in welch if interval is not None]
    return Test("Welch t interval over the seeds (no seeds in common to pair)", differences)


def _pooled_bootstrap(
    folders: list[Path], records: list[GroupRecord], configs: list[dict[str, Any]], names: list[str]
) -> Test | str:
    groups: list[list[Scored]] = []
    for folder, record in zip(folders, records):
        runs = [folder / run.folder for run in record.runs if (folder / run.folder / "summary.json").is_file()]
        loaded = [load_scored(run) for run in runs]
        missing = [note for note in loaded if isinstance(note, str)]
        if missing:
            return f"no bootstrap over test samples: {missing[0]}" + (
                f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            )
        groups.append([s for s in loaded if isinstance(s, Scored)])
    if not all(groups) or not same_samples(groups[0] + groups[1]):
        return "no bootstrap over test samples: the runs' per-sample results are not of the same test samples"
    kept = comparable_metrics(names, configs[0], configs[1], groups[0] + groups[1])
    if not kept:
        return "no bootstrap over test samples: no test metric the per-sample results give"
    what = f", {len(groups[0])} and {len(groups[1])} runs averaged"
    return bootstrap_test(groups[0], groups[1], kept, what)
