"""Complex numbers inside compiled functions (issue 16 item 7; docs/complex.md).

Values against NumPy; gradients of real-valued functions of complex inputs in JAX's convention,
grad f(z) = df/dx - i df/dy, against central differences on the real and imaginary parts and
against the closed forms (g * f'(z) for holomorphic f; g, -i g, conj(g), g conj(z)/|z| for real,
imag, conj and abs). Each table is one compiled module per backend and dtype.
"""
import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.errors import DTypeError

BACKENDS = ["c", "interp"]
DTYPES = {"complex128": ("float64", 1e-12), "complex64": ("float32", 2e-5)}


def points(shape, dtype, seed):
    r = np.random.default_rng(seed)
    # Away from the negative real axis and 0: log, sqrt and angle are smooth there.
    z = (1.0 + r.uniform(0.2, 1.5, shape)) * np.exp(1j * r.uniform(-2.5, 2.5, shape))
    return z.astype(dtype)


# --- values: every operation, broadcasting complex with complex and with real ------------------

def table(np_, z, w, x, s):
    """Every operation, written once for ``np_`` = numpy or symgrad.numpy.
    z: c[3,4], w: c[4], x: f[3,1] (a real array), s: f[] (a real scalar)."""
    return (np_.real(z), np_.imag(z), np_.conj(z), z.conj(), z.real, z.imag, np_.angle(z),
            np_.angle(z, deg=True), np_.abs(z), abs(z), np_.exp(z), np_.log(z), np_.sqrt(z),
            np_.sin(z), np_.cos(z), np_.tanh(z), z + w, z - x, x - z, z * x, w * s, z / w, x / z,
            z ** w, z ** 2, z ** 3, z ** 0.5, 2.0 ** z, z * 1j, 1j * x, x + 2j, -z,
            np_.square(z), np_.sum(z), np_.sum(z, axis=0), np_.mean(z, axis=1), np_.mean(z),
            z @ w, np_.matmul(np_.transpose(z), z), z @ (x * np.ones((1, 4))).T,
            np_.where(x > 0, z, w), z.astype(np_.complex128) * s, np_.prod(z, axis=0),
            np_.vdot(z, z + 1j), np_.outer(w, w), np_.reciprocal(z), np_.isfinite(z),
            np_.var(z), np_.std(z, axis=0), np_.var(z, axis=1, ddof=1), np_.cumsum(z, axis=1),
            np_.einsum("ij,j->i", z, w), np_.trace(z), np_.flip(z, 0))


def values_fn(z, w, x, s):
    return table(snp, z, w, x, s)


def values_ref(z, w, x, s):
    return table(np, z, w, x, s)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cdtype", list(DTYPES))
def test_values_match_numpy(backend, cdtype):
    rdtype, rtol = DTYPES[cdtype]
    z, w = points((3, 4), cdtype, 0), points((4,), cdtype, 1)
    x = np.random.default_rng(2).standard_normal((3, 1)).astype(rdtype)
    s = np.asarray(0.75, rdtype)
    f = symgrad.compile(values_fn, backend=backend)
    got = f(z, w, x, s)
    # The reference in double precision, from the same (rounded) inputs.
    want = values_ref(*(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
                        for a in (z, w, x, s)))
    dtypes = [np.asarray(r).dtype for r in values_ref(z, w, x, s)]   # NumPy's, at this precision
    assert len(got) == len(want)
    for k, (g, r) in enumerate(zip(got, want)):
        if np.ndim(r) == 0:           # a scalar result is a Python number (API.md)
            assert isinstance(g, complex if np.iscomplexobj(r) else float), (k, type(g))
        else:
            assert g.shape == r.shape and g.dtype == dtypes[k], (k, g.shape, g.dtype, dtypes[k])
        np.testing.assert_allclose(g, r, rtol=rtol, atol=rtol, err_msg=f"output {k}")


