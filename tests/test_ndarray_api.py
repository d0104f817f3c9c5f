"""ndarray's methods on traced arrays, and NumPy's functions that write their first argument in
place (put, copyto, fill_diagonal, putmask, place), plus copy/empty/full_like and
partition/argpartition: values against NumPy (each case is plain NumPy code, the oracle),
gradients against central differences and the complex step, C against the interpreter, all
cases compiled together (tests/breadth.py). The errors name the user's line and what to use."""
import copy

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.errors import UnsupportedError
from breadth import Case, standard_tests


def U(*shape, lo=-2.0, hi=2.0):
    return lambda rng: rng.uniform(lo, hi, shape)


def B(*shape):
    return lambda rng: rng.uniform(size=shape) < 0.5


def args(*gens):
    return lambda rng: [g(rng) for g in gens]


def _copies(v):
    a, b, c = v.copy(), np.copy(v), snp.copy(v)
    a[0] = 5.0                      # each copy is its own array: no write reaches v or another
    b[1] += 1.0
    c[2] = a[0] * b[1]
    d = copy.deepcopy({"w": v})["w"]
    d[3] = -1.0
    e = copy.copy(v)
    e *= 2.0
    return a, b, c, d, e, v


def _fills(v):
    a = v * 1.0
    a.fill(2.5)
    b = v * 1.0
    b[1:3].fill(7.0)                # through a view: the base sees it
    c = v * 1.0
    d = c.view()
    d[0] = 3.0                      # c sees it
    return a * v, b * v, c * v


def _bit_updates(v, m1, m2):
    m = v > 0.0
    m &= m1
    n = m2.copy()
    n |= m1
    k = m1.copy()
    k ^= m2
    return np.where(m, v, 0.0), np.where(n, v, -v), np.where(k, v * v, v)


def _division_updates(v):
    a = v * 3.0
    a //= 2.0
    b = v * 3.0
    b %= 1.25
    q, r = divmod(v, 0.75)
    return a + v, b, q * v, r


def _partitions(v, x):
    p = np.partition(v, 3)
    y = x.copy()
    y.partition(1, axis=1)
    return (p[3], np.sort(p[:3]), np.sort(p[4:]), v[np.argpartition(v, 2)[2]],
            np.partition(v, (1, 5))[5], y[:, 1], np.take_along_axis(x, np.argpartition(x, 2, 0),
                                                                    0)[2])


def _puts(v, idx):
    a = v * 1.0
    np.put(a, [0, -1], v[:2] * 3.0)
    b = v * 1.0
    np.put(b, [8, 1, -9], [5.0, v[2]], mode="wrap")     # v repeated, positions wrapped
    c = v * 1.0
    np.put(c, [-3, 20], v[3], mode="clip")
    d = v * 1.0
    np.put(d, idx, v[idx] ** 2)                         # traced positions
    return a, b, c, d


def _diagonals(x, s, cube):
    a = x * 1.0
    np.fill_diagonal(a, s[:3])                          # tall: stops at the square part
    b = x * 1.0
    np.fill_diagonal(b, 0.5, wrap=True)                 # tall, wrapped
    c = x.T * 1.0
    np.fill_diagonal(c, s)                              # wide
    d = cube * 1.0
    np.fill_diagonal(d, s[0])
    return a * x, b * x, c * x.T, d * cube


def _copytos(v, x, m):
    a = v * 1.0
    np.copyto(a, v[::-1] ** 2, where=m)
    b = x * 1.0
    np.copyto(b, v[:4])                                 # broadcast along rows
    c = x * 1.0
    np.copyto(c, 2.0, where=x > 0.0)
    return a * v, b * x, c * x


def _masks(v, m):
    a = v * 1.0
    np.putmask(a, m, v[:4] * 10.0)                      # values cycle over positions
    b = v * 1.0
    np.place(b, m, v[:2] * 10.0)                        # values cycle over the True ones
    c = v * 1.0
    np.putmask(c, v > 0.5, v)
    return a * v, b * v, c


def _made(v, x):
    return (snp.full((2, 6), v), snp.full(6, v[0]), np.full_like(v, v[0]) * v,
            snp.full_like(x, 1.5) * x, snp.empty((2, 3)), snp.empty_like(x) + x,
            np.empty_like(v) * 0.0 + v)


