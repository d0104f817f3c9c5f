"""``symgrad.scipy.special``: the special functions of ``scipy.special`` that losses use.

As in ``symgrad.numpy``, each computes with NumPy (or SciPy, when it is installed) on plain
arrays and records IR on traced values. erf, erfc, erfinv, gammaln, digamma and polygamma are
primitives (``core/primitives/special.py``); the rest are compositions of primitives, written
in the numerically stable forms SciPy uses.

SciPy's own functions called on traced values dispatch here where SciPy lets them: its ufuncs
(erf, erfc, erfinv, gammaln, psi = digamma, xlogy, xlog1py, expit, logit) reach a Tracer's
``__array_ufunc__`` under their ufunc names, registered below. ``scipy.special.polygamma`` and
``logsumexp`` are Python functions that convert their arguments to arrays first, so inside a
compiled function call these (``symgrad.scipy.special.polygamma``, ...) instead.
"""
from __future__ import annotations

import functools as _functools

import math as _math

import numpy as _np

from symgrad import nn as _nn
from symgrad import numpy as _snp
from symgrad.numpy._common import lift as _lift, traced as _traced, wrap as _wrap
from symgrad.core import ops as _ops
from symgrad.core.primitives import bind as _bind
from symgrad.core.primitives.special import polygamma_scalar as _polygamma_scalar
from symgrad.frontend.tracer import implements as _implements
from symgrad.frontend.tracer import unsupported as _unsupported


@_functools.cache
def _scipy_special():
    """``scipy.special``, imported on the first call on plain arrays (it takes longer to import
    than symgrad itself, and a trace never needs it); None without SciPy, not a dependency."""
    try:
        import scipy.special as module
    except ImportError:                 # pragma: no cover - scipy is installed with the tests
        return None
    return module


def _plain(name, fallback, *args):
    """SciPy's ``name`` on plain arrays, or the primitive's own NumPy evaluation without SciPy."""
    if _scipy_special() is not None:
        return getattr(_scipy_special(), name)(*args)
    return fallback(*args)


def _primitive(prim, name, x):
    if not _traced(x):
        from symgrad.core.primitives import REGISTRY as _registry
        return _plain(name, lambda v: _registry[prim].impl(_np.asarray(v, dtype=float)), x)
    return _wrap(_bind(prim, _lift((x,), need_float=True)[0]))


def erf(x):
    """The error function 2/sqrt(pi) int_0^x e^-t^2 dt."""
    return _primitive("erf", "erf", x)


def erfc(x):
    """1 - erf(x), accurate where erf(x) is near 1."""
    return _primitive("erfc", "erfc", x)


def erfinv(y):
    """The inverse of erf on [-1, 1] (+-inf at +-1, NaN outside)."""
    return _primitive("erfinv", "erfinv", y)


def gammaln(x):
    """log |Gamma(x)| (+inf at the poles 0, -1, -2, ...)."""
    return _primitive("gammaln", "gammaln", x)


def digamma(x):
    """psi(x) = d/dx log Gamma(x) (polygamma of order 0)."""
    return polygamma(0, x) if _traced(x) else _plain("digamma", _polygamma_plain(0), x)


psi = digamma


def _polygamma_plain(n):
    return lambda v: _np.frompyfunc(lambda t: _polygamma_scalar(n, float(t)), 1, 1)(
        _np.asarray(v, dtype=float)).astype(float)


def polygamma(n, x):
    """The n-th derivative of digamma, for a Python int order ``n`` >= 0."""
    if isinstance(n, bool) or not isinstance(n, (int, _np.integer)) or n < 0:
        raise ValueError(f"polygamma: the order n must be a Python int >= 0, got {n!r}")
    if not _traced(x):
        return _plain("polygamma", lambda k, v: _polygamma_plain(int(k))(v), n, x)
    xv = _lift((x,), need_float=True)[0]
    return _wrap(_bind("polygamma", _ops.const(int(n), "int64"), xv))


def _x_times(x, logged, y):
    """``x * logged`` with an exact 0 where x == 0 (unless y is NaN), as SciPy's xlogy.

    The product is the strong-zero ``chain_mul`` (0 where either factor is 0), not a where over
    x == 0: a where would take the constant branch there and lose d/dx = log(y) at x = 0 (JAX
    gives log(3) for xlogy at (0, 3)), and its second derivative d2/dxdy = 1/y. Where y is NaN,
    or x is infinite (inf * log(1) is NaN in SciPy), the plain product decides.
    """
    xv, lv = _lift((x, logged), need_float=True)
    yv = _snp.asarray(y).irvar
    plain = _ops.mul(xv, lv)
    strong = _bind("chain_mul", xv, lv)
    keep_plain = _snp.logical_or(_snp.isnan(_wrap(yv)), _snp.isinf(_wrap(xv)))
    return _snp.where(keep_plain, _wrap(plain), _wrap(strong))


