"""``symgrad.scipy.linalg``: ``scipy.linalg`` on traced values, with SciPy's signatures.

``solve_triangular`` is the ``triangular_solve`` primitive (it reads only the triangle it is told
to, as SciPy does, and its derivative is masked to that triangle); ``cho_factor``/``cho_solve``
pair the Cholesky primitive with two triangular solves. ``solve``, ``inv``, ``det``, ``eigh``,
``svd``, ``qr``, ``norm`` and ``pinv`` are ``symgrad.numpy.linalg``'s factorizations behind
SciPy's arguments: ``assume_a`` picks the factorization and, as in SciPy, which entries of ``a``
are read (one triangle for "sym"/"pos", the diagonal for "diagonal"); ``eigh`` solves the
generalized problem through the Cholesky factor of ``b``. On plain arrays each calls SciPy when
it is installed, and otherwise computes the same with NumPy (SciPy is not a symgrad dependency).
"""
from __future__ import annotations

import numpy as np

from symgrad.core.primitive import bind
from symgrad.errors import ShapeError
from symgrad.frontend.loops import fori_loop
from symgrad.frontend.tracer import Tracer, implements as _implements
from symgrad.frontend.tracer import unsupported as _unsupported
from symgrad.numpy._common import as_float, at, guard, snp, traced
from symgrad.numpy import linalg as _linalg

__all__ = ["solve_triangular", "cholesky", "cho_factor", "cho_solve", "solve", "inv", "det",
           "eigh", "eigvalsh", "svd", "svdvals", "qr", "norm", "pinv", "block_diag", "expm"]

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


# --- SciPy's names for numpy.linalg's factorizations ----------------------------------------------

# SciPy's assume_a spellings, by what each reads of a.
_ASSUME = {None: "gen", "gen": "gen", "general": "gen", "banded": "gen",
           "sym": "sym", "symmetric": "sym", "her": "sym", "hermitian": "sym",
           "pos": "pos", "positive definite": "pos", "diagonal": "diagonal",
           "tridiagonal": "tridiagonal", "upper triangular": "upper", "lower triangular": "lower"}


def _square(a, name):
    A = as_float(a)
    if A.ndim != 2 or A.shape[0] != A.shape[1]:
        raise ShapeError(f"scipy.linalg.{name} expects a square matrix, got {tuple(A.shape)}"
                         f"{at()}; for a batch of matrices use symgrad.numpy.linalg.{name}")
    return A


def _structured(A, kind, lower):
    """The matrix SciPy's solver for ``kind`` sees: symmetric ones built from the triangle it
    reads, a diagonal or tridiagonal one masked to its band (the other entries are never read,
    so they get no gradient)."""
    if kind == "sym":
        t = snp.tril(A) if lower else snp.triu(A)
        return snp.add(t, snp.swapaxes(snp.tril(A, -1) if lower else snp.triu(A, 1), -1, -2))
    if kind == "diagonal":
        return snp.multiply(A, snp.eye(A.shape[0], dtype=A.dtype))
    if kind == "tridiagonal":
        return snp.triu(snp.tril(A, 1), -1)
    return A


def solve(a, b, lower=False, overwrite_a=False, overwrite_b=False, check_finite=True,
          assume_a=None, transposed=False):
    """x with a x = b (a^T x = b with ``transposed``); b is (N,) or (N, K). ``assume_a``:
    "gen" (LU), "sym"/"her" (the ``lower`` or upper triangle read), "pos" (Cholesky of that
    triangle), "diagonal", "tridiagonal", "upper triangular"/"lower triangular", "banded"."""
    if assume_a not in _ASSUME:
        raise ValueError(f"{assume_a!r} is not a recognized matrix structure; use one of "
                         f"{sorted(k for k in _ASSUME if k)}")
    if not traced(a, b):
        sl = _scipy()
        if sl is not None:
            return sl.solve(a, b, lower=lower, assume_a=assume_a, transposed=transposed)
        a = np.asarray(a)
        return np.linalg.solve(a.T if transposed else a, b)
    A = _square(a, "solve")
    B = snp.asarray(b)
    if B.ndim not in (1, 2) or B.shape[0] != A.shape[0]:
        raise ShapeError(f"scipy.linalg.solve: a {tuple(A.shape)} and b {tuple(B.shape)} do not "
                         f"match (b must be ({A.shape[0]},) or ({A.shape[0]}, K)){at()}")
    kind = _ASSUME[assume_a]
    if kind in ("upper", "lower"):
        return solve_triangular(A, B, trans=1 if transposed else 0, lower=kind == "lower")
    if kind == "pos":
        return cho_solve(cho_factor(A, lower=lower), B)
    A = _structured(A, kind, lower)
    if transposed and kind != "sym":
        A = snp.swapaxes(A, -1, -2)
    return _linalg.solve(A, B if B.dtype == A.dtype else snp.astype(B, A.dtype))


