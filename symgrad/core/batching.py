"""Batching: the graph transformation behind ``symgrad.vmap``, and the helpers its rules use.

``emit_batched(graph, inputs, in_dims, size)`` emits ``graph`` into the graph being built with
some of its inputs carrying one more axis, the *batch axis* (``in_dims[k]``: where it sits in
input ``k``, or None for an input shared by every example), of ``size`` examples. Each
statement is rewritten by its primitive's batching rule (``Primitive.batch``), which builds IR
like the derivative rules do; a statement none of whose operands is batched is copied as it is,
so shared work (a constant, a function of the weights only) is done once, not once per example.

A rule has the signature ``batch(size, bdims, *inputs, **attrs) -> (out, out_dim)``: ``inputs``
are the batched statement's operands, ``bdims`` the batch axis of each (None: not batched, at
least one is not None), ``size`` the batch size (an int or a run-time size). It returns the
result for the whole batch and the axis of ``out`` that runs over the examples. The batch axis
may be anywhere, so rules that can leave it in place (reductions, slices, a matrix product
whose right operand is batched) need no transpose; the others move it to the front first
(``to_front``). Three rules are shared: ``elementwise`` (every elementwise primitive),
``leading`` (primitives that already map over leading batch axes: matrix products,
factorizations) and ``along_axis`` (those working along an ``axis`` attribute: cumulative
sums, sorting).
"""
from __future__ import annotations

from symgrad.core import dims as _dims
from symgrad.core import ops
from symgrad.core.ir import current_builder
from symgrad.core.primitive import REGISTRY, bind
from symgrad.core.types import TensorType


# --- helpers of the rules ------------------------------------------------------------------------

def move_axis(x, src, dst):
    """``x`` with its axis ``src`` moved to position ``dst`` (NumPy's ``moveaxis``)."""
    if src == dst:
        return x
    order = [a for a in range(x.ndim) if a != src]
    order.insert(dst, src)
    return ops.transpose(x, order)


def to_front(x, d, size):
    """``x`` with its batch axis ``d`` first; an unbatched ``x`` (``d`` None) is broadcast
    along a new first axis of ``size`` (every example reads the same value)."""
    if d is None:
        return ops.broadcast_to(x, (size,) + tuple(x.shape))
    return move_axis(x, d, 0)


def all_to_front(size, bdims, inputs):
    """Every operand with its batch axis first, unbatched ones broadcast along it."""
    return [to_front(x, d, size) for x, d in zip(inputs, bdims)]


def shifted(axis, d):
    """Where the unbatched axis ``axis`` sits in an operand whose batch axis is ``d``."""
    return axis if axis < d else axis + 1


def unbatched_type(t, d):
    """The per-example type of a batched ``t`` with batch axis ``d``."""
    return TensorType(t.shape[:d] + t.shape[d + 1:], t.dtype)


# --- the rule every elementwise primitive shares --------------------------------------------------

def elementwise(name, size, bdims, *inputs, **attrs):
    """The rule of every elementwise primitive (``functools.partial(elementwise, name)``).

    Operands broadcast as in NumPy: each batched one gets its batch axis first and size-1 axes
    after it up to the result's rank, so it lines up with the others; unbatched operands
    broadcast over the batch as they are (their axes align with the trailing ones)."""
    rank = max(x.ndim - (d is not None) for x, d in zip(inputs, bdims))
    batched = {d for d in bdims if d is not None}
    if len(batched) == 1:
        # One batch axis d shared by full-rank operands, unbatched ones no longer than the axes
        # after it: they line up as they are, with no transpose.
        (d,) = batched
        if all(x.ndim == rank + 1 if bd is not None else x.ndim <= rank - d
               for x, bd in zip(inputs, bdims)):
            return bind(name, *inputs, **attrs), d
    operands = []
    for x, d in zip(inputs, bdims):
        if d is not None:
            x = move_axis(x, d, 0)
            missing = rank - (x.ndim - 1)
            if missing:
                x = ops.reshape(x, (x.shape[0],) + (1,) * missing + tuple(x.shape[1:]))
        operands.append(x)
    return bind(name, *operands, **attrs), 0


def leading(name, size, bdims, *inputs, **attrs):
    """The rule of a primitive that already maps over leading batch axes of all its operands
    (``(..., M, K) @ (..., K, N)``, a stack of matrices to factor): the batch becomes one more
    leading axis of every operand, unbatched ones broadcast along it
    (``functools.partial(leading, name)``)."""
    return bind(name, *all_to_front(size, bdims, inputs), **attrs), 0


def along_axis(name, size, bdims, *inputs, axis, **attrs):
    """The rule of a primitive working along the attribute ``axis`` of operands that share
    their other axes (a cumulative sum, a sort): every operand batch-first, ``axis`` shifted
    past the batch (``functools.partial(along_axis, name)``)."""
    return bind(name, *all_to_front(size, bdims, inputs), axis=axis + 1, **attrs), 0


def no_operands(size, bdims, **attrs):
    """A primitive without operands (a constant, ``iota``, ``dim``) is never batched: the
    transform copies it. Reaching this rule is a bug."""
    raise TypeError("a primitive without operands has no batched operand; this is a symgrad bug")


# --- the transformation ---------------------------------------------------------------------------

def emit_batched(graph, inputs, in_dims, size):
    """Emit the batched ``graph`` into the graph being built (see the module docstring).

    ``inputs``: one var per graph input (batched ones with the batch axis at ``in_dims[k]``).
    Returns ``(outputs, out_dims)``: one var per graph output and its batch axis (None for an
    output that does not depend on a batched input). Vars the graph uses without defining
    (values of an enclosing trace it closed over) are shared by every example.
    """
    builder = current_builder()
    env = {v: (x, d) for v, x, d in zip(graph.inputs, inputs, in_dims)}
    for n in graph.nodes:
        ins = [env.get(v, (v, None)) for v in n.inputs]
        if all(d is None for _, d in ins):
            env[n.out] = (builder.add(n.prim, [x for x, _ in ins], n.attrs, n.out.type,
                                      loc=n.loc), None)
            continue
        rule = REGISTRY[n.prim].batch
        if rule is None:
            raise NotImplementedError(f"vmap: the primitive {n.prim} has no batching rule")
        builder.loc = n.loc
        try:
            out, d = rule(size, tuple(d for _, d in ins), *[x for x, _ in ins], **n.attrs)
        finally:
            builder.loc = None
        want = n.out.type
        if d is not None and (out.dtype != want.dtype or out.ndim != want.ndim + 1
                              or not _dims.equal(out.shape[d], size) or not all(
                                  _dims.equal(a, b) for a, b in
                                  zip(unbatched_type(out.type, d).shape, want.shape))):
            raise TypeError(f"the batching rule of {n.prim} returned {out.type} with the batch "
                            f"at axis {d} for a result of type {want} (batch {size}); this is "
                            f"a symgrad bug")
        env[n.out] = (out, d)
    outs = [env.get(v, (v, None)) for v in graph.outputs]
    return [x for x, _ in outs], [d for _, d in outs]
