"""Derivative transformations on traced values: what ``grad``, ``jvp``, ``hvp`` and ``jacobian``
do when they are called *inside* a function being traced.

Each one traces the function it is given into a fresh graph (with the caller's ``Tracer``s as
its arguments' types), transforms that graph (``autodiff``) and inlines the result into the graph
being built. The outer trace therefore sees ordinary statements, which it may differentiate
again: ``grad(grad(f))``, ``jvp(grad(f))`` (the Hessian-vector product, forward over reverse),
``jacobian(grad(f))`` (the Hessian). Compiling such a function renders one graph, so the same C
backend, cache and AOT path serve every derivative.

Arguments that are not ``Tracer``s are passed to the inner function as they are (constants of
its trace), except those differentiated, which become constants of the enclosing graph first.
"""
from __future__ import annotations

import numpy as np

from symgrad.core import dims
from symgrad.frontend import tracing
from symgrad.core.autodiff import emit_jvp, inline, value_and_grad_graph
from symgrad.core.ir import Builder, Graph, Var, building
from symgrad.core.passes import optimize
from symgrad.core import ops
from symgrad.core.primitive import bind
from symgrad import numpy as snp
from symgrad.frontend.tracer import Tracer

MODES = ("auto", "forward", "reverse")


def any_traced(values):
    return any(isinstance(v, Tracer) for v in values)


def _prepare(fn, args, argnums, what):
    """Trace ``fn`` at ``args``: (optimized graph, vars of its inputs, positions of argnums)."""
    args = list(args)
    for i in argnums:
        if i >= len(args):
            raise TypeError(f"{what}: argnums includes {i} but only {len(args)} arguments were "
                            f"given")
        args[i] = snp.asarray(args[i])
        if not args[i].irvar.type.is_float:
            raise ValueError(f"{what}: cannot differentiate with respect to argument {i} "
                             f"({args[i].irvar.type}): integer and boolean arguments are data")
    types = [a.irvar.type if isinstance(a, Tracer) else None for a in args]
    static = {i: a for i, a in enumerate(args) if not isinstance(a, Tracer)}
    graph = optimize(tracing.trace(fn, types, static, name=getattr(fn, "__name__", "f")))
    traced = [i for i, t in enumerate(types) if t is not None]
    inputs = [args[i].irvar for i in traced]
    return graph, inputs, [traced.index(i) for i in argnums]


def _wrap(vars_, several):
    out = [Tracer(v) for v in vars_]
    return tuple(out) if several else out[0]


def call(fn, args):
    """``fn(*args)`` inlined: the result as Tracers."""
    graph, inputs, _ = _prepare(fn, args, (), getattr(fn, "__name__", "f"))
    return _wrap(inline(graph, inputs), graph.tuple_output)


def value_and_grad(fn, argnums, single, args):
    """``(value, grad)`` of ``fn`` at traced ``args``, as Tracers."""
    graph, inputs, positions = _prepare(fn, args, argnums, "grad")
    # stop_gradient stays: the enclosing trace may differentiate the gradient again.
    outs = inline(value_and_grad_graph(graph, positions, strip=False), inputs)
    grads = [Tracer(v) for v in outs[1:]]
    return Tracer(outs[0]), (grads[0] if single else tuple(grads))


def jvp(fn, argnums, args, tangents):
    """``(outputs, output tangents)`` of ``fn`` at traced ``args`` along ``tangents`` (one per
    argnums entry), as Tracers (tuples when ``fn`` returns a tuple)."""
    graph, inputs, positions = _prepare(fn, args, argnums, "jvp")
    seeds = {}
    for p, t in zip(positions, tangents):
        x = graph.inputs[p]
        t = snp.asarray(t).irvar
        seeds[p] = ops.broadcast_to(ops.convert(t, x.dtype), x.shape)
    outs, t_outs = emit_jvp(graph, inputs, seeds)
    return _wrap(outs, graph.tuple_output), _wrap(t_outs, graph.tuple_output)


