"""NumPy's functions whose result's length depends on the values, given a length: ``nonzero``,
``flatnonzero``, ``argwhere`` and ``unique`` with JAX's ``size=``/``fill_value=`` convention
(``jax.numpy.nonzero(x, size=k)``), the way a compiled function can run them.

With ``size=k`` the result holds the first k entries NumPy would return, padded with
``fill_value`` when there are fewer (nonzero: default 0; unique: default the smallest value, its
first index, and count 0). Without ``size`` a traced argument is an error that says so. On plain
arrays NumPy computes and the result is cut or padded the same way (the oracle the tests use).

On traced values the k entries are found by compaction: the running count of the selected
elements (a cumsum) numbers them, and an argmax over (k, n) comparisons finds the position of
each number; ``unique`` does this on the sorted values, where each run of equal values starts a
new number. So the work is k * n comparisons (unique adds a sort), and the values' gradient is
that of the gathers (and of the sort).

The names whose result's shape depends on the values and which have no size= form here
(``intersect1d``, ``trim_zeros``, ``roots``, ...) are recorded with what to use instead, so
their error says so (``frontend.tracer.data_dependent``).
"""
from __future__ import annotations

import numpy as np

from symgrad.frontend.tracer import data_dependent, shape_depends_on_values
from symgrad.numpy._common import at, snp, static_ints, traced

__all__ = ["nonzero", "flatnonzero", "argwhere", "unique"]


def _size(size, name):
    size = static_ints(size, f"{name}'s size")
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 0:
        raise ValueError(f"{name}: size must be a non-negative int, got {size!r}{at()}")
    return int(size)


def _cut_or_pad(v, size, fill):
    """The first ``size`` entries of the 1-D NumPy array ``v``, padded with ``fill``."""
    v = np.asarray(v)
    return np.concatenate([v[:size], np.full(max(0, size - len(v)), fill, v.dtype)])


def _numbered(selected, size):
    """For the 1-D traced bool ``selected``: the position of its j-th True for j < size (int64)
    and whether there is one. The cumsum numbers the Trues; row j of the (size, n) comparison
    is true from the j-th True on, so its argmax is that True's position."""
    n = selected.shape[0]
    if size == 0 or n == 0:
        return snp.zeros((size,), "int64"), snp.zeros((size,), "bool")
    number = snp.subtract(snp.cumsum(snp.astype(selected, "int64")), 1)
    hit = snp.logical_and(snp.equal(snp.reshape(number, (1, n)),
                                    snp.reshape(snp.arange(size), (size, 1))),
                          snp.reshape(selected, (1, n)))
    return snp.argmax(hit, axis=1), snp.any(hit, axis=1)


def _fills(fill_value, ndim, name):
    if fill_value is None:
        return (0,) * ndim
    if isinstance(fill_value, (tuple, list)):
        if len(fill_value) != ndim:
            raise ValueError(f"{name}: fill_value must be a scalar or a tuple of length {ndim}, "
                             f"got {fill_value!r}{at()}")
        return tuple(fill_value)
    return (fill_value,) * ndim


def nonzero(a, *, size=None, fill_value=None):
    """The indices of the nonzero elements, one int64 array per axis (C order). Traced: only
    with ``size`` (JAX's convention): the first ``size`` of them, padded with ``fill_value``
    (default 0; a tuple gives one per axis)."""
    if not traced(a):
        if size is None:
            return np.nonzero(a)
        a = np.asarray(a)
        if a.ndim == 0:
            raise ValueError("Calling nonzero on 0d arrays is not allowed. Use "
                             "np.atleast_1d(scalar).nonzero() instead.")
        fills = _fills(fill_value, a.ndim, "nonzero")
        return tuple(_cut_or_pad(i, _size(size, "nonzero"), f)
                     for i, f in zip(np.nonzero(a), fills))
    if size is None:
        raise shape_depends_on_values("nonzero")
    a = snp.asarray(a)
    size = _size(size, "nonzero")
    if a.ndim == 0:
        raise ValueError(f"nonzero: calling nonzero on 0d arrays is not allowed; use "
                         f"atleast_1d(x){at()}")
    fills = _fills(fill_value, a.ndim, "nonzero")
    shape = a.shape
    if not all(isinstance(d, (int, np.integer)) for d in shape):
        raise ValueError(f"nonzero: the shape {shape} has a run-time size{at()}")
    selected = snp.ravel(snp.not_equal(a, 0) if a.dtype != np.bool_ else a)
    position, found = _numbered(selected, size)
    out, stride = [], 1
    for d in reversed(shape):
        out.append(snp.remainder(snp.floor_divide(position, stride), d))
        stride *= int(d)
    return tuple(snp.where(found, c, np.int64(f)) for c, f in zip(reversed(out), fills))


def flatnonzero(a, *, size=None, fill_value=None):
    """The indices of the nonzero elements of the flattened array (traced: only with ``size``,
    as ``nonzero``)."""
    if not traced(a) and size is None:
        return np.flatnonzero(a)
    if traced(a) and size is None:
        raise shape_depends_on_values("flatnonzero")
    return nonzero(snp.ravel(a), size=size, fill_value=fill_value)[0]


