"""The ``scan`` primitive: a loop whose body is a graph, kept a loop in every backend.

``fori_loop`` and ``scan`` (``symgrad.frontend.loops``) trace a loop body once into a sub-graph;
the loop becomes one ``scan`` statement holding that graph (``Body``, hashed by the graph's
``structural_hash``), whatever the trip count.

The ``scan`` primitive works on packed values, so that one statement defines one value:

- inputs ``(c0, xs..., consts...)``: the initial carry flattened into one vector ``c0[P]``, the
  arrays scanned along axis 0 (``xs``, ``n_xs`` of them) and the values of the enclosing trace the
  body closed over (``consts``, explicit inputs of the body graph);
- the body graph ``(i, c[P], x..., consts...) -> (c'[P], y[Q])`` (``y`` only when Q > 0), where
  ``i`` is the int64 step index and ``x`` the step's slices;
- its result ``out[T+1, P+Q]``: row ``t`` holds the carry step ``t`` reads and the ``y`` it
  writes; the carry the last step writes is in the last row (``reverse``: rows run backwards,
  the initial carry in row T and the final one in row 0). The rows of carries are the *tape*
  reverse mode reads: T x P numbers.

Reverse mode (``_scan_vjp``) is another ``scan``, running the other way over the tape: its body is
the body's adjoint (which recomputes the body's intermediates from the taped carry), its carry
the carry's adjoint and the accumulated adjoints of the closed-over values, its per-step outputs
the adjoints of the ``xs`` slices. Forward mode (``_scan_jvp``) is a scan over (carry, carry
tangent) whose body is the body's jvp. The interpreter runs the body graph once per step; the C
backend renders its statements inside one ``for`` loop (``KernelContext.inline_graph``), so the
C size does not depend on the trip count.

The derivative rules differentiate the body graph with ``symgrad.core.autodiff``, which imports
only the record module (``core.primitive``), never this package: no import cycle.
"""
from __future__ import annotations

import functools

import numpy as np

from symgrad.errors import ShapeError
from symgrad.core import batching, dims, ops
from symgrad.core.autodiff import inline, jvp_graph, value_and_grad_graph
from symgrad.core.ir import Builder, Graph, Node, Var, building, current_builder
from symgrad.core.passes import optimize
from symgrad.core.primitive import REGISTRY, Primitive, bind, memory_lines, register
from symgrad.core.symbolic import is_symbolic, sympy as _sympy
from symgrad.core.types import TensorType


class Body:
    """A loop body graph as a statement attribute: compared and hashed by its content."""
    __slots__ = ("graph", "key")

    def __init__(self, graph):
        self.graph = graph
        self.key = graph.structural_hash()

    def __eq__(self, other):
        return isinstance(other, Body) and self.key == other.key

    def __hash__(self):
        return hash(self.key)

    def __repr__(self):
        return f"<{self.graph.name} {self.key[:16]}>"

    def substitute(self, bindings):
        """This body with the run-time sizes in ``bindings`` replaced by their values, for the
        interpreter (whose primitives need ints)."""
        g = self.graph
        shapes = [v.shape for v in g.inputs] + [n.out.shape for n in g.nodes]
        if not dims.free_symbols(shapes) and not any(
                is_symbolic(a) or isinstance(a, Body) for n in g.nodes for a in n.attrs.values()):
            return self
        env = {}

        def var(v):
            if v not in env:
                shape = tuple(dims.substitute(d, bindings) for d in v.shape)
                env[v] = Var(TensorType(shape, v.dtype), name=v.name)
            return env[v]
        inputs = [var(v) for v in g.inputs]
        nodes = [Node(n.prim, tuple(var(v) for v in n.inputs),
                      dims.substitute_attrs(n.attrs, bindings), var(n.out), n.loc, n.grad_of)
                 for n in g.nodes]
        bound = object.__new__(Body)
        bound.graph = Graph(inputs, nodes, [var(v) for v in g.outputs], name=g.name)
        bound.key = f"{self.key}/{sorted((str(k), v) for k, v in bindings.items())}"
        return bound


# --- IR helpers: packing values into one vector and back -----------------------------------------

def pack(vars_):
    """The values ``vars_`` flattened and joined into one vector."""
    parts = [ops.reshape(v, (v.type.size,)) for v in vars_]
    return parts[0] if len(parts) == 1 else bind("concatenate", *parts, axis=0)


def sizes(types):
    return [dims.normalize(t.size) for t in types]


