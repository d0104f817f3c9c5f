"""Differences, integrals, interpolation, polynomials and convolution (symgrad/numpy/calculus.py),
with cov/corrcoef (statistics.py) and vander/block (shapes.py): values against NumPy for every
argument form, gradients against central differences and the complex step, forward mode and
second order, float32, both backends, the cases compiled together (tests/breadth.py); errors
that name the problem and the user's line."""
import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from breadth import (Case, case_args, check_gradient, check_grouped_gradients, check_hvp,
                     check_jvp, check_values, float_positions, weighted_loss)
from symgrad.errors import ShapeError


def U(*shape, lo=-2.0, hi=2.0):
    return lambda rng: rng.uniform(lo, hi, shape)


def increasing(n, start=-2.0):
    """n sample points at least 0.3 apart."""
    return lambda rng: start + np.cumsum(rng.uniform(0.3, 0.9, n))


def args(*gens):
    return lambda rng: [g(rng) for g in gens]


FW = np.array([1, 2, 0, 3, 1, 2])            # frequency weights (whole numbers)


def _complex_parts(z):
    return snp.real(z), snp.imag(z)


CASES = [
    Case("interp", lambda x, xp, fp, r: (
        snp.interp(x, xp, fp), snp.interp(x, xp, fp, left=-1.5, right=r),
        snp.interp(snp.reshape(x, (2, 5)), xp, fp), snp.interp(x[0], xp, fp),
        snp.interp(x, xp, fp[0] * np.ones(6)), snp.interp(0.25, xp, fp),
        snp.interp(x, np.linspace(-1, 1, 4), fp[:4], right=2.0)),
         args(U(10, lo=-3, hi=3), increasing(6), U(6), U())),
    Case("interp_period", lambda x, xp, fp, p: (
        snp.interp(x, xp, fp, period=2.5), snp.interp(x, xp, fp, period=-p),
        snp.interp(x, np.array([0.1, 1.2, -0.4, 0.7]), fp[:4], period=p)),
         args(U(8, lo=-4, hi=4), increasing(5, -1.0), U(5), lambda rng: np.array(3.1))),
    Case("interp_complex", lambda x, xp, f, g: (
        *_complex_parts(snp.interp(x, xp, f + 1j * g)),
        *_complex_parts(snp.interp(x, xp, f - 2j * g, left=1j, right=2 - 1j))),
         args(U(7, lo=-3, hi=3), increasing(5), U(5), U(5))),
    Case("convolve", lambda a, v, w: (
        snp.convolve(a, v), snp.convolve(a, v, "same"), snp.convolve(a, v, "valid"),
        snp.convolve(v, a), snp.convolve(v, a, "same"), snp.convolve(v, a, mode="valid"),
        snp.convolve(a, w, "same"), snp.convolve(w, a, 1), snp.convolve(a, 2.0),
        snp.convolve(a, [0.5, -1.0, 0.25, 2.0], "same")),
         args(U(7), U(3), U(4))),
    Case("correlate", lambda a, v, w: (
        snp.correlate(a, v), snp.correlate(a, v, "same"), snp.correlate(a, v, "full"),
        snp.correlate(v, a), snp.correlate(v, a, "same"), snp.correlate(v, a, "full"),
        snp.correlate(w, a, "same"), snp.correlate(a, w, "same"), snp.correlate(a[:4], w, 2)),
         args(U(7), U(3), U(4))),
    Case("correlate_complex", lambda a, v, w: (
        *_complex_parts(snp.correlate(a, v + 1j * w, "full")),
        *_complex_parts(snp.correlate(v - 1j * w, a, "same")),
        *_complex_parts(snp.correlate(a * 1j + w[0], v * (1 + 2j), "valid")),
        *_complex_parts(snp.convolve(a + 1j * a[::-1], v - 1j * w, "same"))),
         args(U(6), U(3), U(3))),
    Case("polyval", lambda p, x, q: (
        snp.polyval(p, x), snp.polyval(p, 0.7), snp.polyval(q, x[:, 0]),
        snp.polyval([1.0, -2.0, 0.5], x), snp.polyval(p, np.array([[0.5, -1.5]]))),
         args(U(4), U(2, 3), U(3, 2))),
    Case("trapezoid", lambda y, x, h, y3: (
        snp.trapezoid(y), snp.trapezoid(y, x), snp.trapezoid(y, dx=h), snp.trapezoid(y, dx=0.3),
        snp.trapezoid(y, axis=0), snp.trapezoid(y, x[:3], axis=0),
        snp.trapezoid(y, y * y + x, axis=1), snp.trapezoid(y3, dx=h, axis=1), snp.trapezoid(x, x)),
         args(U(3, 5), increasing(5), lambda rng: np.array(0.4), U(2, 3, 4))),
    Case("ediff1d", lambda a, b, s: (
        snp.ediff1d(a), snp.ediff1d(a, to_begin=b), snp.ediff1d(a, to_end=[1.0, 2.0]),
        snp.ediff1d(a, to_end=b, to_begin=s), snp.ediff1d(a[0, :1], to_end=s),
        snp.ediff1d(a[0], to_begin=3)),
         args(U(2, 3), U(2), lambda rng: np.array(0.5))),
    Case("gradient_uniform", lambda f, h, f3: (
        *snp.gradient(f), snp.gradient(f, axis=1), snp.gradient(f, axis=-2),
        *snp.gradient(f, 0.5, edge_order=2), *snp.gradient(f, h), *snp.gradient(f, h, 2.0),
        snp.gradient(f[0], edge_order=2), *snp.gradient(f3, axis=(0, 2)),
        snp.gradient(f[:2], axis=0), snp.gradient(f[:, :3], h, axis=1, edge_order=2)),
         args(U(4, 5), lambda rng: np.array(0.7), U(3, 2, 4))),
    Case("gradient_coordinates", lambda f, x, y: (
        snp.gradient(f, x, axis=1), snp.gradient(f, x, axis=1, edge_order=2),
        *snp.gradient(f, y, x), *snp.gradient(f, y, x, edge_order=2),
        *snp.gradient(f, np.array([0.0, 0.5, 1.5, 1.75]), np.arange(5) * 2),
        *snp.gradient(f, np.linspace(0, 1, 4), 0.5, edge_order=2), snp.gradient(x, x),
        snp.gradient(f[:2], y[:2], axis=0), snp.gradient(f[:3], y[:3], axis=0, edge_order=2)),
         args(U(4, 5), increasing(5), increasing(4))),
    Case("gradient_integers", lambda k, h: (
        *snp.gradient(k), snp.gradient(k, h, axis=0), snp.gradient(k[0] * h, edge_order=2)),
         lambda rng: [rng.integers(-5, 5, (3, 4)), np.array(0.5)], grad=False),
    Case("cov", lambda m, aw: (
        snp.cov(m), snp.cov(m.T, rowvar=False), snp.cov(m[0]), snp.cov(m, bias=True),
        snp.cov(m, ddof=2), snp.cov(m, m[:2] * 2), snp.cov(m[0], m[1]),
        snp.cov(m.T, m[:1].T, rowvar=False), snp.cov(m, fweights=FW),
        snp.cov(m, aweights=aw), snp.cov(m, fweights=FW, aweights=aw),
        snp.cov(m, aweights=aw, ddof=0), snp.cov(m, fweights=FW, aweights=aw, bias=True),
        snp.cov(m, fweights=FW, ddof=1), snp.cov(m, aweights=aw * aw + 0.5),
        snp.cov(m, dtype=np.float64)), args(U(3, 6), U(6, lo=0.5, hi=2.0))),
    Case("cov_complex", lambda m, n: (
        *_complex_parts(snp.cov(m + 1j * n)), *_complex_parts(snp.cov(m[0], n[1] * 1j))),
         args(U(2, 5), U(2, 5))),
    Case("corrcoef", lambda m: (
        snp.corrcoef(m), snp.corrcoef(m[0], m[1]), snp.corrcoef(m.T, rowvar=False),
        snp.corrcoef(m[0]), snp.corrcoef(m[:2], m[2] * m[0])), args(U(3, 6))),
    Case("corrcoef_complex", lambda m: _complex_parts(snp.corrcoef(m[:2] + 1j * m[1:])),
         args(U(3, 6))),
    Case("vander", lambda x: (
        snp.vander(x), snp.vander(x, 3), snp.vander(x, 6, increasing=True), snp.vander(x, 1),
        snp.vander(x, 2, True), snp.vander(x * np.array([1.0, 0.0, 1.0, 1.0])),
        snp.vander(np.arange(3), 2) * x[0]), args(U(4))),
    Case("block", lambda A, B, s: (
        snp.block([[A, B], [B[:, :2], B]]), snp.block([A[0], B[0], 1.0, s]), snp.block(A),
        snp.block([[[A]], [[A * s]]]), snp.block([[A[0]], [B[0, :2]]]),
        snp.block([[s, A[0, 0]], [A[1, 1], s]]), snp.block([A, np.ones((2, 1))])),
         args(U(2, 2), U(2, 3), lambda rng: np.array(1.5))),
]
BY_NAME = {c.name: c for c in CASES}


