"""Structured primitives: constants, broadcasting, shapes, reductions, products, indexing.

Each block below is one primitive: shape rule, NumPy evaluation, derivative rules (adjoint and
tangent, in IR operations) and C kernel. Linear primitives are their own tangent rule: they apply
themselves to the tangent of their (first) operand. Primitives that only move data state
``cost=0`` (no FLOPs in ``inspect``'s estimate); those whose result can share its operand's
memory state how (``view``). The kernels write loops through the backend's kernel context ``k``:

- ``k.out`` / ``k.ins[i]``: the operands, each with ``.shape``, ``.ctype``, ``.strides`` (in
  elements) and ``k.at(operand, offset)``, which renders an element read or write;
- ``k.loop(shape, body)``: nested ``for`` loops over ``shape``, whose indices ``k.idx(shape)``
  are ``_i0, _i1, ...`` and ``0`` along an axis of size 1 (which gets no loop);
- ``k.offset(operand, indices)``: the row-major offset of C index expressions in ``operand``;
- ``k.fail(code)``: the statement that stops the function with a status code.

A kernel's own names (indices, pointers, accumulators) start with ``_``: no IR name does in C.
"""
from __future__ import annotations

import functools

import numpy as np
from symgrad.core.symbolic import sympy as _sympy

from symgrad.errors import DTypeError, ShapeError
from symgrad.core import dims
from symgrad.core.cspell import c_literal as _lit
from symgrad.core.types import COMPLEX_DTYPES, INT_DTYPES, TensorType
from symgrad.core import batching, ops
from symgrad.core.batching import shifted, to_front
from symgrad.core.primitive import (BROADCAST, PADDING, REINTERPRET, WINDOW, Primitive, View,
                                    bind, register)
from symgrad.core.primitives.cindex import (dim as _d, for_range as _for, plus as _plus,
                                           times as _times)
from symgrad.core.primitives.cumulative import prod_others_linear


_dim_equal = dims.equal


def _no_inputs_vjp(g, out, *inputs, **attrs):
    return (None,) * len(inputs)


def _no_tangent(t, out, *inputs, **attrs):
    return None


def _same_type_noop(node, ins, producer):
    """The simplifier's rule for a statement that is the identity where it keeps its operand's
    type (a reshape to the same shape)."""
    return ins[0] if ins[0].type == node.out.type else None


def _row_major_strides(shape):
    out, acc = [], 1
    for d in reversed(shape):
        out.append(acc)
        acc *= d
    return tuple(reversed(out))


def _linear(rule):
    """The tangent rule of an operation linear in its first operand: the operation itself."""
    def jvp(t, out, x, *rest, **attrs):
        return None if t[0] is None else rule(t[0], *rest, **attrs)
    return jvp


# --- const ---------------------------------------------------------------------------------------

def _const_c(k):
    value = k.attrs["value"].value
    i0, = k.idx((value.size,))          # the loop's own index name (``_i0``): never spelled here
    symbol = k.data_symbol(value)
    if symbol is not None:              # a large constant: data beside the C, not literals
        return k.loop((value.size,), [f"{k.at(k.out, i0)} = {symbol}[{i0}];"])
    data = ", ".join(_lit(v, k.out.ctype) for v in value.ravel()) or "0"
    return [f"static const {k.out.ctype} _data[{max(value.size, 1)}] = {{{data}}};",
            *k.loop((value.size,), [f"{k.at(k.out, i0)} = _data[{i0}];"])]


register(Primitive(
    name="const",
    shape_rule=lambda *, value: TensorType(value.value.shape, value.value.dtype.name),
    impl=lambda *, value: value.value,
    vjp=_no_inputs_vjp, jvp=_no_tangent, batch=batching.no_operands,
    c_kernel=_const_c,
    literal=True, cost=0,
    infix=lambda operands, *, value: repr(value),
    doc="a constant array (0-d constants are inlined as literals)",
))


# --- iota: arange along one axis ------------------------------------------------------------------

def _iota_type(*, shape, dimension, dtype):
    return TensorType(tuple(shape), dtype)


def _iota_impl(*, shape, dimension, dtype):
    r = np.arange(shape[dimension], dtype=dtype)
    view = [1] * len(shape)
    view[dimension] = shape[dimension]
    return np.broadcast_to(r.reshape(view), shape)


register(Primitive(
    name="iota", shape_rule=_iota_type, impl=_iota_impl, vjp=_no_inputs_vjp, jvp=_no_tangent,
    batch=batching.no_operands,
    cost=0,
    c_kernel=lambda k: k.loop(k.out.shape, [
        f"{k.at(k.out, k.offset(k.out, k.idx(k.out.shape)))} = "
        f"({k.out.ctype}){k.idx(k.out.shape)[k.attrs['dimension']]};"]),
    doc="iota[shape, dimension]: 0, 1, 2, ... along one axis",
))


# --- broadcast_in_dim -----------------------------------------------------------------------------

def _bid_type(x, *, shape, dims):
    axes = dims     # the attribute's name shadows the dims module here
    if len(axes) != x.ndim or list(axes) != sorted(axes) or not all(
            x.shape[i] == 1 or _dim_equal(x.shape[i], shape[d]) for i, d in enumerate(axes)):
        raise ShapeError(f"cannot broadcast shape {x.shape} to {shape}")
    return TensorType(tuple(shape), x.dtype)


def _bid_impl(x, *, shape, dims):
    view = [1] * len(shape)
    for i, d in enumerate(dims):
        view[d] = x.shape[i]
    return np.broadcast_to(x.reshape(view), shape)


def _bid_vjp(g, out, x, *, shape, dims):
    summed = [d for d in range(len(shape)) if d not in dims]
    summed += [d for i, d in enumerate(dims) if x.shape[i] == 1 and shape[d] != 1]
    return (ops.reshape(ops.reduce_sum(g, summed), x.shape),)


def _bid_c(k):
    x, out = k.ins[0], k.out
    idx = k.idx(out.shape)
    src = [idx[d] if x.shape[i] != 1 else "0" for i, d in enumerate(k.attrs["dims"])]
    return k.loop(out.shape, [
        f"{k.at(out, k.offset(out, idx))} = {k.at(x, k.offset(x, src))};"])


def _bid_batch(size, bdims, x, *, shape, dims):
    # The batch axis goes right after the result axis of x's axis before it, so x's axes keep
    # their order (the rule's dims stay sorted) and nothing is transposed.
    b = bdims[0]
    p = dims[b - 1] + 1 if b else 0
    return bind("broadcast_in_dim", x, shape=(*shape[:p], size, *shape[p:]),
                dims=(*dims[:b], p, *(d + 1 for d in dims[b:]))), p


def _bid_view(node):
    """Read in place by elementwise loops: the operand's shape, with 1 on the new axes."""
    expanded = [1] * node.out.ndim
    for i, d in enumerate(node.attrs["dims"]):
        expanded[d] = node.inputs[0].shape[i]
    return View(BROADCAST, shape=tuple(expanded))