@pytest.mark.parametrize("backend", BACKENDS)
def test_nan_and_inf_predicates_look_at_both_parts(backend):
    n, i = np.nan, np.inf
    z = np.array([1 + 1j, complex(n, 0), complex(0, n), complex(i, 1), complex(1, -i),
                  complex(n, i), complex(-i, n)])

    def f(z):
        return (snp.isnan(z), snp.isinf(z), snp.isfinite(z), snp.nan_to_num(z),
                snp.nan_to_num(z, nan=2.0, posinf=3.0, neginf=-3.0))

    got = symgrad.compile(f, backend=backend)(z)
    want = (np.isnan(z), np.isinf(z), np.isfinite(z), np.nan_to_num(z),
            np.nan_to_num(z, nan=2.0, posinf=3.0, neginf=-3.0))
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_scalar_results_are_python_complex():
    for backend in BACKENDS:
        f = symgrad.compile(lambda z: z * z + 1, backend=backend)
        out = f(3 + 4j)
        assert isinstance(out, complex) and out == (3 + 4j) ** 2 + 1


def test_python_complex_promotes_like_numpy():
    # float32 * 1j is complex64 and float64 * 1j complex128, as NumPy 2 does.
    for dtype, want in (("float32", "complex64"), ("float64", "complex128")):
        f = symgrad.compile(lambda x: x * 1j + 2, backend="interp")
        out = f(np.ones(2, dtype))
        assert out.dtype == want
        np.testing.assert_array_equal(out, np.ones(2, dtype) * 1j + 2)


# --- gradients: closed forms ------------------------------------------------------------------
# L(p) = sum_k Re(sum(a_k * f_k(z_k))) for holomorphic f_k has gradient a_k * f_k'(z_k) in each
# z_k; the non-holomorphic parts have the closed forms of docs/complex.md.

HOLOMORPHIC = {
    "exp": (snp.exp, np.exp),
    "log": (snp.log, lambda z: 1 / z),
    "sqrt": (snp.sqrt, lambda z: 0.5 / np.sqrt(z)),
    "sin": (snp.sin, np.cos),
    "cos": (snp.cos, lambda z: -np.sin(z)),
    "tanh": (snp.tanh, lambda z: 1 - np.tanh(z) ** 2),
    "square": (lambda z: z ** 2, lambda z: 2 * z),
    "cube": (lambda z: z ** 3, lambda z: 3 * z ** 2),
    "recip": (lambda z: 1 / z, lambda z: -1 / z ** 2),
    "pow": (lambda z: z ** (0.3 + 0.4j), lambda z: (0.3 + 0.4j) * z ** (-0.7 + 0.4j)),
    "scale": (lambda z: (2 - 1j) * z + 3, lambda z: (2 - 1j) * np.ones_like(z)),
}
NON_HOLOMORPHIC = {      # f(z) real, and its gradient b -> grad of sum(b * f(z))
    "real": (snp.real, lambda z, b: b + 0j),
    "imag": (snp.imag, lambda z, b: -1j * b),
    "abs": (snp.abs, lambda z, b: b * np.conj(z) / np.abs(z)),
    "abs2": (lambda z: snp.real(z * snp.conj(z)), lambda z, b: 2 * b * np.conj(z)),
    "angle": (snp.angle, lambda z, b: b * (-z.imag - 1j * z.real) / np.abs(z) ** 2),
    "conj": (lambda z: snp.real((0.5 + 2j) * snp.conj(z)), lambda z, b: b * np.conj(0.5 + 2j)),
}


def closed_form_loss(p, a, b):
    total = 0.0
    for name, (fn, _) in HOLOMORPHIC.items():
        total = total + snp.sum(snp.real(a * fn(p[name])))
    for name, (fn, _) in NON_HOLOMORPHIC.items():
        total = total + snp.sum(b * fn(p[name]))
    return total


def closed_form_inputs(cdtype):
    names = list(HOLOMORPHIC) + list(NON_HOLOMORPHIC)
    p = {name: points((5,), cdtype, k) for k, name in enumerate(names)}
    a = points((5,), cdtype, 99)                 # complex weights: every phase is exercised
    b = np.random.default_rng(7).standard_normal(5).astype(DTYPES[cdtype][0])
    return p, a, b


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cdtype", list(DTYPES))
def test_gradients_match_closed_forms(backend, cdtype):
    rtol = DTYPES[cdtype][1] * 10
    p, a, b = closed_form_inputs(cdtype)
    f = symgrad.compile(closed_form_loss, backend=backend)
    value, grad = f.value_and_grad(p, a, b)
    assert isinstance(value, float)
    p64 = {k: v.astype(np.complex128) for k, v in p.items()}
    a64, b64 = a.astype(np.complex128), b.astype(np.float64)
    for name, (_, deriv) in HOLOMORPHIC.items():
        assert grad[name].dtype == cdtype
        np.testing.assert_allclose(grad[name], a64 * deriv(p64[name]), rtol=rtol, atol=rtol,
                                   err_msg=name)
    for name, (_, rule) in NON_HOLOMORPHIC.items():
        np.testing.assert_allclose(grad[name], rule(p64[name], b64), rtol=rtol, atol=rtol,
                                   err_msg=name)


