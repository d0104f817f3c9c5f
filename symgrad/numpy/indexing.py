"""Index helpers: NumPy's ``diag_indices_from``, ``tril_indices_from``, ``triu_indices_from``,
``indices``, ``ix_``, ``unravel_index`` and ``ravel_multi_index``.

The ``*_from`` functions read only a traced array's shape, which is known while tracing, so they
return NumPy's own index arrays (constants), and ``a[np.triu_indices_from(a, 1)]`` is an
ordinary gather. ``indices`` builds its grids with ``iota`` (so a run-time size works too).
``unravel_index`` and ``ravel_multi_index`` are integer arithmetic on traced indices: a floor
division and a remainder per axis, or a sum of products with the strides. An index out of range
with mode='raise' cannot be found while tracing; a guard fails the call when it runs (with
NumPy's message, as a RuntimeError), as ``nanargmax`` does for an all-NaN slice.
"""
from __future__ import annotations

import numpy as np

from symgrad.core import dims
from symgrad.core.primitives import bind
from symgrad.core.ir import current_builder
from symgrad.errors import ShapeError
from symgrad.frontend.tracer import Tracer
from symgrad.numpy._common import at, guard, snp, static_ints, traced

__all__ = ["diag_indices_from", "tril_indices_from", "triu_indices_from", "indices", "ix_",
           "unravel_index", "ravel_multi_index"]


def _static_shape(shape, name):
    """``shape`` as Python ints: NumPy's index arrays have a length that must be known now."""
    if not all(isinstance(d, (int, np.integer)) for d in shape):
        raise ShapeError(f"{name}: the array's shape {shape} has a run-time size; the index "
                         f"arrays' length must be known while tracing{at()}")
    return tuple(int(d) for d in shape)


def diag_indices_from(arr):
    """The indices of the main diagonal of an n-dimensional array whose axes are all of one
    length (NumPy's index arrays: only the traced array's shape is read)."""
    if not traced(arr):
        return np.diag_indices_from(arr)
    shape = _static_shape(snp.asarray(arr).shape, "diag_indices_from")
    if len(shape) < 2:
        raise ValueError(f"diag_indices_from: input array must be at least 2-d{at()}")
    if len(set(shape)) != 1:
        raise ValueError(f"diag_indices_from: all dimensions of input must be of equal length, "
                         f"got shape {shape}{at()}")
    return np.diag_indices(shape[0], len(shape))


def _triangle_indices(np_indices, name, arr, k):
    shape = _static_shape(snp.asarray(arr).shape, name)
    if len(shape) != 2:
        raise ValueError(f"{name}: input array must be 2-d, got shape {shape}{at()}")
    return np_indices(shape[-2], k=static_ints(k, f"{name}'s k"), m=shape[-1])


def tril_indices_from(arr, k=0):
    """The indices of the lower triangle of a 2-D array, diagonal ``k`` included."""
    if not traced(arr):
        return np.tril_indices_from(arr, k)
    return _triangle_indices(np.tril_indices, "tril_indices_from", arr, k)


def triu_indices_from(arr, k=0):
    """The indices of the upper triangle of a 2-D array, diagonal ``k`` included."""
    if not traced(arr):
        return np.triu_indices_from(arr, k)
    return _triangle_indices(np.triu_indices, "triu_indices_from", arr, k)


def indices(dimensions, dtype=int, sparse=False):
    """The grid of each axis's index over ``dimensions``: one stacked array, or (``sparse``)
    a tuple of arrays with length 1 on every other axis. While tracing, traced constants (a
    dimension may be a run-time size)."""
    if current_builder() is None:
        return np.indices(dimensions, dtype, sparse)
    dimensions = tuple(static_ints(dimensions, "indices' dimensions"))
    dt = np.dtype(dtype).name
    n = len(dimensions)
    grids = []
    for i, d in enumerate(dimensions):
        shape = tuple(d if j == i else 1 for j in range(n)) if sparse else dimensions
        grids.append(Tracer(bind("iota", shape=shape, dimension=i, dtype=dt)))
    if sparse:
        return tuple(grids)
    if not grids:
        return snp.zeros((0,), dt)
    return snp.stack(grids)


