"""Issue 21: run-time sizes, exact derivatives where a naive formula divides by zero, C literals,
``inner`` and closures differentiated inside a trace -- each found by a differential fuzzer.

References are independent of symgrad: NumPy for values, closed forms of the derivatives of a
product (``d prod / dx_i dx_j = prod_{k != i, j} x_k``), central differences, and the values JAX
gives (noted where they differ from JAX's NaN).
"""
from __future__ import annotations

import itertools

import numpy as np
import pytest
import sympy as sp

import symgrad
import symgrad.numpy as snp
from symgrad.core import dims


# --- 1. constant index arrays along an axis of run-time size -----------------------------------

IDX = np.array([-6, 4, 4])


def gather_loss(x):
    return snp.sum(x[IDX] * np.array([1.0, 2.0, 3.0]))


@pytest.mark.parametrize("n", [6, 9])
def test_constant_indices_along_a_runtime_axis_are_checked_at_run_time(backend, n):
    f = symgrad.compile(gather_loss, signature={"x": "f64[N]"}, backend=backend)
    x = np.arange(float(n))
    value, grad = f.value_and_grad(x)
    assert value == gather_loss(x)                      # NumPy: 20.0 at n = 6
    expected = np.zeros(n)
    np.add.at(expected, IDX % n, [1.0, 2.0, 3.0])
    np.testing.assert_array_equal(grad, expected)


def test_a_constant_index_out_of_a_runtime_size_is_an_index_error(backend):
    f = symgrad.compile(gather_loss, signature={"x": "f64[N]"}, backend=backend)
    f(np.arange(6.0))
    with pytest.raises(IndexError, match="out of bounds"):
        f(np.arange(5.0))                               # -6 needs N >= 6
    with pytest.raises(IndexError, match="out of bounds"):
        f.grad(np.arange(4.0))


def test_constant_indices_on_two_runtime_axes(backend):
    def loss(a):
        rows = a[np.array([-1, 0, 0, 1])]                # (4, M)
        return snp.sum(rows[:, np.array([0, -1])] ** 2)
    f = symgrad.compile(loss, signature={"a": "f64[N,M]"}, backend=backend)
    for shape in [(2, 3), (3, 5)]:
        a = np.arange(float(np.prod(shape))).reshape(shape) / 7
        value, grad = f.value_and_grad(a)
        assert value == pytest.approx(loss(a), rel=1e-14)
        expected = np.zeros(shape)
        np.add.at(expected, (np.array([-1, 0, 0, 1])[:, None] % shape[0],
                             np.array([0, -1])[None, :] % shape[1]),
                  2 * a[np.array([-1, 0, 0, 1])][:, [0, -1]])
        np.testing.assert_allclose(grad, expected, rtol=1e-14)


# --- 2. every size over run-time sizes is integer C --------------------------------------------

N, M = dims.symbol("N"), dims.symbol("M")
POLYNOMIALS = [N ** 2, 8 * N ** 2 + 63, N ** 3 * M - M ** 2 + 1, N * (N + 1) / 2,
               sp.expand(N * (N + 1) * (N + 2) / 6), dims.align_up(8 * N ** 2, 64),
               dims.at_least_zero(N - 3), 3 - 2 * N, 2 ** 40 * N * M]


@pytest.mark.parametrize("d", POLYNOMIALS, ids=str)
def test_sizes_print_as_exact_integer_arithmetic(d):
    c, py = dims.c_expr(d), dims.py_expr(d)
    assert "pow" not in c and "." not in c and "**" not in py
    for n, m in itertools.product([0, 1, 2, 7, 10 ** 6], [0, 3, 10 ** 5]):
        exact = dims.substitute(d, {N: n, M: m})
        assert eval(py, {"max": max}, {"N": n, "M": m}) == exact
        assert dims.evaluator([d], [M, N])([m, n]) == [exact]


def test_a_size_without_an_integer_form_is_refused():
    with pytest.raises(dims.SizeExpressionError):
        dims.c_expr(sp.sqrt(N))


