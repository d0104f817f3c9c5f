"""Structured loops: ``fori_loop`` and ``scan`` (JAX's semantics) that stay loops.

Called on plain arrays (outside a trace) they are Python loops. While tracing, the loop body is
traced once into a sub-graph and the loop becomes one ``scan`` statement holding that graph
(``Body``, hashed by the graph's ``structural_hash``), whatever the trip count.

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

The front end adds: carries, xs and ys as pytrees (int and bool leaves travel in the float
vector as its bits, ``bitcast``); trip counts that are run-time sizes or an int argument's value
(``dims.value_of``); and checkpointing (``_loop``: an outer scan over segments whose body is an
inner scan).
"""
from __future__ import annotations

import functools
import math

import numpy as np
import sympy as sp

from symgrad.core import dims
from symgrad.core.autodiff import inline, jvp_graph, value_and_grad_graph
from symgrad.errors import ShapeError, TracingError, where
from symgrad.core.ir import (Builder, Graph, Node, Var, building, current_builder, tracing_input,
                 user_location)
from symgrad.core.passes import optimize
from symgrad.core.primitives import REGISTRY, bind
from symgrad.core import ops
from symgrad.core.primitive import Primitive, register
from symgrad import numpy as snp
from symgrad.frontend.tracer import Tracer
from symgrad.core.types import TensorType
from symgrad.tree_util import (keystr, leaf_paths, tree_flatten, tree_leaves, tree_structure,
                               tree_unflatten)


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
                isinstance(a, (sp.Basic, Body)) for n in g.nodes for a in n.attrs.values()):
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

def _pack(vars_):
    parts = [ops.reshape(v, (v.type.size,)) for v in vars_]
    return parts[0] if len(parts) == 1 else bind("concatenate", *parts, axis=0)


def _sizes(types):
    return [dims.normalize(t.size) for t in types]


def _unpack(vec, types):
    """Split the vector ``vec`` into values of ``types``."""
    out, offset = [], 0
    for t, n in zip(types, _sizes(types)):
        part = vec if (offset == 0 and dims.equal(n, vec.shape[0])) else bind(
            "slice", vec, start=(offset,), step=(1,), shape=(n,))
        out.append(ops.reshape(part, t.shape))
        offset = dims.normalize(offset + n)
    return out


# --- carries of several dtypes: int and bool leaves ride in the float vector, bit for bit ------

_INT_OF = {"float64": "int64", "float32": "int32"}


def _carry_dtype(types, what):
    """The float dtype of a carry vector holding leaves of ``types``: the floats' dtype (one of
    them); ints and bools travel as that float's bits, so int64 leaves need float64."""
    floats = {t.dtype for t in types if t.is_float}
    if len(floats) > 1:
        raise TypeError(f"{what}: the float carries must share one dtype; got "
                        f"{[str(t) for t in types]}")
    dtype = floats.pop() if floats else "float64"
    if dtype == "float32" and any(t.dtype == "int64" for t in types):
        raise TypeError(f"{what}: an int64 carry cannot travel beside float32 state (its bits "
                        f"do not fit a float32); make it int32 (x.astype('int32')) or the state "
                        f"float64")
    return dtype


def _to_carry(v, dtype):
    """A carry leaf as ``dtype`` values: floats as they are, ints and bools by their bits."""
    if v.type.is_float:
        return v
    width = _INT_OF[dtype]
    if v.dtype != width:
        v = ops.convert(v, width)          # bool or int32 -> the width of the float: exact
    return bind("bitcast", v, dtype=dtype)


def _from_carry(v, t):
    """The leaf of type ``t`` back from its ``_to_carry`` form ``v``."""
    if t.is_float:
        return v
    v = bind("bitcast", v, dtype=_INT_OF[v.dtype])
    return v if v.dtype == t.dtype else ops.convert(v, t.dtype)


def _pack_carry(vars_, dtype):
    return _pack([_to_carry(v, dtype) for v in vars_])


def _unpack_carry(vec, types, dtype):
    as_floats = [TensorType(t.shape, dtype) for t in types]
    return [_from_carry(v, t) for v, t in zip(_unpack(vec, as_floats), types)]


def _block(x, row, rows, col, cols):
    """``x[row:row+rows, col:col+cols]`` of a 2-d value."""
    if (row, col) == (0, 0) and (rows, cols) == x.shape:
        return x
    return bind("slice", x, start=(row, col), step=(1, 1), shape=(rows, cols))


