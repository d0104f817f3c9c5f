"""Special functions (``symgrad.scipy.special``) as elementwise primitives: erf, erfc, erfinv,
gammaln, and polygamma(n, x) of any order n >= 0 (n = 0 is digamma).

Each is sympy's own function, so ``sympy.diff`` gives its derivative (erf' = 2/sqrt(pi) e^-x^2,
gammaln' = digamma, polygamma(n)' = polygamma(n + 1)) and derivatives of any order stay in this
family. C: libm has erf, erfc and lgamma; erfinv and polygamma are functions of symgrad's C
runtime (templates/math.c.j2). NumPy has none of them and SciPy is not a dependency, so the
evaluations here are ports of that same C (``erf``, ``erfc`` and ``lgamma`` from Python's
``math``, which wraps libm), checked against SciPy in tests/test_math_runtime.py.
"""
from __future__ import annotations

import math

import numpy as np

from symgrad.core import ops
from symgrad.core.primitive import bind
from symgrad.core.primitives.elementwise import elementwise, sympy_function
from symgrad.core.symbolic import sympy as _sympy
from symgrad.core.primitives.numeric import jet
from symgrad.core.types import FLOAT_DTYPES, INT_DTYPES, TensorType, broadcast_shapes
from symgrad.errors import DTypeError, ShapeError


def _ufunc(scalar_fn):
    """A float64 NumPy function from a Python function of one float."""
    vectorized = np.frompyfunc(scalar_fn, 1, 1)
    return lambda x: np.asarray(vectorized(np.asarray(x, dtype=np.float64)), dtype=np.float64)


_BERNOULLI = (1.0, 1.0 / 6, -1.0 / 30, 1.0 / 42, -1.0 / 30, 5.0 / 66, -691.0 / 2730, 7.0 / 6,
              -3617.0 / 510, 43867.0 / 798)


def _pow(x, k):
    """C's pow: inf on overflow, where Python's ** raises."""
    try:
        return x ** k
    except (OverflowError, ZeroDivisionError):
        return math.inf


def polygamma_scalar(n, x):
    """polygamma(n, x) for one float x: the algorithm of symgrad_math_polygamma, step for step."""
    if math.isnan(x):
        return x
    if math.isinf(x):
        if n == 0:
            return math.nan if x < 0 else math.inf
        if x < 0:
            return math.inf if n % 2 == 1 else -math.inf
        return 0.0 if n % 2 == 1 else -0.0
    if x <= 0 and x == math.floor(x):
        if n == 0:
            return (math.inf if math.copysign(1.0, x) < 0 else -math.inf) if x == 0 else math.nan
        return math.inf if n % 2 == 1 else -math.inf
    if n == 0 and x < 0:
        r = x - np.rint(x)
        return polygamma_scalar(0, 1.0 - x) - math.pi / math.tan(math.pi * r)
    factorial = float(math.factorial(n))
    shifted = 0.0
    while x < 20.0:
        shifted += 1.0 / x if n == 0 else _pow(x, -(n + 1))
        x += 1.0
    x2 = 1.0 / (x * x)
    if n == 0:
        series, power = 0.0, x2
        for k in range(1, 10):
            series += _BERNOULLI[k] / (2 * k) * power
            power *= x2
        return math.log(x) - 0.5 / x - series - shifted
    ratio = factorial / n
    power = _pow(x, -n)
    total = ratio * power + factorial * 0.5 * power / x
    for k in range(1, 10):
        ratio *= float(2 * k + n - 2) * (2 * k + n - 1) / ((2.0 * k - 1) * (2.0 * k))
        power *= x2
        total += _BERNOULLI[k] * ratio * power
    return (1.0 if n % 2 == 1 else -1.0) * (total + factorial * shifted)


