"""Choosing, binning and ordering (select, piecewise, isclose, digitize, bincount, lexsort),
NumPy 2's cumulative_sum/cumulative_prod, and the reductions' dtype=, initial= and where=:
values against NumPy (each case is plain NumPy code, the oracle), gradients against central
differences and the complex step, C against the interpreter (tests/breadth.py)."""
import numpy as np
import pytest

import symgrad
from breadth import Case, standard_tests

# A traced condition in piecewise applies each function to the whole array (sqrt of the negative
# elements too, then not selected), and isclose computes inf - inf before choosing equality: the
# interpreter's NumPy warns where the values are not used.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


def U(*shape, lo=-2.0, hi=2.0):
    return lambda rng: rng.uniform(lo, hi, shape)


def args(*gens):
    return lambda rng: [g(rng) for g in gens]


def _selects(v, w):
    return (np.select([v < -0.5, v < 1.0], [v, w ** 2], 0.5),
            np.select([v > 0.0], [v * 3.0], w),
            np.select([v > 0.0, w > 0.0], [w, v]))


def _piecewise(v, x):
    return (np.piecewise(v, [v < 0.0, v >= 0.0], [lambda t: -t, lambda t: t ** 2]),
            np.piecewise(v, [v < -1.0, v > 1.0], [lambda t: t * 3.0, 7.0, lambda t: t / 2.0]),
            np.piecewise(v, [np.arange(8) < 3], [lambda t: t - t.mean(), np.sin]),
            np.piecewise(v, v > 0.5, [np.sqrt]),
            np.piecewise(x, [x > 0.0], [lambda t: t * t, lambda t: -t]))


def _closeness(v):
    edges = np.array([np.inf, -np.inf, np.nan, 1.0, 1.0 + 1e-9, 2.0])
    return (np.isclose(v, np.round(v, 1), atol=0.02).astype(float) * v,
            np.isclose(edges * (v[0] ** 0), np.array([np.inf, np.inf, np.nan, 1.0, 1.0, 2.1]),
                       equal_nan=True),
            np.isclose(edges * (v[0] ** 0), 1.0, rtol=0.0, atol=1e-8))


def _bins(v):
    edges = np.array([-1.0, 0.0, 0.5, 1.5])
    on_edges = np.concatenate([v, edges])                 # values on the bin edges too
    return (np.digitize(on_edges, edges), np.digitize(on_edges, edges, right=True),
            np.digitize(on_edges, edges[::-1]), np.digitize(on_edges, edges[::-1], right=True),
            np.digitize(edges, np.sort(v)), np.digitize(edges, np.sort(v)[::-1], right=True))


def _bincount(v):
    labels = np.array([0, 2, 2, 5, 0, 2, 1, 0])
    return (np.bincount(labels, weights=v), np.bincount(labels, weights=v * v, minlength=9),
            np.bincount(labels[:3], weights=np.exp(v[:3])))


def _lexsort(v, x, keys, rows):
    by_column = np.lexsort((x, -rows), axis=0)
    return (np.lexsort((v, keys)), np.lexsort(np.stack([x[0], rows[1], rows[2]])), by_column,
            v[np.lexsort((-v, keys))], np.take_along_axis(x, by_column, 0))


def _cumulative(v, x):
    return (np.cumulative_sum(v), np.cumulative_sum(v, include_initial=True),
            np.cumulative_prod(x, axis=1, include_initial=True), np.cumulative_sum(x, axis=0),
            np.cumulative_prod(v[:4], dtype=np.float64))


def _reduction_keywords(x, v):
    return (np.max(x, axis=1, where=x < 0.3, initial=-1.5), x.min(0, where=x > 0.0, initial=9.0,
                                                                keepdims=True),
            np.max(v, initial=1.0), np.sum(v, where=v > 0.0), np.sum(x, axis=0, where=x > -0.2),
            x.sum(1, initial=2.0), np.prod(x + 1.0, axis=1, where=x > 0.0),
            np.mean(x, axis=1, where=x > -0.5), x.mean(where=x > 0.0),
            np.sum(x > 0.0, where=x < 0.5) * np.sum(x), np.sum(x, 0, np.float64),
            np.mean(v, dtype=np.float64))


CASES = [
    Case("selects", _selects, args(U(8), U(8))),
    Case("piecewise", _piecewise, args(U(8), U(3, 4))),
    Case("closeness", _closeness, args(U(8)), grad=False),
    Case("bins", _bins, args(U(8)), grad=False),
    Case("bincount", _bincount, args(U(8))),
    Case("lexsort", _lexsort, args(U(8), U(3, 4), lambda rng: rng.integers(0, 3, 8),
                                   lambda rng: rng.integers(0, 2, (3, 4)))),
    Case("cumulative", _cumulative, args(U(8), U(3, 4))),
    Case("reduction_keywords", _reduction_keywords, args(U(3, 4), U(8))),
]


(test_values_match_numpy, test_gradient_against_differences,
 test_c_gradients_equal_interpreter) = standard_tests(CASES)


@pytest.mark.parametrize("fn, error, match", [
    (lambda v: np.select([v > 0], [v, v]), ValueError, "same length as list of conditions"),
    (lambda v: np.select([v], [v]), TypeError, "invalid entry 0 in condlist"),
    (lambda v: np.piecewise(v, [v > 0], [np.sin, np.cos, np.tan]), ValueError,
     r"1 or 2 functions are expected, got 3"),
    (lambda v: np.bincount(np.argsort(v), weights=v), TypeError,
     r"bincount of traced values.*np\.add\.at"),
    (lambda v: np.bincount(np.array([0, -1, 2, 0, 0, 0]), weights=v), ValueError,
     "non-negative integers"),
    (lambda v: np.digitize(v, [0.0, 1.0, 0.5]), ValueError, "monotonically"),
    (lambda v: np.cumulative_sum(np.outer(v, v)), ValueError, "axis must be specified"),
    (lambda v: np.max(v, where=v > 0), ValueError, "specify 'initial'"),
    (lambda v: np.sum(v, out=v), TypeError, r"out=\.\.\.\) is not supported"),
])
def test_errors_name_the_problem_and_the_line(fn, error, match):
    with pytest.raises(error, match=match) as info:
        symgrad.compile(fn, backend="interp", argnums=())(np.linspace(-1.0, 1.0, 6))
    assert "test_selection.py:" in str(info.value)
