"""Shapes and movement: NumPy's stacking, splitting, repeating, padding, flipping and triangle
functions, as composites of slices, concatenations, transposes, broadcasts and gathers.

Each has NumPy's signature and computes with NumPy on plain arrays. On traced values nothing here
is a primitive of its own: a flip is a slice with step -1, ``pad``'s index modes (edge, reflect,
symmetric, wrap) gather at the positions ``numpy.pad`` itself gives to ``arange(n)``, so they
agree with NumPy in every case, and ``diagonal``/``diag`` read or write every (n+1)-th element of
the flattened matrix; ``vander``'s powers are a cumprod along its columns, as NumPy's running
products; ``block`` concatenates its nested lists innermost first. Their gradients come from those
primitives (slice <-> pad_slice, gather <-> scatter_add, concatenate <-> slices).
"""
from __future__ import annotations

import numpy as np

from symgrad.core import dims, ops
from symgrad.core.primitive import bind
from symgrad.errors import ShapeError
from symgrad.frontend.tracer import Tracer
from symgrad.numpy._common import (at, axes_tuple, axis_index, common_dtype, guard, snp,
                                    static_ints, traced)

__all__ = ["atleast_1d", "atleast_2d", "atleast_3d", "hstack", "vstack", "row_stack", "dstack",
           "column_stack", "append", "split", "array_split", "hsplit", "vsplit", "dsplit",
           "repeat", "tile", "pad", "roll", "flip", "fliplr", "flipud", "rot90", "moveaxis",
           "swapaxes", "rollaxis", "diag", "diagonal", "trace", "tril", "triu", "kron", "cross",
           "diff", "linspace", "logspace", "geomspace", "meshgrid", "take", "vander", "block",
           "matrix_transpose", "unstack", "size", "broadcast_arrays", "diagflat", "delete",
           "insert", "resize", "choose", "compress", "extract", "apply_along_axis",
           "apply_over_axes"]


def _as(x):
    return snp.asarray(x)


def _seq(arrays):
    return [_as(a) for a in arrays]


# --- dimensions -------------------------------------------------------------------------------

def atleast_1d(*arys):
    if not traced(*arys):
        return np.atleast_1d(*arys)
    out = [snp.reshape(a, (1,)) if a.ndim == 0 else a for a in _seq(arys)]
    return out[0] if len(out) == 1 else tuple(out)


def atleast_2d(*arys):
    if not traced(*arys):
        return np.atleast_2d(*arys)
    out = []
    for a in _seq(arys):
        out.append(snp.reshape(a, (1, 1)) if a.ndim == 0 else
                   snp.reshape(a, (1, a.shape[0])) if a.ndim == 1 else a)
    return out[0] if len(out) == 1 else tuple(out)


def atleast_3d(*arys):
    if not traced(*arys):
        return np.atleast_3d(*arys)
    out = []
    for a in _seq(arys):
        shape = {0: (1, 1, 1), 1: (1,) + a.shape + (1,), 2: a.shape + (1,)}.get(a.ndim, a.shape)
        out.append(snp.reshape(a, shape))
    return out[0] if len(out) == 1 else tuple(out)


def _one_or_list(value):
    return value if isinstance(value, tuple) else (value,)


# --- stacking -----------------------------------------------------------------------------------

def hstack(tup, *, dtype=None, casting="same_kind"):
    if not traced(*tup):
        return np.hstack(tup, dtype=dtype, casting=casting)
    arrs = _one_or_list(atleast_1d(*tup))
    return snp.concatenate(arrs, 0 if arrs[0].ndim == 1 else 1)


def vstack(tup, *, dtype=None, casting="same_kind"):
    if not traced(*tup):
        return np.vstack(tup, dtype=dtype, casting=casting)
    return snp.concatenate(_one_or_list(atleast_2d(*tup)), 0)


row_stack = vstack


def dstack(tup):
    if not traced(*tup):
        return np.dstack(tup)
    return snp.concatenate(_one_or_list(atleast_3d(*tup)), 2)


def column_stack(tup):
    if not traced(*tup):
        return np.column_stack(tup)
    cols = [snp.reshape(a, (a.shape[0], 1)) if a.ndim < 2 else a
            for a in (_as(t) if _as(t).ndim else snp.reshape(t, (1,)) for t in tup)]
    return snp.concatenate(cols, 1)


def append(arr, values, axis=None):
    if not traced(arr, values):
        return np.append(arr, values, axis=axis)
    if axis is None:
        return snp.concatenate([snp.ravel(arr), snp.ravel(values)], 0)
    return snp.concatenate([arr, values], axis)


# --- splitting ----------------------------------------------------------------------------------

def _piece(x, axis, start, stop):
    return snp.getitem(x, (slice(None),) * axis + (slice(start, stop),))


def array_split(ary, indices_or_sections, axis=0):
    """Pieces along ``axis``: at the given indices, or that many of sizes differing by <= 1."""
    if not traced(ary):
        return np.array_split(ary, indices_or_sections, axis=axis)
    x = _as(ary)
    axis = axis_index(axis, x.ndim)
    n = x.shape[axis]
    cuts = static_ints(indices_or_sections, "the sections of split")
    if isinstance(cuts, (int, np.integer)):
        if cuts <= 0:
            raise ValueError("number sections must be larger than 0.")
        size, extra = divmod(n, int(cuts))
        sizes = [size + 1] * extra + [size] * (int(cuts) - extra)
        bounds = np.concatenate([[0], np.cumsum(sizes)]).tolist()
    else:
        bounds = [0] + [int(c) for c in cuts] + [n]
    return [_piece(x, axis, a, b) for a, b in zip(bounds[:-1], bounds[1:])]