CASES = [
    Case("copies", _copies, args(U(6))),
    Case("fills", _fills, args(U(6))),
    Case("bit_updates", _bit_updates, args(U(6), B(6), B(6))),
    Case("division_updates", _division_updates, args(U(6, lo=0.1, hi=0.6))),
    Case("partitions", _partitions, args(U(7), U(4, 5))),
    Case("puts", _puts, args(U(6), lambda rng: rng.permutation(6)[:3])),
    Case("diagonals", _diagonals, args(U(5, 3), U(5), U(3, 3, 3))),
    Case("copytos", _copytos, args(U(6), U(3, 4), B(6))),
    Case("masks", _masks, args(U(6), B(6))),
    Case("made", _made, args(U(6), U(3, 4))),
]


(test_values_match_numpy, test_gradient_against_differences,
 test_c_gradients_equal_interpreter) = standard_tests(CASES)


def _trace_error(fn, *arrays):
    return symgrad.compile(fn, backend="interp", argnums=())(*arrays)


@pytest.mark.parametrize("fn, error, match", [
    (lambda v: v[0].item() + 1.0, symgrad.TracingError, r"x\.item\(\) needs the value.*x\[i\]"),
    (lambda v: sum(v.tolist()), symgrad.TracingError, r"x\.tolist\(\).*list\(x\)"),
    (lambda v: v.view(np.int64), symgrad.TracingError, r"reinterprets.*x\.astype\(dtype\)"),
    (lambda v: v.byteswap(), UnsupportedError,
     r"ndarray\.byteswap is not supported on traced arrays yet"),
    (lambda v: np.put(np.zeros(3), [0], v[0]), symgrad.TracingError,
     r"numpy\.put into a ndarray.*x\.copy\(\)"),
    (lambda v: np.copyto(v.astype(np.int64), v), TypeError, r"Cannot cast.*'same_kind'"),
    (lambda v: np.fill_diagonal(v, 0.0), ValueError, r"at least 2-d"),
    (lambda v: np.fill_diagonal(np.ones((2, 2, 3)) * v[0], 0.0), ValueError, r"equal length"),
    (lambda v: np.putmask(v, np.ones(4, bool), 0.0), ValueError, r"mask and data must be the same size"),
    (lambda v: np.place(v, v > 0.0, []), ValueError, r"cannot insert from an empty array"),
    (lambda v: np.put(v, [7], 1.0), IndexError, r"out of bounds"),
    (lambda v: np.partition(v, 9), ValueError, r"kth\(=9\) out of bounds"),
    (lambda v: np.full(3, v[0]), symgrad.TracingError, r"test_ndarray_api\.py"),
])
def test_errors_name_the_problem_and_the_line(fn, error, match):
    with pytest.raises(error, match=match) as info:
        _trace_error(fn, np.linspace(-1.0, 1.0, 6))
    if isinstance(info.value, symgrad.TracingError):
        assert "test_ndarray_api.py:" in str(info.value)


def test_missing_methods_are_attribute_errors():
    """hasattr stays False for what a traced array lacks (duck typing in user code relies on
    it), and the error is still the one that names the method."""
    seen = {}

    def fn(v):
        seen["byteswap"] = hasattr(v, "byteswap")
        seen["__array_interface__"] = hasattr(v, "__array_interface__")
        seen["copy"] = hasattr(v, "copy")
        return v
    _trace_error(fn, np.ones(3))
    assert seen == {"byteswap": False, "__array_interface__": False, "copy": True}


def test_put_checks_traced_positions_when_it_runs(backend):
    def f(v, idx):
        a = v * 1.0
        np.put(a, idx, 3.0)
        return snp.sum(a * v)
    g = symgrad.compile(f, backend=backend)
    assert g(np.ones(6), np.array([0, -6])) == 8.0          # -6 is position 0, as in NumPy
    for bad in ([7, 0], [0, -7]):
        with pytest.raises(IndexError, match="out of bounds for axis 0 with size 6"):
            g(np.ones(6), np.array(bad))
