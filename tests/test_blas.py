"""Large matrix products call scipy-openblas32's gemm (JIT builds); small ones, and builds
without the BLAS, run the generated loops. Both give NumPy's numbers."""
import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.backends.c import compiler
from symgrad.core.primitive import bind
from symgrad.core.primitives.structural import GEMM_MIN_MADDS, INT32_MAX, _with_gemm
from symgrad.frontend.tracer import Tracer

BLAS = compiler.blas()
needs_blas = pytest.mark.skipif(BLAS is None, reason="scipy-openblas32 is not installed")

FLAGS = [(False, False), (False, True), (True, False), (True, True)]
# (m, n, k): one product below the threshold, one above it.
SMALL, LARGE = (5, 7, 3), (40, 24, 30)
RTOL = {"float64": 1e-12, "float32": 1e-5}


def op_matmul(ta, tb):
    """``f(a, b) = op(a) @ op(b)`` with the transpose flags of the matmul primitive."""
    def f(a, b):
        return Tracer(bind("matmul", a.irvar, b.irvar, transpose_a=ta, transpose_b=tb))
    f.__name__ = f"matmul_{'t' if ta else 'n'}{'t' if tb else 'n'}"
    return f


def operands(m, n, k, ta, tb, dtype, seed=0):
    r = np.random.default_rng(seed)
    a = r.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = r.standard_normal((n, k) if tb else (k, n)).astype(dtype)
    return a, b


def reference(a, b, ta, tb):
    return (a.T if ta else a).astype(np.float64) @ (b.T if tb else b).astype(np.float64)


