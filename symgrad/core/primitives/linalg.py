"""Dense linear algebra: factorizations and solves of (batches of) small matrices.

Every primitive works on the last two axes and loops over the leading (batch) ones. Their C is
our own, unblocked, in the kernel itself, so an ahead-of-time library stays self-contained (libc
and libm only); from ``LAPACK_MIN`` on, each factorization also holds a call to LAPACK under
``#ifdef SYMGRAD_USE_BLAS``, which JIT builds (linking scipy-openblas32) take, as matrix
products call its gemm. docs/linalg.md gives the reasons and the measurements. The NumPy
evaluation calls LAPACK through ``numpy.linalg`` for real inputs; for the complex step it runs
the same algorithm as the C, written with analytic operations only (``x * x`` where LAPACK would
take ``|x|^2``, decisions on real parts), so the imaginary part carries the derivative through it.

A factorization with several results returns them packed into one array along the last axis
(``eigh``: the n eigenvalues, then the n x n eigenvectors row by row), which the front end
slices apart; the derivative rules take and give adjoints in the same packing.

Conventions, where NumPy's are arbitrary: eigenvectors and singular vectors are scaled by +-1 so
that the entry of largest magnitude of each (of U's columns, for the SVD) is positive; a factor
that does not exist (a matrix that is not positive definite, a singular system) gives NaN or
inf, as JAX does, where NumPy raises.

Derivative rules are the standard ones, written with these primitives and matmul, so they
compose to higher orders: Cholesky (Murray 2016), the symmetric eigenproblem and the SVD
(Townsend 2016, as in JAX and autograd), QR (the transpose of JAX's tangent rule).
"""
from __future__ import annotations

import functools

import numpy as np

from symgrad.core import batching, dims, ops
from symgrad.core.cspell import c_literal as _lit
from symgrad.core.primitive import Primitive, bind, register
from symgrad.core.primitives.cindex import dim as _d, plus as _plus, times as _times
from symgrad.core.types import TensorType
from symgrad.errors import DTypeError, ShapeError


# --- IR helpers shared by the rules -------------------------------------------------------------

def mT(x):
    """Swap the last two axes."""
    perm = tuple(range(x.ndim - 2)) + (x.ndim - 1, x.ndim - 2)
    return ops.transpose(x, perm)


def mm(a, b, ta=False, tb=False):
    return bind("matmul", a, b, transpose_a=ta, transpose_b=tb)


def _iota2(shape, axis):
    return bind("iota", shape=shape, dimension=len(shape) - 2 + axis, dtype="int64")


def band(x, lo_k=None, hi_k=None):
    """x with zeros outside diagonals lo_k <= j - i <= hi_k (tril: hi_k=0, triu: lo_k=0)."""
    rows, cols = _iota2(x.shape, 0), _iota2(x.shape, 1)
    diff = ops.sub(cols, rows)
    keep = None
    if lo_k is not None:
        keep = ops.ge(diff, ops.const(lo_k, "int64"))
    if hi_k is not None:
        upper = bind("le", diff, ops.const(hi_k, "int64"))
        keep = upper if keep is None else bind("select", keep, upper, keep)
    return ops.select(keep, x, ops.scalar_like(0, x))


def eye_like(x):
    """The identity of x's last two (square) axes, broadcast over its batch."""
    rows, cols = _iota2(x.shape, 0), _iota2(x.shape, 1)
    return ops.convert(ops.eq(rows, cols), x.dtype)


def diag_part(x):
    """The diagonal of x's last two axes, shape (..., n)."""
    n = x.shape[-1]
    flat = ops.reshape(x, x.shape[:-2] + (n * n,))
    nd = flat.ndim
    return bind("slice", flat, start=(0,) * nd, step=(1,) * (nd - 1) + (n + 1,),
                shape=x.shape[:-2] + (n,))


def diag_matrix(v):
    """The (..., n, n) matrix with v (..., n) on its diagonal."""
    n = v.shape[-1]
    shape = v.shape + (n,)
    full = ops.broadcast_in_dim(v, shape, tuple(range(v.ndim)))
    return ops.mul(full, eye_like(full))


def col(v):
    """(..., n) -> (..., n, 1) broadcast over columns later."""
    return ops.reshape(v, v.shape + (1,))


def row(v):
    return ops.reshape(v, v.shape[:-1] + (1, v.shape[-1]))


def sym_from_lower_adjoint(s):
    """The adjoint with respect to A of a function that reads only A's lower triangle as the
    symmetric matrix tril(A) + tril(A, -1)^T, given its adjoint s for that symmetric matrix."""
    return ops.sub(band(ops.add(s, mT(s)), hi_k=0), diag_matrix(diag_part(s)))


def sym_from_lower(t):
    """tril(t) + tril(t, -1)^T: the symmetric matrix a lower-triangle reader sees."""
    return ops.add(band(t, hi_k=0), mT(band(t, hi_k=-1)))


def packed_part(x, start, shape):
    """A slice of the packed last axis of x, reshaped to ``shape`` (batch dims prepended)."""
    nd = x.ndim
    size = int(np.prod(shape, dtype=np.int64))
    piece = bind("slice", x, start=(0,) * (nd - 1) + (start,), step=(1,) * nd,
                 shape=x.shape[:-1] + (size,))
    return ops.reshape(piece, x.shape[:-1] + tuple(shape))


def pack(parts, batch):
    """Parts (each batch + its own shape) flattened and joined along one last axis."""
    flat = [ops.reshape(p, tuple(batch) + (int(np.prod(p.shape[len(batch):], dtype=np.int64)),))
            for p in parts]
    return flat[0] if len(flat) == 1 else bind("concatenate", *flat, axis=len(batch))


def _square_type(a, name):
    if a.ndim < 2 or a.shape[-1] != a.shape[-2]:
        raise ShapeError(f"{name} needs square matrices (..., n, n), got shape {a.shape}")
    _static_float(a, name)


def _static_float(a, name):
    if a.dtype not in ("float32", "float64"):
        raise DTypeError(f"{name} needs float32 or float64 matrices, got {a.dtype}")
    if not all(dims.is_static(d) for d in a.shape):
        raise ShapeError(f"{name} needs static sizes, got shape {a.shape}")


# Machine epsilon per C type (the Jacobi SVD stops when every pair of columns is orthogonal to
# working precision).
_EPS = {"double": "2.220446049250313e-16", "float": "1.1920929e-07"}

# From this size on (n, or min(m, n) for QR and the SVD), JIT builds -- which link
# scipy-openblas32 and define SYMGRAD_USE_BLAS -- call its LAPACK (LAPACKE, row-major) instead
# of our loops, which are unblocked, and for eigh and the SVD (Jacobi) O(n^3) with a large
# constant: docs/linalg.md has the measurements. Ahead-of-time libraries, built
# without SYMGRAD_USE_BLAS, keep our routines and stay self-contained.
LAPACK_MIN = 24


def _with_lapack(size, lapack, own):
    """``own`` (C lines), or ``lapack`` under ``#ifdef SYMGRAD_USE_BLAS`` with ``own`` as the
    fallback, for a matrix of ``size``."""
    if size < LAPACK_MIN:
        return own
    return ["#ifdef SYMGRAD_USE_BLAS", *lapack, "#else", *own, "#endif"]


def _lapacke(t, name):
    return f"SYMGRAD_LAPACKE({'d' if t == 'double' else 's'}{name})"


def _batch(shape):
    return int(np.prod(shape[:-2], dtype=np.int64))