@pytest.mark.filterwarnings("ignore:Degrees of freedom")
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_values_match_numpy(backend, dtype):
    check_values(CASES, backend, dtype)


@pytest.mark.parametrize("name", [c.name for c in CASES if c.grad])
def test_gradient_against_differences(name):
    if not name.endswith("_complex"):
        check_gradient(BY_NAME[name])
        return
    # Complex values inside: the complex step does not apply (check_grad says so), central
    # differences do.
    case = BY_NAME[name]
    a = case_args(case)
    argnums = float_positions(a)
    f = symgrad.compile(weighted_loss(case), backend="interp", argnums=argnums)
    report = symgrad.check_grad(f, *a, argnums=argnums)
    assert "central diff" in {c.method for c in report.comparisons}
    assert report.ok, str(report)


def test_c_gradients_equal_interpreter():
    check_grouped_gradients(CASES)


def test_jvp(backend):
    check_jvp(CASES, backend)


def test_second_order(backend):
    check_hvp([BY_NAME[n] for n in ("interp", "correlate", "cov", "gradient_coordinates")],
              backend)


# --- NumPy's edge cases, value for value --------------------------------------------------------

def test_interp_edge_cases_match_numpy(backend):
    """Sample points themselves (the last one too), NaN, repeated sample points, infinite
    values, a single sample point: NumPy's C branches, one by one."""
    xp = np.array([-1.0, 0.0, 0.0, 1.5, 2.0])
    fp = np.array([1.0, np.inf, -2.0, 3.0, 0.5])
    # At 0.49, slope * (0.49 - 0.02) + 0.97 is not 0.29 in floating point: NumPy returns fp[-1].
    x = np.array([-1.0, -0.5, 0.0, 1.5, 1.7, 2.0, np.nan, -3.0, 4.0, -np.inf, np.inf, 0.02, 0.49])
    f = symgrad.compile(lambda x, xp, fp: (snp.interp(x, xp, fp), snp.interp(x, xp[:1], fp[:1]),
                                           snp.interp(x, xp, fp, left=7.0, right=-7.0),
                                           snp.interp(x, [0.02, 0.49], [0.97, 0.29],
                                                      right=np.nan)),
                        backend=backend)
    with np.errstate(invalid="ignore"):
        want = (np.interp(x, xp, fp), np.interp(x, xp[:1], fp[:1]),
                np.interp(x, xp, fp, left=7.0, right=-7.0),
                np.interp(x, [0.02, 0.49], [0.97, 0.29], right=np.nan))
        got = f(x, xp, fp)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_interp_gradient_at_sample_points_is_the_slope_to_the_right(backend):
    xp, fp = np.array([0.0, 1.0, 3.0]), np.array([0.0, 2.0, 3.0])
    g = symgrad.compile(lambda x: snp.sum(snp.interp(x, xp, fp)), backend=backend).grad(
        np.array([0.0, 1.0, 3.0, 5.0, -1.0]))
    np.testing.assert_array_equal(g, [2.0, 0.5, 0.5, 0.0, 0.0])


