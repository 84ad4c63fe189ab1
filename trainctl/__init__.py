"""trainctl: train PyTorch models from YAML configs, from the command line or from Python.

    import trainctl

    run = trainctl.train("configs/digits_mlp.yaml", overrides=["trainer.epochs=5"])
    run.summary["test"]["accuracy"]

The API (`train`, `evaluate`, `predict`, `load_config`, `Run`, `UserError`, `TrainctlWarning`,
and `register` for plugins) is loaded on first use: `import trainctl` imports no torch, numpy or
pydantic, so the command line's `--help` and listings stay fast. The names live in trainctl.api.
"""

__version__ = "0.1.0"

# Import statements here would run at `import trainctl`; the layout test allows them only under
# `if TYPE_CHECKING:`, which type checkers (mypy, pyright) read as true and Python never runs.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from trainctl.api import Run, TrainctlWarning, evaluate, load_config, predict, train
    from trainctl.errors import UserError

# Each public name and the module it comes from; `register` is a module of its own.
_LAZY = {
    "Run": "trainctl.api",
    "TrainctlWarning": "trainctl.api",
    "UserError": "trainctl.errors",
    "evaluate": "trainctl.api",
    "load_config": "trainctl.api",
    "predict": "trainctl.api",
    "register": "trainctl.register",
    "train": "trainctl.api",
}
__all__ = ["Run", "TrainctlWarning", "UserError", "evaluate", "load_config", "predict", "register", "train"]


def __getattr__(name: str) -> "Any":
    """A public name, imported on first access (PEP 562)."""
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'trainctl' has no attribute {name!r}")
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name != module_name:
            raise  # a module the API needs is missing: not this attribute's fault
        raise AttributeError(f"module 'trainctl' has no attribute {name!r} (no module {module_name})") from None
    value = module if module_name == f"trainctl.{name}" else getattr(module, name)
    globals()[name] = value  # later accesses skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
