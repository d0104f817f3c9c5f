"""In-place updates of traced arrays, as functions that return the updated value.

A ``Tracer`` is a box around an IR value; ``a[key] = v`` (``Tracer.__setitem__``) replaces the
box's value by ``setitem(a, key, v)``: a new value equal to ``a`` except where ``key`` selects,
which holds ``v`` (broadcast, converted to ``a``'s dtype as NumPy does). The elements written are
found by indexing the array of flat positions ``arange(a.size).reshape(a.shape)[key]`` with the
same key, so every kind of index NumPy accepts (ints, slices, ``None``, ``...``, integer arrays,
negative indices) means here what it means there.

Repeated positions follow NumPy: in ``a[[0, 0]] = [1, 2]`` the last write wins, and
``a[[0, 0]] += 1`` adds 1 once (it is ``a[idx] = a[idx] + 1``); ``np.add.at(a, idx, v)``
accumulates every write (``add.at`` below). Reverse mode is exact: the old value's adjoint is
zero where it was overwritten, ``v``'s adjoint is read back at the positions that won.

Cost: one pass over ``a`` per write (a ``select`` between the old array and the scattered
values), whatever the number of elements written.
"""
from __future__ import annotations

import numpy as _np

from symgrad.core import dims as _dims
from symgrad.core import ops
from symgrad.core.ir import user_location
from symgrad.core.primitives import bind
from symgrad.errors import TracingError, where as _at
from symgrad.frontend.tracer import IMPLEMENTATIONS, Tracer
from symgrad.numpy._common import snp as _registered, traced as _traced


def _snp():
    """symgrad.numpy's functions by name, through the registry (symgrad.numpy imports this
    module, so it cannot import symgrad.numpy)."""
    return _registered


def _positions(x, key):
    """The flat positions ``key`` selects in ``x``: a NumPy array when the key holds no traced
    value and the shape is known, else a traced int64 array."""
    keys = key if isinstance(key, tuple) else (key,)
    if not any(isinstance(k, Tracer) for k in keys) and _dims.is_static(x.size):
        try:
            return _np.arange(x.size, dtype=_np.int64).reshape(x.shape)[key]
        except IndexError as e:
            raise IndexError(f"{e}{_at(user_location())}") from None
    snp = _snp()
    return snp.getitem(snp.reshape(snp.arange(x.size), x.shape), key)


def _values(x, v, shape, what):
    """``v`` as ``x``'s dtype, broadcast to ``shape`` (the selected elements' shape)."""
    snp = _snp()
    v = snp.asarray(v)
    if v.dtype != x.dtype:
        v = snp.astype(v, x.dtype)
    try:
        _dims.broadcast(v.shape, shape)
    except ValueError:
        raise ValueError(f"{what}: could not broadcast a value of shape {v.shape} into the "
                         f"selection of shape {tuple(shape)}{_at(user_location())}") from None
    return snp.broadcast_to(v, shape)


def _scatter(values, pos, size):
    """Zeros of (size,) with ``values`` (flat) added at the flat positions ``pos``."""
    idx = pos.irvar if isinstance(pos, Tracer) else ops.const(pos, "int64")
    vals = values.irvar
    if vals.dtype == "bool":
        return bind("ne", bind("scatter_add", ops.convert(vals, "int64"), idx, shape=(size,)),
                    ops.const(0, "int64"))
    return bind("scatter_add", vals, idx, shape=(size,))


