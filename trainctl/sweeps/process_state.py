"""The process-wide settings a trial may change, captured once in a warm sweep worker and put back
before each trial, so that every trial starts as it would in a fresh `trainctl train` process.

A fresh process starts with torch's default random state (the same in every process), the thread
count torch chose at import, no deterministic-algorithm mode, float32 as the default dtype, and the
environment, working folder, warning filters and import path it was started with. `trainctl train`
changes some of these (`trainer.threads` sets the thread count; building the model seeds torch) and
a plugin may change any of them; none of them survives into the next trial. The registries and the
plugin record are put back by the worker's command (`trainctl.sweep_worker`), which owns them.

Not reset: what modules keep in their own globals (a plugin's cache, torch's kernel caches), as
any long-lived Python process keeps them; a trial that leaks memory that way is caught by the
worker's memory check (`trainctl.sweeps.workers`).
"""

from __future__ import annotations

import os
import random
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class ProcessState:
    torch_random: torch.Tensor
    torch_seed: int
    numpy_random: Any
    python_random: Any
    numpy_errors: Any  # np.geterr()'s settings, as np.seterr takes them
    threads: int
    deterministic: bool
    deterministic_warn_only: bool
    default_dtype: torch.dtype
    matmul_precision: str
    cudnn: dict[str, bool]
    environment: dict[str, str]
    working_folder: str
    import_path: list[str]
    warning_filters: list[Any] = field(default_factory=list)

    @classmethod
    def capture(cls) -> ProcessState:
        return cls(
            torch_random=torch.get_rng_state(),
            torch_seed=torch.initial_seed(),
            numpy_random=np.random.get_state(),
            python_random=random.getstate(),
            numpy_errors=np.geterr(),
            threads=torch.get_num_threads(),
            deterministic=torch.are_deterministic_algorithms_enabled(),
            deterministic_warn_only=torch.is_deterministic_algorithms_warn_only_enabled(),
            default_dtype=torch.get_default_dtype(),
            matmul_precision=torch.get_float32_matmul_precision(),
            cudnn=_cudnn_flags(),
            environment=dict(os.environ),
            working_folder=os.getcwd(),
            import_path=list(sys.path),
            warning_filters=list(warnings.filters),
        )

    def restore(self) -> None:
        torch.set_rng_state(self.torch_random)
        if torch.cuda.is_initialized():  # a fresh process's CUDA generators start from the same seed
            torch.cuda.manual_seed_all(self.torch_seed)
        np.random.set_state(self.numpy_random)
        random.setstate(self.python_random)
        np.seterr(**self.numpy_errors)
        torch.set_num_threads(self.threads)
        torch.use_deterministic_algorithms(self.deterministic, warn_only=self.deterministic_warn_only)
        torch.set_default_dtype(self.default_dtype)
        torch.set_float32_matmul_precision(self.matmul_precision)
        torch.set_grad_enabled(True)
        for name, value in self.cudnn.items():
            setattr(torch.backends.cudnn, name, value)
        if os.environ != self.environment:
            os.environ.clear()
            os.environ.update(self.environment)
        os.chdir(self.working_folder)
        sys.path[:] = self.import_path
        warnings.filters[:] = self.warning_filters  # type: ignore[index]  # a list, typed as a Sequence
        warnings._filters_mutated()  # type: ignore[attr-defined]  # what catch_warnings calls when it restores them
        _forget_compiled_code()


def _cudnn_flags() -> dict[str, bool]:
    backend = torch.backends.cudnn
    return {name: bool(getattr(backend, name)) for name in ("enabled", "benchmark", "deterministic", "allow_tf32")}


def _forget_compiled_code() -> None:
    """torch.compile's caches (trainer.compile): a fresh process compiles its model anew."""
    dynamo = sys.modules.get("torch._dynamo")
    if dynamo is not None:
        dynamo.reset()


def release_memory() -> None:
    """After a trial: free what it left unreferenced, and the CUDA cache, before the next one.

    What survives the collection is live (modules, their caches) and is frozen: later collections
    skip it. A full collection over torch's and matplotlib's objects takes a quarter of a second,
    as long as a small trial's training; over what one trial made, milliseconds.
    """
    import gc

    gc.collect()
    gc.freeze()
    if torch.cuda.is_initialized():
        torch.cuda.empty_cache()


def resident_bytes() -> int:
    """This process's resident memory now (the leak check compares it between trials)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: the peak is what the system tells
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