def test_temporaries_of_polynomial_size_compile_and_run(backend):
    def loss(x):
        square = snp.tanh(snp.outer(x, x))                        # N*N
        cube = snp.outer(snp.ravel(square), x)                   # N*N*N
        return snp.sum(square @ x) + snp.sum(snp.sin(cube)) * 0.5
    f = symgrad.compile(loss, signature={"x": "f64[N]"}, backend=backend)
    for n in (3, 5):
        x = np.linspace(-1, 1, n)
        value, grad = f.value_and_grad(x)
        assert value == pytest.approx(loss(x), rel=1e-13)
        h = 1e-6
        numeric = [(loss(x + h * e) - loss(x - h * e)) / (2 * h) for e in np.eye(n)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)


# --- 3. derivatives exact where a naive formula is 0/0 or 0 * inf ------------------------------

def prod_hessian(x):
    """d2 prod / dx_i dx_j = prod_{k != i, j} x_k off the diagonal, 0 on it."""
    n = len(x)
    h = np.zeros((n, n))
    for i, j in itertools.product(range(n), repeat=2):
        if i != j:
            h[i, j] = np.prod([x[k] for k in range(n) if k not in (i, j)])
    return h


def prod_third(x):
    n = len(x)
    t = np.zeros((n, n, n))
    for i, j, k in itertools.product(range(n), repeat=3):
        if len({i, j, k}) == 3:
            t[i, j, k] = np.prod([x[m] for m in range(n) if m not in (i, j, k)])
    return t


PROD_POINTS = [[0.0, 2.0, 3.0], [0.0, 0.0, 3.0], [0.0, 0.0, 0.0], [1.5, -2.0, 0.0, 0.5, 3.0],
               [2.0], [0.0, 4.0]]


@pytest.mark.parametrize("x", PROD_POINTS, ids=str)
def test_prod_is_exact_at_zeros_to_second_order(backend, x):
    x = np.array(x)
    v = np.linspace(1.0, 2.0, len(x))
    f = symgrad.compile(snp.prod, backend=backend)
    np.testing.assert_array_equal(f.grad(x), [np.prod(np.delete(x, i)) for i in range(len(x))])
    np.testing.assert_allclose(f.hvp((x,), (v,)), prod_hessian(x) @ v, rtol=1e-15, atol=0)
    _, tangent = f.jvp((x,), (v,))
    assert tangent == pytest.approx(np.dot([np.prod(np.delete(x, i)) for i in range(len(x))], v))


def test_hvp_of_prod_at_a_zero_is_jaxs(backend):
    f = symgrad.compile(snp.prod, backend=backend)
    np.testing.assert_array_equal(f.hvp((np.array([0.0, 2.0, 3.0]),), (np.ones(3),)),
                                  [5.0, 3.0, 2.0])      # jax.hessian(jnp.prod) @ 1


@pytest.mark.parametrize("x", [[0.0, 2.0, 3.0, -1.0], [0.0, 0.0, 1.5, 2.0]], ids=str)
def test_prod_third_order_at_zeros(backend, x):
    x = np.array(x)
    v, w = np.linspace(1.0, 2.0, 4), np.array([0.5, -1.0, 2.0, 0.25])
    hvp = symgrad.compile(snp.prod, backend="interp").hvp

    def along(y):
        return snp.sum(hvp((y,), (v,)) * w)
    g = symgrad.compile(along, backend=backend).grad(x)
    np.testing.assert_allclose(g, np.einsum("ijk,j,i->k", prod_third(x), v, w), rtol=1e-15)


def test_prod_over_axes_and_runtime_sizes_at_zeros(backend):
    x = np.array([[0.0, 2.0, 3.0], [1.5, 0.0, 0.0], [2.0, -1.0, 0.5]])
    v = np.array([[1.0, 0.5, 2.0], [1.0, 1.0, -1.0], [0.25, 2.0, 1.0]])
    f = symgrad.compile(lambda a: snp.sum(snp.prod(a, axis=1) * np.array([1.0, 2.0, -1.0])),
                        signature={"a": "f64[3,C]"}, backend=backend)
    hv = f.hvp((x,), (v,))
    expected = np.array([w * prod_hessian(row) @ vr for row, vr, w in zip(x, v, [1, 2, -1])])
    np.testing.assert_allclose(hv, expected, rtol=1e-15)
    g = symgrad.compile(lambda a: snp.sum(snp.prod(a, axis=0)), signature={"a": "f64[R,C]"},
                        backend=backend).hvp((x[:2],), (v[:2],))
    np.testing.assert_allclose(g, np.array([[v[1, j] * 1.0 for j in range(3)],
                                            [v[0, j] for j in range(3)]]), rtol=1e-15)


