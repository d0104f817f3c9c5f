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

import numpy as np

from symgrad.core import dims, ops
from symgrad.core.cspell import c_literal as _lit
from symgrad.core.primitive import Primitive, bind, register
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


def _d(d):
    return dims.c_expr(dims.normalize(d))


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
    n, t = a.shape[-1], out.ctype
    setup = [
        f"const {t} *sg_A = {k.ptr(a)} + i0 * {n * n};",
        f"{t} *sg_L = {k.ptr(out)} + i0 * {n * n};",
    ]
    # LAPACK's potrf on the lower triangle; from a failing pivot on, the rows are NaN.
    lapack = [
        f"for (int64_t i = 0; i < {n}; ++i)",
        f"    for (int64_t j = 0; j < {n}; ++j) sg_L[i * {n} + j] = j <= i ? sg_A[i * {n} + j] : "
        "0;",
        f"const int sg_info = {_lapacke(t, 'potrf')}(101, 'L', {n}, sg_L, {n});",
        f"if (sg_info != 0) for (int64_t r = sg_info > 0 ? (sg_info - 1) * {n} : 0; r < {n * n}; "
        "++r) "
        f"sg_L[r] = NAN;",
    ]
    own = [
        f"for (int64_t r = 0; r < {n * n}; ++r) sg_L[r] = {_lit(0, t)};",
        f"for (int64_t j = 0; j < {n}; ++j) {{",
        f"    {t} sg_s = sg_A[j * {n} + j];",
        f"    for (int64_t sg_c = 0; sg_c < j; ++sg_c) sg_s -= sg_L[j * {n} + sg_c] * sg_L[j * {n} "
        "+ sg_c];",
        # not positive definite: NaN (sqrt of a negative), and NaN spreads to what follows
        f"    sg_L[j * {n} + j] = sg_s > 0 ? sqrt(sg_s) : NAN;",
        f"    for (int64_t i = j + 1; i < {n}; ++i) {{",
        f"        {t} v = sg_A[i * {n} + j];",
        f"        for (int64_t sg_c = 0; sg_c < j; ++sg_c) v -= sg_L[i * {n} + sg_c] * sg_L[j * "
        f"{n} + sg_c];",
        f"        sg_L[i * {n} + j] = v / sg_L[j * {n} + j];",
        "    }",
        "}",
    ]
    return k.loop((_batch(a.shape),), [*setup, *_with_lapack(n, lapack, own)])


