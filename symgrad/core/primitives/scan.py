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
  reverse mode reads: T x P numbers;
- with ``summed=R`` (derivative rules make these), the body has a last output ``s[R]`` that is
  summed over the steps into one buffer: the result is then flat, the rows (``rows_of``)
  followed by the sum (``sum_of``). The interpreter adds each step's ``s``; the C kernel
  renders the body with ``s`` in accumulating mode (a product adds itself in).

Reverse mode (``_scan_vjp``) is another ``scan``, running the other way over the tape: its body is
the body's adjoint (which recomputes the body's intermediates from the taped carry), its carry
the carry's adjoint, its per-step outputs the adjoints of the ``xs`` slices, its summed output
the adjoints of the closed-over values (one buffer, not a row per step). A step's product
``x[i] @ W`` of closed-over matrices is stored by the forward loop instead of recomputed
(``_tape_products``), and a closed-over adjoint that is a sum of outer products ``x[i]^T v``
leaves the loop as one product (``_hoist_outer_products``). Forward mode (``_scan_jvp``) is a
scan over (carry, carry tangent) whose body is the body's jvp. The interpreter runs the body graph once per step; the C
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


def _nonnegative(d):
    """Whether a size difference is known to be >= 0 (False when it depends on a run-time size
    in a way sympy cannot decide). Plain integers never load sympy."""
    if isinstance(d, (int, np.integer)):
        return d >= 0
    return bool(_sympy().sympify(d).is_nonnegative)


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

def widths(body, summed=0):
    """(P, Q): the body's carry and per-step output widths (its summed output, ``summed``
    wide, comes last when there is one)."""
    outs = body.graph.outputs
    P = outs[0].shape[0]
    Q = outs[1].shape[0] if len(outs) - (1 if summed else 0) > 1 else 0
    return dims.normalize(P), dims.normalize(Q)


def rows_of(out, length, P, Q, summed=0):
    """The rows ``(length + 1, P + Q)`` of a scan's result ``out`` (a view, no copy)."""
    if not summed:
        return out
    W = dims.normalize(P + Q)
    n = dims.normalize((length + 1) * W)
    part = bind("slice", out, start=(0,), step=(1,), shape=(n,))
    return ops.reshape(part, (dims.normalize(length + 1), W))


def sum_of(out, length, P, Q, summed):
    """The summed output ``[summed]`` of a scan's result ``out``: what follows its rows."""
    n = dims.normalize((length + 1) * (P + Q))
    return bind("slice", out, start=(n,), step=(1,), shape=(summed,))


def _scan_type(c0, *rest, body, length, n_xs, reverse, summed=0):
    P, Q = widths(body, summed)
    g = body.graph
    if c0.shape != (P,) or c0.dtype != g.inputs[1].dtype:
        raise ShapeError(f"initial carry {c0} does not match the body's {g.inputs[1].type}")
    if summed and (g.outputs[-1].shape != (summed,) or g.outputs[-1].dtype != c0.dtype):
        raise ShapeError(f"the body's summed output is {g.outputs[-1].type}, the scan says "
                         f"{c0.dtype}[{summed}]")
    for k, (t, v) in enumerate(zip(rest, g.inputs[2:])):
        want = (length,) + v.shape if k < n_xs else v.shape
        if (len(t.shape) != len(want) or not all(dims.equal(a, b) for a, b in zip(t.shape, want))
                or t.dtype != v.dtype):
            raise ShapeError(f"operand {k + 1} is {t}, the body expects {v.dtype}{list(want)}")
    if summed:
        return TensorType((dims.normalize((length + 1) * (P + Q) + summed),), c0.dtype)
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


