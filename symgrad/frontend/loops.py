"""Structured loops: ``fori_loop`` and ``scan`` (JAX's semantics) that stay loops.

Called on plain arrays (outside a trace) they are Python loops. While tracing, the loop body is
traced once into a sub-graph and the loop becomes one ``scan`` statement holding that graph
(``Body``, hashed by the graph's ``structural_hash``), whatever the trip count. The ``scan``
primitive itself -- its packed operands, its rows, its derivative rules and its C -- is a record
like any other, in ``symgrad/core/primitives/scan.py``; this module is its front end.

The front end adds: carries, xs and ys as pytrees (int and bool leaves travel in the float
vector as its bits, ``bitcast``); trip counts that are run-time sizes or an int argument's value
(``dims.value_of``); and checkpointing (``_loop``: an outer scan over segments whose body is an
inner scan).
"""
from __future__ import annotations

import math

import numpy as np

from symgrad.core import dims
from symgrad.core.symbolic import is_symbolic, sympy as _sympy
from symgrad.core.autodiff import inline
from symgrad.errors import ShapeError, TracingError, where
from symgrad.core.ir import (Builder, Graph, Node, Var, building, current_builder, tracing_input,
                 user_location)
from symgrad.core.passes import optimize
from symgrad.core.primitives import REGISTRY, bind
from symgrad.core.primitives.scan import Body, block, pack, row, sizes, unpack
from symgrad.core.primitive import memory_lines  # noqa: F401  (what loops store; for inspect)
from symgrad.core import ops
from symgrad import numpy as snp
from symgrad.frontend.tracer import Tracer
from symgrad.core.types import TensorType
from symgrad.tree_util import (keystr, leaf_paths, tree_flatten, tree_leaves, tree_structure,
                               tree_unflatten)


# A while loop on a traced condition inside a loop body has a tape of a fixed size: its bound
# (``# symgrad: max_steps=N``), by default this many steps (docs/python_code.md says why).
MAX_WHILE_STEPS = 10_000


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
    return pack([_to_carry(v, dtype) for v in vars_])


def _unpack_carry(vec, types, dtype):
    as_floats = [TensorType(t.shape, dtype) for t in types]
    return [_from_carry(v, t) for v, t in zip(unpack(vec, as_floats), types)]


# --- the front end -------------------------------------------------------------------------------

def trip_count(n, what):
    """A trip count or loop bound as a dimension: a Python int, or a run-time size (such as
    ``xs.shape[0]`` where the signature names that size)."""
    if isinstance(n, (int, np.integer)) and not isinstance(n, (bool, np.bool_)):
        return int(n)
    if is_symbolic(n) and isinstance(n, _sympy().Expr) and n.is_integer and n.free_symbols:
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
    return indexed_scan(lambda i, c, x: f(c, x), init, xs, length, "scan", checkpoint,
                        bool(reverse))


def fori_loop(lower, upper, body, init, *, checkpoint=None):
    """``jax.lax.fori_loop``: ``val = body(i, val)`` for ``i`` in ``range(lower, upper)``.

    ``lower`` and ``upper`` are Python ints (run-time trip counts are not supported yet); ``init``
    an array or a flat tuple of arrays. Traced, the body is traced once into one loop statement.
    ``checkpoint``: as for ``scan``.
    """
    lower = trip_count(lower, "fori_loop")
    upper = trip_count(upper, "fori_loop")
    length = dims.at_least_zero(dims.normalize(upper - lower))
    if current_builder() is None:
        _segment_length(checkpoint, length, "fori_loop")   # the traced errors
        val = init
        for i in range(lower, upper):
            val = body(i, val)
        return val

    def step(i, c, x):
        return body(i + lower if lower != 0 else i, c), None
    carry, _ = indexed_scan(step, init, None, length, "fori_loop", checkpoint)
    return carry


