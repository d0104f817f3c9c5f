"""The primitive registry: one ``Primitive`` record per operation, and ``bind`` to emit it.

A primitive gathers everything symgrad knows about one operation in one place:

- ``shape_rule(*in_types, **attrs) -> TensorType``: the output type, or a ``ShapeError``/``DTypeError``;
- ``impl(*arrays, **attrs) -> ndarray``: its NumPy evaluation (float32, float64 and complex128, the
  last for the complex step, so comparisons look at real parts);
- ``vjp(g, out, *inputs, **attrs) -> tuple``: its derivative rule, written in IR operations (it
  binds primitives, it never computes numbers), one adjoint per input or ``None`` for an input
  that has no gradient (integer data, conditions);
- ``jvp(t, out, *inputs, **attrs) -> Var | None``: its tangent rule (forward mode), also in IR
  operations: ``t`` holds one tangent per input, ``None`` where the input's tangent is zero
  (inactive values, integer data); it returns the tangent of ``out``, or ``None`` when that is
  zero. Linear primitives apply themselves to the tangents;
- its C rendering: ``c_expr(operands, ctype) -> str`` for an elementwise primitive (fused into loops
  by the C backend), or ``c_kernel(k) -> list[str]`` for a structured one (``k`` is the backend's
  kernel context: names, shapes and loop helpers); a reduction also gives ``c_reduce`` (its
  initial value and update), so it can be folded into the loop that computes its operand; an
  elementwise primitive whose loop form is branch-free may give ``c_scalar_expr`` (same
  arguments) for statements outside loops;
- ``batch(size, bdims, *inputs, **attrs) -> (out, out_dim)``: its batching rule (``vmap``), in IR
  operations too; see ``symgrad.core.batching``.

An elementwise primitive written as a sympy expression also keeps that expression (``expr``, in
the symbols x, y) and its derivative per operand (``derivs``, which may mention ``out``), so
tests can check stated derivatives against ``sympy.diff``. The record holds them as sympy text
(``sympy_math``) and parses them on first access: importing the registry needs no sympy.

``tests/test_registry.py`` fails if a registered primitive lacks one of these.

Everything else a pass, a renderer, a printer or a tool needs to know about a primitive is a
field of its record too, with a default that fits most primitives, so no module outside
``primitives/`` tests a primitive by its name (``tests/test_registry.py`` checks that as well):

- ``literal``: the result is the constant ``attrs["value"]`` (a ``Literal``); printers and the C
  backend write a 0-d one as a number, and constant folding produces such statements;
- ``fold``: whether constant folding may evaluate the statement when its operands are constants
  (a bool, or ``(node) -> bool``);
- ``identities``, ``involution``, ``simplify``: the algebraic identities ``passes.simplify``
  may use (see the fields below);
- ``gradient_barrier``: the identity on values, there only to stop derivatives (removed once
  differentiation is done);
- ``view``: ``(node) -> View | None``, whether the result can be read from the first operand's
  memory with no copy, and how (see ``View``);
- ``cost``: the FLOPs estimate ``symgrad inspect`` shows (see ``Primitive.flops``);
- ``infix``, ``accumulate``: how a statement prints as an expression (``a + b``, ``b_x += ...``);
- ``index_bounds``: which operands are integer indices, and the size of the axis each indexes
  (the native backend checks them against the caller's arrays before running C);
  ``same_elements``: every element of the result is one of the first operand's, unchanged for
  integer data, and every one of those appears (a reshape, a broadcast): a range check of index
  data may look through the statement to the caller's argument;
- ``memory``: what a statement keeps beyond its result (a loop's tape), for ``inspect``;
- ``batch``: the batching rule of ``vmap`` (see above; ``tests/test_vmap.py`` requires one).
- ``defines``: the run-time size a statement binds when it runs (``while_count``: a while loop's
  trip count); the interpreter binds it then, the C backend allocates what it sizes after it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from symgrad.errors import DTypeError, ShapeError, where
from symgrad.core.ir import REGISTRY, Var, current_builder, user_location

# The kinds of ``View``: how a result can share its operand's memory.
REINTERPRET = "reinterpret"   # the operand's buffer read with the result's shape (row-major)
WINDOW = "window"             # one contiguous run of the operand's buffer, at ``View.offset``
BROADCAST = "broadcast"       # the operand read in place by elementwise readers, broadcast from
                              # ``View.shape`` (the operand's shape with 1 on the new axes)
PADDING = "padding"           # the operand read in place by elementwise readers, placed at
                              # ``View.start`` of a zero result (0 outside it)


@dataclass(frozen=True)
class View:
    """How a statement's result can be read from its first operand's memory instead of being
    computed into a buffer of its own; the C backend decides whether it does so (a view it
    cannot keep, such as a graph output, is computed by the kernel as usual)."""
    kind: str                 # REINTERPRET, WINDOW, BROADCAST or PADDING
    offset: object = 0        # WINDOW: the element offset of the run (a dimension)
    shape: tuple = ()         # BROADCAST: the operand's shape with the result's rank
    start: tuple = ()         # PADDING: the result index of the operand's first element


@dataclass(frozen=True)
class Primitive:
    name: str
    shape_rule: Callable
    impl: Callable
    vjp: Callable
    elementwise: bool = False
    c_expr: Callable | None = None      # elementwise: operands (C expressions) -> C expression
    c_kernel: Callable | None = None    # structured: kernel context -> lines of C
    doc: str = ""
    # sympy-defined elementwise: its math as text (``elementwise.SympyMath``), parsed on first use
    sympy_math: object = None
    jvp: Callable | None = None         # tangent rule; required (keyword so vjp stays 4th)
    # A reduction: (init(ctype) -> C value, update(acc, value, ctype) -> C lines), so the C
    # backend can fold it into the elementwise loop that computes its operand.
    c_reduce: tuple | None = None
    # elementwise: the form for a scalar statement (outside any loop), where it differs from
    # c_expr's: a branch on a predictable test costs less there than a loop's branch-free form
    # (chain_mul, select: W6's 200 unrolled steps took 5.45 us branch-free, 5.10 with branches).
    c_scalar_expr: Callable | None = None

    # -- what passes, renderers, printers and tools read (see the module docstring) --------------
    literal: bool = False
    fold: object = True                 # bool, or (node) -> bool
    # ((operand, value), ...): where operand k is a scalar constant equal to value, the result
    # is the other operand (x + 0, 1 * x). Only identities true for NaN and inf belong here.
    identities: tuple = ()
    involution: bool = False            # f(f(x)) = x
    # (node, inputs, producer) -> Var | None: another identity, for structural rewrites
    # (``inputs``: the node's operands after earlier rewrites; ``producer(v)``: the statement
    # defining v, or None). It must return an existing var of the node's type, or None.
    simplify: Callable | None = None
    gradient_barrier: bool = False
    view: Callable | None = None        # (node) -> View | None
    cost: object = None                 # FLOPs: an int, (node) -> int, or None (see flops)
    # A format string over the operands' texts ("{0} + {1}"), or (operands, **attrs) -> str;
    # None: the statement prints in call form, ``prim[attrs](operands)``.
    infix: object = None
    accumulate: str | None = None       # "+=": a derivative rule's sum prints as accumulation
    # The C kernel can add its result into its output's contents (KernelContext.accumulate), so
    # a sum of it and an earlier term needs no add of its own (backends/c/accumulate.py).
    c_adds_into: bool = False
    index_bounds: Callable | None = None   # (node) -> ((operand, axis, size), ...)
    same_elements: bool = False
    memory: Callable | None = None      # (node, name) -> lines
    batch: Callable | None = None       # vmap's rule (see ``symgrad.core.batching``)
    # (node) -> the run-time size (a ``dims.count_of`` symbol) the statement defines when it
    # runs (a while loop's trip count); its impl then returns ``(value, the size's value)`` and
    # its C kernel assigns the size's C name. Statements after it may use the size in shapes.
    # The size is ``dims.count_of(attrs["loop"])``: inlining renames a clash through ``loop``.
    defines: Callable | None = None

    def __repr__(self):
        return f"<primitive {self.name}>"

    @property
    def expr(self):
        """A sympy-defined elementwise primitive's expression of x (and y), else None (sympy is
        imported on the first access)."""
        return None if self.sympy_math is None else self.sympy_math.expr

    @property
    def derivs(self):
        """... and its derivative per operand, in x, y and out (None for other primitives)."""
        return None if self.sympy_math is None else self.sympy_math.derivs

    def foldable(self, node):
        """Whether constant folding may evaluate ``node`` (its operands being constants)."""
        return self.fold(node) if callable(self.fold) else bool(self.fold)

    def view_of(self, node):
        """The ``View`` through which ``node``'s result can be read, or None."""
        return self.view(node) if self.view is not None else None

    def flops(self, node):
        """Floating-point operations of ``node``, an estimate with the usual conventions: the
        record's ``cost`` where it states one (0 for data movement, 2*M*N*K for a product),
        else one per output element of an elementwise primitive and one per input element of
        any other (a reduction)."""
        if self.cost is not None:
            return self.cost(node) if callable(self.cost) else self.cost
        if self.elementwise:
            return node.out.type.size
        sizes = [v.type.size for v in node.inputs]
        if all(isinstance(n, int) for n in sizes):
            return max(sizes, default=0)
        from symgrad.core.symbolic import sympy     # a run-time size (a while loop's count)
        return sympy().Max(*sizes)

    def format_infix(self, operands, attrs):
        """``node`` as an expression of its operands' texts (``a + b``), or None when the
        primitive has no infix form."""
        if self.infix is None:
            return None
        if callable(self.infix):
            return self.infix(operands, **attrs)
        return self.infix.format(*operands)


