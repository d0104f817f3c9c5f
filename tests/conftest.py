"""Shared fixtures: the backends every compiling test runs on, and a private compile cache.

``backend`` runs a test on the NumPy interpreter and, once ``symgrad.backend.native`` exists, on
the C backend too. The on-disk cache goes to a temporary directory for the whole session, so the
suite never writes into the user's cache.
"""
import atexit
import importlib.util
import os
import shutil
import tempfile

import numpy as np
import pytest

_CACHE = tempfile.mkdtemp(prefix="symgrad-test-cache-")
atexit.register(shutil.rmtree, _CACHE, ignore_errors=True)
os.environ.setdefault("SYMGRAD_CACHE_DIR", _CACHE)

BACKENDS = ["interp"]
if importlib.util.find_spec("symgrad.backend") is not None and \
        importlib.util.find_spec("symgrad.backend.native") is not None:
    BACKENDS.append("c")


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The name of a backend to pass to ``symgrad.compile(..., backend=backend)``."""
    return request.param


@pytest.fixture
def rng():
    """A seeded generator, so every failure reproduces."""
    return np.random.default_rng(1234)