def _row(x, row, col, cols):
    return ops.reshape(_block(x, row, 1, col, cols), (cols,))


# --- the primitive -------------------------------------------------------------------------------

def _widths(body):
    P = body.graph.outputs[0].shape[0]
    Q = body.graph.outputs[1].shape[0] if len(body.graph.outputs) > 1 else 0
    return dims.normalize(P), dims.normalize(Q)


def _scan_type(c0, *rest, body, length, n_xs, reverse):
    P, Q = _widths(body)
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
    P, Q = _widths(body)
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
    P, Q = _widths(body)
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
    P, Q = _widths(body)
    T = length
    read0, last = (1, 0) if reverse else (0, T)
    # The adjoint of the carry rows the steps read: usually zero (only the final carry is
    # used, so g is a padding of the last row), and then the adjoint body does not take it.
    g_tape = None if _zero_block(g, read0, T, 0, P) else _block(g, read0, T, 0, P)
    adj, float_x, float_k = _adjoint_body(body.graph, n_xs, P, Q, with_gc=g_tape is not None)
    K = dims.normalize(sum(consts[j].type.size for j in float_k))
    tape = _block(out, read0, T, 0, P)
    a0 = _row(g, last, 0, P)
    if K:
        a0 = bind("concatenate", a0, ops.broadcast_to(ops.scalar_like(0, g), (K,)), axis=0)
    scanned = [tape, *xs] + ([_block(g, 0, T, P, Q)] if Q else []) + (
        [g_tape] if g_tape is not None else [])
    o2 = bind("scan", a0, *scanned, *consts, body=Body(adj), length=T, n_xs=len(scanned),
              reverse=not reverse)
    a_final = _row(o2, T if reverse else 0, 0, P + K)
    grads_k = _unpack(ops.reshape(_block(ops.reshape(a_final, (1, P + K)), 0, 1, P, K), (K,)),
                      [consts[j].type for j in float_k]) if K else []
    d_c0 = _row(ops.reshape(a_final, (1, P + K)), 0, 0, P) if K else a_final
    result = [d_c0] + [None] * (n_xs + len(consts))
    offset = P + K
    for j in float_x:
        n = dims.prod(xs[j].shape[1:])
        result[1 + j] = ops.reshape(_block(o2, 0, T, offset, n), xs[j].shape)
        offset += n
    for j, gk in zip(float_k, grads_k):
        result[1 + n_xs + j] = gk
    return tuple(result)


def _adjoint_body(graph, n_xs, P, Q, with_gc=True):
    """The adjoint scan's body ``(i, a[P+K], c, x..., gy?, gc?, consts...) -> (a', dx?)``: the
    body's vjp at the taped carry ``c`` with cotangents (carry adjoint, ``gy``), plus ``gc``
    (the tape row's own adjoint, left out when it is known to be zero); ``a`` carries the
    closed-over values' adjoints, summed."""
    i, c, xs, consts = graph.inputs[0], graph.inputs[1], graph.inputs[2:2 + n_xs], \
        graph.inputs[2 + n_xs:]
    float_x = [j for j, x in enumerate(xs) if x.type.is_float]
    float_k = [j for j, k in enumerate(consts) if k.type.is_float]
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
            parts.append(ops.add(a_k, _pack(grads[1 + len(float_x):])))
        outputs = [_pack(parts)]
        if float_x:
            outputs.append(_pack(grads[1:1 + len(float_x)]))
    adj = Graph([i2, a, c2, *x2, *gy, *gc, *k2], b2.nodes, outputs, name="adjoint_body")
    return optimize(adj), float_x, float_k


def _zero_block(x, row, rows, col, cols):
    """Whether ``x[row:row+rows, col:col+cols]`` is known to be zero while building: ``x`` is a
    zero padding (``pad_slice``) whose data lies outside that block, or a zero constant."""
    builder = current_builder()
    node = next((n for n in reversed(builder.nodes) if n.out is x), None) if builder else None
    if node is None:
        return False
    if node.prim == "const":
        return not np.any(node.attrs["value"].value)
    if node.prim != "pad_slice" or any(st != 1 for st in node.attrs["step"]):
        return False
    (r0, c0), (nr, nc) = node.attrs["start"], node.inputs[0].shape

    def before(end, begin):             # end <= begin, for dims that may be run-time sizes
        return bool(sp.sympify(begin - end).is_nonnegative)
    return (before(r0 + nr, row) or before(row + rows, r0)
            or before(c0 + nc, col) or before(col + cols, c0))


