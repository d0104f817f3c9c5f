"""``symgrad.numpy``: NumPy's names and semantics, traced when given traced values.

Every function here computes with NumPy on plain arrays, so an undecorated function still runs as
ordinary NumPy code. When an argument is a ``Tracer`` (inside a function being compiled), the
call is recorded as IR instead: broadcasting, ``axis``/``keepdims`` and dtype promotion follow
NumPy (Python scalars adopt the dtype of the array they meet, as in NumPy 2).
"""
from __future__ import annotations

import builtins
import functools
import math

import numpy as _np

# errors.where formats a source location; snp.where (below) takes its name.
from symgrad.core.symbolic import is_symbolic as _is_symbolic, sympy as _sympy

from symgrad.core import dims as _dims
from symgrad.errors import ShapeError, where as _at
from symgrad.core.ir import current_builder, user_location
from symgrad.core.primitives import bind
from symgrad.core import ops
from symgrad.frontend.tracer import Tracer, implements, unsupported
from symgrad.core.types import COMPLEX_DTYPES, FLOAT_DTYPES, canonical_dtype
from symgrad.numpy import _inplace
from symgrad.numpy._common import (no_out as _no_out, dtype_of as _dtype_of, is_weak as _is_weak, lift as _lift,
                                    traced as _traced, wrap as _wrap)

pi, e, inf, nan, newaxis = _np.pi, _np.e, _np.inf, _np.nan, None
float32, float64, int32, int64, bool_ = _np.float32, _np.float64, _np.int32, _np.int64, _np.bool_
complex64, complex128 = _np.complex64, _np.complex128
ndarray = _np.ndarray


# --- lifting values into the graph ------------------------------------------------------------

def asarray(x, dtype=None):
    """A Tracer for x (a constant if x is a plain value); NumPy's asarray outside tracing."""
    if isinstance(x, Tracer):
        return x if dtype is None else astype(x, dtype)
    if current_builder() is None:
        return _np.asarray(x, dtype=dtype)
    if isinstance(x, (list, tuple)) and _traced(*x):
        return stack(x)
    arr = _np.asarray(x)
    arr = arr.astype(canonical_dtype(dtype if dtype is not None else arr.dtype))
    return Tracer(ops.const(arr, arr.dtype.name))


array = asarray



# --- elementwise ------------------------------------------------------------------------------

def _elementwise(prim, np_fn, need_float, *args):
    if not _traced(*args):
        return np_fn(*args)
    return _wrap(bind(prim, *_lift(args, need_float)))


def _ufunc(prim, np_fn, *, need_float):
    """NumPy's ufunc ``np_fn`` (its name and docstring), recording the elementwise primitive
    ``prim`` when an operand is traced; ``need_float``: integer operands become float64."""
    return functools.update_wrapper(functools.partial(_elementwise, prim, np_fn, need_float),
                                    np_fn)


def _like(np_fn, impl, *args):
    """``impl(*args, ...)`` under the name and docstring of NumPy's ``np_fn``."""
    return functools.update_wrapper(functools.partial(impl, *args), np_fn)


# One line a function, so each name is a plain definition that readers and pyflakes can find.
exp = _ufunc("exp", _np.exp, need_float=True)
expm1 = _ufunc("expm1", _np.expm1, need_float=True)
log = _ufunc("log", _np.log, need_float=True)
log1p = _ufunc("log1p", _np.log1p, need_float=True)
sqrt = _ufunc("sqrt", _np.sqrt, need_float=True)
sin = _ufunc("sin", _np.sin, need_float=True)
cos = _ufunc("cos", _np.cos, need_float=True)
tan = _ufunc("tan", _np.tan, need_float=True)
arcsin = _ufunc("arcsin", _np.arcsin, need_float=True)
arccos = _ufunc("arccos", _np.arccos, need_float=True)
arctan = _ufunc("arctan", _np.arctan, need_float=True)
sinh = _ufunc("sinh", _np.sinh, need_float=True)
cosh = _ufunc("cosh", _np.cosh, need_float=True)
tanh = _ufunc("tanh", _np.tanh, need_float=True)

add = _ufunc("add", _np.add, need_float=False)
subtract = _ufunc("sub", _np.subtract, need_float=False)
multiply = _ufunc("mul", _np.multiply, need_float=False)
negative = _ufunc("neg", _np.negative, need_float=False)
square = _ufunc("square", _np.square, need_float=False)
sign = _ufunc("sign", _np.sign, need_float=False)
maximum = _ufunc("maximum", _np.maximum, need_float=False)
minimum = _ufunc("minimum", _np.minimum, need_float=False)
less = _ufunc("lt", _np.less, need_float=False)
less_equal = _ufunc("le", _np.less_equal, need_float=False)
greater = _ufunc("gt", _np.greater, need_float=False)
greater_equal = _ufunc("ge", _np.greater_equal, need_float=False)
equal = _ufunc("eq", _np.equal, need_float=False)
not_equal = _ufunc("ne", _np.not_equal, need_float=False)
divide = _ufunc("div", _np.divide, need_float=True)
true_divide = divide


def power(x, y):
    """x ** y. Small integer and half-integer exponents become square/sqrt/division."""
    if not _traced(x, y):
        return _np.power(x, y)
    if _is_weak(y) and not isinstance(y, bool):
        if y == 1:
            return asarray(x) if _dtype_of(x) in FLOAT_DTYPES else astype(x, "float64")
        if y == 2:
            return square(x)
        if y == 0.5:
            return sqrt(x)
        if y == -1:
            return divide(1.0, x)
    xv, yv = _lift((x, y), need_float=True)
    if xv.dtype in COMPLEX_DTYPES:
        # The principal power exp(y log x), as NumPy's (and C99's cpow, which computes it so).
        # Not the pow primitive: its derivative's guards compare with 0, which complex values
        # do not (docs/complex.md).
        return exp(multiply(_wrap(yv), log(_wrap(xv))))
    return _wrap(bind("pow", xv, yv))


