"""Linear algebra of issue 16 (symgrad/numpy/linalg.py, symgrad/scipy/linalg.py, the primitives of
symgrad/core/primitives/linalg.py): values against NumPy/LAPACK (so our C routines are tested
against LAPACK), gradients against central differences and the complex step at well-conditioned
points, forward mode and second order, float32, both backends, and an ahead-of-time library."""
import importlib.util
import subprocess
import sys

import numpy as np
import pytest
import scipy.linalg

import symgrad
import symgrad.numpy as snp
from symgrad.numpy import linalg as sla
from symgrad.scipy import linalg as ssl
from breadth import (Case, case_args, check_gradient, check_grouped_gradients, check_hvp,
                     check_jvp, check_values)


def U(*shape):
    return lambda rng: rng.uniform(-1.0, 1.0, shape)


def well(*shape):
    """Square matrices with a dominant diagonal: far from singular, eigenvalues apart."""
    n = shape[-1]
    return lambda rng: rng.uniform(-1, 1, shape) + np.diag(np.arange(1.0, n + 1) + n)


def spd(*shape):
    """Symmetric positive definite, with distinct eigenvalues."""
    n = shape[-1]

    def gen(rng):
        a = rng.uniform(-1, 1, shape)
        return a @ np.swapaxes(a, -1, -2) + np.diag(np.arange(1.0, n + 1))
    return gen


def args(*gens):
    return lambda rng: [g(rng) for g in gens]


CASES = [
    Case("solve", lambda a, b, v, c: (sla.solve(a, b), sla.solve(a, v), sla.solve(c, b[None]),
                                      sla.solve(a, b[None].repeat(2, 0))),
         args(well(3, 3), U(3, 2), U(3), well(2, 3, 3)), rtol32=1e-4),
    Case("inv_det", lambda a, c: (sla.inv(a), sla.inv(c), sla.det(a), sla.det(c),
                                  *sla.slogdet(a), *sla.slogdet(-c)),
         args(well(3, 3), well(2, 4, 4)), rtol32=1e-4),
    Case("matrix_power", lambda a: (sla.matrix_power(a, 3), sla.matrix_power(a, 0),
                                    sla.matrix_power(a, -2), sla.matrix_power(a, 1)),
         args(well(3, 3)), rtol32=1e-4),
    Case("multi_dot", lambda a, b, c, v: (sla.multi_dot([a, b, c]), sla.multi_dot([v, b, c]),
                                          sla.multi_dot([a, b, c, c.T, b.T, v])),
         args(U(3, 4), U(4, 5), U(5, 2), U(4)), rtol32=1e-4),
    Case("cholesky", lambda a, c: (sla.cholesky(a), sla.cholesky(c), sla.cholesky(a, upper=True)),
         args(spd(4, 4), spd(2, 3, 3)), rtol32=1e-4),
    Case("qr", lambda a, s, b: (*sla.qr(a), *sla.qr(s), sla.qr(a, mode="r"), *sla.qr(b)),
         args(U(5, 3), well(3, 3), U(2, 4, 2)), rtol32=1e-4),
    Case("qr_wide", lambda a: tuple(sla.qr(a)), args(U(3, 5)), grad=False, rtol32=1e-4),
    # Eigenvectors and singular vectors enter as squares (and projections), which do not depend
    # on LAPACK's arbitrary signs; test_sign_convention checks ours.
    Case("eigh", lambda a, c: (sla.eigh(a)[0], sla.eigh(a)[1] ** 2, sla.eigh(c)[0],
                               sla.eigh(c)[1] ** 2, sla.eigh(a, "U")[0], sla.eigvalsh(c)),
         lambda rng: [_sym(rng, 4, 4), _sym(rng, 2, 3, 3)],
         rtol32=1e-4),
    Case("svd", lambda a, w, c: (
        sla.svd(a, full_matrices=False)[1], sla.svd(a, full_matrices=False)[0] ** 2,
        sla.svd(a, full_matrices=False)[2] ** 2, sla.svd(w, compute_uv=False),
        sla.svd(w, full_matrices=False)[0] ** 2, sla.svd(w, full_matrices=False)[2] ** 2,
        sla.svd(c)[1], sla.svd(c)[0] ** 2, sla.svdvals(a)),
        args(U(5, 3), U(3, 4), U(2, 3, 3)), rtol32=1e-4),
    Case("svd_reconstruct", lambda a: _reconstruct(*sla.svd(a, full_matrices=False)),
         args(U(4, 3)), rtol32=1e-4),
    Case("norms", lambda x, m, t: (
        sla.norm(x), sla.norm(x, 1), sla.norm(x, 2), sla.norm(x, np.inf), sla.norm(x, -np.inf),
        sla.norm(x, 3), sla.norm(x, -1), sla.norm(m), sla.norm(m, "fro"), sla.norm(m, "nuc"),
        sla.norm(m, 1), sla.norm(m, -1), sla.norm(m, 2), sla.norm(m, -2), sla.norm(m, np.inf),
        sla.norm(m, -np.inf), sla.norm(m, axis=0), sla.norm(m, 1, axis=1, keepdims=True),
        sla.norm(t, axis=(1, 2)), sla.norm(t, "nuc", axis=(2, 0)), sla.norm(t, keepdims=True),
        sla.vector_norm(t, axis=(0, 2)), sla.matrix_norm(t, ord=1)),
        args(U(5), U(3, 4), U(2, 3, 4)), rtol32=1e-4),
    Case("norm_counts", lambda x: (sla.norm(snp.ravel(x * (x > 0)), 0), sla.norm(x * (x > 0), 0, axis=1), sla.matrix_rank(x[:, :2] @ x[:2])),
         args(U(3, 3)), grad=False),
    Case("pinv_lstsq", lambda a, b, v: (sla.pinv(a), sla.pinv(a.T), *sla.lstsq(a, b),
                                        *sla.lstsq(a, v)[:2]),
         args(U(5, 3), U(5, 2), U(5)), rtol32=1e-4),
    Case("scipy_triangular", lambda a, b, v: (
        ssl.solve_triangular(a, b, lower=True), ssl.solve_triangular(a, b),
        ssl.solve_triangular(a, v, trans=1), ssl.solve_triangular(a, b, lower=True, trans="T"),
        ssl.solve_triangular(a, b, unit_diagonal=True), ssl.solve_triangular(
            a, v, lower=True, unit_diagonal=True, trans=2)),
        args(well(3, 3), U(3, 2), U(3)), rtol32=1e-4),
    Case("scipy_cholesky", lambda a, b: (ssl.cholesky(a), ssl.cholesky(a, lower=True),
                                         ssl.cho_solve(ssl.cho_factor(a), b),
                                         ssl.cho_solve(ssl.cho_factor(a, lower=True), b[:, 0])),
         args(spd(3, 3), U(3, 2)), rtol32=1e-4),
]
BY_NAME = {c.name: c for c in CASES}


