"""Optimizers. The builder's context is the iterable of parameters to optimise."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import Field

from trainctl.registry import Registry


@dataclass(frozen=True, kw_only=True)
class OptimizerInfo:
    """An optimizer's listing needs nothing beyond its summary and parameters."""


OPTIMIZERS = Registry("optimizer", OptimizerInfo)

LearningRate = Annotated[float, Field(gt=0)]
WeightDecay = Annotated[float, Field(ge=0)]
Beta = Annotated[float, Field(ge=0, lt=1)]


@OPTIMIZERS.register("sgd", summary="Stochastic gradient descent, with optional (Nesterov) momentum")
def sgd(
    parameters: Any,
    *,
    lr: LearningRate = 0.01,
    momentum: Beta = 0.0,
    nesterov: bool = False,
    weight_decay: WeightDecay = 0.0,
) -> Any:
    import torch

    return torch.optim.SGD(parameters, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


@OPTIMIZERS.register("adam", summary="Adam: per-parameter step sizes from running moments of the gradient")
def adam(
    parameters: Any,
    *,
    lr: LearningRate = 1e-3,
    betas: tuple[Beta, Beta] = (0.9, 0.999),
    eps: Annotated[float, Field(gt=0)] = 1e-8,
    weight_decay: WeightDecay = 0.0,  # L2 penalty added to the gradient (use adamw for decoupled decay)
) -> Any:
    import torch

    return torch.optim.Adam(parameters, lr=lr, betas=(betas[0], betas[1]), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("adamw", summary="AdamW: Adam with weight decay decoupled from the gradient step")
def adamw(
    parameters: Any,
    *,
    lr: LearningRate = 1e-3,
    betas: tuple[Beta, Beta] = (0.9, 0.999),
    eps: Annotated[float, Field(gt=0)] = 1e-8,
    weight_decay: WeightDecay = 0.01,
) -> Any:
    import torch

    return torch.optim.AdamW(parameters, lr=lr, betas=(betas[0], betas[1]), eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("rmsprop", summary="RMSprop: steps scaled by a running mean of squared gradients")
def rmsprop(
    parameters: Any,
    *,
    lr: LearningRate = 1e-3,
    alpha: Beta = 0.99,
    momentum: Beta = 0.0,
    weight_decay: WeightDecay = 0.0,
) -> Any:
    import torch

    return torch.optim.RMSprop(parameters, lr=lr, alpha=alpha, momentum=momentum, weight_decay=weight_decay)
