"""``symgrad.numpy.linalg``: ``numpy.linalg`` on traced values, with first and higher derivatives.

Registered as "linalg.<name>", so ``np.linalg.solve(A, b)`` on traced arrays lands here too. Each
function is NumPy's on plain arrays. On traced values it is built on the factorization
primitives of ``symgrad.core.primitives.linalg`` (cholesky, triangular_solve, solve, slogdet, qr,
eigh, svd), whose derivative rules are written in IR and so compose (``hessian`` of a
log-determinant works). The rest are composites: ``inv`` solves against the identity, ``det`` is
sign * exp(log|det|), ``pinv`` and ``lstsq`` go through the SVD, ``norm`` computes NumPy's sums
and maxima (its 2-norm has the gradient 0 at 0, not NaN).

Differences from NumPy (see docs/linalg.md): a singular or non-positive-definite matrix gives
inf/NaN instead of raising LinAlgError (the error cannot be raised from compiled code);
eigenvectors and singular vectors are normalized so that the entry of largest magnitude of each
(of each column of U) is positive, where LAPACK's signs are arbitrary; ``svd`` with
``full_matrices=True`` (NumPy's default) is supported for square matrices, where it is the same as
the reduced one; ``eig`` (general, complex eigenvalues) is not traced.
"""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from symgrad.core.primitive import bind
from symgrad.core.primitives import linalg as _prim
from symgrad.errors import ShapeError
from symgrad.frontend.tracer import Tracer, unsupported as _unsupported
from symgrad.numpy._common import as_float, at, axes_tuple, axis_index, snp, traced
from symgrad.numpy.statistics import safe_sqrt

__all__ = ["solve", "inv", "det", "slogdet", "cholesky", "qr", "eigh", "eigvalsh", "svd",
           "svdvals", "norm", "pinv", "lstsq", "matrix_power", "multi_dot", "matrix_rank",
           "matmul", "outer", "trace", "diagonal", "matrix_transpose", "vector_norm",
           "matrix_norm", "cross", "tensordot", "vecdot", "cond", "tensorsolve", "tensorinv"]

SlogdetResult = namedtuple("SlogdetResult", "sign logabsdet")
EighResult = namedtuple("EighResult", "eigenvalues eigenvectors")
QRResult = namedtuple("QRResult", "Q R")
SVDResult = namedtuple("SVDResult", "U S Vh")


def _float_matrix(a, name, square=True):
    x = as_float(a)
    if x.ndim < 2:
        raise ShapeError(f"linalg.{name}: {x.ndim}-dimensional array given. Array must be at "
                         f"least two-dimensional{at()}")
    if square and x.shape[-1] != x.shape[-2]:
        raise ShapeError(f"linalg.{name}: last 2 dimensions of the array must be square, got "
                         f"{x.shape}{at()}")
    return x


def _batched(a, b):
    """a (..., n, n) and b (..., n, k) broadcast to one batch."""
    batch = tuple(np.broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2])))
    return (snp.broadcast_to(a, batch + tuple(a.shape[-2:])),
            snp.broadcast_to(b, batch + tuple(b.shape[-2:])))


def _parts(packed, shapes):
    """Slice the packed last axis of a factorization into its results."""
    out, start = [], 0
    for shape in shapes:
        out.append(Tracer(_prim.packed_part(packed.irvar, start, shape)))
        start += int(np.prod(shape, dtype=np.int64))
    return out


# --- solves and determinants ---------------------------------------------------------------------

def solve(a, b):
    """x with a @ x = b (NumPy 2: b is a vector only when 1-D); LU with partial pivoting."""
    if not traced(a, b):
        return np.linalg.solve(a, b)
    A = _float_matrix(a, "solve")
    B = snp.astype(snp.asarray(b), A.dtype) if snp.asarray(b).dtype != A.dtype else \
        snp.asarray(b)
    vector = B.ndim == 1
    if vector:
        B = snp.reshape(B, (B.shape[0], 1))
    if B.shape[-2] != A.shape[-1]:
        raise ShapeError(f"linalg.solve: a {A.shape} and b {snp.asarray(b).shape} do not "
                         f"match{at()}")
    A, B = _batched(A, B)
    x = Tracer(bind("solve", A.irvar, B.irvar))
    return snp.reshape(x, tuple(x.shape[:-1])) if vector else x


def inv(a):
    """a^-1, as solve(a, I)."""
    if not traced(a):
        return np.linalg.inv(a)
    A = _float_matrix(a, "inv")
    eye = snp.broadcast_to(snp.eye(A.shape[-1], dtype=A.dtype), A.shape)
    return Tracer(bind("solve", A.irvar, eye.irvar))