def _scan_impl(c0, *rest, body, length, n_xs, reverse, summed=0):
    xs, consts = rest[:n_xs], rest[n_xs:]
    P, Q = widths(body, summed)
    arrays = (c0, *xs, *consts)
    complex_ = any(np.iscomplexobj(a) for a in arrays)
    flat = np.zeros((length + 1) * (P + Q) + summed, np.complex128 if complex_ else c0.dtype)
    out = flat[:(length + 1) * (P + Q)].reshape(length + 1, P + Q)
    total = flat[(length + 1) * (P + Q):]        # the summed output: one buffer, added into
    run = _step_function(body.graph)
    first, steps = _rows(length, reverse)
    out[first, :P] = c0
    for t, read, write in steps:
        results = run([np.int64(t), out[read, :P], *[x[t] for x in xs], *consts])
        out[write, :P] = results[0]
        if Q:
            out[t, P:] = results[1]
        if summed:
            total += results[-1]
    return flat if summed else out


def _scan_c(k):
    """One C ``for`` loop around the body's statements, reading and writing rows of ``out``."""
    out = k.out
    attrs = k.attrs
    body, length, n_xs, reverse = attrs["body"], attrs["length"], attrs["n_xs"], attrs["reverse"]
    summed = attrs.get("summed", 0)
    P, Q = widths(body, summed)
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
    total = dims.c_expr(dims.normalize((length + 1) * W))
    if summed:
        # Each step adds its contribution into one buffer after the rows (a product straight
        # into it, beta = 1): no row per step.
        outputs.append(f"{out.name} + {total}")
    ws, lines = k.inline_graph(body.graph, inputs, outputs,
                               summed={len(outputs) - 1} if summed else ())
    first = dims.c_expr(dims.normalize(length * W)) if reverse else "0"
    c0_ref = c0.name if c0.kind == "array" else f"(const {c0.ctype}[]){{{c0.name}}}"
    head = [f"memcpy({out.name} + {first}, {c0_ref}, sizeof({out.ctype}) * {dims.c_expr(P)});"]
    if Q != 0:
        last = dims.c_expr(dims.normalize(length * W + P))
        head.append(f"memset({out.name} + {last}, 0, sizeof({out.ctype}) * {dims.c_expr(Q)});")
    if summed:
        head.append(f"memset({out.name} + {total}, 0, sizeof({out.ctype}) * "
                    f"{dims.c_expr(summed)});")
    if ws != 0:
        head = [f"char *_ws = {k.scratch(ws)};"] + head
    loop = (f"for (int64_t {t} = {dims.c_expr(dims.normalize(length - 1))}; {t} >= 0; --{t}) {{"
            if reverse else f"for (int64_t {t} = 0; {t} < {dims.c_expr(length)}; ++{t}) {{")
    body_lines = [loop, *("    " + line for line in lines), "}"]
    return ["{", *("    " + line for line in head + body_lines), "}"]


def _scan_vjp(g, out, c0, *rest, body, length, n_xs, reverse, summed=0):
    """Reverse mode: a scan running the other way over the tape (``_scan_adjoint``). A step's
    product of a row of a closed-over matrix and another closed-over matrix (``x[i] @ W``) is
    first moved to the tape (``_tape_products``): the adjoint loop reads it instead of
    computing it again, takes its adjoint per step, and one product after the loop turns
    those into the adjoints of ``W`` (``x^T G``) and ``x`` (``G W^T``)."""
    taped = None if summed else _tape_products(out, c0, rest, body, length, n_xs, reverse)
    if taped is None:
        return _scan_adjoint(g, out, c0, *rest, body=body, length=length, n_xs=n_xs,
                             reverse=reverse, summed=summed)
    body_r, res_xs, products = taped
    xs, consts = rest[:n_xs], rest[n_xs:]
    R = len(res_xs)
    grads = _scan_adjoint(g, out, c0, *xs, *res_xs, *consts, body=Body(body_r), length=length,
                          n_xs=n_xs + R, reverse=reverse, keep=set(res_xs))
    result = list(grads[:1 + n_xs]) + list(grads[1 + n_xs + R:])
    active = getattr(current_builder(), "active", None)
    T = length

    def add(k, value):
        result[k] = value if result[k] is None else ops.add(result[k], value)
    for (m_x, m_w, width), d in zip(products, grads[1 + n_xs:1 + n_xs + R]):
        if d is None:
            continue
        G = ops.reshape(d, (T, width))
        x, w = consts[m_x], consts[m_w]
        if active is None or w in active:
            rows = x if dims.equal(x.shape[0], T) else bind(
                "slice", x, start=(0, 0), step=(1, 1), shape=(T, x.shape[1]))
            add(1 + n_xs + m_w, bind("matmul", rows, G, transpose_a=True))
        if x.type.is_float and (active is None or x in active):
            dx = bind("matmul", G, w, transpose_b=True)
            if not dims.equal(x.shape[0], T):
                dx = bind("pad_slice", dx, start=(0, 0), step=(1, 1), shape=x.shape)
            add(1 + n_xs + m_x, dx)
    return tuple(result)


