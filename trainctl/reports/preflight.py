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


@dataclass(frozen=True)
class FirstPass:
    """What the checks look at: the config, its built parts, and what one forward and backward pass
    on the first training batch gave."""

    config: Config
    parts: TrainingParts
    outputs: torch.Tensor
    loss_value: float
    gradients_finite: bool
    kind: OutputKind
    expected: float | None

    @property
    def loss(self) -> str:
        return self.config.loss.name


def lint(
    config: Config,
    parts: TrainingParts,
    outputs: torch.Tensor,
    loss_value: float,
    gradients_finite: bool,
    kind: OutputKind,
    expected: float | None,
) -> list[Finding]:
    """Every check's findings, in the order `validate` prints them."""
    seen = FirstPass(config, parts, outputs, loss_value, gradients_finite, kind, expected)
    checks = (_data_checks, _first_pass_checks, _activation_checks, _task_checks, _averaging_checks)
    return [finding for check in checks for finding in check(seen)]


def _data_checks(seen: FirstPass) -> list[Finding]:
    config, data = seen.config, seen.parts.data
    findings = [Finding("warning", "data", message, fix) for message, fix in data.warnings]
    loader = [key for key in ("num_workers", "pin_memory", "persistent_workers") if getattr(config.data, key)]
    streamed = any(data.split(name).streamed for name in ("train", "val", "test"))
    if loader and not streamed:
        findings.append(
            Finding(
                "warning",
                "loader-settings-unused",
                f"data.{', data.'.join(loader)} set, but dataset "
                f"{config.dataset.name!r} is held in memory and batched from preloaded tensors, with no DataLoader",
                "leave them out; they are for image files and random (augmenting) transforms, which are streamed",
            )
        )
    return findings


def _first_pass_checks(seen: FirstPass) -> list[Finding]:
    """Errors: a pass that cannot train (wrong output size, a non-finite loss or gradient)."""
    task, plan = seen.parts.data.task, seen.parts.data.plan
    findings = []
    if task.kind == "classification" and seen.outputs.shape[-1] != plan.num_outputs:
        findings.append(
            Finding(
                "error",
                "output-size",
                f"the model gives {seen.outputs.shape[-1]} outputs, but {seen.loss} on this dataset of "
                f"{task.num_classes} classes needs {plan.num_outputs}",
                "make the last layer's size follow the dataset",
            )
        )
    if not math.isfinite(seen.loss_value):
        findings.append(
            Finding(
                "error",
                "non-finite-loss",
                f"the initial loss is {seen.loss_value}",
                "check the data for inf/NaN and the loss's parameters",
            )
        )
    elif not seen.gradients_finite:
        findings.append(
            Finding(
                "error",
                "non-finite-gradient",
                "the initial gradient has inf or NaN values",
                "lower the learning rate's starting point, check the data, or use a bounded loss",
            )
        )
    return findings


def _activation_checks(seen: FirstPass) -> list[Finding]:
    """The model's last activation against what the loss expects: squashed twice, or not at all."""
    loss, kind = seen.loss, seen.kind
    profile = loss_profile(loss, seen.config.loss.params)
    no_activation = "end the model without an activation (model.output_activation: none)"
    findings = []
    if profile.input == "logits" and kind in ("probabilities", "log-probabilities"):
        if seen.parts.data.plan.encoding == "binary_column" or loss == "bce_with_logits":
            findings.append(
                Finding(
                    "warning",
                    "double-sigmoid",
                    f"the model's outputs are already {kind}, and {loss} applies a sigmoid again",
                    no_activation,
                )
            )
        else:
            findings.append(
                Finding(
                    "warning",
                    "double-softmax",
                    f"the model's outputs are already {kind} (it ends in softmax or log_softmax), and {loss} "
                    "applies log_softmax again: outputs squashed twice learn slowly and never become confident",
                    f"{no_activation}; {loss} takes logits",
                )
            )
    if loss == "bce_with_logits" and kind == "unit interval":
        findings.append(
            Finding(
                "warning",
                "double-sigmoid",
                "the model's outputs already lie in (0, 1) (it ends in a sigmoid), and "
                "bce_with_logits applies a sigmoid again",
                no_activation,
            )
        )
    if profile.input == "log-probabilities" and kind != "log-probabilities":
        given = (
            "probabilities (it ends in softmax)" if kind == "probabilities" else f"{kind} values, not log-probabilities"
        )
        findings.append(
            Finding(
                "warning",
                "not-log-probabilities",
                f"{loss} expects log-probabilities, but the model outputs {given}",
                "end the model with log_softmax (model.output_activation: log_softmax), or use cross_entropy on logits",
            )
        )
    return findings


def _task_checks(seen: FirstPass) -> list[Finding]:
    """The loss against the task: a regression loss on classes, a start far from a uniform guess."""
    task, loss = seen.parts.data.task, seen.loss
    findings = []
    if task.kind == "classification" and loss_profile(loss, seen.config.loss.params).target == "value":
        findings.append(
            Finding(
                "warning",
                "regression-loss-on-classes",
                f"{loss} on a classification dataset ({task.describe()}) trains against one-hot vectors: its "
                "gradient fades as a softmax saturates, and it does not model class probabilities",
                "use cross_entropy on logits (model.output_activation: none)",
            )
        )
    expected, value = seen.expected, seen.loss_value
    if expected is not None and math.isfinite(value) and value > 3 * expected + 1:
        findings.append(
            Finding(
                "warning",
                "high-initial-loss",
                f"the initial loss {value:.3f} is far above the {expected:.3f} of a model that predicts uniformly",
                "check input scaling and the last layer's initialisation",
            )
        )
    return findings


def _averaging_checks(seen: FirstPass) -> list[Finding]:
    ema, config = seen.config.trainer.ema, seen.config
    if ema is None:
        return []
    updates = config.trainer.epochs * optimizer_steps(config, seen.parts.data) // ema.every
    problem = ema_horizon_problem(ema.decay, updates)
    if not problem:
        return []
    fix = "lower trainer.ema.decay (the average spans about 1/(1 − decay) updates) or train longer"
    return [Finding("warning", "ema-horizon", problem, fix)]


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