def test_cov_of_too_few_observations_warns_and_divides_by_zero(backend):
    f = symgrad.compile(lambda m: snp.cov(m), backend=backend)
    with pytest.warns(RuntimeWarning, match="Degrees of freedom"), \
            np.errstate(divide="ignore", invalid="ignore"):
        got = f(np.array([[1.0], [2.0]]))
    with pytest.warns(RuntimeWarning), np.errstate(divide="ignore", invalid="ignore"):
        want = np.cov(np.array([[1.0], [2.0]]))
    np.testing.assert_array_equal(got, want)


def test_numpy_functions_on_tracers_dispatch_here(backend):
    x, xp, fp = np.array([0.3, 1.2]), np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 2.0])
    def calls(x):
        return (np.interp(x, xp, fp), np.convolve(x, fp), np.correlate(fp, x, "full"),
                np.polyval(fp, x), np.trapezoid(fp * x[0]), np.gradient(fp * x[1]),
                np.ediff1d(x, to_begin=fp[:1]), np.cov(np.vstack([fp, fp * x[0]])),
                np.corrcoef(fp * x[0], fp ** 2), np.vander(x, 3), np.block([[x, x], [x, fp[:2]]]))
    for got, want in zip(symgrad.compile(calls, backend=backend)(x), calls(x)):
        np.testing.assert_allclose(got, want, rtol=1e-13)


# --- errors that name the problem and the line ----------------------------------------------------

def _trace(fn, *arrays):
    return symgrad.compile(fn, backend="interp")(*arrays)


V = np.linspace(-1.0, 1.0, 6)