def where(condition, x=None, y=None):
    """Elementwise choice, all three operands broadcast together; the gradient flows to the
    branch taken."""
    if x is None or y is None:
        raise TypeError(f"where(condition) alone (NumPy's nonzero) has a data-dependent shape and "
                        f"cannot be compiled{_at(user_location())}; pass both x and y")
    if not _traced(condition, x, y):
        return _np.where(condition, x, y)
    c = condition if isinstance(condition, Tracer) else asarray(condition)
    if c.irvar.dtype != "bool":
        c = not_equal(c, 0)
    xv, yv = _lift((x, y))
    return _wrap(bind("select", c.irvar, xv, yv))


def select(condlist, choicelist, default=0):
    """The choice of the first condition that holds, elementwise (``default`` where none does);
    the gradient flows to the choice taken."""
    if len(condlist) != len(choicelist):
        raise ValueError(f"select: list of cases must be same length as list of conditions "
                         f"({len(choicelist)} choices, {len(condlist)} conditions)"
                         f"{_at(user_location())}")
    if not _traced(*condlist, *choicelist, default):
        return _np.select(condlist, choicelist, default)
    for i, c in enumerate(condlist):
        if _dtype_of(c) != "bool":
            raise TypeError(f"select: invalid entry {i} in condlist: should be boolean ndarray"
                            f"{_at(user_location())}")
    result = default
    for c, choice in zip(reversed(condlist), reversed(choicelist)):
        result = where(c, choice, result)
    return asarray(result)


def piecewise(x, condlist, funclist, *args, **kw):
    """NumPy's piecewise: where ``condlist[k]`` holds, ``funclist[k]`` (a function of the
    selected elements, or a value); a later condition wins; one extra function is the value
    where no condition holds, else 0. A condition known while tracing selects the elements as
    NumPy does; a traced one applies the function to the whole array and selects its result,
    which is NumPy's for elementwise functions (the usual case)."""
    if not _traced(x, condlist, *[f for f in funclist if not callable(f)]):
        return _np.piecewise(x, condlist, funclist, *args, **kw)
    x = asarray(x)
    if not isinstance(condlist, (list, tuple)) or (
            condlist and not isinstance(condlist[0], (list, _np.ndarray, Tracer)) and x.ndim):
        condlist = [condlist]
    conds, n = list(condlist), len(condlist)
    if len(funclist) not in (n, n + 1):
        raise ValueError(f"piecewise: with {n} condition(s), {n} or {n + 1} functions are "
                         f"expected, got {len(funclist)}{_at(user_location())}")
    if len(funclist) == n + 1:              # the last function serves where no condition holds
        if _traced(*conds):
            held = stack([broadcast_to(asarray(c), x.shape) for c in conds])
            conds.append(logical_not(any(held, axis=0)))
        else:
            conds.append(~_np.any([_np.broadcast_to(c, x.shape) for c in conds], axis=0))
    y = zeros_like(x)
    for c, f in zip(conds, funclist):
        if not callable(f):
            y = where(c, astype(asarray(f), x.dtype), y)
        elif not _traced(c):
            mask = _np.broadcast_to(_np.asarray(c, dtype=bool), x.shape)
            if mask.any():
                y[mask] = f(x[mask], *args, **kw)
        else:
            y = where(c, astype(asarray(f(x, *args, **kw)), x.dtype), y)
    return y


def isclose(a, b, rtol=1e-05, atol=1e-08, equal_nan=False):
    """|a - b| <= atol + rtol |b| where both are finite; equal infinities are close; NaN is
    close to NaN only with ``equal_nan``. Booleans: no gradient."""
    if not _traced(a, b, rtol, atol):
        return _np.isclose(a, b, rtol=rtol, atol=atol, equal_nan=equal_nan)
    a, b = asarray(a), asarray(b)
    finite = logical_and(isfinite(a), isfinite(b))
    near = less_equal(abs(subtract(a, b)), add(atol, multiply(rtol, abs(b))))
    close = where(finite, near, equal(a, b))
    if equal_nan:
        close = logical_or(close, logical_and(isnan(a), isnan(b)))
    return close


def fix(x):
    """Rounds toward zero (NumPy's fix, trunc that keeps an integer input's dtype)."""
    return trunc(x)


def ldexp(x1, x2):
    """x1 * 2**x2 for integer x2: exact (a power of two is exact in binary floating point)."""
    if not _traced(x1, x2):
        return _np.ldexp(x1, x2)
    n = asarray(x2)
    if n.dtype.kind not in "iub":
        raise TypeError(f"ldexp: the exponent must be integers, got {n.dtype}"
                        f"{_at(user_location())}")
    x = astype(asarray(x1), "float64") if _dtype_of(x1) not in FLOAT_DTYPES else asarray(x1)
    return multiply(x, exp2(astype(n, x.dtype)))


def frexp(x):
    """(mantissa, exponent) with x = mantissa * 2**exponent and 0.5 <= |mantissa| < 1 (0, inf
    and NaN keep themselves with exponent 0); the mantissa's gradient is 2**-exponent."""
    if not _traced(x):
        return _np.frexp(x)
    x = asarray(x)
    if x.irvar.dtype not in FLOAT_DTYPES:
        x = astype(x, "float64")
    finite = logical_and(isfinite(x), not_equal(x, 0))
    magnitude = where(finite, abs(x), 1.0)
    e = add(floor(log2(magnitude)), 1.0)
    m = divide(magnitude, exp2(e))
    # log2 may round across a power of two: one correction step either way.
    e = where(greater_equal(m, 1.0), add(e, 1.0), where(less(m, 0.5), subtract(e, 1.0), e))
    e = stop_gradient(where(finite, e, 0.0))
    return divide(x, exp2(e)), astype(e, "int32")


def modf(x):
    """(fractional part, integral part), both with x's sign; (+-0, +-inf) for an infinity."""
    if not _traced(x):
        return _np.modf(x)
    x = asarray(x)
    whole = trunc(x)
    return where(isinf(x), copysign(0.0, x), subtract(x, whole)), whole


def iscomplexobj(x):
    """Whether x's dtype is complex: known while tracing, a Python bool."""
    return _dtype_of(x) in COMPLEX_DTYPES


def isrealobj(x):
    return not iscomplexobj(x)


def iscomplex(x):
    """Elementwise: a nonzero imaginary part."""
    if not _traced(x):
        return _np.iscomplex(x)
    return not_equal(imag(x), 0) if iscomplexobj(x) else zeros(asarray(x).shape, "bool")


