"""Index helpers (symgrad/numpy/indexing.py), whole-array predicates, dtype questions,
conversions and constructors (arrays.py), and the polynomial helpers of calculus.py: values
against NumPy on both backends and dtypes, gradients against central differences and the complex
step, the cases compiled together (tests/breadth.py); integer results value for value; run-time
failures (mode='raise', asarray_chkfinite) and errors that name the problem and the user's
line."""
import re

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from breadth import Case, standard_tests


def U(*shape, lo=-2.0, hi=2.0):
    return lambda rng: rng.uniform(lo, hi, shape)


def ints(lo, hi, *shape):
    return lambda rng: rng.integers(lo, hi, shape)


def args(*gens):
    return lambda rng: [g(rng) for g in gens]


def _wrapped(p):
    return snp.remainder(p + np.pi, 2 * np.pi) - np.pi


def increasing_edges(n):
    return lambda rng: -2.0 + np.cumsum(rng.uniform(0.3, 1.2, n))


def _holes(x, whole_lanes=False):
    """x with NaN in a fixed pattern: some in most lanes along each axis; with whole_lanes, a
    row and a column all NaN too."""
    holes = np.zeros(x.shape, bool)
    holes[1:, 0] = holes[2, 3] = holes[0, 1:3] = True
    if whole_lanes:
        holes[1, :] = holes[:, 4] = True
    return snp.where(holes, np.nan, x)


def _flat(x):
    return snp.reshape(x, (-1,))