def _sym(rng, *shape):
    """Symmetric, well-separated eigenvalues, stored unsymmetrically (only one triangle is
    read: the other holds noise that must not matter)."""
    n = shape[-1]
    a = rng.uniform(-1, 1, shape)
    sym = a + np.swapaxes(a, -1, -2) + np.diag(np.arange(n) * 2.0)
    return sym + np.triu(rng.uniform(-1, 1, shape), 1)


def _reconstruct(u, s, vh):
    return (u * s[..., None, :]) @ vh


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_values_match_numpy(backend, dtype):
    check_values(CASES, backend, dtype)


@pytest.mark.parametrize("name", [c.name for c in CASES if c.grad])
def test_gradient_against_differences(name):
    check_gradient(BY_NAME[name], rtol=1e-5, atol=1e-7)


def test_c_gradients_equal_interpreter():
    check_grouped_gradients(CASES)


# Every rule is IR, the same for both backends: the interpreter checks all of them; the C
# backend, whose modules of these graphs take gcc a long time, renders a representative few.
C_SUBSET = {"jvp": ("solve", "qr", "svd"), "hvp": ("cholesky", "eigh", "scipy_triangular")}
HVP_CASES = ("solve", "inv_det", "cholesky", "qr", "eigh", "svd", "scipy_triangular")


def test_jvp(backend):
    check_jvp([c for c in CASES if backend == "interp" or c.name in C_SUBSET["jvp"]], backend)


def test_second_order(backend):
    names = HVP_CASES if backend == "interp" else C_SUBSET["hvp"]
    check_hvp([BY_NAME[n] for n in names], backend)


