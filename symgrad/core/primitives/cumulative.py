"""Scans along one axis: ``cumsum``, ``shift`` and the first-order linear ``recurrence``.

``recurrence[axis, reverse](a, b)`` is

    y[0] = b[0],   y[i] = a[i] * y[i-1] + b[i]          (``reverse``: from the last entry)

along ``axis``; the first entry of ``a`` is never read. ``shift[axis, reverse](x)`` moves ``x``
one place along the axis with a 0 entering. Together they differentiate products without
division, to every order: a recurrence's adjoint is a recurrence running the other way (its
coefficients shifted), its tangent a recurrence of the same direction, so derivatives of any
order stay a handful of O(n) loops of multiply-adds -- never a division, never n**2 memory.

- ``cumprod`` is the recurrence ``a = x`` with ``b = x`` at the first entry and 0 elsewhere; its
  gradient ``dx_j = (prod_{k<j} x_k) * z_j``, with ``z`` the reverse recurrence of the adjoint,
  is exact where x has zeros.
- The gradient of ``prod(x)`` is the product of the other entries, ``L * R`` (exclusive
  cumulative products from the left and the right: the ``prod_others`` kernel); its derivative,
  the Hessian of ``prod``, is again a sum of such products, and a formula that divides by
  ``x`` (``prod / x``) is 0/0 wherever an entry is 0. Both are recurrences (below).

The kernels run one pass per lane: an array is seen as (pre, n, post) around the axis.
"""
from __future__ import annotations

import functools

import numpy as np

from symgrad.core import batching, dims, ops
from symgrad.core.cspell import c_literal as _lit
from symgrad.core.primitive import Primitive, bind, register
from symgrad.core.primitives.cindex import (dim as _d, for_range as _for, plus as _plus,
                                           times as _times)
from symgrad.core.types import TensorType
from symgrad.errors import DTypeError, ShapeError


def _lanes(shape, axis):
    """(pre, n, post): the sizes before, along and after ``axis``."""
    return dims.prod(shape[:axis]), shape[axis], dims.prod(shape[axis + 1:])


def _check_axis(x, axis):
    if not 0 <= axis < x.ndim:
        raise ShapeError(f"axis {axis} is out of range for shape {x.shape}")


def _lane(k, shape, axis):
    """``(loop, pos)`` for a kernel working lane by lane along ``axis``: ``loop(lines)`` wraps
    the lines of one lane in the loops over all lanes, ``pos(r, step)`` is the offset (C) of the
    lane's entry ``r + step`` (``r`` a C index expression, ``step`` an int)."""
    pre, n, post = _lanes(shape, axis)
    i0, i1 = k.idx((pre, post))

    def pos(r, step=0):
        if step:
            r = str(step) if r == "0" else f"{r} {'+' if step > 0 else '-'} {abs(step)}"
        return _plus(_times(i0, n * post), _times(r, post), i1)
    return (lambda lines: k.loop((pre, post), lines)), pos


def _if_nonempty(n, lines):
    """``lines`` run only for a lane of length ``n`` > 0 (decided here when ``n`` is fixed)."""
    if dims.is_static(n):
        return lines if n > 0 else []
    return [f"if ({_d(n)} > 0) {{", *("    " + line for line in lines), "}"]


def _last_entry(n):
    """The index of a lane's last entry, as C."""
    return _d(dims.normalize(n - 1))


# --- cumsum -----------------------------------------------------------------------------------

def _cumsum_type(x, *, axis, reverse):
    _check_axis(x, axis)
    return TensorType(x.shape, x.dtype)


def _cumsum_impl(x, *, axis, reverse):
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis=axis), axis)
    return np.cumsum(x, axis=axis)


def _cumsum_c(k):
    x, out, t, axis = k.ins[0], k.out, k.out.ctype, k.attrs["axis"]
    n = x.shape[axis]
    loop, pos = _lane(k, x.shape, axis)
    r = f"{_d(n)} - 1 - _r" if k.attrs["reverse"] else "_r"
    return loop([f"{t} _acc = {_lit(0, t)};", f"for (int64_t _r = 0; _r < {_d(n)}; ++_r) {{",
                 f"    _acc += {k.at(x, pos(r))};", f"    {k.at(out, pos(r))} = _acc;", "}"])


