"""NumPy 2's names (acos, pow, concat, permute_dims, vecdot, matvec, vecmat, matrix_transpose,
unstack), the remaining elementwise functions (fix, ldexp, frexp, modf, iscomplex, isreal),
removing, inserting and choosing elements (delete, insert, resize, choose, compress, extract,
diagflat, put_along_axis, isin) and the NaN-ignoring reductions (nanargmax, nanargmin, nanprod,
nancumsum, nancumprod, nanvar, nanstd): values against NumPy (each case is plain NumPy code, the
oracle), gradients against central differences and the complex step, C against the interpreter
(tests/breadth.py), and the errors, with the user's line."""
import numpy as np
import pytest

import symgrad
from breadth import Case, standard_tests

# The interpreter evaluates where's branch not taken (inf - inf in modf; 0/0 in nanvar's
# all-NaN column).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")


def U(*shape, lo=-2.0, hi=2.0):
    return lambda rng: rng.uniform(lo, hi, shape)


def args(*gens):
    return lambda rng: [g(rng) for g in gens]


# NaN at fixed places (known while tracing), so the differentiated input stays finite.
HOLES = np.zeros((3, 4), dtype=bool)
HOLES[0, 1] = HOLES[2, 0] = HOLES[2, 1] = True


def _aliases(v, m):
    return (np.acos(v / 3.0), np.acosh(v * v + 1.0), np.asin(v / 3.0), np.asinh(v), np.atan(v),
            np.atan2(v, 0.5), np.atanh(v / 3.0), np.pow(v, 2), np.concat([m, m], axis=1),
            np.permute_dims(m, (1, 0)), np.matrix_transpose(m), *np.unstack(m, axis=1))


def _products(m, w):
    return (np.vecdot(m, w[0]), np.vecdot(m, m, axis=0), np.matvec(m, w[1]),
            np.vecmat(m[:, 0], w[:3]), np.matvec(w.reshape(2, 3, 4)[:, None], w[0]))


def _elementwise(v):
    return (np.fix(v * 2.0), np.ldexp(v, np.array([1, -2, 3, 0, 5, -1])), *np.frexp(v),
            *np.modf(v * 3.0), np.iscomplex(v), np.isreal(v), np.iscomplexobj(v) + v)


def _elementwise_edges(v):
    edges = np.array([0.0, 8.0, 0.5, -1.0, 7.999999999999999, 1e-300, 3e300, np.inf, -np.inf,
                      -0.0, np.nan])
    return (*np.frexp(np.concatenate([v, edges])), *np.modf(np.concatenate([v * 3.0, edges])),
            np.fix(edges))


def _edits(m, v):
    return (np.delete(m, 1, axis=1), np.delete(m, [0, -1]), np.delete(m, slice(0, 2), 0),
            np.delete(m, np.array([True, False, True, False]), axis=1),
            np.insert(m, 1, 5.0, axis=1), np.insert(m, [1, 3, 1], v[:3]),
            np.insert(m, 2, m[:, 0], axis=1), np.insert(m, [0, 2], v[:3, None], axis=1),
            np.insert(m, 3, v[:4], axis=0), np.insert(m, -1, 2.5),
            np.insert(m, 1, v[:3, None], axis=1), np.diagflat(m[:2, :2], 1),
            np.resize(v, (4, 4)), np.resize(v, 3))


def _choices(m, labels):
    return (np.choose(labels[:4].reshape(1, 4) % 3, [m, -m, m * 2.0]),
            np.choose(labels[:4] - 1, [m[0], m[1]], mode="wrap"),
            np.choose(labels[:4] * 2 - 2, [m[0], m[1]], mode="clip"),
            np.compress([True, False, True], m, axis=0), np.compress([1, 0, 1], m),
            m.compress([0, 1], axis=1), np.extract(np.arange(12).reshape(3, 4) % 3 == 0, m),
            np.isin(labels, [0, 2]), np.isin(labels[:3], labels[3:], invert=True),
            _put_along(m))