CASES = [
    Case("triangle_indices", lambda a, b, c: (
        a[snp.triu_indices_from(a, 1)], a[snp.tril_indices_from(a)],
        b[snp.triu_indices_from(b, -1)], b[snp.tril_indices_from(b, k=2)],
        a[snp.diag_indices_from(a)], c[snp.diag_indices_from(c)]),
         args(U(4, 4), U(3, 5), U(3, 3, 3))),
    Case("unravel_ravel", lambda x, i, r, c: (
        x[snp.unravel_index(i, x.shape)], _flat(x)[snp.ravel_multi_index((r, c), x.shape)],
        *snp.unravel_index(i, (3, 4), order="F"), *snp.unravel_index(i[0], (12,)),
        snp.ravel_multi_index((r, c), (3, 4), order="F"),
        snp.ravel_multi_index((r, c + 5), (3, 4), mode="wrap"),
        snp.ravel_multi_index((r - 7, c - 6), (3, 4), mode="wrap"),
        snp.ravel_multi_index((r - 2, c * 3), (3, 4), mode=("clip", "wrap")),
        snp.ravel_multi_index((r[:, None], c[None, :]), (3, 4))),
         args(U(3, 4), ints(0, 12, 5), ints(0, 3, 5), ints(0, 4, 5))),
    Case("ix_and_indices", lambda x, r, c: (
        x[snp.ix_(r, c)], x[snp.ix_([0, 2], c)], x[snp.ix_(r, np.array([True, False, True, True]))],
        x * snp.indices((3, 4))[1], snp.indices((2, 3), dtype=np.int32),
        *snp.indices((2, 3), sparse=True), x[snp.indices((2, 2))[0], snp.indices((2, 2))[1]]),
         args(U(3, 4), ints(0, 3, 2), ints(0, 4, 3))),
    Case("tri_identity", lambda x, s: (
        x * snp.tri(3, 4, 1), x * snp.tri(3, 4, -1, dtype=int), snp.matmul(snp.identity(3), x),
        s * snp.tri(2), snp.tri(3, 2, dtype=np.int32), s * snp.identity(2, dtype=np.float32)),
         args(U(3, 4), lambda rng: np.array(1.5))),
    Case("predicates", lambda a, b: (
        snp.allclose(a, b), snp.allclose(a, a + 1e-9), snp.allclose(a, snp.where(a > 0, a, b)), snp.allclose(a, a + 1e-3, atol=1e-2),
        snp.allclose(snp.where(a > 1, np.nan, a), snp.where(a > 1, np.nan, a), equal_nan=True),
        snp.array_equal(a, a), snp.array_equal(a, b),
        snp.asarray(snp.array_equal(a, a[:2])),
        snp.array_equal(snp.where(a > 1, np.nan, a), snp.where(a > 1, np.nan, a)),
        snp.array_equal(snp.where(a > 1, np.nan, a), snp.where(a > 1, np.nan, a), equal_nan=True),
        snp.array_equiv(a, snp.broadcast_to(a[0], a.shape)), snp.array_equiv(a[:1], a),
        snp.array_equiv(a, b[:, :1]), snp.asarray(snp.array_equiv(a, b[:2]))),
         args(U(3, 4), U(3, 4)), grad=False),
    Case("conversions", lambda x, s: (
        snp.asanyarray(x), snp.ascontiguousarray(s), snp.asfortranarray(x * 2),
        snp.require(x, requirements="CW"), snp.require(s, np.float64, ["ALIGNED"]),
        snp.asarray_chkfinite(x), snp.asarray_chkfinite(s, np.float64)),
         args(U(3, 4), lambda rng: np.array(1.5))),
    Case("polynomials", lambda p, q, s: (
        snp.polyadd(p, q), snp.polyadd(q, p), snp.polysub(q, p), snp.polysub(p, 2.0),
        snp.polymul(p, q), snp.polyder(p), snp.polyder(p, 2), snp.polyder(p, 0),
        snp.polyder(q, 4), snp.polyint(p), snp.polyint(p, 2, k=[s, 1.0]), snp.polyint(p, k=s),
        snp.polyint(q, 3, k=s), snp.polyint(p, 0), snp.poly(p), snp.poly(q[:1]), snp.poly(q * s),
        snp.polyval(snp.poly(p), p[1])),
         args(U(4), U(2), lambda rng: np.array(0.7))),
    Case("polyfit", lambda x, y, Y, w: (
        snp.polyfit(x, y, 2), snp.polyfit(x, Y, 3), snp.polyfit(x, y, 1, w=w),
        snp.polyfit(x, Y, 2, w=w), snp.polyfit(x[:3], y[:3], 2)),
         args(U(8), U(8), U(8, 2), U(8, lo=0.5, hi=1.5)), rtol32=2e-4),
    Case("nan_order_statistics", lambda x, y: (
        snp.nanmedian(_holes(x)), snp.nanmedian(_holes(x), axis=1),
        snp.nanmedian(_holes(x), axis=0, keepdims=True), snp.nanmedian(x[:, :3], axis=(0, 1)),
        snp.nanquantile(_holes(x), 0.3), snp.nanquantile(_holes(x), [0.1, 0.5, 1.0], axis=1),
        snp.nanquantile(_holes(x), 0.75, axis=0, method="lower"),
        snp.nanquantile(_holes(x), 0.4, axis=1, method="higher", keepdims=True),
        snp.nanquantile(_holes(x), 0.35, axis=1, method="midpoint"),
        snp.nanpercentile(_holes(x), 62.5, axis=1), snp.nanpercentile(y, [25, 80]),
        snp.nanquantile(y, 0.0), snp.nanquantile(y, 1.0)),
         args(U(4, 5), U(7))),
    Case("nan_order_statistics_all_nan", lambda x: (
        snp.nanmedian(_holes(x, True), axis=1), snp.nanmedian(_holes(x, True), axis=0),
        snp.nanquantile(_holes(x, True), 0.3, axis=1), snp.nanpercentile(x * np.nan, 40),
        snp.nanquantile(_holes(x, True), 0.6, axis=0, method="midpoint")),
         args(U(4, 5)), grad=False),
    Case("histogram", lambda x, w, y: (
        *snp.histogram(x), *snp.histogram(x, 4, range=(-1.0, 1.5)),
        *snp.histogram(x, np.array([-1.5, -0.2, 0.0, 0.7, 1.9])), *snp.histogram(x, 5, weights=w),
        *snp.histogram(x, 3, density=True), *snp.histogram(x, [-2.0, 0.0, 0.5, 2.0],
                                                           density=True, weights=w),
        *snp.histogram(x, y), snp.histogram_bin_edges(x, 6), snp.histogram_bin_edges(x[:1], 2),
        *snp.histogram(x * 0 + 1.5, 3), *snp.histogram(snp.round(x * 2), 4, weights=w * 3)),
         args(U(40), U(40, lo=0.5, hi=1.5), increasing_edges(5))),
    Case("histogram_integers", lambda k: (
        *snp.histogram(k), *snp.histogram(k, 3, range=(1, 4)), *snp.histogram(k, [0, 1, 3, 9]),
        *snp.histogram(k, 4, weights=k)),
         args(ints(0, 7, 30)), grad=False),
    Case("logspace_geomspace", lambda s, e, v, b: (
        snp.logspace(s, e, 5), snp.logspace(s, e, 4, endpoint=False, base=2.0),
        snp.logspace(v, e, 3, axis=1), snp.logspace(s, e, 5, base=b), snp.logspace(s, 2.0, 1), snp.linspace(s, 2.0, 3),
        snp.logspace(v, e, 3, base=np.array([2.0, 3.0, 10.0]), axis=-1),
        snp.geomspace(b, b * 7, 6), snp.geomspace(-b, -b * 0.1, 4),
        snp.geomspace(b, 5.0, 5, endpoint=False), snp.geomspace(v * v + 1, b, 3, axis=-1),
        snp.geomspace(1.0, b, 1), snp.geomspace(b, 2.0, 2)),
         args(U(), U(), U(3), U(lo=0.5, hi=3.0))),
    Case("unwrap", lambda p, q: (
        snp.unwrap(_wrapped(p)), snp.unwrap(_wrapped(q), axis=0), snp.unwrap(_wrapped(p), 4.0),
        snp.unwrap(p, period=5.0), snp.unwrap(_wrapped(q), discont=1.0, axis=1),
        snp.unwrap(np.array([0.0, np.pi, 0.0, -np.pi, 2.0]) + p[:5] * 0)),
         args(lambda rng: np.cumsum(rng.uniform(-4, 4, 12)), lambda rng: np.cumsum(
             rng.uniform(-4, 4, (5, 3)), axis=0))),
    Case("unwrap_integers", lambda k: (
        snp.unwrap(k, period=6), snp.unwrap(k, period=7), snp.unwrap(k, period=6, discont=4)),
         args(ints(-20, 20, 9)), grad=False),
    Case("apply_axes", lambda x, y: (
        snp.apply_along_axis(lambda r: snp.sum(r * r) + r[0], 1, x),
        snp.apply_along_axis(snp.diff, 0, x), snp.apply_along_axis(snp.outer, -1, y[:, :2], y[0]),
        snp.apply_along_axis(lambda r, s: snp.sort(r) * s, 0, y, 2.0),
        snp.apply_along_axis(lambda r: r > 0, 1, x),
        snp.apply_over_axes(snp.sum, y, [0, 2]), snp.apply_over_axes(snp.mean, y, -1),
        snp.apply_over_axes(lambda a, k: snp.max(a, k, keepdims=True), x, (1,))),
         args(U(3, 4), U(2, 3, 4))),
    Case("i0_windows", lambda x, b: (
        snp.i0(x), snp.i0(x * 6), snp.i0(-x * 9), snp.i0(np.array([0, 3, 9, 20])),
        snp.kaiser(7, b), snp.kaiser(6, b * 3), snp.kaiser(1, b), snp.kaiser(5, 4.0) * b,
        snp.hanning(5) * b, snp.hamming(4) * b, snp.blackman(6) * b, snp.bartlett(5) * b),
         args(U(5, lo=0.2, hi=2.5), lambda rng: np.array(rng.uniform(2.0, 8.0)))),
    Case("nonzero_size", lambda x: (
        *snp.nonzero(snp.where(x > 0.5, x, 0), size=3), *snp.nonzero(x > 0, size=20,
                                                                     fill_value=(-1, -2)),
        snp.flatnonzero(x > 0, size=4), snp.argwhere(x > 1, size=5, fill_value=-1),
        snp.nonzero(x[0] < 0, size=2)[0], x[snp.nonzero(x > 0, size=4)],
        snp.nonzero(x > 9, size=2, fill_value=7)[1]),
         args(U(3, 4))),
    Case("unique_size", lambda x, k: (
        snp.unique(x, size=5), snp.unique(x, size=20), snp.unique(x, size=20, fill_value=-9.0),
        *snp.unique(x[0], True, True, True, size=6), *snp.unique(k, True, True, True, size=6),
        *snp.unique(k, True, True, True, size=2), snp.unique(k, size=7, fill_value=-1),
        *snp.unique(snp.round(x), return_counts=True, size=6)),
         args(U(3, 4), ints(0, 5, 3, 4))),
    Case("unique_nan", lambda x: (
        snp.unique(snp.where(x > 1, np.nan, snp.round(x)), size=8),
        snp.unique(snp.where(x > 1, np.nan, snp.round(x)), size=8, equal_nan=False),
        *snp.unique(snp.where(x > 1, np.nan, snp.round(x)), return_counts=True, size=3),
        snp.unique(snp.where(x > -9, np.nan, x), size=2)),
         args(U(3, 4)), grad=False),
]