def _cost(per_matrix):
    """A ``cost`` rule: ``per_matrix(m, n, k)`` FLOPs (LAPACK Working Note 41's counts; m, n the
    first operand's last two sizes, k the right-hand sides or min(m, n)) times the batch."""
    def cost(node):
        a = node.inputs[0].shape
        m, n = a[-2], a[-1]
        k = node.inputs[1].shape[-1] if len(node.inputs) > 1 else min(m, n)
        return _batch(a) * int(per_matrix(m, n, k))
    return cost


def _nan_if_fails(fn, *arrays):
    try:
        return fn(*arrays)
    except np.linalg.LinAlgError:
        return None


# --- analytic NumPy algorithms (the complex step; the same steps as the C) ------------------------

def _chol_analytic(a):
    a = np.array(a, dtype=complex)
    n = a.shape[-1]
    L = np.zeros_like(a)
    for j in range(n):
        s = a[..., j, j] - np.sum(L[..., j, :j] * L[..., j, :j], axis=-1)
        L[..., j, j] = np.sqrt(s)
        for i in range(j + 1, n):
            L[..., i, j] = (a[..., i, j] - np.sum(L[..., i, :j] * L[..., j, :j], axis=-1)) \
                / L[..., j, j]
    return L


def _householder_qr(a):
    """Reduced QR by Householder reflections with LAPACK's sign choice (dgeqrf, dorgqr)."""
    a = np.array(a)
    m, n = a.shape[-2:]
    k = min(m, n)
    out_q, out_r = [], []
    for A in a.reshape((-1, m, n)):
        R = A.copy()
        vs, taus = [], []
        for j in range(k):
            alpha = R[j, j]
            x = R[j + 1:, j]
            xnorm2 = np.sum(x * x)
            if np.real(xnorm2) == 0:
                vs.append(np.zeros(m - j, dtype=R.dtype))
                taus.append(0.0)
                continue
            beta = -np.sqrt(alpha * alpha + xnorm2) * (1 if np.real(alpha) >= 0 else -1)
            tau = (beta - alpha) / beta
            v = np.concatenate([[1.0], x / (alpha - beta)]).astype(R.dtype)
            w = tau * (v @ R[j:, j:])
            R[j:, j:] -= np.outer(v, w)
            R[j, j] = beta
            R[j + 1:, j] = 0
            vs.append(v)
            taus.append(tau)
        Q = np.eye(m, k, dtype=R.dtype)
        for j in reversed(range(k)):
            v, tau = vs[j], taus[j]
            Q[j:, j:] -= tau * np.outer(v, v @ Q[j:, j:])
        out_q.append(Q)
        out_r.append(np.triu(R[:k, :]))
    batch = a.shape[:-2]
    return np.reshape(out_q, batch + (m, k)), np.reshape(out_r, batch + (k, n))


def _rotate(c, s, x, y):
    return c * x - s * y, s * x + c * y


def _jacobi_eigh(a):
    """Cyclic Jacobi, analytic: eigenvalues (unsorted) and eigenvectors of symmetric a."""
    A = np.array(a)
    n = A.shape[-1]
    V = np.eye(n, dtype=A.dtype)
    for _ in range(100):
        off = sum(np.real(A[p, q]) ** 2 for p in range(n) for q in range(p + 1, n))
        if off == 0 or off <= 1e-36 * np.sum(np.real(A) ** 2):
            break
        for p in range(n):
            for q in range(p + 1, n):
                if np.real(A[p, q]) == 0:
                    continue
                theta = (A[q, q] - A[p, p]) / (2 * A[p, q])
                sgn = 1 if np.real(theta) >= 0 else -1
                t = sgn / (sgn * theta + np.sqrt(theta * theta + 1))
                c = 1 / np.sqrt(t * t + 1)
                s = t * c
                A[:, p], A[:, q] = _rotate(c, s, A[:, p], A[:, q])
                A[p, :], A[q, :] = _rotate(c, s, A[p, :], A[q, :])
                V[:, p], V[:, q] = _rotate(c, s, V[:, p], V[:, q])
    return np.diagonal(A).copy(), V


def _jacobi_svd(a):
    """One-sided (Hestenes) Jacobi, analytic, for m >= n: U (m, n), s (n,), V (n, n)."""
    U = np.array(a)
    n = U.shape[-1]
    V = np.eye(n, dtype=U.dtype)
    for _ in range(100):
        rotated = False
        for p in range(n):
            for q in range(p + 1, n):
                alpha, beta = np.sum(U[:, p] * U[:, p]), np.sum(U[:, q] * U[:, q])
                gamma = np.sum(U[:, p] * U[:, q])
                scale = np.sqrt(np.real(alpha) * np.real(beta))
                if abs(np.real(gamma)) <= np.finfo(float).eps * scale:
                    continue
                rotated = True
                zeta = (beta - alpha) / (2 * gamma)
                sgn = 1 if np.real(zeta) >= 0 else -1
                t = sgn / (sgn * zeta + np.sqrt(1 + zeta * zeta))
                c = 1 / np.sqrt(1 + t * t)
                s = c * t
                U[:, p], U[:, q] = _rotate(c, s, U[:, p], U[:, q])
                V[:, p], V[:, q] = _rotate(c, s, V[:, p], V[:, q])
        if not rotated:
            break
    s = np.sqrt(np.sum(U * U, axis=0))
    return U / np.where(np.real(s) > 0, s, 1), s, V


def _sign_fix(vectors, also=None):
    """Scale each column by +-1 so that its entry of largest magnitude (the first such) is
    positive; the same signs scale the columns of ``also``."""
    idx = np.argmax(np.abs(np.real(vectors)), axis=-2)
    top = np.take_along_axis(np.real(vectors), idx[..., None, :], axis=-2)
    signs = np.where(top < 0, -1.0, 1.0)
    return vectors * signs, (None if also is None else also * signs)


# --- cholesky ---------------------------------------------------------------------------------

def _chol_type(a):
    _square_type(a, "cholesky")
    return TensorType(a.shape, a.dtype)


def _chol_impl(a):
    if np.iscomplexobj(a):
        return _chol_analytic(a)
    out = _nan_if_fails(np.linalg.cholesky, a)
    return np.full_like(a, np.nan) if out is None else out


def _chol_jvp(t, out, a):
    # L' = L phi(L^-1 S' L^-T), S' the symmetric tangent the lower triangle stands for, phi
    # the lower triangle with half the diagonal.
    if t[0] is None:
        return None
    L = out
    s = sym_from_lower(t[0])
    x = bind("triangular_solve", L, s, lower=True, transpose_a=False, unit_diagonal=False)
    y = mT(bind("triangular_solve", L, mT(x), lower=True, transpose_a=False,
                unit_diagonal=False))
    return mm(L, _phi(y))


def _phi(x):
    return ops.sub(band(x, hi_k=0), ops.mul(ops.scalar_like(0.5, x), diag_matrix(diag_part(x))))


def _chol_vjp(g, out, a):
    # The transpose of the tangent rule: S = L^-T phi(L^T G) L^-1, read back through the lower
    # triangle.
    L = out
    p = _phi(mm(L, g, ta=True))
    x = bind("triangular_solve", L, p, lower=True, transpose_a=True, unit_diagonal=False)
    s = mT(bind("triangular_solve", L, mT(x), lower=True, transpose_a=True, unit_diagonal=False))
    return (sym_from_lower_adjoint(s),)


