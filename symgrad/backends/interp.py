"""The NumPy interpreter: runs any graph, forward or adjoint, node by node.

It computes in the dtypes of the graph (float32, float64, complex64, complex128), or in complex128
when given complex inputs to a graph of real values (the complex step). ``evaluate(...,
keep=True)`` also returns every intermediate value, so a disagreement with the C backend can be
traced to the first node that differs.
"""
from __future__ import annotations

import numpy as np

from symgrad.core import dims
from symgrad.errors import ShapeError
from symgrad.core.primitives import REGISTRY


def evaluate(graph, args, *, keep=False):
    """Run ``graph`` on ``args`` (one array per input). Returns the outputs as fresh arrays,
    and with ``keep=True`` also the dict of every value by var."""
    if len(args) != len(graph.inputs):
        raise TypeError(f"{graph.name} takes {len(graph.inputs)} inputs, got {len(args)}")
    env = {}
    for v, a in zip(graph.inputs, args):
        env[v] = np.asarray(a)
    shapes = [v.shape for v in graph.inputs]
    bindings = None
    if dims.free_symbols(shapes):
        try:
            bindings = dims.bind(shapes, [env[v].shape for v in graph.inputs],
                                 [v.name for v in graph.inputs])
        except ValueError as e:
            raise ShapeError(f"{graph.name}: {e}") from None
    by_name = {v.name: v for v in graph.inputs}
    for s in dims.graph_symbols(graph):
        name = dims.value_source(s)
        if name is not None:          # a trip count given by an int argument's value
            if name not in by_name:
                raise ShapeError(f"{graph.name}: a loop runs {name} times, but {name} is not "
                                 f"an input of this graph")
            bindings = dict(bindings or {})
            bindings[s] = int(np.real(env[by_name[name]]))
    for n in graph.nodes:
        prim = REGISTRY[n.prim]
        attrs = n.attrs if bindings is None else dims.substitute_attrs(n.attrs, bindings)
        value = prim.impl(*[env[v] for v in n.inputs], **attrs)
        if prim.defines is not None:
            # A size known only now (a while loop's trip count): the statements after use it.
            value, size = value
            bindings = dict(bindings or {})
            if prim.defines(n) in bindings:
                raise NotImplementedError(f"{graph.name}: the size {prim.defines(n)} is defined "
                                          f"twice (a symgrad bug: inlining renames a clash)")
            bindings[prim.defines(n)] = int(size)
        value = np.asarray(value)
        # A complex value in a real-typed node is the complex step riding along: kept as it is.
        if not np.iscomplexobj(value) or n.out.type.is_complex:
            value = value.astype(n.out.dtype, copy=False)
        env[n.out] = value
    outputs = [np.array(env[v], copy=True) for v in graph.outputs]
    return (outputs, env) if keep else outputs


class InterpExecutable:
    """A program run by the interpreter: the same API as the native executable."""
    source = None

    def __init__(self, program):
        self.program = program

    def value(self, args):
        return evaluate(self.program.forward, args)

    def value_and_grad(self, args):
        out = evaluate(self.program.value_and_grad, args)
        return out[0], out[1:]


class InterpBackend:
    """The NumPy interpreter as a backend (``backend="interp"``)."""
    name = "interp"

    def build(self, program, *, cache_dir=None, cflags=None):
        return InterpExecutable(program)


BACKEND = InterpBackend()
