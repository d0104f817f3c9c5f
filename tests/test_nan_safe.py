"""NaN-safe adjoints: the branch a where/maximum/clip/abs did not take contributes exactly 0,
never 0 * inf = NaN (JAX and autograd return NaN for these)."""
import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad import nn


def where_sqrt(x):
    return snp.sum(snp.where(x > 0, snp.sqrt(x), 0.0))


def where_log(x):
    return snp.sum(snp.where(x > 0, snp.log(x), 0.0))


def where_reciprocal(x):
    return snp.sum(snp.where(x != 0, 1.0 / x, 1.0))


CASES = [
    (where_sqrt, [0.0, 4.0, -1.0], [0.0, 0.25, 0.0]),
    (where_log, [0.0, 2.0, -3.0], [0.0, 0.5, 0.0]),
    (where_reciprocal, [0.0, 2.0], [0.0, -0.25]),
]


@pytest.mark.parametrize("fn,x,expected", CASES, ids=[c[0].__name__ for c in CASES])
def test_untaken_branch_gives_an_exact_zero(backend, fn, x, expected):
    x = np.array(x)
    with np.errstate(all="ignore"):
        g = symgrad.compile(fn, backend=backend).grad(x)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g, expected)


def test_forward_mode_and_second_order_stay_finite(backend):
    x = np.array([0.0, 4.0, -1.0])
    f = symgrad.compile(where_sqrt, backend=backend)
    with np.errstate(all="ignore"):
        _, tangent = f.jvp((x,), np.ones(3))
        hv = f.hvp((x,), np.ones(3))
    assert tangent == pytest.approx(0.25)
    np.testing.assert_allclose(hv, [0.0, -1 / 32, 0.0])


def test_a_genuine_infinite_derivative_is_kept(backend):
    # where the branch *is* taken, an infinite slope stays infinite: only a zero adjoint masks
    f = symgrad.compile(lambda x: snp.sum(snp.sqrt(x)), backend=backend)
    with np.errstate(all="ignore"):
        g = f.grad(np.array([0.0, 1.0]))
    assert g[0] == np.inf and g[1] == 0.5


def test_softplus_and_sigmoid_at_the_extremes_have_finite_gradients(backend):
    f = symgrad.compile(lambda x: snp.sum(nn.softplus(x) + nn.sigmoid(x)), backend=backend)
    with np.errstate(all="ignore"):
        g = f.grad(np.array([-1000.0, 0.0, 1000.0]))
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [0.0, 0.75, 1.0])