def _put_along(m):
    a = m * 1.0
    np.put_along_axis(a, np.argmax(a, axis=1, keepdims=True), m[:, :1] * 3.0, axis=1)
    return a


def _nan_reductions(m):
    x = np.where(HOLES, np.nan, m)
    return (np.nanargmax(x, axis=1), np.nanargmin(x), np.nanargmin(x, 0, keepdims=True),
            np.nanprod(x, axis=1), np.nancumsum(x, axis=1), np.nancumprod(x), np.nanvar(x, axis=1),
            np.nanstd(x), np.nanvar(x[:, 2:], 0, ddof=1, keepdims=True),
            np.nanstd(x, axis=1, ddof=1))


def _nan_degenerate(m):
    x = np.where(HOLES, np.nan, m)
    return (np.nanvar(x, 0, ddof=1), np.nanvar(x, 0, ddof=2), np.nanstd(x[:, :2], axis=0),
            np.nanprod(np.where(HOLES, np.nan, x)[2:, :2], axis=1))


CASES = [
    Case("aliases", _aliases, args(U(6), U(3, 4))),
    Case("products", _products, args(U(3, 4), U(6, 4))),
    Case("elementwise", _elementwise, args(U(6))),
    Case("elementwise_edges", _elementwise_edges, args(U(6)), grad=False),
    Case("edits", _edits, args(U(3, 4), U(6))),
    Case("choices", _choices, args(U(3, 4), lambda rng: rng.integers(0, 3, 6))),
    Case("nan_reductions", _nan_reductions, args(U(3, 4))),
    Case("nan_degenerate", _nan_degenerate, args(U(3, 4)), grad=False),
]


(test_values_match_numpy, test_gradient_against_differences,
 test_c_gradients_equal_interpreter) = standard_tests(CASES)


def test_nanargmax_of_an_all_nan_slice_fails_when_it_runs(backend):
    f = symgrad.compile(lambda x: np.nanargmax(x, axis=1), backend=backend)
    np.testing.assert_array_equal(f(np.array([[1.0, np.nan], [np.nan, 2.0]])), [0, 1])
    with pytest.raises(RuntimeError, match="nanargmax: All-NaN slice encountered"):
        f(np.array([[1.0, np.nan], [np.nan, np.nan]]))


@pytest.mark.parametrize("fn, error, match", [
    (lambda v: np.delete(v, np.argmax(v)), TypeError, "positions must be known while tracing"),
    (lambda v: np.delete(v, 9), IndexError, "index 9 is out of bounds for axis with size 6"),
    (lambda v: np.insert(v, 7, 1.0), IndexError, "index 7 is out of bounds for axis 0"),
    (lambda v: np.compress(v > 0, v), TypeError, "data-dependent size"),
    (lambda v: np.compress([0, 0, 0, 0, 0, 0, 1], v), IndexError, "out of bounds"),
    (lambda v: np.ldexp(v, 2.0), TypeError, "the exponent must be integers"),
    (lambda v: np.vecdot(v, v[:3]), ValueError, "lengths 6 and 3"),
    (lambda v: np.matrix_transpose(v), ValueError, "at least 2-d"),
    (lambda v: np.choose(np.zeros(6, int), [v, v], mode="bad"), ValueError, "clipmode"),
    (lambda v: np.broadcast_arrays(v, v[:4]), ValueError, "do not broadcast together"),
])
def test_errors_name_the_problem_and_the_line(fn, error, match):
    with pytest.raises(error, match=match) as info:
        symgrad.compile(fn, backend="interp", argnums=())(np.linspace(-1.0, 1.0, 6))
    assert "test_numpy2_names.py:" in str(info.value)


def test_unstack_of_a_run_time_size_says_why():
    f = symgrad.compile(lambda x: np.unstack(x)[0], signature={"x": "f64[N]"})
    with pytest.raises(symgrad.TracingError, match="run-time size N"):
        f(np.ones(3))