# All-NaN lanes: NumPy warns and returns NaN, as symgrad does (silently).
pytestmark = pytest.mark.filterwarnings("ignore:All-NaN slice:RuntimeWarning")

(test_values_match_numpy, test_gradient_against_differences,
 test_c_gradients_equal_interpreter) = standard_tests(CASES)


# --- integer results and dtype questions, value for value ------------------------------------------

def test_integer_polynomials_stay_integers(backend):
    p = np.array([3, -2, 5, 7])
    f = symgrad.compile(lambda p: (snp.polyder(p), snp.polyder(p, 2), snp.polyadd(p, p[:2]),
                                   snp.polymul(p, p[:2]), snp.polyint(p), snp.poly(p)),
                        backend=backend, argnums=())
    for got, want in zip(f(p), (np.polyder(p), np.polyder(p, 2), np.polyadd(p, p[:2]),
                                np.polymul(p, p[:2]), np.polyint(p), np.poly(p))):
        assert got.dtype == want.dtype, (got.dtype, want.dtype)
        np.testing.assert_array_equal(got, want)


def test_numpy_functions_on_tracers_dispatch_here(backend):
    a, i = np.arange(16.0).reshape(4, 4), np.array([3, 0, 15])
    def calls(a, i):
        return (a[np.triu_indices_from(a, 1)], a[np.diag_indices_from(a)],
                *np.unravel_index(i, (4, 4)), np.ravel_multi_index(np.unravel_index(i, a.shape),
                                                                   a.shape),
                a[np.ix_(i % 4, i % 2)], np.polyder(a[0]), np.polyfit(a[0], a[1] ** 2, 2),
                np.allclose(a, a), np.array_equal(a, a + 1), np.array_equiv(a, a[:1]))
    for got, want in zip(symgrad.compile(calls, backend=backend)(a, i), calls(a, i)):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool"])
