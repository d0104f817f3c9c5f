"""Forward mode and second order (API.md §4): tangent rules, jvp, hvp, jacobian, hessian.

Every primitive's tangent rule is checked twice, on rows of the primitive table of
``test_primitives.py``:

- against the complex step: ``f.jvp(x, v)`` equals ``Im f(x + i h v) / h`` (the forward graph in
  the interpreter, complex128), and for second order ``f.hvp(x, v)`` equals the complex step of
  the *gradient* graph, which exercises the tangent rules of the primitives reverse mode emits
  (``scatter_add``, ``pad_slice``, ``prod_others``, ...);
- against its adjoint: ``<J v, u> == <v, Jᵀ u>``, with ``Jᵀ u`` from reverse mode.

The rows are a subset chosen so that together they reach every registered primitive
(``test_rows_reach_every_primitive``); all rows run once more on the interpreter alone.
"""
from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize

import symgrad
import symgrad.numpy as snp
from symgrad import nn
from symgrad.core.autodiff import jvp_graph
from symgrad.backends.interp import evaluate
from symgrad.core.primitives import REGISTRY
from test_complex import primitives_used as complex_primitives_used
from test_elementwise_more import primitives_used as more_primitives_used
import test_contractions
import test_linalg
import test_shapes
import test_statistics
from breadth import primitives_used as breadth_primitives_used
from test_primitives import TABLE, _seed, float_argnums, make_args, signature, weighted_loss

ROWS = {row.name: row for row in TABLE}
SUBSET = ["softmax_loss", "where_ge_lt_le", "min_axes", "max_axis", "maximum_scalar",
          "power_scalar", "sinh", "prod", "prod_axis", "stack", "softplus", "runtime_size",
          "expm1", "tan", "arcsin", "arccos", "arctan", "tanh", "sign", "where_gt", "where_eq_ne",
          "max", "slice", "sigmoid", "matmul", "take_repeated", "mixed_dtype", "log", "abs",
          "scan", "loop_int_carry", "prod_grad", "guard", "while_count"]
STEP = 1e-20                       # the complex step: no cancellation, so h can be tiny
RTOL, ATOL = 1e-9, 1e-11


def _directions(row, args, argnums, salt):
    rng = np.random.default_rng(_seed(row.name, salt))
    # In the argument's dtype: a float32 argument has a float32 tangent (as in JAX).
    return tuple(rng.standard_normal(np.shape(args[i])).astype(np.result_type(args[i]))
                 for i in argnums)


def _complex_step(graph, arrays, positions, directions):
    """Im graph(x + i h v) / h for every output: the directional derivative, to rounding."""
    shifted = [a.astype(complex) if a.dtype.kind == "f" else a for a in arrays]
    for p, v in zip(positions, directions):
        shifted[p] = shifted[p] + 1j * STEP * np.asarray(v, dtype=np.float64)
    return [np.imag(out) / STEP for out in evaluate(graph, shifted)]


def _tol(*arrays, rtol=RTOL, atol=ATOL):
    """The tolerances for results computed from these arrays: float32 rounding if any is."""
    if any(np.asarray(a).dtype == np.float32 for a in arrays):   # the mixed_dtype row
        return 2e-6, 1e-6
    return rtol, atol


def _setup(row, backend, loss=False):
    args = make_args(row, 0, "float64")
    argnums = float_argnums(row, args)
    fn = weighted_loss(row, args) if loss else row.fn
    f = symgrad.compile(fn, argnums=argnums, backend=backend, signature=signature(row, "float64"))
    spec, arrays = f.specialize(*args)
    return f, args, argnums, spec, arrays, [spec.traced.index(i) for i in argnums]


def _check_jvp(row, backend):
    f, args, argnums, spec, arrays, positions = _setup(row, backend)
    v = _directions(row, args, argnums, "v")
    value, tangent = f.jvp(args, v)
    np.testing.assert_allclose(value, row.fn(*args), rtol=1e-12, atol=1e-12)
    (expected,) = _complex_step(spec.graph, arrays, positions, v)
    rtol, atol = _tol(*args)
    np.testing.assert_allclose(tangent, expected, rtol=rtol, atol=atol)
    # <J v, u> == <v, J^T u>: u is weighted_loss's fixed weight, J^T u its gradient.
    u = np.asarray(row.fn(*args))
    u = np.random.default_rng(_seed(row.name, "weights")).uniform(0.5, 1.5, u.shape)
    loss = symgrad.compile(weighted_loss(row, args), argnums=argnums, backend=backend,
                           signature=signature(row, "float64"))
    adjoint = loss.grad(*args)
    lhs = float(np.sum(np.asarray(tangent) * u))
    rhs = sum(float(np.sum(vi * gi)) for vi, gi in zip(v, adjoint))
    assert lhs == pytest.approx(rhs, rel=rtol, abs=atol)