register(Primitive(
    name="broadcast_in_dim", shape_rule=_bid_type, impl=_bid_impl, vjp=_bid_vjp, c_kernel=_bid_c,
    jvp=_linear(lambda t, *, shape, dims: ops.broadcast_in_dim(t, shape, dims)),
    batch=_bid_batch,
    view=_bid_view, simplify=_same_type_noop, same_elements=True, cost=0,
    doc="broadcast_in_dim[shape, dims](x): x's axis i becomes axis dims[i] of shape",
))


# --- reshape ---------------------------------------------------------------------------------------

def _reshape_type(x, *, shape):
    if not dims.equal(dims.prod(shape), x.size):
        raise ShapeError(f"cannot reshape {x.shape} (size {x.size}) into {tuple(shape)}")
    return TensorType(tuple(shape), x.dtype)


def _copy_c(k):
    x, out = k.ins[0], k.out
    i0, = k.idx((out.size,))
    return k.loop((out.size,), [f"{k.at(out, i0)} = {k.at(x, i0)};"])


register(Primitive(
    name="reshape", shape_rule=_reshape_type,
    impl=lambda x, *, shape: np.reshape(x, shape),
    vjp=lambda g, out, x, *, shape: (ops.reshape(g, x.shape),),
    jvp=_linear(lambda t, *, shape: ops.reshape(t, shape)),
    batch=lambda size, bdims, x, *, shape: (
        ops.reshape(to_front(x, bdims[0], size), (size, *shape)), 0),
    c_kernel=_copy_c,
    # Row-major reshape moves no data: the same buffer, read with other strides.
    view=lambda node: View(REINTERPRET),
    simplify=_same_type_noop, same_elements=True, cost=0,
    doc="reshape[shape](x), row-major",
))


# --- transpose ---------------------------------------------------------------------------------------

def _transpose_type(x, *, perm):
    if sorted(perm) != list(range(x.ndim)):
        raise ShapeError(f"axes {perm} are not a permutation of the {x.ndim} axes of {x.shape}")
    return TensorType(tuple(x.shape[p] for p in perm), x.dtype)


def _transpose_c(k):
    x, out = k.ins[0], k.out
    idx = k.idx(out.shape)
    src = [None] * x.ndim
    for i, p in enumerate(k.attrs["perm"]):
        src[p] = idx[i]
    return k.loop(out.shape, [
        f"{k.at(out, k.offset(out, idx))} = {k.at(x, k.offset(x, src))};"])


register(Primitive(
    name="transpose", shape_rule=_transpose_type,
    impl=lambda x, *, perm: np.transpose(x, perm),
    vjp=lambda g, out, x, *, perm: (ops.transpose(g, tuple(np.argsort(perm))),),
    jvp=_linear(lambda t, *, perm: ops.transpose(t, perm)),
    batch=lambda size, bdims, x, *, perm: (
        ops.transpose(x, (bdims[0], *(shifted(p, bdims[0]) for p in perm))), 0),
    c_kernel=_transpose_c,
    simplify=lambda node, ins, producer: (
        ins[0] if node.attrs["perm"] == tuple(range(node.out.ndim)) else None),
    cost=0,
    doc="transpose[perm](x): output axis i is input axis perm[i]",
))


# --- reductions ------------------------------------------------------------------------------------

def _reduce_type(x, *, axes):
    if any(not 0 <= a < x.ndim for a in axes) or len(set(axes)) != len(axes):
        raise ShapeError(f"bad axes {axes} for an array of shape {x.shape}")
    return TensorType(tuple(d for i, d in enumerate(x.shape) if i not in axes), x.dtype)


def _nonempty_reduce_type(x, *, axes):
    if x.dtype in COMPLEX_DTYPES:
        # NumPy orders complex numbers lexicographically; symgrad does not (docs/complex.md).
        raise DTypeError(f"max/min are not defined for complex values ({x.dtype}) in symgrad; "
                         f"docs/complex.md lists what is")
    if any(x.shape[a] == 0 for a in axes):
        raise ShapeError(f"zero-size reduction over axes {axes} of shape {x.shape} has no identity")
    return _reduce_type(x, axes=axes)


def _reduce_c(init, update, k):
    """out = init; for every input element: out[kept] = update(out[kept], x)."""
    x, out = k.ins[0], k.out
    axes = k.attrs["axes"]
    idx = k.idx(x.shape)
    kept = [ix for i, ix in enumerate(idx) if i not in axes]
    acc = k.at(out, k.offset(out, kept))
    o0, = k.idx((out.size,))
    return [*k.loop((out.size,), [f"{k.at(out, o0)} = {init(out.ctype)};"]),
            *k.loop(x.shape, update(acc, k.at(x, k.offset(x, idx)), x.ctype))]


def _sum_update(acc, v, ctype):
    return [f"{acc} += {v};"]


def _prod_update(acc, v, ctype):
    return [f"{acc} *= {v};"]


def _max_update(op):
    def update(acc, v, ctype):
        nan = " || isnan(_v)" if ctype in ("double", "float") else ""
        return [f"{{ const {ctype} _v = {v}; if (_v {op} {acc}{nan}) {acc} = _v; }}"]
    return update


def _extreme(ctype, sign):
    if ctype in ("double", "float"):
        return "(-INFINITY)" if sign < 0 else "INFINITY"
    bits = {"int64_t": "INT64", "int32_t": "INT32"}.get(ctype, "INT64")
    return f"{bits}_MIN" if sign < 0 else f"{bits}_MAX"


def _reduce_batch(name, size, bdims, x, *, axes):
    # The batch axis stays where it is; the reduced axes move past it.
    d = bdims[0]
    return bind(name, x, axes=tuple(shifted(a, d) for a in axes)), d - sum(a < d for a in axes)


# (initial value, update) of each reduction: its kernel, and the C backend's fused loops.
_SUM = (lambda t: _lit(0, t), _sum_update)
_PROD = (lambda t: _lit(1, t), _prod_update)
_MAX = (lambda t: _extreme(t, -1), _max_update(">"))
_MIN = (lambda t: _extreme(t, +1), _max_update("<"))


register(Primitive(
    name="reduce_sum", shape_rule=_reduce_type,
    impl=lambda x, *, axes: np.sum(x, axis=axes),
    vjp=lambda g, out, x, *, axes: (ops.broadcast_in_dim(
        g, x.shape, tuple(i for i in range(x.ndim) if i not in axes)),),
    jvp=_linear(lambda t, *, axes: ops.reduce_sum(t, axes)),
    batch=functools.partial(_reduce_batch, "reduce_sum"),
    c_kernel=lambda k: _reduce_c(*_SUM, k), c_reduce=_SUM,
    doc="reduce_sum[axes](x)",
))


def _extremum_vjp(arg, g, out, x, *, axes):
    """The gradient goes to the first maximal (minimal) element of each reduced group."""
    flat, perm = ops.move_axes_last(x, axes)
    winner = bind(arg, flat)
    positions = bind("iota", shape=flat.shape, dimension=flat.ndim - 1, dtype="int64")
    kept = tuple(range(flat.ndim - 1))
    hit = ops.eq(positions, ops.broadcast_in_dim(winner, flat.shape, kept))
    routed = ops.select(hit, ops.broadcast_in_dim(g, flat.shape, kept), ops.scalar_like(0, g))
    return (ops.restore_axes(routed, x.shape, perm),)


