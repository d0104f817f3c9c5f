"""More of NumPy's elementwise functions as primitives: logarithms and exponentials in other
bases, inverse hyperbolics, two-argument functions (hypot, arctan2, logaddexp, copysign), the
remainders and rounding.

Each is written once as a sympy expression (see ``elementwise``): sympy gives the derivative,
its C99 printer the C, and the NumPy evaluation is NumPy's own function of the same name. Where
sympy has no function with C's or NumPy's exact semantics (``rint``, ``trunc``, ``fmod``,
``remainder``, ``floor_divide``, ``copysign``) a small sympy ``Function`` below states it: how it
prints as C and what its derivative is, so ``sympy.diff`` and ``to_ir`` handle it like any other;
these classes are made when sympy loads (``sympy_names``), as the table's text is parsed then.

Rounding and floor division are constant almost everywhere: their derivative is 0, so they pass
no gradient (the adjoint of their operand is zero, never an error). The remainders' derivatives
are those of ``x - q * y`` with the quotient ``q`` held fixed.

``impl`` must also run on complex128 for the complex step (``symgrad.check_grad``). NumPy's
functions that do not take complex numbers (``cbrt``, ``arctan2``, ``hypot``, ...) run through
``jet``: the value at the real parts, plus i times the imaginary parts times the derivative,
which is what the complex step (an imaginary step of 1e-20) sees of any analytic function.
"""
from __future__ import annotations

import functools

import numpy as np

from symgrad.core import batching
from symgrad.core.primitive import Primitive, register
from symgrad.core.primitives.elementwise import (_broadcast_type, _no_gradient, _no_tangent,
                                                 c_from_sympy, elementwise, sympy_names)


def jet(fn, derivs):
    """``fn``'s NumPy evaluation, extended to the complex step through its derivatives.

    ``derivs`` are NumPy functions of (*args, out), one per operand. On real operands this is
    ``fn``; on complex ones it returns fn(Re) + i * sum_k Im(arg_k) * d_k(Re), exact to first
    order in the imaginary parts (the complex step's are 1e-20: the rest is below rounding).
    """
    @functools.wraps(fn)
    def impl(*args):
        if not any(np.iscomplexobj(a) for a in args):
            return fn(*args)
        re = [np.real(a) for a in args]
        out = fn(*re)
        tangent = np.zeros(np.shape(out))
        with np.errstate(all="ignore"):
            for a, d in zip(args, derivs):
                im = np.imag(a)
                if np.any(im):
                    tangent = tangent + im * d(*re, out)
        return out + 1j * tangent
    return impl


@sympy_names
def _c_functions(sp):
    """The sympy functions of C's and NumPy's rounding and remainders, made when sympy loads."""
    from sympy.codegen.ast import float32, real

    def cfunction(name, c_name, nargs, derivative, *, doc):
        """A sympy Function printing as the C function ``c_name`` (``c_name``f for float).

        ``derivative(args, i)`` is its derivative by argument ``i`` (0-based), a sympy
        expression."""
        def fdiff(self, argindex=1):
            return derivative(self.args, argindex - 1)

        def ccode(self, printer):
            is_float = printer.type_aliases.get(real) == float32
            args = ", ".join(printer._print(a) for a in self.args)
            return f"{c_name}{'f' if is_float else ''}({args})"

        return type(name, (sp.Function,), {"nargs": nargs, "fdiff": fdiff, "_ccode": ccode,
                                           "__doc__": doc})

    zero = lambda args, i: sp.S.Zero      # noqa: E731  (rounding: constant almost everywhere)
    f = {}
    f["Floor"] = cfunction("Floor", "floor", 1, zero, doc="floor(x), with derivative 0")
    f["Ceil"] = cfunction("Ceil", "ceil", 1, zero, doc="ceil(x), with derivative 0")
    f["Trunc"] = cfunction("Trunc", "trunc", 1, zero, doc="trunc(x): rounds toward 0")
    # rint rounds half to even in C's default rounding mode, as NumPy's rint, round and around.
    f["Rint"] = cfunction("Rint", "rint", 1, zero, doc="rint(x): rounds to nearest, half to even")
    f["Copysign"] = cfunction(
        "Copysign", "copysign", 2,
        lambda a, i: f["Copysign"](1, a[0]) * f["Copysign"](1, a[1]) if i == 0 else sp.S.Zero,
        doc="copysign(x, y): |x| with the sign of y")
    # C's fmod: the sign follows the dividend x; x - trunc(x/y) * y, computed exactly.
    f["Fmod"] = cfunction("Fmod", "fmod", 2,
                          lambda a, i: sp.S.One if i == 0 else -f["Trunc"](a[0] / a[1]),
                          doc="fmod(x, y): the remainder whose sign follows x")
    # NumPy's remainder (the % operator): the sign follows the divisor y; and floor_divide, the
    # quotient that goes with it. Both are functions of symgrad's C runtime (templates/math.c.j2)
    # written as NumPy writes them (npy_divmod), so every value, -0.0 and inf included, is
    # NumPy's.
    f["Remainder"] = cfunction(
        "Remainder", "symgrad_math_remainder", 2,
        lambda a, i: sp.S.One if i == 0 else -f["FloorDivide"](a[0], a[1]),
        doc="remainder(x, y): the remainder whose sign follows y")
    f["FloorDivide"] = cfunction("FloorDivide", "symgrad_math_floor_divide", 2, zero,
                                 doc="floor_divide(x, y): floor(x / y) as NumPy computes it")
    return f