def xlogy(x, y):
    """x * log(y), and 0 where x == 0 (unless y is NaN), as SciPy; d/dx = log(y) there too."""
    if not _traced(x, y):
        return _plain("xlogy", lambda a, b: _np.where((a == 0) & ~_np.isnan(b), 0.0,
                                                      a * _np.log(b)), x, y)
    return _x_times(x, _snp.log(y), y)


def xlog1py(x, y):
    """x * log1p(y), and 0 where x == 0 (unless y is NaN), as SciPy; d/dx = log1p(y) there."""
    if not _traced(x, y):
        return _plain("xlog1py", lambda a, b: _np.where((a == 0) & ~_np.isnan(b), 0.0,
                                                        a * _np.log1p(b)), x, y)
    return _x_times(x, _snp.log1p(y), y)


def expit(x):
    """The logistic sigmoid 1 / (1 + e^-x), as the ``logistic`` primitive."""
    return _nn.sigmoid(x) if _traced(x) else _plain("expit", _nn.sigmoid, x)


def logit(p):
    """log(p / (1 - p)) as log(p) - log1p(-p): no cancellation near either end."""
    if not _traced(p):
        return _plain("logit", lambda v: _np.log(v) - _np.log1p(-v), p)
    return _snp.subtract(_snp.log(p), _snp.log1p(_snp.negative(p)))


def logsumexp(a, axis=None, b=None, keepdims=False, return_sign=False):
    """log(sum(b * exp(a))) over ``axis`` without overflow; ``b`` scales the terms (b >= 0 here:
    ``return_sign`` is not supported on traced values)."""
    if not _traced(a, b):
        if _scipy_special() is not None:
            return _scipy_special().logsumexp(a, axis=axis, b=b, keepdims=keepdims,
                                            return_sign=return_sign)
    if return_sign:
        raise NotImplementedError("logsumexp(..., return_sign=True) is not supported on traced "
                                  "values")
    if b is None:
        return _nn.logsumexp(a, axis=axis, keepdims=keepdims)
    # log sum(b e^a) = log sum(e^(a + log b)); b = 0 terms give e^-inf = 0.
    return _nn.logsumexp(_snp.add(a, _snp.log(b)), axis=axis, keepdims=keepdims)


def softmax(x, axis=None):
    """exp(x) / sum(exp(x)) over ``axis`` (SciPy's default: the whole array), stable."""
    if not _traced(x) and _scipy_special() is not None:
        return _scipy_special().softmax(x, axis=axis)
    return _nn.softmax(x, axis=axis)


def log_softmax(x, axis=None):
    """x - logsumexp(x) over ``axis`` (SciPy's default: the whole array)."""
    if not _traced(x) and _scipy_special() is not None:
        return _scipy_special().log_softmax(x, axis=axis)
    return _nn.log_softmax(x, axis=axis)


def ndtr(x):
    """The standard normal CDF, erfc(-x / sqrt(2)) / 2 (SciPy's formula)."""
    if not _traced(x):
        return _plain("ndtr", lambda v: 0.5 * _registry_impl("erfc")(-v / _np.sqrt(2.0)), x)
    return _snp.multiply(0.5, erfc(_snp.divide(_snp.negative(x), _math.sqrt(2.0))))


# Below this, erfc(-x / sqrt(2)) nears the smallest normal number (1e-296 at -37 in float64,
# 1e-23 at -10 in float32): log_ndtr takes the asymptotic series instead, whose first left-out
# term is below 1e-19 (float64) and 1e-10 (float32) of the sum there.
_LOG_NDTR_TAIL = {"float64": -37.0, "float32": -10.0}


def log_ndtr(x):
    """log(ndtr(x)), accurate everywhere: log1p(-ndtr(-x)) for x > 0, log(ndtr(x)) down to -37
    (-10 in float32), and below, the asymptotic series -x^2/2 - log(-x) - log(2 pi)/2 +
    log(1 - 1/x^2 + 3/x^4 - ...)."""
    if not _traced(x):
        return _plain("log_ndtr", _log_ndtr_numpy, x)
    x = _snp.asarray(x)
    return _log_ndtr(_snp, x)


def _log_ndtr(m, x):
    """log_ndtr with the array module ``m`` (NumPy on plain arrays, symgrad.numpy traced)."""
    half = 1.0 / _math.sqrt(2.0)
    bound = _LOG_NDTR_TAIL["float32" if x.dtype == _np.float32 else "float64"]
    upper = m.log1p(m.multiply(-0.5, _erfc(m, m.multiply(x, half))))
    middle_x = m.minimum(x, 0.0)
    middle = m.log(m.multiply(0.5, _erfc(m, m.multiply(m.negative(middle_x), half))))
    t = m.minimum(x, bound)                          # the branch's own domain: no NaN elsewhere
    z = m.divide(1.0, m.square(t))
    series, term = 1.0, 1.0
    for k in range(1, 9):                            # 1 - 1/x^2 + 3/x^4 - 15/x^6 + ...
        term = m.multiply(term, m.multiply(-(2 * k - 1), z))
        series = m.add(series, term)
    tail = m.add(m.subtract(m.multiply(-0.5, m.square(t)), m.log(m.negative(t))),
                 m.subtract(m.log(series), 0.5 * _math.log(2.0 * _math.pi)))
    return m.where(m.greater(x, 0.0), upper, m.where(m.less(x, bound), tail, middle))


