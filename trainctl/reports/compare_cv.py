"""`trainctl compare CV CV ...`: cv folders (`trainctl cv`) side by side, each test metric as its
mean ± sd over the folder's folds, and for two, the difference of each metric fold by fold.

Two cross-validations are compared only on the same folds: the same data (the keys that decide
which samples there are), the same split seeds, fold count and repeats. Each fold then holds out
the same rows in both, so the per-fold differences pair what was scored on the same samples: a
paired t test over the folds both finished gives the interval of their mean.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from trainctl.errors import UserError
from trainctl.reports.compare import config_differences
from trainctl.reports.compare_groups import GroupComparison, folder_labels, metric_names
from trainctl.reports.cross_validation import CvRecord, fold_values, read_cv, summarise
from trainctl.reports.significance import PairComparison, Test, common_members, data_identity, paired_differences

TITLE = "test metrics of each cv folder: mean ± sd over its folds (best checkpoints)"


# Data keys that do not change which rows a fold holds out: the split seeds are compared as the
# record's, the validation split is drawn from the rows a fold trains on, and test_fraction is unused.
NOT_THE_FOLDS = {"split_seed", "val_fraction", "test_fraction"}


def fold_definition(record: CvRecord) -> dict[str, Any]:
    """What decides which rows each fold holds out."""
    identity = data_identity(record.config)
    data = {f"data.{key}": value for key, value in identity.items() if key not in NOT_THE_FOLDS}
    return {"folds": record.folds, "repeats": record.repeats, "split seeds": record.split_seeds, **data}


def fold_mismatch(records: list[CvRecord]) -> list[str]:
    """The keys whose values make the folds of these cross-validations differ, in the first one's order."""
    definitions = [fold_definition(record) for record in records]
    keys = list(definitions[0]) + [key for d in definitions[1:] for key in d if key not in definitions[0]]
    return [key for key in dict.fromkeys(keys) if any(d.get(key) != definitions[0].get(key) for d in definitions)]


def compare_cv(folders: list[Path]) -> GroupComparison:
    records = [read_cv(folder) for folder in folders]
    mismatch = fold_mismatch(records)
    if mismatch:
        raise UserError(
            f"{', '.join(map(str, folders))}: these cross-validations were not split into the same folds "
            f"({', '.join(mismatch)} differ); compare cv folders run on the same data with the same "
            "data.split_seed, --folds and --repeats"
        )
    configs = [record.config for record in records]
    summaries = [summarise(folder, record) for folder, record in zip(folders, records)]
    metrics = metric_names(summaries)
    labels = folder_labels(folders, "-cv")
    pair = compare_two_cv(folders, records, labels) if len(folders) == 2 else None
    return GroupComparison(
        folders, labels, config_differences(configs), configs, summaries, metrics, pair, TITLE, "folds", "runs"
    )


def compare_two_cv(folders: list[Path], records: list[CvRecord], labels: list[str]) -> PairComparison:
    """Each metric's mean per-fold difference (second − first) with a paired t interval over the
    folds both cross-validations finished."""
    comparison = PairComparison(labels[0], labels[1])
    first, second = (fold_values(folder, record) for folder, record in zip(folders, records))
    names = [name for name in first if name in second]
    if records[0].config.get("loss") != records[1].config.get("loss"):
        names = [name for name in names if name != "loss"]  # a focal loss value says nothing next to cross-entropy's
    common = common_members(first, second, names)
    if len(common) < 2:
        comparison.notes.append("no paired comparison: each cv folder needs two finished folds in common")
        return comparison
    differences = paired_differences(first, second, names, common)
    method = f"paired t test over {len(common)} folds (the difference per fold, on the same held-out rows)"
    comparison.tests.append(Test(method, differences))
    return comparison
