"""Sanitizer mode for the suites (issue 6): the primitive table's C under ASan and UBSan.

ASan's runtime must be loaded before anything else in the process, so the sanitized libraries
cannot be loaded into this pytest process. Instead a subprocess runs a representative subset of
``tests/test_primitives.py`` (gathers, scatter-adds, slicing, concatenate/stack, reductions,
matmul, where, the softmax loss) and a few fuzz programs on the C backend with:

- ``LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)"``,
  ``ASAN_OPTIONS=detect_leaks=0``: libstdc++ preloaded too, or ASan's ``__cxa_throw``
  interceptor finds no real one and aborts ("CHECK failed: asan_interceptors.cpp:320") the first
  time a C++ extension throws -- matplotlib does on import, which the benchmarks' quick mode
  (tests/test_benchmarks_quick.py) reaches when the whole suite runs so;
- ``CC="gcc -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g"``:
  symgrad honours $CC with arguments, so every library the suite compiles is instrumented
  without a separate cflags hook (the default flags, -O2 -march=native ..., still follow);
- a fresh ``SYMGRAD_CACHE_DIR``: the cache key holds the compiler's ``--version`` line, not
  $CC's arguments, so a shared cache could serve an uninstrumented library (or hand an
  instrumented one to a process without ASan).

The same run by hand::

    SYMGRAD_CACHE_DIR=$(mktemp -d) \\
    LD_PRELOAD="$(gcc -print-file-name=libasan.so) $(gcc -print-file-name=libstdc++.so.6)" \\
    ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \\
    CC="gcc -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -g" \\
    python -m pytest tests/test_primitives.py -s -q -p no:cacheprovider -k "test_gradient_checks and c- and float64 and (take_pairs- or ...)"

and the whole suite with ``python -m pytest -q -p no:cacheprovider tests/`` in the same environment
(hours on a loaded two-core machine: every library is compiled instrumented).
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).parent
SANITIZE_CC = ("-fsanitize=address,undefined", "-fno-sanitize-recover=all",
               "-fno-omit-frame-pointer", "-g")

# Rows of the primitive table: gather/scatter-add (take_*), slicing and indexing, concatenate and
# stack, reductions with axes, matmul, run-time sizes, the course's softmax loss, prod's second
# derivative (the shift and recurrence kernels of primitives/cumulative.py).
ROWS = ["take_repeated", "take_argument", "take_pairs", "take_non_adjacent", "slice_negative_step",
        "index_3d", "concatenate", "stack", "max_axes", "matmul", "runtime_size", "softmax_loss",
        "prod_grad"]


def _libasan():
    gcc = shutil.which("gcc")
    if gcc is None:
        return None
    try:
        path = subprocess.run([gcc, "-print-file-name=libasan.so"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return path if os.path.isabs(path) and os.path.exists(path) else None


LIBASAN = _libasan()


def _preload():
    """libasan first, then libstdc++ (see above: C++ exceptions under ASan)."""
    path = subprocess.run(["gcc", "-print-file-name=libstdc++.so.6"], capture_output=True,
                          text=True, timeout=30).stdout.strip()
    return " ".join([LIBASAN] + ([path] if os.path.isabs(path) and os.path.exists(path) else []))


def sanitized_env(cache_dir):
    return dict(os.environ, LD_PRELOAD=_preload(), ASAN_OPTIONS="detect_leaks=0",
                UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1",
                CC=" ".join(("gcc",) + SANITIZE_CC), SYMGRAD_CACHE_DIR=str(cache_dir),
                SYMGRAD_BACKEND="c", PYTHONDONTWRITEBYTECODE="1")


def assert_clean(out):
    tail = "\n".join(line for line in out.stdout.splitlines() if "Warning" not in line
                     and "TypedDict" not in line)[-6000:] + "\n" + out.stderr[-6000:]
    assert out.returncode == 0, tail
    for word in ("runtime error", "AddressSanitizer", "LeakSanitizer"):
        assert word not in out.stdout and word not in out.stderr, tail


def assert_instrumented(cache_dir):
    libraries = list(Path(cache_dir).rglob("*.so"))
    assert libraries, "the run compiled nothing"
    assert all(b"__asan_report" in p.read_bytes() for p in libraries), \
        "a library was built without -fsanitize=address"


@pytest.mark.skipif(LIBASAN is None, reason="gcc's libasan.so is not installed")
def test_primitive_table_is_clean_under_asan_and_ubsan(tmp_path):
    # the gradient test's library holds the value function too; float64 only, to stay fast
    selector = ("test_gradient_checks and c- and float64 and ("
                + " or ".join(f"{r}-" for r in ROWS) + ")")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(TESTS / "test_primitives.py"), "-q", "-s",
         "-p", "no:cacheprovider", "-k", selector],
        env=sanitized_env(tmp_path / "cache"), capture_output=True, text=True, timeout=600,
        cwd=TESTS.parent)
    assert_clean(out)
    assert " passed" in out.stdout and " failed" not in out.stdout, out.stdout[-2000:]
    assert_instrumented(tmp_path / "cache")


@pytest.mark.skipif(LIBASAN is None, reason="gcc's libasan.so is not installed")
def test_fuzz_programs_are_clean_under_asan_and_ubsan(tmp_path):
    env = sanitized_env(tmp_path / "cache")
    env.update(SYMGRAD_FUZZ_CFLAGS="-O1", SYMGRAD_FUZZ_EXAMPLES="12")
    out = subprocess.run(
        [sys.executable, "-m", "pytest", str(TESTS / "test_fuzz.py"), "-q", "-s",
         "-p", "no:cacheprovider", "-k", "test_random_programs"],
        env=env, capture_output=True, text=True, timeout=600, cwd=TESTS.parent)
    assert_clean(out)
    assert "1 passed" in out.stdout, out.stdout[-2000:]
    assert_instrumented(tmp_path / "cache")