def unpack(vec, types):
    """Split the vector ``vec`` into values of ``types``."""
    out, offset = [], 0
    for t, n in zip(types, sizes(types)):
        part = vec if (offset == 0 and dims.equal(n, vec.shape[0])) else bind(
            "slice", vec, start=(offset,), step=(1,), shape=(n,))
        out.append(ops.reshape(part, t.shape))
        offset = dims.normalize(offset + n)
    return out


def block(x, row, rows, col, cols):
    """``x[row:row+rows, col:col+cols]`` of a 2-d value."""
    if (row, col) == (0, 0) and (rows, cols) == x.shape:
        return x
    return bind("slice", x, start=(row, col), step=(1, 1), shape=(rows, cols))


def row(x, i, col, cols):
    """``x[i, col:col+cols]`` of a 2-d value, as a vector."""
    return ops.reshape(block(x, i, 1, col, cols), (cols,))


# --- the primitive -------------------------------------------------------------------------------

def widths(body):
    P = body.graph.outputs[0].shape[0]
    Q = body.graph.outputs[1].shape[0] if len(body.graph.outputs) > 1 else 0
    return dims.normalize(P), dims.normalize(Q)


def _scan_type(c0, *rest, body, length, n_xs, reverse):
    P, Q = widths(body)
    g = body.graph
    if c0.shape != (P,) or c0.dtype != g.inputs[1].dtype:
        raise ShapeError(f"initial carry {c0} does not match the body's {g.inputs[1].type}")
    for k, (t, v) in enumerate(zip(rest, g.inputs[2:])):
        want = (length,) + v.shape if k < n_xs else v.shape
        if (len(t.shape) != len(want) or not all(dims.equal(a, b) for a, b in zip(t.shape, want))
                or t.dtype != v.dtype):
            raise ShapeError(f"operand {k + 1} is {t}, the body expects {v.dtype}{list(want)}")
    return TensorType((dims.normalize(length + 1), dims.normalize(P + Q)), c0.dtype)


def _rows(length, reverse):
    """(row of the initial carry, [(step, row read, row written)...]) in execution order."""
    if reverse:
        return length, [(t, t + 1, t) for t in range(length - 1, -1, -1)]
    return 0, [(t, t, t + 1) for t in range(length)]


def _step_function(graph):
    """The body graph as a Python function of its input arrays (the interpreter, minus its
    per-call checks: it runs T times)."""
    slots = {v: k for k, v in enumerate(graph.inputs)}
    program = []
    for n in graph.nodes:
        impl = REGISTRY[n.prim].impl
        program.append((functools.partial(impl, **n.attrs) if n.attrs else impl,
                        tuple(slots[v] for v in n.inputs), np.dtype(n.out.dtype).char,
                        len(slots)))
        slots[n.out] = len(slots)
    outs = [slots[v] for v in graph.outputs]

    def run(args):
        env = list(args) + [None] * len(program)
        for impl, ins, char, k in program:
            value = impl(*[env[j] for j in ins])
            if not isinstance(value, np.ndarray):
                value = np.asarray(value)
            if value.dtype.char != char and value.dtype.kind != "c":
                value = value.astype(char)
            env[k] = value
        return [env[j] for j in outs]
    return run


def _scan_impl(c0, *rest, body, length, n_xs, reverse):
    xs, consts = rest[:n_xs], rest[n_xs:]
    P, Q = widths(body)
    arrays = (c0, *xs, *consts)
    complex_ = any(np.iscomplexobj(a) for a in arrays)
    out = np.zeros((length + 1, P + Q), np.complex128 if complex_ else c0.dtype)
    run = _step_function(body.graph)
    first, steps = _rows(length, reverse)
    out[first, :P] = c0
    for t, read, write in steps:
        results = run([np.int64(t), out[read, :P], *[x[t] for x in xs], *consts])
        out[write, :P] = results[0]
        if Q:
            out[t, P:] = results[1]
    return out


