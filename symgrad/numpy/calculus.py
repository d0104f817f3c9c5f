"""Differences, integrals, interpolation, polynomials and convolution: NumPy's ``interp``,
``convolve``, ``correlate``, ``polyval``, ``trapezoid``, ``gradient``, ``ediff1d`` and the
polynomial helpers ``polyadd``, ``polysub``, ``polymul``, ``polyder``, ``polyint``, ``polyfit``.

On plain arrays each function is NumPy's own. On traced values each is a composite of existing
primitives computing what NumPy computes, in NumPy's order where rounding could tell, so values
agree with NumPy's and gradients follow from the primitives:

- ``interp`` finds each x's interval with ``searchsorted`` (len(xp) * len(x) comparisons), reads
  the interval's ends with gathers and interpolates with NumPy's formula, its fallbacks for a
  non-finite slope included. At a sample point the gradient with respect to x is the slope of the
  interval to the right (to the left at the last point).
- ``convolve`` and ``correlate`` gather the (n_out, m) matrix of windows of the zero-padded longer
  operand in one step and multiply it by the shorter one (a matrix-vector product), so their
  gradients are a scatter-add and a product; the swap of operands NumPy makes when the second is
  longer (which decides where 'same' centres) and correlate's conjugate are NumPy's.
- ``gradient`` and ``trapezoid`` are NumPy's slices and arithmetic; ``polyval`` is Horner's rule.
- ``polyadd``/``polysub`` pad the shorter coefficients in front, ``polymul`` is ``convolve``,
  ``polyder``/``polyint`` multiply and divide by (n, ..., 1); ``polyfit`` is NumPy's: the
  Vandermonde matrix with unit-norm columns, solved by ``linalg.lstsq`` (through the SVD, so
  its gradient is the pseudo-inverse's).

Sizes NumPy's result shape depends on (lengths, ``mode``, ``axis``, ``edge_order``) must be known
while tracing; values (samples, spacings, ``period``, ``left``/``right``, ``dx``) may be traced.
"""
from __future__ import annotations

import numpy as np

from symgrad.errors import ShapeError
from symgrad.frontend.tracer import Tracer, implementation
from symgrad.numpy._common import at, axes_tuple, axis_index, common_dtype, snp, traced

__all__ = ["interp", "convolve", "correlate", "polyval", "trapezoid", "gradient", "ediff1d",
           "polyadd", "polysub", "polymul", "polyder", "polyint", "polyfit", "unwrap",
           "poly"]


def _length(x, what):
    """The length of 1-D ``x``, which must be known while tracing."""
    n = x.shape[0]
    if not isinstance(n, (int, np.integer)):
        raise ShapeError(f"{what} must have a length known while tracing, not the run-time size "
                         f"{n}{at()}")
    return int(n)


def _static(value, what):
    if isinstance(value, Tracer):
        raise TypeError(f"{what} must be known while tracing (a Python value), not a traced "
                        f"value{at()}")
    return value


def _along(x, axis, index):
    """x[..., index, ...] with ``index`` (an int or a slice) at ``axis``."""
    return snp.getitem(x, (slice(None),) * axis + (index,))


# --- interpolation -----------------------------------------------------------------------------