def split(ary, indices_or_sections, axis=0):
    if not traced(ary):
        return np.split(ary, indices_or_sections, axis=axis)
    x = _as(ary)
    if isinstance(indices_or_sections, (int, np.integer)):
        n = x.shape[axis_index(axis, x.ndim)]
        if n % indices_or_sections:
            raise ValueError("array split does not result in an equal division")
    return array_split(x, indices_or_sections, axis)


def hsplit(ary, indices_or_sections):
    if not traced(ary):
        return np.hsplit(ary, indices_or_sections)
    x = _as(ary)
    return split(x, indices_or_sections, 1 if x.ndim > 1 else 0)


def vsplit(ary, indices_or_sections):
    if not traced(ary):
        return np.vsplit(ary, indices_or_sections)
    if _as(ary).ndim < 2:
        raise ValueError("vsplit only works on arrays of 2 or more dimensions")
    return split(ary, indices_or_sections, 0)


def dsplit(ary, indices_or_sections):
    if not traced(ary):
        return np.dsplit(ary, indices_or_sections)
    if _as(ary).ndim < 3:
        raise ValueError("dsplit only works on arrays of 3 or more dimensions")
    return split(ary, indices_or_sections, 2)


# --- repeating and padding -----------------------------------------------------------------------

def take(a, indices, axis=None, out=None, mode="raise"):
    """Elements at ``indices`` along ``axis`` (of the flattened array when None)."""
    if not traced(a, indices):
        return np.take(a, indices, axis=axis, out=out, mode=mode)
    if out is not None or mode != "raise":
        raise TypeError(f"take: out= and mode= other than 'raise' are not supported on traced "
                        f"values{at()}")
    x = _as(a)
    if axis is None:
        return snp.getitem(snp.ravel(x), indices)
    axis = axis_index(axis, x.ndim)
    if not isinstance(indices, Tracer) and np.ndim(indices) == 0:
        return snp.getitem(x, (slice(None),) * axis + (int(indices),))
    idx = indices if isinstance(indices, Tracer) else np.asarray(indices, dtype=np.int64)
    return snp.getitem(x, (slice(None),) * axis + (idx,))


def repeat(a, repeats, axis=None):
    """Each element repeated ``repeats`` times along ``axis`` (a broadcast for one count, a
    gather for a list of counts)."""
    if not traced(a):
        return np.repeat(a, repeats, axis=axis)
    x = _as(a)
    if axis is None:
        x, axis = snp.ravel(x), 0
    axis = axis_index(axis, x.ndim)
    reps = static_ints(repeats, "repeats")
    if np.ndim(reps) == 0 or np.size(reps) == 1:
        r = int(np.ravel(reps)[0])
        n = x.shape[axis]
        y = snp.expand_dims(x, axis + 1)
        y = snp.broadcast_to(y, x.shape[:axis + 1] + (r,) + x.shape[axis + 1:])
        return snp.reshape(y, x.shape[:axis] + (n * r,) + x.shape[axis + 1:])
    return take(x, np.repeat(np.arange(x.shape[axis]), reps), axis)


def tile(A, reps):
    """``A`` repeated ``reps`` times along each axis (a broadcast and a reshape)."""
    if not traced(A):
        return np.tile(A, reps)
    x = _as(A)
    reps = (reps,) if isinstance(reps, (int, np.integer)) else tuple(static_ints(reps, "reps"))
    nd = max(x.ndim, len(reps))
    shape = (1,) * (nd - x.ndim) + tuple(x.shape)
    reps = (1,) * (nd - len(reps)) + tuple(int(r) for r in reps)
    inter = sum(((1, d) for d in shape), ())
    y = snp.reshape(x, inter)
    y = snp.broadcast_to(y, sum(((r, d) for r, d in zip(reps, shape)), ()))
    return snp.reshape(y, tuple(r * d for r, d in zip(reps, shape)))


_PAD_INDEX_MODES = ("edge", "reflect", "symmetric", "wrap")


def pad(array, pad_width, mode="constant", **kwargs):
    """NumPy's pad. ``constant`` joins constant blocks; ``edge``, ``reflect``, ``symmetric`` and
    ``wrap`` gather at the positions numpy.pad gives arange(n), so they agree in every case."""
    if not traced(array):
        return np.pad(array, pad_width, mode=mode, **kwargs)
    x = _as(array)
    if mode not in ("constant",) + _PAD_INDEX_MODES:
        raise NotImplementedError(f"pad(mode={mode!r}) is not supported on traced values{at()}; "
                                  f"supported: constant, {', '.join(_PAD_INDEX_MODES)}")
    unknown = set(kwargs) - ({"constant_values"} if mode == "constant" else {"reflect_type"})
    if unknown:
        raise TypeError(f"pad(mode={mode!r}) got unsupported keyword(s) {sorted(unknown)}")
    widths = np.broadcast_to(np.asarray(static_ints(pad_width, "pad_width"), dtype=np.int64),
                             (x.ndim, 2))
    if np.any(widths < 0):
        raise ValueError("index can't contain negative values")
    values = np.broadcast_to(np.asarray(kwargs.get("constant_values", 0)), (x.ndim, 2))
    for axis, (before, after) in enumerate(widths.tolist()):
        if before == 0 and after == 0:
            continue
        if mode == "constant":
            parts = []
            for width, value in ((before, values[axis, 0]), (after, values[axis, 1])):
                shape = x.shape[:axis] + (width,) + x.shape[axis + 1:]
                parts.append(snp.full(shape, value, dtype=x.dtype) if width else None)
            x = snp.concatenate([p for p in (parts[0], x, parts[1]) if p is not None], axis)
        else:
            extra = {"reflect_type": kwargs["reflect_type"]} if "reflect_type" in kwargs else {}
            if extra.get("reflect_type", "even") != "even":
                raise NotImplementedError("pad(reflect_type='odd') is not supported on traced "
                                          "values")
            if x.shape[axis] == 0:
                raise ValueError(f"can't extend empty axis {axis} using modes other than "
                                 f"'constant' or 'empty'")
            positions = np.pad(np.arange(x.shape[axis]), (before, after), mode=mode, **extra)
            x = take(x, positions, axis)
    return x