def _tape_products(out, c0, rest, body, length, n_xs, reverse):
    """For reverse mode: the loop ``out`` (a statement of the graph being built) made to store
    the step's products ``r = x[i] @ W`` (a row of a closed-over matrix times another: the
    naive SVM's scores) as per-step outputs, a few numbers a step, so that the adjoint loop
    need not compute them again (a pass over ``W`` and a copy of ``x[i]`` per step, 0.16 of
    the naive SVM's gradient). The statement defining ``out`` becomes a slice of the new loop's
    result (the rows it had), the new loop in its place.

    Returns None (nothing to tape, or ``out`` not a statement of the builder), or ``(the body
    with each ``r`` an ``xs`` input after the others, [their per-step values (T, 1, n)],
    [(position of x in consts, position of W in consts, n)])``."""
    builder = current_builder()
    index = next((k for k, n in enumerate(builder.nodes) if n.out is out), None) \
        if builder is not None else None
    if index is None:
        return None
    g = body.graph
    step, consts = g.inputs[0], g.inputs[2 + n_xs:]
    producer = {n.out: n for n in g.nodes}

    def through_reshapes(v):
        while v in producer and producer[v].prim == "reshape":
            v = producer[v].inputs[0]
        return v
    found = []
    for n in g.nodes:
        if (n.prim != "matmul" or n.attrs.get("transpose_a") or n.attrs.get("transpose_b")
                or n.out.ndim != 2 or n.out.shape[0] != 1 or not n.out.type.is_float
                or not isinstance(n.out.shape[1], int) or n.out.shape[1] > 64
                or n.inputs[1] not in consts or n.out in g.outputs):
            continue
        gather = producer.get(through_reshapes(n.inputs[0]))
        if (gather is None or gather.prim != "gather" or len(gather.inputs) != 2
                or gather.inputs[1] is not step or gather.inputs[0] not in consts
                or gather.inputs[0].ndim != 2
                or not _nonnegative(gather.inputs[0].shape[0] - length)):
            continue
        found.append((n, consts.index(gather.inputs[0]), consts.index(n.inputs[1])))
    if not found:
        return None
    P, Q = widths(body)
    old = builder.nodes[index]
    # The loop again, its per-step outputs followed by the products.
    b = Builder()
    b.nodes = list(g.nodes)
    b.loc = builder.loc
    with building(b):
        ys = ([g.outputs[1]] if Q else []) + [ops.reshape(n.out, (n.out.shape[1],))
                                              for n, _, _ in found]
        outputs = [g.outputs[0], pack(ys)]
    taping = optimize(Graph(g.inputs, b.nodes, outputs, name=g.name))
    xs, cs = rest[:n_xs], rest[n_xs:]
    before = len(builder.nodes)
    new = bind("scan", c0, *xs, *cs, body=Body(taping), length=length, n_xs=n_xs,
               reverse=reverse)
    emitted = builder.nodes[before:]
    del builder.nodes[before:]
    shape = out.shape
    builder.nodes[index:index + 1] = emitted + [Node(
        "slice", (new,), {"start": (0, 0), "step": (1, 1), "shape": shape}, out, old.loc,
        old.grad_of)]
    # Their rows, read after the slice defining ``out`` (so after ``new``).
    width = dims.normalize(sum(n.out.shape[1] for n, _, _ in found))
    stored = block(new, 0, length, dims.normalize(P + Q), width)
    res_xs, offset = [], 0
    for n, _, _ in found:
        k = n.out.shape[1]
        res_xs.append(ops.reshape(block(stored, 0, length, offset, k), (length, 1, k)))
        offset += k
    # The body that reads them: each product an input, its statement gone.
    swap = {n.out: Var(n.out.type, name=f"taped{k}") for k, (n, _, _) in enumerate(found)}
    nodes = [Node(n.prim, tuple(swap.get(v, v) for v in n.inputs), n.attrs, n.out, n.loc,
                  n.grad_of) for n in g.nodes if n.out not in swap]
    adj_body = Graph(g.inputs[:2 + n_xs] + list(swap.values()) + g.inputs[2 + n_xs:], nodes,
                     [swap.get(v, v) for v in g.outputs], name=g.name)
    return adj_body, res_xs, [(m_x, m_w, n.out.shape[1]) for n, m_x, m_w in found]