def _second(fn, x, backend):
    """d2 fn / dx2 at the scalar x, by forward over reverse."""
    return symgrad.compile(fn, backend=backend).hvp((np.float64(x),), (np.float64(1.0),))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_power_at_zero_first_and_second_order(backend):
    grad = lambda fn, x: symgrad.compile(fn, backend=backend).grad(np.float64(x))  # noqa: E731
    assert grad(lambda x: snp.power(x, 0.0), 0.0) == 0.0           # JAX 0.10: NaN
    assert grad(lambda y: snp.power(0.0, y), 0.5) == 0.0
    assert grad(lambda y: 0.0 ** y, 0.5) == 0.0
    assert grad(lambda x: x ** 1.0 + snp.power(x, 2.0), 0.0) == 1.0
    assert _second(lambda x: snp.power(x, 1.0), 0.0, backend) == 0.0   # JAX: NaN
    assert _second(lambda x: snp.power(x, 2.0), 0.0, backend) == 2.0
    assert _second(lambda x: snp.power(x, 3.0), 0.0, backend) == 0.0
    assert _second(lambda y: 0.0 ** y, 0.5, backend) == 0.0
    # an exponent that is a traced value: the guard is a run-time select
    f = symgrad.compile(lambda x, y: snp.sum(snp.power(x, y)), argnums=(0, 1), backend=backend)
    np.testing.assert_array_equal(f.grad(np.zeros(3), np.array([0.0, 1.0, 2.0])),
                                  (np.array([0.0, 1.0, 0.0]), np.array([0.0, 0.0, 0.0])))
    # where nothing is 0, the guarded rules are the plain ones
    assert grad(lambda y: 2.5 ** y, 0.7) == pytest.approx(np.log(2.5) * 2.5 ** 0.7, rel=1e-15)
    assert _second(lambda x: x ** 2.5, 1.3, backend) == pytest.approx(2.5 * 1.5 * 1.3 ** 0.5)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_zero_partial_is_not_poisoned_by_an_infinite_adjoint(backend):
    def norm(x):
        return snp.sqrt(snp.sum(x ** 2))
    f = symgrad.compile(norm, backend=backend)
    np.testing.assert_array_equal(f.grad(np.zeros(3)), np.zeros(3))   # JAX: NaN
    np.testing.assert_allclose(f.grad(np.array([3.0, 4.0])), [0.6, 0.8], rtol=1e-15)
    quartic = symgrad.compile(lambda x: snp.sqrt(x ** 4), backend=backend)   # = x**2
    assert quartic.grad(0.0) == 0.0
    assert quartic.jvp((0.0,), (1.0,))[1] == 0.0
    # forward mode meets 0 * inf the other way round: x * sqrt(x)' = sqrt(x) + x / (2 sqrt x)
    rootx = symgrad.compile(lambda x: x * snp.sqrt(x), backend=backend)
    assert rootx.jvp((0.0,), (1.0,))[1] == 0.0
    assert rootx.grad(0.0) == 0.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_xlogy_forms_at_zero_first_and_second_order(backend):
    def xlogx(x):
        return snp.sum(snp.where(x > 0, x * snp.log(x), 0.0))
    f = symgrad.compile(xlogx, backend=backend)
    x = np.array([0.0, 0.5, 2.0])
    np.testing.assert_allclose(f.grad(x), [0.0, np.log(0.5) + 1, np.log(2.0) + 1], rtol=1e-15)
    np.testing.assert_allclose(f.hvp((x,), (np.ones(3),)), [0.0, 2.0, 0.5], rtol=1e-15)

    def xlogy(x, y):
        return snp.sum(snp.where(x == 0, 0.0, x * snp.log(y)))
    g = symgrad.compile(xlogy, argnums=(0, 1), backend=backend)
    gx, gy = g.grad(np.array([0.0, 2.0]), np.array([0.0, 4.0]))
    # at x = 0 the select takes the constant: both partials are 0 there, not 0 * -inf
    np.testing.assert_array_equal(gx, [0.0, np.log(4.0)])
    np.testing.assert_array_equal(gy, [0.0, 0.5])


