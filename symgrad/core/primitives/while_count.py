"""while_count: a ``while`` loop's trip count, found at run time, so that its tape is sized by it.

A ``while`` loop on a traced condition (``symgrad.frontend.pyflow.while_stmt``) is one ``scan``
whose steps are gated: a step runs the body when the loop is still active and its condition
holds, and leaves the state as it is otherwise (the carry's ``_sg_active`` flag records which).
The scan's length is the run-time size ``L = dims.count_of(loop)``, which this statement defines:

    while_count[step, loop, limit](c0, consts...) = c0

runs the gated step graph ``(i, c[P], consts...) -> (go, c'[P])`` (``go``: the step ran, i.e.
the active flag of ``c'``) from ``c0`` until no ``go`` holds, and binds ``L`` to the number of
steps that ran (at most ``limit`` when the loop has a ``# symgrad: max_steps=N`` bound). Its
value is ``c0`` itself: the scan reads it as its initial carry, which orders the scan after the
count (and keeps the count alive through dead-code elimination) without an extra operand. The
scan then runs exactly ``L`` steps and its tape holds ``L + 1`` rows; every scan rule (reverse
mode, forward mode, vmap, checkpointing) applies unchanged.

The interpreter binds ``L`` when the statement runs (``Primitive.defines``); the C kernel is a C
``while`` around the inlined step graph that assigns ``L``'s C name, and the function allocates
the arrays whose sizes involve ``L`` (the tape) right after it, in a block of their own freed on
every exit (``backends/c/codegen.py``). So the loop costs one pass to count and the scan's pass,
each proportional to the steps taken, however large the bound.

vmap: the batched step graph gates every example by its own flag, ``go`` is one flag per
example, and ``L`` counts the steps while any example runs (the largest count): the examples
that finished early pass through the steps left unchanged, as the scan's gated body does too.
"""
from __future__ import annotations

import numpy as np

from symgrad.errors import ShapeError
from symgrad.core import batching, dims, ops
from symgrad.core.cspell import CTYPES
from symgrad.core.ir import Builder, Graph, Var, building, current_builder
from symgrad.core.passes import optimize
from symgrad.core.primitive import Primitive, bind, register
from symgrad.core.primitives.scan import Body, _step_function
from symgrad.core.types import TensorType

ALIGN = 64


def _type(c0, *consts, step, loop, limit):
    g = step.graph
    if len(g.inputs) != 2 + len(consts) or len(g.outputs) != 2:
        raise ShapeError(f"while_count: the step graph takes (i, carry, consts...) and returns "
                         f"(go, carry); got {len(g.inputs)} inputs, {len(g.outputs)} outputs")
    if c0.ndim != 1 or not dims.same_shape(c0.shape, g.inputs[1].shape) \
            or c0.dtype != g.inputs[1].dtype:
        raise ShapeError(f"while_count: the initial carry {c0} does not match the step's "
                         f"{g.inputs[1].type}")
    if g.outputs[0].dtype != "bool" or g.outputs[1].type != g.inputs[1].type:
        raise ShapeError(f"while_count: the step returns {g.outputs[0].type}, "
                         f"{g.outputs[1].type}; expected bool flags and {g.inputs[1].type}")
    return TensorType(c0.shape, c0.dtype)


def _impl(c0, *consts, step, loop, limit):
    run = _step_function(step.graph)
    c, n = c0, 0
    while True:
        go, after = run([np.int64(n), c, *consts])
        if not np.any(go) or (limit is not None and n >= limit):
            break
        n += 1
        c = after
    return np.array(c0, copy=True), n


def _c(k):
    out, c0, consts = k.out, k.ins[0], k.ins[1:]
    step, limit = k.attrs["step"], k.attrs["limit"]
    size = dims.c_expr(dims.count_of(k.attrs["loop"]))
    g = step.graph
    P = out.shape[0]
    G = dims.prod(g.outputs[0].shape)           # flags: 1, or one per example under vmap
    item = np.dtype(k.node.out.dtype).itemsize
    at_next = dims.align_up(dims.normalize(P * item), ALIGN)
    at_go = dims.normalize(2 * at_next)
    at_ws = dims.normalize(at_go + dims.align_up(G, ALIGN))
    ws, lines = k.inline_graph(g, ["_n", "_cur"] + [c.name for c in consts], ["_go", "_next"])
    base = k.scratch(dims.normalize(at_ws + ws))
    ct, bt, p = out.ctype, CTYPES["bool"], dims.c_expr(P)
    c0_ref = c0.name if c0.kind == "array" else f"(const {ct}[]){{{c0.name}}}"
    stop = f"if (!_any{'' if limit is None else f' || _n >= {limit}'}) break;"
    return [
        f"char *_base = {base};",
        f"{ct} *_cur = ({ct} *)_base;",
        f"{ct} *_next = ({ct} *)(_base + {dims.c_expr(at_next)});",
        f"{bt} *_go = ({bt} *)(_base + {dims.c_expr(at_go)});",
        f"char *_ws = _base + {dims.c_expr(at_ws)};",
        f"memcpy({out.name}, {c0_ref}, sizeof({ct}) * {p});",
        f"memcpy(_cur, {c0_ref}, sizeof({ct}) * {p});",
        "int64_t _n = 0;",
        "for (;;) {",
        *("    " + line for line in lines),
        "    int _any = 0;",
        f"    for (int64_t _e = 0; _e < {dims.c_expr(G)}; ++_e) _any |= _go[_e];",
        "    " + stop,
        "    ++_n;",
        f"    memcpy(_cur, _next, sizeof({ct}) * {p});",
        "}",
        "(void)_ws;",
        f"{size} = _n;",
    ]


def _batch(size, bdims, c0, *consts, step, loop, limit):
    """vmap: the batched step over every example's carry (example after example, as scan's
    rule packs them), one flag per example; the count runs while any example does."""
    g = step.graph
    P = g.inputs[1].shape[0]
    c0 = ops.reshape(batching.to_front(c0, bdims[0], size), (dims.normalize(size * P),))
    i2 = Var(g.inputs[0].type, name="i")
    c2 = Var(c0.type, name="carry")
    k2 = [Var(k.type, name=v.name) for v, k in zip(g.inputs[2:], consts)]
    b = Builder()
    b.loc = current_builder().loc
    with building(b):
        outs, out_dims = batching.emit_batched(g, [i2, ops.reshape(c2, (size, P)), *k2],
                                               [None, 0, *bdims[1:]], size)
        go, after = (ops.reshape(batching.to_front(o, d, size),
                                 (dims.normalize(size * v.type.size),))
                     for o, d, v in zip(outs, out_dims, g.outputs))
    batched = optimize(Graph([i2, c2, *k2], b.nodes, [go, after], name=g.name))
    out = bind("while_count", c0, *consts, step=Body(batched), loop=loop, limit=limit)
    return ops.reshape(out, (size, P)), 0


register(Primitive(
    name="while_count", shape_rule=_type, impl=_impl,
    vjp=lambda g, out, c0, *consts, step, loop, limit: (g,) + (None,) * len(consts),
    jvp=lambda t, out, c0, *consts, step, loop, limit: (
        t[0] if t[0] is not None else ops.zeros_like(c0)),
    batch=_batch, c_kernel=_c, fold=False,
    defines=lambda node: dims.count_of(node.attrs["loop"]),
    doc="while_count[step, loop, limit](c0, consts...) = c0; binds the run-time size loop to "
        "the number of steps the gated step graph runs from c0 before no flag holds",
))