def register(prim):
    if prim.name in REGISTRY:
        raise ValueError(f"primitive {prim.name!r} is registered twice")
    if (prim.c_expr is None) == (prim.c_kernel is None):
        raise ValueError(f"primitive {prim.name!r} needs exactly one of c_expr and c_kernel")
    if not callable(prim.jvp):
        raise ValueError(f"primitive {prim.name!r} needs a jvp (tangent) rule")
    REGISTRY[prim.name] = prim
    return prim


def bind(name, *inputs, **attrs):
    """Emit ``name[attrs](*inputs)`` into the graph being built and return the new ``Var``.

    Raises ShapeError / DTypeError naming the primitive, the operand types and the user's line.
    """
    builder = current_builder()
    if builder is None:
        raise RuntimeError(f"bind({name!r}) outside of tracing; this is a symgrad bug")
    prim = REGISTRY[name]
    for i, v in enumerate(inputs):
        if not isinstance(v, Var):
            raise TypeError(f"{name}: operand {i} is {type(v).__name__}, not a traced value; "
                            f"this is a symgrad bug")
    try:
        out_type = prim.shape_rule(*[v.type for v in inputs], **attrs)
    except (ShapeError, DTypeError) as e:
        loc = builder.loc or user_location()
        operands = ", ".join(str(v.type) for v in inputs)
        raise type(e)(f"{name}({operands}): {e}{where(loc)}") from None
    return builder.add(name, inputs, attrs, out_type)


def memory_lines(graph):
    """What the statements of ``graph`` keep beyond their results (a loop's tape), one line
    each, from their records' ``memory`` rules (which indent the lines of a loop body's own
    statements under it)."""
    names = graph.names()
    lines = []
    for n in graph.nodes:
        rule = REGISTRY[n.prim].memory
        if rule is not None:
            lines += rule(n, names[n.out])
    return lines
