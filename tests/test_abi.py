"""The ABI module text made without pycparser (symgrad/backends/c/abi.py) is cffi's own: the same
bytes ``ffi.cdef`` and ``make_py_source`` write, for every C type a prototype may hold."""
import io
import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import cffi
import numpy as np
import pytest
from cffi.recompiler import make_py_source

from symgrad.backends.c import abi, native
from symgrad.core.cspell import CTYPES


def _by_cdef(cdef):
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    text = io.StringIO()
    make_py_source(ffi, "_symgrad_module", text)
    return text.getvalue()


def _parameters():
    """Every form a parameter takes: each C type by value (a size is int64_t), and a pointer to
    it, const or not, restrict or not."""
    for k, ctype in enumerate(sorted(set(CTYPES.values()))):
        yield f"{ctype} v{k}"
        for const, restrict in itertools.product(("", "const "), ("", "restrict ")):
            yield f"{const}{ctype} *{restrict}p{k}{len(const)}{len(restrict)}"


PARAMETERS = list(_parameters())


@pytest.mark.parametrize("cdef", [
    "int symgrad_f();",
    "int symgrad_f(int64_t N, const double *restrict x, double *restrict out);\n",
    "int symgrad_f(" + ", ".join(PARAMETERS) + ");\n",
    # two functions sharing types, as a module's value and value-and-gradient functions do
    "int symgrad_loss(const float *restrict W, const int64_t *restrict y, float *restrict out);\n"
    "int symgrad_loss_value_and_grad(const float *restrict W, const int64_t *restrict y, "
    "float *restrict value, float *restrict grad_W);\n",
    # the value-and-gradient function first: the order of the text decides nothing
    "int symgrad_b(double _Complex *restrict z, bool *restrict m);\n"
    "int symgrad_a(int32_t n, const double _Complex *restrict z, int32_t *restrict i);\n",
])
def test_the_text_is_cffis_own(cdef):
    assert abi.module_text(cdef, "_symgrad_module") == _by_cdef(cdef)


@pytest.mark.parametrize("cdef", [
    "int symgrad_f(double x, ...);",                  # not symgrad's shape: cdef parses these
    "double symgrad_f(double x);",
    "int symgrad_f(struct s *p);",
    "int symgrad_f(const double x);",
    "int symgrad_f(double **p);",
    "int symgrad_f(double x);\nint symgrad_f(double x);",
    "typedef double real;\nint symgrad_f(real x);",
    "",
])
def test_other_c_is_left_to_cdef(cdef):
    assert abi.module_text(cdef, "_symgrad_module") is None


def test_builds_of_every_dtype_import_no_pycparser(tmp_path):
    # A process that builds (value and gradient, float64; every other dtype as an argument)
    # never imports pycparser, and each FFI made from the text passes its arrays right.
    program = """
import json, sys
import numpy as np
import symgrad, symgrad.numpy as snp
f = symgrad.compile(lambda W, X: snp.sum(snp.tanh(X @ W) ** 2), cache_dir=sys.argv[1])
v, g = f.value_and_grad(np.ones((3, 2)), np.ones((4, 3)))
mixed = symgrad.compile(lambda x, n, b, z: snp.sum(x) + snp.sum(n) + snp.sum(b)
                        + snp.sum(snp.real(z)), argnums=(), cache_dir=sys.argv[1])
m = mixed(np.arange(3.0, dtype=np.float32), np.arange(4, dtype=np.int32),
          np.array([True, False]), np.array([1 + 2j, 3 - 1j], dtype=np.complex64))
print(json.dumps(["pycparser" in sys.modules, v, float(m)]))
"""
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    out = subprocess.run([sys.executable, "-c", program, str(tmp_path)], capture_output=True,
                         text=True, check=True, env=env, cwd=root).stdout
    imported, value, mixed = json.loads(out)
    assert not imported
    assert value == pytest.approx(4 * 2 * np.tanh(3.0) ** 2, rel=1e-12)
    assert mixed == 3 + 6 + 1 + 4          # sums of arange(3), arange(4), [T, F], real(z)
    assert native._ffi_module("int symgrad_f(double x, ...);") == _by_cdef(
        "int symgrad_f(double x, ...);"), "other C still parsed by cdef"
