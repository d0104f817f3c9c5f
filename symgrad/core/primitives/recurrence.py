"""Scans along the last axis: ``shift`` and the first-order linear ``recurrence``.

They exist so that products are differentiated without division, to every order. The gradient
of ``prod(x)`` is the product of the other entries, ``L * R`` (exclusive cumulative products
from the left and the right: the ``prod_others`` kernel); its derivative, the Hessian of
``prod``, is again a sum of such products, and a formula that divides by ``x`` (``prod / x``) is
0/0 wherever an entry is 0. Exclusive cumulative products, and the tangents of them, are all
linear recurrences

    y[0] = b[0],   y[i] = a[i] * y[i-1] + b[i]          (``reverse``: from the last entry)

whose derivatives are recurrences again (the adjoint runs the other way), so every order stays
a handful of O(n) loops of multiply-adds -- never a division, never n**2 memory.
"""
from __future__ import annotations

import functools

import numpy as np

from symgrad.errors import DTypeError, ShapeError
from symgrad.core import dims
from symgrad.core.cspell import c_literal as _lit
from symgrad.core import batching, ops
from symgrad.core.primitive import Primitive, bind, register
from symgrad.core.primitives.cindex import dim as _d


def _rows(k, x):
    """(number of rows, row length) of ``x`` seen as rows along its last axis, as C."""
    return dims.prod(x.shape[:-1]), _d(x.shape[-1])


# --- shift: the last axis moved one place, a zero entering -----------------------------------

def _shift_type(x, *, reverse):
    if x.ndim == 0:
        raise ShapeError("shift needs an array with at least one axis, got a scalar")
    return x


def _shift_impl(x, *, reverse):
    out = np.zeros_like(x)
    if reverse:
        out[..., :-1] = x[..., 1:]
    else:
        out[..., 1:] = x[..., :-1]
    return out


def shift(x, reverse=False):
    """``out[i] = x[i-1]``, ``out[0] = 0`` along the last axis (``reverse``: ``x[i+1]``, the
    last entry 0)."""
    return bind("shift", x, reverse=reverse)


def _row_start(k, rows, d):
    """``const int64_t _base = ...``: where the loop's row starts (rows of length ``d``); the
    row index is ``0`` when there is one row (``k.loop`` makes no loop for it)."""
    ix, = k.idx((rows,))
    start = "0" if ix == "0" else f"{ix} * {_d(d)}"
    return f"const int64_t _base = {start};"


def _if_nonempty(d, lines):
    """``lines`` run only for a row of length ``d`` > 0 (decided here when ``d`` is fixed)."""
    if dims.is_static(d):
        return lines if d > 0 else []
    return [f"if ({_d(d)} > 0) {{", *("    " + line for line in lines), "}"]


def _shift_c(k):
    x, out = k.ins[0], k.out
    rows, n = _rows(k, x)
    zero = _lit(0, out.ctype)
    if k.attrs["reverse"]:
        body = [f"for (int64_t _r = 0; _r + 1 < {n}; ++_r) "
                f"{k.at(out, '_base + _r')} = {k.at(x, '_base + _r + 1')};",
                *_if_nonempty(x.shape[-1], [f"{k.at(out, f'_base + {n} - 1')} = {zero};"])]
    else:
        body = [*_if_nonempty(x.shape[-1], [f"{k.at(out, '_base')} = {zero};"]),
                f"for (int64_t _r = 1; _r < {n}; ++_r) "
                f"{k.at(out, '_base + _r')} = {k.at(x, '_base + _r - 1')};"]
    return k.loop((rows,), [_row_start(k, rows, x.shape[-1]), *body])


register(Primitive(
    name="shift", shape_rule=_shift_type, impl=_shift_impl,
    batch=functools.partial(batching.leading, "shift"),   # along the last axis
    vjp=lambda g, out, x, *, reverse: (shift(g, not reverse),),
    jvp=lambda t, out, x, *, reverse: None if t[0] is None else shift(t[0], reverse),
    c_kernel=_shift_c,
    doc="shift[reverse](x): along the last axis out[i] = x[i-1] (reverse: x[i+1]), 0 entering",
))


# --- recurrence: y[i] = a[i] * y[i-1] + b[i] --------------------------------------------------

def _recurrence_type(a, b, *, reverse):
    if a.dtype != b.dtype:
        raise DTypeError(f"operands have different dtypes {a.dtype} and {b.dtype}")
    if a.ndim == 0 or len(a.shape) != len(b.shape) or not all(
            dims.equal(p, q) for p, q in zip(a.shape, b.shape)):
        raise ShapeError(f"recurrence needs coefficients and inputs of one shape with at least "
                         f"one axis, got {a.shape} and {b.shape}")
    return b


