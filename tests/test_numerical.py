"""Tests for symgrad.numerical: accuracy orders, contracts and errors."""

import math

import numpy as np
import pytest

from symgrad import numerical

EPS = np.finfo(np.float64).eps
FD_METHODS = ["central", "forward", "backward"]
ALL_METHODS = FD_METHODS + ["complex"]


# --------------------------------------------------------------------------
# Test functions with analytic gradients
# --------------------------------------------------------------------------
def sin_sq(v):
    return np.sum(np.sin(v) * v**2)


def sin_sq_grad(v):
    return np.cos(v) * v**2 + 2 * v * np.sin(v)


def rosen(v):
    return np.sum(100 * (v[1:] - v[:-1] ** 2) ** 2 + (1 - v[:-1]) ** 2)


def rosen_grad(v):
    g = np.zeros_like(v)
    g[:-1] = -400 * v[:-1] * (v[1:] - v[:-1] ** 2) - 2 * (1 - v[:-1])
    g[1:] += 200 * (v[1:] - v[:-1] ** 2)
    return g


A = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, -0.2], [0.5, -0.2, 2.0]])
B = np.array([1.0, -2.0, 0.5])


def quad(v):
    return 0.5 * v @ A @ v + B @ v


def quad_grad(v):
    return A @ v + B


X2D = np.random.default_rng(0).uniform(-2, 2, (3, 4))
X_ROSEN = np.array([-1.2, 1.0, 0.5, 2.0, -0.3])
X_QUAD = np.array([0.3, -1.1, 2.0])


def rel_err(g, g_true):
    return np.linalg.norm(g - g_true) / np.linalg.norm(g_true)


# --------------------------------------------------------------------------
# grad: accuracy
# --------------------------------------------------------------------------
@pytest.mark.parametrize(
    "method, tol", [("central", 1e-9), ("forward", 1e-6), ("backward", 1e-6)]
)
@pytest.mark.parametrize(
    "f, df, x", [(sin_sq, sin_sq_grad, X2D), (rosen, rosen_grad, X_ROSEN)]
)
def test_grad_default_steps_accuracy(f, df, x, method, tol):
    g = numerical.grad(f, x, method=method)
    assert g.shape == x.shape and g.dtype == np.float64
    assert rel_err(g, df(x)) < tol


@pytest.mark.parametrize(
    "f, df, x", [(sin_sq, sin_sq_grad, X2D), (rosen, rosen_grad, X_ROSEN)]
)
def test_complex_step_reaches_machine_precision(f, df, x):
    g = numerical.grad(f, x, method="complex")
    assert g.shape == x.shape
    assert rel_err(g, df(x)) < 1e-13


def test_central_beats_forward_and_backward_at_same_step():
    h = 1e-4
    g_true = sin_sq_grad(X2D)
    err = {m: rel_err(numerical.grad(sin_sq, X2D, m, h=h), g_true) for m in FD_METHODS}
    # O(h^2) vs O(h): at h = 1e-4 central should win by several orders.
    assert err["central"] < err["forward"] / 1000
    assert err["central"] < err["backward"] / 1000
    # Backward has the same first-order error size as forward ...
    assert 0.5 < err["backward"] / err["forward"] < 2.0


def test_forward_backward_errors_cancel_to_central():
    # The O(h) terms of forward and backward have opposite signs, so their
    # mean is the central difference.
    h = 1e-3
    fwd = numerical.grad(sin_sq, X2D, "forward", h=h)
    bwd = numerical.grad(sin_sq, X2D, "backward", h=h)
    cen = numerical.grad(sin_sq, X2D, "central", h=h)
    assert np.max(np.abs((fwd + bwd) / 2 - cen)) < 1e-10
    assert np.max(np.abs(fwd - bwd)) > 1e-4  # they really differ


@pytest.mark.parametrize("method, order", [("forward", 1), ("backward", 1), ("central", 2)])
def test_error_order_under_step_halving(method, order):
    g_true = sin_sq_grad(X2D)
    e1 = np.linalg.norm(numerical.grad(sin_sq, X2D, method, h=1e-2) - g_true)
    e2 = np.linalg.norm(numerical.grad(sin_sq, X2D, method, h=5e-3) - g_true)
    assert e1 / e2 == pytest.approx(2.0**order, rel=0.1)


def test_default_step_sizes_and_scaling():
    sq = lambda v: np.sum(v**2)  # forward quotient of x^2 is exactly 2x + h
    assert numerical.grad(sq, [0.0], "forward")[0] == pytest.approx(np.sqrt(EPS), rel=1e-12)
    # |x| = 4 > 1: step scales to 4*sqrt(eps)
    assert numerical.grad(sq, [4.0], "forward")[0] == pytest.approx(
        8 + 4 * np.sqrt(EPS), rel=1e-15
    )
    assert numerical.grad(sq, [4.0], "backward")[0] == pytest.approx(
        8 - 4 * np.sqrt(EPS), rel=1e-15
    )
    # central quotient of x^3 at 0 is exactly h^2, with h = cbrt(eps)
    cube = lambda v: np.sum(v**3)
    assert numerical.grad(cube, [0.0], "central")[0] == pytest.approx(
        np.cbrt(EPS) ** 2, rel=1e-12
    )