def inv(a, overwrite_a=False, check_finite=True, *, assume_a=None, lower=False):
    """a^-1; ``assume_a`` and ``lower`` as in ``solve``."""
    if not traced(a):
        sl = _scipy()
        if sl is not None:
            return sl.inv(a, assume_a=assume_a, lower=lower)
        return np.linalg.inv(a)
    A = _square(a, "inv")
    return solve(A, snp.eye(A.shape[0], dtype=A.dtype), lower=lower, assume_a=assume_a)


def det(a, overwrite_a=False, check_finite=True):
    if not traced(a):
        sl = _scipy()
        return sl.det(a) if sl is not None else np.linalg.det(a)
    return _linalg.det(_square(a, "det"))


def eigh(a, b=None, *, lower=True, eigvals_only=False, overwrite_a=False, overwrite_b=False,
         type=1, check_finite=True, subset_by_index=None, subset_by_value=None, driver=None):
    """Eigenvalues (ascending) and eigenvectors of a symmetric a, read from its ``lower`` (or
    upper) triangle; with b (symmetric positive definite), of a v = w b v (``type`` 1), with
    b-orthonormal vectors, through b's Cholesky factor L: eigh(L^-1 a L^-T), v = L^-T u.
    ``subset_by_index`` (lo, hi) keeps eigenpairs lo..hi."""
    if not traced(a, b):
        sl = _scipy()
        if sl is not None:
            return sl.eigh(a, b, lower=lower, eigvals_only=eigvals_only, type=type,
                           subset_by_index=subset_by_index, subset_by_value=subset_by_value,
                           driver=driver)
    if type != 1:
        raise NotImplementedError(f"scipy.linalg.eigh(type={type}) is not traced{at()}; "
                                  f"type 1 (a v = w b v) is")
    if subset_by_value is not None:
        raise NotImplementedError(f"scipy.linalg.eigh(subset_by_value=...) is not traced{at()}: "
                                  f"how many eigenvalues fall in the interval is known only "
                                  f"from the values; use subset_by_index or mask the result")
    A = _square(a, "eigh")
    uplo = "L" if lower else "U"
    if b is None:
        w, v = _linalg.eigh(A, uplo)
    else:
        L = cholesky(_square(b, "eigh"), lower=lower)
        if not lower:       # cholesky(upper) gave U = L^T
            L = snp.swapaxes(L, -1, -2)
        # C = L^-1 a L^-T, from the triangle of a it reads (symmetrized first)
        S = _structured(A, "sym", lower)
        C = solve_triangular(L, snp.swapaxes(solve_triangular(L, S, lower=True), -1, -2),
                             lower=True)
        w, u = _linalg.eigh(C, "L")
        v = solve_triangular(L, u, trans=1, lower=True)
    if subset_by_index is not None:
        lo, hi = (int(i) for i in subset_by_index)
        n = A.shape[0]
        if not 0 <= lo <= hi < n:
            raise ValueError(f"subset_by_index must be 0 <= lo <= hi < {n}, got {(lo, hi)}")
        w, v = w[lo:hi + 1], v[:, lo:hi + 1]
    return w if eigvals_only else (w, v)


def eigvalsh(a, b=None, *, lower=True, overwrite_a=False, overwrite_b=False, type=1,
             check_finite=True, subset_by_index=None, subset_by_value=None, driver=None):
    return eigh(a, b, lower=lower, eigvals_only=True, type=type,
                subset_by_index=subset_by_index, subset_by_value=subset_by_value, driver=driver)


def svd(a, full_matrices=True, compute_uv=True, overwrite_a=False, check_finite=True,
        lapack_driver="gesdd"):
    """(U, s, Vh), s descending, or s; full_matrices=True only for square a when traced."""
    if lapack_driver not in ("gesdd", "gesvd"):
        raise ValueError('lapack_driver must be "gesdd" or "gesvd", not "%s"' % lapack_driver)
    if not traced(a):
        sl = _scipy()
        if sl is not None:
            return sl.svd(a, full_matrices, compute_uv, lapack_driver=lapack_driver)
        return np.linalg.svd(a, full_matrices, compute_uv)
    A = as_float(a)
    if A.ndim != 2:
        raise ShapeError(f"scipy.linalg.svd expects a 2-D matrix, got {tuple(A.shape)}{at()}")
    return tuple(_linalg.svd(A, full_matrices, compute_uv)) if compute_uv else \
        _linalg.svd(A, full_matrices, compute_uv)


