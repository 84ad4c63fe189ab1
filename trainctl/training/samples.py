"""Each sample's result on an evaluated split, as the columns of test_predictions.csv: what a
paired comparison of two runs resamples (`trainctl.reports.significance`), and what a person
opens to look at single samples.

    row         the sample's row in the dataset (the same for every run on the same split)
    target      the class name, or the value (target_0, target_1, ... for several targets)
    prediction  likewise
    confidence  the predicted class's probability (classification runs whose outputs give probabilities)
    prob_NAME   each class's probability, one column per class in the run's class order, after the
                temperature of a calibrated run (the same probabilities as confidence); what
                `trainctl label-issues` ranks the given labels by
    loss        the sample's loss
    file        the sample's file (image and audio folders)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from trainctl.data.prepare import PreparedData, Split


def sample_columns(
    outputs: torch.Tensor,
    split: Split,
    data: PreparedData,
    losses: np.ndarray,
    probabilities: torch.Tensor | None,
) -> dict[str, list[Any]]:
    rows = split.rows if split.rows is not None else np.arange(len(split))
    columns: dict[str, list[Any]] = {"row": [int(row) for row in rows]}
    labels, predictions = split.labels.cpu(), data.predictions(outputs).cpu()
    if data.task.kind == "classification":
        names = data.task.class_names
        columns["target"] = [names[int(k)] for k in labels]
        columns["prediction"] = [names[int(k)] for k in predictions]
        if probabilities is not None:
            each_class = probabilities.double().cpu()
            columns["confidence"] = each_class.max(dim=1).values.tolist()
            columns.update({f"prob_{name}": each_class[:, k].tolist() for k, name in enumerate(names)})
    else:
        targets = labels.double().reshape(len(labels), -1).numpy()
        predicted = predictions.double().reshape(len(predictions), -1).numpy()
        for name, values in (("target", targets), ("prediction", predicted)):
            if values.shape[1] == 1:
                columns[name] = values[:, 0].tolist()
            else:
                columns.update({f"{name}_{k}": values[:, k].tolist() for k in range(values.shape[1])})
    columns["loss"] = [float(value) for value in losses]
    if data.files and split.rows is not None:
        columns["file"] = [data.files[int(row)] for row in split.rows]
    return columns