def isreal(x):
    """Elementwise: a zero imaginary part."""
    if not _traced(x):
        return _np.isreal(x)
    return equal(imag(x), 0) if iscomplexobj(x) else ones(asarray(x).shape, "bool")


def clip(a, a_min=None, a_max=None):
    """minimum(maximum(a, a_min), a_max); at a bound the gradient goes to a (ties go first)."""
    if not _traced(a, a_min, a_max):
        return _np.clip(a, a_min, a_max)
    out = a
    if a_min is not None:
        out = maximum(out, a_min)
    if a_max is not None:
        out = minimum(out, a_max)
    return out


def stop_gradient(x):
    """x, as a constant to reverse mode."""
    if not _traced(x):
        return x
    return _wrap(bind("stop_gradient", asarray(x).irvar))


def astype(x, dtype):
    if not isinstance(x, Tracer):
        return _np.asarray(x).astype(dtype)
    return _wrap(ops.convert(x.irvar, canonical_dtype(dtype)))


# --- more elementwise functions (issue 16): primitives of core/primitives/numeric.py ----------

log2 = _ufunc("log2", _np.log2, need_float=True)
log10 = _ufunc("log10", _np.log10, need_float=True)
exp2 = _ufunc("exp2", _np.exp2, need_float=True)
cbrt = _ufunc("cbrt", _np.cbrt, need_float=True)
arcsinh = _ufunc("arcsinh", _np.arcsinh, need_float=True)
arccosh = _ufunc("arccosh", _np.arccosh, need_float=True)
arctanh = _ufunc("arctanh", _np.arctanh, need_float=True)
hypot = _ufunc("hypot", _np.hypot, need_float=True)
arctan2 = _ufunc("arctan2", _np.arctan2, need_float=True)
logaddexp = _ufunc("logaddexp", _np.logaddexp, need_float=True)
logaddexp2 = _ufunc("logaddexp2", _np.logaddexp2, need_float=True)
copysign = _ufunc("copysign", _np.copysign, need_float=True)
sinc = _ufunc("sinc", _np.sinc, need_float=True)
rint = _ufunc("rint", _np.rint, need_float=True)
signbit = _ufunc("signbit", _np.signbit, need_float=True)
# integers stay integers, as in NumPy
fmod = _ufunc("fmod", _np.fmod, need_float=False)
remainder = _ufunc("remainder", _np.remainder, need_float=False)
floor_divide = _ufunc("floor_divide", _np.floor_divide, need_float=False)
# NumPy 2's (and the array API's) names for the same functions.
acos, acosh, asin, asinh, atan, atan2, atanh = (arccos, arccosh, arcsin, arcsinh, arctan, arctan2,
                                                arctanh)
pow = power
mod = remainder


def _rounding(prim, np_fn, x):
    """floor, ceil, trunc: integers are already whole (NumPy returns them unchanged)."""
    if not _traced(x):
        return np_fn(x)
    x = asarray(x)
    if x.irvar.dtype not in FLOAT_DTYPES:
        return x
    return _wrap(bind(prim, x.irvar))


floor = _like(_np.floor, _rounding, "floor", _np.floor)
ceil = _like(_np.ceil, _rounding, "ceil", _np.ceil)
trunc = _like(_np.trunc, _rounding, "trunc", _np.trunc)


def _float(x):
    """x as a Tracer of a floating dtype (integers and bools become float64, as NumPy does)."""
    x = asarray(x)
    return x if x.irvar.dtype in FLOAT_DTYPES else astype(x, "float64")


def round(a, decimals=0):
    """Round half to even (NumPy's ``round``/``around``); with ``decimals``, NumPy's scaling:
    rint(a * 10**decimals) / 10**decimals. No gradient: constant almost everywhere."""
    if not _traced(a):
        return _np.round(a, decimals)
    a = asarray(a)
    if a.irvar.dtype not in FLOAT_DTYPES:
        if decimals >= 0:
            return a
        # NumPy rounds integers half to even too (np.round(5, -1) == 0): exact below 2**53.
        return astype(round(astype(a, "float64"), decimals), a.irvar.dtype)
    if decimals == 0:
        return rint(a)
    if decimals > 0:
        return divide(rint(multiply(a, 10.0 ** decimals)), 10.0 ** decimals)
    return multiply(rint(divide(a, 10.0 ** -decimals)), 10.0 ** -decimals)


around = round


def fabs(x):
    return _np.fabs(x) if not _traced(x) else abs(_float(x))


def reciprocal(x):
    """1 / x; for integers, as NumPy: 1 and -1 are their own reciprocals, the rest give 0."""
    if not _traced(x):
        return _np.reciprocal(x)
    x = asarray(x)
    if x.irvar.dtype not in FLOAT_DTYPES:
        return where(equal(abs(x), 1), x, 0)
    return divide(1, x)


def positive(x):
    return _np.positive(x) if not _traced(x) else asarray(x)


def float_power(x, y):
    """x ** y computed in float64 whatever the operands' dtypes (NumPy's float_power)."""
    if not _traced(x, y):
        return _np.float_power(x, y)
    return power(astype(x, "float64"), astype(y, "float64"))


def deg2rad(x):
    return _np.deg2rad(x) if not _traced(x) else multiply(_float(x), _np.pi / 180.0)


def rad2deg(x):
    return _np.rad2deg(x) if not _traced(x) else multiply(_float(x), 180.0 / _np.pi)


radians, degrees = deg2rad, rad2deg


def divmod(x, y):
    """(x // y, x % y), as NumPy's divmod."""
    return floor_divide(x, y), remainder(x, y)


# Complex numbers (docs/complex.md): real, imag and conj are primitives; abs and angle of a
# complex value are composites of its parts. On real values they are NumPy's identities.

def _is_complex(x):
    return x.irvar.dtype in COMPLEX_DTYPES


def real(x):
    if not _traced(x):
        return _np.real(x)
    x = asarray(x)
    return _wrap(bind("real", x.irvar)) if _is_complex(x) else x


def imag(x):
    if not _traced(x):
        return _np.imag(x)
    x = asarray(x)
    return _wrap(bind("imag", x.irvar)) if _is_complex(x) else zeros_like(x)


def conj(x):
    if not _traced(x):
        return _np.conj(x)
    x = asarray(x)
    return _wrap(bind("conj", x.irvar)) if _is_complex(x) else x