def interp(x, xp, fp, left=None, right=None, period=None):
    """Piecewise-linear interpolation of the points (xp, fp), xp increasing, at ``x``; ``left``
    and ``right`` outside [xp[0], xp[-1]] (default fp[0] and fp[-1]); with ``period``, x and xp
    are taken modulo it. float64 (complex128 for complex fp), as NumPy's."""
    if not traced(x, xp, fp, left, right, period):
        return np.interp(x, xp, fp, left, right, period)
    fp = snp.asarray(fp)
    complex_fp = np.dtype(fp.dtype).kind == "c"
    fp = snp.astype(fp, "complex128" if complex_fp else "float64")
    x = snp.astype(snp.asarray(x), "float64")
    xp = snp.astype(snp.asarray(xp), "float64")
    if xp.ndim != 1 or fp.ndim != 1:
        raise ShapeError(f"interp: data points must be 1-D sequences, got xp of shape {xp.shape} "
                         f"and fp of shape {fp.shape}{at()}")
    n = _length(xp, "interp's xp")
    if _length(fp, "interp's fp") != n:
        raise ShapeError(f"interp: fp and xp are not of the same length ({fp.shape[0]} and "
                         f"{n}){at()}")
    if n == 0:
        raise ValueError(f"interp: array of sample points is empty{at()}")
    if period is not None:
        if not isinstance(period, Tracer) and period == 0:
            raise ValueError(f"interp: period must be a non-zero value{at()}")
        period = snp.abs(period)
        left = right = None
        x = snp.remainder(x, period)
        xp = snp.remainder(xp, period)
        order = snp.argsort(xp)
        xp, fp = snp.getitem(xp, order), snp.getitem(fp, order)
        xp = snp.concatenate([snp.subtract(snp.getitem(xp, slice(-1, None)), period), xp,
                              snp.add(snp.getitem(xp, slice(0, 1)), period)])
        fp = snp.concatenate([snp.getitem(fp, slice(-1, None)), fp, snp.getitem(fp, slice(0, 1))])
        n += 2
    if complex_fp:
        # NumPy interpolates the real and imaginary parts separately (each with its fallbacks).
        parts = [_interp_real(x, xp, part(fp), None if v is None else part(v),
                              None if w is None else part(w), n)
                 for part, v, w in ((snp.real, left, right), (snp.imag, left, right))]
        return snp.add(parts[0], snp.multiply(parts[1], 1j))
    return _interp_real(x, xp, fp, left, right, n)


def _interp_real(x, xp, fp, left, right, n):
    """NumPy's arr_interp (numpy/_core/src/multiarray/compiled_base.c) on float64 values."""
    first, last = snp.getitem(fp, 0), snp.getitem(fp, -1)
    lval = first if left is None else snp.astype(snp.asarray(left), "float64")
    rval = last if right is None else snp.astype(snp.asarray(right), "float64")
    x0, xn = snp.getitem(xp, 0), snp.getitem(xp, -1)
    if n == 1:
        inside = first          # NaN x gets fp[0] too, as in NumPy's one-point branch
    else:
        # j: the last sample point <= x (-1 below xp[0]), NumPy's binary search.
        j = snp.subtract(snp.searchsorted(xp, x, side="right"), 1)
        at_end = snp.greater_equal(j, n - 1)
        jc = snp.clip(j, 0, n - 2)
        xa, xb = snp.getitem(xp, jc), snp.getitem(xp, snp.add(jc, 1))
        fa, fb = snp.getitem(fp, jc), snp.getitem(fp, snp.add(jc, 1))
        slope = snp.divide(snp.subtract(fb, fa), snp.subtract(xb, xa))
        from_a = snp.add(snp.multiply(slope, snp.subtract(x, xa)), fa)
        from_b = snp.add(snp.multiply(slope, snp.subtract(x, xb)), fb)
        # NumPy: slope (x - xa) + fa; if that is NaN, slope (x - xb) + fb; if that is NaN too
        # and fa == fb, fa. At x == xp[-1] (at_end) it returns fb, which from_b is exactly.
        fallback = snp.where(snp.logical_and(snp.isnan(from_b), snp.equal(fa, fb)), fa, from_b)
        inside = snp.where(at_end, from_b, snp.where(snp.isnan(from_a), fallback, from_a))
        # At a sample point NumPy returns its fp exactly, whatever the slope (inf, NaN).
        hit_x, hit_f = snp.where(at_end, xb, xa), snp.where(at_end, fb, fa)
        inside = snp.where(snp.logical_and(snp.equal(x, hit_x), snp.isnan(inside)), hit_f,
                           inside)
        inside = snp.where(snp.isnan(x), x, inside)     # NumPy checks x for NaN first
    out = snp.where(snp.greater(x, xn), rval, inside)
    out = snp.where(snp.less(x, x0), lval, out)
    return snp.broadcast_to(out, x.shape)


# --- convolution -------------------------------------------------------------------------------

_MODES = {"valid": 0, "same": 1, "full": 2}


def _mode(mode, name):
    """NumPy's mode number: 'valid' 0, 'same' 1, 'full' 2 (NumPy takes the numbers too)."""
    _static(mode, f"{name}'s mode")
    if isinstance(mode, str) and mode in _MODES:
        return _MODES[mode]
    if isinstance(mode, (int, np.integer)) and not isinstance(mode, bool) and mode in (0, 1, 2):
        return int(mode)
    raise ValueError(f"{name}: use one of 'valid', 'same', or 'full' for the mode, not "
                     f"{mode!r}{at()}")


