"""Reading CIFAR's python batches without letting the file run code.

The official CIFAR-10/100 files are pickled dictionaries of numpy arrays, lists and strings.
Plain `pickle.load` (what torchvision's CIFAR datasets call) executes whatever a file names, so
a tampered batch could run anything. This unpickler builds only the few objects such a batch is
made of, and refuses every other global, the way `torch.load(weights_only=True)` does.
"""

from __future__ import annotations

import codecs
import importlib
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from trainctl.errors import UserError


def _reconstruct() -> Any:
    try:
        multiarray = importlib.import_module("numpy._core.multiarray")
    except ImportError:  # numpy 1.x
        multiarray = importlib.import_module("numpy.core.multiarray")
    return multiarray._reconstruct


# What a numpy array pickled with protocol 2 (as the CIFAR files are) is made of.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,  # how Python 3 pickles bytes in protocol 2
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]()
        raise pickle.UnpicklingError(f"it names {module}.{name}, which a data file has no need of")


def load(path: Path) -> Any:
    """The object pickled in `path`, built from arrays, lists, dicts, numbers and strings only."""
    try:
        with open(path, "rb") as handle:
            # latin1 reads the byte strings of files pickled by Python 2, as the official ones are.
            return _ArraysOnly(handle, encoding="latin1").load()
    except FileNotFoundError:
        raise UserError(f"{path}: file not found") from None
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise UserError(f"{path}: refused to read: {error}") from None
