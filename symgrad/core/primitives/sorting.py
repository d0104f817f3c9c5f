"""Sorting: ``argsort`` along one axis, a stable sort with NaN last (NumPy's order).

It has no derivative (its result is integer positions); ``sort`` is argsort followed by a
gather, so the gradient of a sorted array follows the permutation back to where each element
came from. Ties keep their original order (``kind="stable"``), so the interpreter and the C
agree on which of two equal elements receives which adjoint.

The C is a bottom-up merge sort of each lane's positions in the kernel's scratch space:
O(n log n) comparisons, stable, no recursion.
"""
from __future__ import annotations

import functools

import numpy as np

from symgrad.core import batching, dims
from symgrad.core.primitive import Primitive, register
from symgrad.core.primitives.cindex import plus as _plus, times as _times
from symgrad.core.types import COMPLEX_DTYPES, TensorType
from symgrad.errors import DTypeError, ShapeError


def _argsort_type(x, *, axis):
    if x.dtype in COMPLEX_DTYPES:
        # NumPy sorts complex numbers lexicographically; symgrad does not (docs/complex.md).
        raise DTypeError(f"sorting is not defined for complex values ({x.dtype}) in symgrad; "
                         f"docs/complex.md lists what is")
    if not 0 <= axis < x.ndim:
        raise ShapeError(f"axis {axis} is out of range for shape {x.shape}")
    if not all(dims.is_static(d) for d in x.shape):
        raise ShapeError(f"argsort needs static sizes, got shape {x.shape}")
    return TensorType(x.shape, "int64")


def _argsort_impl(x, *, axis):
    return np.argsort(np.real(x), axis=axis, kind="stable")


def _argsort_c(k):
    x, out = k.ins[0], k.out
    axis = k.attrs["axis"]
    pre, n, post = dims.prod(x.shape[:axis]), x.shape[axis], dims.prod(x.shape[axis + 1:])
    if n == 0:
        return []
    t = x.ctype
    i0, i1 = k.idx((pre, post))
    lane = _plus(_times(i0, n * post), i1)
    value = lambda i: k.at(x, _plus(lane, _times(i, post)))  # noqa: E731
    nan = t in ("double", "float")
    # before(a, b): a sorts strictly before b (NaN after every number).
    before = (lambda a, b: f"({a} < {b} || (isnan({b}) && !isnan({a})))") if nan else \
        (lambda a, b: f"({a} < {b})")
    buf = k.scratch(16 * n)
    return k.loop((pre, post), [
        f"int64_t *_src = (int64_t *){buf}, *_dst = _src + {n};",
        f"for (int64_t _r = 0; _r < {n}; ++_r) _src[_r] = _r;",
        f"for (int64_t _w = 1; _w < {n}; _w *= 2) {{",
        f"    for (int64_t _lo = 0; _lo < {n}; _lo += 2 * _w) {{",
        f"        const int64_t _mid = _lo + _w < {n} ? _lo + _w : {n};",
        f"        const int64_t _hi = _lo + 2 * _w < {n} ? _lo + 2 * _w : {n};",
        "        int64_t _p = _lo, _q = _mid, _o = _lo;",
        "        while (_p < _mid && _q < _hi) {",
        f"            const {t} _vp = {value('_src[_p]')}, _vq = {value('_src[_q]')};",
        f"            _dst[_o++] = {before('_vq', '_vp')} ? _src[_q++] : _src[_p++];",
        "        }",
        "        while (_p < _mid) _dst[_o++] = _src[_p++];",
        "        while (_q < _hi) _dst[_o++] = _src[_q++];",
        "    }",
        "    int64_t *_swap = _src; _src = _dst; _dst = _swap;",
        "}",
        f"for (int64_t _r = 0; _r < {n}; ++_r) {k.at(out, _plus(lane, _times('_r', post)))} = _src[_r];",
    ])


register(Primitive(
    name="argsort", shape_rule=_argsort_type, impl=_argsort_impl,
    batch=functools.partial(batching.along_axis, "argsort"),
    vjp=lambda g, out, x, *, axis: (None,), jvp=lambda t, out, x, *, axis: None,
    c_kernel=_argsort_c,
    # comparisons: n log2 n per lane of n
    cost=lambda node: node.out.type.size * max(
        1, int(np.ceil(np.log2(max(node.inputs[0].shape[node.attrs["axis"]], 2))))),
    doc="argsort[axis](x): the stable sorting permutation along axis, NaN last; no gradient",
))
