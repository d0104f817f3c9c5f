"""Complex numbers: the parts of a complex value, its conjugate, and a complex value from parts.

Everything else complex is an existing primitive on complex operands (add, mul, exp, log, sqrt,
sum, matmul, ...: those ``elementwise(..., complex_ok=True)`` and the structural ones); ``abs`` and
``angle`` of a complex value are composites (``hypot(real z, imag z)``, ``arctan2(imag z, real
z)``: symgrad.numpy).

Derivatives follow JAX's convention (docs/complex.md). A cotangent ``a`` pairs with a tangent
``t`` as ``Re(a * t)``, so the adjoint of a holomorphic f is ``g * f'(z)`` (no conjugate: the
sympy rules serve complex operands unchanged), and for real-valued f of z = x + iy the gradient
is ``df/dx - i df/dy``. The adjoints here follow from that pairing:

    real(z):        Re(a t) = g Re(t)         ->  a = g
    imag(z):        Re(a t) = g Im(t)         ->  a = -i g
    conj(z):        Re(a t) = Re(g conj(t))   ->  a = conj(g)
    complex(x, y):  Re(g (tx + i ty))         ->  ax = Re(g), ay = -Im(g)

A real value promoted to complex (``convert``) sends back the real part of its adjoint.

C: <complex.h> (creal, cimag, conj and their float versions) and ``symgrad_cmplx`` (a complex
value from its parts, templates/complex.c.j2). The interpreter's ``impl`` is NumPy's.
"""
from __future__ import annotations

import functools

import numpy as np

from symgrad.errors import DTypeError, ShapeError
from symgrad.core import batching, ops
from symgrad.core.types import COMPLEX_DTYPES, COMPLEX_OF, REAL_PART, TensorType, broadcast_shapes
from symgrad.core.primitive import Primitive, bind, register


def _part_type(name, z):
    if z.dtype not in COMPLEX_DTYPES:
        raise DTypeError(f"{name} takes a complex operand, got {z.dtype}")
    return TensorType(z.shape, REAL_PART[z.dtype])


def _conj_type(z):
    if z.dtype not in COMPLEX_DTYPES:
        raise DTypeError(f"conj takes a complex operand, got {z.dtype}")
    return z


def _complex_type(x, y):
    if x.dtype != y.dtype or x.dtype not in ("float32", "float64"):
        raise DTypeError(f"complex takes two real operands of one dtype (float32 or float64), "
                         f"got {x.dtype} and {y.dtype}")
    try:
        shape = broadcast_shapes(x.shape, y.shape)
    except ValueError:
        raise ShapeError(f"shapes {x.shape} and {y.shape} do not broadcast together") from None
    return TensorType(shape, COMPLEX_OF[x.dtype])


def _float_suffix(ctype):
    """libm's suffix for a (real or complex) C type: "f" for float, "" for double."""
    return "f" if ctype.startswith("float") else ""


def complex_from_parts(x, y):
    """The complex value x + iy of two real values of one dtype (IR)."""
    return bind("complex", x, y)


def _real_vjp(g, out, z):
    return (complex_from_parts(g, ops.zeros_like(g)),)


def _imag_vjp(g, out, z):
    return (complex_from_parts(ops.zeros_like(g), ops.neg(g)),)


def _complex_vjp(g, out, x, y):
    gr, gi = bind("real", g), bind("imag", g)
    return (ops.sum_to_shape(gr, x.shape), ops.sum_to_shape(ops.neg(gi), y.shape))


def _complex_jvp(t, out, x, y):
    tx, ty = t
    if tx is None and ty is None:
        return None
    zero = ops.scalar_like(0, x)
    tx = zero if tx is None else tx
    ty = zero if ty is None else ty
    return ops.broadcast_to(complex_from_parts(tx, ty), out.shape)


register(Primitive(
    name="real", elementwise=True, batch=functools.partial(batching.elementwise, "real"), shape_rule=lambda z: _part_type("real", z),
    impl=lambda z: np.real(z).copy(),
    vjp=_real_vjp,
    jvp=lambda t, out, z: None if t[0] is None else bind("real", t[0]),
    c_expr=lambda operands, ctype: f"creal{_float_suffix(ctype)}({operands[0]})",
    doc="real(z): the real part of a complex z; adjoint g",
))

register(Primitive(
    name="imag", elementwise=True, batch=functools.partial(batching.elementwise, "imag"), shape_rule=lambda z: _part_type("imag", z),
    impl=lambda z: np.imag(z).copy(),
    vjp=_imag_vjp,
    jvp=lambda t, out, z: None if t[0] is None else bind("imag", t[0]),
    c_expr=lambda operands, ctype: f"cimag{_float_suffix(ctype)}({operands[0]})",
    doc="imag(z): the imaginary part of a complex z; adjoint -i g",
))

register(Primitive(
    name="conj", elementwise=True, batch=functools.partial(batching.elementwise, "conj"), shape_rule=_conj_type, involution=True,
    impl=np.conj,
    vjp=lambda g, out, z: (bind("conj", g),),
    jvp=lambda t, out, z: None if t[0] is None else bind("conj", t[0]),
    c_expr=lambda operands, ctype: f"conj{_float_suffix(ctype)}({operands[0]})",
    doc="conj(z): the complex conjugate; adjoint conj(g)",
))

def _complex_impl(x, y):
    # Part by part: x + 1j * y would make the real part NaN where y is infinite (inf * 0).
    out = np.empty(np.broadcast_shapes(np.shape(x), np.shape(y)),
                   np.complex64 if np.asarray(x).dtype == np.float32 else np.complex128)
    out.real, out.imag = x, y
    return out


register(Primitive(
    name="complex", elementwise=True, batch=functools.partial(batching.elementwise, "complex"), shape_rule=_complex_type,
    impl=_complex_impl,
    vjp=_complex_vjp,
    jvp=_complex_jvp,
    c_expr=lambda operands, ctype: f"symgrad_cmplx{_float_suffix(ctype)}({operands[0]}, "
                                   f"{operands[1]})",
    doc="complex(x, y) = x + iy from real parts; adjoints Re(g) and -Im(g)",
))
