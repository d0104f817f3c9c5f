"""The traced array: operators, ndarray methods and NumPy's own functions resolve to the same
implementations, and a name symgrad lacks fails the same way whichever spelling reached it."""
import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.frontend.tracer import IMPLEMENTATIONS, unsupported


@pytest.fixture(scope="module")
def x():
    return np.array([[0.5, -1.0, 2.0], [1.5, 0.25, -0.75]])


def test_numpy_functions_on_tracers_trace_like_symgrad_numpy(x):
    def plain(a):
        return np.sum(np.exp(a) * np.maximum(a, 0.0), axis=0) @ np.tanh(a).T[:, 0]

    def mirrored(a):
        return snp.sum(snp.exp(a) * snp.maximum(a, 0.0), axis=0) @ snp.tanh(a).T[:, 0]

    f, g = symgrad.compile(plain, backend="interp"), symgrad.compile(mirrored, backend="interp")
    assert str(f.trace(x)).replace("plain", "f") == str(g.trace(x)).replace("mirrored", "f")
    np.testing.assert_allclose(f(x), plain(x), rtol=1e-14)
    np.testing.assert_allclose(f.grad(x), g.grad(x), rtol=0, atol=0)


def test_methods_and_operators(x):
    def fn(a):
        return (a.sum(axis=1) + a.mean() - a.max(axis=0, keepdims=True).ravel()[:2]
                + (2.0 - a)[0, :2] ** 2 / (1.0 + abs(-a[1, 1:])))

    f = symgrad.compile(fn, backend="interp")
    np.testing.assert_allclose(f(x), fn(x), rtol=1e-14)


def test_sort_method_sorts_in_place_and_returns_none():
    def fn(a):
        b = a * 1.0
        result = b.sort()
        assert result is None
        return b

    a = np.array([3.0, -1.0, 2.0])
    try:
        out = symgrad.compile(fn, backend="interp")(a)
    except symgrad.TracingError as e:       # sort is not a primitive yet: named clearly
        assert "numpy.sort" in str(e)
    else:
        np.testing.assert_array_equal(out, np.sort(a))


def test_a_missing_name_names_itself_and_what_is_close(x):
    missing = "definitely_not_numpy"
    assert missing not in IMPLEMENTATIONS

    def fn(a):
        return np.sum(np.lib.stride_tricks.sliding_window_view(a, 2))

    with pytest.raises(symgrad.TracingError, match=r"numpy\.lib\.stride_tricks\."
                                                   r"sliding_window_view is not supported on "
                                                   r"traced values yet at test_tracer\.py"):
        symgrad.compile(fn, backend="interp")(x)

    assert "Closest supported: sum" in str(unsupported("sums"))


def test_ufunc_methods_are_refused_with_the_line(x):
    def fn(a):
        return np.add.reduce(a)

    with pytest.raises(symgrad.TracingError, match=r"numpy\.add\.reduce .*test_tracer\.py"):
        symgrad.compile(fn, backend="interp")(x)
