"""Reductions and statistics beyond sum/mean/max: NumPy's names, arguments and numerics.

On plain arrays each function is NumPy's own. On traced values each is a composite of primitives
that computes what NumPy computes, in the same order where rounding could tell (``var`` as
``sum((x - mean)**2) / (n - ddof)``, ``quantile`` with NumPy's ``_lerp``), so values agree to the
last bits and gradients follow from the primitives:

- ``cumsum`` is a primitive; ``cumprod`` is a linear recurrence whose gradient needs no division
  and is exact where the input has zeros.
- ``sort``, ``median``, ``quantile``, ``percentile``: the gradient goes to the elements selected
  (and, for interpolated quantiles, splits between the two neighbours by the interpolation
  weights). ``argsort``, ``argmax``, ``argmin``, ``any``, ``all``, ``count_nonzero`` and
  ``searchsorted`` have none (their results are integers or booleans).
- ``std`` (and the 2-norm in ``linalg``) take the square root so that a zero variance has the
  gradient 0 (a subgradient) rather than NaN.
- ``cov`` and ``corrcoef`` are NumPy's steps (weighted ``average``, the centred product scaled
  by 1 / fact, the division by the standard deviations and the clip to [-1, 1]).

Differences from NumPy: ``quantile``'s ``q`` must be known while tracing (a number or a list);
``nanmax``/``nanmin`` of an all-NaN slice give NaN without NumPy's warning; on NaN input, ``sort``
puts NaN last as NumPy does, but ``median`` and ``quantile`` select as if NaN were the largest
value (NumPy returns NaN). ``partition``/``argpartition`` sort the whole axis: a sorted array is
a partition about every ``kth``, and NumPy leaves the order within the two parts unspecified.
"""
from __future__ import annotations

import builtins
import warnings

import numpy as np

from symgrad.core import ops
from symgrad.core.primitive import bind
from symgrad.core.primitives import cumulative
from symgrad.errors import ShapeError
from symgrad.frontend.tracer import Tracer
from symgrad.numpy._common import (as_float, at, axes_tuple, axis_index, count, guard, is_float,
                                   no_out, size_value, snp, static_ints, traced)

__all__ = ["var", "std", "average", "cumsum", "cumprod", "ptp", "argmax", "argmin", "any",
           "all", "count_nonzero", "sort", "argsort", "take_along_axis", "median", "quantile",
           "percentile", "nansum", "nanmean", "nanmax", "nanmin", "searchsorted", "partition",
           "argpartition", "cumulative_sum", "cumulative_prod", "digitize", "bincount", "lexsort",
           "nanargmax", "nanargmin", "nanprod", "nancumsum", "nancumprod", "nanvar", "nanstd",
           "isin", "cov", "corrcoef", "nanmedian", "nanquantile", "nanpercentile"]


def safe_sqrt(x):
    """sqrt(x) whose derivative at x == 0 is 0 (a subgradient) instead of inf: sqrt at 0 is
    selected away (the double ``where``), so no inf reaches the chain rule. NaN stays NaN."""
    zero = snp.equal(x, 0)
    return snp.where(zero, 0.0, snp.sqrt(snp.where(zero, 1.0, x)))


# --- moments ------------------------------------------------------------------------------------