# --- 4. C literals -----------------------------------------------------------------------------

def test_a_negated_negative_constant_compiles(backend):
    def loss(x, y):
        return snp.sum(x * x) - 1.5 * snp.sum(x - y)
    f = symgrad.compile(loss, argnums=(0, 1), signature={"x": "f64[N]", "y": "f64[N]"},
                        backend=backend)
    gx, gy = f.grad(np.ones(4), np.zeros(4))
    np.testing.assert_array_equal(gx, np.full(4, 0.5))
    np.testing.assert_array_equal(gy, np.full(4, 1.5))


def test_negative_literals_in_every_position(backend):
    def loss(x, k):
        a = -(x * -1.5) - -2.5 - (-x) * -0.25
        b = snp.maximum(x, -np.inf) + snp.minimum(-x, -1e300) * -1e-300
        c = snp.where(x > -0.5, -x, -3.0) ** 2
        i = -(k - -3) * -2                                # integer literals
        return snp.sum(a * b + c) + snp.sum(i)
    f = symgrad.compile(loss, argnums=0, backend=backend)
    x, k = np.array([-1.0, 0.25, 2.0]), np.array([1, -4])
    value, grad = f.value_and_grad(x, k)
    assert value == pytest.approx(loss(x, k), rel=1e-14)
    assert symgrad.check_grad(f, x, k, argnums=0).ok


# --- 5. inner, and closures over traced values differentiated inside a trace -------------------

A = np.arange(9.0).reshape(3, 3) / 4
INNER_CASES = [(1.5, [0.0, 1.0, 2.0]), ([0.0, 1.0, 2.0], 1.5), (A, A), ([1.0, 2.0, 3.0], A),
               (A, [1.0, 2.0, 3.0]), (np.arange(12.0).reshape(2, 2, 3), A), (2.0, 3.0),
               ([1.0, -2.0], [3.0, 0.5])]


def test_inner_of_plain_arrays_is_numpys():
    for a, b in INNER_CASES:
        np.testing.assert_array_equal(snp.inner(a, b), np.inner(a, b))


@pytest.mark.parametrize("a, b", INNER_CASES, ids=range(len(INNER_CASES)))
def test_inner_traced_values_and_gradients(backend, a, b):
    a, b = np.asarray(a), np.asarray(b)
    f = symgrad.compile(lambda a, b: snp.inner(a, b), argnums=(), backend=backend)
    actual, expected = f(a, b), np.inner(a, b)
    assert np.shape(actual) == np.shape(expected)
    np.testing.assert_allclose(actual, expected, rtol=1e-15)
    w = np.linspace(0.5, 1.5, np.size(expected)).reshape(np.shape(expected))
    loss = symgrad.compile(lambda a, b: snp.sum(snp.inner(a, b) * w), argnums=(0, 1),
                           backend=backend)
    assert symgrad.check_grad(loss, a, b, argnums=(0, 1)).ok


def test_inner_of_a_matrix_with_itself_is_a_times_a_transposed(backend):
    f = symgrad.compile(lambda a: snp.inner(a, a), argnums=(), backend=backend)
    np.testing.assert_allclose(f(A), A @ A.T, rtol=1e-15)


def test_grad_of_a_closure_over_a_traced_value_inside_a_trace(backend):
    def f(x):
        return x * symgrad.grad(lambda y: x * y)(2.0)            # = x**2
    cf = symgrad.compile(f, backend=backend)
    assert cf.value_and_grad(1.0) == (1.0, 2.0)
    assert cf.value_and_grad(3.0) == (9.0, 6.0)


