"""Tensor contractions: ``einsum``, ``tensordot`` and ``dot`` of N-D operands, and NumPy 2's
``vecdot``, ``matvec`` and ``vecmat`` (batched, broadcasting; the vector conjugated as NumPy does).

All of them lower to the primitives the C backend is fastest at: a contraction of two operands
becomes one transpose and reshape per operand and one (batched) ``matmul`` -- which calls the BLAS
gemm in JIT builds when the product is large -- and a product with nothing to contract becomes a
broadcast multiply, fused with its neighbours. ``einsum`` takes any subscripts NumPy takes: the
``->`` output or the implicit one, ``...``, a label repeated within an operand (a diagonal), labels
summed within one operand, and the interleaved ``einsum(a, [0, 1], b, [1, 2])`` form. Operands
are contracted left to right (NumPy's default, ``optimize=False``), after each has its own
diagonals and private labels reduced away.
"""
from __future__ import annotations

import numpy as np

from symgrad.errors import ShapeError
from symgrad.numpy._common import at, axis_index, snp, traced

__all__ = ["einsum", "tensordot", "vecdot", "matvec", "vecmat"]

_LETTERS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _interleaved(args):
    """einsum(a, [0, 1], b, [1, 2], [0, 2]) -> ("ab,bc->ac", [a, b])."""
    args = list(args)
    operands, terms = [], []
    while len(args) >= 2:
        operands.append(args.pop(0))
        terms.append(args.pop(0))
    out = args[0] if args else None

    def term(sub):
        return "".join("..." if s is Ellipsis else _LETTERS[int(s)] for s in sub)
    text = ",".join(term(t) for t in terms) + ("" if out is None else "->" + term(out))
    return text, operands


def _parse(subscripts, shapes):
    """Per operand its list of labels (the ellipsis as labels of their own), and the output's."""
    text = subscripts.replace(" ", "")
    lhs, arrow, rhs = text.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise ValueError(f"einsum: {len(terms)} operand subscripts for {len(shapes)} operands")
    ell_ndim = 0
    parsed = []
    for term, shape in zip(terms, shapes):
        letters = term.replace("...", "")
        if not all(c.isalpha() for c in letters):
            raise ValueError(f"einsum: invalid subscript in {term!r}")
        if "..." in term:
            ell = len(shape) - len(letters)
            if ell < 0:
                raise ValueError(f"einsum: operand of shape {shape} has fewer dimensions than "
                                 f"subscripts {term!r}")
            ell_ndim = max(ell_ndim, ell)
        elif len(letters) != len(shape):
            raise ValueError(f"einsum: operand of shape {shape} does not match subscripts "
                             f"{term!r}")
    # The ellipsis dimensions align from the right, as broadcasting does.
    ell_labels = [f"...{i}" for i in range(ell_ndim)]
    for term, shape in zip(terms, shapes):
        before, _, after = term.partition("...")
        ell = len(shape) - len(before) - len(after)
        labels = list(before) + (ell_labels[ell_ndim - ell:] if "..." in term else []) + \
            list(after)
        parsed.append(labels)
    if arrow:
        before, dots, after = rhs.partition("...")
        if not all(c.isalpha() for c in before + after):
            raise ValueError(f"einsum: invalid output subscripts {rhs!r}")
        out = list(before) + (ell_labels if dots else []) + list(after)
        if len(set(out)) != len(out):
            raise ValueError(f"einsum: output subscripts {rhs!r} repeat a label")
        known = {label for labels in parsed for label in labels}
        missing = [c for c in out if c not in known]
        if missing:
            raise ValueError(f"einsum: output label {missing[0]!r} appears in no operand")
    else:
        counts = {}
        for labels in parsed:
            for c in labels:
                counts[c] = counts.get(c, 0) + 1
        out = ell_labels + sorted(c for c, k in counts.items() if k == 1 and c not in ell_labels)
    return parsed, out


def _sizes(parsed, shapes):
    sizes = {}
    for labels, shape in zip(parsed, shapes):
        for c, d in zip(labels, shape):
            if c in sizes and sizes[c] != d and 1 not in (sizes[c], d):
                raise ShapeError(f"einsum: label {c!r} has sizes {sizes[c]} and {d}{at()}")
            sizes[c] = d if c not in sizes or sizes[c] == 1 else sizes[c]
    return sizes