def _scan_c(k):
    """One C ``for`` loop around the body's statements, reading and writing rows of ``out``."""
    out = k.out
    attrs = k.attrs
    body, length, n_xs, reverse = attrs["body"], attrs["length"], attrs["n_xs"], attrs["reverse"]
    P, Q = widths(body)
    W = dims.normalize(P + Q)
    c0 = k.ins[0]
    xs, consts = k.ins[1:1 + n_xs], k.ins[1 + n_xs:]
    t = "_t"     # the step; a loop in the body has its own _t, in the body's own C block
    read, write = (f"({t} + 1)", t) if reverse else (t, f"({t} + 1)")
    w = dims.c_expr(W)
    inputs = [t, f"{out.name} + {read} * {w}"]
    for x in xs:
        n = dims.c_expr(dims.prod(x.shape[1:]))
        inputs.append(f"{x.name}[{t}]" if x.ndim == 1 else f"{x.name} + {t} * {n}")
    inputs += [c.name for c in consts]
    outputs = [f"{out.name} + {write} * {w}"] + (
        [f"{out.name} + {t} * {w} + {dims.c_expr(P)}"] if Q != 0 else [])
    ws, lines = k.inline_graph(body.graph, inputs, outputs)
    first = dims.c_expr(dims.normalize(length * W)) if reverse else "0"
    c0_ref = c0.name if c0.kind == "array" else f"(const {c0.ctype}[]){{{c0.name}}}"
    head = [f"memcpy({out.name} + {first}, {c0_ref}, sizeof({out.ctype}) * {dims.c_expr(P)});"]
    if Q != 0:
        last = dims.c_expr(dims.normalize(length * W + P))
        head.append(f"memset({out.name} + {last}, 0, sizeof({out.ctype}) * {dims.c_expr(Q)});")
    if ws != 0:
        head = [f"char *_ws = {k.scratch(ws)};"] + head
    loop = (f"for (int64_t {t} = {dims.c_expr(dims.normalize(length - 1))}; {t} >= 0; --{t}) {{"
            if reverse else f"for (int64_t {t} = 0; {t} < {dims.c_expr(length)}; ++{t}) {{")
    body_lines = [loop, *("    " + line for line in lines), "}"]
    return ["{", *("    " + line for line in head + body_lines), "}"]


def _scan_vjp(g, out, c0, *rest, body, length, n_xs, reverse):
    xs, consts = rest[:n_xs], rest[n_xs:]
    P, Q = widths(body)
    T = length
    read0, last = (1, 0) if reverse else (0, T)
    # The adjoint of the carry rows the steps read: usually zero (only the final carry is
    # used, so g is a padding of the last row), and then the adjoint body does not take it.
    g_tape = None if _zero_block(g, read0, T, 0, P) else block(g, read0, T, 0, P)
    # Only the closed-over values and xs whose adjoints are needed get a running sum (a loop
    # reading a big data array would otherwise carry its adjoint through every step).
    active = getattr(current_builder(), "active", None)
    needed = None if active is None else [v in active for v in rest]
    adj, float_x, float_k = _adjoint_body(body.graph, n_xs, P, Q, with_gc=g_tape is not None,
                                          needed=needed)
    K = dims.normalize(sum(consts[j].type.size for j in float_k))
    tape = block(out, read0, T, 0, P)
    a0 = row(g, last, 0, P)
    if K:
        a0 = bind("concatenate", a0, ops.broadcast_to(ops.scalar_like(0, g), (K,)), axis=0)
    scanned = [tape, *xs] + ([block(g, 0, T, P, Q)] if Q else []) + (
        [g_tape] if g_tape is not None else [])
    o2 = bind("scan", a0, *scanned, *consts, body=Body(adj), length=T, n_xs=len(scanned),
              reverse=not reverse)
    a_final = row(o2, T if reverse else 0, 0, P + K)
    grads_k = unpack(ops.reshape(block(ops.reshape(a_final, (1, P + K)), 0, 1, P, K), (K,)),
                      [consts[j].type for j in float_k]) if K else []
    d_c0 = row(ops.reshape(a_final, (1, P + K)), 0, 0, P) if K else a_final
    result = [d_c0] + [None] * (n_xs + len(consts))
    offset = P + K
    for j in float_x:
        n = dims.prod(xs[j].shape[1:])
        result[1 + j] = ops.reshape(block(o2, 0, T, offset, n), xs[j].shape)
        offset += n
    for j, gk in zip(float_k, grads_k):
        result[1 + n_xs + j] = gk
    return tuple(result)