register(Primitive(
    name="cholesky", shape_rule=_chol_type, impl=_chol_impl, vjp=_chol_vjp, jvp=_chol_jvp,
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
    n, nrhs, t = a.shape[-1], b.shape[-1], out.ctype
    lower, trans, unit = (k.attrs[x] for x in ("lower", "transpose_a", "unit_diagonal"))
    M = (lambda i, j: f"sg_A[{j} * {n} + {i}]") if trans else \
        (lambda i, j: f"sg_A[{i} * {n} + {j}]")
    forward = lower != trans
    rows = (f"for (int64_t i = 0; i < {n}; ++i) {{" if forward else
            f"for (int64_t i = {n} - 1; i >= 0; --i) {{")
    inner = ("for (int64_t j = 0; j < i; ++j)" if forward else
             f"for (int64_t j = i + 1; j < {n}; ++j)")
    return k.loop((_batch(a.shape),), [
        f"const {t} *sg_A = {k.ptr(a)} + i0 * {n * n};",
        f"const {t} *sg_B = {k.ptr(b)} + i0 * {n * nrhs};",
        f"{t} *sg_X = {k.ptr(out)} + i0 * {n * nrhs};",
        f"for (int64_t sg_c = 0; sg_c < {nrhs}; ++sg_c) {{",
        f"    {rows}",
        f"        {t} sg_s = sg_B[i * {nrhs} + sg_c];",
        f"        {inner} sg_s -= {M('i', 'j')} * sg_X[j * {nrhs} + sg_c];",
        f"        sg_X[i * {nrhs} + sg_c] = {'sg_s' if unit else 'sg_s / ' + M('i', 'i')};",
        "    }",
        "}",
    ])


register(Primitive(
    name="triangular_solve", shape_rule=_tri_type, impl=_tri_impl, vjp=_tri_vjp, jvp=_tri_jvp,
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
    lines = [f"for (int64_t sg_c = 0; sg_c < {n}; ++sg_c) {{",
             "    int64_t sg_piv = sg_c;",
             f"    for (int64_t i = sg_c + 1; i < {n}; ++i)",
             f"        if (fabs(sg_W[i * {n} + sg_c]) > fabs(sg_W[sg_piv * {n} + sg_c])) sg_piv = "
             "i;",
             "    if (sg_piv != sg_c) {",
             f"        for (int64_t j = 0; j < {n}; ++j) {{ const {t} sg_s = sg_W[sg_c * {n} + j]; "
             f"sg_W[sg_c * {n} + j] = sg_W[sg_piv * {n} + j]; sg_W[sg_piv * {n} + j] = sg_s; }}"]
    if det:
        lines += ["        sg_sgn = -sg_sgn;", "    }",
                  f"    const {t} sg_u = sg_W[sg_c * {n} + sg_c];",
                  "    if (sg_u == 0) { sg_sgn = 0; sg_logdet = -INFINITY; break; }",
                  "    if (sg_u < 0) sg_sgn = -sg_sgn;",
                  "    sg_logdet += log(fabs(sg_u));"]
    else:
        lines += [f"        for (int64_t j = 0; j < sg_nrhs; ++j) {{ "
                  f"const {t} sg_s = sg_X[sg_c * sg_nrhs + j]; "
                  "sg_X[sg_c * sg_nrhs + j] = sg_X[sg_piv * sg_nrhs + j]; "
                  "sg_X[sg_piv * sg_nrhs + j] = sg_s; }",
                  "    }",
                  f"    const {t} sg_u = sg_W[sg_c * {n} + sg_c];"]
    lines += [f"    for (int64_t i = sg_c + 1; i < {n}; ++i) {{",
              f"        const {t} sg_f = sg_W[i * {n} + sg_c] / sg_u;",
              f"        for (int64_t j = sg_c + 1; j < {n}; ++j) "
              f"sg_W[i * {n} + j] -= sg_f * sg_W[sg_c * {n} + j];"]
    if not det:
        lines += ["        for (int64_t j = 0; j < sg_nrhs; ++j) "
                  "sg_X[i * sg_nrhs + j] -= sg_f * sg_X[sg_c * sg_nrhs + j];"]
    lines += ["    }", "}"]
    return lines


def _solve_c(k):
    a, b, out = k.ins[0], k.ins[1], k.out
    n, nrhs, t = a.shape[-1], b.shape[-1], out.ctype
    ws = k.scratch(8 * (n * n + n))
    setup = [
        f"{t} *sg_W = ({t} *){ws};",
        f"const int64_t sg_nrhs = {nrhs};",
        f"{t} *sg_X = {k.ptr(out)} + i0 * {n * nrhs};",
        f"memcpy(sg_W, {k.ptr(a)} + i0 * {n * n}, sizeof({t}) * {n * n});",
        f"memcpy(sg_X, {k.ptr(b)} + i0 * {n * nrhs}, sizeof({t}) * {n * nrhs});",
    ]
    lapack = [
        f"int *sg_piv = (int *)(sg_W + {n * n});",
        f"if ({_lapacke(t, 'gesv')}(101, {n}, {nrhs}, sg_W, {n}, sg_piv, sg_X, {nrhs}) != 0)",
        f"    for (int64_t r = 0; r < {n * nrhs}; ++r) sg_X[r] = NAN;",
    ]
    own = [
        *_lu_lines(k, t, n),
        f"for (int64_t i = {n} - 1; i >= 0; --i) {{",
        "    for (int64_t j = 0; j < sg_nrhs; ++j) {",
        f"        {t} sg_s = sg_X[i * sg_nrhs + j];",
        f"        for (int64_t sg_c = i + 1; sg_c < {n}; ++sg_c) sg_s -= sg_W[i * {n} + sg_c] * "
        "sg_X[sg_c * sg_nrhs + j];",
        f"        sg_X[i * sg_nrhs + j] = sg_s / sg_W[i * {n} + i];",
        "    }",
        "}",
    ]
    return k.loop((_batch(a.shape),), [*setup, *_with_lapack(n, lapack, own)])


register(Primitive(
    name="solve", shape_rule=_solve_type, impl=_solve_impl, vjp=_solve_vjp, jvp=_solve_jvp,
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
    n, t = a.shape[-1], out.ctype
    ws = k.scratch(8 * (n * n + n))
    # LAPACK's getrf: the sign from its (1-based) row swaps and U's diagonal.
    lapack = [
        f"int *sg_piv = (int *)(sg_W + {n * n});",
        f"const int sg_info = {_lapacke(t, 'getrf')}(101, {n}, {n}, sg_W, {n}, sg_piv);",
        "if (sg_info > 0) { sg_sgn = 0; sg_logdet = -INFINITY; }",
        "else if (sg_info < 0) { sg_sgn = NAN; sg_logdet = NAN; }",
        f"else for (int64_t i = 0; i < {n}; ++i) {{",
        "    if (sg_piv[i] != i + 1) sg_sgn = -sg_sgn;",
        f"    if (sg_W[i * {n} + i] < 0) sg_sgn = -sg_sgn;",
        f"    sg_logdet += log(fabs(sg_W[i * {n} + i]));",
        "}",
    ]
    return k.loop((_batch(a.shape),), [
        f"{t} *sg_W = ({t} *){ws};",
        f"memcpy(sg_W, {k.ptr(a)} + i0 * {n * n}, sizeof({t}) * {n * n});",
        f"{t} sg_sgn = {_lit(1, t)}, sg_logdet = {_lit(0, t)};",
        *_with_lapack(n, lapack, _lu_lines(k, t, n, det=True)),
        f"{k.ptr(out)}[2 * i0] = sg_sgn;",
        f"{k.ptr(out)}[2 * i0 + 1] = sg_logdet;",
    ])


register(Primitive(
    name="slogdet", shape_rule=_slogdet_type, impl=_slogdet_impl, vjp=_slogdet_vjp,
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
    m, n = a.shape[-2:]
    kk, t = min(m, n), out.ctype
    ws = k.scratch(8 * (m * n + m * kk + kk))
    setup = [
        f"{t} *sg_R = ({t} *){ws};",
        f"{t} *sg_tau = sg_R + {m * n};",
        f"{t} *sg_Q = {k.ptr(out)} + i0 * {m * kk + kk * n};",
        f"{t} *sg_Rout = sg_Q + {m * kk};",
        f"memcpy(sg_R, {k.ptr(a)} + i0 * {m * n}, sizeof({t}) * {m * n});",
    ]
    copy_r = [
        f"for (int64_t i = 0; i < {kk}; ++i)",
        f"    for (int64_t sg_c = 0; sg_c < {n}; ++sg_c) sg_Rout[i * {n} + sg_c] = sg_c >= i ? "
        f"sg_R[i * {n} + sg_c] : 0;",
    ]
    # LAPACK's blocked Householder QR (geqrf, then orgqr forms Q in place): the same reflectors.
    lapack = [
        f"int sg_info = {_lapacke(t, 'geqrf')}(101, {m}, {n}, sg_R, {n}, sg_tau);",
        *copy_r,
        f"sg_info |= {_lapacke(t, 'orgqr')}(101, {m}, {kk}, {kk}, sg_R, {n}, sg_tau);",
        f"for (int64_t i = 0; i < {m}; ++i)",
        f"    for (int64_t j = 0; j < {kk}; ++j) sg_Q[i * {kk} + j] = sg_R[i * {n} + j];",
        f"if (sg_info != 0) for (int64_t r = 0; r < {m * kk + kk * n}; ++r) sg_Q[r] = NAN;",
    ]
    own = [
        # Householder: H_j = I - tau_j v v^T with v_0 = 1 below the diagonal (LAPACK's dlarfg).
        f"for (int64_t j = 0; j < {kk}; ++j) {{",
        f"    {t} sg_xnorm2 = 0;",
        f"    for (int64_t i = j + 1; i < {m}; ++i) sg_xnorm2 += sg_R[i * {n} + j] * sg_R[i * {n} "
        "+ j];",
        "    if (sg_xnorm2 == 0) { sg_tau[j] = 0; continue; }",
        f"    const {t} sg_alpha = sg_R[j * {n} + j];",
        f"    const {t} sg_beta = (sg_alpha >= 0 ? -1 : 1) * sqrt(sg_alpha * sg_alpha + "
        "sg_xnorm2);",
        "    sg_tau[j] = (sg_beta - sg_alpha) / sg_beta;",
        f"    for (int64_t i = j + 1; i < {m}; ++i) sg_R[i * {n} + j] /= (sg_alpha - sg_beta);",
        f"    sg_R[j * {n} + j] = sg_beta;",
        f"    for (int64_t sg_c = j + 1; sg_c < {n}; ++sg_c) {{",
        f"        {t} sg_s = sg_R[j * {n} + sg_c];",
        f"        for (int64_t i = j + 1; i < {m}; ++i) sg_s += sg_R[i * {n} + j] * sg_R[i * {n} + "
        "sg_c];",
        "        sg_s *= sg_tau[j];",
        f"        sg_R[j * {n} + sg_c] -= sg_s;",
        f"        for (int64_t i = j + 1; i < {m}; ++i) sg_R[i * {n} + sg_c] -= sg_s * sg_R[i * "
        f"{n} + j];",
        "    }",
        "}",
        # Q = H_0 ... H_(k-1) I[:, :k], applied from the last reflector (LAPACK's dorgqr).
        f"for (int64_t r = 0; r < {m * kk}; ++r) sg_Q[r] = {_lit(0, t)};",
        f"for (int64_t i = 0; i < {kk}; ++i) sg_Q[i * {kk} + i] = {_lit(1, t)};",
        f"for (int64_t j = {kk} - 1; j >= 0; --j) {{",
        "    if (sg_tau[j] == 0) continue;",
        f"    for (int64_t sg_c = j; sg_c < {kk}; ++sg_c) {{",
        f"        {t} sg_s = sg_Q[j * {kk} + sg_c];",
        f"        for (int64_t i = j + 1; i < {m}; ++i) sg_s += sg_R[i * {n} + j] * sg_Q[i * {kk} "
        "+ sg_c];",
        "        sg_s *= sg_tau[j];",
        f"        sg_Q[j * {kk} + sg_c] -= sg_s;",
        f"        for (int64_t i = j + 1; i < {m}; ++i) sg_Q[i * {kk} + sg_c] -= sg_s * sg_R[i * "
        f"{n} + j];",
        "    }",
        "}",
        *copy_r,
    ]
    return k.loop((_batch(a.shape),), [*setup, *_with_lapack(kk, lapack, own)])


register(Primitive(
    name="qr", shape_rule=_qr_type, impl=_qr_impl, vjp=_qr_vjp, jvp=_qr_jvp, c_kernel=_qr_c,
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
    return [f"for (int64_t sg_c = 0; sg_c < {cols}; ++sg_c) {{",
            "    int64_t sg_top = 0;",
            f"    for (int64_t i = 1; i < {rows}; ++i)",
            f"        if (fabs({vec('i', 'sg_c')}) > fabs({vec('sg_top', 'sg_c')})) sg_top = i;",
            f"    if ({vec('sg_top', 'sg_c')} < 0) {{",
            f"        for (int64_t i = 0; i < {rows}; ++i) {vec('i', 'sg_c')} = "
            f"-{vec('i', 'sg_c')};",
            *([f"        for (int64_t i = 0; i < {also[0]}; ++i) {also[1]('i', 'sg_c')} = "
               f"-{also[1]('i', 'sg_c')};"] if also else []),
            "    }", "}"]


def _eigh_c(k):
    a, out = k.ins[0], k.out
    n, t = a.shape[-1], out.ctype
    ws = k.scratch(8 * n * n)
    V = lambda i, j: f"sg_V[{i} * {n} + {j}]"  # noqa: E731
    setup = [
        f"{t} *sg_S = ({t} *){ws};",
        f"{t} *sg_w = {k.ptr(out)} + i0 * {n + n * n};",
        f"{t} *sg_V = sg_w + {n};",
        f"const {t} *sg_A = {k.ptr(a)} + i0 * {n * n};",
    ]
    own = [
        f"for (int64_t i = 0; i < {n}; ++i)",
        f"    for (int64_t j = 0; j < {n}; ++j) {{",
        f"        sg_S[i * {n} + j] = i >= j ? sg_A[i * {n} + j] : sg_A[j * {n} + i];",
        f"        sg_V[i * {n} + j] = i == j ? {_lit(1, t)} : {_lit(0, t)};",
        "    }",
        # Cyclic Jacobi: rotate away each off-diagonal entry in turn until they vanish.
        "for (int sg_sweep = 0; sg_sweep < 100; ++sg_sweep) {",
        "    double sg_off = 0, sg_total = 0;",
        f"    for (int64_t i = 0; i < {n}; ++i)",
        f"        for (int64_t j = 0; j < {n}; ++j) {{",
        f"            const double sg_s = sg_S[i * {n} + j];",
        "            sg_total += sg_s * sg_s;",
        "            if (j > i) sg_off += sg_s * sg_s;",
        "        }",
        f"    if (sg_off == 0 || sg_off <= {'1e-32' if t == 'double' else '1e-13'} * sg_total) "
        "break;",
        f"    for (int64_t p = 0; p < {n}; ++p)",
        f"        for (int64_t sg_q = p + 1; sg_q < {n}; ++sg_q) {{",
        f"            const {t} sg_apq = sg_S[p * {n} + sg_q];",
        "            if (sg_apq == 0) continue;",
        f"            const {t} sg_theta = (sg_S[sg_q * {n} + sg_q] - sg_S[p * {n} + p]) / (2 * "
        "sg_apq);",
        f"            const {t} sg_sg = sg_theta >= 0 ? 1 : -1;",
        f"            const {t} sg_tn = sg_sg / (sg_sg * sg_theta + sqrt(sg_theta * sg_theta + "
        "1));",
        f"            const {t} sg_cs = 1 / sqrt(sg_tn * sg_tn + 1), sg_sn = sg_tn * sg_cs;",
        f"            for (int64_t i = 0; i < {n}; ++i) {{",
        f"                const {t} sg_x = sg_S[i * {n} + p], sg_y = sg_S[i * {n} + sg_q];",
        f"                sg_S[i * {n} + p] = sg_cs * sg_x - sg_sn * sg_y; sg_S[i * {n} + sg_q] = "
        "sg_sn * sg_x + sg_cs * sg_y;",
        "            }",
        f"            for (int64_t i = 0; i < {n}; ++i) {{",
        f"                const {t} sg_x = sg_S[p * {n} + i], sg_y = sg_S[sg_q * {n} + i];",
        f"                sg_S[p * {n} + i] = sg_cs * sg_x - sg_sn * sg_y; sg_S[sg_q * {n} + i] = "
        "sg_sn * sg_x + sg_cs * sg_y;",
        "            }",
        f"            for (int64_t i = 0; i < {n}; ++i) {{",
        f"                const {t} sg_x = sg_V[i * {n} + p], sg_y = sg_V[i * {n} + sg_q];",
        f"                sg_V[i * {n} + p] = sg_cs * sg_x - sg_sn * sg_y; sg_V[i * {n} + sg_q] = "
        "sg_sn * sg_x + sg_cs * sg_y;",
        "            }",
        "        }",
        "}",
        f"for (int64_t i = 0; i < {n}; ++i) sg_w[i] = sg_S[i * {n} + i];",
        # Ascending order, ties kept in place (a stable selection sort moving whole columns).
        f"for (int64_t i = 0; i < {n}; ++i) {{",
        "    int64_t sg_lo = i;",
        f"    for (int64_t j = i + 1; j < {n}; ++j) if (sg_w[j] < sg_w[sg_lo]) sg_lo = j;",
        "    for (int64_t j = sg_lo; j > i; --j) {",
        f"        const {t} sg_s = sg_w[j]; sg_w[j] = sg_w[j - 1]; sg_w[j - 1] = sg_s;",
        f"        for (int64_t r = 0; r < {n}; ++r) {{ const {t} sg_x = sg_V[r * {n} + j]; "
        f"sg_V[r * {n} + j] = sg_V[r * {n} + j - 1]; sg_V[r * {n} + j - 1] = sg_x; }}",
        "    }",
        "}",
    ]
    lapack = [
        f"for (int64_t i = 0; i < {n}; ++i)",
        f"    for (int64_t j = 0; j < {n}; ++j) sg_V[i * {n} + j] = i >= j ? sg_A[i * {n} + j] : "
        f"sg_A[j * {n} + i];",
        f"if ({_lapacke(t, 'syevd')}(101, 'V', 'L', {n}, sg_V, {n}, sg_w) != 0)",
        f"    for (int64_t r = 0; r < {n + n * n}; ++r) sg_w[r] = NAN;",
    ]
    return k.loop((_batch(a.shape),), [*setup, *_with_lapack(n, lapack, own),
                                       *_sign_fix_c(t, n, n, V)])


register(Primitive(
    name="eigh", shape_rule=_eigh_type, impl=_eigh_impl, vjp=_eigh_vjp, jvp=_eigh_jvp,
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
    m, n = a.shape[-2:]
    kk, t = min(m, n), out.ctype
    tall = m >= n
    rows, cols = (m, n) if tall else (n, m)        # work on a or a^T, rows >= cols
    ws = k.scratch(8 * (rows * cols + cols * cols))
    src = (lambda i, j: f"sg_A[{i} * {n} + {j}]") if tall else \
        (lambda i, j: f"sg_A[{j} * {n} + {i}]")
    W = lambda i, j: f"sg_W[{i} * {cols} + {j}]"  # noqa: E731
    V = lambda i, j: f"sg_V[{i} * {cols} + {j}]"  # noqa: E731
    u_out, v_out = ("sg_U", "sg_VT") if tall else ("sg_VT", "sg_U")
    setup = [
        f"{t} *sg_W = ({t} *){ws};",
        f"{t} *sg_V = sg_W + {rows * cols};",
        f"const {t} *sg_A = {k.ptr(a)} + i0 * {m * n};",
        f"{t} *sg_U = {k.ptr(out)} + i0 * {m * kk + kk + kk * n};",
        f"{t} *sg_s = sg_U + {m * kk};",
        f"{t} *sg_VT = sg_s + {kk};",
    ]
    # LAPACK's divide and conquer (gesdd) on a copy, then the same sign convention.
    lapack = [
        f"memcpy(sg_W, sg_A, sizeof({t}) * {m * n});",
        f"if ({_lapacke(t, 'gesdd')}(101, 'S', {m}, {n}, sg_W, {n}, sg_s, sg_U, {kk}, sg_VT, "
        f"{n}) != 0)",
        f"    for (int64_t r = 0; r < {m * kk + kk + kk * n}; ++r) sg_U[r] = NAN;",
        *_sign_fix_c(t, m, kk, lambda i, j: f"sg_U[{i} * {kk} + {j}]",
                     (n, lambda i, j: f"sg_VT[{j} * {n} + {i}]")),
    ]
    own = [
        f"for (int64_t i = 0; i < {rows}; ++i)",
        f"    for (int64_t j = 0; j < {cols}; ++j) {W('i', 'j')} = {src('i', 'j')};",
        f"for (int64_t i = 0; i < {cols}; ++i)",
        f"    for (int64_t j = 0; j < {cols}; ++j) {V('i', 'j')} = i == j;",
        # One-sided Jacobi: rotate pairs of columns until all are orthogonal.
        "for (int sg_sweep = 0; sg_sweep < 100; ++sg_sweep) {",
        "    int sg_rotated = 0;",
        f"    for (int64_t p = 0; p < {cols}; ++p)",
        f"        for (int64_t sg_q = p + 1; sg_q < {cols}; ++sg_q) {{",
        f"            {t} sg_al = 0, sg_be = 0, sg_ga = 0;",
        f"            for (int64_t i = 0; i < {rows}; ++i) {{",
        f"                sg_al += {W('i', 'p')} * {W('i', 'p')}; sg_be += {W('i', 'sg_q')} * "
        f"{W('i', 'sg_q')};",
        f"                sg_ga += {W('i', 'p')} * {W('i', 'sg_q')};",
        "            }",
        f"            if (fabs(sg_ga) <= {_EPS[t]} * sqrt(sg_al * sg_be)) continue;",
        "            sg_rotated = 1;",
        f"            const {t} sg_zeta = (sg_be - sg_al) / (2 * sg_ga);",
        f"            const {t} sg_sg = sg_zeta >= 0 ? 1 : -1;",
        f"            const {t} sg_tn = sg_sg / (sg_sg * sg_zeta + sqrt(1 + sg_zeta * sg_zeta));",
        f"            const {t} sg_cs = 1 / sqrt(1 + sg_tn * sg_tn), sg_sn = sg_cs * sg_tn;",
        f"            for (int64_t i = 0; i < {rows}; ++i) {{",
        f"                const {t} sg_x = {W('i', 'p')}, sg_y = {W('i', 'sg_q')};",
        f"                {W('i', 'p')} = sg_cs * sg_x - sg_sn * sg_y; {W('i', 'sg_q')} = sg_sn * "
        "sg_x + sg_cs * sg_y;",
        "            }",
        f"            for (int64_t i = 0; i < {cols}; ++i) {{",
        f"                const {t} sg_x = {V('i', 'p')}, sg_y = {V('i', 'sg_q')};",
        f"                {V('i', 'p')} = sg_cs * sg_x - sg_sn * sg_y; {V('i', 'sg_q')} = sg_sn * "
        "sg_x + sg_cs * sg_y;",
        "            }",
        "        }",
        "    if (!sg_rotated) break;",
        "}",
        f"for (int64_t j = 0; j < {cols}; ++j) {{",
        f"    {t} sg_nrm = 0;",
        f"    for (int64_t i = 0; i < {rows}; ++i) sg_nrm += {W('i', 'j')} * {W('i', 'j')};",
        "    sg_s[j] = sqrt(sg_nrm);",
        f"    for (int64_t i = 0; i < {rows}; ++i) {W('i', 'j')} = sg_s[j] > 0 ? {W('i', 'j')} / "
        "sg_s[j] : 0;",
        "}",
        # Descending order (stable), moving columns of W and V along.
        f"for (int64_t i = 0; i < {cols}; ++i) {{",
        "    int64_t sg_hi = i;",
        f"    for (int64_t j = i + 1; j < {cols}; ++j) if (sg_s[j] > sg_s[sg_hi]) sg_hi = j;",
        "    for (int64_t j = sg_hi; j > i; --j) {",
        f"        const {t} sg_x = sg_s[j]; sg_s[j] = sg_s[j - 1]; sg_s[j - 1] = sg_x;",
        f"        for (int64_t r = 0; r < {rows}; ++r) {{ const {t} sg_y = {W('r', 'j')}; "
        f"{W('r', 'j')} = {W('r', 'j - 1')}; {W('r', 'j - 1')} = sg_y; }}",
        f"        for (int64_t r = 0; r < {cols}; ++r) {{ const {t} sg_y = {V('r', 'j')}; "
        f"{V('r', 'j')} = {V('r', 'j - 1')}; {V('r', 'j - 1')} = sg_y; }}",
        "    }",
        "}",
        # Signs: U's columns get their largest entry positive (and V's columns follow).
        *(_sign_fix_c(t, rows, cols, W, (cols, V)) if tall else
          _sign_fix_c(t, cols, cols, V, (rows, W))),
        # U (m x k) row-major; Vh (k x n) row-major.
        f"for (int64_t i = 0; i < {rows}; ++i)",
        f"    for (int64_t j = 0; j < {cols}; ++j) "
        + (f"sg_U[i * {kk} + j] = {W('i', 'j')};" if tall else
           f"sg_VT[j * {n} + i] = {W('i', 'j')};"),
        f"for (int64_t i = 0; i < {cols}; ++i)",
        f"    for (int64_t j = 0; j < {cols}; ++j) "
        + (f"sg_VT[j * {n} + i] = {V('i', 'j')};" if tall else
           f"sg_U[i * {kk} + j] = {V('i', 'j')};"),
    ]
    return k.loop((_batch(a.shape),), [*setup, *_with_lapack(kk, lapack, own)])


register(Primitive(
    name="svd", shape_rule=_svd_type, impl=_svd_impl, vjp=_svd_vjp, jvp=_svd_jvp,
    cost=_cost(lambda m, n, k: 4 * m * n * k + 8 * k ** 3),
    c_kernel=_svd_c,
    doc="svd(a): reduced U (m x k), s (k, descending), Vh (k x n), packed along the last axis",
))