def _chol_c(k):
    a, out = k.ins[0], k.out
    bi, = k.idx((_batch(a.shape),))   # the batch index: 0 for one matrix (no loop)
    n, t = a.shape[-1], out.ctype
    setup = [
        f"const {t} *_pa = {_plus(k.ptr(a), _times(bi, n * n))};",
        f"{t} *_pl = {_plus(k.ptr(out), _times(bi, n * n))};",
    ]
    # LAPACK's potrf on the lower triangle; from a failing pivot on, the rows are NaN.
    lapack = [
        f"for (int64_t _i = 0; _i < {n}; ++_i)",
        f"    for (int64_t _j = 0; _j < {n}; ++_j) _pl[_i * {n} + _j] = _j <= _i ? _pa[_i * {n} + _j] : "
        "0;",
        f"const int _info = {_lapacke(t, 'potrf')}(101, 'L', {n}, _pl, {n});",
        f"if (_info != 0) for (int64_t _r = _info > 0 ? (_info - 1) * {n} : 0; _r < {n * n}; "
        "++_r) "
        f"_pl[_r] = NAN;",
    ]
    own = [
        f"for (int64_t _r = 0; _r < {n * n}; ++_r) _pl[_r] = {_lit(0, t)};",
        f"for (int64_t _j = 0; _j < {n}; ++_j) {{",
        f"    {t} _s = _pa[_j * {n} + _j];",
        f"    for (int64_t _c = 0; _c < _j; ++_c) _s -= _pl[_j * {n} + _c] * _pl[_j * {n} "
        "+ _c];",
        # not positive definite: NaN (sqrt of a negative), and NaN spreads to what follows
        f"    _pl[_j * {n} + _j] = _s > 0 ? sqrt(_s) : NAN;",
        f"    for (int64_t _i = _j + 1; _i < {n}; ++_i) {{",
        f"        {t} _v = _pa[_i * {n} + _j];",
        f"        for (int64_t _c = 0; _c < _j; ++_c) _v -= _pl[_i * {n} + _c] * _pl[_j * "
        f"{n} + _c];",
        f"        _pl[_i * {n} + _j] = _v / _pl[_j * {n} + _j];",
        "    }",
        "}",
    ]
    return k.loop((_batch(a.shape),), [*setup, *_with_lapack(n, lapack, own)])


register(Primitive(
    name="cholesky", shape_rule=_chol_type, impl=_chol_impl, vjp=_chol_vjp, jvp=_chol_jvp,
    batch=functools.partial(batching.leading, "cholesky"),
    cost=_cost(lambda m, n, k: n ** 3 / 3),
    c_kernel=_chol_c,
    doc="cholesky(a): lower L with L L^T = a, reading a's lower triangle; NaN if not "
        "positive definite",
))


# --- triangular_solve -------------------------------------------------------------------------

def _tri_type(a, b, *, lower, transpose_a, unit_diagonal):
    _square_type(a, "triangular_solve")
    if b.ndim != a.ndim or b.shape[:-2] != a.shape[:-2] or b.shape[-2] != a.shape[-1]:
        raise ShapeError(f"triangular_solve needs b of shape (..., {a.shape[-1]}, k) with a's "
                         f"batch, got a {a.shape} and b {b.shape}")
    if a.dtype != b.dtype:
        raise DTypeError(f"operands have different dtypes {a.dtype} and {b.dtype}")
    return TensorType(b.shape, b.dtype)


def _tri_matrix(a, lower, unit_diagonal):
    n = a.shape[-1]
    m = np.tril(a) if lower else np.triu(a)
    if unit_diagonal:
        m = m - m * np.eye(n) + np.eye(n)
    return m


def _tri_impl(a, b, *, lower, transpose_a, unit_diagonal):
    m = _tri_matrix(a, lower, unit_diagonal)
    if transpose_a:
        m = np.swapaxes(m, -1, -2)
    lower_eff = lower != transpose_a
    n = m.shape[-1]
    x = np.zeros(np.broadcast_shapes(m.shape[:-2], b.shape[:-2]) + b.shape[-2:],
                 dtype=np.result_type(m, b))
    order = range(n) if lower_eff else range(n - 1, -1, -1)
    for i in order:
        s = b[..., i, :] - np.einsum("...j,...jk->...k", m[..., i, :], x)
        x[..., i, :] = s / m[..., i, i][..., None]
    return x


def _tri_mask(x, lower, unit_diagonal):
    if lower:
        return band(x, hi_k=-1 if unit_diagonal else 0)
    return band(x, lo_k=1 if unit_diagonal else 0)


def _tri_vjp(g, out, a, b, *, lower, transpose_a, unit_diagonal):
    # X = op(A)^-1 B:  dB = op(A)^-T G,  d op(A) = -dB X^T, kept on A's triangle.
    db = bind("triangular_solve", a, g, lower=lower, transpose_a=not transpose_a,
              unit_diagonal=unit_diagonal)
    dop = ops.neg(mm(db, out, tb=True))
    da = mT(dop) if transpose_a else dop
    return _tri_mask(da, lower, unit_diagonal), db


def _tri_jvp(t, out, a, b, *, lower, transpose_a, unit_diagonal):
    ta, tb = t
    if ta is None and tb is None:
        return None
    rhs = tb
    if ta is not None:
        dm = _tri_mask(ta, lower, unit_diagonal)
        prod = mm(dm, out, ta=transpose_a)
        rhs = ops.neg(prod) if rhs is None else ops.sub(rhs, prod)
    return bind("triangular_solve", a, rhs, lower=lower, transpose_a=transpose_a,
                unit_diagonal=unit_diagonal)


def _tri_c(k):
    a, b, out = k.ins[0], k.ins[1], k.out
    bi, = k.idx((_batch(a.shape),))   # the batch index: 0 for one matrix (no loop)
    n, nrhs, t = a.shape[-1], b.shape[-1], out.ctype
    lower, trans, unit = (k.attrs[x] for x in ("lower", "transpose_a", "unit_diagonal"))
    M = (lambda i, j: f"_pa[{j} * {n} + {i}]") if trans else \
        (lambda i, j: f"_pa[{i} * {n} + {j}]")
    forward = lower != trans
    rows = (f"for (int64_t _i = 0; _i < {n}; ++_i) {{" if forward else
            f"for (int64_t _i = {n} - 1; _i >= 0; --_i) {{")
    inner = ("for (int64_t _j = 0; _j < _i; ++_j)" if forward else
             f"for (int64_t _j = _i + 1; _j < {n}; ++_j)")
    return k.loop((_batch(a.shape),), [
        f"const {t} *_pa = {_plus(k.ptr(a), _times(bi, n * n))};",
        f"const {t} *_pb = {_plus(k.ptr(b), _times(bi, n * nrhs))};",
        f"{t} *_px = {_plus(k.ptr(out), _times(bi, n * nrhs))};",
        f"for (int64_t _c = 0; _c < {nrhs}; ++_c) {{",
        f"    {rows}",
        f"        {t} _s = _pb[_i * {nrhs} + _c];",
        f"        {inner} _s -= {M('_i', '_j')} * _px[_j * {nrhs} + _c];",
        f"        _px[_i * {nrhs} + _c] = {'_s' if unit else '_s / ' + M('_i', '_i')};",
        "    }",
        "}",
    ])


register(Primitive(
    name="triangular_solve", shape_rule=_tri_type, impl=_tri_impl, vjp=_tri_vjp, jvp=_tri_jvp,
    batch=functools.partial(batching.leading, "triangular_solve"),
    cost=_cost(lambda m, n, k: n * n * k),
    c_kernel=_tri_c,
    doc="triangular_solve[lower, transpose_a, unit_diagonal](a, b): op(a)^-1 b, reading one "
        "triangle of a",
))


# --- solve: LU with partial pivoting -------------------------------------------------------------