def _extremum_jvp(arg, t, out, x, *, axes):
    """The tangent of the first maximal (minimal) element of each reduced group."""
    if t[0] is None:
        return None
    flat, _ = ops.move_axes_last(x, axes)
    t_flat, _ = ops.move_axes_last(t[0], axes)
    positions = bind("iota", shape=flat.shape, dimension=flat.ndim - 1, dtype="int64")
    kept = tuple(range(flat.ndim - 1))
    hit = ops.eq(positions, ops.broadcast_in_dim(bind(arg, flat), flat.shape, kept))
    picked = ops.select(hit, t_flat, ops.scalar_like(0, t_flat))
    return ops.reshape(ops.reduce_sum(picked, (flat.ndim - 1,)), out.shape)


register(Primitive(
    name="reduce_max", shape_rule=_nonempty_reduce_type,
    impl=lambda x, *, axes: _real_extremum(x, axes, np.argmax),
    vjp=lambda g, out, x, *, axes: _extremum_vjp("argmax", g, out, x, axes=axes),
    jvp=lambda t, out, x, *, axes: _extremum_jvp("argmax", t, out, x, axes=axes),
    batch=functools.partial(_reduce_batch, "reduce_max"),
    c_kernel=lambda k: _reduce_c(*_MAX, k), c_reduce=_MAX,
    doc="reduce_max[axes](x); the gradient goes to the first maximum",
))
register(Primitive(
    name="reduce_min", shape_rule=_nonempty_reduce_type,
    impl=lambda x, *, axes: _real_extremum(x, axes, np.argmin),
    vjp=lambda g, out, x, *, axes: _extremum_vjp("argmin", g, out, x, axes=axes),
    jvp=lambda t, out, x, *, axes: _extremum_jvp("argmin", t, out, x, axes=axes),
    batch=functools.partial(_reduce_batch, "reduce_min"),
    c_kernel=lambda k: _reduce_c(*_MIN, k), c_reduce=_MIN,
    doc="reduce_min[axes](x); the gradient goes to the first minimum",
))


def _real_extremum(x, axes, argfn):
    """max/min of x over axes, choosing by real part (so the complex step rides along)."""
    if not np.iscomplexobj(x):
        return (np.max if argfn is np.argmax else np.min)(x, axis=axes)
    kept = [i for i in range(x.ndim) if i not in axes]
    xt = np.transpose(x, kept + list(axes))
    flat = xt.reshape(xt.shape[:len(kept)] + (-1,))
    idx = argfn(flat.real, axis=-1)
    return np.take_along_axis(flat, idx[..., None], axis=-1)[..., 0]


def _prod_vjp(g, out, x, *, axes):
    flat, perm = ops.move_axes_last(x, axes)
    others = bind("prod_others", flat)
    kept = tuple(range(flat.ndim - 1))
    return (ops.restore_axes(ops.mul(ops.broadcast_in_dim(g, flat.shape, kept), others),
                             x.shape, perm),)


def _prod_jvp(t, out, x, *, axes):
    # d prod = sum_j t_j * prod_{k != j} x_k: exact at zeros, like the adjoint.
    if t[0] is None:
        return None
    flat, _ = ops.move_axes_last(x, axes)
    t_flat, _ = ops.move_axes_last(t[0], axes)
    terms = ops.mul(bind("prod_others", flat), t_flat)
    return ops.reshape(ops.reduce_sum(terms, (flat.ndim - 1,)), out.shape)


register(Primitive(
    name="reduce_prod", shape_rule=_reduce_type,
    impl=lambda x, *, axes: np.prod(x, axis=axes),
    vjp=_prod_vjp,
    jvp=_prod_jvp,
    batch=functools.partial(_reduce_batch, "reduce_prod"),
    c_kernel=lambda k: _reduce_c(*_PROD, k), c_reduce=_PROD,
    doc="reduce_prod[axes](x); its gradient is the product of the other elements (exact at 0)",
))


# --- last-axis helpers of the reduction rules -------------------------------------------------------

def _last_axis_type(x, out_dtype=None):
    if x.ndim == 0 or x.shape[-1] == 0:
        raise ShapeError(f"needs a non-empty last axis, got shape {x.shape}")
    return x, out_dtype


def _last_axis_batch(name, size, bdims, x):
    """argmax, argmin, prod_others work along the last axis: the batch axis may sit anywhere
    before it."""
    d = bdims[0]
    if d == x.ndim - 1:
        x, d = batching.move_axis(x, d, 0), 0
    return bind(name, x), d


def _arg_type(x):
    if x.dtype in COMPLEX_DTYPES:
        raise DTypeError(f"argmax/argmin are not defined for complex values ({x.dtype}) in "
                         f"symgrad; docs/complex.md lists what is")
    _last_axis_type(x)
    return TensorType(x.shape[:-1], "int64")


def _arg_c(op, k):
    x, out = k.ins[0], k.out
    n = x.shape[-1]
    i0, = k.idx((out.size,))
    row = _times(i0, n)
    nan = (" || (isnan(_v) && !isnan(_best))" if x.ctype in ("double", "float") else "")
    scan = _for("_r", n, lambda r: [
        f"const {x.ctype} _v = {k.at(x, _plus(row, r))};",
        f"if (_v {op} _best{nan}) {{ _best = _v; _arg = _r; }}"], start=1)
    if not scan:            # a row of one element: its index is 0
        return k.loop((out.size,), [f"{k.at(out, i0)} = 0;"])
    return k.loop((out.size,), [
        f"{x.ctype} _best = {k.at(x, row)};",
        "int64_t _arg = 0;",
        *scan,
        f"{k.at(out, i0)} = _arg;",
    ])


register(Primitive(
    name="argmax", shape_rule=_arg_type,
    impl=lambda x: np.argmax(np.real(x), axis=-1),
    vjp=_no_inputs_vjp, jvp=_no_tangent,
    batch=functools.partial(_last_axis_batch, "argmax"),
    c_kernel=lambda k: _arg_c(">", k),
    doc="argmax(x) along the last axis, first occurrence",
))
register(Primitive(
    name="argmin", shape_rule=_arg_type,
    impl=lambda x: np.argmin(np.real(x), axis=-1),
    vjp=_no_inputs_vjp, jvp=_no_tangent,
    batch=functools.partial(_last_axis_batch, "argmin"),
    c_kernel=lambda k: _arg_c("<", k),
    doc="argmin(x) along the last axis, first occurrence",
))


def _prod_others_impl(x):
    ones = np.ones_like(x[..., :1])
    left = np.cumprod(np.concatenate([ones, x[..., :-1]], axis=-1), axis=-1)
    right = np.cumprod(np.concatenate([ones, x[..., :0:-1]], axis=-1), axis=-1)[..., ::-1]
    return left * right