# --- moving and flipping -------------------------------------------------------------------------

def roll(a, shift, axis=None):
    if not traced(a):
        return np.roll(a, shift, axis=axis)
    x = _as(a)
    if axis is None:
        return snp.reshape(roll(snp.ravel(x), shift, 0), x.shape)
    shifts = np.broadcast_arrays(np.asarray(static_ints(shift, "shift")), np.asarray(axis))
    for s, ax in zip(shifts[0].ravel().tolist(), shifts[1].ravel().tolist()):
        ax = axis_index(ax, x.ndim)
        n = x.shape[ax]
        k = s % n if n else 0
        if k:
            x = snp.concatenate([_piece(x, ax, n - k, None), _piece(x, ax, None, n - k)], ax)
    return x


def flip(m, axis=None):
    """Reversed along ``axis`` (all axes when None): slices with step -1."""
    if not traced(m):
        return np.flip(m, axis)
    x = _as(m)
    axes = axes_tuple(axis, x.ndim)
    return snp.getitem(x, tuple(slice(None, None, -1) if i in axes else slice(None)
                                for i in range(x.ndim)))


def fliplr(m):
    if not traced(m):
        return np.fliplr(m)
    if _as(m).ndim < 2:
        raise ValueError("Input must be >= 2-d.")
    return flip(m, 1)


def flipud(m):
    if not traced(m):
        return np.flipud(m)
    if _as(m).ndim < 1:
        raise ValueError("Input must be >= 1-d.")
    return flip(m, 0)


def rot90(m, k=1, axes=(0, 1)):
    """Rotated by 90 degrees k times in the plane of ``axes`` (NumPy's flips and transposes)."""
    if not traced(m):
        return np.rot90(m, k, axes)
    x = _as(m)
    if len(axes) != 2 or axis_index(axes[0], x.ndim) == axis_index(axes[1], x.ndim):
        raise ValueError("len(axes) must be 2 and the axes must be different.")
    k %= 4
    if k == 0:
        return x
    if k == 2:
        return flip(flip(x, axes[0]), axes[1])
    perm = list(range(x.ndim))
    a0, a1 = axis_index(axes[0], x.ndim), axis_index(axes[1], x.ndim)
    perm[a0], perm[a1] = perm[a1], perm[a0]
    if k == 1:
        return snp.transpose(flip(x, axes[1]), perm)
    return flip(snp.transpose(x, perm), axes[1])


def moveaxis(a, source, destination):
    if not traced(a):
        return np.moveaxis(a, source, destination)
    x = _as(a)
    src = [axis_index(s, x.ndim) for s in np.atleast_1d(source).tolist()]
    dst = [axis_index(d, x.ndim) for d in np.atleast_1d(destination).tolist()]
    if len(src) != len(dst):
        raise ValueError("`source` and `destination` arguments must have the same number of "
                         "elements")
    for name, axes in (("source", src), ("destination", dst)):
        if len(set(axes)) != len(axes):
            raise ValueError(f"repeated axis in `{name}` argument{at()}")
    order = [n for n in range(x.ndim) if n not in src]
    for d, s in sorted(zip(dst, src)):
        order.insert(d, s)
    return snp.transpose(x, order)


def swapaxes(a, axis1, axis2):
    if not traced(a):
        return np.swapaxes(a, axis1, axis2)
    x = _as(a)
    perm = list(range(x.ndim))
    i, j = axis_index(axis1, x.ndim), axis_index(axis2, x.ndim)
    perm[i], perm[j] = perm[j], perm[i]
    return snp.transpose(x, perm)


def rollaxis(a, axis, start=0):
    if not traced(a):
        return np.rollaxis(a, axis, start)
    x = _as(a)
    axis = axis_index(axis, x.ndim)
    if not -x.ndim <= start <= x.ndim:
        raise ShapeError(f"start {start} is out of bounds for {x.ndim} dimensions{at()}")
    start = start + x.ndim if start < 0 else start
    if axis < start:
        start -= 1
    if axis == start:
        return x
    return moveaxis(x, axis, start)


# --- diagonals and triangles ---------------------------------------------------------------------

def _diag_count(n1, n2, offset):
    return max(0, min(n1, n2 - offset) if offset >= 0 else min(n1 + offset, n2))


