"""Large matrix products call scipy-openblas32's gemm (JIT builds); small ones, and builds
without the BLAS, run the generated loops. Both give NumPy's numbers."""
import ctypes
import json
import os
import re
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


def link_blas():
    """The flags that link scipy-openblas32 into a test's own C harness (symgrad's libraries
    bind it at load instead)."""
    return (f"-L{BLAS.lib_dir}", "-Xlinker", "-rpath", "-Xlinker", BLAS.lib_dir,
            f"-l{BLAS.link_name}")

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
    # Two cache entries: one calling the BLAS (bound at load, not linked), one not.
    manifests = [json.loads(p.read_text()) for p in tmp_path.glob("*/manifest.json")]
    assert sorted("-DSYMGRAD_USE_BLAS" in m["flags"] for m in manifests) == [False, True]
    for m in manifests:
        assert (compiler.BLAS_AT_LOAD in m["flags"]) == ("-DSYMGRAD_USE_BLAS" in m["flags"])
        library = (tmp_path / m["key"][:40] / m["library"]).read_bytes()
        assert b"libscipy_openblas" not in library


@needs_blas
def test_only_a_library_that_calls_the_blas_is_built_and_bound_for_it(tmp_path):
    """A module with no product big enough for the BLAS is built without its flags (its C does
    not change); one with is built to call it through pointers, which loading it binds to
    scipy-openblas32's functions. Neither links the BLAS."""
    small = symgrad.compile(lambda a: snp.sum(snp.tanh(a @ a)), cache_dir=tmp_path)
    small.value_and_grad(np.ones((4, 4)))
    large = symgrad.compile(op_matmul(False, False), cache_dir=tmp_path)
    a, b = operands(*LARGE, False, False, "float64")
    np.testing.assert_allclose(large(a, b), a @ b, rtol=1e-13)
    blas_library = ctypes.CDLL(BLAS.path)
    calls = {}
    for path in tmp_path.glob("*/manifest.json"):
        m = json.loads(path.read_text())
        calls[m["functions"][0]] = compiler.BLAS_AT_LOAD in m["flags"]
        assert calls[m["functions"][0]] == ("SYMGRAD_USE_BLAS" in (path.parent / "module.c")
                                            .read_text())
        library = path.parent / m["library"]
        assert b"libscipy_openblas" not in library.read_bytes()
        if calls[m["functions"][0]]:
            for name, symbol in compiler.BLAS_FUNCTIONS.items():
                pointer = ctypes.c_void_p.in_dll(ctypes.CDLL(str(library)), f"symgrad_blas_{name}")
                assert pointer.value == ctypes.cast(getattr(blas_library, symbol),
                                                    ctypes.c_void_p).value
    assert sorted(calls.values()) == [False, True]


def test_the_pointers_are_blas_hs_functions():
    """compiler.BLAS_FUNCTIONS names each function templates/blas.h declares."""
    text = (Path(symgrad.__file__).parent / "templates" / "blas.h").read_text()
    declared = set(re.findall(r"SYMGRAD_LAPACKE\((\w+)\)\(", text))
    declared |= {m.lower() for m in re.findall(r"void SYMGRAD_([DS]GEMM)\(", text)}
    assert declared == set(compiler.BLAS_FUNCTIONS)


def test_a_blas_that_cannot_be_loaded_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(compiler, "blas", lambda: compiler.Blas(
        "scipy-openblas32", "0", str(tmp_path), "scipy_openblas", str(tmp_path / "missing.so")))
    compiler._blas_addresses.cache_clear()
    try:
        with pytest.raises(symgrad.errors.CompileError, match="scipy-openblas32, which cannot "
                                                               "be loaded"):
            compiler.bind_blas(tmp_path / "any.so")
    finally:
        compiler._blas_addresses.cache_clear()


@needs_blas
def test_the_cache_key_names_the_blas_and_its_version():
    identity = compiler.compiler_identity(compiler.find_compiler())
    assert f"scipy-openblas32 {BLAS.version}" in identity
    assert "-DSYMGRAD_USE_BLAS" in compiler.flags() and compiler.BLAS_AT_LOAD in compiler.flags()
    assert not any(flag.startswith("-l") for flag in compiler.flags())     # not linked
    assert "-DSYMGRAD_USE_BLAS" not in compiler.flags(use_blas=False)


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
                    *link_blas(), "-lm"], check=True)
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