def slogdet(a):
    """(sign, log|det a|): LU; the gradient of log|det| is a^-T."""
    if not traced(a):
        return np.linalg.slogdet(a)
    A = _float_matrix(a, "slogdet")
    sign, logabs = _parts(Tracer(bind("slogdet", A.irvar)), [(), ()])
    return SlogdetResult(sign, logabs)


def det(a):
    """det a = sign * exp(log|det a|)."""
    if not traced(a):
        return np.linalg.det(a)
    sign, logabs = slogdet(a)
    return snp.multiply(sign, snp.exp(logabs))


def tensorsolve(a, b, axes=None):
    """x with tensordot(a, x, x.ndim) = b: a's trailing axes (after moving ``axes`` to the
    end) reshaped into one square system, as NumPy does."""
    if not traced(a, b):
        return np.linalg.tensorsolve(a, b, axes)
    A, B = as_float(a), snp.asarray(b)
    if axes is not None:
        order = [k for k in range(A.ndim) if k not in
                 {axis_index(ax, A.ndim) for ax in axes}]
        A = snp.transpose(A, order + [axis_index(ax, A.ndim) for ax in axes])
    shape = tuple(A.shape[B.ndim:])
    rows = int(np.prod(A.shape[:B.ndim], dtype=np.int64))
    cols = int(np.prod(shape, dtype=np.int64))
    if rows != cols or B.size != rows:
        raise ShapeError(f"linalg.tensorsolve: a {tuple(A.shape)} and b {tuple(B.shape)} do not "
                         f"make a square system (prod(a.shape[b.ndim:]) must equal b.size, "
                         f"{cols} against {B.size}){at()}")
    x = solve(snp.reshape(A, (rows, cols)), snp.ravel(B))
    return snp.reshape(x, shape)


def tensorinv(a, ind=2):
    """The inverse of a with respect to tensordot(., ., ind): its first ``ind`` axes against
    the rest, reshaped into one square matrix and inverted, as NumPy does."""
    if not traced(a):
        return np.linalg.tensorinv(a, ind)
    A = as_float(a)
    if not isinstance(ind, (int, np.integer)) or ind <= 0:
        raise ValueError("Invalid ind argument.")
    rows = int(np.prod(A.shape[:ind], dtype=np.int64))
    cols = int(np.prod(A.shape[ind:], dtype=np.int64))
    if rows != cols:
        raise ShapeError(f"linalg.tensorinv: a {tuple(A.shape)} split after axis {ind} is a "
                         f"{rows} x {cols} matrix, not a square one{at()}")
    inverse = inv(snp.reshape(A, (rows, cols)))
    return snp.reshape(inverse, tuple(A.shape[ind:]) + tuple(A.shape[:ind]))


def cond(x, p=None):
    """The condition number: the ratio of extreme singular values for p None, 2 and -2, else
    norm(x, p) * norm(inv(x), p), as NumPy computes it. A singular matrix gives inf or NaN
    (NumPy turns NaN into inf where x holds no NaN)."""
    if not traced(x):
        return np.linalg.cond(x, p)
    X = _float_matrix(x, "cond", square=p not in (None, 2, -2))
    if p in (None, 2, -2):
        s = svd(X, compute_uv=False)
        big, small = s[..., 0], s[..., -1]
        return snp.divide(small, big) if p == -2 else snp.divide(big, small)
    return snp.multiply(norm(X, p, axis=(-2, -1)), norm(inv(X), p, axis=(-2, -1)))


def matrix_power(a, n):
    """a^n by repeated squaring (n < 0: of inv(a))."""
    if not traced(a):
        return np.linalg.matrix_power(a, n)
    if not isinstance(n, (int, np.integer)):
        raise TypeError("exponent must be an integer")
    A = snp.asarray(a)
    if A.ndim < 2 or A.shape[-1] != A.shape[-2]:
        raise ShapeError(f"linalg.matrix_power needs square matrices, got {A.shape}{at()}")
    if n == 0:
        return snp.broadcast_to(snp.eye(A.shape[-1], dtype=A.dtype), A.shape)
    if n < 0:
        A, n = inv(A), -n
    result, power = None, A
    while n:
        if n & 1:
            result = power if result is None else snp.matmul(result, power)
        n >>= 1
        if n:
            power = snp.matmul(power, power)
    return result