def _adjoint_body(graph, n_xs, P, Q, with_gc=True, needed=None):
    """The adjoint scan's body ``(i, a[P+K], c, x..., gy?, gc?, consts...) -> (a', dx?)``: the
    body's vjp at the taped carry ``c`` with cotangents (carry adjoint, ``gy``), plus ``gc``
    (the tape row's own adjoint, left out when it is known to be zero); ``a`` carries the
    closed-over values' adjoints, summed."""
    i, c, xs, consts = graph.inputs[0], graph.inputs[1], graph.inputs[2:2 + n_xs], \
        graph.inputs[2 + n_xs:]
    needed = needed or [True] * (len(xs) + len(consts))
    float_x = [j for j, x in enumerate(xs) if x.type.is_float and needed[j]]
    float_k = [j for j, k in enumerate(consts) if k.type.is_float and needed[n_xs + j]]
    K = dims.normalize(sum(consts[j].type.size for j in float_k))
    dtype = c.dtype
    u_c = Var(c.type, name="u_c")
    u_y = [Var(TensorType((Q,), dtype), name="u_y")] if Q else []
    here = current_builder().loc if current_builder() is not None else None
    b = Builder()
    b.nodes = list(graph.nodes)
    b.loc = here
    with building(b):
        s = ops.reduce_sum(ops.mul(graph.outputs[0], u_c), (0,))
        if Q:
            s = ops.add(s, ops.reduce_sum(ops.mul(graph.outputs[1], u_y[0]), (0,)))
    loss = Graph(graph.inputs + [u_c] + u_y, b.nodes, [s], name="body")
    argnums = [1] + [2 + j for j in float_x] + [2 + n_xs + j for j in float_k]
    vg = value_and_grad_graph(loss, argnums)

    i2, c2 = Var(i.type, name="i"), Var(c.type, name="carry")
    a = Var(TensorType((P + K,), dtype), name="a")
    x2 = [Var(x.type, name=x.name) for x in xs]
    gy = [Var(TensorType((Q,), dtype), name="gy")] if Q else []
    gc = [Var(c.type, name="gc")] if with_gc else []
    k2 = [Var(k.type, name=k.name) for k in consts]
    b2 = Builder()
    b2.loc = here
    with building(b2):
        a_c = bind("slice", a, start=(0,), step=(1,), shape=(P,)) if K else a
        grads = inline(vg, [i2, c2, *x2, *k2, a_c, *gy])[1:]
        parts = [ops.add(grads[0], gc[0]) if gc else grads[0]]
        if K:
            a_k = bind("slice", a, start=(P,), step=(1,), shape=(K,))
            parts.append(ops.add(a_k, pack(grads[1 + len(float_x):])))
        outputs = [pack(parts)]
        if float_x:
            outputs.append(pack(grads[1:1 + len(float_x)]))
    adj = Graph([i2, a, c2, *x2, *gy, *gc, *k2], b2.nodes, outputs, name="adjoint_body")
    return optimize(adj), float_x, float_k


def _zero_block(x, row, rows, col, cols):
    """Whether ``x[row:row+rows, col:col+cols]`` is known to be zero while building: ``x`` is a
    zero padding (``pad_slice``) whose data lies outside that block, or a zero constant."""
    builder = current_builder()
    node = next((n for n in reversed(builder.nodes) if n.out is x), None) if builder else None
    if node is None:
        return False
    if REGISTRY[node.prim].literal:
        return not np.any(node.attrs["value"].value)
    if node.prim != "pad_slice" or any(st != 1 for st in node.attrs["step"]):
        return False
    (r0, c0), (nr, nc) = node.attrs["start"], node.inputs[0].shape

    def before(end, begin):             # end <= begin, for dims that may be run-time sizes
        return bool(_sympy().sympify(begin - end).is_nonnegative)
    return (before(r0 + nr, row) or before(row + rows, r0)
            or before(c0 + nc, col) or before(col + cols, c0))


def _scan_jvp(t, out, c0, *rest, body, length, n_xs, reverse):
    """Forward mode: one scan over (carry, carry tangent) whose body is the body's jvp; the
    tangent of ``out`` is read from its tangent columns. (The primal loop runs again inside.)"""
    xs, consts = rest[:n_xs], rest[n_xs:]
    t_c0, t_xs, t_ks = t[0], t[1:1 + n_xs], t[1 + n_xs:]
    P, Q = widths(body)
    sel_x = [j for j, tx in enumerate(t_xs) if tx is not None and xs[j].type.is_float]
    sel_k = [j for j, tk in enumerate(t_ks) if tk is not None and consts[j].type.is_float]
    g = body.graph
    jg = jvp_graph(g, [1] + [2 + j for j in sel_x] + [2 + n_xs + j for j in sel_k])
    here = current_builder().loc
    i2 = Var(g.inputs[0].type, name="i")
    c2 = Var(TensorType((2 * P,), c0.dtype), name="carry")
    x2 = [Var(v.type, name=v.name) for v in g.inputs[2:2 + n_xs]]
    tx2 = [Var(x2[j].type, name=f"t_{x2[j].name}") for j in sel_x]
    k2 = [Var(v.type, name=v.name) for v in g.inputs[2 + n_xs:]]
    tk2 = [Var(k2[j].type, name=f"t_{k2[j].name}") for j in sel_k]
    b = Builder()
    b.loc = here
    with building(b):
        c, tc = unpack(c2, [g.inputs[1].type] * 2)
        outs = inline(jg, [i2, c, *x2, *k2, tc, *tx2, *tk2])
        n = len(g.outputs)
        outputs = [pack([outs[0], outs[n]])] + ([pack([outs[1], outs[n + 1]])] if Q else [])
    jbody = optimize(Graph([i2, c2, *x2, *tx2, *k2, *tk2], b.nodes, outputs, name="jvp_body"))
    tc0 = t_c0 if t_c0 is not None else ops.zeros_like(c0)
    o2 = bind("scan", pack([c0, tc0]), *xs, *[t_xs[j] for j in sel_x], *consts,
              *[t_ks[j] for j in sel_k], body=Body(jbody), length=length,
              n_xs=n_xs + len(sel_x), reverse=reverse)
    rows = dims.normalize(length + 1)
    tangent = block(o2, 0, rows, P, P)
    if Q:
        tangent = bind("concatenate", tangent, block(o2, 0, rows, 2 * P + Q, Q), axis=1)
    return tangent


