"""What the submodules of ``symgrad.numpy`` share: the registry's functions by name, tracing tests,
axis normalization.

``symgrad.numpy`` imports its submodules, so they cannot import it back (tests/test_architecture.py
forbids the cycle); they reach its functions through ``snp``, which looks each name up in the
registry of ``symgrad.frontend.tracer`` when it is called (by then every name is registered).
"""
from __future__ import annotations

import builtins

import numpy as np

from symgrad.core import dims
from symgrad.core.ir import current_builder, user_location
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


def static_ints(value, what):
    """A Python int (or tuple of ints) given where NumPy needs a size known in advance."""
    if isinstance(value, Tracer):
        raise TypeError(f"{what} must be known while tracing (a Python int or list of ints), "
                        f"not a traced value{at()}")
    return value