def var(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    """Variance: sum((a - mean)**2) / (n - ddof) over ``axis``, as NumPy computes it."""
    if not traced(a):
        return np.var(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)
    no_out(out, "var")
    x = as_float(a, dtype)
    axes = axes_tuple(axis, x.ndim)
    d = snp.subtract(x, snp.mean(x, axes, keepdims=True))
    n = count(x.shape, axes)
    if d.dtype.kind == "c":         # NumPy: mean |a - mean|^2, a real number
        d2 = snp.add(snp.square(snp.real(d)), snp.square(snp.imag(d)))
    else:
        d2 = snp.multiply(d, d)
    total = snp.sum(d2, axes, keepdims=keepdims)
    return snp.divide(total, float(max(n - ddof, 0)) if isinstance(n, int) else n - ddof)


def std(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    """Standard deviation, sqrt(var); where the variance is 0 its gradient is 0."""
    if not traced(a):
        return np.std(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)
    return safe_sqrt(var(a, axis, dtype, out, ddof, keepdims))


def average(a, axis=None, weights=None, returned=False, *, keepdims=False):
    """Weighted mean sum(a * w) / sum(w); with ``returned``, also sum(w) (broadcast)."""
    if not traced(a, weights):
        return np.average(a, axis=axis, weights=weights, returned=returned, keepdims=keepdims)
    x = as_float(a)
    axes = axes_tuple(axis, x.ndim)
    if weights is None:
        avg = snp.mean(x, axes, keepdims=keepdims)
        scl = float(count(x.shape, axes))
        if returned:
            return avg, snp.broadcast_to(snp.asarray(scl).astype(avg.dtype), avg.shape)
        return avg
    w = snp.asarray(weights)
    if w.shape != x.shape:
        if axis is None:
            raise TypeError(f"average: axis must be given when the shapes of a {x.shape} and "
                            f"weights {w.shape} differ{at()}")
        if w.ndim != 1 or len(axes) != 1 or w.shape[0] != x.shape[axes[0]]:
            raise ShapeError(f"average: weights of shape {w.shape} do not match axis {axis} of "
                             f"a {x.shape}{at()}")
        w = snp.reshape(w, tuple(w.shape[0] if i == axes[0] else 1 for i in range(x.ndim)))
        w = snp.broadcast_to(w, x.shape)
    scl = snp.sum(w, axes, keepdims=keepdims)
    avg = snp.divide(snp.sum(snp.multiply(x, w), axes, keepdims=keepdims), scl)
    if returned:
        return avg, snp.broadcast_to(snp.astype(scl, avg.dtype), avg.shape)
    return avg


# --- scans --------------------------------------------------------------------------------------

def _scan_operand(a, axis, dtype):
    x = snp.asarray(a)
    if dtype is not None:
        x = snp.astype(x, dtype)
    elif x.dtype == np.bool_:
        x = snp.astype(x, "int64")
    if axis is None:
        return snp.ravel(x), 0
    return x, axis_index(axis, x.ndim)


def cumsum(a, axis=None, dtype=None, out=None):
    """Running sums along ``axis`` (of the flattened array when None)."""
    if not traced(a):
        return np.cumsum(a, axis=axis, dtype=dtype, out=out)
    no_out(out, "cumsum")
    x, axis = _scan_operand(a, axis, dtype)
    if x.ndim == 0:
        return snp.reshape(x, (1,))
    return Tracer(bind("cumsum", x.irvar, axis=axis, reverse=False))


def cumprod(a, axis=None, dtype=None, out=None):
    """Running products along ``axis``: the recurrence h_i = x_i h_(i-1) from h_0 = x_0, whose
    gradient prod_(k<j) x_k * (reverse recurrence of the adjoint) is exact at zeros."""
    if not traced(a):
        return np.cumprod(a, axis=axis, dtype=dtype, out=out)
    no_out(out, "cumprod")
    x, axis = _scan_operand(a, axis, dtype)
    if x.ndim == 0:
        return snp.reshape(x, (1,))
    return Tracer(cumulative.cumprod(x.irvar, axis))


def _cumulative(a, axis, dtype, out, include_initial, name, running, identity):
    """NumPy 2's cumulative_sum/cumulative_prod: ``axis`` is required above one dimension, and
    ``include_initial`` starts the result with the identity."""
    no_out(out, name)
    x = snp.asarray(a)
    if x.ndim == 0:
        raise ValueError(f"{name}: the input must be at least 1-d, got a 0-d array{at()}")
    if axis is None:
        if x.ndim > 1:
            raise ValueError(f"{name}: axis must be specified for arrays with more than one "
                             f"dimension{at()}")
        axis = 0
    axis = axis_index(axis, x.ndim)
    y = running(x, axis, dtype)
    if not include_initial:
        return y
    first = tuple(1 if i == axis else d for i, d in enumerate(y.shape))
    return snp.concatenate([snp.full(first, identity, y.dtype), y], axis)


def cumulative_sum(x, /, *, axis=None, dtype=None, out=None, include_initial=False):
    """Running sums (NumPy 2.1): cumsum, optionally starting from 0."""
    if not traced(x):
        return np.cumulative_sum(x, axis=axis, dtype=dtype, out=out,
                                 include_initial=include_initial)
    return _cumulative(x, axis, dtype, out, include_initial, "cumulative_sum", cumsum, 0)


def cumulative_prod(x, /, *, axis=None, dtype=None, out=None, include_initial=False):
    """Running products (NumPy 2.1): cumprod, optionally starting from 1."""
    if not traced(x):
        return np.cumulative_prod(x, axis=axis, dtype=dtype, out=out,
                                  include_initial=include_initial)
    return _cumulative(x, axis, dtype, out, include_initial, "cumulative_prod", cumprod, 1)


# --- extremes, positions, truth ------------------------------------------------------------------

def ptp(a, axis=None, out=None, keepdims=False):
    """max - min (peak to peak)."""
    if not traced(a):
        return np.ptp(a, axis=axis, out=out, keepdims=keepdims)
    no_out(out, "ptp")
    return snp.subtract(snp.max(a, axis, keepdims=keepdims), snp.min(a, axis, keepdims=keepdims))


def _arg(prim, np_fn, a, axis, out, keepdims):
    if not traced(a):
        return np_fn(a, axis=axis, out=out, keepdims=keepdims)
    no_out(out, prim)
    x = snp.asarray(a)
    if axis is None:
        v = bind(prim, snp.ravel(x).irvar)
        return Tracer(ops.reshape(v, (1,) * x.ndim) if keepdims else v)
    axis = axis_index(axis, x.ndim)
    v, _ = ops.move_axes_last(x.irvar, (axis,))
    res = bind(prim, v)
    if keepdims:
        res = ops.reshape(res, tuple(1 if i == axis else d for i, d in enumerate(x.shape)))
    return Tracer(res)


def argmax(a, axis=None, out=None, *, keepdims=False):
    """Position of the first maximum (of the flattened array when axis is None)."""
    return _arg("argmax", np.argmax, a, axis, out, keepdims)


def argmin(a, axis=None, out=None, *, keepdims=False):
    """Position of the first minimum (of the flattened array when axis is None)."""
    return _arg("argmin", np.argmin, a, axis, out, keepdims)


def any(a, axis=None, out=None, keepdims=False):
    """Whether any element is nonzero."""
    if not traced(a):
        return np.any(a, axis=axis, out=out, keepdims=keepdims)
    no_out(out, "any")
    return snp.greater(count_nonzero(a, axis, keepdims=keepdims), 0)


def all(a, axis=None, out=None, keepdims=False):
    """Whether every element is nonzero."""
    if not traced(a):
        return np.all(a, axis=axis, out=out, keepdims=keepdims)
    no_out(out, "all")
    zeros = snp.sum(snp.equal(a, 0), axis, keepdims=keepdims)
    return snp.equal(zeros, 0)


def count_nonzero(a, axis=None, *, keepdims=False):
    """The number of nonzero elements (int64)."""
    if not traced(a):
        return np.count_nonzero(a, axis=axis, keepdims=keepdims)
    return snp.sum(snp.not_equal(a, 0), axis, keepdims=keepdims)


# --- sorting -------------------------------------------------------------------------------------

def argsort(a, axis=-1, kind=None, order=None, *, stable=None):
    """The permutation that sorts ``a`` along ``axis``: stable (ties keep their order), NaN
    last."""
    if not traced(a):
        return np.argsort(a, axis=axis, kind=kind or ("stable" if stable else None), order=order)
    if order is not None:
        raise TypeError(f"argsort(order=...) sorts structured arrays, which symgrad does not "
                        f"trace{at()}")
    x = snp.asarray(a)
    if axis is None:
        x, axis = snp.ravel(x), 0
    return Tracer(bind("argsort", x.irvar, axis=axis_index(axis, x.ndim)))


def sort(a, axis=-1, kind=None, order=None, *, stable=None):
    """``a`` sorted along ``axis``; the gradient follows each element back to its place."""
    if not traced(a):
        return np.sort(a, axis=axis, kind=kind or ("stable" if stable else None), order=order)
    x = snp.asarray(a)
    if axis is None:
        x, axis = snp.ravel(x), 0
    return take_along_axis(x, argsort(x, axis, kind, order), axis)


def _kth(kth, n, what):
    """Validate ``kth`` (an int or a sequence of ints, known while tracing) against axis length n."""
    if isinstance(kth, Tracer):
        raise TypeError(f"{what}: kth must be known while tracing (an int or a list of ints), "
                        f"not a traced value{at()}")
    for k in np.atleast_1d(kth).tolist():
        if not isinstance(k, int) or isinstance(k, bool):
            raise TypeError(f"{what}: kth must be integers, got {k!r}{at()}")
        if isinstance(n, int) and not -n <= k < n:
            raise ValueError(f"{what}: kth(={k}) out of bounds ({n}){at()}")


def partition(a, kth, axis=-1, kind="introselect", order=None):
    """``a`` with each ``kth`` element in its sorted place, the smaller ones before it and the
    larger ones after: here the whole axis sorted (the parts' order is NumPy's to choose)."""
    if not traced(a):
        return np.partition(a, kth, axis=axis, kind=kind, order=order)
    x = snp.asarray(a)
    _kth(kth, x.size if axis is None else x.shape[axis_index(axis, x.ndim)], "partition")
    return sort(x, axis, order=order)


def argpartition(a, kth, axis=-1, kind="introselect", order=None):
    """The indices that partition ``a`` (see ``partition``): here the stable sorting order."""
    if not traced(a):
        return np.argpartition(a, kth, axis=axis, kind=kind, order=order)
    x = snp.asarray(a)
    _kth(kth, x.size if axis is None else x.shape[axis_index(axis, x.ndim)], "argpartition")
    return argsort(x, axis, order=order)


def take_along_axis(arr, indices, axis):
    """``arr`` read at ``indices`` along ``axis`` (NumPy's take_along_axis): one gather from the
    flattened array, so the gradient scatters back and adds up over repeated indices."""
    if not traced(arr, indices):
        return np.take_along_axis(arr, indices, axis)
    x, idx = snp.asarray(arr), snp.asarray(indices)
    if axis is None:
        x, axis = snp.ravel(x), 0
    axis = axis_index(axis, x.ndim)
    if idx.ndim != x.ndim:
        raise ShapeError(f"take_along_axis: indices of shape {idx.shape} need as many "
                         f"dimensions as arr {x.shape}{at()}")
    if not np.issubdtype(idx.dtype, np.integer):
        raise IndexError(f"take_along_axis: indices must be integers, got {idx.dtype}{at()}")
    n = x.shape[axis]
    xv, perm = ops.move_axes_last(x.irvar, (axis,))
    iv, _ = ops.move_axes_last(ops.convert(idx.irvar, "int64"), (axis,))
    try:
        batch = tuple(np.broadcast_shapes(xv.shape[:-1], iv.shape[:-1]))
    except ValueError:
        raise ShapeError(f"take_along_axis: shapes {x.shape} and {idx.shape} do not broadcast "
                         f"outside axis {axis}{at()}") from None
    xv = ops.broadcast_to(xv, batch + (n,))
    iv = ops.broadcast_to(iv, batch + iv.shape[-1:])
    rows = int(np.prod(batch, dtype=np.int64))
    m = iv.shape[-1]
    # Negative positions count from the end; out-of-range ones fail in the gather.
    iv = ops.select(ops.lt(iv, ops.const(0, "int64")), ops.add(iv, ops.const(n, "int64")), iv)
    base = ops.mul(bind("iota", shape=(rows, m), dimension=0, dtype="int64"),
                   ops.const(n, "int64"))
    flat_idx = ops.add(ops.reshape(iv, (rows, m)), base)
    flat_idx = ops.select(ops.lt(ops.reshape(iv, (rows, m)), ops.const(n, "int64")), flat_idx,
                          ops.const(rows * n, "int64"))     # past the end: an index error
    got = bind("gather", ops.reshape(xv, (rows * n,)), ops.reshape(flat_idx, (rows * m,)))
    got = ops.reshape(got, batch + (m,))
    return Tracer(_restore(got, axis))


def _restore(v, axis):
    """Move the last axis of v back to position ``axis``."""
    nd = v.ndim
    perm = list(range(nd - 1))
    perm.insert(axis, nd - 1)
    return ops.transpose(v, tuple(perm))


def searchsorted(a, v, side="left", sorter=None):
    """Insertion positions of ``v`` in the sorted 1-D ``a``: how many elements are < v (left)
    or <= v (right). No gradient."""
    if not traced(a, v, sorter):
        return np.searchsorted(a, v, side=side, sorter=sorter)
    a = snp.asarray(a)
    if a.ndim != 1:
        raise ShapeError(f"searchsorted needs a 1-D sorted array, got shape {a.shape}{at()}")
    if sorter is not None:
        a = snp.getitem(a, sorter)
    if side not in ("left", "right"):
        raise ValueError(f"searchsorted: side must be 'left' or 'right', got {side!r}")
    v = snp.asarray(v)
    col = snp.expand_dims(v, -1)
    below = snp.less(a, col) if side == "left" else snp.less_equal(a, col)
    return snp.sum(below, -1)


def digitize(x, bins, right=False):
    """The index of the bin each element of ``x`` falls in (NumPy's digitize): bins increasing
    or decreasing. Bins known while tracing are checked to be monotonic, as NumPy does; traced
    ones are assumed to be. No gradient."""
    if not traced(x, bins):
        return np.digitize(x, bins, right=right)
    b = snp.asarray(bins)
    if b.ndim != 1:
        raise ValueError(f"digitize: bins must be 1-dimensional, got shape {b.shape}{at()}")
    side = "left" if right else "right"
    n = b.shape[0]
    increasing = searchsorted(b, x, side=side)
    decreasing = snp.subtract(n, searchsorted(snp.flip(b), x, side=side))
    if not isinstance(bins, Tracer):
        steps = np.diff(np.asarray(bins))
        if np.all(steps >= 0):
            return increasing
        if np.all(steps <= 0):
            return decreasing
        raise ValueError(f"digitize: bins must be monotonically increasing or decreasing{at()}")
    return snp.where(snp.less_equal(b[0], b[n - 1]), increasing, decreasing)


def bincount(x, /, weights=None, minlength=0):
    """Counts (or sums of ``weights``) per non-negative integer value in ``x``. The length of
    the result depends on ``max(x)``, so ``x`` must be known while tracing; the weights may be
    traced (their gradient is read back at each element's bin)."""
    if not traced(x, weights):
        return np.bincount(x, weights=weights, minlength=minlength)
    if isinstance(x, Tracer):
        raise TypeError(f"bincount of traced values: its length, max(x) + 1, is not known "
                        f"while tracing{at()}. With n bins known, accumulate into an array "
                        f"of them instead: counts = np.zeros(n); np.add.at(counts, x, weights)")
    idx = np.asarray(x)
    if idx.ndim != 1 or (idx.size and (idx.dtype.kind not in "iu" or idx.min() < 0)):
        raise ValueError(f"bincount: x must be a 1-d array of non-negative integers{at()}")
    w = snp.asarray(weights)
    if w.shape != idx.shape:
        raise ValueError(f"bincount: the weights and x must have the same length, got "
                         f"{w.shape} and {idx.shape}{at()}")
    w = snp.astype(w, "float64")                # NumPy's bincount sums in (and returns) double
    length = builtins.max(int(idx.max()) + 1 if idx.size else 0, minlength)
    return Tracer(bind("scatter_add", w.irvar, ops.const(idx.astype(np.int64), "int64"),
                       shape=(length,)))


def lexsort(keys, axis=-1):
    """The stable order that sorts by the last key, ties broken by the one before, and so on
    (NumPy's lexsort): a stable argsort per key, from the first key to the last."""
    if not traced(keys):
        return np.lexsort(keys, axis=axis)
    keys = list(keys) if isinstance(keys, (list, tuple)) else [keys[i] for i in
                                                                range(snp.asarray(keys).shape[0])]
    if not keys:
        raise TypeError(f"lexsort: need sequence of keys with len > 0{at()}")
    first = snp.asarray(keys[0])
    order = argsort(first, axis)
    for key in keys[1:]:
        k = snp.broadcast_to(snp.asarray(key), first.shape)
        order = take_along_axis(order, argsort(take_along_axis(k, order, axis), axis), axis)
    return order


# --- order statistics ---------------------------------------------------------------------------

def _sorted_lanes(a, axis):
    """(sorted values with the reduced axes flattened into the last one, the kept shape with
    1s where keepdims puts them)."""
    x = snp.asarray(a)
    axes = axes_tuple(axis, x.ndim)
    v, _ = ops.move_axes_last(x.irvar, axes)
    kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    if v.shape[-1] == 0:
        raise ShapeError(f"cannot take an order statistic over an empty axis{at()}")
    return sort(Tracer(v), -1), kept


def _element(s, k):
    return snp.getitem(s, (Ellipsis, k))


def median(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    """The middle element (the mean of the two middle ones for an even count); the gradient
    goes to them."""
    if not traced(a):
        return np.median(a, axis=axis, out=out, overwrite_input=overwrite_input,
                         keepdims=keepdims)
    no_out(out, "median")
    s, kept = _sorted_lanes(as_float(a), axis)
    n = s.shape[-1]
    res = _element(s, n // 2) if n % 2 else snp.divide(
        snp.add(_element(s, n // 2 - 1), _element(s, n // 2)), 2.0)
    return snp.reshape(res, kept) if keepdims else res


_METHODS = ("linear", "lower", "higher", "nearest", "midpoint")


def _quantile_one(s, q, n, method):
    """One quantile of each sorted lane of s (NumPy's _quantile with alpha = beta = 1)."""
    virtual = q * (n - 1)
    lo = int(np.floor(virtual))
    hi = min(lo + 1, n - 1)
    gamma = virtual - lo
    if method == "lower" or (method == "nearest" and not _rounds_up(virtual)):
        return _element(s, lo)
    if method == "higher":
        return _element(s, int(np.ceil(virtual)))
    if method == "nearest":
        return _element(s, min(lo + 1, n - 1))
    a, b = _element(s, lo), _element(s, hi)
    if method == "midpoint":
        gamma = 0.5 if gamma > 0 else 0.0
    # NumPy's _lerp: a + (b - a) t, or b - (b - a)(1 - t) from t = 0.5 on.
    diff = snp.subtract(b, a)
    if gamma >= 0.5:
        return snp.subtract(b, snp.multiply(diff, 1.0 - gamma))
    return snp.add(a, snp.multiply(diff, gamma))


def _rounds_up(virtual):
    # 'nearest' rounds half to even, as np.around does.
    return int(np.around(virtual)) > np.floor(virtual)


def _quantiles(name, a, q, out, method, methods, weights, interpolation, each):
    """What quantile and nanquantile share on traced values: the checks, x as floats (float64
    for a list of q that interpolates, as NumPy's float64 q makes it), ``each(x, qs)`` (one
    result per q, x sorted once), stacked in q's shape."""
    no_out(out, name)
    if weights is not None or interpolation is not None:
        raise TypeError(f"{name}: weights= and interpolation= are not supported on traced "
                        f"values{at()}; use method=")
    if isinstance(q, Tracer):
        raise TypeError(f"{name}: q must be known while tracing (a number or a list), not a "
                        f"traced value{at()}")
    if method not in methods:
        raise ValueError(f"{name}: method {method!r} is not supported on traced values; "
                         f"supported: {', '.join(methods)}")
    qs = np.asarray(q, dtype=np.float64)
    if np.any((qs < 0) | (qs > 1)):
        raise ValueError(f"Quantiles must be in the range [0, 1]{at()}")
    x = as_float(a)
    if qs.ndim and method in ("linear", "midpoint"):
        x = snp.astype(x, np.result_type(x.dtype, np.float64))
    results = each(x, [float(v) for v in qs.ravel()])
    if qs.ndim == 0:
        return results[0]
    stacked = snp.stack(results, 0)
    return snp.reshape(stacked, qs.shape + tuple(stacked.shape[1:]))


def _percentile(quantile_fn, name, a, q, axis, out, overwrite_input, method, keepdims,
                weights, interpolation):
    if isinstance(q, Tracer):
        raise TypeError(f"{name}: q must be known while tracing, not a traced value{at()}")
    return quantile_fn(a, np.true_divide(q, 100), axis, out, overwrite_input, method, keepdims,
                       weights=weights, interpolation=interpolation)


def _numpy_quantile(np_fn, a, q, axis, out, overwrite_input, method, keepdims, weights):
    kw = {} if weights is None else {"weights": weights}
    return np_fn(a, q, axis=axis, out=out, overwrite_input=overwrite_input, method=method,
                 keepdims=keepdims, **kw)


def quantile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
             keepdims=False, *, weights=None, interpolation=None):
    """The q-th quantiles (q in [0, 1], a number or a list known while tracing) over ``axis``;
    the gradient goes to the two elements interpolated between, by their weights."""
    if not traced(a):
        return _numpy_quantile(np.quantile, a, q, axis, out, overwrite_input, method, keepdims,
                               weights)

    def each(x, qs):
        s, kept = _sorted_lanes(x, axis)
        results = [_quantile_one(s, v, s.shape[-1], method) for v in qs]
        return [snp.reshape(r, kept) for r in results] if keepdims else results
    return _quantiles("quantile", a, q, out, method, _METHODS, weights, interpolation, each)


def percentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
               keepdims=False, *, weights=None, interpolation=None):
    """quantile at q / 100."""
    if not traced(a):
        return _numpy_quantile(np.percentile, a, q, axis, out, overwrite_input, method,
                               keepdims, weights)
    return _percentile(quantile, "percentile", a, q, axis, out, overwrite_input, method,
                       keepdims, weights, interpolation)


# --- NaN-ignoring reductions ---------------------------------------------------------------------

def _isnan(x):
    return snp.not_equal(x, x)


def nansum(a, axis=None, dtype=None, out=None, keepdims=False):
    """sum, counting NaN as 0."""
    if not traced(a):
        return np.nansum(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims)
    no_out(out, "nansum")
    x = snp.asarray(a) if dtype is None else snp.astype(a, dtype)
    if not is_float(x):
        return snp.sum(x, axis, keepdims=keepdims)
    return snp.sum(snp.where(_isnan(x), 0.0, x), axis, keepdims=keepdims)


def nanmean(a, axis=None, dtype=None, out=None, keepdims=False):
    """mean of the elements that are not NaN (NaN where there are none)."""
    if not traced(a):
        return np.nanmean(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims)
    no_out(out, "nanmean")
    x = as_float(a, dtype)
    n = snp.sum(snp.equal(x, x), axis, keepdims=keepdims)      # the elements that are not NaN
    return snp.divide(nansum(x, axis, keepdims=keepdims), snp.astype(n, x.dtype))


def _nan_extreme(reduce, fill, a, axis, out, keepdims):
    x = as_float(a)
    nan = _isnan(x)
    best = reduce(snp.where(nan, fill, x), axis, keepdims=keepdims)
    none = snp.equal(snp.sum(snp.equal(x, x), axis, keepdims=keepdims), 0)
    return snp.where(none, np.nan, best)


def nanmax(a, axis=None, out=None, keepdims=False):
    """max ignoring NaN (NaN where every element is NaN)."""
    if not traced(a):
        return np.nanmax(a, axis=axis, out=out, keepdims=keepdims)
    no_out(out, "nanmax")
    return _nan_extreme(snp.max, -np.inf, a, axis, out, keepdims)


def nanmin(a, axis=None, out=None, keepdims=False):
    """min ignoring NaN (NaN where every element is NaN)."""
    if not traced(a):
        return np.nanmin(a, axis=axis, out=out, keepdims=keepdims)
    no_out(out, "nanmin")
    return _nan_extreme(snp.min, np.inf, a, axis, out, keepdims)


def _nan_arg(reduce, fill, name, a, axis, out, keepdims):
    no_out(out, name)
    x = as_float(a)
    nan = _isnan(x)
    everywhere = snp.all(nan, axis=axis, keepdims=keepdims)
    position = reduce(snp.where(nan, fill, x), axis, keepdims=keepdims)
    # An all-NaN slice has no answer: NumPy raises, and so does the compiled function (a
    # guard fails the call when it runs).
    return guard(everywhere, position, f"{name}: All-NaN slice encountered")


def nanargmax(a, axis=None, out=None, *, keepdims=False):
    """argmax ignoring NaN; an all-NaN slice is an error when the function runs, as in NumPy."""
    if not traced(a):
        return np.nanargmax(a, axis=axis, out=out, keepdims=keepdims)
    return _nan_arg(argmax, -np.inf, "nanargmax", a, axis, out, keepdims)


def nanargmin(a, axis=None, out=None, *, keepdims=False):
    """argmin ignoring NaN; an all-NaN slice is an error when the function runs, as in NumPy."""
    if not traced(a):
        return np.nanargmin(a, axis=axis, out=out, keepdims=keepdims)
    return _nan_arg(argmin, np.inf, "nanargmin", a, axis, out, keepdims)


def nanprod(a, axis=None, dtype=None, out=None, keepdims=False):
    """prod, counting NaN as 1."""
    if not traced(a):
        return np.nanprod(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims)
    no_out(out, "nanprod")
    x = snp.asarray(a) if dtype is None else snp.astype(a, dtype)
    if not is_float(x):
        return snp.prod(x, axis, keepdims=keepdims)
    return snp.prod(snp.where(_isnan(x), 1.0, x), axis, keepdims=keepdims)


def nancumsum(a, axis=None, dtype=None, out=None):
    """cumsum, counting NaN as 0."""
    if not traced(a):
        return np.nancumsum(a, axis=axis, dtype=dtype, out=out)
    x = snp.asarray(a)
    return cumsum(snp.where(_isnan(x), 0.0, x) if is_float(x) else x, axis, dtype, out)


def nancumprod(a, axis=None, dtype=None, out=None):
    """cumprod, counting NaN as 1."""
    if not traced(a):
        return np.nancumprod(a, axis=axis, dtype=dtype, out=out)
    x = snp.asarray(a)
    return cumprod(snp.where(_isnan(x), 1.0, x) if is_float(x) else x, axis, dtype, out)


def nanvar(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    """var of the elements that are not NaN: sum((x - nanmean)^2) / (count - ddof)."""
    if not traced(a):
        return np.nanvar(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)
    no_out(out, "nanvar")
    x = as_float(a, dtype)
    kept = snp.equal(x, x)
    n = snp.astype(snp.sum(kept, axis, keepdims=True), x.dtype)
    mean = snp.divide(nansum(x, axis, keepdims=True), n)
    deviation = snp.where(kept, snp.subtract(x, mean), 0.0)
    total = snp.sum(snp.multiply(deviation, snp.conj(deviation)) if x.dtype.kind == "c" else
                    snp.square(deviation), axis, keepdims=keepdims)
    count = n if keepdims else snp.squeeze(n, axis) if axis is not None else snp.reshape(n, ())
    dof = snp.subtract(count, ddof)
    variance = snp.divide(snp.real(total) if x.dtype.kind == "c" else total, dof)
    return snp.where(snp.less_equal(dof, 0), np.nan, variance)      # NumPy: NaN, not inf


def nanstd(a, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
    """sqrt(nanvar), with the gradient 0 (not NaN) where the variance is 0."""
    if not traced(a):
        return np.nanstd(a, axis=axis, dtype=dtype, out=out, ddof=ddof, keepdims=keepdims)
    return safe_sqrt(nanvar(a, axis, dtype, out, ddof, keepdims))


def _nan_lanes(a, axis):
    """(sorted lanes, NaN last, with the reduced axes flattened last; each lane's count of
    numbers as int64 with a trailing axis of 1; the kept shape for keepdims)."""
    s, kept = _sorted_lanes(as_float(a), axis)
    count = snp.sum(snp.logical_not(_isnan(s)), axis=-1, keepdims=True)
    return s, count, kept


def _at_lane(s, k):
    """s[..., k] for a traced int64 index k of shape s.shape[:-1] + (1,), kept >= 0: a lane
    with no numbers (k = -1) reads its first element, a NaN, so its result is NaN, as NumPy's
    (which warns)."""
    return snp.take_along_axis(s, snp.maximum(k, 0), axis=-1)


def _nan_finish(result, kept, keepdims):
    """The trailing axis of 1 off; kept's shape with keepdims."""
    result = snp.reshape(result, result.shape[:-1])
    return snp.reshape(result, kept) if keepdims else result


def nanmedian(a, axis=None, out=None, overwrite_input=False, keepdims=False):
    """The median of the numbers, NaN ignored (NaN where there are none): the mean of the
    middle one or two of each lane's numbers, which sorting puts first; the gradient goes to
    them."""
    if not traced(a):
        return np.nanmedian(a, axis=axis, out=out, overwrite_input=overwrite_input,
                            keepdims=keepdims)
    no_out(out, "nanmedian")
    s, count, kept = _nan_lanes(a, axis)
    lo = snp.floor_divide(snp.subtract(count, 1), 2)
    hi = snp.floor_divide(count, 2)
    middle = snp.divide(snp.add(_at_lane(s, lo), _at_lane(s, hi)), 2.0)
    return _nan_finish(middle, kept, keepdims)


_NAN_METHODS = ("linear", "lower", "higher", "midpoint")


def _nanquantile_one(s, count, q, method):
    """One quantile of each lane's numbers (count of them, first in s): NumPy's virtual index
    (count - 1) q, its two neighbours (the last number when it is the last index), and _lerp."""
    virtual = snp.multiply(snp.astype(snp.subtract(count, 1), "float64"), q)
    below = snp.floor(virtual)
    last = snp.subtract(count, 1)
    lo = snp.minimum(snp.astype(below, "int64"), last)
    if method == "higher":
        return _at_lane(s, snp.minimum(snp.astype(snp.ceil(virtual), "int64"), last))
    if method == "lower":
        return _at_lane(s, lo)
    hi = snp.minimum(snp.add(lo, 1), last)
    a, b = _at_lane(s, lo), _at_lane(s, hi)
    gamma = snp.subtract(virtual, below)
    if method == "midpoint":
        gamma = snp.where(snp.greater(gamma, 0), 0.5, 0.0)
    gamma = snp.astype(gamma, s.dtype)          # NumPy casts gamma to the result's dtype
    diff = snp.subtract(b, a)
    return snp.where(snp.greater_equal(gamma, 0.5),
                     snp.subtract(b, snp.multiply(diff, snp.subtract(1.0, gamma))),
                     snp.add(a, snp.multiply(diff, gamma)))


def nanquantile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
                keepdims=False, *, weights=None, interpolation=None):
    """The q-th quantiles of the numbers, NaN ignored (NaN where there are none); q known while
    tracing; methods linear, lower, higher and midpoint. The gradient goes to the two numbers
    interpolated between, by their weights."""
    if not traced(a):
        return _numpy_quantile(np.nanquantile, a, q, axis, out, overwrite_input, method,
                               keepdims, weights)

    def each(x, qs):
        s, count, kept = _nan_lanes(x, axis)
        return [_nan_finish(_nanquantile_one(s, count, v, method), kept, keepdims) for v in qs]
    return _quantiles("nanquantile", a, q, out, method, _NAN_METHODS, weights, interpolation,
                      each)


def nanpercentile(a, q, axis=None, out=None, overwrite_input=False, method="linear",
                  keepdims=False, *, weights=None, interpolation=None):
    """nanquantile at q / 100."""
    if not traced(a):
        return _numpy_quantile(np.nanpercentile, a, q, axis, out, overwrite_input, method,
                               keepdims, weights)
    return _percentile(nanquantile, "nanpercentile", a, q, axis, out, overwrite_input, method,
                       keepdims, weights, interpolation)


def isin(element, test_elements, assume_unique=False, invert=False, *, kind=None):
    """Elementwise: whether each element equals one of ``test_elements`` (a comparison with
    every test element: len(test_elements) comparisons per element). No gradient."""
    if not traced(element, test_elements):
        return np.isin(element, test_elements, assume_unique=assume_unique, invert=invert,
                       kind=kind)
    e = snp.asarray(element)
    t = snp.ravel(snp.asarray(test_elements))
    found = snp.any(snp.equal(snp.expand_dims(e, -1), t), axis=-1)
    return snp.logical_not(found) if invert else found


# --- covariance and correlation ----------------------------------------------------------------

def _ndmin2(x):
    return snp.reshape(x, (1,) * (2 - x.ndim) + tuple(x.shape)) if x.ndim < 2 else x


def _weights(w, name, n):
    """fweights/aweights as a float vector of the n observations; NumPy's checks of their values
    (whole, non-negative) where they are known while tracing."""
    if not isinstance(w, Tracer):
        w = np.asarray(w, dtype=float)
        if name == "fweights" and not np.all(w == np.around(w)):
            raise TypeError(f"cov: fweights must be integer{at()}")
        if np.any(w < 0):
            raise ValueError(f"cov: {name} cannot be negative{at()}")
    elif not is_float(w):
        w = snp.astype(w, "float64")
    if w.ndim > 1:
        raise ShapeError(f"cov: cannot handle multidimensional {name} (shape {w.shape}){at()}")
    if w.shape[0] != n:
        raise ShapeError(f"cov: incompatible numbers of samples ({n}) and {name} "
                         f"({w.shape[0]}){at()}")
    return w


def cov(m, y=None, rowvar=True, bias=False, ddof=None, fweights=None, aweights=None, *,
        dtype=None):
    """The covariance matrix of the variables (rows of ``m``, or columns when not ``rowvar``;
    ``y`` adds variables), with frequency and/or analytic weights, as NumPy computes it.
    Traced weights are not checked for being whole or non-negative."""
    if not traced(m, y, fweights, aweights):
        return np.cov(m, y, rowvar, bias, ddof, fweights, aweights, dtype=dtype)
    if ddof is not None:
        ddof = static_ints(ddof, "cov's ddof")
        if ddof != int(ddof):
            raise ValueError("ddof must be integer")
        ddof = int(ddof)
    m = snp.asarray(m)
    if m.ndim > 2:
        raise ShapeError(f"cov: m has more than 2 dimensions (shape {m.shape}){at()}")
    if y is not None:
        y = snp.asarray(y)
        if y.ndim > 2:
            raise ShapeError(f"cov: y has more than 2 dimensions (shape {y.shape}){at()}")
    if dtype is None:
        dtype = np.result_type(*[np.dtype(v.dtype) for v in (m, y) if v is not None],
                               np.float64)
    X = _ndmin2(snp.astype(m, dtype))
    if not rowvar and m.ndim != 1:
        X = snp.transpose(X)
    if X.shape[0] == 0:
        return np.array([]).reshape(0, 0)
    if y is not None:
        Y = _ndmin2(snp.astype(y, dtype))
        if not rowvar and Y.shape[0] != 1:
            Y = snp.transpose(Y)
        X = snp.concatenate([X, Y], 0)
    if ddof is None:
        ddof = 0 if bias else 1
    n = X.shape[1]
    w = None
    if fweights is not None:
        w = _weights(fweights, "fweights", n)
    if aweights is not None:
        aweights = _weights(aweights, "aweights", n)
        w = aweights if w is None else snp.multiply(w, aweights)
    if w is None:
        avg = snp.mean(X, 1)            # NumPy's average without weights
        fact = n - ddof
        if not isinstance(fact, int):   # a run-time number of observations
            fact = Tracer(size_value(fact, "float64"))
    else:
        avg, w_sum = average(X, axis=1, weights=w, returned=True)
        w_sum = snp.getitem(w_sum, 0)
        if ddof == 0:
            fact = w_sum
        elif aweights is None:
            fact = snp.subtract(w_sum, ddof)
        else:
            fact = snp.subtract(w_sum, snp.divide(snp.multiply(ddof, snp.sum(
                snp.multiply(w, aweights))), w_sum))
    if isinstance(fact, Tracer):
        fact = snp.where(snp.less_equal(fact, 0), 0.0, fact)    # NumPy also warns
        scale = snp.divide(1, fact)
    else:
        if fact <= 0:
            warnings.warn("Degrees of freedom <= 0 for slice", RuntimeWarning, stacklevel=2)
            fact = 0.0
        scale = np.true_divide(1, fact)
    # NumPy subtracts and scales in place: X and c keep X's dtype.
    X = snp.astype(snp.subtract(X, snp.expand_dims(avg, 1)), X.dtype)
    X_T = snp.transpose(X if w is None else snp.multiply(X, w))
    if np.dtype(X.dtype).kind == "c":
        X_T = snp.conj(X_T)
    c = snp.matmul(X, X_T)
    c = snp.astype(snp.multiply(c, scale), c.dtype)
    return snp.squeeze(c)


def corrcoef(x, y=None, rowvar=True, *, dtype=None):
    """Pearson correlation coefficients: cov normalized by the standard deviations, clipped to
    [-1, 1] (each part, for complex values) as NumPy does; at a clip bound the gradient passes
    through."""
    if not traced(x, y):
        return np.corrcoef(x, y, rowvar, dtype=dtype)
    c = cov(x, y, rowvar, dtype=dtype)
    if c.ndim != 2:
        return snp.divide(c, c)         # one variable: 1, or NaN for a variance of 0, inf, NaN
    stddev = snp.sqrt(snp.real(snp.diagonal(c)))
    c = snp.divide(c, snp.expand_dims(stddev, 1))
    c = snp.divide(c, snp.expand_dims(stddev, 0))
    if np.dtype(c.dtype).kind == "c":
        return snp.add(snp.clip(snp.real(c), -1, 1), snp.multiply(snp.clip(snp.imag(c), -1, 1),
                                                                   1j))
    return snp.clip(c, -1, 1)