def _solve_type(a, b):
    _square_type(a, "solve")
    if b.ndim != a.ndim or b.shape[:-2] != a.shape[:-2] or b.shape[-2] != a.shape[-1]:
        raise ShapeError(f"solve needs b of shape (..., {a.shape[-1]}, k) with a's batch, got "
                         f"a {a.shape} and b {b.shape}")
    if a.dtype != b.dtype:
        raise DTypeError(f"operands have different dtypes {a.dtype} and {b.dtype}")
    return TensorType(b.shape, b.dtype)


def _solve_impl(a, b):
    with np.errstate(all="ignore"):
        out = _nan_if_fails(np.linalg.solve, a, b)
    return np.full(np.shape(b), np.nan, dtype=np.result_type(a, b)) if out is None else out


def _solve_vjp(g, out, a, b):
    db = bind("solve", mT(a), g)
    return ops.neg(mm(db, out, tb=True)), db


def _solve_jvp(t, out, a, b):
    ta, tb = t
    if ta is None and tb is None:
        return None
    rhs = tb
    if ta is not None:
        rhs = ops.neg(mm(ta, out)) if rhs is None else ops.sub(rhs, mm(ta, out))
    return bind("solve", a, rhs)


def _lu_lines(k, t, n, det=False):
    """Gaussian elimination with partial pivoting of W (n x n, row-major) in place; with
    ``det``, the sign and log|det| accumulate in ``sgn`` and ``logdet``. Without, the row swaps
    and eliminations are applied to X (n x nrhs) as well."""
    lines = [f"for (int64_t _c = 0; _c < {n}; ++_c) {{",
             "    int64_t _piv = _c;",
             f"    for (int64_t _i = _c + 1; _i < {n}; ++_i)",
             f"        if (fabs(_pw[_i * {n} + _c]) > fabs(_pw[_piv * {n} + _c])) _piv = "
             "_i;",
             "    if (_piv != _c) {",
             f"        for (int64_t _j = 0; _j < {n}; ++_j) {{ const {t} _s = _pw[_c * {n} + _j]; "
             f"_pw[_c * {n} + _j] = _pw[_piv * {n} + _j]; _pw[_piv * {n} + _j] = _s; }}"]
    if det:
        lines += ["        _sgn = -_sgn;", "    }",
                  f"    const {t} _u = _pw[_c * {n} + _c];",
                  "    if (_u == 0) { _sgn = 0; _logdet = -INFINITY; break; }",
                  "    if (_u < 0) _sgn = -_sgn;",
                  "    _logdet += log(fabs(_u));"]
    else:
        lines += [f"        for (int64_t _j = 0; _j < _nrhs; ++_j) {{ "
                  f"const {t} _s = _px[_c * _nrhs + _j]; "
                  "_px[_c * _nrhs + _j] = _px[_piv * _nrhs + _j]; "
                  "_px[_piv * _nrhs + _j] = _s; }",
                  "    }",
                  f"    const {t} _u = _pw[_c * {n} + _c];"]
    lines += [f"    for (int64_t _i = _c + 1; _i < {n}; ++_i) {{",
              f"        const {t} _f = _pw[_i * {n} + _c] / _u;",
              f"        for (int64_t _j = _c + 1; _j < {n}; ++_j) "
              f"_pw[_i * {n} + _j] -= _f * _pw[_c * {n} + _j];"]
    if not det:
        lines += ["        for (int64_t _j = 0; _j < _nrhs; ++_j) "
                  "_px[_i * _nrhs + _j] -= _f * _px[_c * _nrhs + _j];"]
    lines += ["    }", "}"]
    return lines


def _solve_c(k):
    a, b, out = k.ins[0], k.ins[1], k.out
    bi, = k.idx((_batch(a.shape),))   # the batch index: 0 for one matrix (no loop)
    n, nrhs, t = a.shape[-1], b.shape[-1], out.ctype
    ws = k.scratch(8 * (n * n + n))
    setup = [
        f"{t} *_pw = ({t} *){ws};",
        f"const int64_t _nrhs = {nrhs};",
        f"{t} *_px = {_plus(k.ptr(out), _times(bi, n * nrhs))};",
        f"memcpy(_pw, {_plus(k.ptr(a), _times(bi, n * n))}, sizeof({t}) * {n * n});",
        f"memcpy(_px, {_plus(k.ptr(b), _times(bi, n * nrhs))}, sizeof({t}) * {n * nrhs});",
    ]
    lapack = [
        f"int *_piv = (int *)(_pw + {n * n});",
        f"if ({_lapacke(t, 'gesv')}(101, {n}, {nrhs}, _pw, {n}, _piv, _px, {nrhs}) != 0)",
        f"    for (int64_t _r = 0; _r < {n * nrhs}; ++_r) _px[_r] = NAN;",
    ]
    own = [
        *_lu_lines(k, t, n),
        f"for (int64_t _i = {n} - 1; _i >= 0; --_i) {{",
        "    for (int64_t _j = 0; _j < _nrhs; ++_j) {",
        f"        {t} _s = _px[_i * _nrhs + _j];",
        f"        for (int64_t _c = _i + 1; _c < {n}; ++_c) _s -= _pw[_i * {n} + _c] * "
        "_px[_c * _nrhs + _j];",
        f"        _px[_i * _nrhs + _j] = _s / _pw[_i * {n} + _i];",
        "    }",
        "}",
    ]
    return k.loop((_batch(a.shape),), [*setup, *_with_lapack(n, lapack, own)])


register(Primitive(
    name="solve", shape_rule=_solve_type, impl=_solve_impl, vjp=_solve_vjp, jvp=_solve_jvp,
    batch=functools.partial(batching.leading, "solve"),
    cost=_cost(lambda m, n, k: 2 * n ** 3 / 3 + 2 * n * n * k),
    c_kernel=_solve_c,
    doc="solve(a, b) = a^-1 b by LU with partial pivoting; inf/NaN for a singular a",
))


# --- slogdet: packed (sign, log|det|) -----------------------------------------------------------

def _slogdet_type(a):
    _square_type(a, "slogdet")
    return TensorType(a.shape[:-2] + (2,), a.dtype)


def _slogdet_impl(a):
    if np.iscomplexobj(a):
        det = np.linalg.det(a)
        sign = np.sign(np.real(det))
        return np.stack([sign + 0j, np.log(det * np.where(sign == 0, 1, sign))], axis=-1)
    sign, logdet = np.linalg.slogdet(a)
    return np.stack([sign, logdet], axis=-1).astype(a.dtype)


def _slogdet_vjp(g, out, a):
    # d log|det A| = tr(A^-1 dA): the adjoint is g A^-T; the sign has none.
    glog = packed_part(g, 1, (1, 1))
    inv_t = bind("solve", mT(a), eye_like(a))
    return (ops.mul(glog, inv_t),)


def _slogdet_jvp(t, out, a):
    if t[0] is None:
        return None
    dlog = ops.reduce_sum(diag_part(bind("solve", a, t[0])), (a.ndim - 2,))
    return pack([ops.zeros_like(dlog), dlog], a.shape[:-2])