def test_dtype_questions_answer_as_numpy(dtype):
    x = np.ones(3, dtype)
    s = np.ones((), "float32")
    seen = {}

    def fn(t, u):
        seen["got"] = (np.result_type(t, 1.0), np.result_type(t, u), np.result_type(t, np.int8),
                       snp.result_type(t, 1), np.can_cast(t, np.float32),
                       np.can_cast(t, np.int32, "same_kind"), snp.promote_types(t, np.int16),
                       np.common_type(t, u) if dtype != "bool" else None,
                       np.isscalar(t), snp.isscalar(u), snp.iterable(t), np.iterable(u))
        return t
    symgrad.compile(fn, backend="interp", argnums=())(x, s)
    want = (np.result_type(x, 1.0), np.result_type(x, s), np.result_type(x, np.int8),
            np.result_type(x, 1), np.can_cast(x, np.float32),
            np.can_cast(x, np.int32, "same_kind"), np.promote_types(x.dtype, np.int16),
            np.common_type(x, s) if dtype != "bool" else None,
            np.isscalar(x), np.isscalar(s), np.iterable(x), np.iterable(s))
    assert seen["got"] == want


# --- failures when the function runs, as NumPy's ---------------------------------------------------

@pytest.mark.parametrize("fn, arg, match", [
    (lambda i: snp.unravel_index(i, (3, 4)), np.array([0, 12]),
     "unravel_index: index out of bounds for array with size 12"),
    (lambda i: snp.unravel_index(i, (3, 4)), np.array([-1, 2]), "index out of bounds"),
    (lambda i: snp.ravel_multi_index((i, i), (3, 4)), np.array([0, 3]),
     "ravel_multi_index: invalid entry in coordinates array"),
    (lambda i: snp.ravel_multi_index((i, i), (3, 4), mode=("raise", "clip")), np.array([-1, 1]),
     "invalid entry in coordinates array"),
    (lambda x: snp.asarray_chkfinite(x) * 2, np.array([1.0, np.inf]),
     "array must not contain infs or NaNs"),
    (lambda x: snp.asarray_chkfinite(x) * 2, np.array([np.nan, 1.0]),
     "array must not contain infs or NaNs"),
    (lambda x: snp.histogram(x, 3)[0], np.array([1.0, np.nan]),
     "histogram: autodetected range is not finite"),
    (lambda x: snp.histogram(x, x)[0], np.array([1.0, 0.5]),
     "`bins` must increase monotonically"),
    (lambda x: snp.histogram(x, 2, range=(x[0], 1.5))[0], np.array([np.inf, 1.0]),
     "histogram: range is not finite or not increasing"),
    (lambda x: snp.geomspace(x[0], x[1], 4), np.array([0.0, 1.0]),
     "Geometric sequence cannot include zero"),
])
def test_bad_values_fail_the_call_when_it_runs(backend, fn, arg, match):
    f = symgrad.compile(fn, backend=backend, argnums=())
    with pytest.raises(ValueError):     # the oracle: NumPy fails on the same values
        fn(arg)
    with pytest.raises(RuntimeError, match=match):
        f(arg)
    good = np.abs(arg[:1]).astype(arg.dtype) if arg.dtype.kind == "i" else np.array([1.0, 2.0])
    np.testing.assert_array_equal(f(good), fn(good))


