"""`trainctl validate`: build everything, run one forward and backward pass, and catch the classic
loss mistakes before a run is wasted on them.

The checks look at what the model actually outputs on a real batch, not at how it is declared,
so they work for any registered model: a softmax at the end shows as rows that sum to one.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Literal

import torch

from trainctl.components.losses import LOSSES
from trainctl.components.losses import profile as loss_profile
from trainctl.config.loading import Config
from trainctl.data.task import TARGET_DESCRIPTIONS
from trainctl.errors import UserError
from trainctl.training.averaging import ema_horizon_problem
from trainctl.training.build import TrainingParts, optimizer_steps
from trainctl.training.precision import check_precision

OutputKind = Literal["probabilities", "log-probabilities", "unit interval", "unconstrained"]


@dataclass(frozen=True)
class Finding:
    level: Literal["error", "warning"]
    check: str  # a short name for the check, e.g. "double-softmax"
    message: str  # what is wrong
    fix: str  # what to do instead

    def __str__(self) -> str:
        return f"{self.check}: {self.message}. Fix: {self.fix}"


@dataclass
class PreflightReport:
    parameters: int
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    target_shape: tuple[int, ...]
    target_text: str
    output_kind: OutputKind
    initial_loss: float
    expected_loss: float | None
    expected_text: str
    findings: list[Finding] = field(default_factory=list)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    def summary_lines(self) -> list[str]:
        expected = f" (a fresh model should give about {self.expected_text})" if self.expected_text else ""
        return [
            f"parameters: {self.parameters:,}",
            f"input {self.input_shape} → output {self.output_shape} ({self.output_kind}); "
            f"target {self.target_shape}: {self.target_text}",
            f"initial loss: {self.initial_loss:.4f}{expected}",
        ]


class PreflightError(UserError):
    def __init__(self, findings: list[Finding]):
        self.findings = findings
        super().__init__("\n".join(map(str, findings)))

    def lines(self) -> list[str]:
        return [str(f) for f in self.findings]


def output_kind(outputs: torch.Tensor) -> OutputKind:
    """What a batch of outputs looks like: softmax rows, log_softmax rows, sigmoid values, or logits."""
    outputs = outputs.detach().double()
    if outputs.dim() == 2 and outputs.shape[1] > 1:
        if (outputs >= 0).all() and torch.allclose(
            outputs.sum(1), torch.ones(len(outputs), dtype=outputs.dtype), atol=1e-4
        ):
            return "probabilities"
        if (outputs <= 0).all() and torch.allclose(
            torch.logsumexp(outputs, 1), torch.zeros(len(outputs), dtype=outputs.dtype), atol=1e-4
        ):
            return "log-probabilities"
    if ((outputs > 0) & (outputs < 1)).all():
        return "unit interval"
    return "unconstrained"


def expected_initial_loss(loss_name: str, classes: int) -> tuple[float | None, str]:
    """What a fresh model's loss should be about: a uniform prediction's loss, where it is clear."""
    expected = LOSSES.get(loss_name).info.expected
    if expected == "ln_classes" and classes > 1:
        return math.log(classes), f"ln {classes} = {math.log(classes):.4f}"
    if expected == "ln_2":
        return math.log(2), f"ln 2 = {math.log(2):.4f}"
    return None, ""


def lint(
    config: Config,
    parts: TrainingParts,
    outputs: torch.Tensor,
    loss_value: float,
    gradients_finite: bool,
    kind: OutputKind,
    expected: float | None,
) -> list[Finding]:
    loss = config.loss.name
    profile = loss_profile(loss, config.loss.params)
    task, plan = parts.data.task, parts.data.plan
    findings: list[Finding] = []

    def add(level: Literal["error", "warning"], check: str, message: str, fix: str) -> None:
        findings.append(Finding(level, check, message, fix))

    for message, fix in parts.data.warnings:
        add("warning", "data", message, fix)
    loader = [key for key in ("num_workers", "pin_memory", "persistent_workers") if getattr(config.data, key)]
    streamed = any(parts.data.split(name).streamed for name in ("train", "val", "test"))
    if loader and not streamed:
        add(
            "warning",
            "loader-settings-unused",
            f"data.{', data.'.join(loader)} set, but dataset "
            f"{config.dataset.name!r} is held in memory and batched from preloaded tensors, with no DataLoader",
            "leave them out; they are for image files and random (augmenting) transforms, which are streamed",
        )
    if task.kind == "classification" and outputs.shape[-1] != plan.num_outputs:
        add(
            "error",
            "output-size",
            f"the model gives {outputs.shape[-1]} outputs, but {loss} on this dataset of "
            f"{task.num_classes} classes needs {plan.num_outputs}",
            "make the last layer's size follow the dataset",
        )
    if not math.isfinite(loss_value):
        add(
            "error",
            "non-finite-loss",
            f"the initial loss is {loss_value}",
            "check the data for inf/NaN and the loss's parameters",
        )
    elif not gradients_finite:
        add(
            "error",
            "non-finite-gradient",
            "the initial gradient has inf or NaN values",
            "lower the learning rate's starting point, check the data, or use a bounded loss",
        )

    if profile.input == "logits" and kind in ("probabilities", "log-probabilities"):
        if plan.encoding == "binary_column" or loss == "bce_with_logits":
            add(
                "warning",
                "double-sigmoid",
                f"the model's outputs are already {kind}, and {loss} applies a sigmoid again",
                "end the model without an activation (model.output_activation: none)",
            )
        else:
            add(
                "warning",
                "double-softmax",
                f"the model's outputs are already {kind} (it ends in softmax or log_softmax), and {loss} applies "
                "log_softmax again: outputs squashed twice learn slowly and never become confident",
                f"end the model without an activation (model.output_activation: none); {loss} takes logits",
            )
    if loss == "bce_with_logits" and kind == "unit interval":
        add(
            "warning",
            "double-sigmoid",
            "the model's outputs already lie in (0, 1) (it ends in a sigmoid), and "
            "bce_with_logits applies a sigmoid again",
            "end the model without an activation (model.output_activation: none)",
        )
    if profile.input == "log-probabilities" and kind != "log-probabilities":
        given = (
            "probabilities (it ends in softmax)" if kind == "probabilities" else f"{kind} values, not log-probabilities"
        )
        add(
            "warning",
            "not-log-probabilities",
            f"{loss} expects log-probabilities, but the model outputs {given}",
            "end the model with log_softmax (model.output_activation: log_softmax), or use cross_entropy on logits",
        )
    if task.kind == "classification" and profile.target == "value":
        add(
            "warning",
            "regression-loss-on-classes",
            f"{loss} on a classification dataset ({task.describe()}) trains against one-hot vectors: its gradient fades as a softmax "
            "saturates, and it does not model class probabilities",
            "use cross_entropy on logits (model.output_activation: none)",
        )
    if expected is not None and math.isfinite(loss_value) and loss_value > 3 * expected + 1:
        add(
            "warning",
            "high-initial-loss",
            f"the initial loss {loss_value:.3f} is far above the {expected:.3f} of a model that predicts uniformly",
            "check input scaling and the last layer's initialisation",
        )
    ema = config.trainer.ema
    if ema is not None:
        updates = config.trainer.epochs * optimizer_steps(config, parts.data) // ema.every
        problem = ema_horizon_problem(ema.decay, updates)
        if problem:
            add(
                "warning",
                "ema-horizon",
                problem,
                "lower trainer.ema.decay (the average spans about 1/(1 − decay) updates) or train longer",
            )
    return findings


def preflight(config: Config, parts: TrainingParts) -> PreflightReport:
    """One forward and backward pass on the first training batch, on copies: the real model, loss
    and random state are left exactly as they were, so a checked run equals an unchecked one."""
    model = copy.deepcopy(parts.model)
    loss_fn = copy.deepcopy(parts.loss_fn)
    split = parts.data.train
    inputs = split.first_inputs(config.data.batch_size)
    targets = split.targets[: config.data.batch_size]
    precision = check_precision(config.trainer.precision, parts.device)
    rng = torch.get_rng_state()
    try:
        model.train()
        with precision.autocast():
            outputs = model(inputs)
            loss = loss_fn(outputs, targets)
        loss.backward()
    except (RuntimeError, ValueError) as error:  # torch's words for shapes or sizes that do not fit together
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        if config.trainer.precision != "32":
            raise UserError(
                f"trainer.precision: {config.trainer.precision} fails on {parts.device.type} with this "
                f"model: {reason}; use precision: 32"
            ) from None
        raise UserError(
            f"the first training step fails with this config (model {config.model.name!r}, loss "
            f"{config.loss.name!r}, dataset {config.dataset.name!r}, a batch of {len(targets)}): {reason}"
        ) from None
    finally:
        torch.set_rng_state(rng)
    outputs = outputs.float()
    gradients = [p.grad for p in [*model.parameters(), *loss_fn.parameters()] if p.grad is not None]
    finite = all(bool(torch.isfinite(g).all()) for g in gradients)
    kind = output_kind(outputs)
    expected, expected_text = expected_initial_loss(config.loss.name, parts.data.task.num_classes)
    profile = loss_profile(config.loss.name, config.loss.params)
    encoding = parts.data.plan.encoding
    target_text = {
        "index": "class indices",
        "one_hot": f"one-hot vectors of {parts.data.task.num_classes} classes",
        "binary_column": "0/1 in one column",
    }.get(encoding, TARGET_DESCRIPTIONS[profile.target].split(" (")[0])
    return PreflightReport(
        parameters=sum(p.numel() for p in parts.model.parameters()),
        input_shape=tuple(inputs.shape),
        output_shape=tuple(outputs.shape),
        target_shape=tuple(targets.shape),
        target_text=target_text,
        output_kind=kind,
        initial_loss=loss.item(),
        expected_loss=expected,
        expected_text=expected_text,
        findings=lint(config, parts, outputs, loss.item(), finite, kind, expected),
    )
