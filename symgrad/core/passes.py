"""Graph-to-graph passes: dead-code elimination, CSE, constant folding, algebraic simplification.

Each pass takes a Graph and returns a new one computing the same outputs; ``optimize`` runs them
to a fixed point. Passes never change an output's type, and never use identities that are false
for NaN or inf (``x * 0`` stays). What a pass may do with a statement is stated by its
primitive's record (``literal``, ``fold``, ``identities``, ``involution``, ``simplify``,
``gradient_barrier``), never by its name.
"""
from __future__ import annotations

import numpy as np

from symgrad.core.dims import static_shape
from symgrad.core.ir import Literal, Node
from symgrad.core.primitive import REGISTRY

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
        prim = REGISTRY[n.prim]
        if prim.literal:
            consts[n.out] = n.attrs["value"].value
        elif (n.inputs and all(v in consts for v in n.inputs) and static_shape(n.out.shape)
              and n.out.type.size <= FOLD_LIMIT and prim.foldable(n)):
            value = np.asarray(prim.impl(*[consts[v] for v in n.inputs], **n.attrs),
                               dtype=n.out.dtype)
            consts[n.out] = value
            n = Node("const", (), {"value": Literal(value)}, n.out, n.loc, n.grad_of)
        nodes.append(n)
    return graph.replace(nodes=nodes)


def _const_value(producers, v):
    n = producers.get(v)
    if n is not None and REGISTRY[n.prim].literal and v.ndim == 0:
        return n.attrs["value"].value.item()
    return None


def simplify(graph):
    """Algebraic identities that hold for every float, as each primitive's record states them:
    units (x+0, x-0, x*1, x/1), involutions (--x), and its own rule (no-op reshapes, a slice
    that takes back what a padding put in)."""
    producers = graph.producers()
    subst = {}
    for n in graph.nodes:
        ins = [subst.get(v, v) for v in n.inputs]
        out = n.out
        prim = REGISTRY[n.prim]
        replacement = None
        for k, unit in prim.identities:
            other = ins[1 - k]
            if _const_value(producers, ins[k]) == unit and other.type == out.type:
                replacement = other
                break
        if replacement is None and prim.involution:
            inner = producers.get(ins[0])
            if inner is not None and inner.prim == n.prim:
                replacement = inner.inputs[0]
        if replacement is None and prim.simplify is not None:
            replacement = prim.simplify(n, ins, producers.get)
        if replacement is not None:
            replacement = subst.get(replacement, replacement)
        if replacement is not None and replacement is not out:
            subst[out] = replacement
    return _rebuild(graph, graph.nodes, subst)


def strip_stop_gradients(graph):
    """After differentiation stop_gradient (any ``gradient_barrier``) is the identity: replace
    it by its input."""
    subst = {n.out: n.inputs[0] for n in graph.nodes if REGISTRY[n.prim].gradient_barrier}
    return _rebuild(graph, [n for n in graph.nodes if n.out not in subst], subst)


def optimize(graph, rounds=4):
    """Run the passes until the graph stops shrinking (at most ``rounds`` times)."""
    for _ in range(rounds):
        before = len(graph.nodes)
        graph = dce(cse(simplify(fold_constants(graph))))
        if len(graph.nodes) == before:
            break
    return graph