def test_hessian_of_log_determinant(backend):
    # d^2/dA^2 log det A [V, V] = -tr(A^-1 V A^-1 V): exact, against the formula.
    a = well(3, 3)(np.random.default_rng(3))
    v = np.random.default_rng(4).uniform(-1, 1, (3, 3))
    f = symgrad.compile(lambda a: sla.slogdet(a)[1], backend=backend)
    ainv = np.linalg.inv(a)
    np.testing.assert_allclose(f.grad(a), ainv.T, rtol=1e-12)
    hv = f.hvp((a,), v)
    np.testing.assert_allclose(np.sum(hv * v), -np.trace(ainv @ v @ ainv @ v), rtol=1e-10)


def test_norm_gradient_at_zero_is_zero(backend):
    for fn in (lambda x: sla.norm(x), lambda x: sla.norm(x, axis=0),
               lambda x: sla.norm(x, "fro"), lambda x: snp.std(x)):
        g = symgrad.compile(lambda x: snp.sum(fn(x)), backend=backend).grad(np.zeros((3, 2)))
        np.testing.assert_array_equal(g, np.zeros((3, 2)))


def test_sign_convention(backend):
    """Eigenvectors and singular vectors: NumPy's up to the sign of each column, and the same
    signs in C and the interpreter: the largest entry of each (column of U) is positive."""
    rng = np.random.default_rng(9)
    a = _sym(rng, 4, 4)
    m = rng.uniform(-1, 1, (4, 3))
    f = symgrad.compile(lambda a, m: (*sla.eigh(a), *sla.svd(m, full_matrices=False)),
                        backend=backend)
    w, v, u, s, vh = f(a, m)
    w_np, v_np = np.linalg.eigh(a)
    u_np, s_np, vh_np = np.linalg.svd(m, full_matrices=False)
    np.testing.assert_allclose(w, w_np, rtol=1e-12)
    np.testing.assert_allclose(s, s_np, rtol=1e-12)
    for ours, theirs in ((v, v_np), (u, u_np), (vh.T, vh_np.T)):
        np.testing.assert_allclose(np.abs(ours), np.abs(theirs), atol=1e-12)
    for vec in (v, u):
        top = vec[np.argmax(np.abs(vec), axis=0), np.arange(vec.shape[1])]
        assert np.all(top > 0)
    np.testing.assert_allclose((u * s) @ vh, m, atol=1e-12)


def test_failures_give_nan_not_crashes(backend):
    """A singular system or a matrix that is not positive definite: inf/NaN, as JAX gives
    (compiled code cannot raise NumPy's LinAlgError), and never a crash."""
    f = symgrad.compile(lambda a, b: (sla.cholesky(a), sla.slogdet(a)[0], sla.slogdet(a)[1],
                                      sla.solve(a, b)), backend=backend)
    singular = np.array([[1.0, 2.0], [2.0, 4.0]])
    L, sign, logdet, x = f(singular, np.ones(2))
    assert np.isnan(L[1, 1]) and sign == 0.0 and logdet == -np.inf
    assert not np.all(np.isfinite(x))
    # 30 x 30: JIT builds call LAPACK here, with the same outcome.
    big = np.ones((30, 30))
    L, sign, logdet, x = f(big, np.ones(30))
    assert np.isnan(L[-1, -1]) and sign == 0.0 and logdet == -np.inf
    assert not np.all(np.isfinite(x))


def test_qr_of_a_wide_matrix_has_no_derivative_yet():
    f = symgrad.compile(lambda a: snp.sum(sla.qr(a)[1]), backend="interp")
    with pytest.raises(NotImplementedError, match="wide matrix"):
        f.grad(np.ones((2, 3)))


def test_full_svd_of_a_rectangular_matrix_is_a_clear_error():
    with pytest.raises(NotImplementedError, match="full_matrices=False"):
        symgrad.compile(lambda a: sla.svd(a)[0], backend="interp")(np.ones((3, 2)))


def test_numpy_linalg_on_tracers_dispatches_here(backend):
    a = well(3, 3)(np.random.default_rng(1))
    f = symgrad.compile(lambda a: (np.linalg.solve(a, a[0]), np.linalg.det(a),
                                   np.linalg.norm(a, 2), np.linalg.inv(a) @ a), backend=backend)
    for got, want in zip(f(a), (np.linalg.solve(a, a[0]), np.linalg.det(a),
                                np.linalg.norm(a, 2), np.eye(3))):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-14)