def _scan_jvp(t, out, c0, *rest, body, length, n_xs, reverse):
    """Forward mode: one scan over (carry, carry tangent) whose body is the body's jvp; the
    tangent of ``out`` is read from its tangent columns. (The primal loop runs again inside.)"""
    xs, consts = rest[:n_xs], rest[n_xs:]
    t_c0, t_xs, t_ks = t[0], t[1:1 + n_xs], t[1 + n_xs:]
    P, Q = _widths(body)
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
        c, tc = _unpack(c2, [g.inputs[1].type] * 2)
        outs = inline(jg, [i2, c, *x2, *k2, tc, *tx2, *tk2])
        n = len(g.outputs)
        outputs = [_pack([outs[0], outs[n]])] + ([_pack([outs[1], outs[n + 1]])] if Q else [])
    jbody = optimize(Graph([i2, c2, *x2, *tx2, *k2, *tk2], b.nodes, outputs, name="jvp_body"))
    tc0 = t_c0 if t_c0 is not None else ops.zeros_like(c0)
    o2 = bind("scan", _pack([c0, tc0]), *xs, *[t_xs[j] for j in sel_x], *consts,
              *[t_ks[j] for j in sel_k], body=Body(jbody), length=length,
              n_xs=n_xs + len(sel_x), reverse=reverse)
    rows = dims.normalize(length + 1)
    tangent = _block(o2, 0, rows, P, P)
    if Q:
        tangent = bind("concatenate", tangent, _block(o2, 0, rows, 2 * P + Q, Q), axis=1)
    return tangent


register(Primitive(
    name="scan", shape_rule=_scan_type, impl=_scan_impl, vjp=_scan_vjp, jvp=_scan_jvp,
    c_kernel=_scan_c,
    doc="scan[body, length, n_xs, reverse](c0, xs..., consts...): the body graph run length "
        "times over a packed carry; rows of (carry read, y written) per step, final carry last",
))


# --- what loops store ----------------------------------------------------------------------------

def memory_lines(graph):
    """One line per loop of ``graph`` saying what its rows hold and their size; the loops of
    a body (checkpointed segments, nested loops) follow indented: their rows live in the body's
    workspace, reused by every step."""
    names = graph.names()
    lines = []
    for n in graph.nodes:
        if n.prim != "scan":
            continue
        body = n.attrs["body"]
        P, Q = _widths(body)
        rows = n.out.shape[0]
        itemsize = np.dtype(n.out.dtype).itemsize
        nbytes = dims.normalize(rows * (P + Q) * itemsize)
        what = f"{P} carry" + (f" + {Q} per-step outputs" if Q else "")
        size = f"{nbytes:,} bytes" if dims.is_static(nbytes) else f"{nbytes} bytes"
        lines.append(f"{names[n.out]}: {n.attrs['length']} steps of {body.graph.name} "
                     f"({'backwards' if n.attrs['reverse'] else 'forwards'}); "
                     f"rows {rows} x ({what}) {n.out.dtype} = {size}")
        lines += ["  " + line for line in memory_lines(body.graph)]
    return lines


# --- the front end -------------------------------------------------------------------------------

def _trip_count(n, what):
    """A trip count or loop bound as a dimension: a Python int, or a run-time size (such as
    ``xs.shape[0]`` where the signature names that size)."""
    if isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_)):
        return int(n)
    if isinstance(n, sp.Expr) and n.is_integer and n.free_symbols:
        return dims.normalize(n)
    if isinstance(n, Tracer):
        v = n.irvar
        if v.ndim == 0 and v.dtype in ("int64", "int32") and tracing_input(v):
            return dims.value_of(v.name)
        raise TypeError(f"{what}: a traced trip count must be an int argument of the compiled "
                        f"function itself (such as n in f(x, n)); this one is a {v.type} "
                        f"computed inside it{where(user_location())}")
    raise TypeError(f"{what}: a trip count must be a Python int, a run-time size such as "
                    f"x.shape[0] (a dimension the signature names) or an int argument; got "
                    f"{type(n).__name__}{where(user_location())}")