def indexed_scan(f, init, xs, length, what, checkpoint=None, reverse=False, count=None):
    """``scan`` whose step also gets the step's index: ``f(i, carry, x) -> (carry, y)``, the
    loop front end shared by ``scan``, ``fori_loop``, converted Python loops and ``jacobian``'s
    rows (``what`` names the caller in errors). Returns ``(carry, ys)``.

    ``count``: ``(name, flag, limit)`` for a ``while`` loop whose steps are gated by the carry
    leaf ``flag`` (a bool: the step ran), traced, ``length`` being ``dims.count_of(name)``: a
    ``while_count`` statement counts the steps at run time (at most ``limit``, None: no bound)
    and the scan runs that many (rounded up to a multiple of ``checkpoint``'s K: the steps past
    the count are gated, so they leave the carry as it is)."""
    carries, carry_kind = tree_flatten(init)
    xs_l, xs_kind = tree_flatten(xs)
    if xs_l:
        leading = [np.shape(x)[0] if np.ndim(x) else None for x in xs_l]
        n = leading[0]
        if (n is None or any(m is None or not dims.equal(m, n) for m in leading)
                or (length is not None and not dims.equal(trip_count(length, what), n))):
            raise ShapeError(f"{what}: xs have leading lengths {leading}, length={length}"
                             f"{where(user_location())}")
        length = n
    elif length is None:
        raise ValueError(f"{what}: give xs or length")
    length = dims.at_least_zero(trip_count(length, what))
    if current_builder() is None:
        _segment_length(checkpoint, length, what)       # the same errors as when traced
        return _scan_python(f, init, xs_l, xs_kind, length, reverse)
    return _scan_traced(f, carries, carry_kind, xs_l, xs_kind, length, what, checkpoint,
                        reverse, count)


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


def _scan_traced(f, carries, carry_kind, xs_l, xs_kind, length, what, checkpoint, reverse,
                 count=None):
    init = [snp.asarray(c).irvar for c in carries]
    if not init:
        raise ValueError(f"{what}: the carry must hold at least one array")
    dtype = _carry_dtype([v.type for v in init], what)
    xs_vars = [snp.asarray(x).irvar for x in xs_l]
    carry_types = [v.type for v in init]
    P = sum(sizes(carry_types))

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
            outputs.append(pack([_to_carry(v if not v.type.is_float or v.dtype == dtype
                                            else ops.convert(v, dtype), dtype)
                                  for v in y_vars]))
    body = _close(Graph([i, c, *x_in], builder.nodes, outputs, name="body"))
    free = body.closed_over
    body = optimize(_bounded(body))
    Q = sum(v.type.size for v in y_vars)
    c0 = _pack_carry(init, dtype)
    if count is not None:
        c0 = _counted(body, c0, free, carry_types, dtype, *count)
    carry, ys_all = _loop(body, c0, xs_vars, free, length, P, Q,
                          _segment_length(checkpoint, length, what, count is not None), reverse)
    final = [Tracer(v) for v in _unpack_carry(carry, carry_types, dtype)]
    ys = None
    if y_vars:
        ys, offset = [], 0
        for v in y_vars:            # each in its own dtype again (a float one converted back)
            n = v.type.size
            y = _from_carry(ops.reshape(block(ys_all, 0, length, offset, n),
                                        (length,) + v.shape), v.type)
            ys.append(Tracer(y if y.dtype == v.dtype else ops.convert(y, v.dtype)))
            offset += n
        ys = tree_unflatten(y_kind, ys)
    return tree_unflatten(carry_kind, final), ys


# --- checkpointing -------------------------------------------------------------------------------

def _counted(body, c0, consts, carry_types, dtype, name, flag, limit):
    """``c0`` through the ``while_count`` statement that defines the loop's length: its step
    graph is the loop's gated body returning also the carry's flag leaf ``flag``."""
    g = body
    i = Var(g.inputs[0].type, name="i")
    c = Var(g.inputs[1].type, name="carry")
    ks = [Var(v.type, name=v.name) for v in g.inputs[2:]]
    b = Builder()
    b.loc = current_builder().loc
    with building(b):
        after = inline(g, [i, c, *ks])[0]
        go = _unpack_carry(after, carry_types, dtype)[flag]
    step = optimize(Graph([i, c, *ks], b.nodes, [go, after], name="while_step"))
    return bind("while_count", c0, *consts, step=Body(step), loop=name, limit=limit)