def _scan_adjoint(g, out, c0, *rest, body, length, n_xs, reverse, summed=0, keep=()):
    xs, consts = rest[:n_xs], rest[n_xs:]
    P, Q = widths(body, summed)
    T = length
    read0, last = (1, 0) if reverse else (0, T)
    out_rows, g_rows = rows_of(out, T, P, Q, summed), rows_of(g, T, P, Q, summed)
    # The adjoint of the carry rows the steps read: usually zero (only the final carry is
    # used, so g is a padding of the last row), and then the adjoint body does not take it.
    g_tape = None if _zero_block(g_rows, read0, T, 0, P) else block(g_rows, read0, T, 0, P)
    # The summed output's adjoint is the same at every step: a closed-over value of the
    # adjoint loop.
    g_sum = [sum_of(g, T, P, Q, summed)] if summed else []
    # Only the closed-over values and xs whose adjoints are needed get one (a loop reading a
    # big data array would otherwise compute its adjoint at every step for nothing).
    active = getattr(current_builder(), "active", None)
    needed = None if active is None else [v in active or v in keep for v in rest]
    adj, float_x, float_k = _adjoint_body(body.graph, n_xs, P, Q, with_gc=g_tape is not None,
                                          needed=needed, summed=summed)
    # The closed-over values' adjoints are sums over the steps: the adjoint loop's summed
    # output, one buffer every step adds into (not a carry, whose every row the loop would
    # store: T x their size, 63 MB for the naive SVM's W at N = 256). Those that are a sum of
    # outer products x[t]^T v[t] of the rows of a closed-over array x come out of the loop:
    # it stores v[t] per step and one product x^T V follows it.
    first_k = 3 + n_xs + (1 if Q else 0) + (1 if g_tape is not None else 0)
    adj, hoisted = _hoist_outer_products(adj, float_k, first_k, T, P)
    float_k = [j for j in float_k if j not in hoisted]
    K = dims.normalize(sum(consts[j].type.size for j in float_k))
    X = dims.normalize(sum(dims.prod(xs[j].shape[1:]) for j in float_x))
    V = dims.normalize(sum(w for _, w in hoisted.values()))
    tape = block(out_rows, read0, T, 0, P)
    a0 = row(g_rows, last, 0, P)
    scanned = [tape, *xs] + ([block(g_rows, 0, T, P, Q)] if Q else []) + (
        [g_tape] if g_tape is not None else [])
    o2 = bind("scan", a0, *scanned, *consts, *g_sum, body=Body(adj), length=T,
              n_xs=len(scanned), reverse=not reverse, **({"summed": K} if K else {}))
    o2_rows = rows_of(o2, T, P, dims.normalize(X + V), K)
    d_c0 = row(o2_rows, T if reverse else 0, 0, P)
    result = [d_c0] + [None] * (n_xs + len(consts))
    offset = P
    for j in float_x:
        n = dims.prod(xs[j].shape[1:])
        result[1 + j] = ops.reshape(block(o2_rows, 0, T, offset, n), xs[j].shape)
        offset += n
    for j, (m, width) in hoisted.items():       # x^T V: rows t < T of x, one v per step
        x = consts[m]
        if not dims.equal(x.shape[0], T):
            x = bind("slice", x, start=(0, 0), step=(1, 1), shape=(T, x.shape[1]))
        vs = block(o2_rows, 0, T, offset, width)
        result[1 + n_xs + j] = ops.reshape(bind("matmul", x, vs, transpose_a=True),
                                           consts[j].shape)
        offset += width
    if K:
        for j, gk in zip(float_k, unpack(sum_of(o2, T, P, dims.normalize(X + V), K),
                                         [consts[j].type for j in float_k])):
            result[1 + n_xs + j] = gk
    return tuple(result)