def _slogdet_c(k):
    a, out = k.ins[0], k.out
    bi, = k.idx((_batch(a.shape),))   # the batch index: 0 for one matrix (no loop)
    n, t = a.shape[-1], out.ctype
    ws = k.scratch(8 * (n * n + n))
    # LAPACK's getrf: the sign from its (1-based) row swaps and U's diagonal.
    lapack = [
        f"int *_piv = (int *)(_pw + {n * n});",
        f"const int _info = {_lapacke(t, 'getrf')}(101, {n}, {n}, _pw, {n}, _piv);",
        "if (_info > 0) { _sgn = 0; _logdet = -INFINITY; }",
        "else if (_info < 0) { _sgn = NAN; _logdet = NAN; }",
        f"else for (int64_t _i = 0; _i < {n}; ++_i) {{",
        "    if (_piv[_i] != _i + 1) _sgn = -_sgn;",
        f"    if (_pw[_i * {n} + _i] < 0) _sgn = -_sgn;",
        f"    _logdet += log(fabs(_pw[_i * {n} + _i]));",
        "}",
    ]
    return k.loop((_batch(a.shape),), [
        f"{t} *_pw = ({t} *){ws};",
        f"memcpy(_pw, {_plus(k.ptr(a), _times(bi, n * n))}, sizeof({t}) * {n * n});",
        f"{t} _sgn = {_lit(1, t)}, _logdet = {_lit(0, t)};",
        *_with_lapack(n, lapack, _lu_lines(k, t, n, det=True)),
        f"{k.ptr(out)}[{_times(bi, 2)}] = _sgn;",
        f"{k.ptr(out)}[{_plus(_times(bi, 2), '1')}] = _logdet;",
    ])


register(Primitive(
    name="slogdet", shape_rule=_slogdet_type, impl=_slogdet_impl, vjp=_slogdet_vjp,
    batch=functools.partial(batching.leading, "slogdet"),
    cost=_cost(lambda m, n, k: 2 * n ** 3 / 3),
    jvp=_slogdet_jvp, c_kernel=_slogdet_c,
    doc="slogdet(a): (sign, log|det a|) packed along a new last axis of 2",
))


# --- qr (reduced): packed Q (m x k) then R (k x n) ------------------------------------------------

def _qr_dims(a):
    m, n = a.shape[-2:]
    return m, n, min(m, n)


def _qr_type(a):
    if a.ndim < 2:
        raise ShapeError(f"qr needs matrices (..., m, n), got shape {a.shape}")
    _static_float(a, "qr")
    m, n, k = _qr_dims(a)
    return TensorType(a.shape[:-2] + (m * k + k * n,), a.dtype)


def _qr_impl(a):
    if np.iscomplexobj(a):
        q, r = _householder_qr(a)
    else:
        q, r = np.linalg.qr(a)
    batch = a.shape[:-2]
    return np.concatenate([q.reshape(batch + (-1,)), r.reshape(batch + (-1,))], axis=-1)


def _qr_parts(out, a):
    m, n, k = _qr_dims(a)
    return packed_part(out, 0, (m, k)), packed_part(out, m * k, (k, n))


def _qr_check(a):
    m, n, _ = _qr_dims(a)
    if m < n:
        raise NotImplementedError(f"the derivative of qr of a wide matrix ({m} x {n}, m < n) "
                                  f"is not implemented; differentiate qr of its transpose")


def _qr_jvp(t, out, a):
    # JAX's rule: X = dA R^-1, Y = Q^T X, W = tril(Y, -1) - tril(Y, -1)^T;
    # dQ = Q (W - Y) + X, dR = (Y - W) R.
    if t[0] is None:
        return None
    _qr_check(a)
    q, r = _qr_parts(out, a)
    x = _right_solve_upper(t[0], r)
    y = mm(q, x, ta=True)
    lo = band(y, hi_k=-1)
    w = ops.sub(lo, mT(lo))
    dq = ops.add(mm(q, ops.sub(w, y)), x)
    dr = mm(ops.sub(y, w), r)
    return pack([dq, dr], a.shape[:-2])


def _right_solve_upper(x, r, transpose=False):
    """x R^-1 (or x R^-T) for upper-triangular R: (R^-T x^T)^T."""
    return mT(bind("triangular_solve", r, mT(x), lower=False, transpose_a=not transpose,
                   unit_diagonal=False))


def _qr_vjp(g, out, a):
    # The transpose of the tangent rule above, step by step.
    _qr_check(a)
    q, r = _qr_parts(out, a)
    gq, gr = _qr_parts(g, a)
    grt = mm(gr, r, tb=True)                     # from dR = (Y - W) R
    qtg = mm(q, gq, ta=True)                     # from dQ = Q (W - Y) + X
    w_bar = ops.sub(qtg, grt)
    y_bar = ops.sub(grt, qtg)
    lo_bar = ops.sub(w_bar, mT(w_bar))           # W = lo - lo^T
    y_bar = ops.add(y_bar, band(lo_bar, hi_k=-1))
    x_bar = ops.add(gq, mm(q, y_bar))            # Y = Q^T X
    return (_right_solve_upper(x_bar, r, transpose=True),)   # X = dA R^-1


def _qr_c(k):
    a, out = k.ins[0], k.out
    bi, = k.idx((_batch(a.shape),))   # the batch index: 0 for one matrix (no loop)
    m, n = a.shape[-2:]
    kk, t = min(m, n), out.ctype
    ws = k.scratch(8 * (m * n + m * kk + kk))
    setup = [
        f"{t} *_pr = ({t} *){ws};",
        f"{t} *_tau = _pr + {m * n};",
        f"{t} *_pq = {_plus(k.ptr(out), _times(bi, m * kk + kk * n))};",
        f"{t} *_prout = _pq + {m * kk};",
        f"memcpy(_pr, {_plus(k.ptr(a), _times(bi, m * n))}, sizeof({t}) * {m * n});",
    ]
    copy_r = [
        f"for (int64_t _i = 0; _i < {kk}; ++_i)",
        f"    for (int64_t _c = 0; _c < {n}; ++_c) _prout[_i * {n} + _c] = _c >= _i ? "
        f"_pr[_i * {n} + _c] : 0;",
    ]
    # LAPACK's blocked Householder QR (geqrf, then orgqr forms Q in place): the same reflectors.
    lapack = [
        f"int _info = {_lapacke(t, 'geqrf')}(101, {m}, {n}, _pr, {n}, _tau);",
        *copy_r,
        f"_info |= {_lapacke(t, 'orgqr')}(101, {m}, {kk}, {kk}, _pr, {n}, _tau);",
        f"for (int64_t _i = 0; _i < {m}; ++_i)",
        f"    for (int64_t _j = 0; _j < {kk}; ++_j) _pq[_i * {kk} + _j] = _pr[_i * {n} + _j];",
        f"if (_info != 0) for (int64_t _r = 0; _r < {m * kk + kk * n}; ++_r) _pq[_r] = NAN;",
    ]
    own = [
        # Householder: H_j = I - tau_j v v^T with v_0 = 1 below the diagonal (LAPACK's dlarfg).
        f"for (int64_t _j = 0; _j < {kk}; ++_j) {{",
        f"    {t} _xnorm2 = 0;",
        f"    for (int64_t _i = _j + 1; _i < {m}; ++_i) _xnorm2 += _pr[_i * {n} + _j] * _pr[_i * {n} "
        "+ _j];",
        "    if (_xnorm2 == 0) { _tau[_j] = 0; continue; }",
        f"    const {t} _alpha = _pr[_j * {n} + _j];",
        f"    const {t} _beta = (_alpha >= 0 ? -1 : 1) * sqrt(_alpha * _alpha + "
        "_xnorm2);",
        "    _tau[_j] = (_beta - _alpha) / _beta;",
        f"    for (int64_t _i = _j + 1; _i < {m}; ++_i) _pr[_i * {n} + _j] /= (_alpha - _beta);",
        f"    _pr[_j * {n} + _j] = _beta;",
        f"    for (int64_t _c = _j + 1; _c < {n}; ++_c) {{",
        f"        {t} _s = _pr[_j * {n} + _c];",
        f"        for (int64_t _i = _j + 1; _i < {m}; ++_i) _s += _pr[_i * {n} + _j] * _pr[_i * {n} + "
        "_c];",
        "        _s *= _tau[_j];",
        f"        _pr[_j * {n} + _c] -= _s;",
        f"        for (int64_t _i = _j + 1; _i < {m}; ++_i) _pr[_i * {n} + _c] -= _s * _pr[_i * "
        f"{n} + _j];",
        "    }",
        "}",
        # Q = H_0 ... H_(k-1) I[:, :k], applied from the last reflector (LAPACK's dorgqr).
        f"for (int64_t _r = 0; _r < {m * kk}; ++_r) _pq[_r] = {_lit(0, t)};",
        f"for (int64_t _i = 0; _i < {kk}; ++_i) _pq[_i * {kk} + _i] = {_lit(1, t)};",
        f"for (int64_t _j = {kk} - 1; _j >= 0; --_j) {{",
        "    if (_tau[_j] == 0) continue;",
        f"    for (int64_t _c = _j; _c < {kk}; ++_c) {{",
        f"        {t} _s = _pq[_j * {kk} + _c];",
        f"        for (int64_t _i = _j + 1; _i < {m}; ++_i) _s += _pr[_i * {n} + _j] * _pq[_i * {kk} "
        "+ _c];",
        "        _s *= _tau[_j];",
        f"        _pq[_j * {kk} + _c] -= _s;",
        f"        for (int64_t _i = _j + 1; _i < {m}; ++_i) _pq[_i * {kk} + _c] -= _s * _pr[_i * "
        f"{n} + _j];",
        "    }",
        "}",
        *copy_r,
    ]
    return k.loop((_batch(a.shape),), [*setup, *_with_lapack(kk, lapack, own)])