def test_user_step_used_as_is():
    sq = lambda v: np.sum(v**2)
    # not scaled by |x|: forward quotient is 2x + h exactly
    assert numerical.grad(sq, [1000.0], "forward", h=0.5)[0] == 2000.5
    assert numerical.grad(sq, [1000.0], "backward", h=0.5)[0] == 1999.5
    cube = lambda v: np.sum(v**3)
    assert numerical.grad(cube, [0.0], "central", h=0.5)[0] == 0.25


# --------------------------------------------------------------------------
# grad: input handling
# --------------------------------------------------------------------------
def test_x_not_mutated_even_if_f_mutates_its_argument():
    def f(v):
        val = quad(v)
        v[...] = 123.0  # a badly behaved f scribbling on its input
        return val

    x = X_QUAD.copy()
    for method in ALL_METHODS:
        g = numerical.grad(f, x, method)
        assert rel_err(g, quad_grad(X_QUAD)) < 1e-6
    numerical.directional(f, x, np.ones(3))
    numerical.spsa(f, x, samples=3, seed=0)
    numerical.regression_grad(f, x, seed=0)
    assert np.array_equal(x, X_QUAD)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_scalar_x(method):
    g = numerical.grad(np.sin, 0.5, method)
    assert isinstance(g, np.ndarray) and g.shape == ()
    assert float(g) == pytest.approx(math.cos(0.5), rel=1e-6)


@pytest.mark.parametrize("method", ALL_METHODS)
def test_list_x(method):
    g = numerical.grad(lambda v: v[0] ** 2 * v[1], [3.0, 2.0], method)
    assert g.shape == (2,)
    np.testing.assert_allclose(g, [12.0, 9.0], rtol=1e-6)


def test_one_element_and_0d_outputs_accepted():
    g1 = numerical.grad(lambda v: np.array([quad(v)]), X_QUAD)
    g2 = numerical.grad(lambda v: np.array([[quad(v)]]), X_QUAD, "complex")
    g3 = numerical.grad(lambda v: np.asarray(quad(v)), X_QUAD, "forward")
    for g, tol in [(g1, 1e-9), (g2, 1e-14), (g3, 1e-6)]:
        assert rel_err(g, quad_grad(X_QUAD)) < tol


# --------------------------------------------------------------------------
# directional
# --------------------------------------------------------------------------
def test_directional_matches_gradient_dot_direction():
    s = np.random.default_rng(1).standard_normal(X2D.shape)
    expected = np.sum(sin_sq_grad(X2D) * s)
    assert abs(numerical.directional(sin_sq, X2D, s) - expected) < 1e-8
    s_r = np.array([0.3, -1.0, 2.0, 0.1, -0.7])
    d = numerical.directional(rosen, X_ROSEN, s_r)
    assert isinstance(d, float)
    assert abs(d - rosen_grad(X_ROSEN) @ s_r) < 1e-8 * abs(rosen_grad(X_ROSEN) @ s_r)
    assert abs(d - numerical.grad(rosen, X_ROSEN) @ s_r) < 1e-7 * abs(d)


def test_directional_explicit_step_and_tiny_direction():
    cube = lambda v: np.sum(v**3)
    # (f(x+h)-f(x-h))/2h = 3x^2 + h^2 for x^3 along s = 1
    assert numerical.directional(cube, [1.0], [1.0], h=0.5) == pytest.approx(3.25)
    # a very small direction is compensated by the default step
    s = np.array([1e-12, -2e-12, 0.5e-12])
    assert numerical.directional(quad, X_QUAD, s) == pytest.approx(
        quad_grad(X_QUAD) @ s, rel=1e-8
    )


# --------------------------------------------------------------------------
# SPSA and regression
# --------------------------------------------------------------------------
def noisy_quad(seed, level):
    noise = np.random.default_rng(seed)
    return lambda v: quad(v) + level * noise.standard_normal()


def test_spsa_converges_with_samples():
    g_true = quad_grad(X_QUAD)
    few = numerical.spsa(quad, X_QUAD, samples=2, seed=3)
    many = numerical.spsa(quad, X_QUAD, samples=4000, seed=3)
    assert few.shape == many.shape == X_QUAD.shape
    e_few, e_many = rel_err(few, g_true), rel_err(many, g_true)
    assert e_many < e_few / 10
    assert e_many < 0.05


def test_spsa_single_coordinate_is_exact_for_quadratic():
    # with n = 1, Δ^2 = 1 so each draw equals the central difference
    g = numerical.spsa(lambda v: 3 * v[0] ** 2 + v[0], [2.0], samples=5, seed=0)
    assert g[0] == pytest.approx(13.0, rel=1e-10)