def _adjoint_body(graph, n_xs, P, Q, with_gc=True, needed=None, summed=0):
    """The adjoint scan's body ``(i, a[P], c, x..., gy?, gc?, consts..., gs?) -> (a', dx?,
    dk?)``: the body's vjp at the taped carry ``c`` with cotangents (carry adjoint ``a``,
    ``gy``, and ``gs`` for a summed output), plus ``gc`` (the tape row's own adjoint, left out
    when it is known to be zero). ``dk``, the closed-over values' adjoints, is summed over the
    steps by the adjoint scan (its ``summed`` output)."""
    i, c, xs, consts = graph.inputs[0], graph.inputs[1], graph.inputs[2:2 + n_xs], \
        graph.inputs[2 + n_xs:]
    needed = needed or [True] * (len(xs) + len(consts))
    float_x = [j for j, x in enumerate(xs) if x.type.is_float and needed[j]]
    # (A closed-over value with no elements has no adjoint to sum: a summed output of width 0
    # would be no summed output.)
    # Nor one the body does not read (W, when its product with x[i] is taped).
    read = {v for n in graph.nodes for v in n.inputs} | set(graph.outputs)
    float_k = [j for j, k in enumerate(consts) if k.type.is_float and needed[n_xs + j]
               and not dims.equal(k.type.size, 0) and k in read]
    dtype = c.dtype
    u_c = Var(c.type, name="u_c")
    u_y = [Var(TensorType((Q,), dtype), name="u_y")] if Q else []
    u_s = [Var(TensorType((summed,), dtype), name="u_s")] if summed else []
    here = current_builder().loc if current_builder() is not None else None
    b = Builder()
    b.nodes = list(graph.nodes)
    b.loc = here
    with building(b):
        s = ops.reduce_sum(ops.mul(graph.outputs[0], u_c), (0,))
        if Q:
            s = ops.add(s, ops.reduce_sum(ops.mul(graph.outputs[1], u_y[0]), (0,)))
        if summed:
            s = ops.add(s, ops.reduce_sum(ops.mul(graph.outputs[-1], u_s[0]), (0,)))
    loss = Graph(graph.inputs + [u_c] + u_y + u_s, b.nodes, [s], name="body")
    argnums = [1] + [2 + j for j in float_x] + [2 + n_xs + j for j in float_k]
    vg = value_and_grad_graph(loss, argnums)

    i2, c2 = Var(i.type, name="i"), Var(c.type, name="carry")
    a = Var(TensorType((P,), dtype), name="a")
    x2 = [Var(x.type, name=x.name) for x in xs]
    gy = [Var(TensorType((Q,), dtype), name="gy")] if Q else []
    gc = [Var(c.type, name="gc")] if with_gc else []
    k2 = [Var(k.type, name=k.name) for k in consts]
    gs = [Var(TensorType((summed,), dtype), name="gs")] if summed else []
    b2 = Builder()
    b2.loc = here
    with building(b2):
        grads = inline(vg, [i2, c2, *x2, *k2, a, *gy, *gs])[1:]
        outputs = [ops.add(grads[0], gc[0]) if gc else grads[0]]
        if float_x:
            outputs.append(pack(grads[1:1 + len(float_x)]))
        if float_k:
            outputs.append(pack(grads[1 + len(float_x):]))
    adj = Graph([i2, a, c2, *x2, *gy, *gc, *k2, *gs], b2.nodes, outputs, name="adjoint_body")
    return optimize(adj), float_x, float_k