@pytest.mark.parametrize("fn, error, match", [
    (lambda v: snp.convolve(v, v, "wide"), ValueError, r"use one of 'valid', 'same', or 'full'"),
    (lambda v: snp.convolve(snp.reshape(v, (2, 3)), v), ShapeError, r"a must be 1-D.*\(2, 3\)"),
    (lambda v: snp.correlate(v, v[:0]), ValueError, r"v cannot be empty"),
    (lambda v: snp.interp(v, snp.reshape(v, (2, 3)), v), ShapeError, r"must be 1-D sequences"),
    (lambda v: snp.interp(v, v, v[:4]), ShapeError, r"not of the same length \(4 and 6\)"),
    (lambda v: snp.interp(v, v, v, period=0), ValueError, r"period must be a non-zero value"),
    (lambda v: snp.gradient(v[:1]), ValueError, r"too small.*at least \(edge_order \+ 1\) = 2"),
    (lambda v: snp.gradient(v[:2], edge_order=2), ValueError, r"= 3 elements"),
    (lambda v: snp.gradient(v, edge_order=3), ValueError, r"edge_order must be 1 or 2"),
    (lambda v: snp.gradient(v, 1.0, 2.0), TypeError, r"invalid number of arguments"),
    (lambda v: snp.gradient(v, v[:5]), ValueError, r"must match the length.*\(5 != 6\)"),
    (lambda v: snp.gradient(v, np.ones(5)), ValueError, r"must match the length.*\(5 != 6\)"),
    (lambda v: snp.gradient(snp.reshape(v, (2, 3)), axis=v[0]), TypeError,
     r"axis must be known while tracing"),
    (lambda v: snp.vander(v, v[0]), TypeError, r"N must be known while tracing"),
    (lambda v: snp.vander(snp.reshape(v, (2, 3))), ValueError, r"one-dimensional.*\(2, 3\)"),
    (lambda v: snp.cov(snp.reshape(v, (1, 2, 3))), ShapeError, r"more than 2 dimensions"),
    (lambda v: snp.cov(v, fweights=[1.5] * 6), TypeError, r"fweights must be integer"),
    (lambda v: snp.cov(v, aweights=-np.ones(6)), ValueError, r"aweights cannot be negative"),
    (lambda v: snp.cov(v, aweights=v[:5]), ShapeError, r"incompatible numbers of samples \(6\)"),
    (lambda v: snp.ediff1d(v, to_begin=1j), TypeError, r"to_begin.*same_kind"),
    (lambda v: snp.block([v, (v, v)]), TypeError, r"arrays\[1\] is a tuple"),
    (lambda v: snp.block([[v], v]), ValueError, r"List depths are mismatched in arrays"),
    (lambda v: snp.block([v, []]), ValueError, r"List at arrays\[1\] cannot be empty"),
    (lambda v: snp.polyval(v[0], v), TypeError, r"p must be a sequence"),
])
def test_errors_name_the_problem_and_the_line(fn, error, match):
    with pytest.raises(error, match=match) as info:
        _trace(fn, V)
    assert "test_calculus.py:" in str(info.value), str(info.value)


def test_lengths_must_be_known_while_tracing():
    """A run-time length is fine where it is data, not where NumPy's result shape needs it."""
    f = symgrad.compile(lambda a, v: snp.convolve(a, v), signature={"a": "f64[N]", "v": "f64[3]"},
                        backend="interp")
    with pytest.raises(ShapeError, match=r"convolve's a must have a length known while tracing"
                                         r".*test_calculus\.py:"):
        f(V, V[:3])


def test_run_time_sizes_where_numpy_does_not_need_them(backend):
    x, m = np.linspace(-1.0, 4.0, 7), np.vstack([V, V ** 2, -V])
    xp, fp = np.array([0.0, 1.0, 3.0]), np.array([1.0, -1.0, 2.0])
    for fn, sig, arg in ((lambda x: snp.interp(x, xp, fp), {"x": "f64[N]"}, x),
                         (lambda x: snp.polyval(fp, x), {"x": "f64[N]"}, x),
                         (lambda x: snp.vander(x, 3), {"x": "f64[N]"}, x),
                         (lambda x: snp.block([[x, x], [x, -x]]), {"x": "f64[N]"}, x),
                         (lambda m: snp.cov(m), {"m": "f64[3,N]"}, m),
                         (lambda m: snp.corrcoef(m), {"m": "f64[3,N]"}, m)):
        f = symgrad.compile(fn, signature=sig, backend=backend)
        np.testing.assert_allclose(f(arg), fn(arg), rtol=1e-13)
        np.testing.assert_allclose(f(arg[..., :5]), fn(arg[..., :5]), rtol=1e-13)