def svdvals(a, overwrite_a=False, check_finite=True):
    return svd(a, compute_uv=False)


def qr(a, overwrite_a=False, lwork=None, mode="full", pivoting=False, check_finite=True):
    """SciPy's modes: "full" (Q square; traced for m <= n), "economic" (reduced), "r" ((R,),
    R of the full size, m x n)."""
    if mode not in ("full", "economic", "r", "raw"):
        raise ValueError("Mode argument should be one of ['full', 'r', 'economic', 'raw']")
    if not traced(a):
        sl = _scipy()
        if sl is not None:
            return sl.qr(a, mode=mode, pivoting=pivoting)
    if pivoting:
        raise NotImplementedError(f"scipy.linalg.qr(pivoting=True) is not traced{at()}: the "
                                  f"column order depends on the values; use pivoting=False")
    if mode == "raw":
        raise NotImplementedError(f"scipy.linalg.qr(mode='raw') is not traced{at()}: LAPACK's "
                                  f"reflectors are not returned; use mode='economic'")
    A = as_float(a)
    if A.ndim != 2:
        raise ShapeError(f"scipy.linalg.qr expects a 2-D matrix, got {tuple(A.shape)}{at()}")
    m, n = A.shape
    if mode == "full" and m > n:
        raise NotImplementedError(f"scipy.linalg.qr(mode='full') of a tall {m} x {n} matrix is "
                                  f"not traced{at()}: the added columns of Q are not unique; "
                                  f"use mode='economic'")
    q, r = _linalg.qr(A, "reduced")
    if mode == "r":
        if m > n:
            r = snp.concatenate([r, snp.zeros((m - n, n), dtype=r.dtype)], 0)
        return (r,)
    return q, r


def norm(a, ord=None, axis=None, keepdims=False, check_finite=True):
    if not traced(a):
        sl = _scipy()
        if sl is not None:
            return sl.norm(a, ord, axis, keepdims)
    return _linalg.norm(a, ord, axis, keepdims)


def pinv(a, *, atol=None, rtol=None, return_rank=False, check_finite=True):
    """The pseudo-inverse through the SVD, singular values at most atol + rtol * max(s) taken
    as 0 (SciPy's defaults: atol 0, rtol max(M, N) * eps); with return_rank, (B, rank)."""
    if (atol is not None and not traced(atol) and atol < 0) or \
            (rtol is not None and not traced(rtol) and rtol < 0):
        raise ValueError("atol and rtol values must be positive.")
    if not traced(a, atol, rtol):
        sl = _scipy()
        if sl is not None:
            return sl.pinv(a, atol=atol, rtol=rtol, return_rank=return_rank)
    A = as_float(a)
    if A.ndim != 2:
        raise ShapeError(f"scipy.linalg.pinv expects a 2-D matrix, got {tuple(A.shape)}{at()}")
    u, s, vh = _linalg.svd(A, full_matrices=False)
    rtol = max(A.shape) * np.finfo(A.dtype).eps if rtol is None else rtol
    cutoff = snp.add(0.0 if atol is None else atol, snp.multiply(snp.max(s), rtol))
    B, kept = _linalg.pinv_from_svd(u, s, vh, cutoff)
    return (B, snp.count_nonzero(kept)) if return_rank else B


def block_diag(*arrs):
    """The block-diagonal matrix of the arguments (each at most 2-D; a 1-D one is a row),
    zeros elsewhere, in the arguments' common dtype."""
    if not traced(*arrs):
        sl = _scipy()
        if sl is not None:
            return sl.block_diag(*arrs)
    blocks = [snp.atleast_2d(snp.asarray(x)) for x in (arrs or ([],))]
    deep = [k for k, x in enumerate(blocks) if x.ndim > 2]
    if deep:
        raise ValueError(f"arguments in the following positions have dimension greater than 2: "
                         f"{deep}")
    dtype = np.result_type(*[x.dtype for x in blocks])
    cols = sum(x.shape[1] for x in blocks)
    rows, left = [], 0
    for x in blocks:
        r, c = x.shape
        rows.append(snp.concatenate([snp.zeros((r, left), dtype=dtype), snp.astype(x, dtype),
                                     snp.zeros((r, cols - left - c), dtype=dtype)], 1))
        left += c
    return snp.concatenate(rows, 0)