def erfinv_scalar(y):
    """erfinv(y) for one float y: the algorithm of symgrad_math_erfinv, step for step."""
    if math.isnan(y) or y < -1.0 or y > 1.0:
        return math.nan
    if y in (1.0, -1.0):
        return y * math.inf
    if y == 0.0:
        return y
    w = -math.log((1.0 - y) * (1.0 + y))
    if w < 5.0:
        w -= 2.5
        coefficients = (2.81022636e-08, 3.43273939e-07, -3.5233877e-06, -4.39150654e-06,
                        0.00021858087, -0.00125372503, -0.00417768164, 0.246640727, 1.50140941)
    else:
        w = math.sqrt(w) - 3.0
        coefficients = (-0.000200214257, 0.000100950558, 0.00134934322, -0.00367342844,
                        0.00573950773, -0.0076224613, 0.00943887047, 1.00167406, 2.83297682)
    p = coefficients[0]
    for c in coefficients[1:]:
        p = c + p * w
    a, x = abs(y), abs(p * y)
    for _ in range(8):
        f = math.erf(x) - a if a < 0.5 else (1.0 - a) - math.erfc(x)
        df = 1.12837916709551257390 * math.exp(-x * x)
        step = f / (df + x * f)
        x -= step
        if abs(step) <= 1e-17 * x:
            break
    return math.copysign(x, y)


def _lgamma(x):
    try:
        return math.lgamma(x)
    except ValueError:          # a pole: libm's lgamma (and SciPy's gammaln) give +inf
        return math.inf


def _polygamma_ir(expr, emit):
    """The recipe (``elementwise.to_recipe``) of sympy's polygamma(n, x) (and digamma(x)) as
    they appear in derivatives: the order is an int64 operand, so polygamma(n, x)' =
    polygamma(n + 1, x) to any order."""
    sp = _sympy()
    n, x = (sp.S.Zero, expr.args[0]) if isinstance(expr, sp.digamma) else expr.args
    xv = emit(x)
    nv = ("const", int(n), "int64") if n.is_number else ("op", "convert", emit(n), "int64")
    return ("bind", "polygamma", nv, xv)


sympy_function("polygamma", _polygamma_ir)
sympy_function("digamma", _polygamma_ir)


def _polygamma_type(n, x):
    if n.dtype not in INT_DTYPES:
        raise DTypeError(f"the order of polygamma must be an integer, got {n.dtype}")
    if x.dtype not in FLOAT_DTYPES:
        raise DTypeError(f"polygamma needs a floating-point operand, got {x.dtype}")
    try:
        return TensorType(broadcast_shapes(n.shape, x.shape), x.dtype)
    except ValueError:
        raise ShapeError(f"shapes {n.shape} and {x.shape} do not broadcast together") from None


_polygamma_np = np.frompyfunc(lambda n, v: polygamma_scalar(int(n), float(v)), 2, 1)


def _polygamma(n, x):
    return np.asarray(_polygamma_np(np.real(n), np.asarray(x, dtype=np.float64)),
                      dtype=np.float64)


_erf = _ufunc(math.erf)
_erfc = _ufunc(math.erfc)
_two_over_sqrt_pi = 2 / math.sqrt(math.pi)

elementwise("erf", "erf(x)", sympy_func="erf",
            impl=jet(_erf, [lambda x, out: _two_over_sqrt_pi * np.exp(-x * x)]))
elementwise("erfc", "erfc(x)", sympy_func="erfc",
            impl=jet(_erfc, [lambda x, out: -_two_over_sqrt_pi * np.exp(-x * x)]))
# erfinv'(x) = sqrt(pi)/2 e^(erfinv(x)^2): from the output, no second inversion.
elementwise("erfinv", "erfinv(x)", deriv=["sqrt(pi)/2*exp(out**2)"], sympy_func="erfinv",
            impl=jet(_ufunc(erfinv_scalar), [lambda x, out: np.exp(out * out) / _two_over_sqrt_pi]))
elementwise("gammaln", "loggamma(x)", sympy_func="loggamma",
            impl=jet(_ufunc(_lgamma), [lambda x, out: _polygamma(0, x)]))
# polygamma(n, x): the order n (an int64 operand, x the float one) is data, not differentiated.
elementwise("polygamma", "polygamma(x, y)", shape_rule=_polygamma_type,
            impl=jet(_polygamma, [lambda n, x, out: 0, lambda n, x, out: _polygamma(n + 1, x)]),
            doc="polygamma(n, x): the n-th derivative of digamma (n = 0: digamma); n int64")