def _hoist_outer_products(adj, float_k, first_k, T, P):
    """The adjoint body ``adj`` with the closed-over values' adjoints that are one outer
    product ``x[i]^T v`` (``x`` a closed-over matrix, ``i`` the step, ``v`` a row) taken out of
    its summed output: ``v`` joins the per-step outputs instead (after the xs' adjoints).
    Returns ``(body, {position in consts: (position of x in consts, width of v)})``.

    Summed in the loop, such a sum costs a pass over the adjoint's buffer per step (the naive
    SVM: 256 passes over W's 30,730 numbers); stored, the steps' ``v`` are T short rows and
    one product ``x[:T]^T V`` after the loop sums them, as the vectorized code would.
    Only the exact pattern qualifies (the whole adjoint is that product; ``x`` has at least T
    rows, so every step's row exists); anything else stays summed."""
    if not float_k:
        return adj, {}
    producer = {n.out: n for n in adj.nodes}
    step, consts = adj.inputs[0], adj.inputs[first_k:]

    def through_reshapes(v):
        while v in producer and producer[v].prim == "reshape":
            v = producer[v].inputs[0]
        return v
    last = adj.outputs[-1]
    top = producer.get(last)
    parts = list(top.inputs) if top is not None and top.prim == "concatenate" else [last]
    if len(parts) != len(float_k):
        return adj, {}
    hoisted, kept = {}, []
    for j, part in zip(float_k, parts):
        p = producer.get(through_reshapes(part))
        found = None
        if (p is not None and p.prim == "matmul" and p.attrs.get("transpose_a")
                and not p.attrs.get("transpose_b") and p.inputs[0].shape[0] == 1
                and p.inputs[1].shape[0] == 1 and p.out.ndim == 2):
            gather = producer.get(through_reshapes(p.inputs[0]))
            if (gather is not None and gather.prim == "gather" and len(gather.inputs) == 2
                    and gather.inputs[1] is step and gather.inputs[0] in consts
                    and gather.inputs[0].ndim == 2
                    and _nonnegative(gather.inputs[0].shape[0] - T)):
                found = consts.index(gather.inputs[0]), p.inputs[1]
        if found is None:
            kept.append(part)
        else:
            hoisted[j] = (found[0], found[1])
    if not hoisted:
        return adj, {}
    b = Builder()
    b.nodes = list(adj.nodes)
    b.loc = current_builder().loc if current_builder() is not None else None
    with building(b):
        rows = [ops.reshape(v, (v.type.size,)) for _, v in hoisted.values()]
        dx = [adj.outputs[1]] if len(adj.outputs) == 3 else []
        outputs = [adj.outputs[0], pack(dx + rows)]
        if kept:
            outputs.append(pack(kept))
    body = optimize(Graph(adj.inputs, b.nodes, outputs, name=adj.name))
    return body, {j: (m, dims.normalize(v.type.size)) for j, (m, v) in hoisted.items()}


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
        return _nonnegative(begin - end)
    return (before(r0 + nr, row) or before(row + rows, r0)
            or before(c0 + nc, col) or before(col + cols, c0))


def _scan_jvp(t, out, c0, *rest, body, length, n_xs, reverse, summed=0):
    """Forward mode: one scan over (carry, carry tangent) whose body is the body's jvp; the
    tangent of ``out`` is read from its tangent columns (and a summed output's tangent, the
    sum of its tangents, from the new scan's summed output). (The primal loop runs again.)"""
    xs, consts = rest[:n_xs], rest[n_xs:]
    t_c0, t_xs, t_ks = t[0], t[1:1 + n_xs], t[1 + n_xs:]
    P, Q = widths(body, summed)
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
        outputs = [pack([outs[k], outs[n + k]]) for k in range(n)]
    jbody = optimize(Graph([i2, c2, *x2, *tx2, *k2, *tk2], b.nodes, outputs, name="jvp_body"))
    tc0 = t_c0 if t_c0 is not None else ops.zeros_like(c0)
    o2 = bind("scan", pack([c0, tc0]), *xs, *[t_xs[j] for j in sel_x], *consts,
              *[t_ks[j] for j in sel_k], body=Body(jbody), length=length,
              n_xs=n_xs + len(sel_x), reverse=reverse,
              **({"summed": dims.normalize(2 * summed)} if summed else {}))
    rows = dims.normalize(length + 1)
    o2_rows = rows_of(o2, length, 2 * P, 2 * Q, 2 * summed)
    tangent = block(o2_rows, 0, rows, P, P)
    if Q:
        tangent = bind("concatenate", tangent, block(o2_rows, 0, rows, 2 * P + Q, Q), axis=1)
    if summed:
        total = sum_of(o2, length, 2 * P, 2 * Q, 2 * summed)
        t_sum = bind("slice", total, start=(summed,), step=(1,), shape=(summed,))
        flat = ops.reshape(tangent, (dims.normalize(rows * (P + Q)),))
        tangent = bind("concatenate", flat, t_sum, axis=0)
    return tangent