def signature(ta, tb, dtype):
    """Run-time sizes M, N, K in the operands' stored layouts."""
    t = "f64" if dtype == "float64" else "f32"
    return {"a": f"{t}[{'K,M' if ta else 'M,K'}]", "b": f"{t}[{'N,K' if tb else 'K,N'}]"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ta,tb", FLAGS)
@pytest.mark.parametrize("size", [SMALL, LARGE], ids=["small", "large"])
def test_static_sizes_match_numpy(size, ta, tb, dtype, tmp_path):
    a, b = operands(*size, ta, tb, dtype)
    f = symgrad.compile(op_matmul(ta, tb), cache_dir=tmp_path)
    np.testing.assert_allclose(f(a, b), reference(a, b, ta, tb), rtol=RTOL[dtype],
                               atol=RTOL[dtype] * 10)
    gemm = "SYMGRAD_SGEMM" if dtype == "float32" else "SYMGRAD_DGEMM"
    assert (f"{gemm}(CblasRowMajor" in f.source(a, b)) == (size is LARGE)


def test_batched_products_match_numpy(tmp_path):
    r = np.random.default_rng(5)
    a, b = r.standard_normal((3, 40, 30)), r.standard_normal((3, 30, 24))
    f = symgrad.compile(lambda a, b: snp.sum(snp.matmul(a, b) ** 2), argnums=(0, 1),
                        cache_dir=tmp_path)
    value, (ga, gb) = f.value_and_grad(a, b)
    c = a @ b
    assert value == pytest.approx(np.sum(c ** 2), rel=1e-12)
    np.testing.assert_allclose(ga, 2 * c @ b.transpose(0, 2, 1), rtol=1e-12)
    np.testing.assert_allclose(gb, 2 * a.transpose(0, 2, 1) @ c, rtol=1e-12)
    assert "SYMGRAD_DGEMM(CblasRowMajor" in f.source(a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ta,tb", FLAGS)
def test_run_time_sizes_match_numpy_on_both_sides_of_the_threshold(ta, tb, dtype, tmp_path):
    f = symgrad.compile(op_matmul(ta, tb), signature=signature(ta, tb, dtype),
                        cache_dir=tmp_path)
    for size in (SMALL, LARGE, (1, 9, 300), (300, 1, 9), (1, 200, 300), (200, 3, 0)):
        a, b = operands(*size, ta, tb, dtype)
        np.testing.assert_allclose(f(a, b), reference(a, b, ta, tb), rtol=RTOL[dtype],
                                   atol=RTOL[dtype] * 10, err_msg=str(size))
    src = f.source(a, b)
    assert f">= {GEMM_MIN_MADDS}" in src and "M <= INT32_MAX" in src
    assert len(list(tmp_path.glob("*/*.so"))) == 1           # one library for every size


@needs_blas
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_build_without_blas_gives_the_same_numbers(dtype, tmp_path, monkeypatch):
    def loss(W, X):
        return snp.sum(snp.tanh(X @ W) ** 2) + snp.sum((X.T @ X) * 1e-3)
    r = np.random.default_rng(1)
    W, X = r.standard_normal((80, 12)).astype(dtype), r.standard_normal((70, 80)).astype(dtype)
    with_blas = symgrad.compile(loss, argnums=(0, 1), cache_dir=tmp_path)
    v1, (gW1, gX1) = with_blas.value_and_grad(W, X)
    monkeypatch.setattr(compiler, "blas", lambda: None)
    loops = symgrad.compile(loss, argnums=(0, 1), cache_dir=tmp_path)
    v2, (gW2, gX2) = loops.value_and_grad(W, X)
    # The same products summed in another order: equal to rounding, norm-wise (float32 sums of
    # 70 terms that cancel differ in single elements by more than 1e-5 relative).
    assert v1 == pytest.approx(v2, rel=RTOL[dtype])
    for g1, g2 in ((gW1, gW2), (gX1, gX2)):
        assert np.abs(g1 - g2).max() <= RTOL[dtype] * np.abs(g2).max()
    # Two cache entries: one linked to the BLAS, one not.
    manifests = [json.loads(p.read_text()) for p in tmp_path.glob("*/manifest.json")]
    assert sorted("-DSYMGRAD_USE_BLAS" in m["flags"] for m in manifests) == [False, True]
    for m in manifests:
        linked = b"libscipy_openblas" in (tmp_path / m["key"][:40] / m["library"]).read_bytes()
        assert linked == ("-DSYMGRAD_USE_BLAS" in m["flags"])


@needs_blas
def test_the_cache_key_names_the_blas_and_its_version():
    identity = compiler.compiler_identity(compiler.find_compiler())
    assert f"scipy-openblas32 {BLAS.version}" in identity
    assert "-DSYMGRAD_USE_BLAS" in compiler.flags() and f"-l{BLAS.link_name}" in compiler.flags()
    assert "-DSYMGRAD_USE_BLAS" not in compiler.flags(blas_linked=False)


def test_missing_package_builds_the_loops(tmp_path, monkeypatch):
    # blas() finds nothing when the package is not importable: build, never fail.
    monkeypatch.setitem(sys.modules, "scipy_openblas32", None)
    compiler.blas.cache_clear()
    try:
        assert compiler.blas() is None
        assert "no BLAS" in compiler.compiler_identity(compiler.find_compiler())
        f = symgrad.compile(op_matmul(False, False), cache_dir=tmp_path)
        a, b = operands(*LARGE, False, False, "float64")
        np.testing.assert_allclose(f(a, b), a @ b, rtol=1e-12)
    finally:
        monkeypatch.undo()
        compiler.blas.cache_clear()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("runtime", [False, True], ids=["static", "run-time"])
def test_matmul_loss_value_and_gradients(dtype, runtime, tmp_path):
    def softmax_loss(W, X, y):
        scores = X @ W
        logp = scores - snp.log(snp.sum(snp.exp(scores), axis=1, keepdims=True))
        return -snp.mean(logp[snp.arange(X.shape[0]), y]) + 1e-3 * snp.sum(W * W)
    t = "f64" if dtype == "float64" else "f32"
    sig = {"W": f"{t}[120,10]", "X": f"{t}[N,120]", "y": "i64[N]"} if runtime else None
    f = symgrad.compile(softmax_loss, signature=sig, cache_dir=tmp_path)
    r = np.random.default_rng(2)
    W = (r.standard_normal((120, 10)) * 0.1).astype(dtype)
    for n in (3, 200):                        # 3 * 10 * 120 runs the loops, 200 * 10 * 120 BLAS
        X, y = r.standard_normal((n, 120)).astype(dtype), r.integers(0, 10, n)
        symgrad.check_grad(f, W, X, y)          # raises GradientCheckError on a mismatch


def test_sizes_beyond_int32_run_the_loops():
    loops = ["/* loops */"]
    assert _with_gemm(loops, "double", False, False, INT32_MAX + 1, 8, 8) == loops
    assert _with_gemm(loops, "double", True, False, 8, 8, INT32_MAX + 1) == loops
    assert "#ifdef SYMGRAD_USE_BLAS" in _with_gemm(loops, "double", False, False, 64, 64, 64)


@needs_blas
def test_concurrent_calls_from_threads_agree(tmp_path):
    # cffi releases the GIL: calls from several Python threads run OpenBLAS at once.
    def loss(W, X):
        return snp.sum(snp.tanh(X @ W) ** 2)
    f = symgrad.compile(loss, cache_dir=tmp_path)
    r = np.random.default_rng(3)
    W, X = r.standard_normal((300, 40)), r.standard_normal((200, 300))
    expected = f.grad(W, X)
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: f.grad(W, X), range(16), timeout=120))
    for g in results:
        np.testing.assert_allclose(g, expected, rtol=1e-12)