@pytest.mark.parametrize("backend", BACKENDS)
def test_jvp_and_hvp_of_the_closed_form_table(backend):
    # Forward mode through every complex rule (real, imag, conj, complex, the holomorphic ones):
    # a real loss's tangent along t is Re(sum(grad * t)); H v against central differences of
    # the gradient (each part of the direction stepped as one real direction).
    p, a, b = closed_form_inputs("complex128")
    t = {name: points((5,), "complex128", 50 + k) for k, name in enumerate(p)}
    f = symgrad.compile(closed_form_loss, backend=backend)
    grad = f.grad(p, a, b)
    _, tangent = f.jvp((p, a, b), (t,))
    assert tangent == pytest.approx(sum(np.real(np.sum(grad[k] * t[k])) for k in p), rel=1e-12)
    # With the pairing Re(a t), a Hessian-vector product is the directional derivative of the
    # gradient along the tangent: (grad(p + h t) - grad(p - h t)) / 2h.
    hv = f.hvp((p, a, b), (t,))
    h = 1e-6
    plus = f.grad({k: p[k] + h * t[k] for k in p}, a, b)
    minus = f.grad({k: p[k] - h * t[k] for k in p}, a, b)
    for k in p:
        np.testing.assert_allclose(hv[k], (plus[k] - minus[k]) / (2 * h), rtol=1e-6, atol=1e-7,
                                   err_msg=k)


def central_complex(f, z, h=1e-6):
    """df/dx - i df/dy by central differences on each real and imaginary part separately."""
    z = np.asarray(z, np.complex128)
    g = np.zeros(z.shape, np.complex128)
    for k in np.ndindex(z.shape):
        for unit, part in ((1.0, 1.0), (1j, -1j)):
            e = np.zeros(z.shape, np.complex128)
            e[k] = unit * h
            g[k] += part * (f(z + e) - f(z - e)) / (2 * h)
    return g


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradients_match_central_differences(backend):
    # Mixed real and complex, broadcasting, reductions and a matmul; the gradients with respect
    # to the complex A and the real x against differences of the NumPy function itself.
    def loss(A, B, x):
        C = A @ B + x[:, None] * 1j
        moved = snp.concatenate([A, B.T])[snp.arange(3), 1] * snp.stack([A[0], B[1]]).reshape(6)[:3]
        return (snp.sum(snp.abs(C) ** 2) + snp.real(snp.mean(snp.exp(A) * x[:, None]))
                + snp.sum(snp.angle(C + 3)) + snp.imag(snp.sum(snp.log(B) / A[0]))
                + snp.sum(snp.abs(moved + snp.dot(A, B[:, 0])))
                + snp.real(snp.prod(B[0])) + snp.imag(snp.vdot(A[1], B[2])) + snp.std(A))

    def loss_np(A, B, x):
        C = A @ B + x[:, None] * 1j
        moved = np.concatenate([A, B.T])[np.arange(3), 1] * np.stack([A[0], B[1]]).reshape(6)[:3]
        return (np.sum(np.abs(C) ** 2) + np.real(np.mean(np.exp(A) * x[:, None]))
                + np.sum(np.angle(C + 3)) + np.imag(np.sum(np.log(B) / A[0]))
                + np.sum(np.abs(moved + np.dot(A, B[:, 0])))
                + np.real(np.prod(B[0])) + np.imag(np.vdot(A[1], B[2])) + np.std(A))

    A, B = points((3, 3), "complex128", 3), points((3, 3), "complex128", 4)
    x = np.random.default_rng(5).standard_normal(3)
    f = symgrad.compile(loss, argnums=(0, 1, 2), backend=backend)
    value, (gA, gB, gx) = f.value_and_grad(A, B, x)
    assert value == pytest.approx(loss_np(A, B, x), rel=1e-13)
    np.testing.assert_allclose(gA, central_complex(lambda a: loss_np(a, B, x), A), rtol=1e-7)
    np.testing.assert_allclose(gB, central_complex(lambda b: loss_np(A, b, x), B), rtol=1e-7)
    assert gx.dtype == np.float64        # a real input has a real gradient
    fd = [(loss_np(A, B, x + h) - loss_np(A, B, x - h)) / 2e-6 for h in np.eye(3) * 1e-6]
    np.testing.assert_allclose(gx, fd, rtol=1e-7)