def _erfc(m, v):
    return _registry_impl("erfc")(v) if m is _np else erfc(v)


def _registry_impl(name):
    from symgrad.core.primitives import REGISTRY as _registry
    return lambda v: _registry[name].impl(_np.asarray(v, dtype=float))


def _log_ndtr_numpy(x):
    x = _np.asarray(x)
    with _np.errstate(divide="ignore", invalid="ignore"):
        return _log_ndtr(_np, x if x.dtype == _np.float32 else x.astype(float))


def entr(x):
    """-x log(x) for x > 0, 0 at 0, -inf below (SciPy's)."""
    if not _traced(x):
        return _plain("entr", lambda v: _np.where(v > 0, -_np.asarray(v, float) * _np.log(
            _np.where(v > 0, v, 1.0)), _np.where(v == 0, 0.0, _np.where(_np.isnan(v), v,
                                                                        -_np.inf))), x)
    x = _snp.asarray(x)
    positive = _snp.greater(x, 0.0)
    inside = _snp.negative(xlogy(x, _snp.where(positive, x, 1.0)))
    return _snp.where(positive, inside, _snp.where(_snp.equal(x, 0.0), 0.0,
                                                   _snp.where(_snp.isnan(x), x, -_np.inf)))


def rel_entr(x, y):
    """x log(x / y) for x, y > 0; 0 where x == 0 and y >= 0; inf otherwise (SciPy's)."""
    return _relative(x, y, "rel_entr", kl=False)


def kl_div(x, y):
    """x log(x / y) - x + y for x, y > 0; y where x == 0 and y >= 0; inf otherwise (SciPy's)."""
    return _relative(x, y, "kl_div", kl=True)


def _relative(x, y, name, kl):
    m = _snp if _traced(x, y) else _np
    if m is _np:
        if _scipy_special() is not None:
            return getattr(_scipy_special(), name)(x, y)
        x, y = _np.asarray(x, dtype=float), _np.asarray(y, dtype=float)
    both = m.logical_and(m.greater(x, 0.0), m.greater(y, 0.0))
    xs, ys = m.where(both, x, 1.0), m.where(both, y, 1.0)   # each branch on its own domain
    inside = m.multiply(xs, m.subtract(m.log(xs), m.log(ys)))
    at_zero = m.logical_and(m.equal(x, 0.0), m.greater_equal(y, 0.0))
    if kl:
        inside = m.add(m.subtract(inside, xs), ys)
    edge = m.where(at_zero, y if kl else m.zeros_like(inside), m.full_like(inside, _np.inf))
    edge = m.where(m.logical_or(m.isnan(x), m.isnan(y)), _np.nan, edge)
    return m.where(both, inside, edge)


def betaln(a, b):
    """log|B(a, b)| = gammaln(a) + gammaln(b) - gammaln(a + b)."""
    if not _traced(a, b):
        return _plain("betaln", lambda u, v: gammaln(u) + gammaln(v) - gammaln(_np.add(u, v)),
                      a, b)
    a, b = (_wrap(v) for v in _lift((a, b), need_float=True))    # NumPy's promotion of the pair
    return _snp.subtract(_snp.add(gammaln(a), gammaln(b)), gammaln(_snp.add(a, b)))


__all__ = ["erf", "erfc", "erfinv", "gammaln", "digamma", "psi", "polygamma", "xlogy",
           "xlog1py", "expit", "logit", "logsumexp", "softmax", "log_softmax", "ndtr", "log_ndtr",
           "entr", "rel_entr", "kl_div", "betaln"]

# Registered as "scipy.special.<name>", and under the name of SciPy's ufunc where SciPy's own
# function reaches a Tracer's __array_ufunc__ (scipy.special.digamma is the ufunc "psi").
for _name in __all__:
    _implements(f"scipy.special.{_name}", globals()[_name])
for _name in ("erf", "erfc", "erfinv", "gammaln", "psi", "xlogy", "xlog1py", "expit", "logit",
              "ndtr", "log_ndtr", "entr", "rel_entr", "kl_div", "betaln"):
    _implements(_name, globals()[_name])


def __getattr__(name):
    """A name this module lacks: an error naming it and the closest supported names."""
    if name.startswith("_"):
        raise AttributeError(f"module 'symgrad.scipy.special' has no attribute {name!r}")
    raise _unsupported(name, "symgrad.scipy.special", __all__)
