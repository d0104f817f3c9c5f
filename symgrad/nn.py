"""``symgrad.nn``: the activation and normalisation functions, in numerically stable forms.

Each is a composition of ``symgrad.numpy`` calls, so it works on plain arrays (NumPy) and traced
values alike, and its gradient comes from the primitives' rules. The names, arguments and
formulas are ``jax.nn``'s, so that code written for JAX runs by changing the import; where the
two differ it is said below (symgrad's subgradient convention at a kink, API.md section 1: the
gradient goes to the first argument of a tie, e.g. relu'(0) = 1 where JAX's is 0).
"""
from __future__ import annotations

import math as _math

import numpy as _np

from symgrad import numpy as snp
from symgrad.numpy._common import lift as _lift, traced as _traced, wrap as _wrap
from symgrad.core.primitives import REGISTRY as _REGISTRY, bind as _bind


def sigmoid(x):
    """1 / (1 + exp(-x)), as the ``logistic`` primitive (its derivative uses out * (1 - out))."""
    if not _traced(x):
        x = _np.asarray(x)
        x = x if x.dtype.kind in "fc" else x.astype(float)
        # exp(-|x|) never overflows; pick the form that divides by a number >= 1.
        z = _np.exp(-_np.abs(x))
        return _np.where(x >= 0, 1 / (1 + z), z / (1 + z))
    return _wrap(_bind("logistic", _lift((x,), need_float=True)[0]))


def relu(x):
    """max(x, 0). At 0 the gradient goes to x (the first argument), per API.md."""
    return snp.maximum(x, 0.0)


def softplus(x):
    """log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)): no overflow for large x."""
    return snp.add(snp.maximum(x, 0.0), snp.log1p(snp.exp(snp.negative(snp.abs(x)))))


def logsumexp(x, axis=None, keepdims=False):
    """log(sum(exp(x))) computed as m + log(sum(exp(x - m))) with m = max(x), no overflow."""
    m = snp.stop_gradient(snp.max(x, axis=axis, keepdims=True))
    s = snp.log(snp.sum(snp.exp(snp.subtract(x, m)), axis=axis, keepdims=True))
    out = snp.add(s, m)
    if not keepdims:
        out = snp.squeeze(out, axis=axis) if axis is not None else snp.reshape(out, ())
    return out


def log_softmax(x, axis=-1):
    """x - logsumexp(x): stable log-probabilities."""
    return snp.subtract(x, logsumexp(x, axis=axis, keepdims=True))


def softmax(x, axis=-1):
    """exp(x - max(x)) / sum(...): stable probabilities."""
    z = snp.exp(snp.subtract(x, snp.stop_gradient(snp.max(x, axis=axis, keepdims=True))))
    return snp.divide(z, snp.sum(z, axis=axis, keepdims=True))


def logmeanexp(x, axis=None, keepdims=False):
    """log(mean(exp(x))) = logsumexp(x) - log(n), without overflow."""
    x = snp.asarray(x)
    n = x.size if axis is None else _math.prod(x.shape[a] for a in _np.atleast_1d(axis))
    if not isinstance(n, int):            # a run-time size: count it (exact below 2**53)
        return snp.subtract(logsumexp(x, axis=axis, keepdims=keepdims),
                            snp.log(snp.sum(snp.ones_like(x), axis=axis, keepdims=keepdims)))
    return snp.subtract(logsumexp(x, axis=axis, keepdims=keepdims), _math.log(n))


# --- activations of jax.nn -------------------------------------------------------------------

def identity(x):
    return snp.asarray(x)


def tanh(x):
    return snp.tanh(x)


def relu6(x):
    """min(max(x, 0), 6). At 0 and 6 the gradient is 1 (JAX's is 0)."""
    return snp.minimum(snp.maximum(x, 0.0), 6.0)


def leaky_relu(x, negative_slope=0.01):
    """x where x >= 0, else negative_slope * x."""
    return snp.where(snp.greater_equal(x, 0.0), x, snp.multiply(negative_slope, x))


def elu(x, alpha=1.0):
    """x where x > 0, else alpha * (exp(x) - 1); exp only of the non-positive part (no
    overflow, and no inf in the branch not taken)."""
    positive = snp.greater(x, 0.0)
    return snp.where(positive, x, snp.multiply(alpha, snp.expm1(snp.where(positive, 0.0, x))))


def celu(x, alpha=1.0):
    """max(x, 0) + alpha * (exp(min(x, 0) / alpha) - 1)."""
    return snp.add(snp.maximum(x, 0.0),
                   snp.multiply(alpha, snp.expm1(snp.divide(snp.minimum(x, 0.0), alpha))))


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(x):
    """scale * elu(x, alpha) with the self-normalising constants."""
    return snp.multiply(_SELU_SCALE, elu(x, _SELU_ALPHA))


def _erf(x):
    if not _traced(x):
        return _REGISTRY["erf"].impl(_np.asarray(x, dtype=float))
    return _wrap(_bind("erf", _lift((x,), need_float=True)[0]))


