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
  initial value and update), so it can be folded into the loop that computes its operand.

An elementwise primitive written as a sympy expression also keeps that expression (``expr``, in
the symbols x, y) and its derivative per operand (``derivs``, which may mention ``out``), so
tests can check stated derivatives against ``sympy.diff``.

``tests/test_registry.py`` fails if a registered primitive lacks one of these.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from symgrad.errors import DTypeError, ShapeError, where
from symgrad.core.ir import Var, current_builder, user_location

REGISTRY: dict[str, "Primitive"] = {}


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
    expr: object = None                 # sympy-defined elementwise: the expression of x (and y)
    derivs: tuple | None = None         # ... and its derivative per operand, in x, y and out
    jvp: Callable | None = None         # tangent rule; required (keyword so vjp stays 4th)
    # A reduction: (init(ctype) -> C value, update(acc, value, ctype) -> C lines), so the C
    # backend can fold it into the elementwise loop that computes its operand.
    c_reduce: tuple | None = None

    def __repr__(self):
        return f"<primitive {self.name}>"


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
