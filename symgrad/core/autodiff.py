"""Reverse and forward mode: graph-to-graph derivative transformations.

Reverse mode: a graph computing a scalar becomes one graph computing value and gradients.

The forward statements are kept as they are; then, from the output back, each statement's
derivative rule (``Primitive.vjp``) emits the adjoint statements of its inputs. Adjoints add up
where a value is used more than once (a fork); broadcasting is summed back inside the rules
(``ops.sum_to_shape``) and gathers become scatter-adds. Every adjoint statement remembers the
forward statement it differentiates (``Node.grad_of``) and that statement's source line.

Forward mode (``jvp_graph``, ``emit_jvp``): each statement is followed by its tangent, from the
primitive's ``jvp`` rule; a tangent that is zero is never built (``None``), so only values that
depend on the perturbed inputs get tangents.

Both transformations can also be *inlined*: ``inline`` and ``emit_jvp`` emit a graph's statements
into the graph being built, with its inputs replaced by given vars. That is how ``symgrad.grad``,
``jvp`` and ``jacobian`` compose (``grad(grad(f))``, forward-over-reverse Hessians): the inner
function is traced and transformed on its own, and the result inlined into the outer trace.
"""
from __future__ import annotations

from symgrad.core.ir import Builder, Graph, Var, building, current_builder
from symgrad.core.passes import optimize, strip_stop_gradients
from symgrad.core.primitive import REGISTRY
from symgrad.core import ops


def needs_gradient(graph, wrt):
    """The vars whose value depends on the inputs ``wrt`` through float operations."""
    active = {v for v in wrt if v.type.is_float}
    for n in graph.nodes:
        if n.out.type.is_float and any(v in active for v in n.inputs):
            active.add(n.out)
    return active


def has_one_element(v):
    """Whether ``v`` holds exactly one element (shape (), (1,), (1, 1), ...): what grad takes."""
    return all(isinstance(d, int) and d == 1 for d in v.shape)


def value_and_grad_graph(graph, argnums, *, simplify=True, strip=True, has_aux=False):
    """Build the graph ``(inputs) -> (value, d value/d inputs[argnums]...)``.

    ``graph`` must have one float output of one element (a scalar, or shape (1,), (1, 1)...). ``argnums`` index ``graph.inputs``. Raises
    ValueError for a non-scalar output or an integer input asked for a gradient. ``strip=False``
    keeps the ``stop_gradient`` statements, for a graph that will be differentiated again.
    ``has_aux``: the first output is the value and the others are auxiliary results, computed
    beside it and passed through: ``(value, aux..., gradients...)``.
    """
    y = graph.outputs[0]
    aux = list(graph.outputs[1:]) if has_aux else []
    if (graph.tuple_output and not has_aux) or not has_one_element(y) or not y.type.is_float:
        what = ("a tuple" if graph.tuple_output and not has_aux else str(y.type))
        raise ValueError(f"grad needs a function with a scalar float result; {graph.name} "
                         f"returns {what}. Reduce it (e.g. snp.sum) or use symgrad.jacobian.")
    wrt = [graph.inputs[i] for i in argnums]
    for i, v in zip(argnums, wrt):
        if not v.type.is_float:
            raise ValueError(f"cannot differentiate with respect to argument {i} ({v.name}: "
                             f"{v.type}): integer and boolean arguments are data. Pass floats "
                             f"or leave it out of argnums.")
    active = needs_gradient(graph, wrt)
    builder = Builder()
    builder.nodes = list(graph.nodes)
    builder.active = active
    adjoint = {}
    with building(builder):
        # A result of one element in any shape ((1,), (1, 1)) is differentiated as autograd
        # does: as the scalar it holds, so the seed is ones of its shape.
        adjoint[y] = ops.broadcast_to(ops.scalar_like(1.0, y), y.shape)
        for node in reversed(graph.nodes):
            g = adjoint.get(node.out)
            if g is None or node.out not in active:
                continue
            g.adjoint_of = g.adjoint_of or node.out
            builder.loc, builder.grad_of = node.loc, node
            contributions = REGISTRY[node.prim].vjp(g, node.out, *node.inputs, **node.attrs)
            for x, dx in zip(node.inputs, contributions):
                if dx is None or x not in active:
                    continue
                adjoint[x] = dx if x not in adjoint else ops.add(adjoint[x], dx)
        builder.loc = builder.grad_of = None
        grads = []
        for v in wrt:
            g = adjoint[v] if v in adjoint else ops.zeros_like(v)
            if g.adjoint_of is None and g not in graph.inputs:
                g.adjoint_of = v
            grads.append(g)
    out = Graph(graph.inputs, builder.nodes, [y, *aux, *grads],
                name=f"value_and_grad_{graph.name}")

    out = strip_stop_gradients(out) if strip else out
    return optimize(out) if simplify else out


# --- inlining and forward mode ------------------------------------------------------------------

def inline(graph, inputs):
    """Emit ``graph``'s statements into the graph being built, reading ``inputs`` (one var per
    graph input) for its inputs; return the vars of its outputs. Vars the graph uses without
    defining (values of an enclosing trace it closed over) are used as they are."""
    builder = current_builder()
    env = dict(zip(graph.inputs, inputs))
    renamed = _fresh_sizes(graph, builder)
    for n in graph.nodes:
        attrs, out_type = n.attrs, n.out.type
        if renamed:
            attrs, out_type = renamed(n)
        env[n.out] = builder.add(n.prim, [env.get(v, v) for v in n.inputs], attrs, out_type,
                                 loc=n.loc)
    return [env.get(v, v) for v in graph.outputs]


