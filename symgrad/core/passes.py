"""Graph-to-graph passes: dead-code elimination, CSE, constant folding, algebraic simplification.

Each pass takes a Graph and returns a new one computing the same outputs; ``optimize`` runs them
to a fixed point. Passes never change an output's type, and never use identities that are false
for NaN or inf (``x * 0`` stays).
"""
from __future__ import annotations

import numpy as np

from symgrad.core.dims import static_shape
from symgrad.core.ir import Literal, Node, Var
from symgrad.core.primitives import REGISTRY

FOLD_LIMIT = 64   # fold constants up to this many elements; larger ones stay as computations


def _rebuild(graph, nodes, subst):
    def s(v):
        while v in subst:
            v = subst[v]
        return v
    new_nodes, rebuilt = [], {}
    for n in nodes:
        inputs = tuple(s(v) for v in n.inputs)
        # An adjoint statement's ``grad_of`` follows its forward statement when that is rebuilt
        # here, so what it names (in C comments, in inspect) reads the values that exist now.
        grad_of = rebuilt.get(n.grad_of, n.grad_of)
        if inputs != n.inputs or grad_of is not n.grad_of:
            new = Node(n.prim, inputs, n.attrs, n.out, n.loc, grad_of)
            rebuilt[n] = new
            n = new
        new_nodes.append(n)
    return graph.replace(nodes=new_nodes, outputs=[s(v) for v in graph.outputs])


def dce(graph):
    """Drop nodes whose values no output needs."""
    live = set(graph.outputs)
    kept = []
    for n in reversed(graph.nodes):
        if n.out in live:
            kept.append(n)
            live.update(n.inputs)
    return graph.replace(nodes=kept[::-1])


def cse(graph):
    """Merge nodes that apply the same primitive with the same attributes to the same values."""
    seen, subst, nodes, rebuilt = {}, {}, [], {}
    for n in graph.nodes:
        inputs = tuple(subst.get(v, v) for v in n.inputs)
        key = (n.prim, inputs, n.attr_key())
        if key in seen:
            subst[n.out] = seen[key]
            continue
        seen[key] = n.out
        grad_of = rebuilt.get(n.grad_of, n.grad_of)     # as in _rebuild
        if inputs != n.inputs or grad_of is not n.grad_of:
            n = rebuilt[n] = Node(n.prim, inputs, n.attrs, n.out, n.loc, grad_of)
        nodes.append(n)
    return _rebuild(graph, nodes, subst)


def fold_constants(graph):
    """Evaluate nodes whose inputs are all constants (and whose result is small)."""
    consts, nodes = {}, []
    for n in graph.nodes:
        if n.prim == "const":
            consts[n.out] = n.attrs["value"].value
        elif (n.inputs and all(v in consts for v in n.inputs) and static_shape(n.out.shape)
              and n.out.type.size <= FOLD_LIMIT
              # An int's bits read as a float may be a NaN with a payload, which no C float
              # literal spells: the bitcast stays, of an int constant, and runs in C.
              and not (n.prim == "bitcast" and n.out.type.is_float)):
            value = np.asarray(REGISTRY[n.prim].impl(*[consts[v] for v in n.inputs], **n.attrs),
                               dtype=n.out.dtype)
            consts[n.out] = value
            n = Node("const", (), {"value": Literal(value)}, n.out, n.loc, n.grad_of)
        nodes.append(n)
    return graph.replace(nodes=nodes)


def _const_value(producers, v):
    n = producers.get(v)
    if n is not None and n.prim == "const" and v.ndim == 0:
        return n.attrs["value"].value.item()
    return None


def simplify(graph):
    """Algebraic identities that hold for every float: x+0, x-0, x*1, x/1, --x, no-op reshapes,
    and a slice that takes back what a padding put in."""
    producers = graph.producers()
    subst = {}

    def same_type(a: Var, b: Var):
        return a.type == b.type

    for n in graph.nodes:
        ins = [subst.get(v, v) for v in n.inputs]
        out = n.out
        replacement = None
        if n.prim in ("add", "sub", "mul", "div", "chain_mul"):
            x, y = ins
            cx, cy = _const_value(producers, x), _const_value(producers, y)
            if n.prim == "add" and cx == 0 and same_type(y, out):
                replacement = y
            elif n.prim in ("add", "sub") and cy == 0 and same_type(x, out):
                replacement = x
            elif n.prim in ("mul", "chain_mul") and cx == 1 and same_type(y, out):
                replacement = y
            elif n.prim in ("mul", "div", "chain_mul") and cy == 1 and same_type(x, out):
                replacement = x
        elif n.prim == "neg":
            inner = producers.get(ins[0])
            if inner is not None and inner.prim == "neg":
                replacement = subst.get(inner.inputs[0], inner.inputs[0])
        elif n.prim in ("reshape", "broadcast_in_dim", "convert", "stop_gradient"):
            if n.prim != "stop_gradient" and same_type(ins[0], out):
                replacement = ins[0]
        elif n.prim == "transpose" and n.attrs["perm"] == tuple(range(out.ndim)):
            replacement = ins[0]
        elif n.prim == "slice":
            # The slice of a zero padding that takes exactly the padded data (a loop's final
            # carry, read back in its adjoint) is that data.
            inner = producers.get(ins[0])
            if (inner is not None and inner.prim == "pad_slice"
                    and inner.attrs["start"] == n.attrs["start"]
                    and all(st == 1 for st in inner.attrs["step"] + n.attrs["step"])
                    and same_type(inner.inputs[0], out)):
                replacement = subst.get(inner.inputs[0], inner.inputs[0])
        if replacement is not None and replacement is not out:
            subst[out] = replacement
    return _rebuild(graph, graph.nodes, subst)


def strip_stop_gradients(graph):
    """After differentiation stop_gradient is the identity: replace it by its input."""
    subst = {n.out: n.inputs[0] for n in graph.nodes if n.prim == "stop_gradient"}
    return _rebuild(graph, [n for n in graph.nodes if n.out not in subst], subst)


def optimize(graph, rounds=4):
    """Run the passes until the graph stops shrinking (at most ``rounds`` times)."""
    for _ in range(rounds):
        before = len(graph.nodes)
        graph = dce(cse(simplify(fold_constants(graph))))
        if len(graph.nodes) == before:
            break
    return graph