def _prod_others_vjp(g, out, x):
    # The Jacobian of prod_others is the Hessian of prod: symmetric, so its vjp is its jvp.
    # Both are recurrences (primitives/cumulative.py), exact at zeros to every order; a closed form
    # such as (sum(g * out) - g * out) / x is 0/0 wherever an entry is 0.
    return (prod_others_linear(x, g),)


def _prod_others_jvp(t, out, x):
    return None if t[0] is None else prod_others_linear(x, t[0])


def _prod_others_c(k):
    """Products from the left, then times products from the right: no division."""
    x, out = k.ins[0], k.out
    n = out.shape[-1]
    rows = dims.prod(out.shape[:-1])
    i0, = k.idx((rows,))
    if n == 1:               # the product of no other elements
        return k.loop((out.size,), [f"{k.at(out, i0)} = {_lit(1, out.ctype)};"])
    row = _times(i0, n)
    at = (lambda v, r: k.at(v, _plus(row, r)))
    return k.loop((rows,), [
        f"{out.ctype} _acc = {_lit(1, out.ctype)};",
        f"for (int64_t _r = 0; _r < {_d(n)}; ++_r) {{ "
        f"{at(out, '_r')} = _acc; _acc *= {at(x, '_r')}; }}",
        f"_acc = {_lit(1, out.ctype)};",
        f"for (int64_t _r = {_d(n)} - 1; _r >= 0; --_r) {{ "
        f"{at(out, '_r')} *= _acc; _acc *= {at(x, '_r')}; }}",
    ])


register(Primitive(
    name="prod_others",
    shape_rule=lambda x: TensorType(_last_axis_type(x)[0].shape, x.dtype),
    impl=_prod_others_impl,
    vjp=_prod_others_vjp,
    jvp=_prod_others_jvp,
    batch=functools.partial(_last_axis_batch, "prod_others"),
    c_kernel=_prod_others_c,
    doc="prod_others(x): along the last axis, the product of all other elements (no division)",
))


# --- matmul ----------------------------------------------------------------------------------------

def _mm_dims(shape, transposed):
    rows, cols = shape[-2], shape[-1]
    return (cols, rows) if transposed else (rows, cols)


def _matmul_type(a, b, *, transpose_a=False, transpose_b=False):
    if a.ndim < 2 or b.ndim < 2 or not dims.same_shape(a.shape[:-2], b.shape[:-2]):
        raise ShapeError(f"matmul needs operands (..., M, K) and (..., K, N) with equal batch "
                         f"dimensions, got {a.shape} and {b.shape}")
    if a.dtype != b.dtype:
        raise DTypeError(f"operands have different dtypes {a.dtype} and {b.dtype}")
    m, ka = _mm_dims(a.shape, transpose_a)
    kb, n = _mm_dims(b.shape, transpose_b)
    if not dims.equal(ka, kb):
        raise ShapeError(f"contracted dimensions differ: {a.shape} @ {b.shape} "
                         f"({ka} != {kb})")
    return TensorType(a.shape[:-2] + (m, n), a.dtype)


def _matmul_impl(a, b, *, transpose_a=False, transpose_b=False):
    if transpose_a:
        a = np.swapaxes(a, -1, -2)
    if transpose_b:
        b = np.swapaxes(b, -1, -2)
    return np.matmul(a, b)


def _matmul_vjp(g, out, a, b, *, transpose_a=False, transpose_b=False):
    # C = op(A) op(B):  d op(A) = G op(B)^T,  d op(B) = op(A)^T G.
    da = (bind("matmul", b, g, transpose_a=transpose_b, transpose_b=True) if transpose_a
          else bind("matmul", g, b, transpose_a=False, transpose_b=not transpose_b))
    db = (bind("matmul", g, a, transpose_a=True, transpose_b=transpose_a) if transpose_b
          else bind("matmul", a, g, transpose_a=not transpose_a, transpose_b=False))
    return da, db


def _matmul_jvp(t, out, a, b, **flags):
    # Bilinear: d(op(A) op(B)) = op(dA) op(B) + op(A) op(dB).
    ta, tb = t
    terms = ([bind("matmul", ta, b, **flags)] if ta is not None else []) + \
            ([bind("matmul", a, tb, **flags)] if tb is not None else [])
    if not terms:
        return None
    return terms[0] if len(terms) == 1 else ops.add(*terms)


def _matmul_batch(size, bdims, a, b, **flags):
    da, db = bdims
    if db is None and da is not None and b.ndim == 2 and not flags.get("transpose_a"):
        # The examples' rows stacked into one product: (size * M, K) @ op(B).
        a = to_front(a, da, size)
        m, k = a.shape[1:]
        out = bind("matmul", ops.reshape(a, (dims.normalize(size * m), k)), b, **flags)
        return ops.reshape(out, (size, m, out.shape[-1])), 0
    if da is None and db is not None and a.ndim == 2 and not flags.get("transpose_b"):
        # The examples' columns side by side: op(A) @ (K, size * N); the batch axis stays
        # in the middle of the result.
        b = batching.move_axis(b, db, 1)
        k, n = b.shape[0], b.shape[2]
        out = bind("matmul", a, ops.reshape(b, (k, dims.normalize(size * n))), **flags)
        return ops.reshape(out, (out.shape[0], size, n)), 1
    # A batched product: the batch is one more leading batch axis of both operands.
    return batching.leading("matmul", size, bdims, a, b, **flags)


TALL = 4096   # rows of A beyond which A^T B streams A row by row (see _matmul_c)

# Products of at least this many multiply-adds (m*n*k) call the BLAS gemm where one is linked
# (-DSYMGRAD_USE_BLAS, see symgrad/templates/blas.h); smaller ones run the generated loops, which measured as
# fast there (docs/design.md). Matrix-vector products are no exception: gemm beat the loops on
# them too (256x3073 @ 3073: 2.1 -> 0.4 ms).
GEMM_MIN_MADDS = 8192
INT32_MAX = 2**31 - 1   # BLAS takes sizes as 32-bit ints; larger ones run the loops


def _gemm_call(t, ta, tb, m_, n_, kk_, accumulate=False):
    """_pc = op(_pa) op(_pb) (+ _pc, accumulating) by the row-major CBLAS gemm, its rows or
    columns split over the thread pool (symgradrt_[sd]gemm_par: narrow.c.j2)."""
    gemm = "symgradrt_sgemm_par" if t == "float" else "symgradrt_dgemm_par"
    lda = m_ if ta else kk_          # leading dimension: the row length of A as stored
    ldb = kk_ if tb else n_
    return [f"{gemm}({int(ta)}, {int(tb)}, {m_}, {n_}, {kk_},",
            f"{' ' * len(gemm)} _pa, {lda}, _pb, {ldb}, {_lit(int(accumulate), t)}, _pc, {n_});"]


# Products whose result has at most this many columns (a static count) and a wide operand read
# as stored (A B or A^T B) run register-blocked kernels instead of the BLAS (backends/c/narrow.py).
NARROW_MAX = 16


