"""Every operation of API.md §1 and ``symgrad.nn`` in one parametrized table.

Each row is a function written against ``symgrad.numpy`` and the inputs it is tested at (inputs
respect the domain: log on positives, arcsin inside (-1, 1), kinks kept at a distance). For every
row, case, dtype (float64, float32) and backend:

- the compiled value equals the *undecorated* function run by NumPy on the same arrays;
- ``symgrad.check_grad`` passes on ``sum(fn(...) * W)`` for a fixed random ``W``: the backend's
  gradient agrees with the interpreter, central differences and the complex step.

``tests/test_registry.py`` checks that the rows together exercise every registered primitive, so
a new primitive needs a row here. The subgradient conventions (ties) and extreme inputs of the
``nn`` functions have their own tests at the end.
"""
from __future__ import annotations

import zlib
from typing import Callable, NamedTuple

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad import nn
from symgrad.scipy import linalg as symgrad_scipy_linalg
from symgrad.core.primitives import bind
from symgrad.frontend.tracer import Tracer

DTYPES = ["float64", "float32"]


# --- input generators: each takes a Generator and returns a float64 array (cast per dtype later) --

def U(*shape, lo=-2.0, hi=2.0):
    """Uniform in (lo, hi)."""
    return lambda rng: rng.uniform(lo, hi, shape)


def P(*shape, lo=0.5, hi=2.0):
    """Positive: for log, sqrt, division, pow bases."""
    return U(*shape, lo=lo, hi=hi)


def Apart(*shape, lo=0.3, hi=2.0):
    """Either sign, |x| >= lo: away from the kinks of abs, sign and relu at 0."""
    return lambda rng: rng.choice([-1.0, 1.0], shape) * rng.uniform(lo, hi, shape)


def Distinct(*shape):
    """All entries at least 0.3 apart, in random order: max/min have a unique winner."""
    def gen(rng):
        n = int(np.prod(shape, dtype=np.int64))
        values = (np.arange(n) - n / 2) * 0.4 + rng.uniform(-0.05, 0.05, n)
        return rng.permutation(values).reshape(shape)
    return gen


def Avoid(*shape, points=(0.0,), gap=0.15, lo=-1.5, hi=1.5):
    """Uniform, moved at least ``gap`` away from each of ``points`` (the bounds of clip, ...)."""
    def gen(rng):
        x = rng.uniform(lo, hi, shape)
        near = lambda x: np.any([np.abs(x - p) < gap for p in points], axis=0)  # noqa: E731
        while np.any(near(x)):
            x = np.where(near(x), rng.uniform(lo, hi, shape), x)
        return x
    return gen


def I(values):
    """A constant integer array (labels, indices)."""
    return lambda rng: np.array(values, dtype=np.int64)


def Const(value):
    """A Python scalar argument, passed as is."""
    return lambda rng: value


def pair_apart(full, small, gap=0.2):
    """(x, y) with x of shape ``full``, y of broadcastable shape ``small``, |x - y| >= gap."""
    def gen(rng):
        y = rng.uniform(-2, 2, small)
        offset = rng.choice([-1.0, 1.0], full) * rng.uniform(gap, 1.0, full)
        return np.broadcast_to(y, full) + offset, y
    return gen


def swapped(gen):
    def swap(rng):
        x, y = gen(rng)
        return y, x
    return swap


class Row(NamedTuple):
    name: str
    fn: Callable
    cases: list            # each case: a tuple of generators, or one callable returning all args
    argnums: tuple | None = None   # default: every float argument
    signature: dict | None = None  # type strings by argument position; {t} becomes f64 or f32


def case_args(case, rng):
    if callable(case):
        return list(case(rng))
    return [g(rng) for g in case]


def _guarded(x, flag):
    """x, through a guard when traced (as a traced while loop's final state is)."""
    if not isinstance(x, Tracer):
        return x
    return Tracer(bind("guard", flag.irvar, x.irvar, message="too many steps"))


def _counted_while(x):
    """A while loop on a traced condition, as the conversion lowers ``while k < bound: ...``
    (``pyflow.while_stmt``, called directly: a row's function runs unconverted in some
    checks): while_count counts its steps at run time (3 to 5 here, by the values of x), and
    the scan after it runs that many."""
    from symgrad.frontend import pyflow

    def test(s, k):
        return k < 2.5 + snp.sum(x * x) / x.size

    def body(s, k):
        return snp.tanh(s) * 1.1 + 0.1 * x, k + 1.0
    state = (x * 1.0, snp.sum(x) * 0.0)     # k in x's dtype: the carries share one
    if not isinstance(x, Tracer):
        while test(*state):
            state = body(*state)
        return state[0]
    return pyflow.while_stmt(test, body, state, ("s", "k"))[0]


