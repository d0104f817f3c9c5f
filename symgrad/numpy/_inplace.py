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
from symgrad.frontend.tracer import IMPLEMENTATIONS, Tracer, implementation


class _Mirror:
    """symgrad.numpy's functions by name, through the registry (symgrad.numpy imports this
    module, so it cannot import symgrad.numpy)."""

    def __getattr__(self, name):
        return implementation(name)


_MIRROR = _Mirror()


def _snp():
    return _MIRROR


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


def _accumulate(x, key, v, sign, what):
    if not isinstance(x, Tracer):
        raise TracingError(f"{what} into a {type(x).__name__} with traced values is not "
                           f"supported{_at(user_location())}: it cannot receive them in place. "
                           f"Create the array traced (np.zeros_like of a traced array), or use "
                           f"a = a + ... instead.")
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


def empty(shape, dtype=None):
    """Zeros: a traced function must not read memory it did not write."""
    return _snp().zeros(shape, dtype)


def empty_like(x, dtype=None):
    return _snp().zeros_like(x, dtype)


def full_like(x, fill_value, dtype=None):
    snp = _snp()
    if not isinstance(x, Tracer):
        return _np.full_like(x, fill_value, dtype=dtype)
    return snp.full(x.shape, fill_value, dtype or x.irvar.dtype)


def copy(x):
    """A new box with the same value: writes to it do not reach ``x``."""
    return Tracer(x.irvar) if isinstance(x, Tracer) else _np.copy(x)


def any(x, axis=None, keepdims=False):
    snp = _snp()
    return snp.greater(snp.sum(snp.not_equal(x, 0) if _dt(x) != "bool" else x, axis,
                               keepdims=keepdims), 0)


def all(x, axis=None, keepdims=False):
    return logical_not(any(logical_not(x), axis, keepdims))


FALLBACKS = {"setitem": setitem, "add.at": add_at, "subtract.at": subtract_at,
             "logical_and": logical_and, "logical_or": logical_or, "logical_not": logical_not,
             "empty": empty, "empty_like": empty_like, "full_like": full_like, "copy": copy,
             "any": any, "all": all}


def register_fallbacks():
    """Register what the mirror has not registered itself (its own definitions win)."""
    for name, fn in FALLBACKS.items():
        IMPLEMENTATIONS.setdefault(name, fn)
