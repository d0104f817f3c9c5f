"""numpy.linalg's cond, tensorsolve and tensorinv, and scipy.linalg's solve, inv, det, eigh,
svd, qr, norm, pinv and block_diag with SciPy's arguments: values against NumPy and SciPy (on
plain arrays each case's function *is* NumPy's or SciPy's), gradients against central
differences and the complex step, C against the interpreter, and the errors."""
import re

import numpy as np
import pytest
import scipy.linalg

import symgrad
import symgrad.numpy as snp
from symgrad.numpy import linalg as sla
from symgrad.scipy import linalg as ssl
from breadth import Case, check_gradient, check_grouped_gradients, check_hvp, check_values
from test_linalg import U, _sym, args, spd, well


def _noisy(gen, lower):
    """A generator's matrix with noise in the triangle a solver must not read."""
    def make(rng):
        a = gen(rng)
        noise = rng.uniform(-1, 1, a.shape)
        return a + (np.triu(noise, 1) if lower else np.tril(noise, -1))
    return make


def _band_noise(gen):
    """A well-conditioned matrix whose entries outside the tridiagonal band are noise."""
    def make(rng):
        a = gen(rng)
        return a + 5 * (np.triu(rng.uniform(-1, 1, a.shape), 2)
                        + np.tril(rng.uniform(-1, 1, a.shape), -2))
    return make


