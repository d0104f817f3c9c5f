"""What the submodules of ``symgrad.numpy`` share (and ``symgrad.nn``, ``symgrad.scipy``): the
registry's functions by name, tracing tests, axis normalization, lifting values into the graph.

``symgrad.numpy`` imports its submodules, so they cannot import it back (tests/test_architecture.py
forbids the cycle); they reach its functions through ``snp``, which looks each name up in the
registry of ``symgrad.frontend.tracer`` when it is called (by then every name is registered).
"""
from __future__ import annotations

import builtins

import numpy as np

from symgrad.core import dims, ops
from symgrad.core.ir import current_builder, user_location
from symgrad.core.primitives import bind
from symgrad.core.symbolic import is_symbolic
from symgrad.core.types import COMPLEX_DTYPES, COMPLEX_OF, FLOAT_DTYPES, canonical_dtype, promote
from symgrad.errors import ShapeError, where
from symgrad.frontend.tracer import Tracer, implementation


class _Registered:
    """``snp.sum(...)`` runs the implementation registered for "sum"."""

    def __getattr__(self, name):
        return implementation(name)


snp = _Registered()


def traced(*values):
    """Whether any value (or any element of a list/tuple argument) is a Tracer."""
    return builtins.any(isinstance(v, Tracer) for v in values) or builtins.any(
        isinstance(v, (list, tuple)) and traced(*v) for v in values)


def tracing():
    return current_builder() is not None


def at():
    """", at loss.py:12 (the user's line being traced)", for error messages."""
    return where(user_location())


def axis_index(a, ndim):
    """``a`` made non-negative; ShapeError (NumPy's AxisError) when out of range."""
    a = int(a)
    if not -ndim <= a < ndim:
        raise ShapeError(f"axis {a} is out of bounds for an array of dimension {ndim}{at()}")
    return a % ndim


def axes_tuple(axis, ndim):
    """The sorted non-negative axes that ``axis`` (None, an int or a sequence) names."""
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    out = [axis_index(a, ndim) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {axis}{at()}")
    return tuple(sorted(out))


def count(shape, axes):
    """The number of elements over ``axes`` of ``shape`` (an int, or a run-time size)."""
    return dims.prod([shape[a] for a in axes])


def no_out(out, name):
    if out is not None:
        raise TypeError(f"{name}(..., out=...) is not supported on traced values{at()}: "
                        f"traced arrays are values, not buffers; use the result")


def is_float(x):
    return np.dtype(x.dtype).kind in "fc"


def as_float(x, dtype=None):
    """x as a traced array of ``dtype``, or of float64 when it holds integers or booleans."""
    x = snp.asarray(x)
    if dtype is not None:
        return snp.astype(x, dtype)
    return x if is_float(x) else snp.astype(x, "float64")


def guard(flag, value, message):
    """``value``, the compiled call failing with ``message`` (a RuntimeError) when it runs if
    any element of the traced bool ``flag`` holds: what NumPy raises from the values."""
    return Tracer(bind("guard", snp.any(flag).irvar, snp.asarray(value).irvar, message=message))


def static_ints(value, what):
    """A Python int (or tuple of ints) given where NumPy needs a size known in advance."""
    if isinstance(value, Tracer):
        raise TypeError(f"{what} must be known while tracing (a Python int or list of ints), "
                        f"not a traced value{at()}")
    return value


# --- lifting values into the graph ------------------------------------------------------------

def is_weak(x):
    """Python scalars (and run-time sizes) take the dtype of the array they meet (NumPy 2)."""
    return (isinstance(x, (int, float, bool, complex)) and not isinstance(x, np.generic)) or \
        is_symbolic(x)


def size_value(d, dtype):
    """A dimension as a value of ``dtype``: a constant, or the run-time size itself."""
    d = dims.normalize(d)
    if isinstance(d, int):
        return ops.const(d, dtype)
    return ops.convert(bind("dim", expr=d), dtype)


def dtype_of(x):
    if isinstance(x, Tracer):
        return x.irvar.dtype
    return canonical_dtype(np.asarray(x).dtype)


def common_dtype(values, need_float=False):
    strong = [dtype_of(v) for v in values if not is_weak(v)]
    weak = [0 if is_symbolic(v) else v for v in values if is_weak(v)]
    dtype = promote(*strong) if strong else None
    if dtype is None:
        dtype = promote(*[np.asarray(w).dtype for w in weak])
    elif builtins.any(isinstance(w, float) for w in weak) and dtype not in FLOAT_DTYPES:
        dtype = "float64"
    if builtins.any(isinstance(w, complex) for w in weak) and dtype not in COMPLEX_DTYPES:
        dtype = COMPLEX_OF.get(dtype, "complex128")     # float32 * 1j is complex64, as in NumPy
    if need_float and dtype not in FLOAT_DTYPES:
        dtype = "float64"
    return dtype


def lift(values, need_float=False):
    """Vars for the operands, converted to their common dtype."""
    dtype = common_dtype(values, need_float)
    out = []
    for v in values:
        if isinstance(v, Tracer):
            out.append(ops.convert(v.irvar, dtype))
        elif is_symbolic(v):
            out.append(size_value(v, dtype))
        else:
            out.append(ops.const(np.asarray(v), dtype))
    return out


def wrap(var):
    return Tracer(var)