def diagonal(a, offset=0, axis1=0, axis2=1):
    """The diagonal over ``axis1``, ``axis2``, as a new last axis: every (n2 + 1)-th element of
    the flattened pair of axes, from the offset."""
    if not traced(a):
        return np.diagonal(a, offset, axis1, axis2)
    x = _as(a)
    if x.ndim < 2:
        raise ValueError("diag requires an array of at least two dimensions")
    i, j = axis_index(axis1, x.ndim), axis_index(axis2, x.ndim)
    if i == j:
        raise ValueError("axis1 and axis2 cannot be the same")
    rest = [d for d in range(x.ndim) if d not in (i, j)]
    y = snp.transpose(x, rest + [i, j]).irvar
    n1, n2 = y.shape[-2:]
    batch = y.shape[:-2]
    count = _diag_count(n1, n2, offset)
    if count == 0:
        return snp.zeros(batch + (0,), dtype=x.dtype)
    flat = ops.reshape(y, batch + (n1 * n2,))
    start = offset if offset >= 0 else -offset * n2
    nd = flat.ndim
    return Tracer(bind("slice", flat, start=(0,) * (nd - 1) + (start,),
                       step=(1,) * (nd - 1) + (n2 + 1,), shape=batch + (count,)))


def diag(v, k=0):
    """For 1-D v, the square matrix with v on its k-th diagonal (zeros around: the adjoint of a
    strided slice); for 2-D v, its k-th diagonal."""
    if not traced(v):
        return np.diag(v, k)
    x = _as(v)
    if x.ndim == 2:
        return diagonal(x, k)
    if x.ndim != 1:
        raise ValueError("Input must be 1- or 2-d.")
    n = x.shape[0] + abs(k)
    start = k if k >= 0 else -k * n
    flat = bind("pad_slice", x.irvar, start=(start,), step=(n + 1,), shape=(n * n,))
    return Tracer(ops.reshape(flat, (n, n)))


def trace(a, offset=0, axis1=0, axis2=1, dtype=None, out=None):
    if not traced(a):
        return np.trace(a, offset, axis1, axis2, dtype, out)
    if out is not None:
        raise TypeError(f"trace(..., out=...) is not supported on traced values{at()}")
    d = diagonal(a, offset, axis1, axis2)
    return snp.sum(d if dtype is None else snp.astype(d, dtype), -1)


def _triangle(m, k, keep_lower):
    x = _as(m)
    if x.ndim < 2:
        raise ShapeError(f"{'tril' if keep_lower else 'triu'} of a {x.ndim}-d array: symgrad "
                         f"traces it for arrays of at least 2 dimensions{at()}")
    shape = x.shape
    rows = bind("iota", shape=shape, dimension=x.ndim - 2, dtype="int64")
    cols = bind("iota", shape=shape, dimension=x.ndim - 1, dtype="int64")
    diff = ops.sub(cols, rows)
    keep = (bind("le", diff, ops.const(k, "int64")) if keep_lower
            else ops.ge(diff, ops.const(k, "int64")))
    return snp.where(Tracer(keep), x, snp.zeros((), dtype=x.dtype))


def tril(m, k=0):
    """Zeros above the k-th diagonal."""
    if not traced(m):
        return np.tril(m, k)
    return _triangle(m, k, True)


def triu(m, k=0):
    """Zeros below the k-th diagonal."""
    if not traced(m):
        return np.triu(m, k)
    return _triangle(m, k, False)


# --- products of shapes --------------------------------------------------------------------------

def kron(a, b):
    """Kronecker product: the outer product with each pair of axes merged."""
    if not traced(a, b):
        return np.kron(a, b)
    x, y = _as(a), _as(b)
    nd = max(x.ndim, y.ndim)
    xs = (1,) * (nd - x.ndim) + tuple(x.shape)
    ys = (1,) * (nd - y.ndim) + tuple(y.shape)
    xi = snp.reshape(x, sum(((d, 1) for d in xs), ()))
    yi = snp.reshape(y, sum(((1, d) for d in ys), ()))
    return snp.reshape(snp.multiply(xi, yi), tuple(p * q for p, q in zip(xs, ys)))


def cross(a, b, axisa=-1, axisb=-1, axisc=-1, axis=None):
    """The cross product of 3-vectors (and of 2-vectors: its z component, or a 3-vector when
    one operand has 3 components), along the given axes."""
    if not traced(a, b):
        return np.cross(a, b, axisa, axisb, axisc, axis)
    if axis is not None:
        axisa = axisb = axisc = axis
    x = moveaxis(_as(a), axisa, -1)
    y = moveaxis(_as(b), axisb, -1)
    na, nb = x.shape[-1], y.shape[-1]
    if na not in (2, 3) or nb not in (2, 3):
        raise ValueError("incompatible dimensions for cross product\n(dimension must be 2 or 3)")
    c = lambda v, i: snp.getitem(v, (Ellipsis, i))  # noqa: E731
    a0, a1, b0, b1 = c(x, 0), c(x, 1), c(y, 0), c(y, 1)
    z = snp.subtract(snp.multiply(a0, b1), snp.multiply(a1, b0))
    if na == 2 and nb == 2:
        return z
    a2 = c(x, 2) if na == 3 else None
    b2 = c(y, 2) if nb == 3 else None
    if a2 is None:
        comps = [snp.multiply(a1, b2), snp.negative(snp.multiply(a0, b2)), z]
    elif b2 is None:
        comps = [snp.negative(snp.multiply(a2, b1)), snp.multiply(a2, b0), z]
    else:
        comps = [snp.subtract(snp.multiply(a1, b2), snp.multiply(a2, b1)),
                 snp.subtract(snp.multiply(a2, b0), snp.multiply(a0, b2)), z]
    shape = np.broadcast_shapes(*[tuple(v.shape) for v in comps])
    out = snp.stack([snp.broadcast_to(v, shape) for v in comps], -1)
    return moveaxis(out, -1, axisc)


