"""The decorators a plugin registers its components with, the same ones the built-ins use.

    from trainctl import register

    @register.model("tiny", summary="One linear layer", input="any")
    def tiny(context, *, bias: bool = True):
        import torch

        return torch.nn.Linear(context.input_shape[-1], context.num_outputs, bias=bias)

Each decorator takes the name, a one-line summary and the fields of its registry's metadata class
(`ModelInfo`, `LossInfo`, ... in `trainctl/components/`). The builder's keyword-only parameters,
with their types, bounds and defaults, are what a config may set: they validate, list and give
file:line errors as a built-in's do. A missing or unknown metadata field fails at import, naming
the field; a name that trainctl or another plugin already registered fails naming both sources.
Importing this module does not import torch.
"""

from __future__ import annotations

from trainctl.components.registries import DATASETS, LOSSES, METRICS, MODELS, OPTIMIZERS, SCHEDULERS, TRANSFORMS

# What a plugin's builders return or raise, from one stable place rather than trainctl's modules:
# a dataset builder returns RawData (classification_task checks the class names), and a bad input
# is a UserError (one line, exit 2).
from trainctl.data.raw import ImageSource, RawData, classification_task
from trainctl.data.task import Task
from trainctl.errors import UserError

# The registries' own `register` methods: mypy checks a plugin's metadata against each one's fields.
model = MODELS.register
dataset = DATASETS.register
loss = LOSSES.register
metric = METRICS.register
optimizer = OPTIMIZERS.register
scheduler = SCHEDULERS.register
transform = TRANSFORMS.register

__all__ = [
    "ImageSource",
    "RawData",
    "Task",
    "UserError",
    "classification_task",
    "dataset",
    "loss",
    "metric",
    "model",
    "optimizer",
    "scheduler",
    "transform",
]