def test_spsa_seed_reproducible():
    a = numerical.spsa(sin_sq, X2D, samples=5, seed=42)
    b = numerical.spsa(sin_sq, X2D, samples=5, seed=42)
    c = numerical.spsa(sin_sq, X2D, samples=5, seed=43)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_regression_grad_converges_with_samples():
    g_true = quad_grad(X_QUAD)
    # underdetermined (2 < n = 3) vs default 2n+10 on an exact quadratic
    e_under = rel_err(numerical.regression_grad(quad, X_QUAD, samples=2, seed=5), g_true)
    e_default = rel_err(numerical.regression_grad(quad, X_QUAD, seed=5), g_true)
    assert e_default < 1e-6 < e_under
    # with evaluation noise the error shrinks as samples grow
    e_few = rel_err(
        numerical.regression_grad(noisy_quad(0, 1e-5), X_QUAD, samples=5, seed=5), g_true
    )
    e_many = rel_err(
        numerical.regression_grad(noisy_quad(0, 1e-5), X_QUAD, samples=2000, seed=5), g_true
    )
    assert e_many < e_few / 5


def test_regression_grad_accurate_on_small_quadratic():
    g = numerical.regression_grad(quad, X_QUAD, samples=50, seed=1)
    assert g.shape == X_QUAD.shape
    assert np.max(np.abs(g - quad_grad(X_QUAD))) < 1e-6
    x2 = X_QUAD.reshape(3, 1)  # shape is preserved
    g2 = numerical.regression_grad(lambda v: quad(v.ravel()), x2, seed=1)
    assert g2.shape == (3, 1)
    assert np.max(np.abs(g2.ravel() - quad_grad(X_QUAD))) < 1e-6


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------
@pytest.mark.parametrize("method", ALL_METHODS)
def test_non_scalar_output_names_shape(method):
    with pytest.raises(ValueError, match=r"\(3,\)"):
        numerical.grad(lambda v: v * 2, X_QUAD, method)
    with pytest.raises(ValueError, match=r"\(2, 3\)"):
        numerical.grad(lambda v: np.ones((2, 3)) * v[0], X_QUAD, method)


def test_non_scalar_output_other_estimators():
    with pytest.raises(ValueError, match=r"\(3,\)"):
        numerical.directional(lambda v: v, X_QUAD, X_QUAD)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        numerical.spsa(lambda v: v, X_QUAD, seed=0)
    with pytest.raises(ValueError, match=r"\(3,\)"):
        numerical.regression_grad(lambda v: v, X_QUAD, seed=0)


def test_bad_method():
    with pytest.raises(ValueError, match="central.*forward.*backward.*complex"):
        numerical.grad(quad, X_QUAD, method="symmetric")


def test_bad_step_and_samples():
    with pytest.raises(ValueError):
        numerical.grad(quad, X_QUAD, h=0.0)
    with pytest.raises(ValueError):
        numerical.directional(quad, X_QUAD, X_QUAD, h=-1.0)
    with pytest.raises(ValueError):
        numerical.spsa(quad, X_QUAD, samples=0)
    with pytest.raises(ValueError):
        numerical.regression_grad(quad, X_QUAD, delta=0.0)


@pytest.mark.parametrize("method", FD_METHODS)
def test_a_step_below_the_resolution_of_x_is_an_error(method):
    """h=1e-20 at x = 1: x + h == x - h, so the quotient would be 0/0 (it returned NaN)."""
    x = np.array([[1e-30, 0.5], [1.0, 3.0]])
    with pytest.raises(ValueError, match=r"step h=1e-20 is below the resolution of "
                                         r"x\[\(0, 1\)\] = 0\.5"):
        numerical.grad(lambda v: np.sum(v ** 2), x, method=method, h=1e-20)
    # A step that moves x is used as is, however small relative to other coordinates.
    g = numerical.grad(lambda v: np.sum(v ** 2), np.array([1e-30]), method=method, h=1e-40)
    assert np.isfinite(g).all()
    with pytest.raises(ValueError, match=r"x\[1\] = 2\.0"):
        numerical.grad(lambda v: np.sum(v), [1e-30, 2.0], method=method, h=1e-17)


def test_directional_step_below_the_resolution_is_an_error():
    with pytest.raises(ValueError, match=r"step h=1e-20 along s is below the resolution"):
        numerical.directional(quad, np.ones(3), np.ones(3), h=1e-20)


def test_directional_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2, 2\)"):
        numerical.directional(quad, X_QUAD, np.ones((2, 2)))


@pytest.mark.parametrize(
    "f",
    [
        lambda v: np.sum(np.abs(v)),  # real output for complex input
        lambda v: math.sin(v[0]) + v[1],  # math.sin drops the imaginary part
        lambda v: float(np.sum(v)),  # explicit real cast
        lambda v: sum(math.exp(t) for t in v.tolist()),  # TypeError on complex
    ],
)
def test_complex_step_unsafe_function_raises_type_error(f):
    with pytest.raises(TypeError, match="not complex-step safe"):
        numerical.grad(f, [0.5, 1.5], method="complex")
