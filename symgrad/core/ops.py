"""IR-level operations: thin, typed wrappers over ``bind`` for derivative rules and the front end.

These take and return ``Var``s and do no NumPy-style magic: operands of an elementwise operation
must already share a dtype (``convert`` first), though shapes may broadcast. The front end
(``symgrad.numpy``) adds Python scalars, dtype promotion and NumPy's argument conventions.
"""
from __future__ import annotations

import numpy as np

from symgrad.core import dims
from symgrad.core.ir import Literal
from symgrad.core.primitive import bind


def const(value, dtype):
    """A constant of ``dtype`` (a scalar or an array)."""
    return bind("const", value=Literal(np.asarray(value, dtype=dtype)))


def scalar_like(value, x):
    """The Python number ``value`` as a 0-d constant of ``x``'s dtype."""
    return const(value, x.dtype)


def zeros_like(x):
    return broadcast_to(scalar_like(0, x), x.shape)


def convert(x, dtype):
    return x if x.dtype == dtype else bind("convert", x, dtype=dtype)


def add(x, y): return bind("add", x, y)
def sub(x, y): return bind("sub", x, y)
def mul(x, y): return bind("mul", x, y)
def div(x, y): return bind("div", x, y)
def neg(x): return bind("neg", x)
def select(c, x, y): return bind("select", c, x, y)
def ge(x, y): return bind("ge", x, y)
def lt(x, y): return bind("lt", x, y)
def eq(x, y): return bind("eq", x, y)


def broadcast_in_dim(x, shape, dims):
    """Place x's axes at ``dims`` of ``shape`` and repeat along the rest (and along size-1 axes)."""
    shape, dims = tuple(shape), tuple(dims)
    if x.shape == shape and dims == tuple(range(len(shape))):
        return x
    return bind("broadcast_in_dim", x, shape=shape, dims=dims)


def broadcast_to(x, shape):
    """NumPy's ``broadcast_to``: x's axes align with the trailing axes of ``shape``."""
    shape = tuple(shape)
    return broadcast_in_dim(x, shape, tuple(range(len(shape) - x.ndim, len(shape))))


def reshape(x, shape):
    shape = tuple(shape)
    return x if x.shape == shape else bind("reshape", x, shape=shape)


def transpose(x, perm):
    perm = tuple(perm)
    return x if perm == tuple(range(x.ndim)) else bind("transpose", x, perm=perm)


def reduce_sum(x, axes):
    axes = tuple(sorted(axes))
    return x if not axes else bind("reduce_sum", x, axes=axes)


def sum_to_shape(g, shape):
    """Undo NumPy broadcasting: sum g over the axes that broadcasting added or stretched.

    This is the one place where "broadcasts become sums" in reverse mode.
    """
    shape = tuple(shape)
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    axes = list(range(lead))
    axes += [lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1]
    return reshape(reduce_sum(g, axes), shape)


def move_axes_last(x, axes):
    """Transpose the given axes to the end and flatten them into one: (kept..., R), and perm."""
    axes = tuple(sorted(axes))
    kept = tuple(i for i in range(x.ndim) if i not in axes)
    perm = kept + axes
    xt = transpose(x, perm)
    kept_shape = tuple(x.shape[i] for i in kept)
    size = dims.prod([x.shape[i] for i in axes])
    return reshape(xt, kept_shape + (size,)), perm


def restore_axes(y, x_shape, perm):
    """Inverse of ``move_axes_last``: reshape (kept..., R) back and undo the transpose."""
    yt = reshape(y, tuple(x_shape[i] for i in perm))
    return transpose(yt, tuple(np.argsort(perm)))