def multi_dot(arrays, *, out=None):
    """The product of a chain of matrices, in the order of fewest multiplications (the
    textbook dynamic program over the known shapes)."""
    if not traced(*arrays):
        return np.linalg.multi_dot(arrays, out=out)
    mats = [snp.asarray(x) for x in arrays]
    if len(mats) < 2:
        raise ValueError("Expecting at least two arrays.")
    first_1d, last_1d = mats[0].ndim == 1, mats[-1].ndim == 1
    if first_1d:
        mats[0] = snp.reshape(mats[0], (1, mats[0].shape[0]))
    if last_1d:
        mats[-1] = snp.reshape(mats[-1], (mats[-1].shape[0], 1))
    dims_ = [m.shape[0] for m in mats] + [mats[-1].shape[1]]
    n = len(mats)
    cost = [[0] * n for _ in range(n)]
    split = [[0] * n for _ in range(n)]
    for length in range(1, n):
        for i in range(n - length):
            j = i + length
            cost[i][j] = float("inf")
            for k in range(i, j):
                c = cost[i][k] + cost[k + 1][j] + dims_[i] * dims_[k + 1] * dims_[j + 1]
                if c < cost[i][j]:
                    cost[i][j], split[i][j] = c, k

    def product(i, j):
        if i == j:
            return mats[i]
        k = split[i][j]
        return snp.matmul(product(i, k), product(k + 1, j))
    result = product(0, n - 1)
    if first_1d and last_1d:
        return snp.reshape(result, ())
    if first_1d:
        return snp.reshape(result, (result.shape[-1],))
    if last_1d:
        return snp.reshape(result, (result.shape[0],))
    return result


# --- factorizations ------------------------------------------------------------------------------

def cholesky(a, /, *, upper=False):
    """Lower L with L L^T = a, reading a's lower triangle (upper=True: L^T)."""
    if not traced(a):
        return np.linalg.cholesky(a, upper=upper) if upper else np.linalg.cholesky(a)
    A = _float_matrix(a, "cholesky")
    L = Tracer(bind("cholesky", A.irvar))
    return snp.swapaxes(L, -1, -2) if upper else L


def qr(a, mode="reduced"):
    """Reduced QR by Householder reflections (LAPACK's signs): (Q, R), or R for mode='r'."""
    if not traced(a):
        return np.linalg.qr(a, mode)
    A = _float_matrix(a, "qr", square=False)
    m, n = A.shape[-2:]
    k = min(m, n)
    if mode == "complete" and m > n:
        raise NotImplementedError(f"linalg.qr(mode='complete') of a tall matrix is not traced"
                                  f"{at()}; use mode='reduced'")
    if mode not in ("reduced", "complete", "r"):
        raise ValueError(f"linalg.qr: mode {mode!r} is not supported on traced values "
                         f"(reduced, complete, r)")
    q, r = _parts(Tracer(bind("qr", A.irvar)), [(m, k), (k, n)])
    return r if mode == "r" else QRResult(q, r)


def eigh(a, UPLO="L"):
    """Eigenvalues (ascending) and eigenvectors of a symmetric matrix, read from its lower (or
    upper) triangle."""
    if not traced(a):
        return np.linalg.eigh(a, UPLO)
    A = _float_matrix(a, "eigh")
    if UPLO not in ("L", "U"):
        raise ValueError("UPLO argument must be 'L' or 'U'")
    if UPLO == "U":
        A = snp.swapaxes(A, -1, -2)
    n = A.shape[-1]
    w, v = _parts(Tracer(bind("eigh", A.irvar)), [(n,), (n, n)])
    return EighResult(w, v)


def eigvalsh(a, UPLO="L"):
    if not traced(a):
        return np.linalg.eigvalsh(a, UPLO)
    return eigh(a, UPLO)[0]


def svd(a, full_matrices=True, compute_uv=True, hermitian=False):
    """Singular value decomposition (U, S, Vh), S descending; reduced, or full for square a."""
    if not traced(a):
        return np.linalg.svd(a, full_matrices, compute_uv, hermitian)
    A = _float_matrix(a, "svd", square=False)
    m, n = A.shape[-2:]
    k = min(m, n)
    if compute_uv and full_matrices and m != n:
        raise NotImplementedError(f"linalg.svd(full_matrices=True) of a {m} x {n} matrix is "
                                  f"not traced{at()}: the added singular vectors are not "
                                  f"unique; pass full_matrices=False")
    u, s, vh = _parts(Tracer(bind("svd", A.irvar)), [(m, k), (k,), (k, n)])
    return SVDResult(u, s, vh) if compute_uv else s