# --- the table ------------------------------------------------------------------------------

TABLE = [
    # Arithmetic, with broadcasting and Python scalars on either side.
    Row("add", lambda x, y: x + y,
        [(U(3, 4), U(4)), (U(3, 1), U(1, 4)), (U(2, 3, 4), U(3, 1)), (U(), U(2, 3))]),
    Row("add_scalar", lambda x: 2.5 + x + 1, [(U(3),), (U(2, 2),)]),
    Row("subtract", lambda x, y: x - y, [(U(3, 4), U(4)), (U(4), U(3, 1))]),
    Row("rsub_scalar", lambda x: 1.0 - x, [(U(5),)]),
    Row("multiply", lambda x, y: x * y, [(U(3, 4), U(4)), (U(2, 1, 3), U(4, 1)), (U(3), U())]),
    Row("divide", lambda x, y: x / y, [(U(3, 4), P(4)), (U(2, 3), P(2, 1))]),
    Row("rdiv_scalar", lambda x: 3.0 / x, [(P(4),)]),
    Row("power", lambda x, y: x ** y, [(P(3, 4), U(4)), (P(3), U(2, 1))]),
    Row("power_scalar", lambda x: x ** 3 + x ** 2.5 + x ** -1 + x ** 0.5 + x ** 1,
        [(P(2, 3),)]),
    Row("rpow", lambda x: 2.0 ** x, [(U(4),)]),
    Row("negative", lambda x: -x + snp.negative(x), [(U(3, 2),)]),
    Row("matmul_op", lambda a, b: a @ b, [(U(3, 4), U(4, 2)), (U(4), U(4))]),
    Row("mixed_dtype", lambda x, y: x * y,
        [(lambda rng: (rng.uniform(-2, 2, 3).astype(np.float32), rng.uniform(-2, 2, (2, 3))))]),
    Row("int_data", lambda x, k: x * k - k, [(U(2, 3), I([1, -2, 3]))]),
    Row("python_scalar_arg", lambda x, s: x * s + s ** 2, [(U(3), Const(0.7))]),

    # Elementwise functions, on their domains.
    Row("exp", snp.exp, [(U(3, 4),), (U(),)]),
    Row("expm1", snp.expm1, [(U(5, lo=-1e-3, hi=1e-3),), (U(2, 3),)]),
    Row("log", snp.log, [(P(3, 4),), (P(5, lo=10.0, hi=100.0),)]),
    Row("log1p", snp.log1p, [(U(4, lo=-0.5, hi=2.0),), (U(3, lo=-1e-3, hi=1e-3),)]),
    Row("sqrt", snp.sqrt, [(P(3, 4),), (P(),)]),
    Row("square", snp.square, [(U(3, 4),), (U(2, 1, 3),)]),
    Row("sin", snp.sin, [(U(3, 4, lo=-4, hi=4),), (U(),)]),
    Row("cos", snp.cos, [(U(3, 4, lo=-4, hi=4),), (U(5),)]),
    Row("tan", snp.tan, [(U(3, 4, lo=-1.2, hi=1.2),), (U(2, 2, 2, lo=-1, hi=1),)]),
    Row("arcsin", snp.arcsin, [(U(3, 4, lo=-0.9, hi=0.9),), (U(lo=-0.9, hi=0.9),)]),
    Row("arccos", snp.arccos, [(U(3, 4, lo=-0.9, hi=0.9),), (U(5, lo=-0.9, hi=0.9),)]),
    Row("arctan", snp.arctan, [(U(3, 4, lo=-3, hi=3),), (U(),)]),
    Row("sinh", snp.sinh, [(U(3, 4),), (U(5),)]),
    Row("cosh", snp.cosh, [(U(3, 4),), (U(),)]),
    Row("tanh", snp.tanh, [(U(3, 4, lo=-3, hi=3),), (U(2, 1, 3),)]),
    Row("abs", snp.abs, [(Apart(3, 4),), (Apart(),)]),
    Row("abs_builtin", lambda x: abs(x) * x, [(Apart(5),)]),
    Row("sign", lambda x: snp.sign(x) * x ** 2, [(Apart(3, 4),), (Apart(5),)]),
    Row("maximum", snp.maximum,
        [pair_apart((3, 4), (4,)), swapped(pair_apart((2, 3), (2, 1))), pair_apart((3,), ())]),
    Row("minimum", snp.minimum,
        [pair_apart((3, 4), (4,)), swapped(pair_apart((2, 3), (2, 1)))]),
    Row("maximum_scalar", lambda x: snp.maximum(x, 0.25) + snp.minimum(-0.25, x),
        [(Avoid(3, 4, points=(0.25, -0.25)),)]),
    Row("clip", lambda x: snp.clip(x, -0.5, 0.5), [(Avoid(3, 4, points=(-0.5, 0.5)),),
                                                   (Avoid(points=(-0.5, 0.5)),)]),
    Row("clip_method", lambda x: x.clip(-0.5, None) * x.clip(None, 0.5),
        [(Avoid(6, points=(-0.5, 0.5)),)]),
    Row("where_gt", lambda x, y: snp.where(x > y, x * y, x + y),
        [pair_apart((3, 4), (4,)), pair_apart((3,), ())]),
    Row("where_ge_lt_le", lambda x: snp.where(x >= 0.5, x, 2 * x) + snp.where(x < -0.5, -x, x ** 2)
        + snp.where(0.2 <= x, snp.sin(x), snp.cos(x)), [(Avoid(3, 4, points=(0.5, -0.5, 0.2)),)]),
    Row("where_eq_ne", lambda x, k: snp.where(k == 2, x, -x) * snp.where(k != 1, 1.0, x),
        [(U(2, 3), I([1, 2, 3])), (U(4), I([2, 2, 1, 0]))]),
    Row("where_broadcast", lambda x, y: snp.where(x > 0, x, y),
        [(Apart(3, 4), U(3, 1)), (Apart(4), U(3, 4))]),

    # Reductions, with axis and keepdims, as functions and as methods.
    Row("sum", lambda x: snp.sum(x), [(U(3, 4),), (U(),)]),
    Row("sum_axis", lambda x: snp.sum(x, axis=1) + snp.sum(x, axis=-1, keepdims=True).T[0],
        [(U(3, 4),)]),
    Row("sum_axes", lambda x: snp.sum(x, axis=(0, 2), keepdims=True) + x.sum(axis=1).sum(),
        [(U(2, 3, 4),)]),
    Row("mean", lambda x: snp.mean(x) + snp.mean(x, axis=0) + x.mean(axis=(0, 1), keepdims=True),
        [(U(3, 4),), (U(2, 3, 4),)]),
    Row("max", lambda x: snp.max(x), [(Distinct(3, 4),), (Distinct(5),)]),
    Row("max_axis", lambda x: snp.max(x, axis=0) + x.max(axis=-1, keepdims=True),
        [(Distinct(4, 4),), (Distinct(2, 3, 3),)]),
    Row("max_axes", lambda x: snp.max(x, axis=(0, 2), keepdims=True), [(Distinct(2, 3, 4),)]),
    Row("min", lambda x: snp.min(x) + snp.min(x, axis=1), [(Distinct(3, 4),)]),
    Row("min_axes", lambda x: x.min(axis=(1, 2)) + snp.min(x, axis=0, keepdims=True).sum(),
        [(Distinct(2, 3, 4),)]),
    Row("prod", lambda x: snp.prod(x), [(Apart(3, 2, lo=0.5, hi=1.5),)]),
    Row("prod_axis", lambda x: snp.prod(x, axis=1) + x.prod(axis=(0, 2), keepdims=True).sum(),
        [(Apart(2, 3, 2, lo=0.5, hi=1.5),)]),
    # prod's gradient (prod_others): its own gradient is recurrences (shift, recurrence), exact
    # at zeros, so the gradient check below is a second-order check of prod.
    Row("prod_grad", lambda x: symgrad.grad(snp.prod)(x),
        [(U(4),), lambda rng: (np.array([0.0, 1.25, -0.75, 0.0, 1.5]),)]),
    Row("prod_grad_axis", lambda x: symgrad.grad(lambda y: snp.sum(snp.prod(y, axis=0)))(x),
        [(U(3, 2),)]),

    # Products.
    Row("dot", snp.dot, [(U(4), U(4)), (U(3, 4), U(4, 2)), (U(3, 4), U(4)), (U(4), U(4, 3)),
                         (U(), U(3))]),
    Row("dot_method", lambda a, b: a.dot(b), [(U(2, 3), U(3, 2))]),
    Row("matmul", snp.matmul, [(U(4), U(4)), (U(3, 4), U(4)), (U(4), U(4, 3)),
                               (U(3, 4), U(4, 5)), (U(2, 3, 4), U(2, 4, 5)),
                               (U(2, 3, 4), U(4, 2)), (U(2, 1, 3, 4), U(3, 4, 2)),
                               (U(3), U(2, 3, 4))]),
    Row("outer", snp.outer, [(U(3), U(4)), (U(2, 2), U(3))]),

    # Shapes.
    Row("transpose", lambda x: snp.transpose(x), [(U(2, 3, 4),), (U(3),)]),
    Row("transpose_axes", lambda x: snp.transpose(x, (1, 0, 2)) + x.transpose(1, 0, 2),
        [(U(2, 3, 4),)]),
    Row("transpose_negative_axes", lambda x: snp.transpose(x, (0, -1, 1)), [(U(2, 3, 4),)]),
    Row("T", lambda x: x.T @ x, [(U(3, 2),)]),
    Row("reshape", lambda x: snp.reshape(x, (2, 6)) + x.reshape(2, -1) + x.reshape((12,))[:6],
        [(U(3, 4),), (U(12),)]),
    Row("ravel", lambda x: snp.ravel(x) * x.ravel(), [(U(2, 3),)]),
    Row("broadcast_to", lambda x: snp.broadcast_to(x, (2, 3, 4)), [(U(4),), (U(3, 1),), (U(),)]),
    Row("expand_dims", lambda x: snp.expand_dims(x, 0) + snp.expand_dims(x, -1),
        [(U(3),), (U(3, 3),)]),
    Row("expand_dims_tuple", lambda x: snp.expand_dims(x, (0, 2)), [(U(3, 4),)]),
    Row("squeeze", lambda x: snp.squeeze(x) + snp.squeeze(x, axis=0)[:, 0]
        + x.squeeze(axis=-1)[0], [(U(1, 3, 1),)]),
    Row("concatenate", lambda x, y: snp.concatenate([x, y, x]),
        [(U(3), U(2)), (U(2, 3), U(1, 3))]),
    Row("concatenate_axis", lambda x, y: snp.concatenate((x, y), axis=1)
        + snp.concatenate([x, y], axis=-1), [(U(2, 3), U(2, 2))]),
    Row("concatenate_3d", lambda x, y: snp.concatenate([x, y], axis=1),
        [(U(2, 1, 2), U(2, 3, 2))]),
    Row("stack", lambda x, y: snp.stack([x, y]) * snp.stack((y, x), axis=-1).T,
        [(U(3), U(3))]),
    Row("stack_axis", lambda x, y: snp.stack([x, y, x], axis=1) + snp.stack((y, x, y), axis=-1),
        [(U(2, 3), U(2, 3))]),

    # Basic slicing: steps, negative steps, negative indices, None and Ellipsis.
    Row("slice", lambda x: x[1:3] * x[::2][:2] + x[-2:], [(U(4),)]),
    Row("slice_negative_step", lambda x: x[::-1] + x[5:0:-2][0] + x[-1:-4:-1].sum(),
        [(U(6),)]),
    Row("slice_2d", lambda x: x[1:, ::-2] + x[-1, 1::2], [(U(3, 4),)]),
    Row("index_int", lambda x: x[0] * x[-1] + x[1, 2] - x[-2, -3], [(U(3, 4),)]),
    Row("index_none_ellipsis", lambda x: x[None, 1] + x[..., 0][:, None] + x[:, None, -1],
        [(U(3, 3),)]),
    Row("index_3d", lambda x: x[..., ::2] + x[:, -1:, ::2] + x[..., 1, None], [(U(2, 3, 4),)]),

    # Integer-array indexing: repeated indices must accumulate in the gradient.
    Row("take_repeated", lambda x: x[[0, 2, 2, 1, 2]], [(U(4),), (U(3, 2),)]),
    Row("take_negative", lambda x: x[[-1, 0, -1]], [(U(4),)]),
    Row("take_argument", lambda x, i: x[i] * x[i],
        [(U(5), I([4, 0, 4, -2])), (U(3, 2), I([1, 1]))]),
    Row("take_2d_index", lambda x: x[np.array([[0, 1], [1, 1]])], [(U(3),)]),
    Row("take_axis1", lambda x: x[:, [1, 1, 0]], [(U(2, 3),)]),
    Row("take_pairs", lambda x, y: x[snp.arange(x.shape[0]), y],
        [(U(4, 3), I([2, 0, 0, 1])), (U(3, 2), I([1, 1, 1]))]),
    Row("take_int_and_array", lambda x: x[1, [0, 2, 2]] + x[[0, 0, 1], -1], [(U(2, 3),)]),
    Row("take_non_adjacent", lambda x: x[[0, 1, 1], :, [2, 2, 0]], [(U(2, 3, 4),)]),
    Row("take_middle_axis", lambda x: x[:, [0, 2, 0]], [(U(2, 3, 4),)]),

    # Scans, sorting and linear algebra (tests/test_statistics.py and tests/test_linalg.py test
    # them in full; these rows put each primitive through this table's checks too).
    Row("cumsum", lambda x: snp.cumsum(x, axis=1) + snp.cumsum(x, axis=0), [(U(3, 4),)]),
    Row("cumprod", lambda x: snp.cumprod(x, axis=-1), [(U(2, 4),), (U(5),)]),
    Row("sort", lambda x: snp.sort(x, axis=0) * snp.argsort(x, axis=1), [(Distinct(4, 3),)]),
    Row("solve_det", lambda a, b: snp.linalg.solve(a, b) * snp.linalg.det(a),
        [(lambda rng: (rng.uniform(-1, 1, (3, 3)) + 4 * np.eye(3), rng.uniform(-1, 1, (3, 2))))]),
    Row("cholesky_triangular", lambda a: snp.linalg.cholesky(a @ a.T + 3 * snp.eye(3))
        + symgrad_scipy_linalg.solve_triangular(a + 3 * snp.eye(3), a, lower=True),
        [(U(3, 3),)]),
    Row("qr", lambda a: snp.linalg.qr(a)[0] + snp.linalg.qr(a)[1].sum(), [(U(4, 3),)]),
    Row("eigh_svd", lambda a: snp.linalg.eigh(a + a.T + snp.diag(snp.arange(3.0) * 3))[0]
        + snp.linalg.svd(a, compute_uv=False), [(U(3, 3),)]),

    # Creation inside traced code.
    Row("arange", lambda x: x * snp.arange(4) + snp.arange(1, 9, 2) * x ** 2, [(U(4),)]),
    Row("arange_float", lambda x: x * snp.arange(0.0, 2.0, 0.5), [(U(4),)]),
    Row("zeros_ones", lambda x: (x + snp.zeros((3,))) * snp.ones((2, 3)) + snp.ones(3),
        [(U(3),)]),
    Row("zeros_like_ones_like", lambda x: x * snp.ones_like(x) + snp.zeros_like(x) + x ** 2,
        [(U(2, 3),)]),
    Row("eye", lambda x: snp.eye(3) @ x + snp.eye(3, 2, k=-1) * x[:, :2], [(U(3, 2),)]),

    # symgrad.nn.
    Row("sigmoid", nn.sigmoid, [(U(3, 4, lo=-5, hi=5),), (U(),)]),
    Row("relu", nn.relu, [(Apart(3, 4),), (Apart(5),)]),
    Row("softplus", nn.softplus, [(U(3, 4, lo=-5, hi=5),), (U(2, 1, 3),)]),
    Row("logsumexp", lambda x: nn.logsumexp(x), [(U(3, 4),), (U(5),)]),
    Row("logsumexp_axis", lambda x: nn.logsumexp(x, axis=1) + nn.logsumexp(x, axis=0,
                                                                           keepdims=True).sum(),
        [(U(3, 4),)]),
    Row("softmax", lambda x: nn.softmax(x), [(U(3, 4),), (U(5),)]),
    Row("softmax_axis0", lambda x: nn.softmax(x, axis=0), [(U(3, 4),)]),
    Row("log_softmax", lambda x: nn.log_softmax(x), [(U(3, 4),), (U(2, 3, 4),)]),
    Row("log_softmax_axis0", lambda x: nn.log_softmax(x, axis=0), [(U(3, 4),)]),

    # Run-time sizes: a dimension named in the signature is read at call time.
    Row("runtime_size", lambda x, y: snp.sum(x * y, axis=0) / x.shape[0] + snp.mean(x),
        [(U(4, 3), U(3)), (U(1, 3), U(1))], signature={0: "{t}[N,3]"}),

    # Structured loops (symgrad.loops): one scan statement, its adjoint another scan.
    Row("scan", lambda c, w, xs: symgrad.scan(
        lambda h, x: (snp.tanh(h * w + x), h * x), c, xs)[1], [(U(3), U(3), U(4, 3))]),
    # An int carry beside the float state travels as the float's bits (bitcast).
    Row("loop_int_carry", lambda w, x: symgrad.fori_loop(
        0, 4, lambda i, c: (c[0] * w + x * c[1].astype(x.dtype), c[1] * 2 - 1),
        (x, snp.asarray(-3).astype("int32")))[0], [(U(3), U(3))]),

    # A traced while loop's bound (symgrad.frontend.pyflow): the value passes through, the call
    # fails when the flag is set at run time.
    Row("guard", lambda x: _guarded(x * 2, snp.sum(x) > 1e9), [(U(3),), (U(),)]),
    # A traced while loop: its trip count counted at run time, its tape sized by it.
    Row("while_count", _counted_while, [(U(3),), (U(),)]),

    # Compositions from the course.
    Row("softmax_loss", lambda W, X, y, reg: (
        -snp.mean((X @ W - nn.logsumexp(X @ W, axis=1, keepdims=True))[snp.arange(X.shape[0]), y])
        + reg * snp.sum(W * W)), [(U(4, 3), U(5, 4), I([0, 2, 1, 2, 0]), Const(1e-2))],
        argnums=(0, 1)),
]