def gelu(x, approximate=True):
    """x * Phi(x), with JAX's default tanh approximation of the normal CDF Phi
    (``approximate=False``: the exact x * (1 + erf(x / sqrt(2))) / 2)."""
    if approximate:
        inner = snp.multiply(_math.sqrt(2.0 / _math.pi),
                             snp.add(x, snp.multiply(0.044715, snp.power(x, 3))))
        return snp.multiply(x, snp.multiply(0.5, snp.add(1.0, snp.tanh(inner))))
    return snp.divide(snp.multiply(x, snp.add(_erf(snp.divide(x, _math.sqrt(2.0))), 1.0)), 2.0)


def silu(x):
    """x * sigmoid(x)."""
    return snp.multiply(x, sigmoid(x))


swish = silu


def log_sigmoid(x):
    """log(sigmoid(x)) = -softplus(-x), stable for large |x|."""
    return snp.negative(softplus(snp.negative(x)))


def log1mexp(x):
    """log(1 - exp(-x)) for x > 0, accurate near 0 and for large x."""
    near = snp.less(x, _math.log(2.0))
    return snp.where(near, snp.log(snp.negative(snp.expm1(snp.negative(x)))),
                     snp.log1p(snp.negative(snp.exp(snp.negative(x)))))


def soft_sign(x):
    """x / (|x| + 1)."""
    return snp.divide(x, snp.add(snp.abs(x), 1.0))


def hard_tanh(x):
    """x clipped to [-1, 1] (1 above 1, -1 below -1)."""
    return snp.where(snp.greater(x, 1.0), 1.0, snp.where(snp.less(x, -1.0), -1.0, x))


def hard_sigmoid(x):
    """relu6(x + 3) / 6."""
    return snp.divide(relu6(snp.add(x, 3.0)), 6.0)


def hard_silu(x):
    """x * hard_sigmoid(x)."""
    return snp.multiply(x, hard_sigmoid(x))


hard_swish = hard_silu


def mish(x):
    """x * tanh(softplus(x))."""
    return snp.multiply(x, snp.tanh(softplus(x)))


def squareplus(x, b=4):
    """(x + sqrt(x^2 + b)) / 2: a smooth relu."""
    return snp.divide(snp.add(x, snp.sqrt(snp.add(snp.square(x), b))), 2.0)


def sparse_plus(x):
    """0 below -1, x above 1, (x + 1)^2 / 4 between: a smooth relu with exact zeros."""
    return snp.where(snp.less_equal(x, -1.0), 0.0,
                     snp.where(snp.greater_equal(x, 1.0), x,
                               snp.divide(snp.square(snp.add(x, 1.0)), 4.0)))


def sparse_sigmoid(x):
    """(x + 1) / 2 clipped to [0, 1]."""
    return snp.multiply(0.5, snp.clip(snp.add(x, 1.0), 0.0, 2.0))


def glu(x, axis=-1):
    """a * sigmoid(b) for the two halves a, b of x along ``axis``."""
    x = snp.asarray(x)
    size = x.shape[axis]
    if not isinstance(size, int) or size % 2:
        raise ValueError(f"glu: axis {axis} must have an even size, got {size}")
    a, b = snp.split(x, 2, axis=axis)
    return snp.multiply(a, sigmoid(b))


# --- encodings and normalisation ---------------------------------------------------------------

def one_hot(x, num_classes, *, dtype=_np.float64, axis=-1):
    """1 at each integer of ``x`` along a new axis of ``num_classes`` (0 everywhere for a value
    outside [0, num_classes), as JAX). The dtype defaults to float64 (JAX: its default float)."""
    if not isinstance(num_classes, (int, _np.integer)):
        raise TypeError(f"one_hot: num_classes must be an int known while tracing, got "
                        f"{num_classes!r}")
    x = snp.asarray(x)
    position = axis if axis >= 0 else x.ndim + 1 + axis
    if not 0 <= position <= x.ndim:
        raise ValueError(f"one_hot: axis {axis} is out of bounds for the result's "
                         f"{x.ndim + 1} dimensions")
    classes = snp.reshape(snp.arange(num_classes), tuple(
        num_classes if i == position else 1 for i in range(x.ndim + 1)))
    return snp.astype(snp.equal(snp.expand_dims(x, position), classes), dtype)


def standardize(x, axis=-1, mean=None, variance=None, epsilon=1e-5):
    """(x - mean) / sqrt(variance + epsilon) along ``axis``. The variance is mean((x - m)^2),
    two passes, where JAX computes mean(x^2) - m^2 (equal up to rounding, more accurate when the
    mean is large)."""
    if mean is None:
        mean = snp.mean(x, axis=axis, keepdims=True)
    if variance is None:
        variance = snp.mean(snp.square(snp.subtract(x, mean)), axis=axis, keepdims=True)
    return snp.divide(snp.subtract(x, mean), snp.sqrt(snp.add(variance, epsilon)))


__all__ = ["sigmoid", "relu", "softplus", "logsumexp", "log_softmax", "softmax", "logmeanexp",
           "identity", "tanh", "relu6", "leaky_relu", "elu", "celu", "selu", "gelu", "silu",
           "swish", "log_sigmoid", "log1mexp", "soft_sign", "hard_tanh", "hard_sigmoid",
           "hard_silu", "hard_swish", "mish", "squareplus", "sparse_plus", "sparse_sigmoid", "glu",
           "one_hot", "standardize"]