CASES = [
    Case("cond", lambda a, b, r: (sla.cond(a), sla.cond(a, 2), sla.cond(a, -2), sla.cond(a, 1),
                                  sla.cond(a, -np.inf), sla.cond(a, "fro"), sla.cond(a, "nuc"),
                                  sla.cond(b), sla.cond(b, np.inf), sla.cond(r)),
         args(well(3, 3), well(2, 4, 4), U(3, 5)), rtol32=1e-4),
    Case("tensorsolve", lambda a, b, c: (sla.tensorsolve(a, b),
                                         sla.tensorsolve(c, b, axes=(0,))),
         lambda rng: [rng.uniform(-1, 1, (2, 3, 6)) + np.eye(6).reshape(2, 3, 6) * 4,
                      rng.uniform(-1, 1, (2, 3)),
                      np.moveaxis(rng.uniform(-1, 1, (2, 3, 6)) + np.eye(6).reshape(2, 3, 6) * 4,
                                  2, 0).copy()],
         rtol32=1e-4),
    Case("tensorinv", lambda a, b: (sla.tensorinv(a), sla.tensorinv(b, ind=1)),
         lambda rng: [rng.uniform(-1, 1, (2, 3, 6)) + np.eye(6).reshape(2, 3, 6) * 4,
                      rng.uniform(-1, 1, (6, 2, 3)) + np.eye(6).reshape(6, 2, 3) * 4],
         rtol32=1e-4),
    Case("scipy_solve", lambda a, b, v: (
        ssl.solve(a, b), ssl.solve(a, v), ssl.solve(a, b, transposed=True),
        ssl.solve(a, v, assume_a="general"), ssl.solve(a, b, assume_a="banded")),
        args(well(4, 4), U(4, 2), U(4)), rtol32=1e-4),
    # Noise in the triangle the solver must not read: a wrong triangle gives other numbers.
    Case("scipy_solve_sym", lambda al, au, b: (
        ssl.solve(al, b, assume_a="sym", lower=True), ssl.solve(au, b, assume_a="sym"),
        ssl.solve(au, b[:, 0], assume_a="her"), ssl.solve(al, b, assume_a="pos", lower=True),
        ssl.solve(au, b, assume_a="positive definite"),
        ssl.solve(au, b, assume_a="symmetric", transposed=True)),
        args(_noisy(spd(4, 4), True), _noisy(spd(4, 4), False), U(4, 2)), rtol32=1e-4),
    Case("scipy_solve_structured", lambda a, t, b: (
        ssl.solve(a, b, assume_a="diagonal"), ssl.solve(t, b, assume_a="tridiagonal"),
        ssl.solve(a, b, assume_a="upper triangular"),
        ssl.solve(a, b, assume_a="lower triangular", transposed=True)),
        args(well(4, 4), _band_noise(well(4, 4)), U(4, 2)), rtol32=1e-4),
    Case("scipy_inv_det", lambda a, s: (ssl.inv(a), ssl.inv(s, assume_a="pos"),
                                        ssl.inv(s, assume_a="sym", lower=True), ssl.det(a)),
         args(well(3, 3), _noisy(spd(3, 3), False)), rtol32=1e-4),
    # Eigenvectors enter squared: their signs are LAPACK's choice (test_linalg's convention).
    Case("scipy_eigh", lambda a: (
        ssl.eigh(a)[0], ssl.eigh(a)[1] ** 2, ssl.eigh(a, lower=False)[0], ssl.eigvalsh(a),
        ssl.eigh(a, eigvals_only=True, subset_by_index=(1, 2)),
        ssl.eigh(a, subset_by_index=[0, 1])[1] ** 2),
        lambda rng: [_sym(rng, 4, 4)], rtol32=1e-4),
    Case("scipy_eigh_generalized", lambda a, b: (
        ssl.eigh(a, b)[0], ssl.eigh(a, b)[1] ** 2, ssl.eigh(a, b, lower=False)[0],
        ssl.eigh(a, b, lower=False)[1] ** 2, ssl.eigvalsh(a, b)),
        lambda rng: [_sym(rng, 3, 3), spd(3, 3)(rng)], rtol32=1e-4),
    Case("scipy_svd_qr", lambda a, s, w: (
        ssl.svd(a, full_matrices=False)[1], ssl.svd(a, full_matrices=False)[0] ** 2,
        ssl.svd(s)[2] ** 2, ssl.svd(a, compute_uv=False), ssl.svdvals(w),
        *ssl.qr(a, mode="economic"), *ssl.qr(s), ssl.qr(a, mode="r")[0]),
        args(U(5, 3), well(3, 3), U(2, 4)), rtol32=1e-4),
    # QR of a wide matrix has values but no derivative (test_linalg's qr_wide).
    Case("scipy_qr_wide", lambda w: (*ssl.qr(w), ssl.qr(w, mode="r")[0]), args(U(2, 4)),
         grad=False, rtol32=1e-4),
    Case("scipy_norm_pinv", lambda a, v: (
        ssl.norm(a), ssl.norm(a, 2), ssl.norm(v, 1), ssl.norm(a, axis=0),
        ssl.norm(a, "nuc", keepdims=True), ssl.pinv(a), ssl.pinv(a.T, rtol=1e-3),
        ssl.pinv(a, atol=0.5), *ssl.pinv(a[:, :2] @ a[:2], return_rank=True)),
        args(U(4, 3), U(5)), rtol32=1e-4),
    # Norms from 0.4 to ~4: none to two squarings (the squaring loop's gate both ways).
    Case("expm", lambda a, b, c: (ssl.expm(a), ssl.expm(b), ssl.expm(c), ssl.expm(0.0 * a)),
         lambda rng: [rng.uniform(-1, 1, (3, 3)) * 0.3, rng.uniform(-1, 1, (4, 4)) * 1.5,
                      rng.uniform(-1, 1, (2, 3, 3))], rtol32=1e-4),
    Case("block_diag", lambda a, v, s, b: (
        ssl.block_diag(a, v, s), ssl.block_diag(b), ssl.block_diag(v, a[:, :0], a)),
        lambda rng: [rng.uniform(-1, 1, (2, 3)), rng.uniform(-1, 1, 4),
                     np.float64(rng.uniform(-1, 1)), rng.uniform(-1, 1, (3, 3))]),
]
BY_NAME = {c.name: c for c in CASES}
# The rank pinv returns is an integer: no gradient through it; the others are differentiable.
GRAD = [c.name for c in CASES if c.grad and c.name != "scipy_norm_pinv"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_values_match_numpy_and_scipy(backend, dtype):
    check_values(CASES, backend, dtype)


@pytest.mark.parametrize("name", GRAD)
def test_gradient_against_differences(name):
    check_gradient(BY_NAME[name], rtol=1e-5, atol=1e-7)


def test_pinv_gradient_against_differences():
    pinv_only = Case("pinv", lambda a: (ssl.pinv(a), ssl.pinv(a.T, rtol=1e-3), ssl.norm(a, 2)),
                     args(U(4, 3)))
    check_gradient(pinv_only, rtol=1e-5, atol=1e-7)


def test_c_gradients_equal_interpreter():
    check_grouped_gradients([c for c in CASES if c.name in GRAD])


def test_second_order():
    check_hvp([BY_NAME["scipy_solve_sym"], BY_NAME["scipy_eigh_generalized"]], "interp")


def test_the_unread_triangle_gets_no_gradient(backend):
    """SciPy's symmetric and positive-definite solvers read one triangle: the other's entries
    do not change the result, so their gradient is exactly 0."""
    rng = np.random.default_rng(5)
    a = _noisy(spd(4, 4), True)(rng)
    b = rng.uniform(-1, 1, (4, 2))
    for kind in ("sym", "pos"):
        f = symgrad.compile(lambda a: snp.sum(ssl.solve(a, b, assume_a=kind, lower=True) ** 2),
                            backend=backend)
        g = f.grad(a)
        assert np.all(g[np.triu_indices(4, 1)] == 0.0), kind
        assert np.all(g[np.tril_indices(4)] != 0.0), kind
    g = symgrad.compile(lambda t: snp.sum(ssl.solve(t, b[:, 0], assume_a="tridiagonal")),
                        backend=backend).grad(a)
    assert np.all(np.triu(g, 2) == 0.0) and np.all(np.tril(g, -2) == 0.0)
    assert np.all(np.diag(g) != 0.0)


def test_generalized_eigenvectors_are_b_orthonormal(backend):
    rng = np.random.default_rng(6)
    a, b = _sym(rng, 4, 4), spd(4, 4)(rng)
    f = symgrad.compile(lambda a, b: ssl.eigh(a, b), backend=backend)
    w, v = f(a, b)
    w_sp, v_sp = scipy.linalg.eigh(a, b)
    np.testing.assert_allclose(w, w_sp, rtol=1e-12)
    np.testing.assert_allclose(v.T @ b @ v, np.eye(4), atol=1e-12)
    a_sym = np.tril(a) + np.tril(a, -1).T
    np.testing.assert_allclose(a_sym @ v, b @ v * w, atol=1e-11)
    np.testing.assert_allclose(np.abs(v), np.abs(v_sp), atol=1e-12)


def test_numpy_names_on_tracers_dispatch_here_and_scipy_names_say_what_to_call():
    a = well(3, 3)(np.random.default_rng(1))
    f = symgrad.compile(lambda a: (np.linalg.cond(a), np.linalg.tensorinv(a, 1),
                                   np.linalg.tensorsolve(a, a[0])), backend="interp")
    for got, want in zip(f(a), (np.linalg.cond(a), np.linalg.inv(a),
                                np.linalg.solve(a, a[0]))):
        np.testing.assert_allclose(got, want, rtol=1e-12)
    # SciPy's Python functions convert their arguments before symgrad sees them.
    with pytest.raises(symgrad.errors.TracingError,
                       match=r"Call symgrad.scipy.linalg.solve instead"):
        symgrad.compile(lambda a: scipy.linalg.solve(a, a[0], assume_a="pos"),
                        backend="interp")(a)


@pytest.mark.parametrize("call, error, match", [
    (lambda a: ssl.solve(a, a, assume_a="lu"), ValueError, "not a recognized matrix structure"),
    (lambda a: ssl.solve(a, a[:2]), symgrad.errors.ShapeError, r"do not match"),
    (lambda a: ssl.solve(snp.stack([a, a]), a), symgrad.errors.ShapeError,
     "symgrad.numpy.linalg.solve"),
    (lambda a: ssl.qr(a, pivoting=True), NotImplementedError, "pivoting=False"),
    (lambda a: ssl.qr(snp.concatenate([a, a]), mode="full"), NotImplementedError,
     "mode='economic'"),
    (lambda a: ssl.eigh(a, subset_by_value=(0, 1)), NotImplementedError, "subset_by_index"),
    (lambda a: ssl.eigh(a, subset_by_index=(2, 5)), ValueError, "subset_by_index"),
    (lambda a: ssl.block_diag(a, snp.stack([a, a])), ValueError, r"positions .*: \[1\]"),
    (lambda a: sla.tensorsolve(a, a), symgrad.errors.ShapeError, "square system"),
    (lambda a: sla.tensorinv(a[:2]), symgrad.errors.ShapeError, "not a square one"),
    (lambda a: sla.cond(a[:2], 1), symgrad.errors.ShapeError, "must be square"),
])
def test_errors_name_the_problem(call, error, match):
    a = well(3, 3)(np.random.default_rng(2))
    with pytest.raises(error) as info:
        symgrad.compile(call, backend="interp")(a)
    # The message quotes the user's line (`...`), which here holds the pattern itself: match
    # the rest, or the test could not fail.
    assert re.search(match, re.sub(r"`[^`]*`", "", str(info.value))), str(info.value)


def test_expm_against_scipy_at_large_norms(backend):
    """Norms up to ~1e3 (eight squarings) and a batch; the truth is SciPy's, whose algorithm
    (Al-Mohy and Higham 2009) differs from ours, so both carry the squarings' rounding."""
    rng = np.random.default_rng(7)
    f = symgrad.compile(lambda a: ssl.expm(a), backend=backend)
    for scale in (1e-8, 0.1, 5.0, 30.0):
        a = rng.standard_normal((5, 5)) * scale
        want = scipy.linalg.expm(a)
        np.testing.assert_allclose(f(a), want, rtol=1e-11, atol=1e-11 * np.abs(want).max())
    # Skew-symmetric: the exponential is a rotation, exact orthogonality is a check of its own.
    k = rng.standard_normal((4, 4)) * 40
    q = f(k - k.T)
    np.testing.assert_allclose(q @ q.T, np.eye(4), atol=1e-9)
    batch = rng.standard_normal((3, 4, 4)) * np.array([0.01, 1.0, 20.0])[:, None, None]
    np.testing.assert_allclose(f(batch), scipy.linalg.expm(batch), rtol=1e-11, atol=1e-9)


def test_expm_gradient_where_squarings_run():
    """The gradient through eight squarings, against the complex step and differences."""
    rng = np.random.default_rng(8)
    a = rng.standard_normal((3, 3)) * 8
    w = rng.uniform(-1, 1, (3, 3))
    report = symgrad.check_grad(lambda a: snp.sum(ssl.expm(a) * w), a, rtol=1e-6)
    assert report.ok and {c.method for c in report.comparisons} >= {"complex step",
                                                                     "central diff"}


def test_expm_limits(backend):
    f = symgrad.compile(lambda a: ssl.expm(a, max_squarings=4), backend=backend)
    np.testing.assert_allclose(f(np.eye(2)), np.e * np.eye(2), rtol=1e-14)
    with pytest.raises(RuntimeError, match=r"needs more than max_squarings=4 squarings"):
        f(np.eye(2) * 1e3)
    assert np.all(np.isnan(f(np.full((2, 2), np.nan))))
    with np.errstate(invalid="ignore"):      # inf * 0, as in SciPy's own expm
        assert np.all(np.isnan(f(np.diag([np.inf, 1.0]))))
    with pytest.raises(symgrad.errors.ShapeError, match=r"square matrices"):
        f(np.ones((2, 3)))
