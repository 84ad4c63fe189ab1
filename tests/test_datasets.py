"""The bundled datasets, read from scikit-learn's files without importing sklearn, equal its loaders."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import sklearn.datasets

from trainctl.data import sklearn_files


@pytest.mark.parametrize("loader", ["load_digits", "load_iris", "load_wine", "load_breast_cancer", "load_diabetes"])
def test_files_read_directly_equal_sklearn_loaders(loader):
    direct = sklearn_files._read(loader)
    assert direct is not None, "the file is not where scikit-learn keeps it"
    reference = getattr(sklearn.datasets, loader)()
    np.testing.assert_allclose(direct.data, reference.data, rtol=1e-12, atol=1e-15)
    np.testing.assert_array_equal(direct.target, reference.target)
    if loader != "load_diabetes":
        assert direct.target_names == tuple(str(name) for name in reference.target_names)


@pytest.mark.subprocess
def test_loading_digits_does_not_import_sklearn():
    code = (
        "import sys; from trainctl.data import sklearn_files; t = sklearn_files.load('load_digits'); "
        "print(t.data.shape, 'sklearn' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "(1797, 64) False"