def test_nested_derivatives_of_closures(backend):
    def f(x):
        inner = symgrad.grad(lambda y: x * y ** 3)                # 3 x y**2
        second = symgrad.grad(lambda y: inner(y) * x)             # 6 x**2 y
        return second(2.0) + symgrad.value_and_grad(lambda y: snp.sin(x * y))(0.5)[1]
    cf = symgrad.compile(f, backend=backend)
    x = 0.7
    value, grad = cf.value_and_grad(x)
    assert value == pytest.approx(12 * x ** 2 + x * np.cos(0.5 * x), rel=1e-14)
    assert grad == pytest.approx(24 * x + np.cos(0.5 * x) - 0.5 * x * np.sin(0.5 * x), rel=1e-14)
    # a closure's jvp and hvp inside a trace
    def g(x):
        cf_inner = symgrad.compile(lambda y: snp.sum(x * y ** 2), backend="interp")
        _, t = cf_inner.jvp((np.array([1.0, 2.0]),), (np.array([1.0, 0.0]),))   # 2 x
        hv = cf_inner.hvp((np.array([1.0, 2.0]),), (np.array([1.0, 1.0]),))     # 2 x [1, 1]
        return t * snp.sum(hv)                                                   # 8 x**2
    cg = symgrad.compile(g, backend=backend)
    assert cg.value_and_grad(1.5) == (pytest.approx(18.0), pytest.approx(24.0))


# --- trace-time decisions on run-time sizes: made by equality of expressions, never by luck ---

def test_whole_axis_spellings_and_sizes_spelled_differently(backend):
    def loss(x):
        y = snp.concatenate([x[0:], snp.ones(1)])                       # N + 1
        u = snp.reshape(snp.outer(y, x), (-1, 1))                       # N*(N + 1) rows
        w = snp.reshape(snp.concatenate([snp.ravel(snp.outer(x, x)), x[0::1]]), (-1, 1))
        both = snp.concatenate([u, w], axis=1)                          # N**2 + N rows
        return snp.sum(snp.sin(both) * both[:, ::-1])
    f = symgrad.compile(loss, signature={"x": "f64[N]"}, backend=backend)
    for n in (2, 4):
        x = np.linspace(-1.0, 1.5, n)
        value, _ = f.value_and_grad(x)
        assert value == pytest.approx(loss(x), rel=1e-13)
        assert symgrad.check_grad(f, x).ok


def test_len_of_a_runtime_axis_is_a_clear_error():
    def loss(x):
        return snp.sum(x) * len(x)
    with pytest.raises(symgrad.TracingError, match="run-time size N"):
        symgrad.compile(loss, signature={"x": "f64[N]"}, backend="interp")(np.ones(3))


def test_a_slice_with_bounds_on_a_runtime_axis_is_a_clear_error():
    with pytest.raises(IndexError, match="run-time size N"):
        symgrad.compile(lambda x: snp.sum(x[1:]), signature={"x": "f64[N]"},
                        backend="interp")(np.ones(3))


def _sequential_recurrence(a, b, axis, reverse):
    a, b = (np.moveaxis(np.asarray(v), axis, -1) for v in (a, b))
    a, b = (v[..., ::-1] if reverse else v for v in (a, b))
    y = np.array(b, dtype=np.result_type(a, b))
    for i in range(1, y.shape[-1]):
        y[..., i] = a[..., i] * y[..., i - 1] + b[..., i]
    return np.moveaxis(y[..., ::-1] if reverse else y, -1, axis)