def scan(f, init, xs=None, length=None, reverse=False, *, checkpoint=None):
    """``jax.lax.scan``: ``carry, y = f(carry, x)`` over ``x`` in ``xs`` (sliced along axis 0);
    returns ``(final carry, ys)`` with the ys stacked along a new leading axis.

    ``init``: a pytree of arrays (the carry, whose structure and types ``f`` must keep);
    ``xs``: None or a pytree of arrays of one leading length; ``length``: the trip count when
    ``xs`` is None (an int, a run-time size or an int argument). ``f`` may return ``None`` for
    y. ``reverse``: run from the last x to the first (``ys`` stay in ``xs``' order). Traced, the
    body is traced once and becomes one loop statement. Raises ShapeError for mismatched lengths
    or carry types, TracingError for a carry whose structure changes.

    ``checkpoint``: None (reverse mode stores every step's carry), an int K (it stores every
    K-th and recomputes the steps between from it) or ``"sqrt"`` (K = ceil(sqrt(length))): the
    tape shrinks from length to about length/K + K carries, for one more forward pass.
    """
    return _scan(lambda i, c, x: f(c, x), init, xs, length, "scan", checkpoint, bool(reverse))


def fori_loop(lower, upper, body, init, *, checkpoint=None):
    """``jax.lax.fori_loop``: ``val = body(i, val)`` for ``i`` in ``range(lower, upper)``.

    ``lower`` and ``upper`` are Python ints (run-time trip counts are not supported yet); ``init``
    an array or a flat tuple of arrays. Traced, the body is traced once into one loop statement.
    ``checkpoint``: as for ``scan``.
    """
    lower = _trip_count(lower, "fori_loop")
    upper = _trip_count(upper, "fori_loop")
    length = dims.at_least_zero(dims.normalize(upper - lower))
    if current_builder() is None:
        _segment_length(checkpoint, length, "fori_loop")   # the traced errors
        val = init
        for i in range(lower, upper):
            val = body(i, val)
        return val

    def step(i, c, x):
        return body(i + lower if lower != 0 else i, c), None
    carry, _ = _scan(step, init, None, length, "fori_loop", checkpoint)
    return carry


def _scan(f, init, xs, length, what, checkpoint=None, reverse=False):
    carries, carry_kind = tree_flatten(init)
    xs_l, xs_kind = tree_flatten(xs)
    if xs_l:
        leading = [np.shape(x)[0] if np.ndim(x) else None for x in xs_l]
        n = leading[0]
        if (n is None or any(m is None or not dims.equal(m, n) for m in leading)
                or (length is not None and not dims.equal(_trip_count(length, what), n))):
            raise ShapeError(f"{what}: xs have leading lengths {leading}, length={length}"
                             f"{where(user_location())}")
        length = n
    elif length is None:
        raise ValueError(f"{what}: give xs or length")
    length = dims.at_least_zero(_trip_count(length, what))
    if current_builder() is None:
        _segment_length(checkpoint, length, what)       # the same errors as when traced
        return _scan_python(f, init, xs_l, xs_kind, length, reverse)
    return _scan_traced(f, carries, carry_kind, xs_l, xs_kind, length, what, checkpoint,
                        reverse)


def _scan_python(f, carry, xs_l, xs_kind, length, reverse=False):
    ys = [None] * length
    for t in (range(length - 1, -1, -1) if reverse else range(length)):
        x = tree_unflatten(xs_kind, [x[t] for x in xs_l])
        carry, ys[t] = f(t, carry, x)
    if not ys:
        return carry, None
    leaves = [tree_leaves(y) for y in ys]
    structure = tree_structure(ys[0])
    return carry, tree_unflatten(structure, [np.stack([np.asarray(step[k]) for step in leaves])
                                             for k in range(len(leaves[0]))])