register(Primitive(
    name="qr", shape_rule=_qr_type, impl=_qr_impl, vjp=_qr_vjp, jvp=_qr_jvp, c_kernel=_qr_c,
    batch=functools.partial(batching.leading, "qr"),
    cost=_cost(lambda m, n, k: 2 * m * n * k - 2 * k ** 3 / 3           # geqrf
               + 4 * m * k * k - 2 * (m + k) * k * k + 4 * k ** 3 / 3),   # orgqr
    doc="qr(a): reduced Q (m x k) and R (k x n), k = min(m, n), packed along the last axis",
))


# --- eigh: packed w (n, ascending) then V (n x n) ------------------------------------------------

def _eigh_type(a):
    _square_type(a, "eigh")
    n = a.shape[-1]
    return TensorType(a.shape[:-2] + (n + n * n,), a.dtype)


def _eigh_one(a):
    """(w, V) of one symmetric matrix (read from its lower triangle), in symgrad's convention."""
    s = np.tril(a) + np.swapaxes(np.tril(a, -1), -1, -2)
    if np.iscomplexobj(s):
        w, v = _jacobi_eigh(s)
    else:
        w, v = np.linalg.eigh(s)
    order = np.argsort(np.real(w), kind="stable")
    w, v = w[order], v[:, order]
    v, _ = _sign_fix(v)
    return w, v


def _eigh_impl(a):
    n = a.shape[-1]
    flat = a.reshape((-1, n, n))
    out = [np.concatenate([w, v.ravel()]) for w, v in map(_eigh_one, flat)]
    return np.reshape(out, a.shape[:-2] + (n + n * n,))


def _eigh_parts(out, a):
    n = a.shape[-1]
    return packed_part(out, 0, (n,)), packed_part(out, n, (n, n))


def _gap_inverse(w):
    """F_ij = 1 / (w_j - w_i) off the diagonal, 0 on it."""
    diff = ops.sub(row(w), col(w))
    one = eye_like(diff)
    return ops.sub(ops.div(ops.scalar_like(1, diff), ops.add(diff, one)), one)


def _eigh_jvp(t, out, a):
    if t[0] is None:
        return None
    w, v = _eigh_parts(out, a)
    s = sym_from_lower(t[0])
    vsv = mm(v, mm(s, v), ta=True)
    dw = diag_part(vsv)
    dv = mm(v, ops.mul(_gap_inverse(w), vsv))
    return pack([dw, dv], a.shape[:-2])


def _eigh_vjp(g, out, a):
    w, v = _eigh_parts(out, a)
    gw, gv = _eigh_parts(g, a)
    inner = ops.add(diag_matrix(gw), ops.mul(_gap_inverse(w), mm(v, gv, ta=True)))
    s = mm(v, mm(inner, v, tb=True))
    return (sym_from_lower_adjoint(s),)


def _sign_fix_c(t, rows, cols, vec, also=None):
    """C lines: scale each column of vec (rows x cols) so its largest entry is positive."""
    return [f"for (int64_t _c = 0; _c < {cols}; ++_c) {{",
            "    int64_t _top = 0;",
            f"    for (int64_t _i = 1; _i < {rows}; ++_i)",
            f"        if (fabs({vec('_i', '_c')}) > fabs({vec('_top', '_c')})) _top = _i;",
            f"    if ({vec('_top', '_c')} < 0) {{",
            f"        for (int64_t _i = 0; _i < {rows}; ++_i) {vec('_i', '_c')} = "
            f"-{vec('_i', '_c')};",
            *([f"        for (int64_t _i = 0; _i < {also[0]}; ++_i) {also[1]('_i', '_c')} = "
               f"-{also[1]('_i', '_c')};"] if also else []),
            "    }", "}"]