# --- the matrix exponential ----------------------------------------------------------------------

# Higham (2005), "The scaling and squaring method for the matrix exponential revisited": the
# [13/13] Pade approximant's coefficients b_0..b_13, and the 1-norm up to which it is exact to
# double precision.
_PADE13 = (64764752532480000.0, 32382376266240000.0, 7771770303897600.0, 1187353796428800.0,
           129060195264000.0, 10559470521600.0, 670442572800.0, 33522128640.0, 1323241920.0,
           40840800.0, 960960.0, 16380.0, 182.0, 1.0)
_THETA13 = 5.371920351148152


def _pade13(X):
    """r_13(X) = (V - U)^-1 (V + U), U the odd part and V the even part of the numerator."""
    b = _PADE13
    eye = snp.broadcast_to(snp.eye(X.shape[-1], dtype=X.dtype), X.shape)
    X2 = snp.matmul(X, X)
    X4 = snp.matmul(X2, X2)
    X6 = snp.matmul(X4, X2)
    U = snp.matmul(X, snp.matmul(X6, b[13] * X6 + b[11] * X4 + b[9] * X2)
                   + b[7] * X6 + b[5] * X4 + b[3] * X2 + b[1] * eye)
    V = (snp.matmul(X6, b[12] * X6 + b[10] * X4 + b[8] * X2)
         + b[6] * X6 + b[4] * X4 + b[2] * X2 + b[0] * eye)
    return _linalg.solve(V - U, V + U)


def expm(A, *, max_squarings=16):
    """The matrix exponential of A (..., n, n): scaling and squaring with the [13/13] Pade
    approximant (Higham 2005): A / 2^s with ||A / 2^s||_1 <= 5.37, then s squarings.

    s is known only from A's values, so the compiled loop has ``max_squarings`` steps (JAX's
    default and name), each squaring while its index is below s; a finite A whose norm needs
    more fails the call with an error naming the bound, where JAX returns NaN. An A holding
    inf or NaN gives NaN, as SciPy's expm does."""
    if not traced(A):
        sl = _scipy()
        if sl is not None:
            return sl.expm(A)
    X = as_float(A)
    if X.ndim < 2 or X.shape[-1] != X.shape[-2]:
        raise ShapeError(f"scipy.linalg.expm expects square matrices (..., n, n), got "
                         f"{tuple(X.shape)}{at()}")
    if not isinstance(max_squarings, (int, np.integer)) or max_squarings < 0:
        raise ValueError(f"max_squarings must be a non-negative int, got {max_squarings!r}")
    norm1 = snp.max(snp.sum(snp.abs(X), -2), -1)
    # Small norms (a zero one too) need no scaling; NaN stays NaN, for the guard below.
    s = snp.ceil(snp.log2(snp.maximum(norm1 / _THETA13, 1.0)))
    # An A holding inf or NaN gives NaN, as SciPy's does; a finite one too large, an error.
    too_many = (s > max_squarings) & snp.isfinite(s)
    message = (f"scipy.linalg.expm{at()}: the 1-norm of A needs more than max_squarings="
               f"{max_squarings} squarings; pass a larger max_squarings")
    if traced(s):
        s = guard(too_many, s, message)
    elif np.any(too_many):
        raise ValueError(message)
    # 2^-s exactly (exp2 of an integer is a power of two), in A's float type: no cast to an
    # integer, so a complex-step check passes through.
    gate = s[..., None, None]
    R = _pade13(X * snp.exp2(-gate))
    return fori_loop(0, max_squarings,
                     lambda i, R: snp.where(i < gate, snp.matmul(R, R), R), R)


# Registered as "scipy.linalg.<name>" (docs/numpy.md lists them). SciPy's own functions do not
# dispatch on Tracers: call these.
for _name in __all__:
    _implements(f"scipy.linalg.{_name}", globals()[_name])


def __getattr__(name):
    """A name this module lacks: an error naming it and the closest supported names."""
    if name.startswith("_"):
        raise AttributeError(f"module 'symgrad.scipy.linalg' has no attribute {name!r}")
    raise _unsupported(name, "symgrad.scipy.linalg", __all__)