def _fresh_sizes(graph, builder):
    """None, or ``node -> (attrs, out type)`` renaming the run-time sizes ``graph``'s statements
    define (while loops' counts, ``Primitive.defines``) that a statement of ``builder`` already
    defines: a function with a while loop inlined (``grad(f)`` in a traced function) into one
    that has its own must not define one size twice. The names follow the builder's count, as
    the conversion names them (``while<k>``)."""
    if not any(REGISTRY[n.prim].defines is not None for n in graph.nodes):
        return None             # (the common case: one pass over the graph, none over builder)
    taken = {REGISTRY[n.prim].defines(n) for n in builder.nodes
             if REGISTRY[n.prim].defines is not None}
    clashes = [n for n in graph.nodes
               if REGISTRY[n.prim].defines is not None and REGISTRY[n.prim].defines(n) in taken]
    if not clashes:
        return None
    from symgrad.core import dims
    from symgrad.core.symbolic import is_symbolic
    from symgrad.core.types import TensorType
    names = {s.name for s in taken} | {REGISTRY[n.prim].defines(n).name for n in graph.nodes
                                       if REGISTRY[n.prim].defines is not None}
    subs, new_names = {}, {}
    k = len(taken)
    for n in clashes:
        while dims.count_of(f"while{k}").name in names:
            k += 1
        old = REGISTRY[n.prim].defines(n)
        subs[old] = dims.count_of(f"while{k}")
        new_names[n] = f"while{k}"
        names.add(subs[old].name)

    def sub(v):
        if isinstance(v, tuple):
            return tuple(sub(x) for x in v)
        if is_symbolic(v):
            return dims.normalize(v.subs(subs))
        if hasattr(v, "graph") and set(dims.graph_symbols(v.graph)) & set(subs):
            raise NotImplementedError(f"a loop body that uses the count of a while loop "
                                      f"inlined twice ({sorted(s.name for s in subs)})")
        return v

    def renamed(n):
        attrs = {k: sub(a) for k, a in n.attrs.items()}
        if n in new_names:
            attrs["loop"] = new_names[n]
        shape = tuple(sub(d) for d in n.out.shape)
        return attrs, TensorType(shape, n.out.dtype)
    return renamed


def emit_jvp(graph, inputs, tangents, record=None):
    """Emit ``graph`` and its tangents into the graph being built (forward mode).

    ``inputs``: one var per graph input. ``tangents``: {input position: tangent var} for the
    perturbed inputs (same type as the input). Returns ``(outputs, output tangents)``; an output
    that does not depend on a perturbed input gets a zero tangent. ``record``, a dict when
    given, receives ``{node of graph: (the var of its copy, its tangent var or None)}`` (for
    ``symgrad.inspect``, which names a tangent after the value it perturbs).
    """
    builder = current_builder()
    env = dict(zip(graph.inputs, inputs))
    tangent = {graph.inputs[i]: t for i, t in tangents.items() if graph.inputs[i].type.is_float}
    for n in graph.nodes:
        ins = [env.get(v, v) for v in n.inputs]
        out = env[n.out] = builder.add(n.prim, ins, n.attrs, n.out.type, loc=n.loc)
        if record is not None:
            record[n] = (out, None)
        t = tuple(tangent.get(v) for v in n.inputs)
        if not n.out.type.is_float or all(tx is None for tx in t):
            continue
        builder.loc = n.loc
        t_out = REGISTRY[n.prim].jvp(t, out, *ins, **n.attrs)
        builder.loc = None
        if t_out is not None:
            if t_out.type != out.type:
                raise TypeError(f"the jvp rule of {n.prim} returned {t_out.type} for a result "
                                f"of type {out.type}; this is a symgrad bug")
            tangent[n.out] = t_out
            if record is not None:
                record[n] = (out, t_out)
    outs = [env.get(v, v) for v in graph.outputs]
    return outs, [tangent[v] if v in tangent else ops.zeros_like(o)
                  for v, o in zip(graph.outputs, outs)]


def jvp_graph(graph, argnums, *, simplify=True):
    """Build the graph ``(inputs, tangents of inputs[argnums]) -> (outputs, output tangents)``.

    One tangent input (named ``t_<name>``) per entry of ``argnums``, which index
    ``graph.inputs``. Raises ValueError for an integer input asked for a tangent.
    """
    for i in argnums:
        if not graph.inputs[i].type.is_float:
            v = graph.inputs[i]
            raise ValueError(f"cannot differentiate with respect to argument {i} ({v.name}: "
                             f"{v.type}): integer and boolean arguments are data")
    t_inputs = [Var(graph.inputs[i].type, name=f"t_{graph.inputs[i].name}") for i in argnums]
    builder = Builder()
    with building(builder):
        outs, t_outs = emit_jvp(graph, graph.inputs, dict(zip(argnums, t_inputs)))
    out = Graph(graph.inputs + t_inputs, builder.nodes, outs + t_outs, name=f"jvp_{graph.name}",
                tuple_output=True)
    out = strip_stop_gradients(out)
    return optimize(out) if simplify else out