def _seed(*parts):
    return zlib.crc32("/".join(map(str, parts)).encode())


def make_args(row, index, dtype):
    """The arguments of ``row``'s case ``index`` in ``dtype`` (float64 arrays are cast)."""
    rng = np.random.default_rng(_seed(row.name, index))
    args = case_args(row.cases[index], rng)
    return [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
            for a in args]


def signature(row, dtype):
    if row.signature is None:
        return None
    short = {"float64": "f64", "float32": "f32"}[dtype]
    return {k: v.format(t=short) for k, v in row.signature.items()}


def float_argnums(row, args):
    if row.argnums is not None:
        return row.argnums
    return tuple(i for i, a in enumerate(args)
                 if isinstance(a, float) or (isinstance(a, np.ndarray) and a.dtype.kind == "f"))


def weighted_loss(row, args):
    """``sum(fn(*args) * W)`` with a fixed random W of fn's output shape and dtype."""
    out = np.asarray(row.fn(*args))
    rng = np.random.default_rng(_seed(row.name, "weights"))
    weights = rng.uniform(0.5, 1.5, out.shape).astype(out.dtype)

    def loss(*xs):
        return snp.sum(row.fn(*xs) * weights)
    loss.__name__ = f"loss_{row.name}"
    return loss


CASES = [pytest.param(row, i, id=f"{row.name}-{i}") for row in TABLE for i in range(len(row.cases))]