@pytest.mark.parametrize("backend", BACKENDS)
def test_loops_carry_complex_values(backend):
    # fori_loop and scan compile to C loops with a tape: complex carries ride in them.
    def f(z):
        w = symgrad.fori_loop(0, 3, lambda i, w: w * z + 1, z)
        last, ys = symgrad.scan(lambda c, x: (c * x + 1j, c), z[0], z)
        return snp.sum(snp.abs(w) ** 2) + snp.abs(last) + snp.real(snp.sum(ys * z))

    def f_np(z):
        w = z
        for _ in range(3):
            w = w * z + 1
        c, ys = z[0], []
        for x in z:
            ys.append(c)
            c = c * x + 1j
        return np.sum(np.abs(w) ** 2) + np.abs(c) + np.real(np.sum(np.array(ys) * z))

    z = points((3,), "complex128", 20) * 0.5
    value, grad = symgrad.compile(f, backend=backend).value_and_grad(z)
    assert value == pytest.approx(f_np(z), rel=1e-13)
    np.testing.assert_allclose(grad, central_complex(f_np, z), rtol=1e-7)


@pytest.mark.parametrize("cdtype", list(DTYPES))
def test_large_complex_products(cdtype):
    # 24 x 30 @ 30 x 20 is past GEMM_MIN_MADDS, where real products call the BLAS; complex ones
    # run the loops. In the adjoint, transposed products (no conjugate transposes) G B^T, A^T G.
    rtol = DTYPES[cdtype][1] * 10
    A, B = points((24, 30), cdtype, 30), points((30, 20), cdtype, 31)
    W = points((24, 20), cdtype, 32)
    f = symgrad.compile(lambda A, B: snp.real(snp.sum(W * (A @ B))), argnums=(0, 1))
    assert "gemm" not in f.source(A, B).lower()
    value, (gA, gB) = f.value_and_grad(A, B)
    A64, B64, W64 = (x.astype(np.complex128) for x in (A, B, W))
    assert value == pytest.approx(np.real(np.sum(W64 * (A64 @ B64))), rel=rtol)
    # d Re sum(W * (A B)) = Re sum((W B^T) * dA): grad A = W B^T, grad B = A^T W.
    np.testing.assert_allclose(gA, W64 @ B64.T, rtol=rtol, atol=rtol * 10)
    np.testing.assert_allclose(gB, A64.T @ W64, rtol=rtol, atol=rtol * 10)


def test_vmap_of_a_complex_function():
    zs = points((4, 3), "complex128", 40)
    f = symgrad.vmap(lambda z: snp.sum(snp.abs(snp.conj(z) * z + snp.real(z) * 1j)))
    want = [np.sum(np.abs(np.conj(z) * z + np.real(z) * 1j)) for z in zs]
    np.testing.assert_allclose(symgrad.compile(f)(zs), want, rtol=1e-13)


def test_dtype_float32_computes_complex_in_complex64():
    f = symgrad.compile(lambda z: z * 2, dtype="float32")
    assert f(np.ones(2, np.complex128)).dtype == np.complex64


def test_jax_reference_values():
    # The convention's defining examples (JAX 0.10.2 gives these; docs/complex.md).
    for backend in BACKENDS:
        assert symgrad.grad(lambda z: snp.abs(z) ** 2, backend=backend)(3 + 4j) == 6 - 8j
        assert symgrad.grad(lambda z: 2 * snp.real(z) + 5 * snp.imag(z),
                            backend=backend)(3 + 4j) == 2 - 5j
        g = symgrad.grad(lambda z: snp.angle(z), backend=backend)(3 + 4j)
        assert g == pytest.approx(-0.16 - 0.12j, rel=1e-15)
        assert symgrad.grad(lambda x: snp.real(x * (1 + 2j)) ** 2, backend=backend)(1.5) == 3.0
        assert symgrad.grad(snp.abs, backend=backend)(3 + 4j) == pytest.approx(0.6 - 0.8j,
                                                                               rel=1e-15)
        assert symgrad.grad(snp.abs, backend=backend)(0j) == 0      # JAX's 0, not 0/0
        assert symgrad.compile(snp.abs, backend=backend)(0j) == 0.0


