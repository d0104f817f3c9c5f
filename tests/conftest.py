"""Shared fixtures: the backends every compiling test runs on, and a private compile cache.

``backend`` runs a test on the NumPy interpreter and, once ``symgrad.backends.c.native`` exists, on
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
if importlib.util.find_spec("symgrad.backends.c") is not None and \
        importlib.util.find_spec("symgrad.backends.c.native") is not None:
    BACKENDS.append("c")


@pytest.fixture(params=BACKENDS)
def backend(request):
    """The name of a backend to pass to ``symgrad.compile(..., backend=backend)``."""
    return request.param


@pytest.fixture
def rng():
    """A seeded generator, so every failure reproduces."""
    return np.random.default_rng(1234)


# --- fuzzing (tests/test_fuzz.py): the `fuzz` marker and hypothesis profiles --------------------
# Tests marked `fuzz` run only when asked for (`pytest -m fuzz`); the default run keeps its own
# bounded, derandomized examples. `--hypothesis-profile=long` sets how many programs `-m fuzz`
# tries; `--hypothesis-profile=ci` pins the long test to a small deterministic sample.
try:
    from hypothesis import HealthCheck as _HealthCheck
    from hypothesis import settings as _settings
except ImportError:                                      # hypothesis is a test extra
    _settings = None
if _settings is not None:
    _fuzz_health = [_HealthCheck.too_slow, _HealthCheck.data_too_large]
    # The long run reaches 10,000 programs (issue 21); SYMGRAD_FUZZ_LONG sets another count;
    # SYMGRAD_FUZZ_SHARD=i/n runs the i-th of n disjoint shares of it (tests/test_fuzz.py).
    _settings.register_profile("long", max_examples=int(os.environ.get("SYMGRAD_FUZZ_LONG",
                                                                       "10000")),
                               deadline=None, suppress_health_check=_fuzz_health)
    _settings.register_profile("ci", max_examples=25, deadline=None, derandomize=True,
                               suppress_health_check=_fuzz_health)


def pytest_collection_modifyitems(config, items):
    if "fuzz" in (config.getoption("-m") or ""):
        return
    skip = pytest.mark.skip(reason="fuzz test: run with `pytest -m fuzz "
                                   "--hypothesis-profile=long`")
    for item in items:
        # The mark, not the keyword: item.keywords holds its folders' names too, and every
        # test of a checkout in a folder named "fuzz" was skipped.
        if item.get_closest_marker("fuzz") is not None:
            item.add_marker(skip)


def pytest_terminal_summary(terminalreporter):
    """After a run that fuzzed, how many programs ran and of which kinds (tests/test_fuzz.py)."""
    import sys
    fuzz = sys.modules.get("test_fuzz")
    counts = getattr(fuzz, "COUNTS", None)
    if counts:
        kinds = ", ".join(f"{counts[k]} {k}" for k in (
            "run-time sizes", "float32", "jvp", "hvp",
            "difference quotients outvoted by the complex step") if counts[k])
        shard = f" in shard {fuzz.SHARD + 1}/{fuzz.SHARDS}" if fuzz.SHARDS > 1 else ""
        failed = f"; {counts['failed']} failed (with hypothesis's shrinking)" \
            if counts["failed"] else ""
        terminalreporter.write_line(f"fuzz: {counts['programs']} programs checked{shard} "
                                    f"({kinds}){failed}")