# --- errors that name the problem and the line ------------------------------------------------------

V = np.linspace(-1.0, 1.0, 6)


@pytest.mark.parametrize("fn, error, match", [
    (lambda v: snp.diag_indices_from(snp.reshape(v, (2, 3))), ValueError,
     r"all dimensions of input must be of equal length, got shape \(2, 3\)"),
    (lambda v: snp.diag_indices_from(v), ValueError, r"at least 2-d"),
    (lambda v: snp.triu_indices_from(v), ValueError, r"input array must be 2-d"),
    (lambda v: snp.tril_indices_from(snp.reshape(v, (2, 3)), v[0]), TypeError,
     r"k must be known while tracing"),
    (lambda v: snp.unravel_index(v, (2, 3)), TypeError, r"only int indices permitted, got float64"),
    (lambda v: snp.unravel_index(snp.astype(v, int), (2, 3), order="K"), ValueError,
     r"only 'C' or 'F' order"),
    (lambda v: snp.ravel_multi_index((snp.astype(v, int),), (2, 3)), ValueError,
     r"must be a sequence of length 2, got 1"),
    (lambda v: snp.ravel_multi_index((snp.astype(v, int),) * 2, (2, 3), mode="bounce"),
     ValueError, r"mode must be one of"),
    (lambda v: snp.ix_(v > 0), IndexError, r"traced boolean sequence.*use integer positions"),
    (lambda v: snp.ix_(snp.astype(snp.reshape(v, (2, 3)), int)), ValueError,
     r"cross index must be 1 dimensional"),
    (lambda v: snp.shares_memory(v, v[1:]), TypeError, r"shares_memory on traced arrays"),
    (lambda v: np.may_share_memory(v, v), TypeError, r"may_share_memory on traced arrays"),
    (lambda v: snp.require(v, requirements="CF"), ValueError, r"both 'C' and 'F'"),
    (lambda v: snp.polyder(v, -1), ValueError, r"order of derivative must be positive"),
    (lambda v: snp.polyint(v, 3, k=[1.0, 2.0]), ValueError, r"length 1 or >m"),
    (lambda v: snp.histogram(v, "auto"), TypeError, r"chooses the number of bins from the values"),
    (lambda v: snp.histogram(v, 0), ValueError, r"`bins` must be positive"),
    (lambda v: snp.histogram(v, [1.0, 0.0]), ValueError, r"must increase monotonically"),
    (lambda v: snp.histogram(v, 2, range=(1.0, 0.0)), ValueError, r"max must be larger than min"),
    (lambda v: snp.histogram(v, 2, weights=v[:2]), ValueError, r"weights should have the same"),
    (lambda v: snp.poly(snp.reshape(v[:4], (2, 2))), TypeError, r"characteristic polynomial"),
    (lambda v: snp.poly(v * 1j), TypeError, r"complex roots"),
    (lambda v: snp.polyfit(v, v, 2, full=True), TypeError, r"full=.*depend on the rank"),
    (lambda v: snp.polyfit(v, v, 2, cov=True), TypeError, r"cov=.*not supported"),
    (lambda v: snp.polyfit(v, v[:5], 2), TypeError, r"same length \(6 and 5\)"),
    (lambda v: snp.polyfit(v, v, v[0]), TypeError, r"deg must be known while tracing"),
    (lambda v: snp.polyfit(v, v, 1, w=v[:3]), TypeError, r"w and y to have the same length"),
])
def test_errors_name_the_problem_and_the_line(fn, error, match):
    with pytest.raises(error, match=match) as info:
        symgrad.compile(fn, backend="interp")(V)
    assert "test_numpy_more.py:" in str(info.value), str(info.value)