@pytest.mark.parametrize("name", SUBSET)
def test_tangent_rules(name, backend):
    _check_jvp(ROWS[name], backend)


@pytest.mark.parametrize("row", [pytest.param(row, id=row.name) for row in TABLE])
def test_tangent_rules_every_row_interp(row):
    _check_jvp(row, "interp")


@pytest.mark.parametrize("name", SUBSET)
def test_second_order_tangent_rules(name, backend):
    """hvp (forward over reverse) against the complex step of the gradient, and symmetric."""
    f, args, argnums, spec, arrays, positions = _setup(ROWS[name], backend, loss=True)
    v = _directions(ROWS[name], args, argnums, "v")
    w = _directions(ROWS[name], args, argnums, "w")
    hv = f.hvp(args, v)
    expected = _complex_step(spec.value_and_grad_graph(), arrays, positions, v)[1:]
    rtol, atol = _tol(*args, rtol=1e-8, atol=1e-10)
    for got, want in zip(hv, expected):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=atol)
    hw = f.hvp(args, w)
    lhs = sum(float(np.sum(a * b)) for a, b in zip(hv, w))
    rhs = sum(float(np.sum(a * b)) for a, b in zip(v, hw))
    assert lhs == pytest.approx(rhs, rel=max(rtol, 1e-9), abs=atol)


def test_rows_reach_every_primitive():
    used = set()
    for name in SUBSET:
        _, _, _, spec, _, _ = _setup(ROWS[name], "interp", loss=True)
        for graph in (spec.graph, spec.value_and_grad_graph()):
            used.update(n.prim for n in graph.nodes)
    # Issue 16's elementwise and special functions: their table checks jvp against the gradient
    # (tests/test_elementwise_more.py::test_jvp_equals_gradient_dot_tangent).
    used |= more_primitives_used()
    # Issue 16's statistics, shapes, contractions and linear algebra: their test files check
    # jvp against central differences for every case (tests/breadth.py::check_jvp).
    used |= breadth_primitives_used(test_statistics.CASES + test_shapes.CASES
                                    + test_contractions.CASES + test_linalg.CASES)
    # Complex numbers: tests/test_complex.py checks jvp and hvp of its closed-form table.
    used |= complex_primitives_used()
    assert used == set(REGISTRY), f"no tangent check reaches {sorted(set(REGISTRY) - used)}"


# --- the forward-mode graph ---------------------------------------------------------------

def test_jvp_graph_listing():
    def f(x, y):
        return snp.sin(x) * y
    graph = symgrad.trace(f, np.ones(3), 2.0)
    # Each statement is followed by its tangent; y is not perturbed, so it has none. Tangents
    # are scaled with chain_mul (exactly 0 where the tangent is 0, see tests/test_nan_safe.py).
    assert str(jvp_graph(graph, (0,))) == """\
{ lambda x:f64[3], y:f64[], t_x:f64[3] .
  a:f64[3] = sin x
  b:f64[3] = cos x
  c:f64[3] = chain_mul t_x b
  d:f64[3] = mul a y
  e:f64[3] = chain_mul c y
  in (d, e) }"""


def test_jvp_structure_and_tuple_outputs(backend):
    f = symgrad.compile(lambda x, y: (snp.sum(x * y), x * 2.0), argnums=(0, 1), backend=backend)
    x, y = np.array([1.0, 2.0]), np.array([3.0, 4.0])
    (s, d), (ts, td) = f.jvp((x, y), (np.array([1.0, 0.0]), np.array([0.0, 1.0])))
    assert isinstance(s, float) and isinstance(ts, float)
    assert s == 11.0 and ts == 3.0 + 2.0
    np.testing.assert_array_equal(td, [2.0, 0.0])
    g = symgrad.compile(lambda x: snp.sum(x ** 3), backend=backend)
    value, tangent = g.jvp((x,), np.ones(2))        # int argnums: the tangent itself
    assert (value, tangent) == (9.0, 3.0 + 12.0)
    with pytest.raises(TypeError, match="one entry per argnums"):
        f.jvp((x, y), np.ones(2))


def test_jvp_float32_keeps_dtype(backend):
    f = symgrad.compile(lambda x: snp.exp(x), backend=backend)
    x = np.array([0.5, 1.0], dtype=np.float32)
    value, tangent = f.jvp((x,), np.ones(2))
    assert value.dtype == tangent.dtype == np.float32
    np.testing.assert_allclose(tangent, np.exp(x), rtol=1e-6)


# --- Jacobians ------------------------------------------------------------------------------