def _memory(node, name):
    """What a loop keeps: its rows (the tape reverse mode reads) and their size; the loops of its
    body (checkpointed segments, nested loops) follow indented: their rows live in the body's
    workspace, reused by every step."""
    body = node.attrs["body"]
    summed = node.attrs.get("summed", 0)
    P, Q = widths(body, summed)
    rows = dims.normalize(node.attrs["length"] + 1)
    itemsize = np.dtype(node.out.dtype).itemsize
    nbytes = dims.normalize(rows * (P + Q) * itemsize)
    what = f"{P} carry" + (f" + {Q} per-step outputs" if Q else "")
    extra = ""
    if summed:
        nbytes = dims.normalize(nbytes + summed * itemsize)
        extra = f" + {summed} summed over the steps"
    size = f"{nbytes:,} bytes" if dims.is_static(nbytes) else f"{nbytes} bytes"
    return ([f"{name}: {node.attrs['length']} steps of {body.graph.name} "
             f"({'backwards' if node.attrs['reverse'] else 'forwards'}); "
             f"rows {rows} x ({what}){extra} {node.out.dtype} = {size}"]
            + ["  " + line for line in memory_lines(body.graph)])


def _scan_batch(size, bdims, c0, *rest, body, length, n_xs, reverse, summed=0):
    """vmap: one scan whose carry holds every example's carry, example after example
    (``size * P`` values), and whose body is the batched body. Every example's carry is
    batched (the loop's steps may make a shared one differ); an ``xs`` array's batch axis
    goes second (the step's slice has it first); batched closed-over values keep theirs."""
    xs, consts = rest[:n_xs], rest[n_xs:]
    d_xs, d_ks = bdims[1:1 + n_xs], bdims[1 + n_xs:]
    P, Q = widths(body, summed)
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
    R = dims.normalize(size * summed)
    out = bind("scan", c0, *xs, *consts, body=Body(batched), length=length, n_xs=n_xs,
               reverse=reverse, **({"summed": R} if summed else {}))
    # Rows (size * P carries, size * Q outputs) back to (size, P + Q) per row.
    rows = dims.normalize(length + 1)
    wide = dims.normalize(size * P)
    out_rows = rows_of(out, length, wide, dims.normalize(size * Q), R)
    result = ops.reshape(block(out_rows, 0, rows, 0, wide), (rows, size, P))
    if Q != 0:
        ys = block(out_rows, 0, rows, wide, dims.normalize(size * Q))
        result = bind("concatenate", result, ops.reshape(ys, (rows, size, Q)), axis=2)
    if not summed:
        return result, 1
    # The unbatched result is flat (rows, then the sum): per example, its rows then its sum.
    flat = ops.reshape(batching.move_axis(result, 1, 0),
                       (size, dims.normalize(rows * (P + Q))))
    total = ops.reshape(sum_of(out, length, wide, dims.normalize(size * Q), R), (size, summed))
    return bind("concatenate", flat, total, axis=1), 0


register(Primitive(
    name="scan", shape_rule=_scan_type, impl=_scan_impl, vjp=_scan_vjp, jvp=_scan_jvp,
    batch=_scan_batch,
    c_kernel=_scan_c, memory=_memory,
    doc="scan[body, length, n_xs, reverse, summed](c0, xs..., consts...): the body graph run "
        "length times over a packed carry; rows of (carry read, y written) per step, final carry "
        "last; with summed, the body's last output summed over the steps, after the rows",
))