conjugate = conj


def angle(z, deg=False):
    """The argument of z, arctan2(imag z, real z); for real z, pi where z < 0 (or is -0.0) and 0
    elsewhere, with no gradient."""
    if not _traced(z):
        return _np.angle(z, deg)
    z = asarray(z)
    if _is_complex(z):
        out = arctan2(imag(z), real(z))
    else:
        z = _float(z)
        out = arctan2(zeros_like(z), z)
    return multiply(out, 180.0 / _np.pi) if deg else out


def _abs(x):
    """|x|; for complex x the modulus hypot(real x, imag x) (no overflow for large parts), whose
    adjoint is g * conj(x) / |x| (docs/complex.md), and 0 at x = 0 as in JAX: there hypot's
    derivative re/|x| is 0/0, so x = 0 takes hypot(1, 0) instead, masked to 0, and no NaN can
    reach the adjoint."""
    if not _traced(x):
        return _np.abs(x)
    x = asarray(x)
    if _is_complex(x):
        re, im = real(x), imag(x)
        zero = logical_and(equal(re, 0), equal(im, 0))
        return where(zero, 0.0, hypot(where(zero, 1.0, re), im))
    return _wrap(bind("abs", x.irvar))


abs = absolute = functools.update_wrapper(_abs, _np.abs)


# Predicates on floats: composites of comparisons (x != x only for NaN; |x| == inf only for
# infinities). Integers and bools are always finite and never NaN.

def isnan(x):
    if not _traced(x):
        return _np.isnan(x)
    x = asarray(x)
    if x.irvar.dtype not in FLOAT_DTYPES:
        return zeros_like(x, dtype="bool")
    if _is_complex(x):                  # NumPy: either part is NaN
        return logical_or(isnan(real(x)), isnan(imag(x)))
    return not_equal(x, x)


def isinf(x):
    if not _traced(x):
        return _np.isinf(x)
    x = asarray(x)
    if x.irvar.dtype not in FLOAT_DTYPES:
        return zeros_like(x, dtype="bool")
    if _is_complex(x):                  # NumPy: either part is infinite
        return logical_or(isinf(real(x)), isinf(imag(x)))
    return equal(abs(x), _np.inf)


def isfinite(x):
    if not _traced(x):
        return _np.isfinite(x)
    x = asarray(x)
    if x.irvar.dtype not in FLOAT_DTYPES:
        return ones_like(x, dtype="bool")
    return less(abs(x), _np.inf)


def isposinf(x):
    return _np.isposinf(x) if not _traced(x) else equal(_float(x), _np.inf)


def isneginf(x):
    return _np.isneginf(x) if not _traced(x) else equal(_float(x), -_np.inf)


def nan_to_num(x, copy=True, nan=0.0, posinf=None, neginf=None):
    """NaN -> ``nan``, +-inf -> ``posinf``/``neginf`` (default: the dtype's largest finite
    values); the gradient flows where x was finite."""
    if not _traced(x):
        return _np.nan_to_num(x, copy=copy, nan=nan, posinf=posinf, neginf=neginf)
    x = asarray(x)
    if x.irvar.dtype not in FLOAT_DTYPES:
        return x
    if _is_complex(x):                  # NumPy: each part on its own
        parts = [nan_to_num(p, copy, nan, posinf, neginf) for p in (real(x), imag(x))]
        return _wrap(bind("complex", parts[0].irvar, parts[1].irvar))
    big = float(_np.finfo(x.irvar.dtype).max)
    out = where(isnan(x), nan, x)
    out = where(equal(x, _np.inf), big if posinf is None else posinf, out)
    return where(equal(x, -_np.inf), -big if neginf is None else neginf, out)


def fmax(x, y):
    """maximum(x, y), except that a NaN loses to a number (NumPy's fmax)."""
    if not _traced(x, y):
        return _np.fmax(x, y)
    return where(isnan(y), x, where(isnan(x), y, maximum(x, y)))


def fmin(x, y):
    """minimum(x, y), except that a NaN loses to a number (NumPy's fmin)."""
    if not _traced(x, y):
        return _np.fmin(x, y)
    return where(isnan(y), x, where(isnan(x), y, minimum(x, y)))


def heaviside(x1, x2):
    """0 for x1 < 0, x2 at 0, 1 for x1 > 0, NaN for NaN; the gradient reaches x2 where x1 == 0."""
    if not _traced(x1, x2):
        return _np.heaviside(x1, x2)
    x1 = _float(x1)
    step = where(less(x1, 0), 0.0, where(greater(x1, 0), 1.0, x2))
    return where(isnan(x1), x1, step)


# Logical functions: on bools, "and" is a product and "or" a sum (both stay bool).

def _truth(x):
    x = asarray(x)
    return x if x.irvar.dtype == "bool" else not_equal(x, 0)


def logical_and(x, y):
    if not _traced(x, y):
        return _np.logical_and(x, y)
    return multiply(_truth(x), _truth(y))


def logical_or(x, y):
    if not _traced(x, y):
        return _np.logical_or(x, y)
    return add(_truth(x), _truth(y))


def logical_xor(x, y):
    if not _traced(x, y):
        return _np.logical_xor(x, y)
    return not_equal(_truth(x), _truth(y))


def logical_not(x):
    if not _traced(x):
        return _np.logical_not(x)
    return equal(_truth(x), False)


def _bitwise(np_fn, logical, *args):
    """&, |, ^, ~ (NumPy's bitwise functions): on bools, the logical ones; integers' bits are
    not supported yet."""
    if not _traced(*args):
        return np_fn(*args)
    args = [asarray(a) if isinstance(a, Tracer) or not _is_weak(a) else a for a in args]
    dtypes = {a.irvar.dtype if isinstance(a, Tracer) else "bool" if isinstance(a, bool)
              else "int" for a in args}
    if dtypes != {"bool"}:
        raise TypeError(f"numpy.{np_fn.__name__} on {', '.join(sorted(dtypes))} operands: "
                        f"symgrad supports it on bools only (the logical operators &, |, ^, ~ "
                        f"on comparisons){_at(user_location())}")
    return logical(*args)


