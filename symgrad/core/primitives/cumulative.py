"""Cumulative operations along one axis: ``cumsum`` and the first-order linear recurrence
``linear_scan``.

``linear_scan[axis, reverse](a, b, h0)`` computes ``h_i = a_i * h_{i-1} + b_i`` along ``axis``
from ``h_{-1} = h0`` (with ``reverse``, from the last element back). It is closed under
differentiation: the adjoint of a scan is a scan running the other way, and its tangent is a
scan of the same direction, so derivatives of any order stay scans. ``cumprod`` is the scan
``a = x, b = 0, h0 = 1``; its gradient ``dx_j = (prod_{k<j} x_k) * lambda_j``, with ``lambda``
the reverse scan of the adjoint, involves no division and is exact where x has zeros.

Both run one pass per lane: an array is seen as (pre, n, post) around the scanned axis.
"""
from __future__ import annotations

import functools

import numpy as np

from symgrad.core import batching, dims, ops
from symgrad.core.cspell import c_literal as _lit
from symgrad.core.primitive import Primitive, bind, register
from symgrad.core.primitives.cindex import dim as _d, plus as _plus, times as _times
from symgrad.core.types import TensorType
from symgrad.errors import DTypeError, ShapeError


def _lanes(shape, axis):
    """(pre, n, post): the sizes before, along and after ``axis``."""
    return dims.prod(shape[:axis]), shape[axis], dims.prod(shape[axis + 1:])


def _check_axis(x, axis):
    if not 0 <= axis < x.ndim:
        raise ShapeError(f"axis {axis} is out of range for shape {x.shape}")


def _lane_loop(k, shape, axis, reverse, setup, step, finish=()):
    """Loops over the lanes of ``shape`` along ``axis``; ``step(off)`` gets the element's
    offset (a C expression) in order along the lane (backwards with ``reverse``)."""
    pre, n, post = _lanes(shape, axis)
    i0, i1 = k.idx((pre, post))
    r = f"{_d(n)} - 1 - _r" if reverse else "_r"
    off = _plus(_times(i0, n * post), _times(r, post), i1)
    return k.loop((pre, post), [*setup, f"for (int64_t _r = 0; _r < {_d(n)}; ++_r) {{",
                                *("    " + s for s in step(off)), "}", *finish])


def shift(x, axis, reverse, fill):
    """x moved one place along ``axis`` (toward higher indices, or lower with ``reverse``), the
    free end taking ``fill`` (shape of x without the axis, or None for zeros)."""
    n = x.shape[axis]
    edge_shape = x.shape[:axis] + (1,) + x.shape[axis + 1:]
    edge = ops.broadcast_to(ops.scalar_like(0, x), edge_shape) if fill is None \
        else ops.reshape(fill, edge_shape)
    if n == 1:
        return edge
    keep = x.shape[:axis] + (n - 1,) + x.shape[axis + 1:]
    start = tuple(1 if d == axis and reverse else 0 for d in range(x.ndim))
    body = bind("slice", x, start=start, step=(1,) * x.ndim, shape=keep)
    parts = [body, edge] if reverse else [edge, body]
    return bind("concatenate", *parts, axis=axis)


# --- cumsum -----------------------------------------------------------------------------------

def _cumsum_type(x, *, axis, reverse):
    _check_axis(x, axis)
    return TensorType(x.shape, x.dtype)


def _cumsum_impl(x, *, axis, reverse):
    if reverse:
        return np.flip(np.cumsum(np.flip(x, axis), axis=axis), axis)
    return np.cumsum(x, axis=axis)


def _cumsum_c(k):
    x, out, t = k.ins[0], k.out, k.out.ctype
    return _lane_loop(k, x.shape, k.attrs["axis"], k.attrs["reverse"], [f"{t} _acc = {_lit(0, t)};"],
                      lambda off: [f"_acc += {k.at(x, off)};", f"{k.at(out, off)} = _acc;"])


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


