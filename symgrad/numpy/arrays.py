"""Whole-array predicates, dtype questions, conversions and simple constructors: NumPy's
``allclose``, ``array_equal``, ``array_equiv``, ``result_type``, ``can_cast``,
``promote_types``, ``common_type``, ``isscalar``, ``iterable``, ``shares_memory``,
``may_share_memory``, ``asanyarray``, ``ascontiguousarray``, ``asfortranarray``, ``require``,
``asarray_chkfinite``, ``identity`` and ``tri``.

- The predicates on values return a traced 0-d bool (NumPy returns a Python bool, which a trace
  cannot know); a question the shapes already answer (``array_equal`` of different shapes)
  returns NumPy's Python bool.
- The dtype questions need only a Tracer's dtype, known while tracing: each hands NumPy the
  dtypes in the traced arrays' places, so NumPy's own promotion rules answer (a 0-d Tracer
  counts as a 0-d array, not as a weak Python scalar, as in NumPy 2).
- A compiled function's arrays have no observable layout, so the conversions return the values
  (with ``dtype``); ``asarray_chkfinite`` guards its result, failing the call when it runs on a
  NaN or an infinity (NumPy's ValueError message, raised as a RuntimeError).
"""
from __future__ import annotations

import numpy as np

from symgrad.core.ir import current_builder
from symgrad.core.primitives import bind
from symgrad.errors import ShapeError
from symgrad.frontend.tracer import Tracer
from symgrad.numpy._common import at, guard, snp, static_ints, traced

__all__ = ["allclose", "array_equal", "array_equiv", "result_type", "can_cast", "promote_types",
           "common_type", "isscalar", "iterable", "shares_memory", "may_share_memory",
           "asanyarray", "ascontiguousarray", "asfortranarray", "require", "asarray_chkfinite",
           "identity", "tri"]


# --- predicates on values ------------------------------------------------------------------------

def allclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """Whether ``isclose`` holds everywhere (a traced 0-d bool); NumPy's Python bool on plain
    arrays."""
    if not traced(a, b, rtol, atol):
        return np.allclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)
    return snp.all(snp.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan))


def _equal_values(a1, a2, equal_nan):
    same = snp.equal(a1, a2)
    if equal_nan:
        same = snp.logical_or(same, snp.logical_and(snp.isnan(a1), snp.isnan(a2)))
    return snp.all(same)


def array_equal(a1, a2, equal_nan=False):
    """Same shape and equal elements (NaN equal to NaN with ``equal_nan``): False when the
    shapes differ (known while tracing), else a traced 0-d bool."""
    if not traced(a1, a2):
        return np.array_equal(a1, a2, equal_nan=equal_nan)
    a1, a2 = snp.asarray(a1), snp.asarray(a2)
    if a1.shape != a2.shape:
        return False
    return _equal_values(a1, a2, equal_nan)


def array_equiv(a1, a2):
    """Equal elements after broadcasting the two together: False when they do not broadcast
    (known while tracing), else a traced 0-d bool."""
    if not traced(a1, a2):
        return np.array_equiv(a1, a2)
    a1, a2 = snp.asarray(a1), snp.asarray(a2)
    try:
        np.broadcast_shapes(a1.shape, a2.shape)
    except (ValueError, TypeError):
        return False
    return _equal_values(a1, a2, False)


# --- dtypes: the traced arrays' dtypes answer ------------------------------------------------------

def _dtype_stand_in(x):
    """What NumPy's dtype functions get in a Tracer's place: a 0-d array of its dtype (a 0-d
    array, not a dtype, so NumPy 2 treats it as an array, never as a weak scalar)."""
    return np.zeros((), x.dtype) if isinstance(x, Tracer) else x


def result_type(*arrays_and_dtypes):
    """NumPy's promotion of the operands' dtypes (Python scalars weak, as in NumPy 2)."""
    return np.result_type(*[_dtype_stand_in(x) for x in arrays_and_dtypes])


def can_cast(from_, to, casting="safe"):
    """Whether a cast of ``from_``'s dtype to ``to`` keeps to the ``casting`` rule."""
    if isinstance(from_, Tracer):
        from_ = np.dtype(from_.dtype)
    return np.can_cast(from_, to, casting)


def promote_types(type1, type2):
    """The smallest dtype both cast to safely (dtypes, or traced arrays for theirs)."""
    return np.promote_types(*[x.dtype if isinstance(x, Tracer) else x for x in (type1, type2)])


def common_type(*arrays):
    """The inexact scalar type common to the arrays (float64 for integers), as NumPy's."""
    return np.common_type(*[_dtype_stand_in(x) for x in arrays])


def isscalar(element):
    """False for a Tracer, as NumPy's isscalar for an array (0-d included)."""
    return np.isscalar(element)


