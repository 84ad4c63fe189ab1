"""What the example registers with trainctl: a model, a dataset reading its own file format, and a loss.

The entry point in pyproject.toml names this module, so installing the package makes all three
available to every trainctl command. Builders import torch and numpy inside themselves: listings,
`trainctl plugins` and `--help` stay fast.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from trainctl import register

Width = Annotated[int, Field(ge=1, le=4096)]
Blocks = Annotated[int, Field(ge=0, le=64)]
Fraction = Annotated[float, Field(ge=0, lt=1)]


@register.model(
    "residual_mlp",
    summary="Pre-norm residual MLP: a projection, `blocks` × (LayerNorm, Linear, GELU, Linear) added back, a head",
    input="any (flattened)",
)
def residual_mlp(context: Any, *, width: Width = 64, blocks: Blocks = 2, dropout: Fraction = 0.0) -> Any:
    from trainctl_example_plugin.networks import ResidualMLP

    inputs = math.prod(context.input_shape)  # trainctl gives one sample's shape and the outputs it needs
    return ResidualMLP(inputs, context.num_outputs, width=width, blocks=blocks, dropout=dropout)


@register.dataset(
    "jsonl_points",
    summary='Labelled points from a JSON-lines file: one {"features": [...], "label": ...} object per line',
    task="classification",
    input="the features of each line",
)
def jsonl_points(context: Any, *, path: str) -> Any:
    import numpy as np

    from trainctl.register import RawData, classification_task
    from trainctl_example_plugin.points import read_points

    points = read_points(Path(path))  # every line checked before anything trains
    names = sorted(set(points.labels))
    task = classification_task(tuple(names), f"data.path: the labels of {path}")
    position = {name: index for index, name in enumerate(names)}
    x = np.array(points.features, dtype="float32")
    y = np.array([position[label] for label in points.labels], dtype="int64")
    # trainctl splits, standardises on the training split and moves to tensors, as for its own datasets
    return RawData(x, y, task, (x.shape[1],))


@register.loss(
    "smoothed_focal",
    summary="Focal loss against label-smoothed targets: down-weights easy samples and over-confident logits",
    task="classification",
    target="index",
    input="logits",
    formula="mean(−Σₖ qₖ·(1 − pₖ)^γ·log pₖ),  p = softmax(z),  q = (1 − ε)·onehot(y) + ε/K",
    output="logits",
    use_when="many easy samples and noisy labels; γ = ε = 0 is cross_entropy",
)
def smoothed_focal(
    context: Any,
    *,
    gamma: Annotated[float, Field(ge=0, le=10)] = 2.0,
    smoothing: Fraction = 0.1,
) -> Any:
    from trainctl_example_plugin.networks import SmoothedFocal

    return SmoothedFocal(gamma, smoothing)
