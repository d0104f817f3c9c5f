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

from symgrad import tree_util
from symgrad.core import dims
from symgrad.frontend import calls, loops, tracing
from symgrad.core.autodiff import emit_jvp, inline, value_and_grad_graph
from symgrad.core.ir import Builder, Graph, Var, building
from symgrad.core.passes import optimize
from symgrad.core import ops
from symgrad.core.primitive import bind
from symgrad import numpy as snp
from symgrad.frontend.tracer import Tracer

MODES = ("auto", "forward", "reverse")


def any_traced(values, kw=None):
    """Whether a leaf of ``values`` (or of the keyword arguments ``kw``) is a Tracer."""
    for v in values:
        if isinstance(v, Tracer):
            return True
        if type(v) is not np.ndarray and any(isinstance(x, Tracer)
                                             for x in tree_util.tree_leaves(v)):
            return True
    return bool(kw) and any_traced(tuple(kw.values()))


class Prepared:
    """A function traced at a call with traced values: ``graph`` (optimized), ``inputs`` (the
    caller's vars, one per graph input), ``positions`` (the graph inputs of the leaves of the
    ``argnums`` arguments, in order), ``groups`` (the structure of each such argument) and
    ``out_tree`` (the structure of the result)."""

    def __init__(self, graph, inputs, positions, groups, out_tree):
        self.graph, self.inputs, self.positions = graph, inputs, positions
        self.groups, self.out_tree = groups, out_tree

    def outputs(self, vars_):
        """The result's pytree, of Tracers, from one var per graph output."""
        return tree_util.tree_unflatten(self.out_tree, [Tracer(v) for v in vars_])

    def grads(self, vars_, single):
        """The gradients' pytrees (one per argnums entry; itself for an int argnums)."""
        trees, k = [], 0
        for tree in self.groups:
            n = tree.num_leaves
            trees.append(tree_util.tree_unflatten(tree, [Tracer(v) for v in vars_[k:k + n]]))
            k += n
        return trees[0] if single else tuple(trees)


def prepare(fn, args, argnums, what, kw=None, has_aux=False):
    """Trace ``fn`` at ``args`` (and keyword arguments ``kw``) for a transformation applied
    inside a trace (these derivatives, ``vmap``): each argument flattened to its leaves, Tracer
    leaves traced and the others constants of the trace; the leaves of the ``argnums``
    arguments traced (and checked to be floats; ``what`` names the transformation in errors).
    Returns a ``Prepared``: the optimized graph, the caller's vars it takes, and the structures
    to rebuild results with."""
    args = tuple(args)
    for i in argnums:
        if i >= len(args):
            raise TypeError(f"{what}: argnums includes {i} but only {len(args)} arguments were "
                            f"given")
    entries, layout = calls.flatten_call(args, kw)
    spans = layout.spans()
    labels = None
    wanted = [k for i in argnums for k in range(spans[i][1], spans[i][2])]
    for k in wanted:
        entries[k] = snp.asarray(entries[k])
        if not entries[k].irvar.type.is_float:
            labels = labels or layout.labels(tracing.parameter_names(fn))
            raise ValueError(f"{what}: cannot differentiate with respect to {labels[k]} "
                             f"({entries[k].irvar.type}): integer and boolean arguments are data")
    types = [a.irvar.type if isinstance(a, Tracer) else None for a in entries]
    static = {k: a for k, a in enumerate(entries) if not isinstance(a, Tracer)}
    name = getattr(fn, "__name__", "f")
    flat = calls.flat_function(fn, layout, tracing.parameter_names(fn), has_aux=has_aux,
                               name=name)
    graph = optimize(tracing.trace(flat, types, static, name=name))
    traced = [k for k, t in enumerate(types) if t is not None]
    inputs = [entries[k].irvar for k in traced]
    return Prepared(graph, inputs, [traced.index(k) for k in wanted],
                    [layout.trees[i] for i in argnums], flat.out_tree)