def _scan_traced(f, carries, carry_kind, xs_l, xs_kind, length, what, checkpoint, reverse):
    init = [snp.asarray(c).irvar for c in carries]
    if not init:
        raise ValueError(f"{what}: the carry must hold at least one array")
    dtype = _carry_dtype([v.type for v in init], what)
    xs_vars = [snp.asarray(x).irvar for x in xs_l]
    carry_types = [v.type for v in init]
    P = sum(_sizes(carry_types))

    i = Var(TensorType((), "int64"), name="i")
    c = Var(TensorType((P,), dtype), name="carry")
    x_in = [Var(TensorType(x.shape[1:], x.dtype), name=f"x{j}" if len(xs_vars) > 1 else "x")
            for j, x in enumerate(xs_vars)]
    builder = Builder()
    with building(builder):
        parts = [Tracer(v) for v in _unpack_carry(c, carry_types, dtype)]
        result = f(Tracer(i), tree_unflatten(carry_kind, parts),
                   tree_unflatten(xs_kind, [Tracer(v) for v in x_in]))
        if not (isinstance(result, (tuple, list)) and len(result) == 2):
            raise TracingError(f"{what}: the body must return (carry, y)")
        new, y = result
        new_l, new_kind = tree_flatten(new)
        if new_kind != carry_kind:
            raise TracingError(f"{what}: the body returned a carry structured as "
                               f"{new_kind} for one structured as "
                               f"{carry_kind}; a loop keeps its carry's structure"
                               f"{where(user_location())}")
        new_vars = []
        for k, (v, t) in enumerate(zip(new_l, carry_types)):
            v = snp.asarray(v).irvar
            if v.type.is_float and v.dtype != dtype:
                v = ops.convert(v, dtype)
            if v.type != t:
                raise ShapeError(f"{what}: the carry{keystr(leaf_paths(carry_kind)[k])} enters the "
                                 f"body as {t} and leaves as "
                                 f"{v.type}; a loop keeps its carry's types")
            new_vars.append(v)
        outputs = [_pack_carry(new_vars, dtype)]
        y_l, y_kind = tree_flatten(y)
        y_vars = [snp.asarray(v).irvar for v in y_l]
        if dtype == "float32" and any(v.dtype in ("int64", "float64") for v in y_vars):
            raise TypeError(f"{what}: a 64-bit per-step output cannot travel beside float32 "
                            f"state exactly; make it 32-bit (int32, float32) or the state "
                            f"float64")
        if y_vars:
            outputs.append(_pack([_to_carry(v if not v.type.is_float or v.dtype == dtype
                                            else ops.convert(v, dtype), dtype)
                                  for v in y_vars]))
    body = _close(Graph([i, c, *x_in], builder.nodes, outputs, name="body"))
    free = body.closed_over
    body = optimize(body)
    Q = sum(v.type.size for v in y_vars)
    carry, ys_all = _loop(body, _pack_carry(init, dtype), xs_vars, free, length, P, Q,
                          _segment_length(checkpoint, length, what), reverse)
    final = [Tracer(v) for v in _unpack_carry(carry, carry_types, dtype)]
    ys = None
    if y_vars:
        ys, offset = [], 0
        for v in y_vars:            # each in its own dtype again (a float one converted back)
            n = v.type.size
            y = _from_carry(ops.reshape(_block(ys_all, 0, length, offset, n),
                                        (length,) + v.shape), v.type)
            ys.append(Tracer(y if y.dtype == v.dtype else ops.convert(y, v.dtype)))
            offset += n
        ys = tree_unflatten(y_kind, ys)
    return tree_unflatten(carry_kind, final), ys


# --- checkpointing -------------------------------------------------------------------------------

def _segment_length(checkpoint, length, what):
    """The steps per segment K for ``checkpoint`` (None: no checkpointing)."""
    if checkpoint is None:
        return None
    if not dims.is_static(length):
        raise NotImplementedError(f"{what}: checkpoint= needs a trip count known when tracing; "
                                  f"this loop runs {length} times (a run-time size)")
    if checkpoint == "sqrt":
        K = math.isqrt(length - 1) + 1 if length > 1 else 1     # ceil(sqrt(length))
    elif isinstance(checkpoint, (int, np.integer)) and not isinstance(checkpoint, bool) \
            and checkpoint >= 1:
        K = int(checkpoint)
    else:
        raise ValueError(f"{what}: checkpoint must be None, a positive int (steps between "
                         f"stored carries) or 'sqrt'; got {checkpoint!r}")
    return K if K < length else None


