"""Sorting: ``argsort`` along one axis, a stable sort with NaN last (NumPy's order).

It has no derivative (its result is integer positions); ``sort`` is argsort followed by a
gather, so the gradient of a sorted array follows the permutation back to where each element
came from. Ties keep their original order (``kind="stable"``), so the interpreter and the C
agree on which of two equal elements receives which adjoint.

The C is a bottom-up merge sort of each lane's positions in the kernel's scratch space:
O(n log n) comparisons, stable, no recursion.
"""
from __future__ import annotations

import numpy as np

from symgrad.core import dims
from symgrad.core.primitive import Primitive, register
from symgrad.core.types import TensorType
from symgrad.errors import ShapeError


def _d(d):
    return dims.c_expr(dims.normalize(d))


def _argsort_type(x, *, axis):
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
    lane = f"i0 * {_d(n * post)} + i1"
    value = lambda i: k.at(x, f"{lane} + ({i}) * {_d(post)}")  # noqa: E731
    nan = t in ("double", "float")
    # before(a, b): a sorts strictly before b (NaN after every number).
    before = (lambda a, b: f"({a} < {b} || (isnan({b}) && !isnan({a})))") if nan else \
        (lambda a, b: f"({a} < {b})")
    buf = k.scratch(16 * n)
    return k.loop((pre, post), [
        f"int64_t *sg_src = (int64_t *){buf}, *sg_dst = sg_src + {n};",
        f"for (int64_t r = 0; r < {n}; ++r) sg_src[r] = r;",
        f"for (int64_t sg_w = 1; sg_w < {n}; sg_w *= 2) {{",
        f"    for (int64_t sg_lo = 0; sg_lo < {n}; sg_lo += 2 * sg_w) {{",
        f"        const int64_t sg_mid = sg_lo + sg_w < {n} ? sg_lo + sg_w : {n};",
        f"        const int64_t sg_hi = sg_lo + 2 * sg_w < {n} ? sg_lo + 2 * sg_w : {n};",
        "        int64_t p = sg_lo, sg_q = sg_mid, sg_o = sg_lo;",
        "        while (p < sg_mid && sg_q < sg_hi) {",
        f"            const {t} sg_vp = {value('sg_src[p]')}, sg_vq = {value('sg_src[sg_q]')};",
        f"            sg_dst[sg_o++] = {before('sg_vq', 'sg_vp')} ? sg_src[sg_q++] : sg_src[p++];",
        "        }",
        "        while (p < sg_mid) sg_dst[sg_o++] = sg_src[p++];",
        "        while (sg_q < sg_hi) sg_dst[sg_o++] = sg_src[sg_q++];",
        "    }",
        "    int64_t *sg_swap = sg_src; sg_src = sg_dst; sg_dst = sg_swap;",
        "}",
        f"for (int64_t r = 0; r < {n}; ++r) {k.at(out, f'{lane} + r * {_d(post)}')} = sg_src[r];",
    ])


register(Primitive(
    name="argsort", shape_rule=_argsort_type, impl=_argsort_impl,
    vjp=lambda g, out, x, *, axis: (None,), jvp=lambda t, out, x, *, axis: None,
    c_kernel=_argsort_c,
    # comparisons: n log2 n per lane of n
    cost=lambda node: node.out.type.size * max(
        1, int(np.ceil(np.log2(max(node.inputs[0].shape[node.attrs["axis"]], 2))))),
    doc="argsort[axis](x): the stable sorting permutation along axis, NaN last; no gradient",
))