def _eigh_c(k):
    a, out = k.ins[0], k.out
    bi, = k.idx((_batch(a.shape),))   # the batch index: 0 for one matrix (no loop)
    n, t = a.shape[-1], out.ctype
    ws = k.scratch(8 * n * n)
    V = lambda i, j: f"_pv[{i} * {n} + {j}]"  # noqa: E731
    setup = [
        f"{t} *_ps = ({t} *){ws};",
        f"{t} *_w = {_plus(k.ptr(out), _times(bi, n + n * n))};",
        f"{t} *_pv = _w + {n};",
        f"const {t} *_pa = {_plus(k.ptr(a), _times(bi, n * n))};",
    ]
    own = [
        f"for (int64_t _i = 0; _i < {n}; ++_i)",
        f"    for (int64_t _j = 0; _j < {n}; ++_j) {{",
        f"        _ps[_i * {n} + _j] = _i >= _j ? _pa[_i * {n} + _j] : _pa[_j * {n} + _i];",
        f"        _pv[_i * {n} + _j] = _i == _j ? {_lit(1, t)} : {_lit(0, t)};",
        "    }",
        # Cyclic Jacobi: rotate away each off-diagonal entry in turn until they vanish.
        "for (int _sweep = 0; _sweep < 100; ++_sweep) {",
        "    double _off = 0, _total = 0;",
        f"    for (int64_t _i = 0; _i < {n}; ++_i)",
        f"        for (int64_t _j = 0; _j < {n}; ++_j) {{",
        f"            const double _s = _ps[_i * {n} + _j];",
        "            _total += _s * _s;",
        "            if (_j > _i) _off += _s * _s;",
        "        }",
        f"    if (_off == 0 || _off <= {'1e-32' if t == 'double' else '1e-13'} * _total) "
        "break;",
        f"    for (int64_t _p = 0; _p < {n}; ++_p)",
        f"        for (int64_t _q = _p + 1; _q < {n}; ++_q) {{",
        f"            const {t} _apq = _ps[_p * {n} + _q];",
        "            if (_apq == 0) continue;",
        f"            const {t} _theta = (_ps[_q * {n} + _q] - _ps[_p * {n} + _p]) / (2 * "
        "_apq);",
        f"            const {t} _sg = _theta >= 0 ? 1 : -1;",
        f"            const {t} _tn = _sg / (_sg * _theta + sqrt(_theta * _theta + "
        "1));",
        f"            const {t} _cs = 1 / sqrt(_tn * _tn + 1), _sn = _tn * _cs;",
        f"            for (int64_t _i = 0; _i < {n}; ++_i) {{",
        f"                const {t} _x = _ps[_i * {n} + _p], _y = _ps[_i * {n} + _q];",
        f"                _ps[_i * {n} + _p] = _cs * _x - _sn * _y; _ps[_i * {n} + _q] = "
        "_sn * _x + _cs * _y;",
        "            }",
        f"            for (int64_t _i = 0; _i < {n}; ++_i) {{",
        f"                const {t} _x = _ps[_p * {n} + _i], _y = _ps[_q * {n} + _i];",
        f"                _ps[_p * {n} + _i] = _cs * _x - _sn * _y; _ps[_q * {n} + _i] = "
        "_sn * _x + _cs * _y;",
        "            }",
        f"            for (int64_t _i = 0; _i < {n}; ++_i) {{",
        f"                const {t} _x = _pv[_i * {n} + _p], _y = _pv[_i * {n} + _q];",
        f"                _pv[_i * {n} + _p] = _cs * _x - _sn * _y; _pv[_i * {n} + _q] = "
        "_sn * _x + _cs * _y;",
        "            }",
        "        }",
        "}",
        f"for (int64_t _i = 0; _i < {n}; ++_i) _w[_i] = _ps[_i * {n} + _i];",
        # Ascending order, ties kept in place (a stable selection sort moving whole columns).
        f"for (int64_t _i = 0; _i < {n}; ++_i) {{",
        "    int64_t _lo = _i;",
        f"    for (int64_t _j = _i + 1; _j < {n}; ++_j) if (_w[_j] < _w[_lo]) _lo = _j;",
        "    for (int64_t _j = _lo; _j > _i; --_j) {",
        f"        const {t} _s = _w[_j]; _w[_j] = _w[_j - 1]; _w[_j - 1] = _s;",
        f"        for (int64_t _r = 0; _r < {n}; ++_r) {{ const {t} _x = _pv[_r * {n} + _j]; "
        f"_pv[_r * {n} + _j] = _pv[_r * {n} + _j - 1]; _pv[_r * {n} + _j - 1] = _x; }}",
        "    }",
        "}",
    ]
    lapack = [
        f"for (int64_t _i = 0; _i < {n}; ++_i)",
        f"    for (int64_t _j = 0; _j < {n}; ++_j) _pv[_i * {n} + _j] = _i >= _j ? _pa[_i * {n} + _j] : "
        f"_pa[_j * {n} + _i];",
        f"if ({_lapacke(t, 'syevd')}(101, 'V', 'L', {n}, _pv, {n}, _w) != 0)",
        f"    for (int64_t _r = 0; _r < {n + n * n}; ++_r) _w[_r] = NAN;",
    ]
    return k.loop((_batch(a.shape),), [*setup, *_with_lapack(n, lapack, own),
                                       *_sign_fix_c(t, n, n, V)])


register(Primitive(
    name="eigh", shape_rule=_eigh_type, impl=_eigh_impl, vjp=_eigh_vjp, jvp=_eigh_jvp,
    batch=functools.partial(batching.leading, "eigh"),
    cost=_cost(lambda m, n, k: 9 * n ** 3),
    c_kernel=_eigh_c,
    doc="eigh(a): eigenvalues (ascending) and eigenvectors of the symmetric matrix a's lower "
        "triangle stands for, packed along the last axis",
))


# --- svd (reduced): packed U (m x k), s (k), Vh (k x n) -------------------------------------------

def _svd_type(a):
    if a.ndim < 2:
        raise ShapeError(f"svd needs matrices (..., m, n), got shape {a.shape}")
    _static_float(a, "svd")
    m, n, k = _qr_dims(a)
    return TensorType(a.shape[:-2] + (m * k + k + k * n,), a.dtype)


def _svd_one(a):
    m, n = a.shape
    if np.iscomplexobj(a):
        if m >= n:
            u, s, v = _jacobi_svd(a)
        else:
            v, s, u = _jacobi_svd(a.T)
        order = np.argsort(-np.real(s), kind="stable")
        u, s, v = u[:, order], s[order], v[:, order]
    else:
        u, s, vh = np.linalg.svd(a, full_matrices=False)
        v = vh.T
    u, v = _sign_fix(u, v)
    return np.concatenate([u.ravel(), s, v.T.ravel()])


def _svd_impl(a):
    m, n, k = _qr_dims(a)
    out = [_svd_one(x) for x in a.reshape((-1, m, n))]
    return np.reshape(out, a.shape[:-2] + (m * k + k + k * n,))


def _svd_parts(out, a):
    m, n, k = _qr_dims(a)
    return (packed_part(out, 0, (m, k)), packed_part(out, m * k, (k,)),
            packed_part(out, m * k + k, (k, n)))


def _svd_jvp(t, out, a):
    # JAX's rule (real matrices).
    if t[0] is None:
        return None
    da = t[0]
    m, n, k = _qr_dims(a)
    u, s, vh = _svd_parts(out, a)
    ds_full = mm(u, mm(da, vh, tb=True), ta=True)          # U^T dA V
    ds = diag_part(ds_full)
    f = _svd_f(s)
    srow = row(s)
    dss = ops.mul(srow, ds_full)                            # dS diag(s)
    sds = ops.mul(col(s), ds_full)                          # diag(s) dS
    du = mm(u, ops.mul(f, ops.add(dss, mT(dss))))
    dv = mm(vh, ops.mul(f, ops.add(sds, mT(sds))), ta=True)
    if m > n:
        dav = mm(da, vh, tb=True)
        du = ops.add(du, ops.div(ops.sub(dav, mm(u, mm(u, dav, ta=True))), srow))
    if n > m:
        dau = mm(da, u, ta=True)
        dv = ops.add(dv, ops.div(ops.sub(dau, mm(vh, mm(vh, dau), ta=True)), srow))
    return pack([du, ds, mT(dv)], a.shape[:-2])


def _svd_f(s):
    """F_ij = 1 / (s_j^2 - s_i^2) off the diagonal, 0 on it."""
    sr, sc = row(s), col(s)
    diff = ops.mul(ops.add(sr, sc), ops.sub(sr, sc))
    one = eye_like(diff)
    return ops.sub(ops.div(ops.scalar_like(1, diff), ops.add(diff, one)), one)


def _svd_vjp(g, out, a):
    # autograd's rule (full_matrices=False), for real matrices.
    m, n, k = _qr_dims(a)
    u, s, vh = _svd_parts(out, a)
    gu, gs, gvh = _svd_parts(g, a)
    f = _svd_f(s)
    utgu = mm(u, gu, ta=True)
    vtgv = mm(vh, gvh, tb=True)                             # V^T gV with gV = gVh^T
    t1 = ops.mul(ops.mul(f, ops.sub(utgu, mT(utgu))), row(s))
    t1 = ops.add(t1, diag_matrix(gs))
    t1 = ops.add(t1, ops.mul(col(s), ops.mul(f, ops.sub(vtgv, mT(vtgv)))))
    da = mm(u, mm(t1, vh))
    if m > k:
        proj = ops.sub(gu, mm(u, mm(u, gu, ta=True)))       # (I - U U^T) gU
        da = ops.add(da, mm(ops.div(proj, row(s)), vh))
    if n > k:
        proj = ops.sub(gvh, mm(mm(gvh, vh, tb=True), vh))    # gV^T (I - V V^T)
        da = ops.add(da, mm(ops.div(u, row(s)), proj))
    return (da,)