def _loop(body, c0, xs, consts, length, P, Q, K, reverse=False):
    """The loop statements for ``body`` run ``length`` times from the packed carry ``c0`` (with
    ``reverse``, steps length-1 down to 0): returns (final carry [P], per-step outputs
    [length, Q] in step order, or None).

    Without checkpointing (K None) one ``scan``. With K, the steps are cut into segments of K:
    an outer scan over the segments whose body is an inner scan of K steps, and a plain scan
    of the ``length % K`` steps left (run last: after the segments, or with ``reverse`` before
    them in step order). The outer scan's tape holds one carry per segment; its adjoint
    recomputes a segment's K carries from the stored one (the inner scan's own tape, K x P
    numbers in the adjoint body's workspace) before running back through them.
    """
    def run(carry, xs_, body_, steps, *extra):
        out = bind("scan", carry, *xs_, *consts, *extra, body=Body(body_), length=steps,
                   n_xs=len(xs_), reverse=reverse)
        return out, _row(out, 0 if reverse else steps, 0, P)

    if K is None:
        out, carry = run(c0, xs, body, length)
        return carry, (_block(out, 0, length, P, Q) if Q else None)
    n, r = divmod(length, K)
    first = r if reverse else 0                 # the step the segments start at
    segment = _segment_body(body, len(xs), K, P, Q, first, reverse)
    xs_seg = [ops.reshape(_leading(x, first, n * K), (n, K) + x.shape[1:]) for x in xs]
    out, carry = run(c0, xs_seg, segment, n)
    ys = [ops.reshape(_block(out, 0, n, P, K * Q), (n * K, Q))] if Q else []
    if r:
        tail_start = 0 if reverse else n * K
        tail = _reindexed(body, len(xs), 0, tail_start) if tail_start else body
        out, carry = run(carry, [_leading(x, tail_start, r) for x in xs], tail, r,
                         *([ops.const(0, "int64")] if tail_start else []))
        if Q:
            ys.insert(0 if reverse else 1, _block(out, 0, r, P, Q))
    if not Q:
        return carry, None
    return carry, (ys[0] if len(ys) == 1 else bind("concatenate", *ys, axis=0))


def _leading(x, start, count):
    """``x[start:start+count]``."""
    if start == 0 and count == x.shape[0]:
        return x
    return bind("slice", x, start=(start,) + (0,) * (x.ndim - 1), step=(1,) * x.ndim,
                shape=(count,) + x.shape[1:])


def _reindexed(body, n_xs, stride, offset=0):
    """``body`` with one more input ``j`` (int64, last) that runs step ``t`` as step
    ``j * stride + offset + t``: ``(t, c, x..., consts..., j) -> body(that step, c, x...,
    consts...)``."""
    g = body
    t = Var(g.inputs[0].type, name="t")
    j = Var(TensorType((), "int64"), name="j")
    rest = [Var(v.type, name=v.name) for v in g.inputs[1:]]
    b = Builder()
    b.loc = current_builder().loc if current_builder() is not None else None
    with building(b):
        index = ops.add(ops.mul(j, ops.const(stride, "int64")), t)
        if offset:
            index = ops.add(index, ops.const(offset, "int64"))
        outs = inline(g, [index, *rest])
    return optimize(Graph([t, *rest, j], b.nodes, outs, name="body"))


def _segment_body(body, n_xs, K, P, Q, first=0, reverse=False):
    """The outer scan's body for checkpointing: ``(j, c[P], xs[K,...]..., consts...) ->
    (carry after the K steps of segment j, their y's [K*Q])``, an inner scan of ``body`` over
    steps ``first + j*K ...`` (backwards with ``reverse``)."""
    g = body
    j = Var(g.inputs[0].type, name="j")
    c = Var(g.inputs[1].type, name="carry")
    xs = [Var(TensorType((K,) + v.shape, v.dtype), name=v.name) for v in g.inputs[2:2 + n_xs]]
    consts = [Var(v.type, name=v.name) for v in g.inputs[2 + n_xs:]]
    inner = _reindexed(body, n_xs, K, first)
    b = Builder()
    b.loc = current_builder().loc if current_builder() is not None else None
    with building(b):
        out = bind("scan", c, *xs, *consts, j, body=Body(inner), length=K, n_xs=n_xs,
                   reverse=reverse)
        outputs = [_row(out, 0 if reverse else K, 0, P)]
        if Q:
            outputs.append(ops.reshape(_block(out, 0, K, P, Q), (K * Q,)))
    return optimize(Graph([j, c, *xs, *consts], b.nodes, outputs, name="segment"))


def _close(graph):
    """Make the values of the enclosing trace that the body reads explicit inputs of it; the
    outer vars are kept as ``graph.closed_over`` (in input order)."""
    defined = set(graph.inputs) | {n.out for n in graph.nodes}
    free = []
    for v in [v for n in graph.nodes for v in n.inputs] + graph.outputs:
        if v not in defined and v not in free:
            free.append(v)
    env = {v: Var(v.type, name=f"k{j}") for j, v in enumerate(free)}
    nodes = [Node(n.prim, tuple(env.get(v, v) for v in n.inputs), n.attrs, n.out, n.loc,
                  n.grad_of) for n in graph.nodes]
    out = Graph(graph.inputs + [env[v] for v in free], nodes,
                [env.get(v, v) for v in graph.outputs], name=graph.name)
    out.closed_over = free
    return out


__all__ = ["scan", "fori_loop", "Body"]
