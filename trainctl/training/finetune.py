"""Fine-tuning: `model.freeze` and `optimizer.groups` select parameters by name pattern.

The rule, one for both keys: a pattern selects a parameter when it is the parameter's qualified name
(`fc.weight`) or one of its module prefixes (`layer4`, `features.0`); `*`, `?` and `[...]` are
shell-style wildcards and `*` also crosses dots (`layer[1-3]`, `layer4.*.bn*`). So `layer1` selects
`layer1.0.conv1.weight` but never `layer10.weight`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import torch

from trainctl.errors import UserError

SHOWN_MODULES = 12  # how many top-level module names an error lists


def selects(pattern: str, name: str) -> bool:
    """Whether `pattern` selects the parameter `name`: the name itself or a module prefix of it."""
    return fnmatchcase(name, pattern) or fnmatchcase(name, pattern + ".*")


def _top_level_modules(model: torch.nn.Module) -> str:
    # Modules without parameters (activations, flatten) cannot be frozen: they are not offered.
    names = [name for name, module in model.named_children() if next(module.parameters(), None) is not None]
    names = names or [name for name, _ in model.named_parameters()]
    more = ", ..." if len(names) > SHOWN_MODULES else ""
    return ", ".join(names[:SHOWN_MODULES]) + more


def _nothing_selected(key: str, pattern: str, model: torch.nn.Module, model_name: str) -> UserError:
    return UserError(
        f"{key}: {pattern!r} selects no parameter of model {model_name!r}; its top-level modules: "
        f"{_top_level_modules(model)} (trainctl list-models {model_name} shows every parameter)"
    )


def freeze(model: torch.nn.Module, patterns: Sequence[str], model_name: str) -> None:
    """Turn off the gradient of every parameter a pattern of `model.freeze` selects."""
    if not patterns:
        return
    named = list(model.named_parameters())
    for index, pattern in enumerate(patterns):
        if not any(selects(pattern, name) for name, _ in named):
            raise _nothing_selected(f"model.freeze.{index}", pattern, model, model_name)
    frozen = [parameter for name, parameter in named if any(selects(p, name) for p in patterns)]
    if len(frozen) == len(named):
        raise UserError(f"model.freeze: selects every parameter of model {model_name!r}; nothing would train")
    for parameter in frozen:
        parameter.requires_grad_(False)


@dataclass
class ParameterGroup:
    """One optimizer group: its settings over the optimizer's top-level ones, and its parameters."""

    settings: dict[str, Any]
    parameters: list[torch.nn.Parameter] = field(default_factory=list)


def parameter_groups(
    model: torch.nn.Module, extra: Sequence[torch.nn.Parameter], groups: Sequence[dict[str, Any]], model_name: str
) -> list[ParameterGroup]:
    """The optimizer's groups: first the parameters no group selects (the top-level settings, with
    `extra`, a loss's learned parameters), then each `optimizer.groups` item in config order. Frozen
    parameters are in none. An empty default group is left out."""
    named = list(model.named_parameters())
    chosen = [ParameterGroup({k: v for k, v in group.items() if k != "params"}) for group in groups]
    owner: dict[str, tuple[int, str]] = {}  # parameter name: the group and pattern that selected it
    for index, group in enumerate(groups):
        key = f"optimizer.groups.{index}.params"
        for pattern in group["params"]:
            selected = [(name, p) for name, p in named if selects(pattern, name)]
            if not selected:
                raise _nothing_selected(key, pattern, model, model_name)
            if not any(p.requires_grad for _, p in selected):
                raise UserError(f"{key}: {pattern!r} selects only parameters frozen by model.freeze")
            for name, parameter in selected:
                if name in owner and owner[name][0] != index:
                    raise UserError(
                        f"{key}: {pattern!r} and {owner[name][1]!r} (group {owner[name][0]}) both select "
                        f"{name!r}; a parameter belongs to one group"
                    )
                if name not in owner and parameter.requires_grad:
                    chosen[index].parameters.append(parameter)
                owner[name] = (index, pattern)
    default = ParameterGroup({}, [p for name, p in named if p.requires_grad and name not in owner] + list(extra))
    return [group for group in (default, *chosen) if group.parameters]
