"""A sum of a matrix product and a term computed before it: the term is written into the sum's
buffer and the product adds into it (backends/c/accumulate.py), on every path a product takes:
a gemm with beta = 1, the narrow kernels, and the loops."""
import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.backends.c import accumulate

from c_source import workspace_bytes


def regularized(W, X):
    # d/dW = 2 reg W + X^T G: the term 2 reg W comes first, the product X^T G adds into it.
    return snp.sum(snp.tanh(X @ W)) + 0.5 * snp.sum(W * W)


def reference(W, X):
    s = np.tanh(X @ W)
    return s.sum() + 0.5 * (W * W).sum(), X.T @ (1 - s * s) + W


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("shape,path", [
    ((60, 40, 30), "symgradrt_dgemm_par"),      # 30 columns: the BLAS (or its loops)
    ((60, 40, 10), "symgradrt_mm_tn_"),         # narrow: X^T G by the narrow kernel
    ((3, 4, 5), "for (int64_t _p = 0;"),         # small: the loops
])
def test_the_product_adds_into_the_term(shape, path, dtype, tmp_path, monkeypatch):
    n, d, c = shape
    r = np.random.default_rng(0)
    W = (0.1 * r.standard_normal((d, c))).astype(dtype)
    X = r.standard_normal((n, d)).astype(dtype)
    f = symgrad.compile(regularized, cache_dir=tmp_path)
    value, grad = f.value_and_grad(W, X)
    want_v, want_g = reference(W.astype(np.float64), X.astype(np.float64))
    rtol = 1e-12 if dtype == "float64" else 1e-4
    assert value == pytest.approx(want_v, rel=rtol)
    np.testing.assert_allclose(grad, want_g, rtol=rtol, atol=rtol * np.abs(want_g).max())
    source = f.source(W, X)
    vg = source.split("_value_and_grad(")[-1]
    path = path.replace("dgemm", "sgemm") if dtype == "float32" else path
    assert path in vg
    # The gradient is written by the term's loop, then the product adds to it: no third loop
    # adds two arrays into grad_W.
    assert "grad_W[_i] = " in vg and "+ b" not in vg.split("grad_W[_i] = ")[1].split(";")[0]
    # Without the fold the workspace holds two more arrays of W's size (each on a cache line).
    monkeypatch.setattr(accumulate, "plan", lambda *args: {})
    unfolded = symgrad.compile(regularized, cache_dir=tmp_path).source(W, X)
    assert workspace(unfolded) - workspace(source) == 2 * (-(-W.nbytes // 64) * 64)


def workspace(source):
    return workspace_bytes(source)


def test_a_term_computed_after_the_product_is_left_alone(tmp_path):
    # Here the product comes first in the graph: the plain add stays, and the numbers agree.
    def late(W, X):
        return snp.sum((X @ W) + snp.sin(X @ W))
    r = np.random.default_rng(1)
    W, X = r.standard_normal((30, 20)), r.standard_normal((40, 30))
    f = symgrad.compile(late, cache_dir=tmp_path)
    want = (X @ W + np.sin(X @ W)).sum()
    assert f(W, X) == pytest.approx(want, rel=1e-12)
    _, g = f.value_and_grad(W, X)
    np.testing.assert_allclose(g, X.T @ (1 + np.cos(X @ W)), rtol=1e-12)