def argwhere(a, *, size=None, fill_value=None):
    """The (size, a.ndim) array of the nonzero elements' indices, one row each (traced: only
    with ``size``, as ``nonzero``; ``fill_value`` fills the rows past the last)."""
    if not traced(a) and size is None:
        return np.argwhere(a)
    if traced(a) and size is None:
        raise shape_depends_on_values("argwhere")
    if snp.ndim(a) == 0:
        raise ValueError(f"argwhere(..., size=) of a 0-d array is not supported; use "
                         f"atleast_1d(x){at()}")
    return snp.stack(nonzero(a, size=size, fill_value=fill_value), axis=1)


def unique(ar, return_index=False, return_inverse=False, return_counts=False, axis=None, *,
           equal_nan=True, sorted=True, size=None, fill_value=None):
    """The sorted unique elements (NaNs one with ``equal_nan``), and as asked the index of each
    one's first occurrence, the inverse (each element's position among them, of ``ar``'s shape)
    and the counts. Traced: only with ``size`` (JAX's convention): the first ``size`` unique
    values, padded with ``fill_value`` (default the smallest), the index padded with the
    smallest's, the counts with 0; ``axis`` must be None."""
    extras = (return_index, return_inverse, return_counts)
    if not traced(ar):
        found = np.unique(ar, *extras, axis=axis, equal_nan=equal_nan, sorted=sorted)
        if size is None:
            return found
        return _padded_unique(found, extras, _size(size, "unique"), fill_value)
    if size is None:
        raise shape_depends_on_values("unique")
    size = _size(size, "unique")
    if axis is not None:
        raise TypeError(f"unique(..., axis=...) is not supported on traced values{at()}; "
                        f"flatten, or compare rows with ==")
    flat = snp.ravel(ar)
    n = flat.shape[0]
    if not isinstance(n, (int, np.integer)) or n == 0:
        raise ValueError(f"unique(..., size=): the array must have a nonzero length known while "
                         f"tracing, got {n}{at()}")
    order = snp.argsort(flat)
    s = snp.getitem(flat, order)
    new = snp.not_equal(s[1:], s[:-1])
    if equal_nan:
        new = snp.logical_and(new, snp.logical_not(snp.logical_and(snp.isnan(s[1:]),
                                                                   snp.isnan(s[:-1]))))
    first = snp.concatenate([np.array([True]), new])
    position, found = _numbered(first, size)
    fill = s[0] if fill_value is None else fill_value
    values = snp.where(found, snp.getitem(s, position), snp.astype(snp.asarray(fill), s.dtype))
    if not any(extras):
        return values
    out = [values]
    run = snp.subtract(snp.cumsum(snp.astype(first, "int64")), 1)
    if return_index:
        out.append(snp.where(found, snp.getitem(order, position), order[0]))
    if return_inverse:
        out.append(snp.reshape(snp.getitem(run, snp.argsort(order)), snp.shape(ar)))
    if return_counts:
        counts = snp.equal(snp.reshape(run, (1, n)), snp.reshape(snp.arange(size), (size, 1)))
        out.append(snp.sum(counts, axis=1))
    return tuple(out)


def _padded_unique(found, extras, size, fill_value):
    """NumPy's unique result cut or padded to ``size`` as JAX's unique(size=) does."""
    found = found if any(extras) else (found,)
    values = found[0]
    if len(values) == 0:
        raise ValueError("unique(..., size=): the array must have a nonzero length")
    out = [_cut_or_pad(values, size, values[0] if fill_value is None else fill_value)]
    rest = iter(found[1:])
    if extras[0]:
        index = next(rest)
        out.append(_cut_or_pad(index, size, index[0]))
    if extras[1]:
        out.append(next(rest))
    if extras[2]:
        out.append(_cut_or_pad(next(rest), size, 0))
    return out[0] if len(out) == 1 else tuple(out)


_INSTEAD = {
    "intersect1d": "Compare all pairs instead: isin(a, b) (a mask) and where(mask, a, fill), or "
                   "unique(a, size=k) of the masked values.",
    "setdiff1d": "Use the mask ~isin(a, b) with where, or unique(where(mask, a, fill), size=k).",
    "union1d": "Use unique(concatenate([a, b]), size=k).",
    "setxor1d": "Use masks built with isin, with where, or unique(..., size=k).",
    "trim_zeros": "Keep the shape and mask the zeros (where), or slice with bounds known while "
                  "tracing.",
    "roots": "How many roots NumPy returns depends on the leading and trailing zero "
             "coefficients, and its roots are the eigenvalues of a general matrix, which symgrad "
             "does not trace (linalg.eigvals): find roots outside the compiled function.",
    "unique_values": "Use unique(x, size=k) (JAX's convention: the first k, padded).",
    "unique_counts": "Use unique(x, return_counts=True, size=k).",
    "unique_inverse": "Use unique(x, return_inverse=True, size=k).",
    "unique_all": "Use unique(x, return_index=True, return_inverse=True, return_counts=True, "
                  "size=k).",
}
for _name, _instead in _INSTEAD.items():
    data_dependent(_name, _instead)
data_dependent("nonzero", "Pass size=k (JAX's convention: snp.nonzero(x, size=k, fill_value=0) "
                          "gives the first k indices, padded), or use a mask with where.")
data_dependent("flatnonzero", "Pass size=k (snp.flatnonzero(x, size=k)), or use a mask with where.")
data_dependent("argwhere", "Pass size=k (snp.argwhere(x, size=k)), or use a mask with where.")
data_dependent("unique", "Pass size=k (JAX's convention: snp.unique(x, size=k) gives the first k "
                         "unique values, padded with fill_value).")