def diff(a, n=1, axis=-1, prepend=np._NoValue, append=np._NoValue):
    """n-th differences along ``axis``: a[1:] - a[:-1], n times."""
    if not traced(a, *(v for v in (prepend, append) if v is not np._NoValue)):
        kw = {k: v for k, v in (("prepend", prepend), ("append", append)) if v is not np._NoValue}
        return np.diff(a, n, axis, **kw)
    x = _as(a)
    axis = axis_index(axis, x.ndim)
    parts = []
    for extra in (prepend, None, append):
        if extra is None:
            parts.append(x)
        elif extra is not np._NoValue:
            e = _as(extra)
            if e.ndim == 0:
                e = snp.broadcast_to(e, x.shape[:axis] + (1,) + x.shape[axis + 1:])
            parts.append(e)
    if len(parts) > 1:
        x = snp.concatenate(parts, axis)
    for _ in range(n):
        x = snp.subtract(_piece(x, axis, 1, None), _piece(x, axis, None, -1))
    return x


def vander(x, N=None, increasing=False):
    """The Vandermonde matrix of 1-D x: columns x**(N-1), ..., x, 1 (reversed when
    ``increasing``), the powers as NumPy's running products (a cumprod along the columns)."""
    if not traced(x):
        return np.vander(x, N, increasing)
    x = _as(x)
    if x.ndim != 1:
        raise ValueError(f"vander: x must be a one-dimensional array or sequence, got shape "
                         f"{x.shape}{at()}")
    n = x.shape[0]
    N = n if N is None else int(static_ints(N, "vander's N"))
    if not isinstance(N, int):
        raise ShapeError(f"vander: N must be known while tracing; x has the run-time length "
                         f"{N}{at()}")
    x = snp.astype(x, np.promote_types(np.dtype(x.dtype), int))
    if N <= 1:
        return snp.ones((n, max(N, 0)), dtype=x.dtype)
    powers = snp.cumprod(snp.broadcast_to(snp.expand_dims(x, 1), (n, N - 1)), axis=1)
    v = snp.concatenate([snp.ones((n, 1), dtype=x.dtype), powers], 1)
    return v if increasing else flip(v, 1)


def _block_depth(arrays, index=()):
    """The nesting depth of lists (0 for an array), with NumPy's errors for tuples, empty lists
    and mismatched depths."""
    where_ = "arrays" + "".join(f"[{i}]" for i in index)
    if isinstance(arrays, tuple):
        raise TypeError(f"{where_} is a tuple. Only lists can be used to arrange blocks, and "
                        f"np.block does not allow implicit conversion from tuple to ndarray{at()}.")
    if not isinstance(arrays, list):
        return 0
    if not arrays:
        raise ValueError(f"List at {where_} cannot be empty{at()}")
    depths = [_block_depth(a, index + (i,)) for i, a in enumerate(arrays)]
    if any(d != depths[0] for d in depths):
        raise ValueError(f"List depths are mismatched in {where_}: its elements are nested "
                         f"{sorted(set(depths))} lists deep{at()}")
    return depths[0] + 1


def _leaves(arrays):
    if isinstance(arrays, list):
        for a in arrays:
            yield from _leaves(a)
    else:
        yield arrays


def _assemble(arrays, depth, list_ndim, result_ndim):
    if depth < list_ndim:
        return snp.concatenate([_assemble(a, depth + 1, list_ndim, result_ndim) for a in arrays],
                               depth - list_ndim)
    a = _as(arrays)
    return snp.reshape(a, (1,) * (result_ndim - a.ndim) + tuple(a.shape))


def block(arrays):
    """An array assembled from nested lists of blocks: the innermost lists join along the last
    axis, the next along the second last, and so on (blocks gain leading axes to match)."""
    leaves = list(_leaves(arrays)) if isinstance(arrays, list) else [arrays]
    if not traced(*leaves):
        return np.block(arrays)
    list_ndim = _block_depth(arrays)
    result_ndim = max([list_ndim] + [_as(a).ndim for a in leaves])
    return _assemble(arrays, 0, list_ndim, result_ndim)


# --- grids ---------------------------------------------------------------------------------------

def linspace(start, stop, num=50, endpoint=True, retstep=False, dtype=None, axis=0):
    """``num`` evenly spaced values from start to stop, as NumPy computes them (i * step +
    start, the last one exactly stop); start and stop may be traced."""
    if not traced(start, stop):
        return np.linspace(start, stop, num, endpoint, retstep, dtype, axis)
    num = int(static_ints(num, "num"))
    if num < 0:
        raise ValueError(f"Number of samples, {num}, must be non-negative.")
    # NumPy's dtype: result_type(start, stop, float(num)), a Python number weak (a float32
    # start with stop=2.0 stays float32).
    dt = common_dtype([start, stop], need_float=True)
    s, e = snp.astype(_as(start), dt), snp.astype(_as(stop), dt)
    div = (num - 1) if endpoint else num
    delta = snp.subtract(e, s)
    shape = np.broadcast_shapes(tuple(s.shape), tuple(e.shape))
    steps = snp.reshape(snp.arange(num, dtype=delta.dtype), (num,) + (1,) * len(shape))
    step = snp.divide(delta, float(div)) if div > 0 else snp.multiply(delta, np.nan)
    y = snp.add(snp.multiply(steps, step), s) if div > 0 else \
        snp.add(snp.multiply(steps, delta), s)
    y = snp.broadcast_to(y, (num,) + shape)
    if endpoint and num > 1:
        y = snp.concatenate([snp.getitem(y, slice(None, -1)),
                             snp.broadcast_to(snp.astype(e, y.dtype), (1,) + shape)], 0)
    if axis != 0:
        y = moveaxis(y, 0, axis)
    if dtype is not None:
        y = snp.astype(y, dtype)
    return (y, step) if retstep else y