def setitem(x, key, v):
    """``x`` with ``x[key] = v`` done (NumPy's semantics, last write wins); a new Tracer."""
    snp = _snp()
    x = snp.asarray(x)
    pos = _positions(x, key)
    values = _values(x, v, pos.shape, "a[...] = v")
    size = x.size
    flat_x = ops.reshape(x.irvar, (size,))
    if isinstance(pos, _np.ndarray):
        flat = pos.reshape(-1)
        if flat.size == 0:
            return x
        # The write that wins at each position is the last one there (NumPy's order).
        rev = flat[::-1]
        _, first_in_rev = _np.unique(rev, return_index=True)
        winners = _np.sort(flat.size - 1 - first_in_rev)
        vals = snp.reshape(values, (-1,))
        if winners.size != flat.size:
            vals = Tracer(bind("gather", vals.irvar, ops.const(winners, "int64")))
        mask = _np.zeros(size, bool)
        mask[flat] = True
        if mask.all():
            new = _scatter(vals, flat[winners], size)
        else:
            new = ops.select(ops.const(mask, "bool"), _scatter(vals, flat[winners], size),
                             flat_x)
        return Tracer(ops.reshape(new, x.shape))
    flat = snp.reshape(pos, (-1,))
    vals = snp.reshape(values, (-1,))
    m = flat.shape[0]
    if not (isinstance(m, int) and m <= 1):
        # Traced positions may repeat: a write wins unless a later one has its position.
        steps = snp.arange(m)
        later = snp.greater(snp.reshape(steps, (1, -1)), snp.reshape(steps, (-1, 1)))
        same = snp.equal(snp.reshape(flat, (-1, 1)), snp.reshape(flat, (1, -1)))
        beaten = snp.greater(snp.sum(IMPLEMENTATIONS["logical_and"](same, later), axis=1), 0)
        vals = snp.where(beaten, snp.zeros_like(vals), vals)
    ones = Tracer(ops.broadcast_to(ops.const(1, "int64"), (m,)))
    written = bind("gt", _scatter(ones, flat, size), ops.const(0, "int64"))
    new = ops.select(written, _scatter(vals, flat, size), flat_x)
    return Tracer(ops.reshape(new, x.shape))


def _target(x, what):
    """``x``, which ``what`` writes in place: it must be a traced array to receive traced values."""
    if not isinstance(x, Tracer):
        raise TracingError(f"{what} into a {type(x).__name__} with traced values is not "
                           f"supported{_at(user_location())}: it cannot receive them in place. "
                           f"Create the array traced (np.zeros_like of a traced array, or "
                           f"x.copy()), or compute a new array (a = a + ..., np.where) instead.")
    return x


def _accumulate(x, key, v, sign, what):
    _target(x, what)
    snp = _snp()
    pos = _positions(x, key)
    values = _values(x, v, pos.shape, what)
    if sign < 0:
        values = snp.negative(values)
    flat = pos.reshape(-1) if isinstance(pos, _np.ndarray) else snp.reshape(pos, (-1,))
    added = _scatter(snp.reshape(values, (-1,)), flat, x.size)
    x.irvar = ops.add(x.irvar, ops.reshape(added, x.shape))


def add_at(x, indices, v=None):
    """``np.add.at(x, indices, v)``: every write accumulates, repeated indices included."""
    _accumulate(x, indices, v, 1, "numpy.add.at")


def subtract_at(x, indices, v=None):
    """``np.subtract.at(x, indices, v)``."""
    _accumulate(x, indices, v, -1, "numpy.subtract.at")


# --- NumPy's functions that write their first argument in place --------------------------------
# Each is a write of the target's flat positions (``a.flat[pos] = vals``) or a select over the
# whole of it, so views of the target see it, as in NumPy, and reverse mode is setitem's.

def _cycled(values, m):
    """``values`` (1-d) repeated to length ``m``, as NumPy's put/putmask/place repeat them."""
    snp = _snp()
    n = values.shape[0]
    if isinstance(n, int) and isinstance(m, int) and n == m:
        return values
    if isinstance(n, int) and n == 0:
        raise ValueError(f"cannot write from an empty array{_at(user_location())}")
    return snp.take(values, snp.remainder(snp.arange(m), n))


def _write_flat(a, pos, v):
    """``a.flat[pos] = v`` (``v`` repeated to the positions' count) in place."""
    snp = _snp()
    flat = snp.reshape(a, (-1,))
    values = snp.reshape(snp.astype(snp.asarray(v), a.dtype), (-1,))
    m = pos.size if isinstance(pos, _np.ndarray) else pos.shape[0]
    a.irvar = snp.reshape(setitem(flat, pos, _cycled(values, m)), a.shape).irvar