def test_float32_lapack_path(backend):
    """30 x 30 in float32: JIT builds call LAPACK's single-precision routines here (their
    double-precision twins run in test_larger_matrices_against_lapack and the AOT test)."""
    rng = np.random.default_rng(8)
    a = (rng.standard_normal((30, 30)) + 8 * np.eye(30)).astype(np.float32)
    f = symgrad.compile(lambda a: (sla.eigvalsh(a @ a.T), sla.svd(a, compute_uv=False),
                                   sla.qr(a)[1], sla.eigh(a @ a.T)[1] ** 2, sla.solve(a, a[0]),
                                   sla.cholesky(a @ a.T), sla.slogdet(a)[1]), backend=backend)
    w, s, r, v2, x, L, logdet = f(a)
    a64 = a.astype(np.float64)
    np.testing.assert_allclose(x, np.linalg.solve(a64, a64[0]), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(L, np.linalg.cholesky(a64 @ a64.T), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(a64)[1], rtol=1e-5)
    assert w.dtype == np.float32 and s.dtype == np.float32
    np.testing.assert_allclose(w, np.linalg.eigvalsh(a64 @ a64.T), rtol=2e-4)
    np.testing.assert_allclose(s, np.linalg.svd(a64, compute_uv=False), rtol=2e-4)
    np.testing.assert_allclose(r, np.linalg.qr(a64)[1], rtol=2e-3, atol=2e-3)
    np.testing.assert_allclose(v2, np.linalg.eigh(a64 @ a64.T)[1] ** 2, atol=2e-3)


def test_larger_matrices_against_lapack(backend):
    """Our C routines at sizes where rounding has room to grow (40 x 40)."""
    rng = np.random.default_rng(2)
    a = rng.standard_normal((40, 40)) + 40 * np.eye(40)
    s = a @ a.T
    f = symgrad.compile(lambda a, s: (sla.solve(a, s[:, :3]), sla.slogdet(a)[1], sla.cholesky(s),
                                      sla.eigvalsh(s), sla.svd(a, compute_uv=False),
                                      sla.qr(a)[1]), backend=backend)
    x, logdet, L, w, sv, r = f(a, s)
    np.testing.assert_allclose(x, np.linalg.solve(a, s[:, :3]), rtol=1e-10)
    np.testing.assert_allclose(logdet, np.linalg.slogdet(a)[1], rtol=1e-12)
    np.testing.assert_allclose(L, np.linalg.cholesky(s), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(w, np.linalg.eigvalsh(s), rtol=1e-10)
    np.testing.assert_allclose(sv, np.linalg.svd(a, compute_uv=False), rtol=1e-10)
    np.testing.assert_allclose(r, np.linalg.qr(a)[1], rtol=1e-9, atol=1e-9)


# --- an ahead-of-time library using the new functions --------------------------------------------

SPEC = '''
import numpy as np
import symgrad
import symgrad.numpy as snp
from symgrad.numpy import linalg as sla


def breadth(A, X, w):
    S = A @ A.T + 3.0 * snp.eye(3)
    L = sla.cholesky(S)
    v, V = sla.eigh(S)
    _, s, _ = sla.svd(X, full_matrices=False)
    Q, R = sla.qr(X)
    z = sla.solve(S, w) + snp.einsum("ij,jk->ik", X, A)[:3, 0]
    stats = snp.var(X, axis=0, ddof=1) + snp.median(X, axis=0) + snp.cumprod(X, axis=0)[-1]
    moved = snp.pad(snp.flip(snp.sort(X, axis=0), 1), 1, mode="reflect")
    shapes = (snp.sum(snp.tile(w, 2) * snp.repeat(w, 2)) + snp.sum(snp.roll(X, 2) * snp.cumsum(X, axis=1))
              + snp.sum(snp.kron(A, A) ** 2) + snp.trace(A @ snp.tril(A)) + snp.sum(snp.diag(w))
              + snp.sum(snp.cross(X[:, :3], X[::-1, :3]) ** 2) + snp.sum(snp.diff(X, axis=0) ** 2)
              + snp.sum(snp.tensordot(X, X, ([0], [0]))) + sla.norm(X) + snp.std(X)
              + snp.sum(snp.average(X, axis=0, weights=snp.arange(1.0, 6.0))))
    return (snp.sum(L) + sla.slogdet(S)[1] + snp.sum(v) + snp.sum(V ** 2 * w) + snp.sum(s)
            + snp.sum(R * R) + snp.sum(Q ** 3) + snp.sum(z * z) + snp.sum(stats)
            + snp.sum(moved ** 2) + snp.quantile(X, 0.3) + shapes)


def factors(A):
    """Every factorization of a 30 x 30 matrix, flattened: at this size JIT builds call LAPACK
    and this self-contained library runs symgrad's own routines."""
    S = A @ A.T
    w, V = sla.eigh(S)
    U, s, Vh = sla.svd(A[:, :20], full_matrices=False)
    Q, R = sla.qr(A)
    parts = [w, V, s, U, Vh, Q, R, sla.cholesky(S + 30 * snp.eye(30)), sla.solve(A, S),
             sla.slogdet(A)[1]]
    return snp.concatenate([snp.ravel(p) for p in parts])


symgrad.export(breadth, "f64[3,3]", "f64[5,3]", "f64[3]", argnums=(0, 1, 2))
symgrad.export(factors, "f64[30,30]")
'''


def test_aot_library(tmp_path):
    from symgrad.tools import aot
    spec = tmp_path / "breadth_spec.py"
    spec.write_text(SPEC)
    paths = aot.build(spec, tmp_path / "build", log=lambda *a: None)
    module_spec = importlib.util.spec_from_file_location("breadth_spec_loader", paths["loader"])
    loader = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(loader)
    sys.modules.pop("breadth_spec_loader", None)
    namespace = {}
    exec(compile(SPEC.replace("symgrad.export(", "(lambda *a, **k: None)("), "breadth_spec",
                 "exec"), namespace)
    rng = np.random.default_rng(11)
    args_ = (rng.uniform(-1, 1, (3, 3)), rng.uniform(-1, 1, (5, 3)), rng.uniform(-1, 1, 3))
    value, grads = loader.breadth_value_and_grad(*args_)
    jit = symgrad.compile(namespace["breadth"], argnums=(0, 1, 2), backend="interp")
    v_ref, g_ref = jit.value_and_grad(*args_)
    assert value == pytest.approx(v_ref, rel=1e-12)
    for g, r in zip(grads, g_ref):
        np.testing.assert_allclose(g, r, rtol=1e-9, atol=1e-11)
    # The library is self-contained: built without SYMGRAD_USE_BLAS, it needs no BLAS or LAPACK
    # symbol (the source keeps those calls under #ifdef, for who compiles it with one).
    undefined = subprocess.run(["nm", "-D", "--undefined-only", str(paths["library"])],
                               capture_output=True, text=True, check=True).stdout
    assert "LAPACKE" not in undefined and "gemm" not in undefined and "scipy_" not in undefined
    assert "#ifdef SYMGRAD_USE_BLAS" in paths["source"].read_text()
    report = symgrad.check_grad(jit, *args_, argnums=(0, 1, 2))
    assert report.ok
    # Our routines (the library) against LAPACK (NumPy's, and the JIT build's, which calls it).
    a = rng.standard_normal((30, 30)) + 8 * np.eye(30)
    ours = loader.factors(a)
    lapack = symgrad.compile(namespace["factors"])(a)
    numpy_ = namespace["factors"](a)
    # NumPy's eigenvectors and singular vectors have LAPACK's arbitrary signs; ours agree with
    # them up to sign, and with each other (the same convention) exactly.
    np.testing.assert_allclose(np.abs(ours), np.abs(numpy_), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours, lapack, rtol=1e-9, atol=1e-9)
    assert "#ifdef SYMGRAD_USE_BLAS" in symgrad.compile(namespace["factors"]).source(a)


def test_scipy_fallbacks_agree_with_scipy():
    rng = np.random.default_rng(4)
    a = spd(3, 3)(rng)
    b = rng.uniform(-1, 1, (3, 2))
    np.testing.assert_allclose(ssl.solve_triangular(a, b, lower=True),
                               scipy.linalg.solve_triangular(a, b, lower=True))
    np.testing.assert_allclose(ssl._solve_triangular(a, b, 1, False, True),
                               scipy.linalg.solve_triangular(a, b, trans=1, unit_diagonal=True))


def test_case_inputs_are_well_conditioned():
    for case in CASES:
        for a in case_args(case) if case.grad else []:
            if isinstance(a, np.ndarray) and a.ndim >= 2 and a.shape[-1] == a.shape[-2]:
                assert np.all(np.linalg.cond(a) < 1e3), case.name