def ix_(*args):
    """Open-mesh index arrays: the k-th 1-D sequence reshaped to length 1 on every axis but the
    k-th. A constant boolean sequence becomes its nonzero positions, as in NumPy; a traced one
    has a data-dependent length and is refused."""
    if not traced(*args):
        return np.ix_(*args)
    n, out = len(args), []
    for k, new in enumerate(args):
        if isinstance(new, Tracer):
            if new.dtype == np.bool_:
                raise IndexError(f"ix_: a traced boolean sequence selects a number of elements "
                                 f"known only from its values, which cannot be compiled{at()}; "
                                 f"use integer positions, or a mask with where")
            if new.ndim != 1:
                raise ValueError(f"ix_: cross index must be 1 dimensional, got shape "
                                 f"{new.shape}{at()}")
        else:
            new = np.ix_(new)[0]            # NumPy's checks, its bool -> positions and dtype
        shape = (1,) * k + (new.shape[0],) + (1,) * (n - k - 1)
        out.append(snp.reshape(new, shape))
    return tuple(out)


# --- flat and multi-dimensional indices ---------------------------------------------------------

def _index_array(x, name):
    """``x`` as a traced int64 array; NumPy's TypeError for floats."""
    x = snp.asarray(x)
    if np.dtype(x.dtype).kind not in "iub":
        raise TypeError(f"{name}: only int indices permitted, got {x.dtype}{at()}")
    return snp.astype(x, "int64")


def _dims_and_strides(shape, order, name):
    shape = static_ints(shape, f"{name}'s shape")
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    for d in shape:
        if not isinstance(d, (int, np.integer)) or d < 0:
            raise ValueError(f"{name}: dimensions must be non-negative ints, got {shape}{at()}")
    if order not in ("C", "F"):
        raise ValueError(f"{name}: only 'C' or 'F' order is permitted, not {order!r}{at()}")
    walk = list(range(len(shape)))[::-1] if order == "C" else list(range(len(shape)))
    strides, step = [0] * len(shape), 1
    for i in walk:
        strides[i] = step
        step *= int(shape[i])
    return tuple(int(d) for d in shape), strides, step


def unravel_index(indices, shape, order="C"):
    """The coordinates in an array of ``shape`` of flat indices (a tuple of int64 arrays of
    ``indices``' shape); an index outside [0, size) fails the call when it runs."""
    if not traced(indices):
        return np.unravel_index(indices, shape, order)
    shape, strides, size = _dims_and_strides(shape, order, "unravel_index")
    idx = _index_array(indices, "unravel_index")
    bad = snp.logical_or(snp.less(idx, 0), snp.greater_equal(idx, size))
    idx = guard(bad, idx, f"unravel_index: index out of bounds for array with size {size}")
    return tuple(snp.remainder(snp.floor_divide(idx, s), d) if d else snp.zeros_like(idx)
                 for d, s in zip(shape, strides))


_MODES = ("raise", "wrap", "clip")


def ravel_multi_index(multi_index, dims_, mode="raise", order="C"):
    """The flat index in an array of shape ``dims_`` of coordinate arrays (broadcast together;
    int64). ``mode`` ('raise', 'wrap', 'clip', or one per axis) as NumPy's; with 'raise' a
    coordinate out of range fails the call when it runs."""
    if not traced(multi_index):
        return np.ravel_multi_index(multi_index, dims_, mode, order)
    shape, strides, _ = _dims_and_strides(dims_, order, "ravel_multi_index")
    coords = [_index_array(c, "ravel_multi_index") for c in multi_index]
    if len(coords) != len(shape):
        raise ValueError(f"ravel_multi_index: parameter multi_index must be a sequence of length "
                         f"{len(shape)}, got {len(coords)}{at()}")
    modes = (mode,) * len(shape) if isinstance(mode, str) else tuple(mode)
    if len(modes) != len(shape) or any(m not in _MODES for m in modes):
        raise ValueError(f"ravel_multi_index: mode must be one of {_MODES} or a sequence of them, "
                         f"one per dimension, got {mode!r}{at()}")
    try:
        batch = dims.broadcast(*[c.shape for c in coords])
    except ValueError:
        raise ValueError("ravel_multi_index: the coordinate arrays of shapes "
                         + ", ".join(str(c.shape) for c in coords)
                         + f" do not broadcast together{at()}") from None
    total, bad = snp.zeros(batch, "int64"), None
    for c, d, s, m in zip(coords, shape, strides, modes):
        if m == "wrap":
            c = snp.remainder(c, d)     # Python's modulo: -1 wraps to d - 1, as NumPy's
        elif m == "clip":
            c = snp.clip(c, 0, d - 1)
        else:
            out = snp.logical_or(snp.less(c, 0), snp.greater_equal(c, d))
            bad = out if bad is None else snp.logical_or(snp.broadcast_to(bad, batch),
                                                         snp.broadcast_to(out, batch))
        total = snp.add(total, snp.multiply(c, s))
    if bad is not None:
        total = guard(bad, total, "ravel_multi_index: invalid entry in coordinates array")
    return total