def put(a, ind, v, mode="raise"):
    """``a.flat[ind] = v`` in place (``v`` repeated as needed); ``mode`` as NumPy's."""
    if not _traced(a, ind, v):
        return _np.put(a, ind, v, mode=mode)
    _target(a, "numpy.put")
    if mode not in ("raise", "wrap", "clip"):
        raise ValueError(f"clipmode must be one of 'clip', 'raise', or 'wrap' (got {mode!r})"
                         f"{_at(user_location())}")
    snp, n = _snp(), a.size
    if isinstance(ind, Tracer):
        pos = snp.reshape(snp.astype(ind, "int64"), (-1,))
        if mode == "wrap":
            pos = snp.remainder(pos, n)
        elif mode == "clip":
            pos = snp.clip(pos, 0, n - 1)
    else:
        pos = _np.asarray(ind, dtype=_np.int64).reshape(-1)
        if mode == "wrap":
            pos = pos % n
        elif mode == "clip":
            pos = _np.clip(pos, 0, n - 1)
    _write_flat(a, pos, v)


def fill_diagonal(a, val, wrap=False):
    """The main diagonal of ``a`` (2-d, or every axis of one length) set to ``val`` in place."""
    if not _traced(a, val):
        return _np.fill_diagonal(a, val, wrap)
    _target(a, "numpy.fill_diagonal")
    if a.ndim < 2:
        raise ValueError(f"fill_diagonal: array must be at least 2-d, got {a.ndim}-d"
                         f"{_at(user_location())}")
    if not _dims.is_static(a.size):
        raise TracingError(f"fill_diagonal needs the array's shape while tracing, got "
                           f"{a.irvar.type}{_at(user_location())}. Use a[i, i] = ... with "
                           f"i = np.arange(n) instead.")
    shape = tuple(a.shape)
    if a.ndim == 2:
        step, end = shape[1] + 1, None if wrap else shape[1] * shape[1]
    else:
        if len(set(shape)) != 1:
            raise ValueError(f"fill_diagonal: all dimensions of input must be of equal length, "
                             f"got {shape}{_at(user_location())}")
        step, end = 1 + int(_np.cumprod(shape[:-1]).sum()), None
    _write_flat(a, _np.arange(a.size, dtype=_np.int64)[:end:step], val)


def copyto(dst, src, casting="same_kind", where=True):
    """``dst[...] = src`` (broadcast) where ``where`` holds, in place; ``casting`` as NumPy's."""
    if not _traced(dst, src, where):
        return _np.copyto(dst, src, casting=casting, where=where)
    _target(dst, "numpy.copyto")
    snp = _snp()
    src = snp.asarray(src)
    if not _np.can_cast(src.dtype, dst.dtype, casting):
        raise TypeError(f"Cannot cast array data from {src.dtype!r} to {dst.dtype!r} according "
                        f"to the rule {casting!r}{_at(user_location())}")
    value = snp.astype(src, dst.dtype)
    if not (where is True):
        value = snp.where(where, value, dst)
    dst[...] = snp.broadcast_to(value, dst.shape)


def _mask_of(a, mask, what):
    snp = _snp()
    mask = snp.asarray(mask)
    if mask.dtype != _np.bool_:
        mask = snp.not_equal(mask, 0)
    if not _dims.same_shape(mask.shape, a.shape):
        raise ValueError(f"{what}: mask and data must be the same size, got a mask of shape "
                         f"{tuple(mask.shape)} for an array of shape {tuple(a.shape)}"
                         f"{_at(user_location())}")
    return mask


