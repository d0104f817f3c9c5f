"""Reverse mode: a graph computing a scalar becomes one graph computing value and gradients.

The forward statements are kept as they are; then, from the output back, each statement's
derivative rule (``Primitive.vjp``) emits the adjoint statements of its inputs. Adjoints add up
where a value is used more than once (a fork); broadcasting is summed back inside the rules
(``ops.sum_to_shape``) and gathers become scatter-adds. Every adjoint statement remembers the
forward statement it differentiates (``Node.grad_of``) and that statement's source line.
"""
from __future__ import annotations

from .ir import Builder, Graph, building
from .passes import optimize, strip_stop_gradients
from .primitives import REGISTRY, ops


def needs_gradient(graph, wrt):
    """The vars whose value depends on the inputs ``wrt`` through float operations."""
    active = {v for v in wrt if v.type.is_float}
    for n in graph.nodes:
        if n.out.type.is_float and any(v in active for v in n.inputs):
            active.add(n.out)
    return active


def value_and_grad_graph(graph, argnums, *, simplify=True):
    """Build the graph ``(inputs) -> (value, d value/d inputs[argnums]...)``.

    ``graph`` must have one scalar float output. ``argnums`` index ``graph.inputs``. Raises
    ValueError for a non-scalar output or an integer input asked for a gradient.
    """
    y = graph.outputs[0]
    if graph.tuple_output or y.shape != () or not y.type.is_float:
        what = ("a tuple" if graph.tuple_output else str(y.type))
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
    adjoint = {}
    with building(builder):
        adjoint[y] = ops.scalar_like(1.0, y)
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
    out = Graph(graph.inputs, builder.nodes, [y, *grads], name=f"value_and_grad_{graph.name}")

    out = strip_stop_gradients(out)
    return optimize(out) if simplify else out