def _svd_c(k):
    a, out = k.ins[0], k.out
    bi, = k.idx((_batch(a.shape),))   # the batch index: 0 for one matrix (no loop)
    m, n = a.shape[-2:]
    kk, t = min(m, n), out.ctype
    tall = m >= n
    rows, cols = (m, n) if tall else (n, m)        # work on a or a^T, rows >= cols
    ws = k.scratch(8 * (rows * cols + cols * cols))
    src = (lambda i, j: f"_pa[{i} * {n} + {j}]") if tall else \
        (lambda i, j: f"_pa[{j} * {n} + {i}]")
    W = lambda i, j: f"_pw[{i} * {cols} + {j}]"  # noqa: E731
    V = lambda i, j: f"_pv[{i} * {cols} + {j}]"  # noqa: E731
    u_out, v_out = ("_pu", "_pvt") if tall else ("_pvt", "_pu")
    setup = [
        f"{t} *_pw = ({t} *){ws};",
        f"{t} *_pv = _pw + {rows * cols};",
        f"const {t} *_pa = {_plus(k.ptr(a), _times(bi, m * n))};",
        f"{t} *_pu = {_plus(k.ptr(out), _times(bi, m * kk + kk + kk * n))};",
        f"{t} *_s = _pu + {m * kk};",
        f"{t} *_pvt = _s + {kk};",
    ]
    # LAPACK's divide and conquer (gesdd) on a copy, then the same sign convention.
    lapack = [
        f"memcpy(_pw, _pa, sizeof({t}) * {m * n});",
        f"if ({_lapacke(t, 'gesdd')}(101, 'S', {m}, {n}, _pw, {n}, _s, _pu, {kk}, _pvt, "
        f"{n}) != 0)",
        f"    for (int64_t _r = 0; _r < {m * kk + kk + kk * n}; ++_r) _pu[_r] = NAN;",
        *_sign_fix_c(t, m, kk, lambda i, j: f"_pu[{i} * {kk} + {j}]",
                     (n, lambda i, j: f"_pvt[{j} * {n} + {i}]")),
    ]
    own = [
        f"for (int64_t _i = 0; _i < {rows}; ++_i)",
        f"    for (int64_t _j = 0; _j < {cols}; ++_j) {W('_i', '_j')} = {src('_i', '_j')};",
        f"for (int64_t _i = 0; _i < {cols}; ++_i)",
        f"    for (int64_t _j = 0; _j < {cols}; ++_j) {V('_i', '_j')} = _i == _j;",
        # One-sided Jacobi: rotate pairs of columns until all are orthogonal.
        "for (int _sweep = 0; _sweep < 100; ++_sweep) {",
        "    int _rotated = 0;",
        f"    for (int64_t _p = 0; _p < {cols}; ++_p)",
        f"        for (int64_t _q = _p + 1; _q < {cols}; ++_q) {{",
        f"            {t} _al = 0, _be = 0, _ga = 0;",
        f"            for (int64_t _i = 0; _i < {rows}; ++_i) {{",
        f"                _al += {W('_i', '_p')} * {W('_i', '_p')}; _be += {W('_i', '_q')} * "
        f"{W('_i', '_q')};",
        f"                _ga += {W('_i', '_p')} * {W('_i', '_q')};",
        "            }",
        f"            if (fabs(_ga) <= {_EPS[t]} * sqrt(_al * _be)) continue;",
        "            _rotated = 1;",
        f"            const {t} _zeta = (_be - _al) / (2 * _ga);",
        f"            const {t} _sg = _zeta >= 0 ? 1 : -1;",
        f"            const {t} _tn = _sg / (_sg * _zeta + sqrt(1 + _zeta * _zeta));",
        f"            const {t} _cs = 1 / sqrt(1 + _tn * _tn), _sn = _cs * _tn;",
        f"            for (int64_t _i = 0; _i < {rows}; ++_i) {{",
        f"                const {t} _x = {W('_i', '_p')}, _y = {W('_i', '_q')};",
        f"                {W('_i', '_p')} = _cs * _x - _sn * _y; {W('_i', '_q')} = _sn * "
        "_x + _cs * _y;",
        "            }",
        f"            for (int64_t _i = 0; _i < {cols}; ++_i) {{",
        f"                const {t} _x = {V('_i', '_p')}, _y = {V('_i', '_q')};",
        f"                {V('_i', '_p')} = _cs * _x - _sn * _y; {V('_i', '_q')} = _sn * "
        "_x + _cs * _y;",
        "            }",
        "        }",
        "    if (!_rotated) break;",
        "}",
        f"for (int64_t _j = 0; _j < {cols}; ++_j) {{",
        f"    {t} _nrm = 0;",
        f"    for (int64_t _i = 0; _i < {rows}; ++_i) _nrm += {W('_i', '_j')} * {W('_i', '_j')};",
        "    _s[_j] = sqrt(_nrm);",
        f"    for (int64_t _i = 0; _i < {rows}; ++_i) {W('_i', '_j')} = _s[_j] > 0 ? {W('_i', '_j')} / "
        "_s[_j] : 0;",
        "}",
        # Descending order (stable), moving columns of W and V along.
        f"for (int64_t _i = 0; _i < {cols}; ++_i) {{",
        "    int64_t _hi = _i;",
        f"    for (int64_t _j = _i + 1; _j < {cols}; ++_j) if (_s[_j] > _s[_hi]) _hi = _j;",
        "    for (int64_t _j = _hi; _j > _i; --_j) {",
        f"        const {t} _x = _s[_j]; _s[_j] = _s[_j - 1]; _s[_j - 1] = _x;",
        f"        for (int64_t _r = 0; _r < {rows}; ++_r) {{ const {t} _y = {W('_r', '_j')}; "
        f"{W('_r', '_j')} = {W('_r', '_j - 1')}; {W('_r', '_j - 1')} = _y; }}",
        f"        for (int64_t _r = 0; _r < {cols}; ++_r) {{ const {t} _y = {V('_r', '_j')}; "
        f"{V('_r', '_j')} = {V('_r', '_j - 1')}; {V('_r', '_j - 1')} = _y; }}",
        "    }",
        "}",
        # Signs: U's columns get their largest entry positive (and V's columns follow).
        *(_sign_fix_c(t, rows, cols, W, (cols, V)) if tall else
          _sign_fix_c(t, cols, cols, V, (rows, W))),
        # U (m x k) row-major; Vh (k x n) row-major.
        f"for (int64_t _i = 0; _i < {rows}; ++_i)",
        f"    for (int64_t _j = 0; _j < {cols}; ++_j) "
        + (f"_pu[_i * {kk} + _j] = {W('_i', '_j')};" if tall else
           f"_pvt[_j * {n} + _i] = {W('_i', '_j')};"),
        f"for (int64_t _i = 0; _i < {cols}; ++_i)",
        f"    for (int64_t _j = 0; _j < {cols}; ++_j) "
        + (f"_pvt[_j * {n} + _i] = {V('_i', '_j')};" if tall else
           f"_pu[_i * {kk} + _j] = {V('_i', '_j')};"),
    ]
    return k.loop((_batch(a.shape),), [*setup, *_with_lapack(kk, lapack, own)])


register(Primitive(
    name="svd", shape_rule=_svd_type, impl=_svd_impl, vjp=_svd_vjp, jvp=_svd_jvp,
    batch=functools.partial(batching.leading, "svd"),
    cost=_cost(lambda m, n, k: 4 * m * n * k + 8 * k ** 3),
    c_kernel=_svd_c,
    doc="svd(a): reduced U (m x k), s (k, descending), Vh (k x n), packed along the last axis",
))