def test_jvp_pairs_with_the_gradient():
    # A real-valued f's tangent along a complex t is Re(grad * t).
    def f(z):
        return snp.sum(snp.abs(snp.exp(z) - z ** 2))
    z, t = points((4,), "complex128", 8), points((4,), "complex128", 9)
    cf = symgrad.compile(f)
    value, tangent = cf.jvp((z,), (t,))
    assert tangent == pytest.approx(np.real(np.sum(cf.grad(z) * t)), rel=1e-13)


@pytest.mark.parametrize("cdtype", list(DTYPES))
def test_check_grad_skips_the_complex_step_and_says_so(cdtype):
    def f(z, x):
        return snp.sum(snp.abs(snp.sqrt(z) * x - 1j) ** 2)
    z, x = points((6,), cdtype, 10), np.linspace(0.5, 1.5, 6).astype(DTYPES[cdtype][0])
    report = symgrad.check_grad(f, z, x, argnums=(0, 1))
    assert report.ok
    methods = {c.method for c in report.comparisons}
    assert methods == {"interpreter", "central diff"}
    assert any("complex step is not defined" in note for note in report.notes)
    # A real function keeps its complex step.
    report = symgrad.check_grad(lambda x: snp.sum(snp.sin(x) ** 2), np.linspace(0, 1, 4))
    assert "complex step" in {c.method for c in report.comparisons} and not report.notes


def test_check_grad_samples_large_complex_arguments():
    z = points((40,), "complex128", 11)
    report = symgrad.check_grad(lambda z: snp.sum(snp.abs(snp.exp(z)) ** 2), z, max_coords=8)
    assert report.ok and "directional" in {c.method for c in report.comparisons}


def test_check_grad_finds_a_wrong_complex_gradient():
    # The central differences do look at the imaginary part: a loss whose gradient a backend
    # got conjugated would fail. Simulated by comparing against the conjugate closed form.
    z = points((3,), "complex128", 12)
    g = symgrad.grad(lambda z: snp.sum(snp.abs(z) ** 2))(z)
    fd = central_complex(lambda z: np.sum(np.abs(z) ** 2), z)
    np.testing.assert_allclose(g, fd, rtol=1e-8)
    assert not np.allclose(g, np.conj(fd))


# --- errors -------------------------------------------------------------------------------------

def test_grad_of_a_complex_result_is_a_clear_error():
    with pytest.raises(ValueError, match="scalar float result.*c128.*complex result has no gradient"):
        symgrad.grad(lambda z: snp.sum(z * z))(np.ones(2, complex))


def test_jacobian_of_complex_values_is_refused_not_wrong():
    # The one-sweep Jacobian keeps its rows in a real buffer; until it carries complex ones, a
    # complex input or result is a clear error instead of a Jacobian without imaginary parts.
    x, z = np.array([1.0, 2.0]), np.array([1 + 1j, 2.0])
    for fn, arg in ((lambda x: x * (1 + 2j), x), (lambda z: snp.abs(z) ** 2, z),
                    (lambda z: z * z, z)):
        for mode in ("forward", "reverse", "auto"):
            with pytest.raises(ValueError, match="complex values .* are not supported yet|"
                                                 "needs real inputs|needs real results|"
                                                 "holomorphic differentiation"):
                symgrad.jacobian(fn, mode=mode)(arg)
    with pytest.raises(ValueError, match="holomorphic differentiation|not supported yet"):
        symgrad.hessian(lambda z: snp.sum(snp.abs(z) ** 2))(z)