def _recurrence_impl(a, b, *, reverse):
    # A log-depth scan of the affine maps y -> a[i] * y + b[i] (Hillis-Steele): after the step
    # of width d, entry i holds the composition of the maps of a window of 2d entries ending at
    # i, so ceil(log2 n) vectorized steps instead of a Python loop over n. Only multiplies and
    # adds: exact where the sequential loop is, and analytic for the complex step.
    dtype = np.result_type(a, b)
    a, b = (np.array(np.broadcast_to(v, np.broadcast_shapes(a.shape, b.shape)), dtype=dtype)
            for v in (a, b))
    if reverse:
        a, b = a[..., ::-1].copy(), b[..., ::-1].copy()
    a[..., :1] = 0                     # y[0] = b[0]: the first coefficient is never read
    d, n = 1, b.shape[-1]
    while d < n:
        # entries below d already compose every map from the first: only the rest change
        b[..., d:] = a[..., d:] * b[..., :-d] + b[..., d:]
        a[..., d:] = a[..., d:] * a[..., :-d]
        d *= 2
    return b[..., ::-1] if reverse else b


def recurrence(a, b, reverse=False):
    """``y[0] = b[0]``, ``y[i] = a[i] * y[i-1] + b[i]`` along the last axis (``reverse``: from
    the last entry, ``y[i] = a[i] * y[i+1] + b[i]``); the first entry of ``a`` (last, reversed)
    is never read."""
    return bind("recurrence", a, b, reverse=reverse)


def _recurrence_vjp(g, out, a, b, *, reverse):
    # y[i] = sum_{j <= i} b[j] * a[j+1] ... a[i]: the adjoint of b runs the recurrence the other
    # way with the coefficients moved by one, z[j] = g[j] + a[j+1] z[j+1]; y[i] depends on a[i]
    # only through a[i] * y[i-1], so a's adjoint is z * (y moved by one).
    z = recurrence(shift(a, not reverse), g, not reverse)
    return ops.mul(z, shift(out, reverse)), z


def _recurrence_jvp(t, out, a, b, *, reverse):
    ta, tb = t
    terms = ([ops.mul(ta, shift(out, reverse))] if ta is not None else []) + \
            ([tb] if tb is not None else [])
    return recurrence(a, terms[0] if len(terms) == 1 else ops.add(*terms), reverse)


def _recurrence_c(k):
    a, b, out = k.ins[0], k.ins[1], k.out
    rows, n = _rows(k, out)
    t = out.ctype
    if k.attrs["reverse"]:
        first, loop = f"{n} - 1", f"for (int64_t _r = {n} - 2; _r >= 0; --_r)"
    else:
        first, loop = "0", f"for (int64_t _r = 1; _r < {n}; ++_r)"
    body = [f"{t} _acc = {k.at(b, f'_base + {first}')};",
            f"{k.at(out, f'_base + {first}')} = _acc;",
            f"{loop} {{ _acc = {k.at(a, '_base + _r')} * _acc + {k.at(b, '_base + _r')}; "
            f"{k.at(out, '_base + _r')} = _acc; }}"]
    body = _if_nonempty(out.shape[-1], body)        # an empty row has no first entry
    return k.loop((rows,), [_row_start(k, rows, out.shape[-1]), *body])


register(Primitive(
    name="recurrence", shape_rule=_recurrence_type, impl=_recurrence_impl,
    batch=functools.partial(batching.leading, "recurrence"),   # along the last axis
    vjp=_recurrence_vjp, jvp=_recurrence_jvp, c_kernel=_recurrence_c,
    doc="recurrence[reverse](a, b): y[i] = a[i] * y[i-1] + b[i] along the last axis, y[0] = b[0]",
))


# --- the products of the other entries, and their derivative --------------------------------

def _unit(x, reverse):
    """1 at the first entry of the last axis (the last, ``reverse``), 0 elsewhere."""
    pos = bind("iota", shape=x.shape, dimension=x.ndim - 1, dtype="int64")
    n = x.shape[-1]
    if not reverse:
        at = ops.const(0, "int64")
    elif dims.is_static(n):
        at = ops.const(n - 1, "int64")
    else:
        at = bind("dim", expr=dims.normalize(n - 1))
    hit = ops.eq(pos, at)
    return ops.convert(hit, x.dtype)


def exclusive_products(x):
    """(L, R) along the last axis: ``L[i] = x[0] ... x[i-1]``, ``R[i] = x[i+1] ... x[n-1]``."""
    left = recurrence(shift(x), _unit(x, False))
    right = recurrence(shift(x, True), _unit(x, True), True)
    return left, right


def prod_others_linear(x, t):
    """``J t`` for J the Jacobian of ``prod_others(x)`` along the last axis (the Hessian of
    ``prod``, symmetric, so this is also its vjp): ``(J t)[i] = sum_{j != i} t[j] prod_{k != i, j}
    x[k]``, split at i into the terms j < i and j > i, each a recurrence. Exact at zeros."""
    left, right = exclusive_products(x)
    before = recurrence(shift(x), shift(ops.mul(t, left)))
    after = recurrence(shift(x, True), shift(ops.mul(t, right), True), True)
    return ops.add(ops.mul(right, before), ops.mul(left, after))
