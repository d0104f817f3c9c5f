"""A sum whose one term is a matrix product: the product adds into the other term's buffer.

A gradient such as ``dW = 2 reg W + X^T G`` was three passes over W's size: one loop wrote
``2 reg W`` to an array, the product wrote ``X^T G`` to another, and a third loop added them
(W5: three passes over 2.4 MB, and 4.8 MB more workspace). Here the loop computing the first
term writes straight into the sum's buffer, and the product accumulates into it (a gemm with
beta = 1, a narrow kernel or the loops in accumulating mode): the add disappears.

``plan`` finds these from the graph's shapes, uses and the primitives' records alone:
``s = add(x, p)`` (either order; a sum is a primitive whose derivative sums print as ``+=``)
where ``p`` comes from a kernel that can add into its output (``c_adds_into``: matmul), read only
by ``s``, ``x`` an array of ``s``'s shape and dtype computed
by an elementwise loop before the product and read only by ``s``, and ``s`` a loop of its own.
"""
from __future__ import annotations

from symgrad.core.primitives import REGISTRY


def plan(graph, groups, uses, views, internal):
    """``{value: sum node}`` for each term ``x`` and product ``p`` that live in their sum's
    buffer, and the sum nodes (whose statements disappear) as ``{s.out: s}``."""
    order = {n.out: k for k, n in enumerate(graph.nodes)}
    producer = {n.out: n for n in graph.nodes}
    outputs = set(graph.outputs)
    alone = {g[0].out for g in groups if len(g) == 1}
    found = {}
    for s in graph.nodes:
        if (REGISTRY[s.prim].accumulate != "+=" or s.out not in alone or len(s.inputs) != 2
                or s.out.ndim == 0):
            continue
        for x, p in (s.inputs, s.inputs[::-1]):
            px, pp = producer.get(x), producer.get(p)
            if (pp is None or px is None or not REGISTRY[pp.prim].c_adds_into or x is p
                    or not REGISTRY[px.prim].elementwise
                    or any(v.type != s.out.type for v in (x, p))
                    or any(v in outputs or v in views or v in internal or v in found
                           or len(uses.get(v, [])) != 1 for v in (x, p))
                    or order[x] > order[p]):
                continue
            found[x] = s
            found[p] = s
            found[s.out] = s
            break
    return found