# symgradrt_[ds]gemm_par's split of a long contraction (narrow.c.j2): the emitted C compiled
# with a stand-in pool (its thread count set from Python, its pieces run one at a time in an
# order Python picks) and a gemm that logs each call's k and beta before calling the BLAS.
_SPLIT_HARNESS = textwrap.dedent("""
    #include <stdint.h>
    void scipy_cblas_dgemm(int, int, int, int, int, int, double, const double *, int,
                           const double *, int, double, double *, int);
    void scipy_cblas_sgemm(int, int, int, int, int, int, float, const float *, int,
                           const float *, int, float, float *, int);
    int pool_threads = 1, last_first = 0;
    int64_t calls = 0, ks[64];
    double betas[64];
    int symgrad_rt1_threads(void) { return pool_threads; }
    typedef void (*task_t)(void *, int64_t, int64_t);
    void symgrad_rt1_parallel_for(int64_t n, int64_t grain, double work, task_t task, void *job)
    {
        (void)work;
        int64_t blocks = (n + grain - 1) / grain, want = pool_threads < blocks ? pool_threads : blocks;
        if (want < 1) want = 1;
        int64_t piece = (blocks + want - 1) / want * grain, pieces = (n + piece - 1) / piece;
        for (int64_t p = 0; p < pieces; ++p) {
            int64_t q = last_first ? pieces - 1 - p : p;
            task(job, q * piece, (q + 1) * piece < n ? (q + 1) * piece : n);
        }
    }
    #define LOG(beta_, k_) do { if (calls < 64) { ks[calls] = (k_); betas[calls] = (beta_); } ++calls; } while (0)
    void log_dgemm(int o, int ta, int tb, int m, int n, int k, double alpha, const double *a,
                   int lda, const double *b, int ldb, double beta, double *c, int ldc)
    {
        LOG(beta, k);
        scipy_cblas_dgemm(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
    void log_sgemm(int o, int ta, int tb, int m, int n, int k, float alpha, const float *a,
                   int lda, const float *b, int ldb, float beta, float *c, int ldc)
    {
        LOG(beta, k);
        scipy_cblas_sgemm(o, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
    }
""")


def _split_build(fn, args, tmp_path, name, prototype, argnums=None):
    import cffi
    compiled = symgrad.compile(fn, argnums=argnums) if argnums is not None else symgrad.compile(fn)
    (tmp_path / f"{name}.c").write_text(compiled.source(*args))
    (tmp_path / "harness.c").write_text(_SPLIT_HARNESS)
    lib = tmp_path / f"lib{name}.so"
    flags = [f for f in compiler.DEFAULT_CFLAGS + compiler.REQUIRED_CFLAGS]
    subprocess.run([*compiler.find_compiler().split(), *flags, "-DSYMGRAD_USE_BLAS",
                    "-DSYMGRAD_USE_THREADS", "-DSYMGRAD_DGEMM=log_dgemm",
                    # names of the stand-in's own: symgrad's pool, loaded into this process
                    # with RTLD_GLOBAL by earlier tests, would take precedence over the same names
                    "-Dsymgrad_rt1_threads=harness_threads",
                    "-Dsymgrad_rt1_parallel_for=harness_parallel_for",
                    "-DSYMGRAD_SGEMM=log_sgemm", "-o", str(lib), str(tmp_path / f"{name}.c"),
                    str(tmp_path / "harness.c"), *link_blas(), "-lm"], check=True)
    ffi = cffi.FFI()
    ffi.cdef("extern int pool_threads, last_first; extern int64_t calls, ks[64]; "
             "extern double betas[64]; " + prototype)
    return ffi, ffi.dlopen(str(lib))


def _ptr(ffi, x):
    return ffi.cast("void *", ffi.from_buffer(x))


def _gemm_calls(c):
    return [(c.ks[i], c.betas[i]) for i in range(min(c.calls, 64))]


@needs_blas
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ta,tb", FLAGS)
def test_a_long_contraction_is_split_over_the_pool(ta, tb, dtype, tmp_path):
    m, n, k = 20, 30, 4000          # k > 4 max(m, n): chunks of k, not blocks of rows
    a, b = operands(m, n, k, ta, tb, dtype, seed=5)
    f = op_matmul(ta, tb)
    ffi, c = _split_build(f, (a, b), tmp_path, f.__name__,
                          f"int symgrad_{f.__name__}(void *a, void *b, void *out);")
    func = getattr(c, f"symgrad_{f.__name__}")
    # 4000 // 768 = 5 chunks whatever the pool's threads; 2 and 3 threads get unequal shares
    want_ks = [4000 * (s + 1) // 5 - 4000 * s // 5 for s in range(5)]
    results = {}
    for threads, last_first in ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (16, 0)):
        c.pool_threads, c.last_first, c.calls = threads, last_first, 0
        out = np.full((m, n), np.nan, dtype)
        assert func(_ptr(ffi, a), _ptr(ffi, b), _ptr(ffi, out)) == 0
        ks = [kk for kk, beta in _gemm_calls(c)]
        assert sorted(ks) == sorted(want_ks) and {beta for kk, beta in _gemm_calls(c)} == {0.0}
        np.testing.assert_allclose(out, reference(a, b, ta, tb), rtol=RTOL[dtype] * 10,
                                   atol=RTOL[dtype] * 10 * np.sqrt(k))
        results[threads, last_first] = out
    # the same chunks, added in the order of their chunks whichever thread ran which: the same
    # bits on any number of threads
    for key, out in results.items():
        np.testing.assert_array_equal(out, results[1, 0], err_msg=f"threads, last first: {key}")