register(Primitive(
    name="cumsum", shape_rule=_cumsum_type, impl=_cumsum_impl,
    batch=functools.partial(batching.along_axis, "cumsum"),
    # The adjoint of a running sum is the running sum from the other end.
    vjp=lambda g, out, x, *, axis, reverse: (
        bind("cumsum", g, axis=axis, reverse=not reverse),),
    jvp=lambda t, out, x, *, axis, reverse: (
        None if t[0] is None else bind("cumsum", t[0], axis=axis, reverse=reverse)),
    c_kernel=_cumsum_c,
    doc="cumsum[axis, reverse](x): running sums along axis (from the end with reverse)",
))


# --- shift: one place along the axis, a zero entering ---------------------------------------

def _shift_type(x, *, axis, reverse):
    _check_axis(x, axis)
    return x


def _shift_impl(x, *, axis, reverse):
    x = np.moveaxis(x, axis, -1)
    out = np.zeros_like(x)
    if reverse:
        out[..., :-1] = x[..., 1:]
    else:
        out[..., 1:] = x[..., :-1]
    return np.moveaxis(out, -1, axis)


def shift(x, axis, reverse=False):
    """``out[i] = x[i-1]``, ``out[0] = 0`` along ``axis`` (``reverse``: ``x[i+1]``, the last
    entry 0)."""
    return bind("shift", x, axis=axis, reverse=reverse)


def _shift_c(k):
    x, out, axis = k.ins[0], k.out, k.attrs["axis"]
    n = x.shape[axis]
    loop, pos = _lane(k, x.shape, axis)
    zero = _lit(0, out.ctype)
    if k.attrs["reverse"]:
        body = [*_for("_r", dims.normalize(n - 1),
                      lambda r: [f"{k.at(out, pos(r))} = {k.at(x, pos(r, 1))};"]),
                *_if_nonempty(n, [f"{k.at(out, pos(_last_entry(n)))} = {zero};"])]
    else:
        body = [*_if_nonempty(n, [f"{k.at(out, pos('0'))} = {zero};"]),
                *_for("_r", n, lambda r: [f"{k.at(out, pos(r))} = {k.at(x, pos(r, -1))};"],
                      start=1)]
    return loop(body)


register(Primitive(
    name="shift", shape_rule=_shift_type, impl=_shift_impl,
    batch=functools.partial(batching.along_axis, "shift"),
    # out[i] = x[i-1]: x[j] reaches out[j+1] only, so the adjoint moves g back.
    vjp=lambda g, out, x, *, axis, reverse: (shift(g, axis, not reverse),),
    jvp=lambda t, out, x, *, axis, reverse: None if t[0] is None else shift(t[0], axis, reverse),
    c_kernel=_shift_c, cost=0,
    doc="shift[axis, reverse](x): along axis out[i] = x[i-1] (reverse: x[i+1]), 0 entering",
))


# --- recurrence: y[i] = a[i] * y[i-1] + b[i] --------------------------------------------------

def _recurrence_type(a, b, *, axis, reverse):
    if a.dtype != b.dtype:
        raise DTypeError(f"operands have different dtypes {a.dtype} and {b.dtype}")
    if len(a.shape) != len(b.shape) or not all(
            dims.equal(p, q) for p, q in zip(a.shape, b.shape)):
        raise ShapeError(f"recurrence needs coefficients and inputs of one shape, got {a.shape} "
                         f"and {b.shape}")
    _check_axis(b, axis)
    return b


def _recurrence_impl(a, b, *, axis, reverse):
    # A log-depth scan of the affine maps y -> a[i] * y + b[i] (Hillis-Steele): after the step
    # of width d, entry i holds the composition of the maps of a window of 2d entries ending at
    # i, so ceil(log2 n) vectorized steps instead of a Python loop over n. Only multiplies and
    # adds: exact where the sequential loop is, and analytic for the complex step.
    dtype = np.result_type(a, b)
    a, b = (np.array(np.moveaxis(v, axis, -1), dtype=dtype) for v in (a, b))
    if reverse:
        a, b = a[..., ::-1].copy(), b[..., ::-1].copy()
    a[..., :1] = 0                     # y[0] = b[0]: the first coefficient is never read
    d, n = 1, b.shape[-1]
    while d < n:
        # entries below d already compose every map from the first: only the rest change
        b[..., d:] = a[..., d:] * b[..., :-d] + b[..., d:]
        a[..., d:] = a[..., d:] * a[..., :-d]
        d *= 2
    return np.moveaxis(b[..., ::-1] if reverse else b, -1, axis)


def recurrence(a, b, axis, reverse=False):
    """``y[0] = b[0]``, ``y[i] = a[i] * y[i-1] + b[i]`` along ``axis`` (``reverse``: from the
    last entry, ``y[i] = a[i] * y[i+1] + b[i]``); the first entry of ``a`` (last, reversed) is
    never read."""
    return bind("recurrence", a, b, axis=axis, reverse=reverse)