# Per dtype: how far the compiled value may be from NumPy's (relative to the result's scale).
VALUE_RTOL = {"float64": 1e-12, "float32": 2e-6}


def assert_close(actual, expected, dtype):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape
    tol = VALUE_RTOL[dtype]
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0)))
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol * scale)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row, index", CASES)
def test_value_matches_numpy(row, index, dtype, backend):
    args = make_args(row, index, dtype)
    expected = row.fn(*args)
    f = symgrad.compile(row.fn, backend=backend, argnums=(), signature=signature(row, dtype))
    actual = f(*args)
    assert_close(actual, expected, dtype)
    if np.ndim(expected):
        assert actual.dtype == expected.dtype
    else:
        assert isinstance(actual, float)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("row, index", CASES)
def test_gradient_checks(row, index, dtype, backend):
    args = make_args(row, index, dtype)
    argnums = float_argnums(row, args)
    loss = weighted_loss(row, args)
    f = symgrad.compile(loss, argnums=argnums, backend=backend,
                        signature=signature(row, dtype))
    report = symgrad.check_grad(f, *args, argnums=argnums)
    assert report.ok
    methods = {c.method for c in report.comparisons}
    assert {"interpreter", "central diff", "complex step"} <= methods
    grads = f.grad(*args)
    for i, g in zip(argnums, grads):
        assert np.shape(g) == np.shape(args[i])
        if isinstance(args[i], np.ndarray):
            assert g.dtype == args[i].dtype