def logspace(start, stop, num=50, endpoint=True, base=10.0, dtype=None, axis=0):
    """base ** linspace(start, stop, num), as NumPy's; start, stop and base may be traced."""
    if not traced(start, stop, base):
        return np.logspace(start, stop, num, endpoint, base, dtype, axis)
    y = linspace(start, stop, num, endpoint, axis=axis)
    if not isinstance(base, (float, int)) and snp.ndim(base):
        # NumPy broadcasts an array base with the limits (ndmin) and gives it the new axis; a
        # Python number stays weak (float32 limits give float32).
        ndmax = len(np.broadcast_shapes(*(tuple(snp.shape(v)) for v in (start, stop, base))))
        base = snp.reshape(base, (1,) * (ndmax - snp.ndim(base)) + tuple(snp.shape(base)))
        base = snp.expand_dims(base, axis)
    out = snp.power(base, y)
    return out if dtype is None else snp.astype(out, dtype)


def geomspace(start, stop, num=50, endpoint=True, dtype=None, axis=0):
    """A geometric sequence from start to stop (real, nonzero, of one sign), as NumPy's: the
    logspace of their log10 after dividing by start's sign, with the ends set to start and
    stop exactly. Traced limits that are 0 fail the call when it runs (NumPy's ValueError)."""
    if not traced(start, stop):
        return np.geomspace(start, stop, num, endpoint, dtype, axis)
    num = int(static_ints(num, "geomspace's num"))
    start, stop = snp.multiply(snp.asarray(start), 1.0), snp.multiply(snp.asarray(stop), 1.0)
    if np.dtype(start.dtype).kind == "c" or np.dtype(stop.dtype).kind == "c":
        raise TypeError(f"geomspace of complex limits is not supported on traced values{at()}")
    dt = np.result_type(np.zeros((), start.dtype), np.zeros((), stop.dtype), float(num),
                        np.zeros((), dtype))
    zero = snp.logical_or(snp.equal(start, 0), snp.equal(stop, 0))
    start = guard(zero, snp.astype(start, dt), "geomspace: Geometric sequence cannot include zero")
    stop = snp.astype(stop, dt)
    sign = snp.sign(start)
    start, stop = snp.divide(start, sign), snp.divide(stop, sign)
    out = logspace(snp.log10(start), snp.log10(stop), num, endpoint, 10.0, dt)
    if num > 0:
        shape = tuple(out.shape[1:])
        parts = [snp.broadcast_to(start, (1,) + shape)]
        if num > 1:
            parts.append(out[1:-1] if endpoint else out[1:])
            if endpoint:
                parts.append(snp.broadcast_to(stop, (1,) + shape))
        out = snp.concatenate([snp.astype(q, dt) for q in parts], 0)
    out = snp.multiply(out, sign)
    if axis != 0:
        out = moveaxis(out, 0, axis)
    return out if dtype is None else snp.astype(out, dtype)

def meshgrid(*xi, copy=True, sparse=False, indexing="xy"):
    """Coordinate arrays: each 1-D input broadcast along the others' axes."""
    if not traced(*xi):
        return np.meshgrid(*xi, copy=copy, sparse=sparse, indexing=indexing)
    if indexing not in ("xy", "ij"):
        raise ValueError("Valid values for `indexing` are 'xy' and 'ij'.")
    arrays = [snp.ravel(x) for x in _seq(xi)]
    nd = len(arrays)
    outs = []
    for i, x in enumerate(arrays):
        shape = [1] * nd
        shape[i] = x.shape[0]
        if indexing == "xy" and nd > 1:
            shape[0], shape[1] = shape[1], shape[0]
        outs.append(snp.reshape(x, tuple(shape)))
    if not sparse:
        full = np.broadcast_shapes(*[tuple(o.shape) for o in outs])
        outs = [snp.broadcast_to(o, full) for o in outs]
    return tuple(outs)


# --- NumPy 2's names, sizes, and removing, inserting and choosing elements ------------------------

def matrix_transpose(x, /):
    """The last two axes swapped (NumPy 2, the array API's ``x.mT``)."""
    if not traced(x):
        return np.matrix_transpose(x)
    x = _as(x)
    if x.ndim < 2:
        raise ValueError(f"matrix_transpose: the input must be at least 2-d, got {x.ndim}-d"
                         f"{at()}")
    return swapaxes(x, -1, -2)


def unstack(x, /, *, axis=0):
    """The slices along ``axis``, as a tuple (NumPy 2)."""
    if not traced(x):
        return np.unstack(x, axis=axis)
    x = _as(x)
    if x.ndim == 0:
        raise ValueError(f"unstack: the input must be at least 1-d{at()}")
    y = moveaxis(x, axis_index(axis, x.ndim), 0)
    return tuple(y[i] for i in range(len(y)))