def _memory(node, name):
    """What a loop keeps: its rows (the tape reverse mode reads) and their size; the loops of its
    body (checkpointed segments, nested loops) follow indented: their rows live in the body's
    workspace, reused by every step."""
    body = node.attrs["body"]
    P, Q = widths(body)
    rows = node.out.shape[0]
    itemsize = np.dtype(node.out.dtype).itemsize
    nbytes = dims.normalize(rows * (P + Q) * itemsize)
    what = f"{P} carry" + (f" + {Q} per-step outputs" if Q else "")
    size = f"{nbytes:,} bytes" if dims.is_static(nbytes) else f"{nbytes} bytes"
    return ([f"{name}: {node.attrs['length']} steps of {body.graph.name} "
             f"({'backwards' if node.attrs['reverse'] else 'forwards'}); "
             f"rows {rows} x ({what}) {node.out.dtype} = {size}"]
            + ["  " + line for line in memory_lines(body.graph)])


def _scan_batch(size, bdims, c0, *rest, body, length, n_xs, reverse):
    """vmap: one scan whose carry holds every example's carry, example after example
    (``size * P`` values), and whose body is the batched body. Every example's carry is
    batched (the loop's steps may make a shared one differ); an ``xs`` array's batch axis
    goes second (the step's slice has it first); batched closed-over values keep theirs."""
    xs, consts = rest[:n_xs], rest[n_xs:]
    d_xs, d_ks = bdims[1:1 + n_xs], bdims[1 + n_xs:]
    P, Q = widths(body)
    g = body.graph
    c0 = ops.reshape(batching.to_front(c0, bdims[0], size), (dims.normalize(size * P),))
    xs = [x if d is None else batching.move_axis(x, d, 1) for x, d in zip(xs, d_xs)]
    i2 = Var(g.inputs[0].type, name="i")
    c2 = Var(c0.type, name="carry")
    x2 = [Var(v.type if d is None else TensorType((size, *v.shape), v.dtype), name=v.name)
          for v, d in zip(g.inputs[2:2 + n_xs], d_xs)]
    k2 = [Var(k.type, name=v.name) for v, k in zip(g.inputs[2 + n_xs:], consts)]
    b = Builder()
    b.loc = current_builder().loc
    with building(b):
        outs, out_dims = batching.emit_batched(
            g, [i2, ops.reshape(c2, (size, P)), *x2, *k2],
            [None, 0, *(None if d is None else 0 for d in d_xs), *d_ks], size)
        outputs = [ops.reshape(batching.to_front(o, d, size), (dims.normalize(size * v.type.size),))
                   for o, d, v in zip(outs, out_dims, g.outputs)]
    batched = optimize(Graph([i2, c2, *x2, *k2], b.nodes, outputs, name=g.name))
    out = bind("scan", c0, *xs, *consts, body=Body(batched), length=length, n_xs=n_xs,
               reverse=reverse)
    # Rows (size * P carries, size * Q outputs) back to (size, P + Q) per row.
    rows = dims.normalize(length + 1)
    wide = dims.normalize(size * P)
    result = ops.reshape(block(out, 0, rows, 0, wide), (rows, size, P))
    if Q != 0:
        ys = block(out, 0, rows, wide, dims.normalize(size * Q))
        result = bind("concatenate", result, ops.reshape(ys, (rows, size, Q)), axis=2)
    return result, 1


register(Primitive(
    name="scan", shape_rule=_scan_type, impl=_scan_impl, vjp=_scan_vjp, jvp=_scan_jvp,
    batch=_scan_batch,
    c_kernel=_scan_c, memory=_memory,
    doc="scan[body, length, n_xs, reverse](c0, xs..., consts...): the body graph run length "
        "times over a packed carry; rows of (carry read, y written) per step, final carry last",
))