def _narrow_call(t, ta, tb, m, n, kk, accumulate=False):
    """The call of the narrow kernel for _pc = op(_pa) op(_pb) (+ _pc), or None when none
    applies."""
    if not isinstance(n, int) or n > NARROW_MAX or n < 1 or t not in ("double", "float"):
        return None
    letter = "s" if t == "float" else "d"
    if kk == 1:  # an outer product: A's and B's elements are contiguous, transposed or not
        return f"symgradrt_mm_outer_{letter}{n}_run({_d(m)}, _pa, _pb, _pc, {int(accumulate)});"
    if tb:
        return None
    if m == 1:   # a vector times B (A's one row or column is contiguous either way)
        return f"symgradrt_mm_mv_{letter}{n}_run({_d(kk)}, _pa, _pb, _pc, {int(accumulate)});"
    if ta:       # A stored K x M: result rows are A's columns
        return (f"symgradrt_mm_tn_{letter}{n}_run({_d(kk)}, {_d(m)}, _pa, _pb, _pc, "
                f"{int(accumulate)});")
    return f"symgradrt_mm_nn_{letter}{n}_run({_d(m)}, {_d(kk)}, _pa, _pb, _pc, {int(accumulate)});"


# Products A^T B (A stored K x M) with more than NARROW_MAX result columns and a short
# contraction run a kernel that copies A's columns in panels and reads B packed, instead of the
# BLAS gemm, which packs A (the long operand) whole (backends/c/narrow.py, templates/
# wide_tn.c.j2). Against symgrad's sgemm/dgemm path, one core, best of 15, K x M x N, ms
# (float32 / float64), load average 2.5-3.7 (three other jobs on the machine): kernel wins
# 200x3073x100 1.24 vs 1.37 / 2.70 vs 3.47; 1000x1000x100 2.06 vs 2.23 / 4.70 vs 6.00;
# 1000x3000x100 6.99 vs 7.55 / 13.6 vs 18.1; 64x3073x20 0.115 vs 0.145 / 0.211 vs 0.240;
# 64x5000x32 0.230 vs 0.239 / 0.454 vs 0.540; about even 256x500x256, 2000x1000x100,
# 2000x500x256, 4000x1000x64; the BLAS wins where M is small (200x96x256 0.108 vs 0.102 /
# 0.248 vs 0.198, 500x100x17 0.040 vs 0.021, 200x48x100 0.027 vs 0.020). N is bounded so that
# a chunk of packed B (<= 256 x N) stays in L2 cache for all of A's panels.
WIDE_MAX_K = 1024
WIDE_MIN_M = 512
WIDE_MAX_N = 256
# A B (nn) runs the same way when the contraction is long, for a result of at most WIDE_MAX_N
# columns: it reads A in place and copies B in panels, where the BLAS packs both (and symgrad
# splits a long contraction over chunks, KSPLIT_RATIO). M x K x N, same conditions: kernel
# wins 200x3072x100 (W5's X W1) 1.27 vs 1.33-1.51 / 2.48-2.76 vs 2.68-3.16; 256x3073x20 0.358
# vs 0.433 / 0.635 vs 0.887; 2000x1000x64 2.48 vs 2.88 / 5.50 vs 6.29; 100x5000x32 0.352 vs
# 0.372 / 0.649 vs 0.795; 64x1000x64 0.088 vs 0.090 / 0.170 vs 0.191; 1000x1000x100 even /
# 3.98 vs 4.20; 200x512x256 0.486 vs 0.513 / even; the BLAS wins 64x512x17 (0.019 vs 0.014 /
# 0.032 vs 0.024).
WIDE_NN_MIN_K = 768
WIDE_NN_MIN_M = 64


def _wide_call(t, ta, m, n, kk, accumulate):
    """The call of the wide A^T B (``ta``) or A B kernel (an int, 0 when done), or None when
    the shapes rule it out; with a size known only at run time, the call behind a test of it."""
    if t not in ("double", "float") or kk == 1:
        return None
    tests = []
    rules = [(kk, lambda v: v > WIDE_MAX_K, f"{_d(kk)} <= {WIDE_MAX_K}"),
             (m, lambda v: v < WIDE_MIN_M, f"{_d(m)} >= {WIDE_MIN_M}")] if ta else [
        (kk, lambda v: v < WIDE_NN_MIN_K, f"{_d(kk)} >= {WIDE_NN_MIN_K}"),
        (m, lambda v: v < WIDE_NN_MIN_M, f"{_d(m)} >= {WIDE_NN_MIN_M}")]
    for size, bad, test in ((n, lambda v: v <= NARROW_MAX, f"{_d(n)} > {NARROW_MAX}"),
                            (n, lambda v: v > WIDE_MAX_N, f"{_d(n)} <= {WIDE_MAX_N}"), *rules):
        if isinstance(size, int):
            if bad(size):
                return None
        else:
            tests.append(test)
    letter = "s" if t == "float" else "d"
    call = (f"symgradrt_mm_tnw_{letter}_run({_d(kk)}, {_d(m)}, {_d(n)}, _pa, _pb, _pc, "
            f"{int(accumulate)})" if ta else
            f"symgradrt_mm_nnw_{letter}_run({_d(m)}, {_d(kk)}, {_d(n)}, _pa, _pb, _pc, "
            f"{int(accumulate)})")
    return " && ".join([*tests, f"{call} == 0"])


def _with_gemm(loops, t, ta, tb, m, n, kk, accumulate=False):
    """``loops`` (C lines), or the gemm call under ``#ifdef SYMGRAD_USE_BLAS`` with the loops as
    the fallback. Static sizes decide here; a run-time size adds a test in C (the product is
    large enough, every size fits an int)."""
    sizes = (m, n, kk)
    static = [d for d in sizes if isinstance(d, int)]
    if t not in ("double", "float"):      # BLAS multiplies floats only: integers and complex
        return loops
    if any(d > INT32_MAX for d in static):
        return loops
    if len(static) == 3 and m * n * kk < GEMM_MIN_MADDS:
        return loops
    call = _gemm_call(t, ta, tb, *(_d(d) for d in sizes), accumulate)
    if len(static) == 3:
        return ["#ifdef SYMGRAD_USE_BLAS", *call, "#else", *loops, "#endif"]
    fits = [f"{_d(d)} <= INT32_MAX" for d in dict.fromkeys(sizes) if not isinstance(d, int)]
    test = " && ".join([f"{_d(m * n * kk)} >= {GEMM_MIN_MADDS}", *fits])
    return ["#ifdef SYMGRAD_USE_BLAS", f"if ({test}) {{", *("    " + x for x in call),
            "} else", "#endif", "{", *("    " + x for x in loops), "}"]