def putmask(a, mask, values):
    """``a.flat[n] = values.flat[n % len(values)]`` where ``mask.flat[n]``, in place."""
    if not _traced(a, mask, values):
        return _np.putmask(a, mask, values)
    _target(a, "numpy.putmask")
    snp = _snp()
    mask = _mask_of(a, mask, "putmask")
    vals = snp.reshape(snp.astype(snp.asarray(values), a.dtype), (-1,))
    a[...] = snp.where(mask, snp.reshape(_cycled(vals, a.size), a.shape), a)


def place(arr, mask, vals):
    """The k-th element where ``mask`` holds set to ``vals.flat[k % len(vals)]``, in place."""
    if not _traced(arr, mask, vals):
        return _np.place(arr, mask, vals)
    _target(arr, "numpy.place")
    snp = _snp()
    values = snp.reshape(snp.astype(snp.asarray(vals), arr.dtype), (-1,))
    n = values.shape[0]
    if isinstance(n, int) and n == 0:
        if not isinstance(mask, Tracer) and not _np.any(mask):
            return None
        raise ValueError(f"place: cannot insert from an empty array{_at(user_location())}")
    mask = _mask_of(arr, mask, "place")
    rank = snp.subtract(snp.cumsum(snp.reshape(mask, (-1,))), 1)       # k of each True
    chosen = snp.take(values, snp.remainder(snp.maximum(rank, 0), n))
    arr[...] = snp.where(mask, snp.reshape(chosen, arr.shape), arr)


def put_along_axis(arr, indices, values, axis):
    """``arr`` written in place at ``indices`` along ``axis`` (the positions
    ``take_along_axis(arr, indices, axis)`` reads), ``values`` broadcast to them."""
    if not _traced(arr, indices, values):
        return _np.put_along_axis(arr, indices, values, axis)
    _target(arr, "numpy.put_along_axis")
    snp = _snp()
    idx = snp.asarray(indices)
    if axis is None:
        if idx.ndim != 1:
            raise ValueError(f"put_along_axis: with axis=None the indices must be 1-d"
                             f"{_at(user_location())}")
        flat = snp.reshape(arr, (-1,))
        arr.irvar = snp.reshape(setitem(flat, idx, values), arr.shape).irvar
        return None
    if idx.ndim != arr.ndim:
        raise ValueError(f"put_along_axis: the indices ({idx.ndim}-d) need as many dimensions "
                         f"as the array ({arr.ndim}-d){_at(user_location())}")
    axis = axis + arr.ndim if axis < 0 else axis
    # The full index: ``indices`` along the axis, every position of the others (broadcast).
    key = tuple(idx if k == axis else _np.arange(arr.shape[k]).reshape(
        [-1 if j == k else 1 for j in range(arr.ndim)]) for k in range(arr.ndim))
    arr[key] = values
    return None


# --- names that plain NumPy code uses and the mirror may not define yet -------------------------

def logical_and(x, y):
    snp = _snp()
    return snp.where(x, snp.not_equal(y, 0) if _dt(y) != "bool" else y, False)


def logical_or(x, y):
    snp = _snp()
    return snp.where(x, True, snp.not_equal(y, 0) if _dt(y) != "bool" else y)


def logical_not(x):
    snp = _snp()
    return snp.equal(x, 0) if _dt(x) != "bool" else snp.where(x, False, True)


def _dt(x):
    return x.irvar.dtype if isinstance(x, Tracer) else _np.asarray(x).dtype.name


def any(x, axis=None, keepdims=False):
    snp = _snp()
    return snp.greater(snp.sum(snp.not_equal(x, 0) if _dt(x) != "bool" else x, axis,
                               keepdims=keepdims), 0)


def all(x, axis=None, keepdims=False):
    return logical_not(any(logical_not(x), axis, keepdims))


FALLBACKS = {"setitem": setitem, "add.at": add_at, "subtract.at": subtract_at,
             "logical_and": logical_and, "logical_or": logical_or, "logical_not": logical_not,
             "any": any, "all": all}


def register_fallbacks():
    """Register what the mirror has not registered itself (its own definitions win)."""
    for name, fn in FALLBACKS.items():
        IMPLEMENTATIONS.setdefault(name, fn)
