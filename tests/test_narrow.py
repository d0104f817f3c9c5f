"""Products with a narrow result (<= 16 columns) run symgrad's register-blocked kernels
(backends/c/narrow.py), built ahead of time too: every column count, both layouts, both dtypes,
blocks of rows and panels cut anywhere, against NumPy in float64."""
import os
import shlex
import shutil
import subprocess
import sys

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.backends.c import compiler, narrow
from symgrad.core.primitive import bind
from symgrad.core.primitives import structural
from symgrad.frontend.tracer import Tracer

RTOL = {"float64": 1e-12, "float32": 2e-5}


def product(ta):
    def f(a, b):
        return Tracer(bind("matmul", a.irvar, b.irvar, transpose_a=ta, transpose_b=False))
    f.__name__ = "matmul_tn" if ta else "matmul_nn"
    return f


def check(a, b, ta, got, dtype):
    want = (a.T if ta else a).astype(np.float64) @ b.astype(np.float64)
    scale = np.abs(a).max(initial=0) * np.abs(b).max(initial=0) * a.shape[0 if ta else 1]
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ta", [False, True], ids=["AB", "AtB"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 8, 10, 12, 13, 14, 16])
def test_every_narrow_width_matches_numpy(n, ta, dtype, tmp_path):
    # m = 37 rows of the result: blocks of R rows and a remainder; k = 700: several panels of
    # the narrow operand, the last one partial.
    m, k = 37, 700
    r = np.random.default_rng(n)
    a = r.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = r.standard_normal((k, n)).astype(dtype)
    f = symgrad.compile(product(ta), cache_dir=tmp_path)
    check(a, b, ta, f(a, b), dtype)
    source = f.specialize(a, b)[0]._executable.source
    assert narrow.kernel_name("tn" if ta else "nn", "double" if dtype == "float64" else "float",
                              n) in source


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [1, 3, 10, 16])
def test_a_transposed_product_over_several_tiles_matches_numpy(n, dtype, tmp_path):
    # A^T B copies A in tiles (narrow.tn_tile) and prefetches the one after next: three whole
    # tiles, a partial one ending in columns fewer than a block (read in place), and a
    # contraction of two whole panels and a partial one.
    ctype = "double" if dtype == "float64" else "float"
    panel, cols = narrow.tn_tile(ctype, n)
    rows = narrow.blocking(ctype, n, "tn")[2]
    m, k = 3 * cols + 2 * rows + rows // 2 + 1, 2 * panel + 5
    r = np.random.default_rng(n)
    a = r.standard_normal((k, m)).astype(dtype)
    b = r.standard_normal((k, n)).astype(dtype)
    f = symgrad.compile(product(True), cache_dir=tmp_path)
    check(a, b, True, f(a, b), dtype)

    # adding into a sum, as a gradient does (the accumulators loaded from c, every panel)
    def adds(a, b, d):
        return 2.0 * d + product(True)(a, b)
    g = symgrad.compile(adds, cache_dir=tmp_path)
    d = r.standard_normal((m, n)).astype(dtype)
    want = 2.0 * d.astype(np.float64) + a.T.astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(g(a, b, d), want, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * k * np.abs(a).max() * np.abs(b).max())
    source = g.specialize(a, b, d)[0]._executable.source
    call = narrow.kernel_name("tn", ctype, n)
    assert call + "(" in source and ", 1);" in source.split(call + "(", 2)[-1].split("\n")[0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ta", [False, True], ids=["AB", "AtB"])
def test_run_time_sizes_including_empty(ta, dtype, tmp_path):
    t = "f64" if dtype == "float64" else "f32"
    sig = {"a": f"{t}[{'K,M' if ta else 'M,K'}]", "b": f"{t}[K,10]"}
    f = symgrad.compile(product(ta), signature=sig, cache_dir=tmp_path)
    r = np.random.default_rng(1)
    for m, k in ((1, 1), (5, 3), (64, 2000), (3, 0), (0, 9), (203, 171)):
        a = r.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        b = r.standard_normal((k, 10)).astype(dtype)
        got = f(a, b)
        assert got.shape == (m, 10)
        check(a, b, ta, got, dtype)


def test_the_softmax_gradient_through_narrow_kernels_matches_numpy(tmp_path):
    # scores = X W and its adjoint X^T G are both narrow products.
    def loss(W, X):
        s = X @ W
        return snp.sum(snp.exp(s - snp.max(s, axis=1, keepdims=True)))
    r = np.random.default_rng(2)
    W, X = 0.01 * r.standard_normal((3073, 10)), r.standard_normal((33, 3073))
    f = symgrad.compile(loss, cache_dir=tmp_path)
    value, grad = f.value_and_grad(W, X)
    s = X @ W
    e = np.exp(s - s.max(axis=1, keepdims=True))
    # d/ds of sum(exp(s - max)) is e - (sum of e over the row) at the row's max (one per row).
    g = e.copy()
    g[np.arange(33), s.argmax(axis=1)] -= e.sum(axis=1)
    assert value == pytest.approx(e.sum(), rel=1e-12)
    np.testing.assert_allclose(grad, X.T @ g, rtol=1e-10, atol=1e-12)


def test_an_ahead_of_time_library_builds_them_without_avx(tmp_path):
    # Built for the baseline ISA (no AVX: -O2 alone), the vectors are pairs of SSE registers.
    f = symgrad.compile(product(False), cache_dir=tmp_path, cflags=["-O2"])
    r = np.random.default_rng(3)
    a, b = r.standard_normal((50, 300)), r.standard_normal((300, 10))
    check(a, b, False, f(a, b), "float64")


def _gcc():
    """The C compiler command when it is GCC (not Clang, which also defines __GNUC__), else None."""
    cc = compiler.find_compiler()
    r = subprocess.run([*shlex.split(cc), "-dM", "-E", "-x", "c", os.devnull],
                       capture_output=True, text=True)
    return cc if "__GNUC__" in r.stdout and "__clang__" not in r.stdout else None


def test_gcc_builds_the_kernels_without_immintrin_and_still_fuses(tmp_path):
    # <immintrin.h> alone costs gcc ~160 ms with -march=native, more than the rest of a small
    # module: with gcc the kernels call its FMA and blend builtins directly (narrow.c.j2).
    cc = _gcc()
    if cc is None:
        pytest.skip("the builtins are used with GCC only")
    f = symgrad.compile(product(False), cache_dir=tmp_path)
    r = np.random.default_rng(4)
    a, b = r.standard_normal((50, 300)), r.standard_normal((300, 10))
    check(a, b, False, f(a, b), "float64")
    executable = f.specialize(a, b)[0]._executable
    compile_flags = [x for x in compiler.flags(threads=True) if x.startswith(("-O", "-m", "-f",
                                                                              "-std", "-D"))]
    deps = subprocess.run([*shlex.split(cc), *compile_flags, "-M", str(executable.source_path)],
                          capture_output=True, text=True, check=True).stdout
    assert "immintrin.h" not in deps and "fmaintrin.h" not in deps
    macros = subprocess.run([*shlex.split(cc), *compile_flags, "-dM", "-E", "-x", "c",
                             os.devnull], capture_output=True, text=True).stdout
    objdump = shutil.which("objdump")
    if "__FMA__" in macros and objdump:
        # The target has FMA: the kernels' multiply-adds are fused, as with the intrinsics.
        code = subprocess.run([objdump, "-d", str(executable.library_path)],
                              capture_output=True, text=True, check=True).stdout
        assert "vfmadd" in code


def _plus_product(ta, tb):
    """2 c + op(a) op(b): the product adds into the buffer of 2 c (backends/c/accumulate.py)."""
    def f(a, b, c):
        return Tracer(bind("add", bind("mul", c.irvar, c.irvar),
                           bind("matmul", a.irvar, b.irvar, transpose_a=ta, transpose_b=tb)))
    f.__name__ = "plus_product"
    return f


@pytest.mark.parametrize("ta", [False, True], ids=["a", "aT"])
@pytest.mark.parametrize("n, dtype", [(1, "float64"), (5, "float64"), (10, "float64"),
                                      (16, "float64"), (3, "float32"), (10, "float32")])
def test_a_vector_times_a_matrix_reads_it_in_place(n, ta, dtype, tmp_path):
    """m = 1 (a loop step's x[i] @ W): the mv kernel, unrolled rows, the tail and the whole
    loads reading into the next rows; alone and adding into a sum."""
    r = np.random.default_rng(n)
    for k in (8192 // n + 6,):
        a = r.standard_normal((k, 1) if ta else (1, k)).astype(dtype)
        b = r.standard_normal((k, n)).astype(dtype)
        f = symgrad.compile(product(ta), cache_dir=tmp_path)
        check(a, b, ta, f(a, b), dtype)
        c = r.standard_normal((1, n)).astype(dtype)
        g = symgrad.compile(_plus_product(ta, False), cache_dir=tmp_path)
        want = c.astype(np.float64) ** 2 + (a.T if ta else a).astype(np.float64) @ b
        np.testing.assert_allclose(g(a, b, c), want, rtol=RTOL[dtype],
                                   atol=RTOL[dtype] * np.abs(want).max() * 10)
        source = g.specialize(a, b, c)[0]._executable.source
        assert narrow.kernel_name("mv", "double" if dtype == "float64" else "float", n) in source


@pytest.mark.parametrize("layout", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("n, dtype", [(1, "float64"), (10, "float64"), (13, "float32")])
def test_an_outer_product_is_one_pass(n, layout, dtype, tmp_path):
    """k = 1 (a step's x[i]^T g): the outer kernel, whole vectors of several rows and the rows
    left over; alone and adding into a sum; every layout of the operands."""
    ta, tb = layout
    r = np.random.default_rng(n)
    m = 8192 // n + 3
    a = r.standard_normal((1, m) if ta else (m, 1)).astype(dtype)
    b = r.standard_normal((n, 1) if tb else (1, n)).astype(dtype)
    c = r.standard_normal((m, n)).astype(dtype)
    g = symgrad.compile(_plus_product(ta, tb), cache_dir=tmp_path)
    want = c.astype(np.float64) ** 2 + (a.T if ta else a).astype(np.float64) @ (
        b.T if tb else b).astype(np.float64)
    np.testing.assert_allclose(g(a, b, c), want, rtol=RTOL[dtype],
                               atol=RTOL[dtype] * np.abs(want).max() * 10)
    source = g.specialize(a, b, c)[0]._executable.source
    assert narrow.kernel_name("outer", "double" if dtype == "float64" else "float", n) in source


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ta", [False, True], ids=["AB", "AtB"])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 6, 7, 8, 10, 14])
def test_a_product_adding_into_a_sum_matches_numpy(n, ta, dtype, tmp_path):
    # 2 c + op(a) b: the loop writes 2 c into the sum's buffer and the kernel adds into it
    # (backends/c/accumulate.py), loading its accumulators from the buffer, rows whose last
    # columns share a vector (narrow.blocking) included. m = 39: blocks and a remainder.
    # Each width loads its accumulators as whole vectors (8: one load each), partly used
    # unshared ones (3, 7; 5, 6 in float32: a masked load, symgradrt_loadn) or shared ones.
    def f(a, b, c):
        return 2.0 * c + Tracer(bind("matmul", a.irvar, b.irvar, transpose_a=ta,
                                     transpose_b=False))
    f.__name__ = "adds_tn" if ta else "adds_nn"
    m, k = 39, 401
    r = np.random.default_rng(10 + n)
    a = r.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    b = r.standard_normal((k, n)).astype(dtype)
    c = r.standard_normal((m, n)).astype(dtype)
    g = symgrad.compile(f, cache_dir=tmp_path)
    got = g(a, b, c)
    want = 2.0 * c.astype(np.float64) + (a.T if ta else a).astype(np.float64) @ b
    scale = np.abs(a).max() * np.abs(b).max() * k
    np.testing.assert_allclose(got, want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)
    source = g.specialize(a, b, c)[0]._executable.source
    call = narrow.kernel_name("tn" if ta else "nn", "double" if dtype == "float64" else "float", n)
    assert call + "(" in source and ", 1);" in source.split(call + "(", 2)[-1].split("\n")[0]


@pytest.mark.parametrize("ctype, n, share", [("double", 10, 2), ("double", 5, 4),
                                             ("double", 9, 1), ("float", 10, 4),
                                             ("float", 12, 2), ("float", 16, 1)])
def test_rows_share_a_last_vector_only_where_it_fits(ctype, n, share):
    lanes, nv, rows, got = narrow.blocking(ctype, n, "nn")
    assert got == share and rows % share == 0
    # accumulators, the narrow row, the broadcasts and their blend fit the 16 registers
    assert rows * (nv - (share > 1)) + (rows // share if share > 1 else 0) + nv + share + 1 <= 17


@pytest.mark.parametrize("ctype, n, want", [
    ("float", 10, "dot"), ("float", 1, "dot"), ("float", 13, "dot"), ("float", 8, "broadcast"),
    ("float", 14, "broadcast"), ("float", 16, "broadcast"), ("double", 10, "dot"),
    ("double", 5, "dot"), ("double", 4, "broadcast"), ("double", 12, "broadcast")])
def test_the_layout_follows_the_vector_width(ctype, n, want):
    # dot / columns where n columns are not whole vectors and n x R accumulators fit the
    # registers; the broadcast layout where they are whole vectors or too many.
    assert narrow.layout("nn", ctype, n) == want
    assert narrow.layout("tn", ctype, n) == {"dot": "columns"}.get(want, want)
    rows = narrow._layout_rows(n)
    if want == "dot":
        # the accumulators, a register per row and one more fit; as many rows as CHAINS
        # accumulators need, or as fit
        assert n * rows + rows + 1 <= 16
        assert n * rows >= narrow.CHAINS or (rows + 1) * (n + 1) > narrow.LAYOUT_REGISTERS


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [1, 2, 3, 5, 7, 9, 10, 11, 13])
def test_the_dot_and_columns_layouts_cut_anywhere(n, dtype, tmp_path):
    # nn: k = 2 panels and a partial one whose last vector is partial (a masked load), m rows
    # in blocks of R and a remainder. tn: tiles of columns of a in blocks of V vectors, then
    # a last partial vector; panels of the contraction, the sums kept between them.
    ctype = "double" if dtype == "float64" else "float"
    lanes = 32 // np.dtype(dtype).itemsize
    rows = narrow._layout_rows(n)
    panel = max(lanes, narrow.PANEL_BYTES // (n * np.dtype(dtype).itemsize) // lanes * lanes)
    tile, block = narrow.columns_tile(ctype, n)
    r = np.random.default_rng(100 + n)
    for ta in (False, True):
        # tn: two whole tiles of columns and a last one of a block and 3 columns; a
        # contraction of two panels of rows and a partial one
        m, k = ((2 * tile + block + 3, 2 * narrow.COLUMNS_PANEL + 5) if ta else
                (5 * rows + 3, 2 * panel + lanes + 3))
        a = r.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        b = r.standard_normal((k, n)).astype(dtype)
        f = symgrad.compile(product(ta), cache_dir=tmp_path)
        check(a, b, ta, f(a, b), dtype)
        source = f.specialize(a, b)[0]._executable.source
        kind = "tn" if ta else "nn"
        assert narrow.layout(kind, ctype, n) in ("dot", "columns")
        assert ("bt[" if kind == "nn" else "st + (p - t0)") in source


_THREADED = """
import sys, numpy as np, symgrad
from symgrad.core.primitive import bind
from symgrad.frontend.tracer import Tracer
from symgrad.backends.c import threads
def product(ta):
    def f(a, b):
        return Tracer(bind("matmul", a.irvar, b.irvar, transpose_a=ta, transpose_b=False))
    f.__name__ = "matmul_tn" if ta else "matmul_nn"
    return f
r = np.random.default_rng(5)
worst = 0.0
for dtype in ("float64", "float32"):
    for n in (3, 10):
        for ta in (False, True):
            m, k = 517, 1203            # enough work for the pool: split rows / columns
            a = r.standard_normal((k, m) if ta else (m, k)).astype(dtype)
            b = r.standard_normal((k, n)).astype(dtype)
            f = symgrad.compile(product(ta), cache_dir=sys.argv[1])
            got = f(a, b)
            want = (a.T if ta else a).astype(np.float64) @ b.astype(np.float64)
            err = np.abs(got - want).max() / (np.abs(want).max() * (1e-12 if dtype == "float64" else 1e-5))
            worst = max(worst, err)
print(threads.count(), worst < 10)
"""


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rows_few_sets_apart_are_read_in_strided_panels(dtype, tmp_path):
    # a's rows 3073 elements apart (W3's X) fall in a few sets of the L1 cache: the columns
    # kernel reads them h apart (symgradrt_row_step), class by class. Contractions: a class
    # longer than a panel (1100), classes of unequal length (257, 40), too few rows for a step
    # (9), one row, none.
    t = "f64" if dtype == "float64" else "f32"
    f = symgrad.compile(product(True), signature={"a": f"{t}[K,3073]", "b": f"{t}[K,10]"},
                        cache_dir=tmp_path)
    r = np.random.default_rng(7)
    for k in (1100, 257, 40, 9, 1, 0):
        a = r.standard_normal((k, 3073)).astype(dtype)
        b = r.standard_normal((k, 10)).astype(dtype)
        check(a, b, True, f(a, b), dtype)
    assert "symgradrt_row_step(lda, sizeof(*a), m, " in f.specialize(a, b)[0]._executable.source


@pytest.mark.parametrize("old, new", [
    ("i0 = ++cls;", "i0 = cls += 2;"),                          # every other class skipped
    ("; i < i1; i += h) {", "; i < i1; i += 1) {"),             # rows of other classes too
])
def test_a_broken_row_step_is_caught(old, new, tmp_path, monkeypatch):
    source = narrow.kernel_source

    def broken(*args, **kwargs):
        text = source(*args, **kwargs)
        assert old in text
        return text.replace(old, new)
    monkeypatch.setattr(narrow, "kernel_source", broken)
    a = np.random.default_rng(8).standard_normal((257, 3073)).astype("float32")
    b = np.random.default_rng(9).standard_normal((257, 10)).astype("float32")
    f = symgrad.compile(product(True), cache_dir=tmp_path)
    with pytest.raises(AssertionError):
        check(a, b, True, f(a, b), "float32")


def test_the_new_layouts_split_over_threads_match_numpy(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("SYMGRAD_NUM_THREADS", "OMP_NUM_THREADS")}
    env["SYMGRAD_NUM_THREADS"] = "3"
    out = subprocess.run([sys.executable, "-c", _THREADED, str(tmp_path)], env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["3", "True"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_short_contraction_takes_the_broadcast_kernel(dtype, tmp_path):
    # The dot layout sums across lanes once per row and panel: with k of a few vectors the
    # broadcast kernel runs instead, chosen when the C is written if k is known then, else at
    # run time (both kernels in the module).
    letter = "d" if dtype == "float64" else "s"
    lanes = 32 // np.dtype(dtype).itemsize
    short = narrow.DOT_MIN_K * lanes
    r = np.random.default_rng(7)
    f = symgrad.compile(product(False), cache_dir=tmp_path)
    for k, has_dot in ((3, False), (short - 1, False), (short, True), (700, True)):
        # rows enough that the product is not left to plain loops (GEMM_MIN_MADDS)
        m = max(41, structural.GEMM_MIN_MADDS // (10 * k) + 1)
        a = r.standard_normal((m, k)).astype(dtype)
        b = r.standard_normal((k, 10)).astype(dtype)
        check(a, b, False, f(a, b), dtype)
        source = f.specialize(a, b)[0]._executable.source
        assert ("bt[" in source) == has_dot
        assert "symgradrt_mm_nn_%s10(" % letter in source     # one kernel, no choice in C
        assert "symgradrt_mm_nn_%s10_short(" % letter not in source
    t = "f64" if dtype == "float64" else "f32"
    g = symgrad.compile(product(False), signature={"a": f"{t}[M,K]", "b": f"{t}[K,10]"},
                        cache_dir=tmp_path)
    for k in (1, 3, short - 1, short, short + 5, 500):
        a = r.standard_normal((structural.GEMM_MIN_MADDS // (10 * k) + 37, k)).astype(dtype)
        b = r.standard_normal((k, 10)).astype(dtype)
        check(a, b, False, g(a, b), dtype)
    source = g.specialize(a, b)[0]._executable.source
    assert "bt[" in source and "symgradrt_mm_nn_%s10_short(" % letter in source


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [3, 10])
def test_the_dot_kernel_prefetches_rows_ahead_only_within_its_range(n, dtype, tmp_path):
    # The "dot" nn kernel reads a row's part of a panel, then jumps k elements to the next row,
    # which the hardware prefetcher does not follow: it prefetches DOT_PREFETCH_BLOCKS blocks of
    # rows ahead, and nothing past its last row (m from 1 to past a few blocks, each product
    # split over the pool or not, against NumPy).
    ctype = "double" if dtype == "float64" else "float"
    assert narrow.layout("nn", ctype, n) == "dot"
    rows = narrow._layout_rows(n)
    r = np.random.default_rng(7 + n)
    f = symgrad.compile(product(False), cache_dir=tmp_path)
    ahead = narrow.DOT_PREFETCH_BLOCKS * rows
    for m in sorted({1, 2, ahead, ahead + 1, ahead + rows, 3 * ahead + 2, 257}):
        a = r.standard_normal((m, 700)).astype(dtype)
        b = r.standard_normal((700, n)).astype(dtype)
        check(a, b, False, f(a, b), dtype)
    source = f.specialize(a, b)[0]._executable.source
    assert f"const int64_t pf = i + {ahead + rows - 1} < i1 ? {ahead} * k : 0;" in source
    assert "SYMGRADRT_PREFETCH(a0 + pf + q);" in source


# --- A^T B with a wide result and a short contraction (templates/wide_tn.c.j2) -----------------

def _adds(ta):
    """2 c + op(a) b: the product adds into the buffer holding 2 c (backends/c/accumulate.py)."""
    def adds(a, b, c):
        return 2.0 * c + Tracer(bind("matmul", a.irvar, b.irvar, transpose_a=ta,
                                     transpose_b=False))
    return adds


def _wide_operands(r, ta, m, k, n, dtype="float64"):
    """Random a (k x m for A^T B, else m x k) and b (k x n)."""
    a = r.standard_normal((k, m) if ta else (m, k)).astype(dtype)
    return a, r.standard_normal((k, n)).astype(dtype)


# (k, m, n): W5's X^T dH; a contraction of 2; chunks of the contraction (WIDE_KC = 256: 257 is
# two, 513 three) with m not a whole number of panels (24 floats, 12 doubles) and each width of
# c's last block of columns (n mod 4 = 1, 2, 3, 0); the largest sizes the rule takes.
WIDE_SHAPES = [(200, 3073, 100), (2, 600, 17), (257, 515, 18), (513, 530, 19), (64, 1001, 20),
               (1024, 512, 256)]


# (m, k, n) for A B: W5's X W1; rows not a whole number of tiles (4, 6 rows); the last columns
# in one, two or three vectors, partial or whole (n mod 24 = 4, 13, 17, 0, 20, 16, 3, 7
# floats; 4, 1, 5, 0, 8, 4, 3, 7 doubles in panels of 12); chunks of the contraction of 256,
# the last partial (k mod 256 = 0, 32, 232, 1, 1, 208, 91, 91). Last columns that fit in one
# vector go along the contraction (symgradrt_nnw_dot): two rows at a time up to 4 columns, an
# odd number of rows (67, 73) leaving one; k = 859's last chunk ends in a partial vector.
WIDE_NN_SHAPES = [(200, 3072, 100), (67, 800, 37), (71, 1000, 41), (65, 1025, 48),
                  (99, 769, 20), (64, 2000, 256), (73, 859, 27), (69, 859, 31)]


WIDE_CASES = [(True, m, k, n) for k, m, n in WIDE_SHAPES] + \
    [(False, m, k, n) for m, k, n in WIDE_NN_SHAPES]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ta, m, k, n", WIDE_CASES)
def test_a_wide_product_matches_numpy(ta, m, k, n, dtype, tmp_path):
    # A^T B (ta) or A B, on its own and adding into 2 c.
    r = np.random.default_rng(m + k + n)
    a, b = _wide_operands(r, ta, m, k, n, dtype)
    c = r.standard_normal((m, n)).astype(dtype)
    f = symgrad.compile(product(ta), cache_dir=tmp_path)
    check(a, b, ta, f(a, b), dtype)
    g = symgrad.compile(_adds(ta), cache_dir=tmp_path)
    want = 2.0 * c.astype(np.float64) + (a.T if ta else a).astype(np.float64) @ b
    scale = np.abs(a).max() * np.abs(b).max() * k
    np.testing.assert_allclose(g(a, b, c), want, rtol=RTOL[dtype], atol=RTOL[dtype] * scale)
    letter = "d" if dtype == "float64" else "s"
    call = (f"symgradrt_mm_tnw_{letter}_run({k}, {m}, {n}, " if ta else
            f"symgradrt_mm_nnw_{letter}_run({m}, {k}, {n}, ") + "_pa, _pb, _pc, "
    assert call + "0)" in f.specialize(a, b)[0]._executable.source
    assert call + "1)" in g.specialize(a, b, c)[0]._executable.source


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_the_wide_kernels_build_without_avx(dtype, tmp_path):
    # The baseline ISA (-O2 alone): vectors as pairs of SSE registers, no FMA, no register pins.
    r = np.random.default_rng(8)
    for ta, (m, k, n) in ((True, (600, 300, 37)), (False, (67, 800, 37))):
        a = r.standard_normal((k, m) if ta else (m, k)).astype(dtype)
        b = r.standard_normal((k, n)).astype(dtype)
        f = symgrad.compile(product(ta), cache_dir=tmp_path, cflags=["-O2"])
        check(a, b, ta, f(a, b), dtype)
        assert f"symgradrt_mm_{'tn' if ta else 'nn'}w_" in f.specialize(a, b)[0]._executable.source


# (A^T B?, m, k, n) that each wide kernel leaves to the BLAS, each rule's bound missed by one.
# Measured (structural.py): for A^T B a long contraction, few result rows or very many columns
# run as fast or faster in the BLAS; for A B a short contraction or few rows; 16 columns or
# fewer take the narrow kernels.
LEFT_TO_BLAS = [(True, 600, structural.WIDE_MAX_K + 1, 20),
                (True, structural.WIDE_MIN_M - 1, 200, 100),
                (True, 600, 200, structural.WIDE_MAX_N + 1), (True, 600, 200, 16),
                (False, 200, structural.WIDE_NN_MIN_K - 1, 100),
                (False, structural.WIDE_NN_MIN_M - 1, 2000, 100),
                (False, 200, 2000, structural.WIDE_MAX_N + 1), (False, 200, 2000, 16)]


@pytest.mark.parametrize("ta, m, k, n", LEFT_TO_BLAS)
def test_the_wide_kernels_leave_other_shapes_to_the_blas(ta, m, k, n, tmp_path):
    a, b = _wide_operands(np.random.default_rng(3), ta, m, k, n)
    f = symgrad.compile(product(ta), cache_dir=tmp_path)
    check(a, b, ta, f(a, b), "float64")
    assert f"symgradrt_mm_{'tn' if ta else 'nn'}w_" not in f.specialize(a, b)[0]._executable.source


# With run-time sizes the rule is a test in C: (A^T B?, the first call's (m, k, n), which
# takes the kernel, then sizes on both sides of each bound, an empty product and 1 x 1 x 1).
RUN_TIME_SIZES = [
    (True, (600, 3, 20), [(700, 200, 33), (600, 0, 20), (600, 3, 21), (600, 1500, 20),
                          (100, 100, 40), (600, 100, 300), (530, 50, 10), (1, 1, 1)]),
    (False, (70, 800, 20), [(70, 800, 33), (130, 1500, 17), (0, 900, 20), (65, 700, 30),
                            (40, 900, 30), (65, 900, 300), (65, 900, 10), (1, 1, 1)]),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("ta, first, sizes", RUN_TIME_SIZES)
def test_a_wide_product_with_run_time_sizes_tests_them_in_c(ta, first, sizes, dtype, tmp_path):
    # Sizes the rule takes run the kernel, the others the gemm or the loops; an empty
    # contraction gives zeros.
    t = "f64" if dtype == "float64" else "f32"
    a_type = f"{t}[K,M]" if ta else f"{t}[M,K]"
    f = symgrad.compile(product(ta), signature={"a": a_type, "b": f"{t}[K,N]"},
                        cache_dir=tmp_path)
    r = np.random.default_rng(5)
    a, b = _wide_operands(r, ta, *first, dtype)
    f(a, b)
    assert f"symgradrt_mm_{'tn' if ta else 'nn'}w_" in f.specialize(a, b)[0]._executable.source
    for m, k, n in sizes:
        a, b = _wide_operands(r, ta, m, k, n, dtype)
        got = f(a, b)
        assert got.shape == (m, n)
        check(a, b, ta, got, dtype)


_WIDE_THREADED = r"""
import hashlib, sys
import numpy as np
import symgrad
from symgrad.backends.c import threads
from symgrad.core.primitive import bind
from symgrad.frontend.tracer import Tracer
def matmul_tn(a, b):
    return Tracer(bind("matmul", a.irvar, b.irvar, transpose_a=True, transpose_b=False))
def matmul_nn(a, b):
    return Tracer(bind("matmul", a.irvar, b.irvar, transpose_a=False, transpose_b=False))
r = np.random.default_rng(11)
h = hashlib.sha256()
for dtype in ("float64", "float32"):
    for k, m, n in ((200, 3073, 100), (513, 1030, 37)):
        a = r.standard_normal((k, m)).astype(dtype)
        b = r.standard_normal((k, n)).astype(dtype)
        f = symgrad.compile(matmul_tn, cache_dir=sys.argv[1])
        h.update(np.ascontiguousarray(f(a, b)).tobytes())
        assert "symgradrt_mm_tnw_" in f.specialize(a, b)[0]._executable.source
    for m, k, n in ((200, 3072, 100), (517, 1030, 37)):
        a = r.standard_normal((m, k)).astype(dtype)
        b = r.standard_normal((k, n)).astype(dtype)
        f = symgrad.compile(matmul_nn, cache_dir=sys.argv[1])
        h.update(np.ascontiguousarray(f(a, b)).tobytes())
        assert "symgradrt_mm_nnw_" in f.specialize(a, b)[0]._executable.source
print(threads.count(), h.hexdigest())
"""


def test_a_wide_product_is_the_same_on_any_number_of_threads(tmp_path):
    # The pool splits c's rows in whole panels; each row's sums run in the same order
    # whatever the split, so the numbers agree bit for bit.
    env = {k: v for k, v in os.environ.items() if k not in ("SYMGRAD_NUM_THREADS", "OMP_NUM_THREADS")}
    digests = []
    for count in ("1", "3"):
        env["SYMGRAD_NUM_THREADS"] = count
        out = subprocess.run([sys.executable, "-c", _WIDE_THREADED, str(tmp_path / count)],
                             env=env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr
        digests.append(out.stdout.split())
    assert [d[0] for d in digests] == ["1", "3"]
    assert digests[0][1] == digests[1][1]


@pytest.mark.parametrize("where, old, new", [
    # the transposed store of a whole tile: two columns of c swapped
    ("put", "c0_{{ v }}, c1_{{ v }}, c2_{{ v }}, c3_{{ v }}",
     "c0_{{ v }}, c2_{{ v }}, c1_{{ v }}, c3_{{ v }}"),
    # the store of a partial tile (the last panel, the last columns): one column for all
    ("tail", "+ tile[j][l];", "+ tile[0][l];"),
    # the chunks of the contraction: the second chunk overwrites the first
    ("chunks", "const int add = accumulate || s > 0;", "const int add = accumulate;"),
    # A B: every row of c's tile takes the first row's elements of a
    ("nn row", "symgradrt_splat_{{ s }}(a{{ r }}[q]);", "symgradrt_splat_{{ s }}(a0[q]);"),
    # A B: the last columns stored one lane short, c's last column never written (a store
    # past the row's end instead would write past c's end on its last row, corrupting this
    # process's heap; under ASan it ended the test run)
    ("nn tail", "const int w_last = cols - {{ (v_count - 1) * lanes }};",
     "const int w_last = cols - {{ (v_count - 1) * lanes }} - 1;"),
    # A B: the chunks of the contraction overwrite each other
    ("nn chunks", "const int add = accumulate || q0 > 0;", "const int add = accumulate;"),
    # A B, the last columns along the contraction: the second row of a pair reads the first's
    ("nn dot rows", "*restrict x1 = a + (i + here - 1) * k;", "*restrict x1 = a + i * k;"),
    # ... the last, partial vector of a chunk one element short
    ("nn dot last", "const int count = (int)(len - q);", "const int count = (int)(len - q) - 1;"),
    # ... the odd row left over never stored
    ("nn dot odd", "r < rows && r < here;", "r < rows && here == rows;"),
])
def test_a_broken_wide_tile_is_caught(where, old, new, tmp_path, monkeypatch):
    # The checks above would see each of these mistakes: the kernel rendered with one of them
    # gives wrong numbers for the shapes the tests use.
    from symgrad import templates
    text = (templates.TEMPLATE_DIR / "wide_tn.c.j2").read_text()
    assert text.count(old) == 1
    broken = templates.environment().from_string(text.replace(old, new))
    monkeypatch.setattr(narrow, "wide_source",
                        lambda *ctypes: broken.render(**narrow.wide_params(*ctypes)))
    ta = not where.startswith("nn")
    k, m, n = (513, 530, 19) if ta else (859, 73, 27) if "dot" in where else (1025, 67, 37)
    r = np.random.default_rng(2)
    a = r.standard_normal((k, m) if ta else (m, k)).astype("float32")
    b = r.standard_normal((k, n)).astype("float32")
    f = symgrad.compile(product(ta), cache_dir=tmp_path)
    with pytest.raises(AssertionError):
        check(a, b, ta, f(a, b), "float32")
