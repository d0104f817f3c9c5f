"""``symgrad.nn``: the activation and normalisation functions, in numerically stable forms.

Each is a composition of ``symgrad.numpy`` calls, so it works on plain arrays (NumPy) and traced
values alike, and its gradient comes from the primitives' rules.
"""
from __future__ import annotations

import numpy as _np

from symgrad import numpy as snp
from symgrad.numpy._common import lift, traced, wrap
from symgrad.core.primitives import bind


def sigmoid(x):
    """1 / (1 + exp(-x)), as the ``logistic`` primitive (its derivative uses out * (1 - out))."""
    if not traced(x):
        x = _np.asarray(x)
        x = x if x.dtype.kind in "fc" else x.astype(float)
        # exp(-|x|) never overflows; pick the form that divides by a number >= 1.
        z = _np.exp(-_np.abs(x))
        return _np.where(x >= 0, 1 / (1 + z), z / (1 + z))
    return wrap(bind("logistic", lift((x,), need_float=True)[0]))


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


__all__ = ["sigmoid", "relu", "softplus", "logsumexp", "log_softmax", "softmax"]