bitwise_and = _like(_np.bitwise_and, _bitwise, _np.bitwise_and, logical_and)
bitwise_or = _like(_np.bitwise_or, _bitwise, _np.bitwise_or, logical_or)
bitwise_xor = _like(_np.bitwise_xor, _bitwise, _np.bitwise_xor, logical_xor)
invert = _like(_np.invert, _bitwise, _np.invert, logical_not)
bitwise_not = invert


# --- reductions -------------------------------------------------------------------------------

def _axis(a, ndim):
    """The axis ``a`` of an ``ndim``-dimensional array, made non-negative; ShapeError if out
    of range (as NumPy's AxisError, never wrapped around)."""
    if not -ndim <= a < ndim:
        raise ShapeError(f"axis {a} is out of bounds for an array of dimension {ndim}"
                         f"{_at(user_location())}")
    return a % ndim


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    out = [_axis(a, ndim) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {axis}{_at(user_location())}")
    return tuple(sorted(out))


def _reduction(prim, np_fn, x, axis=None, keepdims=False, *, counts_bools=False):
    if not _traced(x):
        return np_fn(x, axis=axis, keepdims=keepdims)
    x = asarray(x)
    axes = _axes(axis, x.ndim)
    v = x.irvar
    if counts_bools and v.dtype == "bool":     # NumPy sums bools as ints: a count
        v = ops.convert(v, "int64")
    out = bind(prim, v, axes=axes) if axes else v
    if keepdims:
        out = ops.reshape(out, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    return _wrap(out)


_NO_VALUE = _np._NoValue


def _plain_kwargs(**kwargs):
    """NumPy's keyword arguments, leaving out those not given (NumPy's defaults stand)."""
    return {k: v for k, v in kwargs.items() if v is not _NO_VALUE}


def _masked_reduction(name, prim, np_fn, x, axis, dtype, out, keepdims, initial, mask, fill,
                      combine, counts_bools=False):
    """NumPy's reduction with ``dtype``, ``initial`` and ``where`` (``mask``): the elements the
    mask leaves out take ``fill`` (the reduction's identity, or ``initial``), and ``initial``
    joins the result through ``combine``, as NumPy starts each reduction from it."""
    if not _traced(x, initial, mask):
        return np_fn(x, axis=axis, out=out, keepdims=keepdims,
                     **_plain_kwargs(dtype=dtype, initial=initial, where=mask))
    _no_out(out, name)
    x = asarray(x)
    if dtype is not _NO_VALUE and dtype is not None:
        x = astype(x, dtype)
    if mask is not True:
        if fill is None and initial is _NO_VALUE:
            raise ValueError(f"reduction operation '{name}' does not have an identity, so to use "
                             f"a where mask one has to specify 'initial'{_at(user_location())}")
        value = initial if fill is None else fill
        x = where(mask, x, asarray(value, x.dtype))
    result = _reduction(prim, np_fn, x, axis, keepdims, counts_bools=counts_bools)
    if initial is not _NO_VALUE:
        result = combine(result, asarray(initial, result.dtype))
    return result


def sum(a, axis=None, dtype=None, out=None, keepdims=False, initial=_NO_VALUE, where=True):
    return _masked_reduction("add", "reduce_sum", _np.sum, a, axis, dtype, out, keepdims,
                             initial, where, 0, add, counts_bools=True)


def prod(a, axis=None, dtype=None, out=None, keepdims=False, initial=_NO_VALUE, where=True):
    return _masked_reduction("multiply", "reduce_prod", _np.prod, a, axis, dtype, out, keepdims,
                             initial, where, 1, multiply)


def max(a, axis=None, out=None, keepdims=False, initial=_NO_VALUE, where=True):
    """The maximum; its gradient goes to the first maximal element."""
    return _masked_reduction("maximum", "reduce_max", _np.max, a, axis, _NO_VALUE, out,
                             keepdims, initial, where, None, maximum)


def min(a, axis=None, out=None, keepdims=False, initial=_NO_VALUE, where=True):
    """The minimum; its gradient goes to the first minimal element."""
    return _masked_reduction("minimum", "reduce_min", _np.min, a, axis, _NO_VALUE, out,
                             keepdims, initial, where, None, minimum)


amax, amin = max, min


def mean(a, axis=None, dtype=None, out=None, keepdims=False, *, where=True):
    if not _traced(a, where):
        return _np.mean(a, axis=axis, dtype=dtype, out=out, keepdims=keepdims, where=where)
    _no_out(out, "mean")
    x = asarray(a)
    if dtype is not None:
        x = astype(x, dtype)
    elif x.irvar.dtype not in FLOAT_DTYPES:
        x = astype(x, "float64")
    if where is True:
        count = _dims.prod([x.shape[i] for i in _axes(axis, x.ndim)])
        return divide(sum(x, axis, keepdims=keepdims), float(count) if isinstance(count, int)
                      else count)
    selected = broadcast_to(asarray(where), x.shape)
    total = sum(x, axis, keepdims=keepdims, where=selected)
    return divide(total, sum(astype(selected, x.dtype), axis, keepdims=keepdims))


# --- shapes -----------------------------------------------------------------------------------

def reshape(x, newshape):
    if not _traced(x):
        return _np.reshape(x, newshape)
    x = asarray(x)
    shape = (newshape,) if isinstance(newshape, int) else tuple(newshape)
    if shape.count(-1) > 1:
        raise ShapeError(f"can only specify one unknown dimension in {shape}"
                         f"{_at(user_location())}")
    if builtins.any(isinstance(d, int) and d == -1 for d in shape):
        known = _dims.prod([d for d in shape if not (isinstance(d, int) and d == -1)])
        rest = (x.size % known if isinstance(x.size, int) and isinstance(known, int) and known
                else _dims.normalize(_sympy().Mod(x.size, known)) if known != 0 else None)
        if known == 0 or rest != 0:
            raise ShapeError(f"cannot reshape {x.shape} into {shape}{_at(user_location())}")
        whole = (x.size // known if isinstance(x.size, int) and isinstance(known, int)
                 else _dims.normalize(x.size / known))
        shape = tuple(whole if isinstance(d, int) and d == -1 else d for d in shape)
    return _wrap(ops.reshape(x.irvar, shape))


def transpose(x, axes=None):
    if not _traced(x):
        return _np.transpose(x, axes)
    x = asarray(x)
    perm = tuple(reversed(range(x.ndim))) if axes is None else tuple(_axis(a, x.ndim) for a in axes)
    return _wrap(ops.transpose(x.irvar, perm))


permute_dims = transpose


def broadcast_to(x, shape):
    if not _traced(x):
        return _np.broadcast_to(x, shape)
    x = asarray(x)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    return _wrap(ops.broadcast_to(x.irvar, shape))


def expand_dims(x, axis):
    if not _traced(x):
        return _np.expand_dims(x, axis)
    x = asarray(x)
    axes = (axis,) if isinstance(axis, int) else tuple(axis)
    ndim = x.ndim + len(axes)
    axes = _axes(axes, ndim)
    shape = list(x.shape)
    for a in axes:
        shape.insert(a, 1)
    return reshape(x, shape)


def squeeze(x, axis=None):
    if not _traced(x):
        return _np.squeeze(x, axis)
    x = asarray(x)
    axes = [i for i, d in enumerate(x.shape) if d == 1] if axis is None else _axes(axis, x.ndim)
    for a in axes:
        if x.shape[a] != 1:
            raise ShapeError(f"cannot squeeze axis {a} of size {x.shape[a]} in shape {x.shape}"
                             f"{_at(user_location())}")
    return reshape(x, [d for i, d in enumerate(x.shape) if i not in axes])


def ravel(x):
    return reshape(x, (-1,))


def concatenate(arrays, axis=0):
    arrays = list(arrays)
    if not _traced(*arrays):
        return _np.concatenate(arrays, axis=axis)
    vars_ = _lift(arrays)
    ndim = vars_[0].ndim
    if ndim == 0:
        raise ShapeError(f"zero-dimensional arrays cannot be concatenated{_at(user_location())}")
    return _wrap(bind("concatenate", *vars_, axis=_axis(axis, ndim)))


concat = concatenate


def stack(arrays, axis=0):
    arrays = list(arrays)
    if not _traced(*arrays):
        return _np.stack(arrays, axis=axis)
    return concatenate([expand_dims(asarray(a), axis) for a in arrays], axis=axis)


# --- products ---------------------------------------------------------------------------------

def matmul(a, b):
    """NumPy's matmul: 1-D operands are promoted and the added axis removed; batches broadcast."""
    if not _traced(a, b):
        return _np.matmul(a, b)
    av, bv = _lift((a, b))
    if av.ndim == 0 or bv.ndim == 0:
        raise ShapeError(f"matmul of a scalar: shapes {av.shape} and {bv.shape}"
                         f"{_at(user_location())}; use * for scaling")
    a2 = ops.reshape(av, (1,) + av.shape) if av.ndim == 1 else av
    b2 = ops.reshape(bv, bv.shape + (1,)) if bv.ndim == 1 else bv
    if not _dims.equal(a2.shape[-1], b2.shape[-2]):
        raise ShapeError(f"matmul: shapes {av.shape} and {bv.shape} are not aligned: "
                         f"{a2.shape[-1]} (last axis of the first) != {b2.shape[-2]} "
                         f"(second-to-last axis of the second){_at(user_location())}")
    try:
        batch = _dims.broadcast(a2.shape[:-2], b2.shape[:-2])
    except ValueError:
        raise ShapeError(f"matmul: batch dimensions of {av.shape} and {bv.shape} do not "
                         f"broadcast{_at(user_location())}") from None
    a2 = ops.broadcast_to(a2, batch + a2.shape[-2:])
    b2 = ops.broadcast_to(b2, batch + b2.shape[-2:])
    out = bind("matmul", a2, b2, transpose_a=False, transpose_b=False)
    shape = batch + ((av.shape[-2],) if av.ndim > 1 else ()) + ((bv.shape[-1],) if bv.ndim > 1 else ())
    return _wrap(ops.reshape(out, shape))


def dot(a, b):
    """NumPy's dot: scalars multiply, up to two dimensions matmul, beyond a tensordot."""
    if not _traced(a, b):
        return _np.dot(a, b)
    av, bv = asarray(a), asarray(b)
    if av.ndim == 0 or bv.ndim == 0:
        return multiply(av, bv)
    if av.ndim > 2 or bv.ndim > 2:
        return _contractions.dot_nd(av, bv)
    return matmul(av, bv)


def inner(a, b):
    """NumPy's inner: the sum product over the last axes, of shape ``a.shape[:-1] +
    b.shape[:-1]`` (``inner(A, A)`` is ``A @ A.T``); a scalar operand multiplies."""
    if not _traced(a, b):
        return _np.inner(a, b)
    av, bv = _lift((a, b))
    if av.ndim == 0 or bv.ndim == 0:
        return _wrap(ops.mul(av, bv))
    k = av.shape[-1]
    if not _dims.equal(k, bv.shape[-1]):
        raise ShapeError(f"inner: shapes {av.shape} and {bv.shape} are not aligned: {k} (last "
                         f"axis of the first) != {bv.shape[-1]} (last axis of the second)"
                         f"{_at(user_location())}")
    a2 = ops.reshape(av, (_dims.prod(av.shape[:-1]), k))
    b2 = ops.reshape(bv, (_dims.prod(bv.shape[:-1]), k))
    out = bind("matmul", a2, b2, transpose_a=False, transpose_b=True)
    return _wrap(ops.reshape(out, av.shape[:-1] + bv.shape[:-1]))


def outer(a, b):
    if not _traced(a, b):
        return _np.outer(a, b)
    return multiply(reshape(a, (-1, 1)), reshape(b, (1, -1)))


def vdot(a, b):
    """The dot product of the flattened operands, conjugating the first as NumPy's does (the
    identity for a real a)."""
    return sum(multiply(conj(ravel(a)), ravel(b)))


# --- creation (traced constants while tracing, NumPy otherwise) --------------------------------

def arange(start, stop=None, step=1, dtype=None):
    if current_builder() is None:
        return _np.arange(start, stop, step, dtype=dtype)
    start, stop = (0, start) if stop is None else (start, stop)
    if _is_symbolic(stop) or _is_symbolic(start):
        if start != 0 or step != 1:
            raise ShapeError(f"arange over a run-time size takes only a stop (arange(n))"
                             f"{_at(user_location())}")
        return _wrap(bind("iota", shape=(stop,), dimension=0,
                          dtype=canonical_dtype(dtype) if dtype is not None else "int64"))
    n = builtins.max(0, math.ceil((stop - start) / step))
    floaty = builtins.any(isinstance(v, float) for v in (start, stop, step))
    dt = canonical_dtype(dtype) if dtype is not None else ("float64" if floaty else "int64")
    out = bind("iota", shape=(n,), dimension=0, dtype=dt)
    if step != 1:
        out = ops.mul(out, ops.const(step, dt))
    if start != 0:
        out = ops.add(out, ops.const(start, dt))
    return _wrap(out)


def _filled(value, shape, dtype):
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    dt = canonical_dtype(dtype or "float64")
    return _wrap(ops.broadcast_to(ops.const(value, dt), shape))


def zeros(shape, dtype=None):
    if current_builder() is None:
        return _np.zeros(shape, dtype=dtype or float)
    return _filled(0, shape, dtype)


def ones(shape, dtype=None):
    if current_builder() is None:
        return _np.ones(shape, dtype=dtype or float)
    return _filled(1, shape, dtype)


def full(shape, fill_value, dtype=None):
    if current_builder() is None:
        return _np.full(shape, fill_value, dtype=dtype)
    if _traced(fill_value):
        return broadcast_to(asarray(fill_value, dtype), (shape,) if isinstance(shape, int)
                            else tuple(shape))
    return _filled(fill_value, shape, dtype or ("float64" if isinstance(fill_value, float)
                                                else _np.asarray(fill_value).dtype))


def zeros_like(x, dtype=None):
    if not _traced(x):
        return _np.zeros_like(x, dtype=dtype)
    return _filled(0, x.shape, dtype or x.irvar.dtype)


def ones_like(x, dtype=None):
    if not _traced(x):
        return _np.ones_like(x, dtype=dtype)
    return _filled(1, x.shape, dtype or x.irvar.dtype)


def full_like(x, fill_value, dtype=None):
    if not _traced(x, fill_value):
        return _np.full_like(x, fill_value, dtype=dtype)
    return full(x.shape, fill_value, dtype or _dtype_of(x))


def empty(shape, dtype=None):
    """Zeros: NumPy leaves an empty array's values unspecified, and a compiled function never
    reads memory it has not written."""
    return zeros(shape, dtype)


def empty_like(x, dtype=None):
    """Zeros of ``x``'s shape (see ``empty``)."""
    return zeros_like(x, dtype)


def copy(a, order="K"):
    """A new array with ``a``'s values: in-place writes to it do not reach ``a``."""
    if not _traced(a):
        return _np.copy(a, order=order)
    return _wrap(asarray(a).irvar)


def eye(n, m=None, k=0, dtype=None):
    if current_builder() is None:
        return _np.eye(n, m, k, dtype=dtype or float)
    m = n if m is None else m
    rows = bind("iota", shape=(n, m), dimension=0, dtype="int64")
    cols = bind("iota", shape=(n, m), dimension=1, dtype="int64")
    diag = ops.eq(ops.add(rows, ops.const(k, "int64")), cols) if k else ops.eq(rows, cols)
    return _wrap(ops.convert(diag, canonical_dtype(dtype or "float64")))


def shape(x):
    return _np.shape(x) if not isinstance(x, Tracer) else x.shape


def ndim(x):
    return _np.ndim(x) if not isinstance(x, Tracer) else x.ndim


# --- indexing ---------------------------------------------------------------------------------

def _is_index_array(k):
    if isinstance(k, Tracer):
        return True
    if isinstance(k, (list, _np.ndarray)):
        arr = _np.asarray(k)
        if arr.dtype.kind not in "iu" and arr.size:
            raise IndexError(f"index arrays must be integers, got {arr.dtype}"
                             f"{_at(user_location())}")
        return True
    return False


def _whole(k):
    """Whether the index ``k`` takes a whole axis whatever its length (``:``, ``0:``, ``::1``):
    the only slices of an axis of run-time size, whose bounds are not known while tracing."""
    return isinstance(k, slice) and k.start in (None, 0) and k.stop is None and k.step in (None, 1)


def _masks_to_indices(key, shape):
    """A constant boolean mask selects a number of elements known now: it becomes the integer
    arrays of its nonzero positions (NumPy's own rule), one per axis it covers. A traced mask
    selects a number known only at run time, which no static shape can hold."""
    out, axis = [], 0
    for k in key:
        if isinstance(k, Tracer) and k.irvar.dtype == "bool":
            raise IndexError(f"indexing with a traced boolean mask gives a result whose size "
                             f"depends on the data, which cannot be compiled"
                             f"{_at(user_location())}. Use snp.where(mask, x, 0) (or a sum "
                             f"with the mask as weights) to keep the shape static.")
        if isinstance(k, (bool, _np.bool_)):
            raise IndexError(f"indexing with a scalar boolean is not supported on traced values"
                             f"{_at(user_location())}")
        if isinstance(k, (list, _np.ndarray)) and _np.asarray(k).dtype == bool:
            mask = _np.asarray(k)
            covered = tuple(shape[axis:axis + mask.ndim]) if axis is not None else mask.shape
            if mask.shape != covered:
                raise IndexError(f"boolean index of shape {mask.shape} does not match the "
                                 f"indexed axes of shape {covered}{_at(user_location())}")
            out.extend(_np.nonzero(mask))
            axis = None if axis is None else axis + mask.ndim
            continue
        out.append(k)
        if k is Ellipsis:
            axis = None                 # positions after an ellipsis: not checked here
        elif k is not None and axis is not None:
            axis += 1
    return tuple(out)


def getitem(x, key):
    """NumPy indexing: basic (ints, slices, None, ...) and integer-array (advanced) indexing."""
    if not _traced(x):
        return _np.asarray(x)[key]
    x = asarray(x)
    key = _masks_to_indices(key if isinstance(key, tuple) else (key,), x.shape)
    has_array = builtins.any(_is_index_array(k) for k in key)
    # Expand the Ellipsis into full slices.
    used = builtins.sum(1 for k in key if k is not None and k is not Ellipsis)
    if used > x.ndim:
        raise IndexError(f"too many indices ({used}) for an array of shape {x.shape}"
                         f"{_at(user_location())}")
    if builtins.sum(1 for k in key if k is Ellipsis) > 1:
        raise IndexError(f"an index can only have a single ellipsis{_at(user_location())}")
    if builtins.any(k is Ellipsis for k in key):
        i = next(j for j, k in enumerate(key) if k is Ellipsis)
        key = key[:i] + (slice(None),) * (x.ndim - used) + key[i + 1:]
        used = x.ndim
    key = key + (slice(None),) * (x.ndim - used)

    # 1. Basic indexing: strided slices, then drop integer axes and insert new ones.
    start, step, size, out_shape, advanced = [], [], [], [], []
    axis = 0
    for k in key:
        if k is None:
            out_shape.append(1)
            continue
        n = x.shape[axis]
        if not isinstance(n, int) and not _whole(k) and not _is_index_array(k):
            raise IndexError(f"axis {axis} has the run-time size {n}: it can only be taken "
                             f"whole (:) or indexed with an index array{_at(user_location())}")
        if isinstance(k, slice) and not isinstance(n, int):
            start.append(0)
            step.append(1)
            size.append(n)
            out_shape.append(n)
        elif isinstance(k, slice):
            s0, s1, st = k.indices(n)
            cnt = len(range(s0, s1, st))
            start.append(s0 if cnt else 0)
            step.append(st)
            size.append(cnt)
            out_shape.append(cnt)
        elif isinstance(k, (int, _np.integer)) and not has_array:
            if not -n <= k < n:
                raise IndexError(f"index {k} is out of bounds for axis {axis} with size {n}"
                                 f"{_at(user_location())}")
            start.append(int(k) % n)
            step.append(1)
            size.append(1)
        else:   # an index array (or an int among index arrays): keep the axis whole for now
            # Constant indices along a fixed axis are checked now, naming the user's line. Along
            # an axis of run-time size the bound is only known at run time: the gather checks
            # it then (SYMGRAD_EINDEX in C, IndexError in the interpreter).
            bad = [] if isinstance(k, Tracer) or not isinstance(n, int) else \
                [i for i in _np.ravel(k) if not -n <= i < n]
            if bad:
                raise IndexError(f"index {int(bad[0])} is out of bounds for axis {axis} with size "
                                 f"{n}{_at(user_location())}")
            start.append(0)
            step.append(1)
            size.append(n)
            advanced.append((len(out_shape), k))
            out_shape.append(n)
        axis += 1
    v = x.irvar
    if (tuple(start), tuple(step), tuple(size)) != ((0,) * x.ndim, (1,) * x.ndim, x.shape):
        v = bind("slice", v, start=tuple(start), step=tuple(step), shape=tuple(size))
    v = ops.reshape(v, tuple(out_shape))
    if not advanced:
        return _wrap(v)

    # 2. Integer-array indexing: move the indexed axes to the front, gather, and put the index
    # dimensions where NumPy does (in place when the indexed axes are adjacent, else first).
    positions = [p for p, _ in advanced]
    indices = [asarray(_np.asarray(k) if not isinstance(k, Tracer) else k) for _, k in advanced]
    for idx in indices:
        if idx.irvar.dtype not in ("int64", "int32"):
            raise IndexError(f"index arrays must be integers, got {idx.irvar.dtype}"
                             f"{_at(user_location())}")
    try:
        batch = _dims.broadcast(*[i.shape for i in indices])
    except ValueError:
        raise IndexError("index arrays of shapes " + ", ".join(str(i.shape) for i in indices)
                         + f" do not broadcast together{_at(user_location())}") from None
    idx_vars = [ops.broadcast_to(ops.convert(i.irvar, "int64"), batch) for i in indices]
    rest = [p for p in range(v.ndim) if p not in positions]
    v = ops.transpose(v, positions + rest)
    out = bind("gather", v, *idx_vars)
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    if adjacent and positions[0] > 0:
        nb, p0 = len(batch), positions[0]
        perm = list(range(nb, nb + p0)) + list(range(nb)) + list(range(nb + p0, out.ndim))
        out = ops.transpose(out, perm)
    return _wrap(out)


# --- the submodules: statistics, shapes, contractions, calculus, linear algebra -----------------

from symgrad.numpy.statistics import *  # noqa: E402,F401,F403
from symgrad.numpy.shapes import *  # noqa: E402,F401,F403
from symgrad.numpy.contractions import *  # noqa: E402,F401,F403
from symgrad.numpy.calculus import *  # noqa: E402,F401,F403
from symgrad.numpy.indexing import *  # noqa: E402,F401,F403
from symgrad.numpy.arrays import *  # noqa: E402,F401,F403
from symgrad.numpy.sized import *  # noqa: E402,F401,F403
from symgrad.numpy.histograms import *  # noqa: E402,F401,F403
from symgrad.numpy.windows import *  # noqa: E402,F401,F403
from symgrad.numpy._inplace import (copyto, fill_diagonal, place, put,  # noqa: E402,F401
                                     put_along_axis, putmask)
from symgrad.numpy import contractions as _contractions, linalg  # noqa: E402

# --- what Tracers and NumPy's own functions run on traced values ------------------------------

_NOT_FUNCTIONS = {"builtins", "functools", "math", "Tracer", "bind", "ops", "implements", "unsupported",
                  "current_builder", "user_location", "ShapeError", "FLOAT_DTYPES",
                  "canonical_dtype", "promote", "ndarray", "COMPLEX_DTYPES", "COMPLEX_OF"}
__all__ = sorted(name for name, value in globals().items()
                 if callable(value) and not name.startswith("_") and name not in _NOT_FUNCTIONS
                 and not isinstance(value, type))
for _name in __all__:
    implements(_name, globals()[_name])
for _name in linalg.__all__:
    implements("linalg." + _name, getattr(linalg, _name))
_inplace.register_fallbacks()
__all__ += ["pi", "e", "inf", "nan", "newaxis", "float32", "float64", "int32", "int64", "bool_",
            "complex64", "complex128", "ndarray"]


def __getattr__(name):
    """``snp.foo`` for a name symgrad.numpy lacks: an error naming it and the closest names."""
    if name.startswith("_"):
        raise AttributeError(f"module 'symgrad.numpy' has no attribute {name!r}")
    raise unsupported(name, "symgrad.numpy", __all__)