# --- linear_scan ------------------------------------------------------------------------------

def _scan_type(a, b, h0, *, axis, reverse):
    _check_axis(a, axis)
    if a.shape != b.shape:
        raise ShapeError(f"a and b have different shapes {a.shape} and {b.shape}")
    lane = a.shape[:axis] + a.shape[axis + 1:]
    if h0.shape != lane:
        raise ShapeError(f"h0 has shape {h0.shape}, expected {lane}")
    if len({a.dtype, b.dtype, h0.dtype}) != 1:
        raise DTypeError(f"operands have different dtypes {a.dtype}, {b.dtype}, {h0.dtype}")
    return TensorType(a.shape, a.dtype)


def _scan_impl(a, b, h0, *, axis, reverse):
    a, b = np.moveaxis(a, axis, 0), np.moveaxis(b, axis, 0)
    out = np.empty(np.broadcast_shapes(a.shape, np.shape(h0)),
                   dtype=np.result_type(a, b, h0))
    h = h0
    for i in (range(a.shape[0] - 1, -1, -1) if reverse else range(a.shape[0])):
        h = a[i] * h + b[i]
        out[i] = h
    return np.moveaxis(out, 0, axis)


def _scan_vjp(g, out, a, b, h0, *, axis, reverse):
    # h_i = a_i h_{i-1} + b_i. The adjoint lambda_i = g_i + a_{i+1} lambda_{i+1} is a scan the
    # other way with the coefficients shifted; then db = lambda, da_i = lambda_i h_{i-1}, and
    # dh0 = a_0 lambda_0 (for reverse, mirrored).
    n = a.shape[axis]
    lam = bind("linear_scan", shift(a, axis, not reverse, None), g, ops.zeros_like(h0),
               axis=axis, reverse=not reverse)
    h_prev = shift(out, axis, reverse, h0)
    first = n - 1 if reverse else 0
    lane = a.shape[:axis] + a.shape[axis + 1:]

    def at_first(v):
        start = tuple(first if d == axis else 0 for d in range(v.ndim))
        shape = v.shape[:axis] + (1,) + v.shape[axis + 1:]
        return ops.reshape(bind("slice", v, start=start, step=(1,) * v.ndim, shape=shape), lane)

    return ops.mul(lam, h_prev), lam, ops.mul(at_first(a), at_first(lam))


def _scan_jvp(t, out, a, b, h0, *, axis, reverse):
    ta, tb, th0 = t
    if ta is None and tb is None and th0 is None:
        return None
    drive = None if ta is None else ops.mul(ta, shift(out, axis, reverse, h0))
    if tb is not None:
        drive = tb if drive is None else ops.add(drive, tb)
    drive = ops.zeros_like(a) if drive is None else drive
    return bind("linear_scan", a, drive, ops.zeros_like(h0) if th0 is None else th0,
                axis=axis, reverse=reverse)


def _scan_c(k):
    a, b, h0 = k.ins
    out, t = k.out, k.out.ctype
    pre, _, post = _lanes(a.shape, k.attrs["axis"])
    i0, i1 = k.idx((pre, post))
    start = k.at(h0, _plus(_times(i0, post), i1))     # h0 is the (pre, post) lanes' start
    return _lane_loop(k, a.shape, k.attrs["axis"], k.attrs["reverse"], [f"{t} _h = {start};"],
                      lambda off: [f"_h = {k.at(a, off)} * _h + {k.at(b, off)};",
                                   f"{k.at(out, off)} = _h;"])


register(Primitive(
    name="linear_scan", shape_rule=_scan_type, impl=_scan_impl, vjp=_scan_vjp, jvp=_scan_jvp,
    batch=functools.partial(batching.along_axis, "linear_scan"),
    c_kernel=_scan_c,
    doc="linear_scan[axis, reverse](a, b, h0): h_i = a_i * h_(i-1) + b_i along axis from h0",
))