def primitives_used():
    """The primitives the table's forward and adjoint graphs use (float64 cases)."""
    used = set()
    for row in TABLE:
        for index in range(len(row.cases)):
            args = make_args(row, index, "float64")
            f = symgrad.compile(weighted_loss(row, args), argnums=float_argnums(row, args),
                                backend="interp", signature=signature(row, "float64"))
            spec, _ = f.specialize(*args)
            for graph in (spec.graph, spec.value_and_grad_graph()):
                used.update(n.prim for n in graph.nodes)
    return used


# --- the subgradient conventions of API.md: ties go to the first argument / first maximum ------

def _grads(fn, *args, backend, argnums=None):
    argnums = tuple(range(len(args))) if argnums is None else argnums
    f = symgrad.compile(fn, argnums=argnums, backend=backend)
    return f.grad(*args)


def test_maximum_tie_goes_to_first_argument(backend):
    x = np.array([1.0, 2.0, 3.0])
    y = np.array([1.0, 5.0, 3.0])
    gx, gy = _grads(lambda x, y: snp.sum(snp.maximum(x, y)), x, y, backend=backend)
    np.testing.assert_array_equal(gx, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(gy, [0.0, 1.0, 0.0])
    gy, gx = _grads(lambda y, x: snp.sum(snp.maximum(y, x)), y, x, backend=backend)
    np.testing.assert_array_equal(gy, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(gx, [0.0, 0.0, 0.0])


def test_minimum_tie_goes_to_first_argument(backend):
    x = np.array([1.0, 2.0, -3.0])
    y = np.array([1.0, 0.0, -3.0])
    gx, gy = _grads(lambda x, y: snp.sum(snp.minimum(x, y)), x, y, backend=backend)
    np.testing.assert_array_equal(gx, [1.0, 0.0, 1.0])
    np.testing.assert_array_equal(gy, [0.0, 1.0, 0.0])


def test_maximum_tie_with_broadcast_scalar(backend):
    x = np.array([2.0, 2.0, 1.0])
    gx, gs = _grads(lambda x, s: snp.sum(snp.maximum(x, s)), x, 2.0, backend=backend)
    np.testing.assert_array_equal(gx, [1.0, 1.0, 0.0])
    assert gs == 1.0       # only the third element, where s wins outright


def test_max_reduction_gradient_to_first_maximum(backend):
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    g = _grads(lambda x: snp.max(x), x, backend=backend, argnums=0)
    np.testing.assert_array_equal(g, [[0, 1, 0], [0, 0, 0]])
    g = _grads(lambda x: snp.sum(snp.max(x, axis=1)), x, backend=backend, argnums=0)
    np.testing.assert_array_equal(g, [[0, 1, 0], [1, 0, 0]])
    g = _grads(lambda x: snp.sum(snp.max(x, axis=0) * np.array([1.0, 10.0, 100.0])), x,
               backend=backend, argnums=0)
    np.testing.assert_array_equal(g, [[0, 10, 100], [1, 0, 0]])


def test_min_reduction_gradient_to_first_minimum(backend):
    x = np.array([[4.0, 1.0, 1.0], [0.0, 5.0, 0.0]])
    g = _grads(lambda x: snp.sum(snp.min(x, axis=1, keepdims=True)), x, backend=backend,
               argnums=0)
    np.testing.assert_array_equal(g, [[0, 1, 0], [1, 0, 0]])


def test_abs_gradient_at_zero_is_one(backend):
    x = np.array([-2.0, 0.0, 3.0])
    g = _grads(lambda x: snp.sum(snp.abs(x)), x, backend=backend, argnums=0)
    np.testing.assert_array_equal(g, [-1.0, 1.0, 1.0])


def test_relu_gradient_at_zero_goes_to_x(backend):
    x = np.array([-1.0, 0.0, 0.5])
    g = _grads(lambda x: snp.sum(nn.relu(x)), x, backend=backend, argnums=0)
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0])