def _take_diagonals(x, labels):
    """Repeated labels within one operand: keep their diagonal (as a new last axis)."""
    labels = list(labels)
    while True:
        seen = {}
        pair = None
        for i, c in enumerate(labels):
            if c in seen:
                pair = (seen[c], i)
                break
            seen[c] = i
        if pair is None:
            return x, labels
        c = labels[pair[0]]
        x = snp.diagonal(x, 0, pair[0], pair[1])
        labels = [lab for k, lab in enumerate(labels) if k not in pair] + [c]


def _sum_out(x, labels, keep):
    axes = [i for i, c in enumerate(labels) if c not in keep]
    if not axes:
        return x, labels
    return snp.sum(x, tuple(axes)), [c for c in labels if c in keep]


def _arrange(x, labels, order):
    perm = [labels.index(c) for c in order]
    return snp.transpose(x, perm) if perm != list(range(len(perm))) else x


def _contract(x, xl, y, yl, needed):
    """The product of x and y summed over their shared labels that nothing later needs."""
    both = [c for c in xl if c in yl]
    batch = [c for c in both if c in needed]
    summed = [c for c in both if c not in needed]
    x_only = [c for c in xl if c not in yl]
    y_only = [c for c in yl if c not in xl]
    if not summed:
        # Nothing to contract: a broadcast multiply (fused with its neighbours in C).
        xs = _arrange(x, xl, batch + x_only)
        ys = _arrange(y, yl, batch + y_only)
        xs = snp.reshape(xs, tuple(xs.shape) + (1,) * len(y_only))
        ys = snp.reshape(ys, tuple(ys.shape[:len(batch)]) + (1,) * len(x_only)
                         + tuple(ys.shape[len(batch):]))
        return snp.multiply(xs, ys), batch + x_only + y_only
    xs = _arrange(x, xl, batch + x_only + summed)
    ys = _arrange(y, yl, batch + summed + y_only)
    nb, nx, ns = len(batch), len(x_only), len(summed)
    bshape = tuple(xs.shape[:nb])
    mshape, kshape = tuple(xs.shape[nb:nb + nx]), tuple(xs.shape[nb + nx:])
    nshape = tuple(ys.shape[nb + ns:])
    size = lambda s: int(np.prod(s, dtype=np.int64))  # noqa: E731
    xm = snp.reshape(xs, (size(bshape), size(mshape), size(kshape)))
    ym = snp.reshape(ys, (size(bshape), size(kshape), size(nshape)))
    z = snp.matmul(xm, ym)
    return snp.reshape(z, bshape + mshape + nshape), batch + x_only + y_only


def einsum(*operands, out=None, dtype=None, order="K", casting="safe", optimize=False):
    """NumPy's einsum, lowered to transposes, reshapes, matmuls and broadcast multiplies."""
    if not traced(*operands):
        return np.einsum(*operands, out=out, dtype=dtype, order=order, casting=casting,
                         optimize=optimize)
    if out is not None:
        raise TypeError(f"einsum(..., out=...) is not supported on traced values{at()}")
    if isinstance(operands[0], str):
        subscripts, arrays = operands[0], list(operands[1:])
    else:
        subscripts, arrays = _interleaved(operands)
    arrays = [snp.asarray(a) for a in arrays]
    if dtype is not None:
        arrays = [snp.astype(a, dtype) for a in arrays]
    common = np.result_type(*[a.dtype for a in arrays])
    arrays = [a if a.dtype == common else snp.astype(a, common) for a in arrays]
    shapes = [tuple(a.shape) for a in arrays]
    parsed, out_labels = _parse(subscripts, shapes)
    sizes = _sizes(parsed, shapes)
    # Each operand: its diagonals, its size-1 dimensions broadcast, its private labels summed.
    prepared = []
    for k, (x, labels) in enumerate(zip(arrays, parsed)):
        x, labels = _take_diagonals(x, labels)
        target = tuple(sizes[c] for c in labels)
        if tuple(x.shape) != target:
            x = snp.broadcast_to(x, target)
        elsewhere = set(out_labels).union(*[set(p) for j, p in enumerate(parsed) if j != k])
        x, labels = _sum_out(x, labels, elsewhere)
        prepared.append((x, labels))
    x, labels = prepared[0]
    for k in range(1, len(prepared)):
        y, yl = prepared[k]
        needed = set(out_labels).union(*[set(p) for _, p in prepared[k + 1:]])
        x, labels = _contract(x, labels, y, yl, needed)
    x, labels = _sum_out(x, labels, set(out_labels))
    return _arrange(x, labels, out_labels)


