"""``symgrad.scipy.linalg``: SciPy's triangular and Cholesky solves on traced values.

``solve_triangular`` is the ``triangular_solve`` primitive (it reads only the triangle it is told
to, as SciPy does, and its derivative is masked to that triangle); ``cho_factor``/``cho_solve``
pair the Cholesky primitive with two triangular solves. On plain arrays each calls SciPy when it
is installed, and otherwise computes the same with NumPy (SciPy is not a symgrad dependency).
"""
from __future__ import annotations

import numpy as np

from symgrad.core.primitive import bind
from symgrad.errors import ShapeError
from symgrad.frontend.tracer import Tracer, implements as _implements
from symgrad.frontend.tracer import unsupported as _unsupported
from symgrad.numpy._common import as_float, at, snp, traced
from symgrad.numpy import linalg as _linalg

__all__ = ["solve_triangular", "cholesky", "cho_factor", "cho_solve"]

_TRANS = {0: False, "N": False, 1: True, "T": True, 2: True, "C": True}


def _scipy():
    try:
        import scipy.linalg
        return scipy.linalg
    except ImportError:
        return None


def _solve_triangular(a, b, trans, lower, unit_diagonal):
    """The same solve as the primitive, with NumPy: tri(a) (or its transpose) solved."""
    t = np.tril(a) if lower else np.triu(a)
    if unit_diagonal:
        t = t - np.diag(np.diag(t)) + np.eye(t.shape[-1])
    if _TRANS[trans]:
        t = t.T
    return np.linalg.solve(t, b)


def solve_triangular(a, b, trans=0, lower=False, unit_diagonal=False, overwrite_b=False,
                     check_finite=True):
    """x with op(tri(a)) x = b, tri the lower or upper triangle of a, op the transpose for
    trans=1 ('T') or 2 ('C', the same for real a)."""
    if trans not in _TRANS:
        raise ValueError(f"incorrect value for trans: {trans!r}; use 0, 1, 2, 'N', 'T' or 'C'")
    if not traced(a, b):
        sl = _scipy()
        if sl is not None:
            return sl.solve_triangular(a, b, trans=trans, lower=lower,
                                       unit_diagonal=unit_diagonal)
        return _solve_triangular(np.asarray(a), np.asarray(b), trans, lower, unit_diagonal)
    A = as_float(a)
    B = snp.asarray(b)
    B = B if B.dtype == A.dtype else snp.astype(B, A.dtype)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ShapeError(f"solve_triangular expects a square matrix, got {A.shape}{at()}")
    vector = B.ndim == 1
    if vector:
        B = snp.reshape(B, (B.shape[0], 1))
    if B.ndim != 2 or B.shape[0] != A.shape[0]:
        raise ShapeError(f"solve_triangular: shapes of a {A.shape} and b {B.shape} are "
                         f"incompatible{at()}")
    x = Tracer(bind("triangular_solve", A.irvar, B.irvar, lower=bool(lower),
                    transpose_a=_TRANS[trans], unit_diagonal=bool(unit_diagonal)))
    return snp.reshape(x, (x.shape[0],)) if vector else x


def cholesky(a, lower=False, overwrite_a=False, check_finite=True):
    """The Cholesky factor: upper U with U^T U = a by default (SciPy's), lower with lower=True.
    It reads the triangle it returns, as SciPy does."""
    if not traced(a):
        sl = _scipy()
        if sl is not None:
            return sl.cholesky(a, lower=lower)
        a = np.asarray(a)
        return np.linalg.cholesky(a) if lower else np.linalg.cholesky(a.T).T
    A = as_float(a)
    if lower:
        return _linalg.cholesky(A)
    return snp.swapaxes(_linalg.cholesky(snp.swapaxes(A, -1, -2)), -1, -2)


def cho_factor(a, lower=False, overwrite_a=False, check_finite=True):
    """(c, lower): the factor with zeros in the other triangle (SciPy leaves whatever a held
    there; both are valid input to cho_solve)."""
    if not traced(a):
        sl = _scipy()
        if sl is not None:
            return sl.cho_factor(a, lower=lower)
    return cholesky(a, lower=lower), lower


def cho_solve(c_and_lower, b, overwrite_b=False, check_finite=True):
    """x with a x = b, given cho_factor(a): two triangular solves."""
    c, lower = c_and_lower
    if not traced(c, b):
        sl = _scipy()
        if sl is not None:
            return sl.cho_solve((c, lower), b)
        c = np.asarray(c)
        y = _solve_triangular(c, b, 0 if lower else 1, lower, False)
        return _solve_triangular(c, y, 1 if lower else 0, lower, False)
    # lower: L L^T x = b;  upper: U^T U x = b.
    y = solve_triangular(c, b, trans=0 if lower else 1, lower=lower)
    return solve_triangular(c, y, trans=1 if lower else 0, lower=lower)


# Registered as "scipy.linalg.<name>" (docs/numpy.md lists them). SciPy's own functions do not
# dispatch on Tracers: call these.
for _name in __all__:
    _implements(f"scipy.linalg.{_name}", globals()[_name])


def __getattr__(name):
    """A name this module lacks: an error naming it and the closest supported names."""
    if name.startswith("_"):
        raise AttributeError(f"module 'symgrad.scipy.linalg' has no attribute {name!r}")
    raise _unsupported(name, "symgrad.scipy.linalg", __all__)