def test_clip_gradient_at_bounds_goes_to_x(backend):
    x = np.array([-1.0, -0.5, 0.0, 0.5, 1.0])
    g = _grads(lambda x: snp.sum(snp.clip(x, -0.5, 0.5)), x, backend=backend, argnums=0)
    np.testing.assert_array_equal(g, [0.0, 1.0, 1.0, 1.0, 0.0])
    lo, hi = np.array([-0.5, 0.0]), np.array([0.5, 0.0])
    x = np.array([-0.5, 0.0])
    gx, glo, ghi = _grads(lambda x, lo, hi: snp.sum(snp.clip(x, lo, hi)), x, lo, hi,
                          backend=backend)
    np.testing.assert_array_equal(gx, [1.0, 1.0])
    np.testing.assert_array_equal(glo, [0.0, 0.0])
    np.testing.assert_array_equal(ghi, [0.0, 0.0])


def test_where_gradient_goes_to_branch_taken(backend):
    x = np.array([1.0, -2.0, 0.0])
    y = np.array([10.0, 20.0, 30.0])
    gx, gy = _grads(lambda x, y: snp.sum(snp.where(x >= 0, x * 3.0, y * 2.0)), x, y,
                    backend=backend)
    np.testing.assert_array_equal(gx, [3.0, 0.0, 3.0])
    np.testing.assert_array_equal(gy, [0.0, 2.0, 0.0])