def _matmul_c(k):
    a, b, out = k.ins[0], k.ins[1], k.out
    ta, tb = k.attrs.get("transpose_a", False), k.attrs.get("transpose_b", False)
    m, kk = (dims.normalize(d) for d in _mm_dims(a.shape, ta))
    n = dims.normalize(out.shape[-1])
    batch = dims.prod(out.shape[:-2])
    t = out.ctype
    zero = _lit(0, t)
    adds = k.accumulate         # add the product to _pc's contents (backends/c/accumulate.py)

    # Elements of the operands as stored (A is (K, M) when transposed, B (N, K)) and of C.
    def A(i, p):
        return f"_pa[{_plus(_times(p, m), i) if ta else _plus(_times(i, kk), p)}]"

    def B(p, j):
        return f"_pb[{_plus(_times(j, kk), p) if tb else _plus(_times(p, n), j)}]"

    def C(i, j):
        return f"_pc[{_plus(_times(i, n), j)}]"

    def i_k_j(i):
        return [*([] if adds else _for("_j", n, lambda j: [f"{C(i, j)} = {zero};"])),
                *_for("_p", kk, lambda p: [
                    f"const {t} _aip = {A(i, p)};",
                    *_for("_j", n, lambda j: [f"{C(i, j)} += _aip * {B(p, j)};"])])]

    if ta and not tb:
        # C = A^T B with A stored (K, M). With few rows K, i-k-j is best: the K cache lines
        # of A that a run of i touches stay cached and C's row stays in registers. With many
        # rows (a tall A, e.g. a whole data set) that order streams all of A once per i, so
        # it goes p-i-j over blocks of C's rows instead: A is read once, row by row, and the
        # block of C (<= 16 KB) stays in L1. A run-time K decides at run time.
        blk = max(8, 2048 // n) if isinstance(n, int) and n > 0 else 64

        def p_i_j(rows):
            """The p-i-j loops; ``rows(body)`` loops ``body(i)`` over a block of C's rows."""
            return _for("_p", kk, lambda p: rows(lambda i: [
                f"const {t} _api = {A(i, p)};",
                *_for("_j", n, lambda j: [f"{C(i, j)} += _api * {B(p, j)};"])]))
        clear = [] if adds else _for("_r", m * n, lambda r: [f"_pc[{r}] = {zero};"])
        if isinstance(m, int) and m <= blk:          # one block: all of C's rows
            tall = clear + p_i_j(lambda body: _for("_i", m, body))
        else:
            block = p_i_j(lambda body: [
                "for (int64_t _i = _blk; _i < _blk_end; ++_i) {",
                *("    " + line for line in body("_i")), "}"])
            tall = [*clear,
                    f"for (int64_t _blk = 0; _blk < {_d(m)}; _blk += {blk}) {{",
                    f"    const int64_t _blk_end = _blk + {blk} < {_d(m)} ? _blk + {blk} : "
                    f"{_d(m)};",
                    *("    " + x for x in block), "}"]
        short = _for("_i", m, i_k_j)
        if isinstance(kk, int):
            body = short if kk <= TALL else tall
        else:
            body = [f"if ({_d(kk)} <= {TALL}) {{", *("    " + x for x in short), "} else {",
                    *("    " + x for x in tall), "}"]
    elif not tb:   # i-k-j: the innermost loop runs along rows of B and C
        body = _for("_i", m, i_k_j)
    else:        # i-j-k: each output is a dot product along rows of A and B
        body = _for("_i", m, lambda i: _for("_j", n, lambda j: [
            f"{t} _acc = {zero};",
            *_for("_p", kk, lambda p: [f"_acc += {A(i, p)} * {B(p, j)};"]),
            f"{C(i, j)} {'+=' if adds else '='} _acc;"]))
    # An outer product (k = 1) is one pass over C: no gemm call, nor a kernel that packs its
    # operands (0.39 of the naive SVM's time was that, m = 3073, k = 1), but a narrow kernel
    # of its own (narrow.py) or the loops.
    code = _with_gemm(body, t, ta, tb, m, n, kk, adds)
    narrow = _narrow_call(t, ta, tb, m, n, kk, adds)
    if kk == 1 and code is not body:
        code, big = body, True
    else:
        big = code is not body
    if narrow is not None and big:
        # GNU C vector extensions (gcc, clang); other compilers take the BLAS or the loops.
        code = ["#if defined(__GNUC__)", narrow, "#else", *code, "#endif"]
    elif big and not tb and (wide := _wide_call(t, ta, m, n, kk, adds)) is not None:
        # The gemm or the loops when the kernel is ruled out at run time, or its buffer
        # cannot be allocated.
        code = ["#if defined(__GNUC__)", f"if (!({wide})) {{", *("    " + x for x in code), "}",
                "#else", *code, "#endif"]
    b0, = k.idx((batch,))
    return k.loop((batch,), [
        f"const {t} *restrict _pa = {_plus(k.ptr(a), _times(b0, m * kk))};",
        f"const {t} *restrict _pb = {_plus(k.ptr(b), _times(b0, kk * n))};",
        f"{t} *restrict _pc = {_plus(k.ptr(out), _times(b0, m * n))};",
        *code])


def _matmul_flops(node):
    """2*M*N*K per batch: a multiply and an add per term."""
    a = node.inputs[0]
    k = a.shape[-2] if node.attrs.get("transpose_a") else a.shape[-1]
    return 2 * k * node.out.type.size


def _matmul_infix(operands, *, transpose_a=False, transpose_b=False):
    a, b = (f"{o}.T" if t else o for o, t in zip(operands, (transpose_a, transpose_b)))
    return f"{a} @ {b}"


register(Primitive(
    name="matmul", shape_rule=_matmul_type, impl=_matmul_impl, vjp=_matmul_vjp, jvp=_matmul_jvp,
    batch=_matmul_batch,
    c_kernel=_matmul_c, cost=_matmul_flops, infix=_matmul_infix, c_adds_into=True,
    doc="matmul[transpose_a, transpose_b](a, b): batched op(a) @ op(b)",
))


# --- strided slices ----------------------------------------------------------------------------------

def _window_batch(name, size, bdims, x, *, start, step, shape):
    # The batch axis stays where it is, taken whole.
    d = bdims[0]

    def put(t, v):
        return (*t[:d], v, *t[d:])
    return bind(name, x, start=put(tuple(start), 0), step=put(tuple(step), 1),
                shape=put(tuple(shape), size)), d


def _slice_type(x, *, start, step, shape):
    for d, (s0, st, n) in enumerate(zip(start, step, shape)):
        if not (dims.is_static(x.shape[d]) and dims.is_static(n) and dims.is_static(s0)):
            # Run-time sizes: a unit-step run that provably stays inside (a loop's rows).
            sp = _sympy()
            room = sp.expand(x.shape[d] - s0 - n)     # N**2 + N - N*(N + 1) is 0
            if st != 1 or not (sp.sympify(s0).is_nonnegative and sp.sympify(n).is_nonnegative
                               and room.is_nonnegative):
                raise ShapeError(f"axis {d} of {x.shape} has a run-time size: it can only be "
                                 f"taken whole (:)")
            continue
        last = s0 + (n - 1) * st
        if n and not (0 <= s0 < x.shape[d] and 0 <= last < x.shape[d]):
            raise ShapeError(f"slice of axis {d} runs outside {x.shape}")
    return TensorType(tuple(shape), x.dtype)


def _slices(start, step, shape):
    return tuple(slice(s0, s0 + n * st if s0 + n * st >= 0 else None, st) if n else slice(0, 0)
                 for s0, st, n in zip(start, step, shape))


def _slice_src(idx, start, step):
    """The C index into the sliced array along each axis: start + i * step, for the loop
    indices ``idx`` of the slice's shape."""
    def term(ix, s0, st):
        scaled = "0" if ix == "0" else ix if st == 1 else f"{ix} * {st}" if st > 0 \
            else f"{ix} * ({st})"
        return _plus("0" if s0 == 0 else dims.c_expr(s0), scaled)
    return [term(ix, s0, st) for ix, s0, st in zip(idx, start, step)]


def _slice_c(k):
    x, out = k.ins[0], k.out
    idx = k.idx(out.shape)
    src = _slice_src(idx, k.attrs["start"], k.attrs["step"])
    return k.loop(out.shape, [
        f"{k.at(out, k.offset(out, idx))} = {k.at(x, k.offset(x, src))};"])


def _contiguous_slice(node):
    """Whether a ``slice`` selects one contiguous run of its input (row-major): unit steps, and
    after the first axis it cuts, only axes it keeps whole (before it, axes of extent 1)."""
    step, shape = node.attrs["step"], node.attrs["shape"]
    full = node.inputs[0].shape
    if any(st != 1 for st in step):
        return False
    cut = [d for d in range(len(full)) if not dims.equal(shape[d], full[d])]
    if not cut:
        return True
    first = cut[0]
    return (all(dims.equal(shape[d], 1) for d in range(first))
            and all(d == first for d in cut))


def _slice_view(node):
    """A block of whole rows is a pointer into the sliced buffer."""
    if not _contiguous_slice(node):
        return None
    strides = _row_major_strides(node.inputs[0].shape)
    return View(WINDOW, offset=sum((a * s for a, s in zip(node.attrs["start"], strides)),
                                   start=0))


def _slice_simplify(node, ins, producer):
    """The slice of a zero padding that takes exactly the padded data (a loop's final carry,
    read back in its adjoint) is that data."""
    inner = producer(ins[0])
    if (inner is not None and inner.prim == "pad_slice"
            and inner.attrs["start"] == node.attrs["start"]
            and all(st == 1 for st in inner.attrs["step"] + node.attrs["step"])
            and inner.inputs[0].type == node.out.type):
        return inner.inputs[0]
    return None


register(Primitive(
    name="slice", shape_rule=_slice_type,
    impl=lambda x, *, start, step, shape: x[_slices(start, step, shape)],
    vjp=lambda g, out, x, *, start, step, shape: (
        bind("pad_slice", g, start=start, step=step, shape=x.shape),),
    jvp=_linear(lambda t, **attrs: bind("slice", t, **attrs)),
    batch=functools.partial(_window_batch, "slice"),
    c_kernel=_slice_c,
    view=_slice_view, simplify=_slice_simplify, cost=0,
    doc="slice[start, step, shape](x): element start + i*step along each axis",
))


def _pad_type(g, *, start, step, shape):
    _slice_type(TensorType(tuple(shape), g.dtype), start=start, step=step, shape=g.shape)
    return TensorType(tuple(shape), g.dtype)


def _pad_impl(g, *, start, step, shape):
    out = np.zeros(shape, dtype=g.dtype)
    out[_slices(start, step, g.shape)] = g
    return out


def _pad_c(k):
    g, out = k.ins[0], k.out
    idx = k.idx(g.shape)
    dst = _slice_src(idx, k.attrs["start"], k.attrs["step"])
    o0, = k.idx((out.size,))
    return [*k.loop((out.size,), [f"{k.at(out, o0)} = {_lit(0, out.ctype)};"]),
            *k.loop(g.shape, [
                f"{k.at(out, k.offset(out, dst))} = {k.at(g, k.offset(g, idx))};"])]


register(Primitive(
    name="pad_slice", shape_rule=_pad_type, impl=_pad_impl,
    vjp=lambda g, out, x, *, start, step, shape: (
        bind("slice", g, start=start, step=step, shape=x.shape),),
    jvp=_linear(lambda t, **attrs: bind("pad_slice", t, **attrs)),
    batch=functools.partial(_window_batch, "pad_slice"),
    c_kernel=_pad_c,
    # Elementwise readers test the bounds instead of reading a materialized padding.
    view=lambda node: (View(PADDING, start=node.attrs["start"])
                       if all(st == 1 for st in node.attrs["step"]) else None),
    cost=0,
    doc="pad_slice[start, step, shape](g): zeros of shape with g where slice would read",
))


# --- gather / scatter_add: integer-array indexing -----------------------------------------------

def _index_types(x_shape, indices):
    if not indices:
        raise ShapeError("needs at least one index array")
    if any(i.dtype not in INT_DTYPES for i in indices):
        raise DTypeError("index arrays must be integers, got "
                         + ", ".join(i.dtype for i in indices))
    if not all(dims.same_shape(i.shape, indices[0].shape) for i in indices):
        raise ShapeError("index arrays have different shapes "
                         + ", ".join(str(i.shape) for i in indices))
    if len(indices) > len(x_shape):
        raise ShapeError(f"{len(indices)} index arrays for an array of shape {x_shape}")
    return indices[0].shape


def _gather_type(x, *indices):
    batch = _index_types(x.shape, indices)
    return TensorType(batch + x.shape[len(indices):], x.dtype)


def checked_indices(indices, shape, what):
    """Wrap negative indices and raise IndexError for any out of range (NumPy's rule)."""
    out = []
    for axis, idx in enumerate(indices):
        idx = np.asarray(idx)
        n = shape[axis]
        bad = (idx < -n) | (idx >= n)
        if bad.any():
            raise IndexError(f"index {int(idx[bad].flat[0])} is out of bounds for axis {axis} "
                             f"with size {n} (in {what})")
        out.append(np.where(idx < 0, idx + n, idx))
    return tuple(out)


def _gather_impl(x, *indices):
    return x[checked_indices(indices, x.shape, "gather")]


def _scatter_impl(g, *indices, shape):
    out = np.zeros(shape, dtype=g.dtype)
    np.add.at(out, checked_indices(indices, shape, "scatter_add"), g)
    return out


def _index_loop(k, table, indices, body):
    """Loop over the index arrays; ``body(i, base)`` copies row ``i`` of the indexed values,
    at offset ``_base`` of ``table``."""
    count = dims.prod(indices[0].shape)
    i0, = k.idx((count,))
    lines = ["int64_t _base = 0;"]
    for axis, idx in enumerate(indices):
        n = _d(table.shape[axis])
        j = f"_j{axis}"
        lines += [f"int64_t {j} = (int64_t){k.at(idx, i0)};",
                  f"if ({j} < 0) {j} += {n};",
                  f"if ({j} < 0 || {j} >= {n}) {k.fail('SYMGRAD_EINDEX')}",
                  f"_base += {_times(j, table.strides[axis])};"]
    return k.loop((count,), lines + body(i0, "_base"))


def _gather_c(k):
    x, indices, out = k.ins[0], k.ins[1:], k.out
    row = dims.prod(x.shape[len(indices):])
    return _index_loop(k, x, indices, lambda i, base: _for("_r", row, lambda r: [
        f"{k.at(out, _plus(_times(i, row), r))} = {k.at(x, _plus(base, r))};"]))


def _scatter_c(k):
    g, indices, out = k.ins[0], k.ins[1:], k.out
    row = dims.prod(out.shape[len(indices):])
    o0, = k.idx((out.size,))
    return [*k.loop((out.size,), [f"{k.at(out, o0)} = {_lit(0, out.ctype)};"]),
            *_index_loop(k, out, indices, lambda i, base: _for("_r", row, lambda r: [
                f"{k.at(out, _plus(base, r))} += {k.at(g, _plus(_times(i, row), r))};"]))]


def _scatter_type(g, *indices, shape):
    batch = _index_types(tuple(shape), indices)
    if not dims.same_shape(g.shape, batch + tuple(shape[len(indices):])):
        raise ShapeError(f"updates of shape {g.shape} do not fit indices {batch} into {shape}")
    return TensorType(tuple(shape), g.dtype)


def _index_shape(indices, bdims):
    """The shape of one example's index arrays."""
    i, d = indices[0], bdims[0]
    return tuple(i.shape) if d is None else batching.unbatched_type(i.type, d).shape


def _batch_indices(size, bdims, indices):
    """Every example's index arrays, batch axis first, and before them the example's own
    number as one more index array: each example reads (writes) its own block."""
    shape = (size, *_index_shape(indices, bdims))
    which = bind("iota", shape=shape, dimension=0, dtype="int64")
    return [which] + [ops.broadcast_to(to_front(i, d, size), shape)
                      for i, d in zip(indices, bdims)]


def _gather_batch(size, bdims, x, *indices):
    dx, di = bdims[0], bdims[1:]
    k = len(indices)
    if all(d is None for d in di):
        # The same positions for every example: the batch axis goes right after the indexed
        # axes and comes out after the index arrays' axes.
        out = bind("gather", batching.move_axis(x, dx, k), *indices)
        return out, indices[0].ndim
    if dx is None:
        shape = (size, *_index_shape(indices, di))
        return bind("gather", x, *[ops.broadcast_to(to_front(i, d, size), shape)
                                   for i, d in zip(indices, di)]), 0
    return bind("gather", batching.move_axis(x, dx, 0), *_batch_indices(size, di, indices)), 0


def _scatter_batch(size, bdims, u, *indices, shape):
    du, di = bdims[0], bdims[1:]
    k = len(indices)
    if all(d is None for d in di):
        # As in gather: the batch axis sits right after the index arrays' axes in u and
        # after the indexed axes in the result.
        lead = indices[0].ndim
        return bind("scatter_add", batching.move_axis(u, du, lead), *indices,
                    shape=(*shape[:k], size, *shape[k:])), k
    u = to_front(u, du, size)
    return bind("scatter_add", u, *_batch_indices(size, di, indices), shape=(size, *shape)), 0


register(Primitive(
    name="gather", shape_rule=_gather_type, impl=_gather_impl,
    vjp=lambda g, out, x, *indices: (bind("scatter_add", g, *indices, shape=x.shape),)
    + (None,) * len(indices),
    jvp=_linear(lambda t, *indices: bind("gather", t, *indices)),
    batch=_gather_batch,
    c_kernel=_gather_c,
    index_bounds=lambda node: tuple((1 + a, a, node.inputs[0].shape[a])
                                    for a in range(len(node.inputs) - 1)),
    cost=0,
    doc="gather(x, i0, i1, ...) = x[i0, i1, ...] for integer arrays of one shape",
))
register(Primitive(
    name="scatter_add", shape_rule=_scatter_type, impl=_scatter_impl,
    vjp=lambda g, out, u, *indices, shape: (bind("gather", g, *indices),) + (None,) * len(indices),
    jvp=_linear(lambda t, *indices, shape: bind("scatter_add", t, *indices, shape=shape)),
    batch=_scatter_batch,
    c_kernel=_scatter_c,
    index_bounds=lambda node: tuple((1 + a, a, node.attrs["shape"][a])
                                    for a in range(len(node.inputs) - 1)),
    doc="scatter_add[shape](u, i0, ...): zeros of shape, u added at [i0, ...]; repeats add up",
))


# --- concatenate ------------------------------------------------------------------------------

def _concat_type(*xs, axis):
    first = xs[0]
    if len({x.dtype for x in xs}) != 1:
        raise DTypeError("operands have different dtypes " + ", ".join(x.dtype for x in xs))
    for x in xs:
        if x.ndim != first.ndim or any(
                not dims.equal(a, b) for i, (a, b) in enumerate(zip(x.shape, first.shape))
                if i != axis):
            raise ShapeError("shapes " + ", ".join(str(x.shape) for x in xs)
                             + f" differ outside axis {axis}")
    shape = list(first.shape)
    shape[axis] = sum(x.shape[axis] for x in xs)
    return TensorType(tuple(shape), first.dtype)


def _concat_vjp(g, out, *xs, axis):
    adjoints, offset = [], 0
    for x in xs:
        start = tuple(offset if d == axis else 0 for d in range(x.ndim))
        adjoints.append(bind("slice", g, start=start, step=(1,) * x.ndim, shape=x.shape)
                        if x.type.is_float else None)
        offset += x.shape[axis]
    return tuple(adjoints)


def _concat_jvp(t, out, *xs, axis):
    if all(tx is None for tx in t):
        return None
    parts = [ops.zeros_like(x) if tx is None else tx for x, tx in zip(xs, t)]
    return bind("concatenate", *parts, axis=axis)


def _concat_c(k):
    axis, out, lines, offset = k.attrs["axis"], k.out, [], 0
    for x in k.ins:
        idx = k.idx(x.shape)
        dst = [_plus(ix, _d(offset)) if d == axis and offset != 0 else ix
               for d, ix in enumerate(idx)]
        lines += k.loop(x.shape, [
            f"{k.at(out, k.offset(out, dst))} = {k.at(x, k.offset(x, idx))};"])
        offset += x.shape[axis]
    return lines


register(Primitive(
    name="concatenate", shape_rule=_concat_type,
    impl=lambda *xs, axis: np.concatenate(xs, axis=axis),
    vjp=_concat_vjp, jvp=_concat_jvp, c_kernel=_concat_c,
    batch=lambda size, bdims, *xs, axis: (
        bind("concatenate", *batching.all_to_front(size, bdims, xs), axis=axis + 1), 0),
    cost=0,
    doc="concatenate[axis](x0, x1, ...)",
))


# --- dim: a run-time size as a value ---------------------------------------------------------

register(Primitive(
    name="dim",
    shape_rule=lambda *, expr: TensorType((), "int64"),
    impl=lambda *, expr: np.asarray(expr, dtype=np.int64),
    vjp=_no_inputs_vjp, jvp=_no_tangent, batch=batching.no_operands,
    c_kernel=lambda k: [f"{k.at(k.out, '0')} = {_d(k.attrs['expr'])};"],
    doc="dim[expr]: the value of a run-time size such as N (an int64 scalar)",
))
