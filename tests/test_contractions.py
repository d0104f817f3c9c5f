"""Contractions of issue 16 (symgrad/numpy/contractions.py): einsum with every kind of subscripts,
tensordot, dot and matmul of N-D operands, vdot and outer, against NumPy; gradients, forward mode,
second order, float32 and both backends (tests/breadth.py), and the lowering to matmul."""
import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from breadth import Case, check_hvp, check_jvp, standard_tests


def U(*shape):
    return lambda rng: rng.uniform(-1.5, 1.5, shape)


def args(*gens):
    return lambda rng: [g(rng) for g in gens]


CASES = [
    Case("einsum_products", lambda a, b, c: (
        snp.einsum("ij,jk->ik", a, b), snp.einsum("ij,jk", a, b), snp.einsum("ij,kj->ik", a, a),
        snp.einsum("ij,jk,kl->il", a, b, c), snp.einsum("ij,ij->", a, a),
        snp.einsum("ij,ij->ij", a, a), snp.einsum("i,j->ij", a[0], b[0]),
        snp.einsum("ij->", a), snp.einsum("ij->j", a), snp.einsum("ij->ji", a),
        snp.einsum("ji", a), snp.einsum("ij,j", a, b[:, 0]),
        snp.einsum(a, [0, 1], b, [1, 2], [0, 2]), snp.einsum(a, [0, 1], a, [0, 1])),
        args(U(3, 4), U(4, 2), U(2, 5))),
    Case("einsum_diagonals", lambda s, t: (
        snp.einsum("ii->i", s), snp.einsum("ii", s), snp.einsum("ii,i->i", s, s[0]),
        snp.einsum("iij->ij", t), snp.einsum("iji->j", t.transpose(0, 2, 1)), snp.einsum("bii->b", t.transpose(
            2, 0, 1)), snp.einsum("ij,jj->i", s, s)),
        args(U(3, 3), U(3, 3, 2))),
    Case("einsum_ellipsis", lambda x, y, v: (
        snp.einsum("...ij,...jk->...ik", x, y), snp.einsum("bij,bjk->bik", x, y),
        snp.einsum("...ij->...ji", x), snp.einsum("...i,...i->...", x, x),
        snp.einsum("i...,i...->...", x, x), snp.einsum("...j,j->...", x, v),
        snp.einsum("ij...,jk...->ik...", x.transpose(1, 2, 0), y.transpose(1, 2, 0)),
        snp.einsum("...ij,jk", x, y[0])),
        args(U(2, 3, 4), U(2, 4, 3), U(4))),
    Case("einsum_broadcast", lambda x, y: (snp.einsum("...ij,...jk->...ik", x, y),
                                           snp.einsum("bij,bjk->bik", x[:1], y)),
         args(U(1, 3, 4), U(2, 4, 2))),
    Case("tensordot", lambda a, b: (
        snp.tensordot(a, b), snp.tensordot(a, b.transpose(1, 0, 2), 1),
        snp.tensordot(a, b[:, :, 0], ([1, 2], [0, 1])), snp.tensordot(a, b, ([0], [2])),
        snp.tensordot(a, b, 0), snp.tensordot(a, b, axes=(2, 1))),
        args(U(2, 3, 4), U(3, 4, 2))),
    Case("dot_nd", lambda a, b, v: (snp.dot(a, b), snp.dot(a, v), snp.dot(v, b),
                                    snp.dot(a[0], b), snp.dot(a, b[0]), a.dot(b[0])),
         args(U(2, 3, 4), U(3, 4, 2), U(4))),
    Case("matmul_batched", lambda a, b, c: (snp.matmul(a, b), a @ b[0], snp.matmul(c, a),
                                            snp.matmul(a, b[0, :, 0])),
         args(U(2, 3, 4), U(2, 4, 5), U(5, 1, 2, 3))),
    Case("vdot_outer", lambda a, b: (snp.vdot(a, b), snp.outer(a, b), snp.outer(a[0], b[1])),
         args(U(2, 3), U(2, 3))),
]
BY_NAME = {c.name: c for c in CASES}


(test_values_match_numpy, test_gradient_against_differences,
 test_c_gradients_equal_interpreter) = standard_tests(CASES)


def test_jvp(backend):
    check_jvp(CASES, backend)


def test_second_order(backend):
    check_hvp([BY_NAME["einsum_products"], BY_NAME["einsum_diagonals"]], backend)


def _prims(fn, *args):
    return [n.prim for n in symgrad.trace(fn, *args).nodes]


def test_einsum_lowers_contractions_to_matmul():
    a, b = np.ones((30, 40)), np.ones((40, 20))
    assert _prims(lambda a, b: snp.einsum("ij,jk->ik", a, b), a, b).count("matmul") == 1
    x, y = np.ones((5, 30, 40)), np.ones((5, 40, 20))
    prims = _prims(lambda x, y: snp.einsum("bij,bjk->bik", x, y), x, y)
    assert prims.count("matmul") == 1 and "gather" not in prims
    # A contraction over two labels at once is still one matrix product.
    t = np.ones((3, 4, 5))
    assert _prims(lambda t: snp.einsum("ijk,jkl->il", t, t.transpose(1, 2, 0)), t).count(
        "matmul") == 1
    # Nothing to contract: a broadcast multiply, no matmul.
    assert "matmul" not in _prims(lambda a: snp.einsum("ij,ij->ij", a, a), a)


def test_einsum_rejects_bad_subscripts():
    f = symgrad.compile(lambda a: snp.einsum("ij,jk->ik", a), backend="interp")
    with pytest.raises(ValueError, match="operand subscripts"):
        f(np.ones((2, 2)))
    g = symgrad.compile(lambda a, b: snp.einsum("ij,jk->iz", a, b), backend="interp")
    with pytest.raises(ValueError, match="appears in no operand"):
        g(np.ones((2, 2)), np.ones((2, 2)))
    h = symgrad.compile(lambda a, b: snp.einsum("ij,jk->ik", a, b), backend="interp")
    with pytest.raises(symgrad.ShapeError, match="label 'j' has sizes 2 and 3"):
        h(np.ones((2, 2)), np.ones((3, 2)))


def test_numpy_einsum_on_tracers_dispatches_here(backend):
    a = np.arange(6.0).reshape(2, 3)
    f = symgrad.compile(lambda a: (np.einsum("ij,kj->ik", a, a), np.tensordot(a, a, (1, 1)),
                                   np.dot(a[None], a.T)), backend=backend)
    for got, want in zip(f(a), (a @ a.T, a @ a.T, np.dot(a[None], a.T))):
        np.testing.assert_allclose(got, want, rtol=1e-14)