def iterable(y):
    """Whether ``y`` can be iterated: a traced array of at least one dimension can, a 0-d one
    cannot (as NumPy's 0-d arrays)."""
    if isinstance(y, Tracer):
        return y.ndim > 0
    return np.iterable(y)


def _memory(name, a, b, max_work=None):
    if not traced(a, b):
        fn = getattr(np, name)
        return fn(a, b) if max_work is None else fn(a, b, max_work=max_work)
    raise TypeError(f"{name} on traced arrays has no answer{at()}: a compiled function's arrays "
                    f"are values whose memory the compiler lays out (and may share or copy), so "
                    f"which buffers overlap is not part of what it computes; copy() when you "
                    f"need an independent array")


def shares_memory(a, b, max_work=None):
    return _memory("shares_memory", a, b, max_work)


def may_share_memory(a, b, max_work=None):
    return _memory("may_share_memory", a, b, max_work)


# --- conversions: a compiled function has no observable layout -------------------------------------

def asanyarray(a, dtype=None, order=None, *, like=None):
    """``asarray``: traced arrays have no subclasses."""
    if not traced(a) and current_builder() is None:
        return np.asanyarray(a, dtype=dtype, order=order, like=like)
    return snp.asarray(a, dtype)


def ascontiguousarray(a, dtype=None, *, like=None):
    """``asarray`` with at least one dimension (NumPy's ndmin=1); the layout is the compiler's."""
    if not traced(a) and current_builder() is None:
        return np.ascontiguousarray(a, dtype=dtype, like=like)
    a = snp.asarray(a, dtype)
    return snp.reshape(a, (1,)) if a.ndim == 0 else a


def asfortranarray(a, dtype=None, *, like=None):
    """As ``ascontiguousarray``: the values of NumPy's Fortran-ordered array."""
    if not traced(a) and current_builder() is None:
        return np.asfortranarray(a, dtype=dtype, like=like)
    return ascontiguousarray(a, dtype)


_REQUIREMENTS = {"C": "C", "C_CONTIGUOUS": "C", "CONTIGUOUS": "C", "F": "F",
                 "F_CONTIGUOUS": "F", "FORTRAN": "F", "A": "A", "ALIGNED": "A", "W": "W",
                 "WRITEABLE": "W", "O": "O", "OWNDATA": "O", "E": "E", "ENSUREARRAY": "E"}


def require(a, dtype=None, requirements=None, *, like=None):
    """``asarray(a, dtype)``: every layout requirement NumPy names holds for a compiled
    function's values (an unknown one is NumPy's KeyError; C and F together its ValueError)."""
    if not traced(a) and current_builder() is None:
        return np.require(a, dtype=dtype, requirements=requirements, like=like)
    flags = set()
    for r in requirements or ():        # a string is a sequence of one-letter flags, as NumPy's
        if r.upper() not in _REQUIREMENTS:
            raise KeyError(r)
        flags.add(_REQUIREMENTS[r.upper()])
    if {"C", "F"} <= flags:
        raise ValueError(f"require: cannot specify both 'C' and 'F' order{at()}")
    return snp.asarray(a, dtype)


def asarray_chkfinite(a, dtype=None, order=None):
    """``asarray(a, dtype)``, the call failing when it runs if a float or complex array holds a
    NaN or an infinity (NumPy raises ValueError; the compiled function a RuntimeError with
    NumPy's message)."""
    if not traced(a):
        return np.asarray_chkfinite(a, dtype=dtype, order=order)
    a = snp.asarray(a, dtype)
    if np.dtype(a.dtype).kind not in "fc":
        return a
    return guard(snp.logical_not(snp.isfinite(a)), a,
                 "asarray_chkfinite: array must not contain infs or NaNs")


# --- constructors ----------------------------------------------------------------------------------

def identity(n, dtype=None, *, like=None):
    """The n x n identity matrix (``eye(n)``)."""
    if current_builder() is None:
        return np.identity(n, dtype=dtype, like=like)
    return snp.eye(static_ints(n, "identity's n"), dtype=dtype)


def tri(N, M=None, k=0, dtype=float, *, like=None):
    """Ones at and below the k-th diagonal of an N x M array: ``j <= i + k``."""
    if current_builder() is None:
        return np.tri(N, M, k, dtype, like=like)
    N = static_ints(N, "tri's N")
    M = N if M is None else static_ints(M, "tri's M")
    k = static_ints(k, "tri's k")
    for what, v in (("N", N), ("M", M)):
        if not isinstance(v, (int, np.integer)) or v < 0:
            raise ShapeError(f"tri: {what} must be a non-negative int, got {v!r}{at()}")
    rows = Tracer(bind("iota", shape=(N, M), dimension=0, dtype="int64"))
    cols = Tracer(bind("iota", shape=(N, M), dimension=1, dtype="int64"))
    return snp.astype(snp.less_equal(cols, snp.add(rows, k)), np.dtype(dtype).name)