def _recurrence_vjp(g, out, a, b, *, axis, reverse):
    # y[i] = sum_{j <= i} b[j] * a[j+1] ... a[i]: the adjoint of b runs the recurrence the other
    # way with the coefficients moved by one, z[j] = g[j] + a[j+1] z[j+1]; y[i] depends on a[i]
    # only through a[i] * y[i-1], so a's adjoint is z * (y moved by one).
    z = recurrence(shift(a, axis, not reverse), g, axis, not reverse)
    return ops.mul(z, shift(out, axis, reverse)), z


def _recurrence_jvp(t, out, a, b, *, axis, reverse):
    ta, tb = t
    terms = ([ops.mul(ta, shift(out, axis, reverse))] if ta is not None else []) + \
            ([tb] if tb is not None else [])
    if not terms:
        return None
    return recurrence(a, terms[0] if len(terms) == 1 else ops.add(*terms), axis, reverse)


def _recurrence_c(k):
    a, b, out, axis = k.ins[0], k.ins[1], k.out, k.attrs["axis"]
    n = out.shape[axis]
    loop, pos = _lane(k, out.shape, axis)
    step = (lambda r: [f"_acc = {k.at(a, pos(r))} * _acc + {k.at(b, pos(r))}; "
                       f"{k.at(out, pos(r))} = _acc;"])
    if k.attrs["reverse"]:
        first = _last_entry(n)
        rest = [] if dims.is_static(n) and n < 2 else [
            f"for (int64_t _r = {_d(dims.normalize(n - 2))}; _r >= 0; --_r) "
            f"{{ {step('_r')[0]} }}"]
    else:
        first = "0"
        rest = _for("_r", n, lambda r: [f"{{ {step(r)[0]} }}"], start=1)
    body = [f"{out.ctype} _acc = {k.at(b, pos(first))};", f"{k.at(out, pos(first))} = _acc;",
            *rest]
    return loop(_if_nonempty(n, body))       # an empty lane has no first entry


register(Primitive(
    name="recurrence", shape_rule=_recurrence_type, impl=_recurrence_impl,
    batch=functools.partial(batching.along_axis, "recurrence"),
    vjp=_recurrence_vjp, jvp=_recurrence_jvp, c_kernel=_recurrence_c,
    doc="recurrence[axis, reverse](a, b): y[i] = a[i] * y[i-1] + b[i] along axis, y[0] = b[0]",
))


# --- products built from recurrences ----------------------------------------------------------

def _first(x, axis, reverse):
    """True at the first entry along ``axis`` (the last, ``reverse``), False elsewhere."""
    pos = bind("iota", shape=x.shape, dimension=axis, dtype="int64")
    n = x.shape[axis]
    if not reverse:
        at = ops.const(0, "int64")
    elif dims.is_static(n):
        at = ops.const(n - 1, "int64")
    else:
        at = bind("dim", expr=dims.normalize(n - 1))
    return ops.eq(pos, at)


def cumprod(x, axis):
    """Running products along ``axis``: y[0] = x[0], y[i] = x[i] * y[i-1]. The recurrence's
    first input is selected, not multiplied by a 0/1 mask, so an inf entry stays inf."""
    return recurrence(x, ops.select(_first(x, axis, False), x, ops.zeros_like(x)), axis)


def exclusive_products(x):
    """(L, R) along the last axis: ``L[i] = x[0] ... x[i-1]``, ``R[i] = x[i+1] ... x[n-1]``."""
    axis = x.ndim - 1
    left = recurrence(shift(x, axis), ops.convert(_first(x, axis, False), x.dtype), axis)
    right = recurrence(shift(x, axis, True), ops.convert(_first(x, axis, True), x.dtype), axis,
                       True)
    return left, right


def prod_others_linear(x, t):
    """``J t`` for J the Jacobian of ``prod_others(x)`` along the last axis (the Hessian of
    ``prod``, symmetric, so this is also its vjp): ``(J t)[i] = sum_{j != i} t[j] prod_{k != i, j}
    x[k]``, split at i into the terms j < i and j > i, each a recurrence. Exact at zeros."""
    axis = x.ndim - 1
    left, right = exclusive_products(x)
    before = recurrence(shift(x, axis), shift(ops.mul(t, left), axis), axis)
    after = recurrence(shift(x, axis, True), shift(ops.mul(t, right), axis, True), axis, True)
    return ops.add(ops.mul(right, before), ops.mul(left, after))