def call(fn, args, kw=None):
    """``fn(*args, **kw)`` inlined: the result as Tracers, in its structure."""
    p = prepare(fn, args, (), getattr(fn, "__name__", "f"), kw)
    return p.outputs(inline(p.graph, p.inputs))


def value_and_grad(fn, argnums, single, args, kw=None, has_aux=False):
    """``(value, grad)`` of ``fn`` at traced ``args``, as Tracers; ``((value, aux), grad)``
    with ``has_aux``."""
    p = prepare(fn, args, argnums, "grad", kw, has_aux)
    # stop_gradient stays: the enclosing trace may differentiate the gradient again.
    outs = inline(value_and_grad_graph(p.graph, p.positions, strip=False, has_aux=has_aux),
                  p.inputs)
    n_out = len(p.graph.outputs) if has_aux else 1
    grads = p.grads(outs[n_out:], single)
    if has_aux:
        return p.outputs(outs[:n_out]), grads
    return Tracer(outs[0]), grads


def jvp(fn, argnums, args, tangents):
    """``(outputs, output tangents)`` of ``fn`` at traced ``args`` along ``tangents`` (one per
    argnums entry, in the structure of its argument), as Tracers in the structure of ``fn``'s
    result."""
    p = prepare(fn, args, argnums, "jvp")
    leaves = []
    for tree, t in zip(p.groups, tangents):
        leaves.extend(tree_util.flatten_up_to(tree, t, "jvp tangent"))
    seeds = {}
    for pos, t in zip(p.positions, leaves):
        x = p.graph.inputs[pos]
        t = snp.asarray(t).irvar
        seeds[pos] = ops.broadcast_to(ops.convert(t, x.dtype), x.shape)
    outs, t_outs = emit_jvp(p.graph, p.inputs, seeds)
    return p.outputs(outs), p.outputs(t_outs)


def choose_mode(mode, n_in, n_out):
    """The documented rule: forward mode when the inputs are fewer than the outputs (one sweep
    per input instead of one per output), reverse mode otherwise (ties included)."""
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: choose one of {MODES}")
    if mode != "auto":
        return mode
    return "forward" if n_in < n_out else "reverse"


def _complex_mode(chosen, name, wrt, outputs):
    """``chosen``, or a ValueError for complex values (docs/complex.md). JAX's rule would take
    forward mode for real inputs and reverse mode for real results, but the one-sweep
    Jacobian's scan keeps its rows in a real buffer and would drop imaginary parts: refused
    until that scan carries complex rows (f.grad and f.jvp give each row and column meanwhile).
    Complex inputs and results together would need holomorphic differentiation."""
    complex_in = [str(v.type) for v in wrt if v.type.is_complex]
    complex_out = [str(v.type) for v in outputs if v.type.is_complex]
    if complex_in and complex_out:
        raise ValueError(f"jacobian of {name}: complex inputs ({', '.join(complex_in)}) and "
                         f"complex results ({', '.join(complex_out)}) need holomorphic "
                         f"differentiation, which symgrad does not support; split into real "
                         f"and imaginary parts (docs/complex.md)")
    if complex_in or complex_out:
        raise ValueError(f"jacobian of {name}: complex values "
                         f"({', '.join(complex_in + complex_out)}) are not supported yet; use "
                         f"f.grad per output or f.jvp per direction (docs/complex.md)")
    return chosen


