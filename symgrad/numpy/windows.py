"""Window functions and the Bessel function they need: NumPy's ``bartlett``, ``blackman``,
``hamming``, ``hanning``, ``kaiser`` and ``i0``.

The first four take only a length, which must be known while tracing, so they are NumPy's own
arrays (constants in a compiled function). ``i0`` is NumPy's: Chebyshev series (Cephes' I0) on
|x| <= 8 and beyond, evaluated with the same operations in the same order, so values agree with
NumPy's and the gradient is that of the series (I1 to its accuracy). ``kaiser``'s beta may be
traced.
"""
from __future__ import annotations

import numpy as np
from numpy.lib import _function_base_impl as _numpy_impl

from symgrad.frontend.tracer import Tracer
from symgrad.numpy._common import at, snp, static_ints, traced

__all__ = ["bartlett", "blackman", "hamming", "hanning", "kaiser", "i0"]


def _length(M, name):
    return static_ints(M, f"{name}'s M")


def bartlett(M):
    """The triangular window of M points (NumPy's array: M must be known while tracing)."""
    return np.bartlett(_length(M, "bartlett"))


def blackman(M):
    """The Blackman window of M points (NumPy's array)."""
    return np.blackman(_length(M, "blackman"))


def hamming(M):
    """The Hamming window of M points (NumPy's array)."""
    return np.hamming(_length(M, "hamming"))


def hanning(M):
    """The Hann window of M points (NumPy's array)."""
    return np.hanning(_length(M, "hanning"))


def _chebyshev(x, coefficients):
    """NumPy's _chbevl: the Chebyshev series by Clenshaw's recurrence."""
    b0, b1, b2 = coefficients[0], 0.0, 0.0
    for c in coefficients[1:]:
        b2, b1 = b1, b0
        b0 = x * b1 - b2 + c
    return 0.5 * (b0 - b2)


def i0(x):
    """The modified Bessel function of the first kind, order 0 (real x; float64 for
    integers)."""
    if not traced(x):
        return np.i0(x)
    x = snp.asarray(x)
    if np.dtype(x.dtype).kind == "c":
        raise TypeError(f"i0 not supported for complex values{at()}")
    if np.dtype(x.dtype).kind != "f":
        x = snp.astype(x, "float64")
    x = snp.abs(x)
    small = snp.less_equal(x, 8.0)
    near = snp.where(small, x, 8.0)         # each series sees only its own range, so the branch
    far = snp.where(small, 8.0, x)          # not taken computes no inf (32 / 0 at x = 0)
    inner = snp.exp(near) * _chebyshev(near / 2.0 - 2, _numpy_impl._i0A)
    outer = snp.exp(far) * _chebyshev(32.0 / far - 2.0, _numpy_impl._i0B) / snp.sqrt(far)
    return snp.where(small, inner, outer)


def kaiser(M, beta):
    """The Kaiser window of M points, i0(beta sqrt(1 - ((n - alpha) / alpha)^2)) / i0(beta);
    beta may be traced."""
    if not isinstance(beta, Tracer):
        return np.kaiser(_length(M, "kaiser"), beta)
    M = _length(M, "kaiser")
    if M == 1:
        return np.ones(1)
    n = np.arange(0, M, dtype=float)
    alpha = (M - 1) / 2.0
    beta = snp.astype(beta, "float64")
    return snp.divide(i0(snp.multiply(beta, np.sqrt(1 - ((n - alpha) / alpha) ** 2.0))),
                      i0(beta))
