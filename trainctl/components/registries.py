"""The registries of everything a config can name. Importing this package does not import torch."""

from typing import Any

from trainctl.components.datasets import DATASETS
from trainctl.components.losses import LOSSES
from trainctl.components.metrics import METRICS
from trainctl.components.models import MODELS
from trainctl.components.optimizers import OPTIMIZERS
from trainctl.components.schedulers import SCHEDULERS
from trainctl.components.transforms import TRANSFORMS
from trainctl.registry import Registry

REGISTRIES: dict[str, Registry[..., Any]] = {
    "datasets": DATASETS,
    "models": MODELS,
    "losses": LOSSES,
    "optimizers": OPTIMIZERS,
    "schedulers": SCHEDULERS,
    "metrics": METRICS,
    "transforms": TRANSFORMS,
}

__all__ = ["DATASETS", "LOSSES", "METRICS", "MODELS", "OPTIMIZERS", "REGISTRIES", "SCHEDULERS", "TRANSFORMS"]