@pytest.mark.parametrize("fn, instead", [
    (lambda v: np.nonzero(v), r"size=k"), (lambda v: v.nonzero(), r"size=k"),
    (lambda v: snp.flatnonzero(v), r"size=k"), (lambda v: np.argwhere(v), r"size=k"),
    (lambda v: np.unique(v), r"snp.unique\(x, size=k\)"),
    (lambda v: np.intersect1d(v, v[:2]), r"isin"), (lambda v: snp.union1d(v, v), r"unique"),
    (lambda v: np.trim_zeros(v), r"mask the zeros"), (lambda v: np.roots(v), r"eigvals"),
    (lambda v: np.unique_values(v), r"unique\(x, size=k\)"),
])
def test_data_dependent_shapes_say_so_and_what_instead(fn, instead):
    with pytest.raises(symgrad.errors.UnsupportedError,
                       match=r"the shape of its result depends on the values") as info:
        symgrad.compile(fn, backend="interp")(V)
    assert "test_numpy_more.py:" in str(info.value), str(info.value)
    hint = str(info.value).rsplit("`", 1)[-1]      # after the quoted source line
    assert re.search(instead, hint), str(info.value)


def test_size_conventions_are_jaxs():
    """The plain-array path (the oracle of the cases above) against jax.numpy's own answers,
    written out: nonzero, argwhere and unique (values, index, inverse, counts) with size=."""
    x = np.array([3.0, 1.0, 3.0, np.nan, 2.0, 1.0, np.nan])
    values, index, inverse, counts = snp.unique(x, True, True, True, size=6)
    np.testing.assert_array_equal(values, [1.0, 2.0, 3.0, np.nan, 1.0, 1.0])
    np.testing.assert_array_equal(index, [1, 4, 0, 3, 1, 1])
    np.testing.assert_array_equal(inverse, [2, 0, 2, 3, 1, 0, 3])
    np.testing.assert_array_equal(counts, [2, 1, 2, 2, 0, 0])
    np.testing.assert_array_equal(snp.unique(x, size=6, fill_value=-1.0),
                                  [1.0, 2.0, 3.0, np.nan, -1.0, -1.0])
    m = np.array([[0, 1], [2, 0]])
    np.testing.assert_array_equal(snp.nonzero(m, size=3, fill_value=(-1, -2)),
                                  [[0, 1, -1], [1, 0, -2]])
    np.testing.assert_array_equal(snp.argwhere(m, size=3, fill_value=-1),
                                  [[0, 1], [1, 0], [-1, -1]])


def test_require_rejects_an_unknown_requirement_as_numpy():
    with pytest.raises(KeyError):
        symgrad.compile(lambda v: snp.require(v, requirements="Q"), backend="interp")(V)


def test_index_helpers_need_a_shape_known_while_tracing():
    f = symgrad.compile(lambda a: a[snp.triu_indices_from(a)], signature={"a": "f64[N,N]"},
                        backend="interp")
    with pytest.raises(symgrad.errors.ShapeError, match=r"run-time size.*test_numpy_more\.py:"):
        f(np.ones((3, 3)))


def test_indices_over_a_run_time_size(backend):
    f = symgrad.compile(lambda x: x * snp.indices(x.shape)[0], signature={"x": "f64[N,3]"},
                        backend=backend)
    for n in (2, 5):
        x = np.ones((n, 3))
        np.testing.assert_array_equal(f(x), x * np.indices(x.shape)[0])


@pytest.mark.filterwarnings("error")
def test_i0_gradient_at_zero_and_both_series(backend):
    """The gradient is I1 (SciPy's values), 0 at x = 0, where the far series would divide by 0:
    each series sees only its own range, so nothing computes an inf (no warning either)."""
    x = np.array([0.0, 1.0, 8.0, 12.0])
    g = symgrad.compile(lambda x: snp.sum(snp.i0(x)), backend=backend).grad(x)
    i1 = np.array([0.0, 0.5651591039924851, 399.8731367825599, 18141.348781638833])  # SciPy's
    np.testing.assert_allclose(g, i1, rtol=1e-10, atol=1e-12)