def choose_mode(mode, n_in, n_out):
    """The documented rule: forward mode when the inputs are fewer than the outputs (one sweep
    per input instead of one per output), reverse mode otherwise (ties included)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose one of {MODES}")
    if mode != "auto":
        return mode
    return "forward" if n_in < n_out else "reverse"


def jacobian(fn, argnums, single, mode, args):
    """The Jacobian of ``fn`` at traced ``args``: ``out.shape + in.shape`` per argnums entry
    (a tuple for tuple argnums; nested tuples, output first, when ``fn`` returns a tuple)."""
    graph, inputs, positions = _prepare(fn, args, argnums, "jacobian")
    wrt = [graph.inputs[p] for p in positions]
    for v in list(graph.outputs) + wrt:
        if not dims.static_shape(v.shape):
            raise ValueError(f"jacobian needs static shapes; {v.type} has a run-time size")
    outputs = graph.outputs
    for v in outputs:
        if not v.type.is_float:
            raise ValueError(f"jacobian needs float results; {graph.name} returns {v.type}")
    n_in = sum(v.type.size for v in wrt)
    n_out = sum(v.type.size for v in outputs)
    mode = choose_mode(mode, n_in, n_out)
    blocks = (_forward_blocks if mode == "forward" else _reverse_blocks)(graph, inputs, positions)
    rows = [_wrap([blocks[o][k] for k in range(len(wrt))], not single)
            for o in range(len(outputs))]
    return tuple(rows) if graph.tuple_output else rows[0]


def _basis(v, j):
    e = np.zeros(v.type.size, dtype=v.dtype)
    e[j] = 1
    return ops.const(e.reshape(v.shape), v.dtype)


def _forward_blocks(graph, inputs, positions):
    """One jvp per input coordinate; column j of block (o, k) is the tangent of output o along
    e_j of input k."""
    blocks = [[None] * len(positions) for _ in graph.outputs]
    for k, p in enumerate(positions):
        x = graph.inputs[p]
        columns = [[] for _ in graph.outputs]
        for j in range(x.type.size):
            _, t_outs = emit_jvp(graph, inputs, {p: _basis(x, j)})
            for o, t in enumerate(t_outs):
                columns[o].append(ops.reshape(t, (t.type.size, 1)))
        for o, y in enumerate(graph.outputs):
            blocks[o][k] = ops.reshape(_join(columns[o], 1), y.shape + x.shape)
    return blocks


def _reverse_blocks(graph, inputs, positions):
    """One vjp per output coordinate; row i of block (o, k) is the gradient of output o's
    element i with respect to input k."""
    blocks = [[None] * len(positions) for _ in graph.outputs]
    for o, y in enumerate(graph.outputs):
        vjp = _vjp_graph(graph, o, positions)
        rows = [[] for _ in positions]
        for i in range(y.type.size):
            grads = inline(vjp, inputs + [_basis(y, i)])[1:]
            for k, g in enumerate(grads):
                rows[k].append(ops.reshape(g, (1, g.type.size)))
        for k, p in enumerate(positions):
            blocks[o][k] = ops.reshape(_join(rows[k], 0), y.shape + graph.inputs[p].shape)
    return blocks


def _vjp_graph(graph, o, positions):
    """``(inputs, u) -> (sum(out_o * u), d/d inputs[positions])``: one reverse sweep with
    cotangent ``u``."""
    y = graph.outputs[o]
    u = Var(y.type, name="u")
    builder = Builder()
    builder.nodes = list(graph.nodes)
    with building(builder):
        s = ops.reduce_sum(ops.mul(y, u), range(y.ndim))
    return value_and_grad_graph(Graph(graph.inputs + [u], builder.nodes, [s], name=graph.name),
                                positions, strip=False)


def _join(parts, axis):
    return parts[0] if len(parts) == 1 else bind("concatenate", *parts, axis=axis)