_THREADS_SCRIPT = textwrap.dedent("""
    import ctypes, os, sys, tempfile, numpy as np, symgrad, symgrad.numpy as snp
    from symgrad.backends.c import compiler
    f = symgrad.compile(lambda a, b: snp.sum(a @ b), cache_dir=tempfile.mkdtemp())
    f(np.ones((64, 64)), np.ones((64, 64)))
    blas = compiler.blas()
    lib = ctypes.CDLL(os.path.join(blas.lib_dir, "lib" + blas.link_name + ".so"))
    print(lib.scipy_openblas_get_num_threads())
""")


@needs_blas
@pytest.mark.parametrize("variables", [
    {}, {"OPENBLAS_NUM_THREADS": "2"}, {"SYMGRAD_NUM_THREADS": "2"},
    {"SYMGRAD_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "1"}])
def test_the_blas_runs_one_thread_per_call(variables):
    # symgrad's thread pool splits products into single-threaded gemm calls (threads.py): a
    # threaded BLAS inside them would be a second pool, whatever the environment asks.
    env = {k: v for k, v in os.environ.items()
           if k not in ("OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "OMP_NUM_THREADS",
                        "SYMGRAD_NUM_THREADS")}
    env.update(variables)
    out = subprocess.run([sys.executable, "-c", _THREADS_SCRIPT], env=env, capture_output=True,
                         text=True, check=True, timeout=300)
    assert out.stdout.split() == ["1"]


# The ahead-of-time recipe of docs/aot.md: the emitted C compiled against a CBLAS whose names
# the user gives. Here the "CBLAS" counts its calls and forwards them to scipy-openblas32.
_COUNTING_GEMM = textwrap.dedent("""
    #include <stdint.h>
    void scipy_cblas_dgemm(int, int, int, int, int, int, double, const double *, int,
                           const double *, int, double, double *, int);
    int64_t gemm_calls = 0;
    void counting_dgemm(int o, int ta, int tb, int m, int n, int k, double alpha,
                        const double *a, int lda, const double *b, int ldb, double beta,
                        double *c, int ldc)
    {
        ++gemm_calls;
        scipy_cblas_dgemm(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
""")


@needs_blas
def test_aot_source_compiles_against_a_cblas_the_user_names(tmp_path):
    import cffi
    from symgrad.tools.cli import main
    spec = Path(__file__).parent / "aot_spec.py"
    assert main(["build", str(spec), "-o", str(tmp_path), "--quiet"]) == 0
    assert b"openblas" not in (tmp_path / "libaot_spec.so").read_bytes()   # self-contained
    (tmp_path / "counting.c").write_text(_COUNTING_GEMM)
    lib = tmp_path / "libcounted.so"
    subprocess.run([*compiler.find_compiler().split(), "-O2", "-std=c99", "-fPIC", "-shared",
                    "-DSYMGRAD_USE_BLAS", "-DSYMGRAD_DGEMM=counting_dgemm",
                    "-DSYMGRAD_SGEMM=counting_sgemm", "-o", str(lib),
                    str(tmp_path / "aot_spec.c"), str(tmp_path / "counting.c"),
                    *BLAS.link_flags(), "-lm"], check=True)
    ffi = cffi.FFI()
    ffi.cdef("extern int64_t gemm_calls; int softmax_loss_value_and_grad(int64_t N, const double *W, "
             "const double *X, const int64_t *y, const double *reg, double *value, "
             "double *grad_W);")
    c = ffi.dlopen(str(lib))
    import aot_spec
    ref = symgrad.compile(aot_spec.softmax_loss)
    r = np.random.default_rng(4)
    W = r.standard_normal((30, 10)) * 0.1
    # X W and X^T G have 10 columns: gcc and clang build them as symgrad's narrow kernels
    # (backends/c/narrow.py), not as gemm calls, however many rows X has.
    for n, calls in ((20, 0), (400, 0)):
        X, y = r.standard_normal((n, 30)), r.integers(0, 10, n)
        value, grad = np.zeros(1), np.zeros((30, 10))
        before = c.gemm_calls
        status = c.softmax_loss_value_and_grad(
            n, ffi.from_buffer("double[]", W), ffi.from_buffer("double[]", X),
            ffi.from_buffer("int64_t[]", y), ffi.new("double *", 1e-3),
            ffi.from_buffer("double[]", value), ffi.from_buffer("double[]", grad))
        assert status == 0 and c.gemm_calls - before == calls
        v_ref, g_ref = ref.value_and_grad(W, X, y, 1e-3)
        assert value[0] == pytest.approx(v_ref, rel=1e-12)
        np.testing.assert_allclose(grad, g_ref, rtol=1e-10, atol=1e-14)