@needs_blas
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("k,chunks",
                         [(1535, 1), (1536, 2), (3072, 4), (6911, 8), (20000, 8)])
def test_the_chunks_of_a_contraction_follow_from_its_shape(k, chunks, dtype, tmp_path):
    # one chunk per 768 of k, at most 8; a product too short for two is not split at all,
    # and its module carries no code for the split (narrow.py's _may_split_k)
    m, n = 12, 20                  # n > narrow.NARROW_MAX: BLAS; work enough for 8 chunks of 65,536 multiply-adds and more
    a, b = operands(m, n, k, False, False, dtype, seed=k)
    f = op_matmul(False, False)
    ffi, c = _split_build(f, (a, b), tmp_path, "chunks",
                          "int symgrad_matmul_nn(void *a, void *b, void *out);")
    first = None
    for threads in (1, 2, 3):
        c.pool_threads, c.calls = threads, 0
        out = np.full((m, n), np.nan, dtype)
        assert c.symgrad_matmul_nn(_ptr(ffi, a), _ptr(ffi, b), _ptr(ffi, out)) == 0
        ks = sorted(kk for kk, beta in _gemm_calls(c))
        if chunks == 1:         # blocks of the result, each with the whole contraction
            assert ks and set(ks) == {k}
        else:
            assert ks == sorted(k * (s + 1) // chunks - k * s // chunks for s in range(chunks))
        np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64),
                                   rtol=RTOL[dtype] * 10, atol=RTOL[dtype] * 10 * np.sqrt(k))
        if first is None:
            first = out
        np.testing.assert_array_equal(out, first)
    assert ("gemm_chunk_task" in (tmp_path / "chunks.c").read_text()) == (chunks > 1)


@needs_blas
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_split_contraction_accumulates_into_the_result(dtype, tmp_path):
    # The gradient of sum((M @ R) * S) + sum(M * M): 2 M, then S R^T (k = 2003) added to it
    # with beta = 1: only chunk 0 reads the result; the others start from 0.
    def loss(M, R, S):
        return snp.sum((M @ R) * S) + snp.sum(M * M)
    r = np.random.default_rng(6)
    M, R, S = (r.standard_normal(s).astype(dtype) for s in ((20, 30), (30, 2003), (20, 2003)))
    ffi, c = _split_build(loss, (M, R, S), tmp_path, "loss",
                          "int symgrad_loss_value_and_grad(void *, void *, void *, void *, void *);",
                          argnums=0)
    first = None
    for threads in (1, 2, 5):
        c.pool_threads, c.calls = threads, 0
        value, grad = np.zeros(1, dtype), np.full((20, 30), np.nan, dtype)
        assert c.symgrad_loss_value_and_grad(*(_ptr(ffi, x) for x in (M, R, S, value, grad))) == 0
        backward = [call for call in _gemm_calls(c) if call[0] != 30]   # not M @ R (k = 30)
        chunks = [kk for kk, beta in backward]
        betas = [beta for kk, beta in backward]
        assert chunks == [2003 * (s + 1) // 2 - 2003 * s // 2 for s in range(2)]   # 2003 // 768
        assert betas == [1.0, 0.0]
        M64, R64, S64 = M.astype(np.float64), R.astype(np.float64), S.astype(np.float64)
        np.testing.assert_allclose(grad, S64 @ R64.T + 2 * M64, rtol=RTOL[dtype] * 10,
                                   atol=RTOL[dtype] * 10 * np.sqrt(2003))
        assert value[0] == pytest.approx(((M64 @ R64) * S64).sum() + (M64 ** 2).sum(),
                                         rel=RTOL[dtype] * 100)
        if first is None:
            first = grad.copy()
        np.testing.assert_array_equal(grad, first)     # whatever the threads


@needs_blas
def test_products_without_a_long_contraction_keep_blocks_of_rows(tmp_path):
    m, n, k = 64, 48, 150          # k < 4 max(m, n): each thread one block of rows, all of k
    a, b = operands(m, n, k, False, False, "float64", seed=7)
    f = op_matmul(False, False)
    ffi, c = _split_build(f, (a, b), tmp_path, "rows",
                          "int symgrad_matmul_nn(void *a, void *b, void *out);")
    c.pool_threads, c.calls = 4, 0
    out = np.zeros((m, n))
    assert c.symgrad_matmul_nn(_ptr(ffi, a), _ptr(ffi, b), _ptr(ffi, out)) == 0
    assert _gemm_calls(c) == [(150, 0.0)] * 4
    np.testing.assert_allclose(out, a @ b, rtol=1e-12)
    # no call may split its contraction, so the module carries no code for it (narrow.py)
    assert "gemm_chunk_task" not in (tmp_path / "rows.c").read_text()
    assert "gemm_chunk_task" in symgrad.compile(f).source(*operands(20, 30, 2003, False, False,
                                                                     "float64"))