def _bounded(graph):
    """``graph`` (a loop body) with its counted while loops bounded: a count is a size of the
    function, not of one step, so a while loop traced at the top of a function that a loop
    body then holds (``jacobian``'s sweeps, ``hessian``) runs its bound, ``max_steps`` or
    ``MAX_WHILE_STEPS``, of gated steps; the steps past the count leave the carry as it is,
    and the loop's guard reports a loop still running after them."""
    counts = [n for n in graph.nodes if REGISTRY[n.prim].defines is not None]
    if not counts:
        return graph
    sp = _sympy()
    bound = {REGISTRY[n.prim].defines(n): n.attrs["limit"] or MAX_WHILE_STEPS for n in counts}

    def sub(v):
        if isinstance(v, tuple):
            return tuple(sub(x) for x in v)
        if is_symbolic(v):
            return dims.normalize(sp.sympify(v).subs(bound))
        return v
    env = {n.out: n.inputs[0] for n in counts}        # while_count's value is its c0
    vars_ = {}

    def var(v):
        v = env.get(v, v)
        if v not in vars_:
            vars_[v] = v if dims.static_shape(v.shape) else Var(
                TensorType(tuple(sub(d) for d in v.shape), v.dtype), name=v.name)
        return vars_[v]
    inputs = [var(v) for v in graph.inputs]
    nodes = [Node(n.prim, tuple(var(v) for v in n.inputs),
                  {k: sub(a) for k, a in n.attrs.items()}, var(n.out), n.loc, n.grad_of)
             for n in graph.nodes if n not in counts]
    out = Graph(inputs, nodes, [var(v) for v in graph.outputs], name=graph.name)
    out.closed_over = graph.closed_over
    return out


def _segment_length(checkpoint, length, what, padded=False):
    """The steps per segment K for ``checkpoint`` (None: no checkpointing). ``padded``: the
    steps past ``length`` leave the carry as it is (a counted while loop), so a run-time length
    may be rounded up to a multiple of K."""
    if checkpoint is None:
        return None
    if not dims.is_static(length) and padded:
        if checkpoint == "sqrt":
            raise NotImplementedError(
                f"{what}: checkpoint=sqrt needs the trip count when tracing, and this loop's "
                f"is counted at run time{where(user_location())}; give the steps between "
                f"stored carries instead, `# symgrad: checkpoint=K` (K about the square root "
                f"of the steps you expect)")
        if isinstance(checkpoint, (int, np.integer)) and not isinstance(checkpoint, bool) \
                and checkpoint >= 1:
            return int(checkpoint) if checkpoint > 1 else None
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
        return out, row(out, 0 if reverse else steps, 0, P)

    if K is None:
        out, carry = run(c0, xs, body, length)
        return carry, (block(out, 0, length, P, Q) if Q else None)
    if dims.is_static(length):
        n, r = divmod(length, K)
    else:       # a counted while loop: padded with gated steps, which change nothing
        n, r = dims.ceil_div(length, K), 0
    first = r if reverse else 0                 # the step the segments start at
    segment = _segment_body(body, len(xs), K, P, Q, first, reverse)
    xs_seg = [ops.reshape(_leading(x, first, n * K), (n, K) + x.shape[1:]) for x in xs]
    out, carry = run(c0, xs_seg, segment, n)
    ys = [ops.reshape(block(out, 0, n, P, K * Q), (n * K, Q))] if Q else []
    if r:
        tail_start = 0 if reverse else n * K
        tail = _reindexed(body, len(xs), 0, tail_start) if tail_start else body
        out, carry = run(carry, [_leading(x, tail_start, r) for x in xs], tail, r,
                         *([ops.const(0, "int64")] if tail_start else []))
        if Q:
            ys.insert(0 if reverse else 1, block(out, 0, r, P, Q))
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
        outputs = [row(out, 0 if reverse else K, 0, P)]
        if Q:
            outputs.append(ops.reshape(block(out, 0, K, P, Q), (K * Q,)))
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