def svdvals(x, /):
    if not traced(x):
        return np.linalg.svd(x, compute_uv=False)
    return svd(x, compute_uv=False)


def matrix_rank(A, tol=None, hermitian=False, *, rtol=None):
    """The number of singular values above the tolerance (NumPy's default: S.max() * max(M, N)
    * eps). No gradient."""
    if not traced(A, tol):
        return np.linalg.matrix_rank(A, tol, hermitian, rtol=rtol)
    x = as_float(A)
    if x.ndim < 2:
        return snp.astype(snp.any(snp.not_equal(x, 0)), "int64")
    s = svd(x, compute_uv=False)
    if tol is None:
        eps = np.finfo(x.dtype).eps
        rt = max(x.shape[-2:]) * eps if rtol is None else rtol
        tol = snp.multiply(snp.max(s, -1, keepdims=True), rt)
    else:
        tol = snp.expand_dims(snp.asarray(tol), -1)
    return snp.count_nonzero(snp.greater(s, tol), -1)


def pinv(a, rcond=None, hermitian=False, *, rtol=np._NoValue):
    """Pseudo-inverse V diag(1/s) U^T, singular values below rcond * max(s) taken as 0."""
    if not traced(a):
        kw = {} if rtol is np._NoValue else {"rtol": rtol}
        return np.linalg.pinv(a, rcond, hermitian, **kw) if rcond is not None else \
            np.linalg.pinv(a, hermitian=hermitian, **kw)
    A = _float_matrix(a, "pinv", square=False)
    m, n = A.shape[-2:]
    if rcond is None:
        rcond = (max(m, n) * np.finfo(A.dtype).eps
                 if rtol is np._NoValue or rtol is None else rtol)
    u, s, vh = svd(A, full_matrices=False)
    return pinv_from_svd(u, s, vh, snp.multiply(snp.max(s, -1, keepdims=True), rcond))[0]


def pinv_from_svd(u, s, vh, cutoff):
    """(V diag(1/s) U^T with the singular values at most ``cutoff`` taken as 0, the mask of
    those kept): the pseudo-inverse from a reduced SVD (NumPy's and SciPy's pinv)."""
    large = snp.greater(s, cutoff)
    s_inv = snp.where(large, snp.divide(1.0, snp.where(large, s, 1.0)), 0.0)
    return snp.matmul(snp.swapaxes(vh, -1, -2),
                      snp.multiply(snp.expand_dims(s_inv, -1), snp.swapaxes(u, -1, -2))), large


def lstsq(a, b, rcond=None):
    """Least squares through the SVD: (x, residuals, rank, s) as NumPy returns them; the
    residuals are empty unless the rank is full and a is tall (known only for full rank here:
    symgrad returns them whenever a is tall)."""
    if not traced(a, b):
        return np.linalg.lstsq(a, b, rcond=rcond)
    A = _float_matrix(a, "lstsq", square=False)
    if A.ndim != 2:
        raise ShapeError(f"linalg.lstsq needs a 2-D matrix, got {A.shape}{at()}")
    B = snp.asarray(b)
    m, n = A.shape
    if rcond is None:
        rcond = np.finfo(A.dtype).eps * max(m, n)
    x = snp.matmul(pinv(A, rcond), B)
    s = svd(A, compute_uv=False)
    rank = matrix_rank(A, snp.multiply(snp.max(s), rcond))
    if m > n:
        r = snp.subtract(snp.matmul(A, x), B)
        resid = snp.sum(snp.multiply(r, r), 0)
        if B.ndim == 1:
            resid = snp.reshape(resid, (1,))
    else:
        resid = snp.zeros((0,), dtype=A.dtype)
    return x, resid, rank, s


# --- norms ---------------------------------------------------------------------------------------

def _vector_norm(x, ord, axes, keepdims):
    absx = snp.abs(x)
    if ord is None or ord == 2:
        return safe_sqrt(snp.sum(snp.multiply(x, x), axes, keepdims=keepdims))
    if ord == np.inf:
        return snp.max(absx, axes, keepdims=keepdims)
    if ord == -np.inf:
        return snp.min(absx, axes, keepdims=keepdims)
    if ord == 0:
        return snp.astype(snp.sum(snp.not_equal(x, 0), axes, keepdims=keepdims), x.dtype)
    if ord == 1:
        return snp.sum(absx, axes, keepdims=keepdims)
    if isinstance(ord, str):
        raise ValueError(f"Invalid norm order '{ord}' for vectors")
    p = float(ord)
    return snp.power(snp.sum(snp.power(absx, p), axes, keepdims=keepdims), 1.0 / p)