def jacobian(fn, argnums, single, mode, args, kw=None, has_aux=False):
    """The Jacobian of ``fn`` at traced ``args``: ``out.shape + in.shape`` per pair of a
    result leaf and an argument leaf, structured as in JAX: the result's structure, each leaf
    holding the structure of the ``argnums`` argument (a tuple of them for a tuple
    ``argnums``). With ``has_aux``, ``(jacobian, aux)``."""
    p = prepare(fn, args, argnums, "jacobian", kw, has_aux)
    graph, positions = p.graph, p.positions
    out_tree = p.out_tree.children[0] if has_aux else p.out_tree
    outputs = graph.outputs[:out_tree.num_leaves]
    wrt = [graph.inputs[q] for q in positions]
    for v in list(outputs) + wrt:
        if not dims.static_shape(v.shape):
            raise ValueError(f"jacobian needs static shapes; {v.type} has a run-time size")
    for v in outputs:
        if not v.type.is_float:
            raise ValueError(f"jacobian needs float results; {graph.name} returns {v.type}")
    main = Graph(graph.inputs, graph.nodes, list(outputs), name=graph.name,
                 tuple_output=len(outputs) > 1)
    n_in = sum(v.type.size for v in wrt)
    n_out = sum(v.type.size for v in outputs)
    mode = _complex_mode(choose_mode(mode, n_in, n_out), graph.name, wrt, outputs)
    blocks = (_forward_blocks if mode == "forward" else _reverse_blocks)(main, p.inputs,
                                                                        positions)
    rows = [p.grads([blocks[o][k] for k in range(len(wrt))], single)
            for o in range(len(outputs))]
    jac = tree_util.tree_unflatten(out_tree, rows)
    if not has_aux:
        return jac
    aux_vars = inline(graph, p.inputs)[len(outputs):]
    aux = tree_util.tree_unflatten(p.out_tree.children[1], [Tracer(v) for v in aux_vars])
    return jac, aux


# Both modes run one sweep per basis vector, as one loop (the ``scan`` primitive) whose step
# t builds e_t itself (iota == t) and emits the sweep once: the graph, the C and the compile
# time stay the size of one sweep whatever the number of rows or columns (unrolled, n sweeps
# compiled n copies: 0.4 s at n = 8, 9 s at n = 128).

def _basis(v, t):
    """e_t in the shape of ``v`` (t an int64 scalar Var): 1 at flat index t, 0 elsewhere."""
    n = v.type.size
    e = ops.convert(ops.eq(bind("iota", shape=(n,), dimension=0, dtype="int64"), t), v.dtype)
    return ops.reshape(e, v.shape)


def _sweeps(count, step, dtype):
    """``[ys]``: ``step(t) -> [flat arrays]`` for t = 0 .. count-1, stacked along a new first
    axis (``count`` rows), by one scan whose carry is unused."""
    def body(t, carry, x):
        return carry, tuple(Tracer(v) for v in step(t.irvar))
    _, ys = loops.indexed_scan(body, Tracer(ops.const(np.zeros(1), dtype)), None, count,
                               "jacobian")
    return [y.irvar for y in ys]


def _forward_blocks(graph, inputs, positions):
    """One jvp per input coordinate; column j of block (o, k) is the tangent of output o along
    e_j of input k."""
    blocks = [[None] * len(positions) for _ in graph.outputs]
    for k, p in enumerate(positions):
        x = graph.inputs[p]

        def step(t):
            _, t_outs = emit_jvp(graph, inputs, {p: _basis(x, t)})
            return [ops.reshape(v, (v.type.size,)) for v in t_outs]
        columns = _sweeps(x.type.size, step, x.dtype)       # [x.size, y.size] per output
        for o, y in enumerate(graph.outputs):
            blocks[o][k] = ops.reshape(ops.transpose(columns[o], (1, 0)), y.shape + x.shape)
    return blocks


def _reverse_blocks(graph, inputs, positions):
    """One vjp per output coordinate; row i of block (o, k) is the gradient of output o's
    element i with respect to input k."""
    blocks = [[None] * len(positions) for _ in graph.outputs]
    for o, y in enumerate(graph.outputs):
        vjp = _vjp_graph(graph, o, positions)

        def step(t):
            grads = inline(vjp, inputs + [_basis(y, t)])[1:]
            return [ops.reshape(g, (g.type.size,)) for g in grads]
        rows = _sweeps(y.type.size, step, y.dtype)          # [y.size, x.size] per input
        for k, p in enumerate(positions):
            blocks[o][k] = ops.reshape(rows[k], y.shape + graph.inputs[p].shape)
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