def _fd_jacobian(fn, x, h=1e-6):
    out = np.asarray(fn(x))
    jac = np.zeros(out.shape + x.shape)
    for j in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[j] = h
        jac[(...,) + j] = (np.asarray(fn(x + e)) - np.asarray(fn(x - e))) / (2 * h)
    return jac


A = np.random.default_rng(7).standard_normal((5, 3))


def wide(x):          # R^3 -> R^5: more outputs than inputs
    return snp.tanh(A @ x) * snp.sum(x ** 2)


def tall(x):          # R^(2,3) -> R^2: fewer outputs than inputs
    return snp.log(1.0 + snp.sum(x ** 2, axis=1)) + snp.max(x, axis=1)


@pytest.mark.parametrize("fn, x", [(wide, np.array([0.3, -0.5, 0.8])),
                                   (tall, np.array([[0.1, 0.7, -0.4], [1.2, -0.3, 0.5]]))],
                         ids=["wide", "tall"])
def test_jacobian_modes_agree(fn, x, backend):
    jac_f = symgrad.jacobian(fn, mode="forward", backend=backend)(x)
    jac_r = symgrad.jacobian(fn, mode="reverse", backend=backend)(x)
    jac_a = symgrad.jacobian(fn, backend=backend)(x)
    out_shape = np.shape(fn(x))
    assert jac_f.shape == jac_r.shape == out_shape + x.shape
    np.testing.assert_allclose(jac_f, jac_r, rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(jac_a, jac_f if fn is wide else jac_r)
    np.testing.assert_allclose(jac_f, _fd_jacobian(fn, x), rtol=1e-6, atol=1e-8)


def test_jacobian_auto_rule():
    x = np.zeros(3)
    for fn, mode in ((wide, "forward"), (tall, "reverse")):
        arg = x if fn is wide else np.zeros((2, 3))
        graph = symgrad.jacobian(fn, backend="interp").trace(arg)
        forward = symgrad.jacobian(fn, mode="forward", backend="interp").trace(arg)
        reverse = symgrad.jacobian(fn, mode="reverse", backend="interp").trace(arg)
        assert str(graph) == str(forward if mode == "forward" else reverse)
    with pytest.raises(ValueError, match="mode"):
        symgrad.jacobian(wide, mode="sideways")


def test_jacobian_tuple_argnums(backend):
    def f(x, y):
        return snp.sin(x) * y[:3] + snp.sum(y)
    x, y = np.array([0.1, 0.2, 0.3]), np.array([1.0, 2.0, 3.0, 4.0])
    for mode in ("forward", "reverse"):
        jx, jy = symgrad.jacobian(f, argnums=(0, 1), mode=mode, backend=backend)(x, y)
        np.testing.assert_allclose(jx, np.diag(np.cos(x) * y[:3]), atol=1e-15)
        expected = np.ones((3, 4))
        expected[:, :3] += np.diag(np.sin(x))
        np.testing.assert_allclose(jy, expected, atol=1e-15)


# --- Hessians and second order ------------------------------------------------------------

def logistic_loss(w):
    X = np.random.default_rng(3).standard_normal((6, 4))
    y = np.array([1.0, -1.0, 1.0, 1.0, -1.0, -1.0])
    return snp.sum(nn.softplus(-y * (X @ w))) + 0.1 * snp.sum(w ** 4)


def test_hessian_symmetric_and_matches_gradient_differences(backend):
    w = np.array([0.3, -0.2, 0.5, 0.1])
    H = symgrad.hessian(logistic_loss, backend=backend)(w)
    assert H.shape == (4, 4)
    np.testing.assert_allclose(H, H.T, rtol=1e-12, atol=1e-14)
    grad = symgrad.grad(logistic_loss, backend=backend)
    np.testing.assert_allclose(H, _fd_jacobian(grad, w), rtol=1e-6, atol=1e-8)
    assert np.all(np.linalg.eigvalsh(H) > 0)        # convex: positive definite here
    f = symgrad.compile(logistic_loss, backend=backend)
    v = np.array([1.0, -2.0, 0.5, 3.0])
    np.testing.assert_allclose(f.hvp((w,), v), H @ v, rtol=1e-12, atol=1e-12)


def test_hessian_of_matrix_argument(backend):
    def f(W):
        return snp.sum(snp.tanh(W @ np.array([1.0, -1.0, 0.5])) ** 2)
    W = np.array([[0.2, -0.1, 0.4], [0.3, 0.5, -0.6]])
    H = symgrad.hessian(f, backend=backend)(W)
    assert H.shape == (2, 3, 2, 3)
    flat = H.reshape(6, 6)
    np.testing.assert_allclose(flat, flat.T, atol=1e-14)
    fd = _fd_jacobian(symgrad.grad(f, backend=backend), W)
    np.testing.assert_allclose(H, fd, rtol=1e-6, atol=1e-8)


def test_grad_of_grad(backend):
    def f(x):
        return snp.sin(x) * x ** 3
    d2 = symgrad.grad(symgrad.grad(f, backend=backend), backend=backend)
    for x in (0.7, -1.3, 2.0):
        expected = -np.sin(x) * x ** 3 + 6 * np.cos(x) * x ** 2 + 6 * np.sin(x) * x
        assert d2(x) == pytest.approx(expected, rel=1e-13)
    d3 = symgrad.grad(symgrad.grad(symgrad.grad(lambda x: x ** 4)), backend=backend)
    assert d3(1.5) == pytest.approx(24 * 1.5, rel=1e-14)
    value, slope = symgrad.value_and_grad(symgrad.grad(f), backend=backend)(0.7)
    assert value == pytest.approx(np.cos(0.7) * 0.7 ** 3 + 3 * np.sin(0.7) * 0.7 ** 2)


def test_stop_gradient_holds_at_second_order(backend):
    # grad of sum(stop_gradient(x) * x) is stop_gradient(x): its own derivative is 0, as in JAX.
    def f(x):
        return snp.sum(snp.stop_gradient(x) * x ** 2)
    x = np.array([1.0, 2.0])
    np.testing.assert_array_equal(symgrad.grad(f, backend=backend)(x), 2 * x * x)
    np.testing.assert_array_equal(symgrad.hessian(f, backend=backend)(x), np.diag(2 * x))


def test_hvp_tuple_argnums(backend):
    f = symgrad.compile(lambda x, y: snp.sum(x ** 2 * y), argnums=(0, 1), backend=backend)
    x, y = np.array([1.0, 2.0]), np.array([3.0, 5.0])
    hx, hy = f.hvp((x, y), (np.array([1.0, 0.0]), np.array([0.0, 1.0])))
    # H = [[2 diag(y), 2 diag(x)], [2 diag(x), 0]]
    np.testing.assert_allclose(hx, [6.0, 4.0])
    np.testing.assert_allclose(hy, [2.0, 0.0])


def test_derivatives_compose_inside_traced_functions(backend):
    f = symgrad.compile(lambda x: snp.sum(snp.exp(x) * x), backend=backend)

    @symgrad.compile(backend=backend)
    def newton_step(x):
        return x - f.grad(x) / snp.sum(f.hvp((x,), snp.ones_like(x)))
    x = np.array([0.1, 0.2])
    g = np.exp(x) * (x + 1)
    np.testing.assert_allclose(newton_step(x), x - g / np.sum(np.exp(x) * (x + 2)), rtol=1e-13)


# --- Newton-CG ----------------------------------------------------------------------------

def rosenbrock(x):
    return snp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


@pytest.mark.parametrize("method", ["Newton-CG", "trust-ncg"])
def test_newton_cg_on_rosenbrock(method, backend):
    # The chained Rosenbrock function in 30 dimensions: BFGS must learn a 30x30 curvature from
    # gradients, the Newton methods get it exactly from hvp. (In 2 to 5 dimensions scipy's
    # Newton-CG takes about as many iterations as BFGS; see docs/forward_mode.md.)
    f = symgrad.compile(rosenbrock, backend=backend)
    x0 = np.full(30, -1.0)
    newton = scipy.optimize.minimize(f.value_and_grad, x0, jac=True, method=method,
                                     hessp=lambda x, p: f.hvp((x,), p),
                                     options={"xtol": 1e-10} if method == "Newton-CG"
                                     else {"gtol": 1e-8})
    bfgs = scipy.optimize.minimize(f.value_and_grad, x0, jac=True, method="BFGS")
    assert newton.success, newton.message
    np.testing.assert_allclose(newton.x, np.ones(30), atol=1e-8)
    if method == "Newton-CG":
        assert 2 * newton.nit < bfgs.nit, (newton.nit, bfgs.nit)     # about 100 against 220
    else:
        assert newton.nit < bfgs.nit, (newton.nit, bfgs.nit)


# --- the crossover benchmark stays runnable ------------------------------------------------

def test_crossover_benchmark_measures():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "jacobian_crossover.py"
    spec = importlib.util.spec_from_file_location("jacobian_crossover", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    row = bench.measure(2, 3, rounds=1, cache_dir=None)     # asserts the two modes agree
    assert row["auto"] == "forward" and row["forward_us"] > 0 and row["reverse_us"] > 0
    assert bench.crossover([{"n": 1, "forward_us": 1, "reverse_us": 2},
                            {"n": 2, "forward_us": 3, "reverse_us": 2}], "n") == 2