@pytest.mark.parametrize("dtype", DTYPES)
def test_power_gradient_at_zero(backend, dtype):
    # d/dx x**n at 0 is 0 for n > 1 (x**n * n / x would be 0/0 there)
    x = np.array([0.0, 1.0, -2.0], dtype=dtype)
    g = _grads(lambda x: snp.sum(x ** 3 + snp.power(x, 4.0)), x, backend=backend, argnums=0)
    assert g.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(g, [0.0, 3.0 + 4.0, 12.0 - 32.0])
    g = _grads(lambda x: snp.sum(x ** 2.5), np.array([0.0, 4.0]), backend=backend, argnums=0)
    np.testing.assert_array_equal(g, [0.0, 2.5 * 8.0])


def test_scatter_add_accumulates_repeated_indices(backend):
    x = np.array([1.0, 2.0, 3.0, 4.0])
    idx = np.array([3, 0, 3, 3, -1])
    g = _grads(lambda x, i: snp.sum(x[i] * np.array([1.0, 2.0, 3.0, 4.0, 5.0])), x, idx,
               backend=backend, argnums=0)
    np.testing.assert_array_equal(g, [2.0, 0.0, 0.0, 13.0])
    rows = np.array([[1.0, 2.0], [3.0, 4.0]])
    g = _grads(lambda x: snp.sum(x[[1, 1, 0]] ** 2), rows, backend=backend, argnums=0)
    np.testing.assert_array_equal(g, [[2.0, 4.0], [12.0, 16.0]])