# --- logarithms and exponentials in other bases, roots ------------------------------------------
elementwise("log2", "log2(x)", impl=np.log2, sympy_func="log2")
elementwise("log10", "log10(x)", impl=np.log10, sympy_func="log10")
elementwise("exp2", "exp2(x)", deriv=["log(2)*out"], impl=np.exp2, sympy_func="exp2")
# cbrt'(x) = 1 / (3 cbrt(x)^2): from the output, no second cube root. NumPy's cbrt is real only.
elementwise("cbrt", "Cbrt(x)", deriv=["1/(3*out**2)"],
            impl=jet(np.cbrt, [lambda x, out: 1 / (3 * out ** 2)]), sympy_func="Cbrt")

# --- inverse hyperbolic functions ----------------------------------------------------------------
elementwise("arcsinh", "asinh(x)", impl=np.arcsinh, sympy_func="asinh")
elementwise("arccosh", "acosh(x)", impl=np.arccosh, sympy_func="acosh")
elementwise("arctanh", "atanh(x)", impl=np.arctanh, sympy_func="atanh")

# --- functions of two arguments ------------------------------------------------------------------
# hypot'(x) = x / hypot: from the output, no second square root.
elementwise("hypot", "hypot(x, y)", deriv=["x/out", "y/out"],
            impl=jet(np.hypot, [lambda x, y, out: x / out, lambda x, y, out: y / out]),
            sympy_func="hypot")
elementwise("arctan2", "atan2(x, y)", sympy_func="atan2",
            impl=jet(np.arctan2, [lambda x, y, out: y / (x * x + y * y),
                                  lambda x, y, out: -x / (x * x + y * y)]))

# logaddexp(x, y) = log(e^x + e^y), defined (and differentiated) as that; its C is the form that
# cannot overflow: max + log1p(e^-|x - y|), and x + log 2 on a tie (so -inf, -inf gives -inf).
# The derivatives e^(x - out) <= 1 cannot overflow either.
elementwise(
    "logaddexp", "log(exp(x) + exp(y))", deriv=["exp(x - out)", "exp(y - out)"],
    c="Piecewise((x + log(2), Eq(x, y)), (Max(x, y) + log1p(exp(-Abs(x - y))), True))",
    impl=jet(np.logaddexp, [lambda x, y, out: np.exp(x - out), lambda x, y, out: np.exp(y - out)]))
elementwise(
    "logaddexp2", "log(2**x + 2**y)/log(2)", deriv=["2**(x - out)", "2**(y - out)"],
    c="Piecewise((x + 1, Eq(x, y)), (Max(x, y) + log1p(exp2(-Abs(x - y)))/log(2), True))",
    impl=jet(np.logaddexp2, [lambda x, y, out: np.exp2(x - out),
                             lambda x, y, out: np.exp2(y - out)]))

elementwise("copysign", "Copysign(x, y)", sympy_func="Copysign",
            impl=jet(np.copysign, [lambda x, y, out: np.copysign(1, x) * np.copysign(1, y),
                                   lambda x, y, out: 0]))

# sinc(x) = sin(pi x) / (pi x), 1 at 0 (NumPy's normalised sinc); sympy differentiates the pieces.
# np.sinc is analytic in complex numbers too.
elementwise("sinc", "Piecewise((1, Eq(x, 0)), (sin(pi*x)/(pi*x), True))", impl=np.sinc)

# --- remainders and rounding ---------------------------------------------------------------------
# Integer operands are allowed (index arithmetic: i % n, i // n); the runtime has int versions.
_INT_SUFFIX = {"int64_t": "_i64", "int32_t": "_i32"}


def _int_aware_c(c_name, text, operands, ctype):
    """C for the integer ctypes from symgrad's runtime (``c_name``_i64, ...), else sympy's."""
    if ctype in _INT_SUFFIX:
        return f"{c_name}{_INT_SUFFIX[ctype]}({', '.join(operands)})"
    return c_from_sympy(text, operands, ctype)


def _int_or_float(fn, func, impl, **kwargs):
    c_name, text = f"symgrad_math_{fn}", f"{func}(x, y)"
    elementwise(fn, text, impl=impl, float_only=False, sympy_func=func,
                c=functools.partial(_int_aware_c, c_name, text), **kwargs)


_int_or_float("fmod", "Fmod",
              jet(np.fmod, [lambda x, y, out: 1, lambda x, y, out: -np.trunc(x / y)]))
_int_or_float("remainder", "Remainder",
              jet(np.remainder, [lambda x, y, out: 1, lambda x, y, out: -np.floor_divide(x, y)]))
_int_or_float("floor_divide", "FloorDivide", jet(np.floor_divide, []))

for _name, _func, _np_fn in (("floor", "Floor", np.floor), ("ceil", "Ceil", np.ceil),
                             ("trunc", "Trunc", np.trunc), ("rint", "Rint", np.rint)):
    elementwise(_name, f"{_func}(x)", sympy_func=_func, impl=jet(_np_fn, []),
                doc=f"{_name}(x); constant almost everywhere, so it passes no gradient")


# --- signbit: a predicate, bool-valued, no gradient ----------------------------------------------

def _signbit_type(x):
    return _broadcast_type("signbit", x, out_dtype="bool", float_only=True)


register(Primitive(
    name="signbit", elementwise=True, shape_rule=_signbit_type,
    impl=lambda x: np.signbit(np.real(x)),
    vjp=_no_gradient, jvp=_no_tangent, batch=functools.partial(batching.elementwise, "signbit"),
    c_expr=lambda operands, ctype: f"(signbit({operands[0]}) != 0)",
    doc="signbit(x): whether x's sign bit is set (-0.0 and -nan included); no gradient",
))