def size(a, axis=None):
    """The number of elements (along ``axis``): known while tracing (a run-time size as its
    symbol)."""
    if not traced(a):
        return np.size(a, axis)
    x = _as(a)
    return x.size if axis is None else x.shape[axis_index(axis, x.ndim)]


def broadcast_arrays(*args):
    """Each argument broadcast to their common shape."""
    if not traced(*args):
        return np.broadcast_arrays(*args)
    xs = [_as(a) for a in args]
    try:
        shape = dims.broadcast(*[x.shape for x in xs])
    except ValueError:
        raise ValueError(f"broadcast_arrays: shapes {', '.join(str(tuple(x.shape)) for x in xs)} "
                         f"do not broadcast together{at()}") from None
    return tuple(snp.broadcast_to(x, shape) for x in xs)


def diagflat(v, k=0):
    """The flattened ``v`` on the k-th diagonal of a square matrix."""
    if not traced(v):
        return np.diagflat(v, k)
    return diag(snp.ravel(_as(v)), k)


def _positions(n, obj, what):
    """``obj`` (an int, a slice or a sequence, known while tracing) as sorted positions < n."""
    if isinstance(obj, Tracer):
        raise TypeError(f"{what}: the positions must be known while tracing (an int, a slice or "
                        f"a list), not a traced value{at()}. Select with where instead.")
    if not isinstance(n, int):
        raise TypeError(f"{what} needs the axis length while tracing, got {n}{at()}")
    if isinstance(obj, slice):
        return np.arange(n)[obj]
    idx = np.asarray(obj)
    if idx.dtype == bool:
        if idx.shape != (n,):
            raise ValueError(f"{what}: a boolean mask of shape {idx.shape} for an axis of "
                             f"length {n}{at()}")
        return np.nonzero(idx)[0]
    if idx.dtype.kind not in "iu" and idx.size:
        raise IndexError(f"{what}: positions must be integers, got {idx.dtype}{at()}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() >= n):
        bad = idx[(idx < -n) | (idx >= n)][0]
        raise IndexError(f"{what}: index {bad} is out of bounds for axis with size {n}{at()}")
    return np.where(idx < 0, idx + n, idx)


def _along(a, axis):
    x = _as(a)
    if axis is None:
        return snp.ravel(x), 0
    return x, axis_index(axis, x.ndim)


def delete(arr, obj, axis=None):
    """``arr`` without the elements at ``obj`` along ``axis`` (flattened when None)."""
    if not traced(arr):
        return np.delete(arr, obj, axis=axis)
    x, axis = _along(arr, axis)
    n = x.shape[axis]
    keep = np.setdiff1d(np.arange(n), _positions(n, obj, "delete"))
    return take(x, keep, axis=axis)


def insert(arr, obj, values, axis=None):
    """``arr`` with ``values`` inserted before the positions ``obj`` along ``axis`` (flattened
    when None), with NumPy's rules: one position inserts the values as a block, several insert
    one value before each (in order, after sorting the positions stably)."""
    if not traced(arr, values):
        return np.insert(arr, obj, values, axis=axis)
    x, axis = _along(arr, axis)
    n = x.shape[axis]
    if isinstance(obj, Tracer) or not isinstance(n, int):
        _positions(n, obj, "insert")             # raises the error that says why
    if isinstance(obj, slice):
        obj = np.arange(n)[obj]
    idx = np.asarray(obj)
    if idx.dtype.kind not in "iu" and idx.size:
        raise IndexError(f"insert: positions must be integers, got {idx.dtype}{at()}")
    idx = idx.astype(np.int64)
    if idx.size and (idx.min() < -n or idx.max() > n):
        bad = idx[(idx < -n) | (idx > n)][0]
        raise IndexError(f"insert: index {bad} is out of bounds for axis {axis} with size {n}"
                         f"{at()}")
    idx = np.where(idx < 0, idx + n, idx)
    v = snp.astype(_as(values), x.dtype)
    if idx.ndim == 0:
        # One position: the values are a block along the axis (NumPy moves their first axis
        # there, after giving them at least as many dimensions as arr).
        while v.ndim < x.ndim:
            v = snp.expand_dims(v, 0)
        v = moveaxis(v, 0, axis)
        k = v.shape[axis]
        slots = np.arange(int(idx), int(idx) + k)
    else:
        k = idx.size
        order = np.argsort(idx.ravel(), kind="stable")
        slots = np.empty(k, dtype=np.int64)
        slots[order] = idx.ravel()[order] + np.arange(k)
    shape = tuple(k if i == axis else d for i, d in enumerate(x.shape))
    v = snp.broadcast_to(v, shape)
    # The result gathers from [arr, values] along the axis: old elements in order, new ones at
    # their slots.
    source = np.empty(n + k, dtype=np.int64)
    is_new = np.zeros(n + k, dtype=bool)
    is_new[slots] = True
    source[slots] = n + np.arange(k)
    source[~is_new] = np.arange(n)
    return take(snp.concatenate([x, v], axis), source, axis=axis)


def resize(a, new_shape):
    """``a`` flattened, repeated as needed and cut to ``new_shape`` (zeros for an empty a)."""
    if not traced(a):
        return np.resize(a, new_shape)
    x = snp.ravel(_as(a))
    shape = (new_shape,) if isinstance(new_shape, (int, np.integer)) else tuple(new_shape)
    total = int(np.prod(shape))
    n = x.shape[0]
    if not isinstance(n, int):
        raise TypeError(f"resize needs the array's size while tracing, got {n}{at()}")
    if n == 0 or total == 0:
        return snp.zeros(shape, x.dtype)
    return snp.reshape(take(x, np.arange(total) % n), shape)


def choose(a, choices, out=None, mode="raise"):
    """Elementwise ``choices[a]``, all broadcast together; mode 'raise' (checked when the
    function runs), 'wrap' or 'clip'. The gradient goes to the choice taken."""
    if not traced(a, choices):
        return np.choose(a, choices, out=out, mode=mode)
    if out is not None:
        raise TypeError(f"choose(..., out=...) is not supported on traced values{at()}")
    if mode not in ("raise", "wrap", "clip"):
        raise ValueError(f"clipmode must be one of 'clip', 'raise', or 'wrap' (got {mode!r})"
                         f"{at()}")
    options = list(choices) if isinstance(choices, (list, tuple)) else \
        [choices[i] for i in range(len(choices))]
    index, *options = broadcast_arrays(snp.astype(_as(a), "int64"), *options)
    n = len(options)
    if mode == "wrap":
        index = snp.remainder(index, n)
    elif mode == "clip":
        index = snp.clip(index, 0, n - 1)
    stacked = snp.stack(options)
    return snp.take_along_axis(stacked, snp.expand_dims(index, 0), 0)[0]


def compress(condition, a, axis=None, out=None):
    """The slices of ``a`` along ``axis`` where ``condition`` holds; the condition must be
    known while tracing (the result's size depends on it)."""
    if not traced(condition, a):
        return np.compress(condition, a, axis=axis, out=out)
    if isinstance(condition, Tracer):
        raise TypeError(f"compress with a traced condition has a data-dependent size{at()}: "
                        f"use np.where(condition, a, 0) (or a mask with a fixed count)")
    if out is not None:
        raise TypeError(f"compress(..., out=...) is not supported on traced values{at()}")
    x, axis = _along(a, axis)
    c = np.asarray(condition).astype(bool).ravel()
    n = x.shape[axis]
    if c.size > n and c[n:].any():
        raise IndexError(f"compress: the condition selects index {int(np.nonzero(c)[0][-1])}, "
                         f"out of bounds for axis {axis} with size {n}{at()}")
    return take(x, np.nonzero(c[:n])[0], axis=axis)


def extract(condition, arr):
    """``arr.ravel()`` where ``condition.ravel()`` holds; the condition must be known while
    tracing."""
    if not traced(condition, arr):
        return np.extract(condition, arr)
    return compress(np.ravel(condition) if not isinstance(condition, Tracer) else condition,
                    snp.ravel(_as(arr)))


# --- applying a function over axes ---------------------------------------------------------------

def apply_along_axis(func1d, axis, arr, *args, **kwargs):
    """``func1d`` applied to each 1-D slice of ``arr`` along ``axis``, the results (all of the
    first one's shape and dtype, as NumPy's buffer) put where the axis was. On traced values
    func1d is traced once per slice (their number must be known while tracing), so the graph
    grows with it."""
    if not traced(arr):
        return np.apply_along_axis(func1d, axis, arr, *args, **kwargs)
    arr = _as(arr)
    nd = arr.ndim
    axis = axis_index(static_ints(axis, "apply_along_axis' axis"), nd)
    outer = tuple(d for i, d in enumerate(arr.shape) if i != axis)
    if not all(isinstance(d, (int, np.integer)) for d in outer):
        raise ShapeError(f"apply_along_axis: the other axes {outer} must have sizes known while "
                         f"tracing (func1d is traced once per slice){at()}")
    view = snp.transpose(arr, [i for i in range(nd) if i != axis] + [axis])
    positions = list(np.ndindex(*outer))
    if not positions or 0 in outer:
        raise ValueError(f"Cannot apply_along_axis when any iteration dimensions are 0{at()}")
    results = [_as(func1d(view[p], *args, **kwargs)) for p in positions]
    first = results[0]
    for r in results[1:]:
        if tuple(r.shape) != tuple(first.shape):
            raise ValueError(f"apply_along_axis: func1d returned shapes {first.shape} and "
                             f"{r.shape} for different slices{at()}")
    buff = snp.reshape(snp.stack([snp.astype(r, first.dtype) for r in results]),
                       outer + tuple(first.shape))
    dims_ = list(range(buff.ndim))
    res_nd = first.ndim
    return snp.transpose(buff, dims_[:axis] + dims_[buff.ndim - res_nd:] +
                         dims_[axis:buff.ndim - res_nd])


def apply_over_axes(func, a, axes):
    """``func(a, axis)`` for each axis in turn, its result given the axis back (length 1) when
    it drops it, as NumPy's."""
    if not traced(a):
        return np.apply_over_axes(func, a, axes)
    val = _as(a)
    n = val.ndim
    for axis in ((axes,) if np.ndim(axes) == 0 else tuple(axes)):
        axis = int(axis) + n if axis < 0 else int(axis)
        res = _as(func(val, axis))
        if res.ndim != val.ndim:
            res = snp.expand_dims(res, axis)
            if res.ndim != val.ndim:
                raise ValueError(f"apply_over_axes: function is not returning an array of the "
                                 f"correct shape{at()}")
        val = res
    return val