# --- nn at extreme inputs: finite values and gradients ----------------------------------------

EXTREME = np.array([-1000.0, -30.0, 0.0, 30.0, 1000.0])


def _tols(dtype, scale=1.0):
    """rtol and atol for results of magnitude up to ``scale`` computed in ``dtype``."""
    eps = float(np.finfo(dtype).eps)
    return dict(rtol=8 * eps, atol=8 * eps * scale)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_extreme(backend, dtype):
    x = EXTREME.astype(dtype)
    with np.errstate(over="ignore"):                     # float64 reference; exp(1000) = inf
        s = 1 / (1 + np.exp(-EXTREME))
    ds = np.exp(-np.abs(EXTREME)) / (1 + np.exp(-np.abs(EXTREME))) ** 2
    np.testing.assert_allclose(symgrad.compile(nn.sigmoid, backend=backend)(x), s,
                               **_tols(dtype))
    value, g = symgrad.compile(lambda x: snp.sum(nn.sigmoid(x)), backend=backend).value_and_grad(x)
    assert value == pytest.approx(s.sum(), rel=1e-6)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, ds, **_tols(dtype, 0.25))


@pytest.mark.parametrize("dtype", DTYPES)
def test_softplus_extreme(backend, dtype):
    x = EXTREME.astype(dtype)
    value = symgrad.compile(nn.softplus, backend=backend)(x)
    np.testing.assert_allclose(value, np.maximum(EXTREME, 0) + np.log1p(np.exp(-np.abs(EXTREME))),
                               **_tols(dtype))
    g = symgrad.compile(lambda x: snp.sum(nn.softplus(x)), backend=backend).grad(x)
    assert np.all(np.isfinite(g))
    with np.errstate(over="ignore"):
        expected = 1 / (1 + np.exp(-EXTREME))
    np.testing.assert_allclose(g, expected, **_tols(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsumexp_softmax_extreme(backend, dtype):
    x = np.array([[1000.0, -1000.0, 0.0], [-1000.0, -1000.0, -1000.0]], dtype=dtype)
    third = [1 / 3] * 3
    big = _tols(dtype, 2000.0)          # values near 1000 carry their own rounding
    lse = symgrad.compile(lambda x: nn.logsumexp(x, axis=1), backend=backend)
    np.testing.assert_allclose(lse(x), [1000.0, -1000.0 + np.log(3.0)], **big)
    g = symgrad.compile(lambda x: snp.sum(nn.logsumexp(x, axis=1)), backend=backend).grad(x)
    np.testing.assert_allclose(g, [[1, 0, 0], third], **_tols(dtype))
    p = symgrad.compile(lambda x: nn.softmax(x), backend=backend)(x)
    np.testing.assert_allclose(p, [[1, 0, 0], third], **_tols(dtype))
    logp = symgrad.compile(lambda x: nn.log_softmax(x), backend=backend)(x)
    np.testing.assert_allclose(logp, [[0.0, -2000.0, -1000.0], [-np.log(3.0)] * 3], **big)
    w = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]], dtype=dtype)
    gl = symgrad.compile(lambda x: snp.sum(nn.log_softmax(x) * w), backend=backend).grad(x)
    assert np.all(np.isfinite(gl))
    # d/dx sum(w * log_softmax(x)) = w - softmax(x) * (row sum of w)
    np.testing.assert_allclose(gl, w - np.array([[1, 0, 0], third]) * w.sum(1, keepdims=True),
                               **_tols(dtype, 6.0))