def _vector(a, name, which):
    """``a`` as a traced 1-D array (a scalar becomes length 1, as NumPy's ndmin=1)."""
    a = snp.asarray(a)
    if a.ndim == 0:
        a = snp.reshape(a, (1,))
    if a.ndim != 1:
        raise ShapeError(f"{name}: {which} must be 1-D, got shape {a.shape} (NumPy: object too "
                         f"deep for desired array){at()}")
    if _length(a, f"{name}'s {which}") == 0:
        raise ValueError(f"{name}: {which} cannot be empty{at()}")
    return a


def _windows(long, short, mode):
    """NumPy's _pyarray_correlate for len(long) >= len(short): out[k] = sum_j padded[k + j] *
    short[j], ``long`` padded with zeros by the mode. One gather builds the windows."""
    n1, n = long.shape[0], short.shape[0]
    n_left, n_right = ((0, 0), (n // 2, n - n // 2 - 1), (n - 1, n - 1))[mode]
    parts = [snp.zeros((n_left,), dtype=long.dtype)] if n_left else []
    parts += [long] + ([snp.zeros((n_right,), dtype=long.dtype)] if n_right else [])
    padded = snp.concatenate(parts, 0) if len(parts) > 1 else long
    n_out = n1 + n_left + n_right - n + 1
    index = np.arange(n_out)[:, None] + np.arange(n)[None, :]
    return snp.matmul(snp.getitem(padded, index), short)


def _common(a, v):
    dtype = common_dtype([a, v])
    return snp.astype(a, dtype), snp.astype(v, dtype)


def convolve(a, v, mode="full"):
    """Discrete linear convolution of two 1-D sequences (modes 'full', 'same', 'valid');
    NumPy swaps them when v is longer."""
    if not traced(a, v):
        return np.convolve(a, v, mode)
    m = _mode(mode, "convolve")
    a, v = _common(_vector(a, "convolve", "a"), _vector(v, "convolve", "v"))
    if v.shape[0] > a.shape[0]:
        a, v = v, a
    return _windows(a, snp.getitem(v, slice(None, None, -1)), m)


def correlate(a, v, mode="valid"):
    """Cross-correlation c[k] = sum_n a[n + k] conj(v[n]) of two 1-D sequences; when v is
    longer NumPy correlates the other way round and reverses the result, as here."""
    if not traced(a, v):
        return np.correlate(a, v, mode)
    m = _mode(mode, "correlate")
    a, v = _common(_vector(a, "correlate", "a"), _vector(v, "correlate", "v"))
    if np.dtype(v.dtype).kind == "c":
        v = snp.conj(v)
    if v.shape[0] > a.shape[0]:
        return snp.getitem(_windows(v, a, m), slice(None, None, -1))
    return _windows(a, v, m)


# --- polynomials -------------------------------------------------------------------------------

def polyval(p, x):
    """The polynomial with coefficients ``p`` (highest power first) at ``x``: Horner's rule
    y = y * x + p[i] from y = zeros_like(x), as NumPy computes it."""
    if not traced(p, x):
        return np.polyval(p, x)
    p = snp.asarray(p)
    if p.ndim == 0:
        raise TypeError(f"polyval: p must be a sequence of coefficients, got a scalar{at()}")
    y = snp.zeros_like(snp.asarray(x))
    for i in range(_length(p, "polyval's p")):
        y = snp.add(snp.multiply(y, x), snp.getitem(p, i))
    return y


def _coefficients(p, name):
    """``p`` as traced 1-D coefficients (a scalar becomes length 1, NumPy's atleast_1d)."""
    p = snp.atleast_1d(snp.asarray(p))
    if p.ndim != 1:
        raise ValueError(f"{name}: coefficients must be 1-D, got shape {p.shape}{at()}")
    _length(p, f"{name}'s coefficients")
    return p


def _aligned(a1, a2, name):
    """The two coefficient vectors, the shorter padded with leading zeros of its own dtype."""
    a1, a2 = _coefficients(a1, name), _coefficients(a2, name)
    diff = a2.shape[0] - a1.shape[0]
    if diff > 0:
        a1 = snp.concatenate([snp.zeros((diff,), a1.dtype), a1])
    elif diff < 0:
        a2 = snp.concatenate([snp.zeros((-diff,), a2.dtype), a2])
    return a1, a2


def polyadd(a1, a2):
    """The sum of two polynomials (highest power first), the shorter padded in front."""
    if not traced(a1, a2):
        return np.polyadd(a1, a2)
    return snp.add(*_aligned(a1, a2, "polyadd"))


def polysub(a1, a2):
    """The difference of two polynomials (highest power first), the shorter padded in front."""
    if not traced(a1, a2):
        return np.polysub(a1, a2)
    return snp.subtract(*_aligned(a1, a2, "polysub"))


def polymul(a1, a2):
    """The product of two polynomials: the convolution of their coefficients."""
    if not traced(a1, a2):
        return np.polymul(a1, a2)
    return convolve(_coefficients(a1, "polymul"), _coefficients(a2, "polymul"))


def _order(m, name, other):
    m = int(_static(m, f"{name}'s m"))
    if m < 0:
        raise ValueError(f"{name}: order of {'derivative' if name == 'polyder' else 'integral'} "
                         f"must be positive (see {other}){at()}")
    return m


def polyder(p, m=1):
    """The m-th derivative of a polynomial: p[:-1] * (n, ..., 1), m times (integers stay
    integers, as in NumPy)."""
    if not traced(p):
        return np.polyder(p, m)
    m = _order(m, "polyder", "polyint")
    p = snp.asarray(p)
    for _ in range(m):
        n = _length(p, "polyder's p") - 1
        p = snp.multiply(snp.getitem(p, slice(None, -1)), np.arange(n, 0, -1))
    return p


def polyint(p, m=1, k=None):
    """The m-th antiderivative of a polynomial: p / (n, ..., 1) followed by the integration
    constant, m times; ``k`` (a scalar or one constant per integration, highest order first)
    may be traced."""
    if not traced(p, k):
        return np.polyint(p, m, k)
    m = _order(m, "polyint", "polyder")
    k = np.zeros(m, float) if k is None else k
    k = snp.atleast_1d(snp.asarray(k))
    if k.ndim != 1:
        raise ValueError(f"polyint: k must be a scalar or a rank-1 array, got shape {k.shape}"
                         f"{at()}")
    n_k = _length(k, "polyint's k")
    if n_k == 1 and m > 1:
        k = snp.multiply(snp.getitem(k, 0), np.ones(m, float))
    elif n_k < m:
        raise ValueError(f"polyint: k must be a scalar or a rank-1 array of length 1 or >m."
                         f"{at()}")
    p = snp.asarray(p)
    for i in range(m):
        n = _length(p, "polyint's p")
        # NumPy: p / arange(len(p), 0, -1), so float32 coefficients become float64 (an int64
        # array meets them), then k[i] joins.
        y = snp.divide(p, snp.asarray(np.arange(n, 0, -1)))
        p = snp.concatenate([y, snp.reshape(snp.getitem(k, i), (1,))])
    return p


def poly(seq_of_zeros):
    """The coefficients (highest power first, leading 1) of the polynomial with the given real
    roots: the product of (x - r), one convolution each, in NumPy's order and dtype (float32
    stays float32, integers become float64). Complex roots (NumPy returns real or complex
    coefficients depending on whether they pair up, a dtype from the values) and square
    matrices (their eigenvalues) are not supported on traced values."""
    if not traced(seq_of_zeros):
        return np.poly(seq_of_zeros)
    z = snp.atleast_1d(snp.asarray(seq_of_zeros))
    if z.ndim != 1:
        raise TypeError(f"poly of a matrix (its characteristic polynomial, from eigvals) is not "
                        f"supported on traced values{at()}; pass its roots")
    if np.dtype(z.dtype).kind == "c":
        raise TypeError(f"poly of complex roots is not supported on traced values{at()}: NumPy "
                        f"returns real or complex coefficients depending on the values")
    z = snp.astype(z, "float32" if z.dtype == np.float32 else "float64")   # NumPy's mintypecode
    n = _length(z, "poly's roots")
    if n == 0:
        return 1.0
    a = snp.ones((1,), z.dtype)
    for i in range(n):
        a = convolve(a, snp.stack([snp.ones((), z.dtype), snp.negative(z[i])]))
    return a

def polyfit(x, y, deg, rcond=None, full=False, w=None, cov=False):
    """The least-squares polynomial of degree ``deg`` through (x, y), highest power first: as
    NumPy, the Vandermonde matrix (rows weighted by ``w``) with its columns scaled to unit norm,
    solved by ``linalg.lstsq``, then unscaled. y may be 2-D (one fit per column). ``deg`` must
    be known while tracing; full=True and cov= are not supported on traced values (the rank
    they report, and cov's choice of formula by it, depend on the values)."""
    if not traced(x, y, w, rcond):
        return np.polyfit(x, y, deg, rcond, full, w, cov)
    deg = _static(deg, "polyfit's deg")
    if full or cov:
        raise TypeError(f"polyfit(..., {'full' if full else 'cov'}=...) is not supported on "
                        f"traced values{at()}: its extra results (the rank, residuals and the "
                        f"covariance's scaling) depend on the rank NumPy finds in the values")
    if deg < 0:
        raise ValueError(f"polyfit: expected deg >= 0{at()}")
    order = int(deg) + 1
    x = snp.add(snp.asarray(x), 0.0)
    y = snp.add(snp.asarray(y), 0.0)
    if x.ndim != 1:
        raise TypeError(f"polyfit: expected 1D vector for x, got shape {x.shape}{at()}")
    n = _length(x, "polyfit's x")
    if n == 0:
        raise TypeError(f"polyfit: expected non-empty vector for x{at()}")
    if y.ndim < 1 or y.ndim > 2:
        raise TypeError(f"polyfit: expected 1D or 2D array for y, got shape {y.shape}{at()}")
    if y.shape[0] != n:
        raise TypeError(f"polyfit: expected x and y to have same length ({n} and "
                        f"{y.shape[0]}){at()}")
    if rcond is None:
        rcond = n * np.finfo(x.dtype).eps
    lhs = snp.vander(x, order)
    rhs = y
    if w is not None:
        w = snp.add(snp.asarray(w), 0.0)
        if w.ndim != 1:
            raise TypeError(f"polyfit: expected a 1-d array for weights, got shape {w.shape}"
                            f"{at()}")
        if w.shape[0] != n:
            raise TypeError(f"polyfit: expected w and y to have the same length{at()}")
        lhs = snp.multiply(lhs, snp.reshape(w, (n, 1)))
        rhs = snp.multiply(rhs, snp.reshape(w, (n, 1)) if y.ndim == 2 else w)
    scale = snp.sqrt(snp.sum(snp.multiply(lhs, lhs), axis=0))
    lhs = snp.divide(lhs, scale)
    c = implementation("linalg.lstsq")(lhs, rhs, rcond)[0]
    return snp.divide(c, snp.reshape(scale, (order, 1)) if c.ndim == 2 else scale)



def unwrap(p, discont=None, axis=-1, *, period=2 * np.pi):
    """``p`` with each jump between neighbours along ``axis`` larger than ``discont`` (default
    period / 2) brought within a half period by adding multiples of ``period`` (NumPy's
    formula, its tie rule at exactly half a period included). The corrections are piecewise
    constant, so the gradient passes through unchanged."""
    if not traced(p, discont, period):
        return np.unwrap(p, discont, axis, period=period)
    p = snp.asarray(p)
    axis = axis_index(_static(axis, "unwrap's axis"), p.ndim)
    dd = snp.diff(p, axis=axis)
    if discont is None:
        discont = snp.divide(period, 2) if isinstance(period, Tracer) else period / 2
    dtype = snp.result_type(dd, period)
    if np.issubdtype(dtype, np.integer):
        high, rem = divmod(_static(period, "unwrap's integer period"), 2)
        ambiguous = rem == 0
    else:
        high = snp.divide(period, 2) if isinstance(period, Tracer) else period / 2
        ambiguous = True
    low = snp.negative(high) if isinstance(high, Tracer) else -high
    ddmod = snp.add(snp.remainder(snp.subtract(dd, low), period), low)
    if ambiguous:
        # A jump of exactly half a period keeps its sign (NumPy's copyto after the mod).
        ddmod = snp.where(snp.logical_and(snp.equal(ddmod, low), snp.greater(dd, 0)), high,
                          ddmod)
    correct = snp.where(snp.less(snp.abs(dd), discont), 0, snp.subtract(ddmod, dd))
    up = snp.astype(p, dtype)
    rest = snp.add(_along(p, axis, slice(1, None)), snp.cumsum(correct, axis=axis))
    return snp.concatenate([_along(up, axis, slice(0, 1)), snp.astype(rest, dtype)], axis)

# --- integrals and differences -----------------------------------------------------------------

def trapezoid(y, x=None, dx=1.0, axis=-1):
    """The integral of ``y`` along ``axis`` by the trapezoidal rule, at sample points ``x`` (1-D
    along ``axis``, or of y's shape) or with spacing ``dx``."""
    if not traced(y, x, dx):
        return np.trapezoid(y, x, dx, axis)
    y = snp.asarray(y)
    axis = axis_index(_static(axis, "trapezoid's axis"), y.ndim)
    if x is None:
        d = dx
    else:
        x = snp.asarray(x)
        if x.ndim == 1:
            d = snp.diff(x)
            shape = [1] * y.ndim
            shape[axis] = d.shape[0]
            d = snp.reshape(d, tuple(shape))
        else:
            d = snp.diff(x, axis=axis)
    pair = snp.add(_along(y, axis, slice(1, None)), _along(y, axis, slice(None, -1)))
    return snp.sum(snp.divide(snp.multiply(d, pair), 2.0), axis)


def ediff1d(ary, to_end=None, to_begin=None):
    """Differences of consecutive elements of the flattened array, with ``to_begin`` before and
    ``to_end`` after (cast to the array's dtype, which NumPy requires they fit same-kind)."""
    if not traced(ary, to_end, to_begin):
        return np.ediff1d(ary, to_end, to_begin)
    a = snp.ravel(snp.asarray(ary))
    parts = []
    for name, extra in (("to_begin", to_begin), (None, None), ("to_end", to_end)):
        if name is None:
            if _length(a, "ediff1d's ary") > 1:
                parts.append(snp.subtract(snp.getitem(a, slice(1, None)),
                                          snp.getitem(a, slice(None, -1))))
            continue
        if extra is None:
            continue
        e = snp.asarray(extra)
        if not np.can_cast(np.dtype(e.dtype), np.dtype(a.dtype), casting="same_kind"):
            raise TypeError(f"ediff1d: dtype of `{name}` ({e.dtype}) must be compatible with "
                            f"input `ary` ({a.dtype}) under the `same_kind` rule{at()}")
        e = snp.astype(snp.ravel(e), a.dtype)
        if e.shape[0]:
            parts.append(e)
    if not parts:
        return snp.zeros((0,), dtype=a.dtype)
    return snp.concatenate(parts, 0) if len(parts) > 1 else parts[0]


def gradient(f, *varargs, axis=None, edge_order=1):
    """Second-order central differences of ``f`` inside and one-sided differences of order
    ``edge_order`` (1 or 2) at the boundaries, along each axis; spacings as one scalar, or one
    scalar or 1-D coordinate array per axis. A tuple of arrays when several axes, as NumPy.

    Coordinates known while tracing that are evenly spaced take NumPy's uniform formulas (as
    NumPy decides it); traced coordinates always take the non-uniform ones, which agree with the
    uniform ones up to rounding."""
    if not traced(f, *varargs):
        return np.gradient(f, *varargs, axis=axis, edge_order=edge_order)
    f = snp.asarray(f)
    N = f.ndim
    axes = axes_tuple(_static(axis, "gradient's axis"), N)
    edge_order = _static(edge_order, "gradient's edge_order")
    n = len(varargs)
    if n == 0:
        dx = [1.0] * len(axes)
    elif n == 1 and np.ndim(varargs[0]) == 0:
        dx = list(varargs) * len(axes)
    elif n == len(axes):
        dx = [_spacing(d, f.shape[ax]) for d, ax in zip(varargs, axes)]
    else:
        raise TypeError(f"gradient: invalid number of arguments ({n} spacings for {len(axes)} "
                        f"axes){at()}")
    if edge_order not in (1, 2):
        raise ValueError(f"gradient: edge_order must be 1 or 2, not {edge_order!r}{at()}")
    otype = f.dtype if np.dtype(f.dtype).kind in "fc" else np.dtype("float64")
    if np.dtype(f.dtype).kind not in "fc":
        f = snp.astype(f, "float64")
    out = []
    for ax, ax_dx in zip(axes, dx):
        size = f.shape[ax]
        if not isinstance(size, (int, np.integer)):
            raise ShapeError(f"gradient: axis {ax} must have a length known while tracing, not "
                             f"the run-time size {size}{at()}")
        if size < edge_order + 1:
            raise ValueError(f"gradient: shape of array too small to calculate a numerical "
                             f"gradient, at least (edge_order + 1) = {edge_order + 1} elements "
                             f"are required along axis {ax}, got {size}{at()}")
        out.append(snp.astype(_gradient_axis(f, ax, ax_dx, edge_order), otype))
    return out[0] if len(out) == 1 else tuple(out)


def _spacing(distances, size):
    """A scalar spacing, or the differences of 1-D coordinates (a scalar when known while
    tracing and all equal, as NumPy decides)."""
    if not isinstance(distances, Tracer):
        d = np.asanyarray(distances)
        if d.ndim == 0:
            return distances
        if d.ndim != 1:
            raise ValueError(f"gradient: distances must be either scalars or 1d{at()}")
        if len(d) != size:
            raise ValueError(f"gradient: when 1d, distances must match the length of the "
                             f"corresponding dimension ({len(d)} != {size}){at()}")
        return _uniform(d)
    if distances.ndim == 0:
        return distances
    if distances.ndim != 1:
        raise ValueError(f"gradient: distances must be either scalars or 1d, got shape "
                         f"{distances.shape}{at()}")
    if distances.shape[0] != size:
        raise ValueError(f"gradient: when 1d, distances must match the length of the "
                         f"corresponding dimension ({distances.shape[0]} != {size}){at()}")
    if np.dtype(distances.dtype).kind not in "fc":
        distances = snp.astype(distances, "float64")
    return snp.diff(distances)


def _uniform(d):
    if np.issubdtype(d.dtype, np.integer):
        d = d.astype(np.float64)
    diffx = np.diff(d)
    return diffx[0] if (diffx == diffx[0]).all() else diffx


def _gradient_axis(f, axis, ax_dx, edge_order):
    """NumPy's gradient along one axis: the interior and the two edges, joined. Python
    operators, so Python-number spacings stay weak (a float32 f stays float32) as in NumPy."""
    def at_(i):
        return _along(f, axis, slice(i, i + 1 if i != -1 else None))

    def along(v):
        return snp.reshape(v, tuple(-1 if i == axis else 1 for i in range(f.ndim)))
    uniform = np.ndim(ax_dx) == 0
    if uniform:
        interior = (_along(f, axis, slice(2, None)) - _along(f, axis, slice(None, -2))) / \
            (2. * ax_dx)
    else:
        dx1, dx2 = ax_dx[0:-1], ax_dx[1:]
        a = -(dx2) / (dx1 * (dx1 + dx2))
        b = (dx2 - dx1) / (dx1 * dx2)
        c = dx1 / (dx2 * (dx1 + dx2))
        interior = along(a) * _along(f, axis, slice(None, -2)) + \
            along(b) * _along(f, axis, slice(1, -1)) + along(c) * _along(f, axis, slice(2, None))
    if edge_order == 1:
        first = (at_(1) - at_(0)) / (ax_dx if uniform else ax_dx[0])
        last = (at_(-1) - at_(-2)) / (ax_dx if uniform else ax_dx[-1])
    else:
        if uniform:
            a, b, c = -1.5 / ax_dx, 2. / ax_dx, -0.5 / ax_dx
        else:
            dx1, dx2 = ax_dx[0], ax_dx[1]
            a = -(2. * dx1 + dx2) / (dx1 * (dx1 + dx2))
            b = (dx1 + dx2) / (dx1 * dx2)
            c = - dx1 / (dx2 * (dx1 + dx2))
        first = a * at_(0) + b * at_(1) + c * at_(2)
        if uniform:
            a, b, c = 0.5 / ax_dx, -2. / ax_dx, 1.5 / ax_dx
        else:
            dx1, dx2 = ax_dx[-2], ax_dx[-1]
            a = (dx2) / (dx1 * (dx1 + dx2))
            b = - (dx2 + dx1) / (dx1 * dx2)
            c = (2. * dx2 + dx1) / (dx2 * (dx1 + dx2))
        last = a * at_(-3) + b * at_(-2) + c * at_(-1)
    pieces = [first] + ([interior] if f.shape[axis] > 2 else []) + [last]
    dtype = common_dtype(pieces)
    return snp.concatenate([snp.astype(p, dtype) for p in pieces], axis)