def test_unsupported_operations_on_complex_name_the_primitive():
    with pytest.raises(DTypeError, match="maximum is not defined for complex"):
        symgrad.compile(lambda z: snp.maximum(z, 0))(np.ones(2, complex))
    with pytest.raises(DTypeError, match="lt is not defined for complex"):
        symgrad.compile(lambda z: snp.where(z < 1, z, 0))(np.ones(2, complex))
    with pytest.raises(DTypeError, match="expm1 is not defined for complex"):
        symgrad.compile(lambda z: snp.expm1(z))(np.ones(2, complex))
    with pytest.raises(DTypeError, match="reduce_max.*max/min are not defined for complex"):
        symgrad.compile(lambda z: snp.max(z))(np.ones(2, complex))
    with pytest.raises(DTypeError, match="sorting is not defined for complex"):
        symgrad.compile(lambda z: snp.sort(z))(np.ones(2, complex))
    with pytest.raises(DTypeError, match="argmax/argmin are not defined for complex"):
        symgrad.compile(lambda z: snp.argmax(z))(np.ones(2, complex))


def test_type_strings_c128_and_c64():
    from symgrad.core.types import parse_type
    assert parse_type("c64[N,3]") == ("complex64", ("N", 3))
    assert parse_type("c128[]") == ("complex128", ())
    f = symgrad.compile(lambda z: snp.sum(snp.abs(z)), signature={"z": "c64[N]"})
    assert f(np.array([3 + 4j, 0], np.complex64)) == pytest.approx(5.0)
    assert "c64[N]" in str(f.trace(np.ones(3, np.complex64)))


def test_the_generated_c_uses_c99_complex():
    f = symgrad.compile(lambda z: snp.sum(snp.real(snp.exp(z) * snp.conj(z))))
    src = f.source(np.ones(3, complex))
    assert "#include <complex.h>" in src and "double _Complex" in src
    assert "cexp(" in src and "conj(" in src and "creal(" in src
    # A real function's C stays free of complex.h.
    real_source = symgrad.compile(lambda x: snp.sum(x * x)).source(np.ones(3))
    assert "#include <complex.h>" not in real_source and "_Complex" not in real_source


def primitives_used():
    """The primitives this file's tables use (for test_registry)."""
    p, a, b = closed_form_inputs("complex128")
    f = symgrad.compile(closed_form_loss, backend="interp")
    spec, _ = f.specialize(p, a, b)
    return {n.prim for g in (spec.graph, spec.value_and_grad_graph()) for n in g.nodes}


# --- an ahead-of-time build --------------------------------------------------------------------

AOT_SPEC = '''
import symgrad
import symgrad.numpy as snp


def fit(z, x, y):
    return snp.sum(snp.abs(z * x - y) ** 2) + snp.real(snp.sum(snp.log(z)))


def rotate(z, theta):
    return z * snp.exp(1j * theta)


symgrad.export(fit, "c128[N]", "f64[N]", "c128[N]")
symgrad.export(rotate, "c64[K]", "f32[]")
'''


def test_aot_build_of_a_complex_function(tmp_path):
    import importlib.util
    from symgrad.tools.cli import main
    spec_path = tmp_path / "cplx_spec.py"
    spec_path.write_text(AOT_SPEC)
    out = tmp_path / "build"
    assert main(["build", str(spec_path), "-o", str(out), "--quiet"]) == 0
    header = (out / "cplx_spec.h").read_text()
    assert "double _Complex" in header and "float _Complex" in header
    module_spec = importlib.util.spec_from_file_location("cplx_loader", out / "cplx_spec.py")
    loader = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(loader)
    z, y = points((7,), "complex128", 13), points((7,), "complex128", 14)
    x = np.linspace(-1, 1, 7)
    value, grad = loader.fit_value_and_grad(z, x, y)
    want = np.sum(np.abs(z * x - y) ** 2) + np.real(np.sum(np.log(z)))
    assert value == pytest.approx(want, rel=1e-13)
    np.testing.assert_allclose(grad, 2 * np.conj(z * x - y) * x + 1 / z, rtol=1e-12)
    zr = points((5,), "complex64", 15)
    got = loader.rotate(zr, np.float32(0.3))
    assert got.dtype == np.complex64
    np.testing.assert_allclose(got, zr * np.exp(0.3j), rtol=2e-6)


def test_jacobian_refuses_complex_inputs_in_auto_mode_too():
    """Auto mode picked reverse for a complex input with more outputs than inputs and skipped
    the refusal: the Jacobian came back with its imaginary parts dropped ([2, 0, 2])."""
    f = symgrad.jacobian(lambda z: snp.stack([snp.real(z) * 2.0, snp.imag(z) * 3.0,
                                              snp.real(z * z)]), backend="interp")
    with pytest.raises(ValueError, match="complex values"):
        f(np.complex128(1 + 2j))