def _matrix_norm(x, ord, axes, keepdims):
    r, c = axes
    if ord is None or ord == "fro":
        out = safe_sqrt(snp.sum(snp.multiply(x, x), axes))
    elif ord == "nuc" or ord in (2, -2):
        moved = snp.moveaxis(x, (r, c), (-2, -1))
        s = svd(moved, compute_uv=False)
        out = snp.sum(s, -1) if ord == "nuc" else snp.max(s, -1) if ord == 2 else snp.min(s, -1)
    elif ord in (1, -1):
        sums = snp.sum(snp.abs(x), r, keepdims=True)
        out = (snp.max if ord == 1 else snp.min)(sums, c, keepdims=True)
        out = snp.reshape(out, tuple(d for i, d in enumerate(x.shape) if i not in axes))
    elif ord in (np.inf, -np.inf):
        sums = snp.sum(snp.abs(x), c, keepdims=True)
        out = (snp.max if ord == np.inf else snp.min)(sums, r, keepdims=True)
        out = snp.reshape(out, tuple(d for i, d in enumerate(x.shape) if i not in axes))
    else:
        raise ValueError("Invalid norm order for matrices.")
    if keepdims:
        out = snp.reshape(out, tuple(1 if i in axes else d for i, d in enumerate(x.shape)))
    return out


def norm(x, ord=None, axis=None, keepdims=False):
    """NumPy's vector and matrix norms (``ord`` None, fro, nuc, inf, -inf, 0, 1, -1, 2, -2, p);
    the gradient of the 2-norm and the Frobenius norm at 0 is 0, not NaN."""
    if not traced(x):
        return np.linalg.norm(x, ord, axis, keepdims)
    v = as_float(x)
    if axis is None:
        if ord is None:
            return _vector_norm(snp.ravel(v) if not keepdims else v,
                                None, tuple(range(v.ndim)) if keepdims else (0,), keepdims)
        if v.ndim == 1:
            return _vector_norm(v, ord, (0,), keepdims)
        if v.ndim == 2:
            return _matrix_norm(v, ord, (0, 1), keepdims)
        raise ValueError("Improper number of dimensions to norm.")
    axes = (axis,) if isinstance(axis, (int, np.integer)) else tuple(axis)
    if len(axes) == 1:
        return _vector_norm(v, ord, (axis_index(axes[0], v.ndim),), keepdims)
    if len(axes) == 2:
        r, c = axis_index(axes[0], v.ndim), axis_index(axes[1], v.ndim)
        if r == c:
            raise ValueError("Duplicate axes given.")
        return _matrix_norm(v, ord, (r, c), keepdims)
    raise ValueError("Improper number of dimensions to norm.")


def vector_norm(x, /, *, axis=None, keepdims=False, ord=2):
    if not traced(x):
        return np.linalg.vector_norm(x, axis=axis, keepdims=keepdims, ord=ord)
    v = as_float(x)
    axes = axes_tuple(axis, v.ndim)
    return _vector_norm(v, ord, axes, keepdims)


def matrix_norm(x, /, *, keepdims=False, ord="fro"):
    if not traced(x):
        return np.linalg.matrix_norm(x, keepdims=keepdims, ord=ord)
    v = as_float(x)
    return _matrix_norm(v, ord, (v.ndim - 2, v.ndim - 1), keepdims)


# --- numpy.linalg's aliases of array functions ---------------------------------------------------

def matmul(x1, x2, /):
    return snp.matmul(x1, x2)


def outer(x1, x2, /):
    return snp.outer(x1, x2)


def trace(x, /, *, offset=0, dtype=None):
    return snp.trace(x, offset, -2, -1, dtype)


def diagonal(x, /, *, offset=0):
    return snp.diagonal(x, offset, -2, -1)


def matrix_transpose(x, /):
    return snp.swapaxes(x, -1, -2)


def cross(x1, x2, /, *, axis=-1):
    return snp.cross(x1, x2, axis=axis)


def tensordot(x1, x2, /, *, axes=2):
    return snp.tensordot(x1, x2, axes)


def vecdot(x1, x2, /, *, axis=-1):
    return snp.sum(snp.multiply(x1, x2), axis)


def __getattr__(name):
    """``snp.linalg.eig`` and other names this module lacks: an error naming it and the closest
    supported names."""
    if name.startswith("_"):
        raise AttributeError(f"module 'symgrad.numpy.linalg' has no attribute {name!r}")
    raise _unsupported(name, "symgrad.numpy.linalg", __all__)