@pytest.mark.parametrize("axis", [2, 1])
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 16, 33])
def test_recurrence_primitive_matches_its_definition(backend, n, reverse, axis):
    from symgrad.core.primitives import REGISTRY
    from symgrad.core.primitives.cumulative import recurrence
    rng = np.random.default_rng(n)
    shape = (2, 3, n) if axis == 2 else (2, n, 3)
    a, b = rng.uniform(-1.5, 1.5, shape), rng.uniform(-1, 1, shape)
    a[rng.random(a.shape) < 0.3] = 0.0
    first = [slice(None)] * 3
    first[axis] = slice(n - 1, n) if reverse else slice(0, 1)
    a[tuple(first)] = np.inf                            # never read
    expected = _sequential_recurrence(a, b, axis, reverse)
    impl = REGISTRY["recurrence"].impl
    np.testing.assert_allclose(impl(a, b, axis=axis, reverse=reverse), expected, rtol=1e-13,
                               atol=1e-13)
    finite = np.where(np.isinf(a), 0.0, a)
    complex_b = b + 1e-20j * finite                     # the complex step rides along
    np.testing.assert_allclose(impl(a, complex_b, axis=axis, reverse=reverse),
                               _sequential_recurrence(a, complex_b, axis, reverse), rtol=1e-13)
    weights = np.linspace(0.5, 1.5, a.size).reshape(shape)
    f = symgrad.compile(lambda a, b: snp.sum(symgrad.frontend.tracer.Tracer(recurrence(
        snp.asarray(a).irvar, snp.asarray(b).irvar, axis, reverse)) * weights),
        argnums=(0, 1), backend=backend)
    value, (ga, gb) = f.value_and_grad(a, b)
    assert value == pytest.approx(float(np.sum(expected * weights)), rel=1e-13)
    assert symgrad.check_grad(f, finite, b, argnums=(0, 1)).ok


@pytest.mark.parametrize("axis", [0, 1])
@pytest.mark.parametrize("reverse", [False, True])
def test_shift_primitive_moves_one_place_with_a_zero_entering(backend, axis, reverse):
    from symgrad.core.primitives.cumulative import shift
    x = np.arange(1.0, 13.0).reshape(3, 4)
    moved = np.zeros_like(x)
    src = [slice(None)] * 2
    dst = [slice(None)] * 2
    src[axis], dst[axis] = (slice(1, None), slice(None, -1)) if reverse else \
        (slice(None, -1), slice(1, None))
    moved[tuple(dst)] = x[tuple(src)]
    f = symgrad.compile(lambda x: symgrad.frontend.tracer.Tracer(
        shift(snp.asarray(x).irvar, axis, reverse)), backend=backend)
    np.testing.assert_array_equal(f(x), moved)
    g = symgrad.compile(lambda x: snp.sum(symgrad.frontend.tracer.Tracer(
        shift(snp.asarray(x).irvar, axis, reverse)) * np.arange(12.0).reshape(3, 4)),
        backend=backend)
    assert symgrad.check_grad(g, x).ok


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_scipy_xlogy_keeps_its_x_derivative_at_x_zero(backend):
    # JAX: grad(xlogy)(0, 3) = (log 3, 0), hessian off-diagonal 1/3; a where over x == 0 gave
    # d/dx = 0 there
    from symgrad.scipy import special
    f = symgrad.compile(lambda x, y: snp.sum(special.xlogy(x, y)), argnums=(0, 1),
                        backend=backend)
    x, y = np.array([0.0, 2.0, 0.0]), np.array([3.0, 4.0, 0.0])
    gx, gy = f.grad(x, y)
    np.testing.assert_allclose(gx, [np.log(3.0), np.log(4.0), -np.inf], rtol=1e-15)
    np.testing.assert_allclose(gy, [0.0, 0.5, 0.0], rtol=1e-15)
    hx, hy = f.hvp((x[:2], y[:2]), (np.array([1.0, 0.0]), np.array([0.0, 0.0])))
    np.testing.assert_allclose(hy, [1 / 3, 0.0], rtol=1e-15)
    values = symgrad.compile(lambda x, y: special.xlogy(x, y), argnums=(), backend=backend)
    a, b = np.array([0.0, 0.0, 0.0, np.inf, 2.0]), np.array([0.0, np.nan, -1.0, 1.0, 4.0])
    np.testing.assert_array_equal(values(a, b), [0.0, np.nan, 0.0, np.nan, 2 * np.log(4.0)])
    g = symgrad.compile(lambda x, y: snp.sum(special.xlog1py(x, y)), argnums=(0, 1),
                        backend=backend)
    np.testing.assert_allclose(g.grad(np.array([0.0]), np.array([2.0]))[0], [np.log1p(2.0)])