def tensordot(a, b, axes=2):
    """Sum of products over ``axes`` of a and b: one transpose and reshape each, one matmul."""
    if not traced(a, b):
        return np.tensordot(a, b, axes)
    x, y = snp.asarray(a), snp.asarray(b)
    if isinstance(axes, (int, np.integer)):
        n = int(axes)
        if n < 0 or n > min(x.ndim, y.ndim):
            raise ValueError(f"tensordot: axes={n} for operands of {x.ndim} and {y.ndim} "
                             f"dimensions")
        ax_a, ax_b = list(range(x.ndim - n, x.ndim)), list(range(n))
    else:
        ax_a, ax_b = axes
        ax_a = [ax_a] if isinstance(ax_a, (int, np.integer)) else list(ax_a)
        ax_b = [ax_b] if isinstance(ax_b, (int, np.integer)) else list(ax_b)
        if len(ax_a) != len(ax_b):
            raise ValueError("shape-mismatch for sum")
    ax_a = [axis_index(i, x.ndim) for i in ax_a]
    ax_b = [axis_index(i, y.ndim) for i in ax_b]
    for i, j in zip(ax_a, ax_b):
        if x.shape[i] != y.shape[j]:
            raise ShapeError(f"tensordot: shape-mismatch for sum: axis {i} of {x.shape} and "
                             f"axis {j} of {y.shape}{at()}")
    letters = iter(_LETTERS)
    la = [next(letters) for _ in range(x.ndim)]
    lb = [next(letters) for _ in range(y.ndim)]
    for i, j in zip(ax_a, ax_b):
        lb[j] = la[i]
    out = [c for i, c in enumerate(la) if i not in ax_a] + \
        [c for j, c in enumerate(lb) if j not in ax_b]
    return einsum(f"{''.join(la)},{''.join(lb)}->{''.join(out)}", x, y)


def dot_nd(a, b):
    """NumPy's dot beyond two dimensions: a sum over a's last axis and b's second-to-last."""
    x, y = snp.asarray(a), snp.asarray(b)
    return tensordot(x, y, ([x.ndim - 1], [max(y.ndim - 2, 0)]))


def _vector_axis(x, axis, name):
    x = snp.asarray(x)
    if x.ndim == 0:
        raise ShapeError(f"{name}: a vector operand must have at least one dimension{at()}")
    return snp.moveaxis(x, axis_index(axis, x.ndim), -1)


def vecdot(x1, x2, /, *, axis=-1):
    """sum(conj(x1) * x2) over ``axis``, the other axes broadcast (NumPy 2's vecdot)."""
    if not traced(x1, x2):
        return np.vecdot(x1, x2, axis=axis)
    a, b = _vector_axis(x1, axis, "vecdot"), _vector_axis(x2, axis, "vecdot")
    if a.shape[-1] != b.shape[-1]:
        raise ShapeError(f"vecdot: the vectors have lengths {a.shape[-1]} and {b.shape[-1]}"
                         f"{at()}")
    return snp.sum(snp.multiply(snp.conj(a), b), -1)


def matvec(x1, x2, /):
    """x1 @ x2 for stacks of matrices (..., m, n) and vectors (..., n) -> (..., m)."""
    if not traced(x1, x2):
        return np.matvec(x1, x2)
    a, v = snp.asarray(x1), snp.asarray(x2)
    if a.ndim < 2 or v.ndim < 1:
        raise ShapeError(f"matvec: needs matrices (..., m, n) and vectors (..., n), got shapes "
                         f"{a.shape} and {v.shape}{at()}")
    return snp.squeeze(snp.matmul(a, snp.expand_dims(v, -1)), -1)


def vecmat(x1, x2, /):
    """conj(x1) @ x2 for stacks of vectors (..., n) and matrices (..., n, m) -> (..., m)."""
    if not traced(x1, x2):
        return np.vecmat(x1, x2)
    v, a = snp.asarray(x1), snp.asarray(x2)
    if a.ndim < 2 or v.ndim < 1:
        raise ShapeError(f"vecmat: needs vectors (..., n) and matrices (..., n, m), got shapes "
                         f"{v.shape} and {a.shape}{at()}")
    return snp.squeeze(snp.matmul(snp.expand_dims(snp.conj(v), -2), a), -2)
