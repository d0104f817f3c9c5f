"""The course's worked examples, with their exact numbers, and the classic losses against naive
per-example loops (values and hand-derived gradients)."""
import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad import nn, numerical


def value_and_grads(fn, *args, backend, dtype="float64"):
    """Value and the gradient w.r.t. every argument, compiled on ``backend``."""
    args = [np.asarray(a, dtype=dtype) for a in args]
    f = symgrad.compile(fn, argnums=tuple(range(len(args))), backend=backend)
    value, grads = f.value_and_grad(*args)
    return value, [np.asarray(g) for g in grads]


# --- the circuits of the lecture --------------------------------------------------------------

def test_multiply_gate(backend):
    value, (dx, dy) = value_and_grads(lambda x, y: x * y, 4.0, -3.0, backend=backend)
    assert value == -12.0
    assert (dx, dy) == (-3.0, 4.0)


def test_add_multiply_circuit(backend):
    value, grads = value_and_grads(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0, backend=backend)
    assert value == -12.0
    assert [float(g) for g in grads] == [-4.0, -4.0, 3.0]


def test_max_gate(backend):
    value, grads = value_and_grads(lambda x, y: snp.maximum(x, y), 4.0, 2.0, backend=backend)
    assert value == 4.0
    assert [float(g) for g in grads] == [1.0, 0.0]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sigmoid_neuron(backend, dtype):
    def neuron(w, x):
        return nn.sigmoid(w[0] * x[0] + w[1] * x[1] + w[2])
    value, (dw, dx) = value_and_grads(neuron, [2.0, -3.0, -3.0], [-1.0, -2.0], backend=backend,
                                      dtype=dtype)
    assert value == pytest.approx(0.7311, abs=5e-5)
    np.testing.assert_allclose(dw, [-0.1966, -0.3932, 0.1966], atol=5e-5)
    np.testing.assert_allclose(dx, [0.3932, -0.5898], atol=5e-5)
    assert dw.dtype == dx.dtype == np.dtype(dtype)
    # Exactly: sigma(1) = 0.7310585786..., local gradient sigma(1) * (1 - sigma(1)).
    s = 1 / (1 + np.exp(-1.0))
    np.testing.assert_allclose(dw, s * (1 - s) * np.array([-1.0, -2.0, 1.0]),
                               rtol=1e-12 if dtype == "float64" else 1e-6)


def test_staged_sigmoid_expression(backend):
    def f(x, y):
        return (x + nn.sigmoid(y)) / (nn.sigmoid(x) + (x + y) ** 2)
    value, (dx, dy) = value_and_grads(f, 3.0, -4.0, backend=backend)
    assert value == pytest.approx(1.5456, abs=5e-5)
    assert float(dx) == pytest.approx(2.0596, abs=5e-5)
    assert float(dy) == pytest.approx(1.5922, abs=5e-5)
    # and to full precision against the complex step of the same formula in NumPy
    ref = numerical.grad(lambda v: (v[0] + 1 / (1 + np.exp(-v[1])))
                         / (1 / (1 + np.exp(-v[0])) + (v[0] + v[1]) ** 2),
                         np.array([3.0, -4.0]), method="complex")
    np.testing.assert_allclose([dx, dy], ref, rtol=1e-13)


def test_log_of_product_plus_max(backend):
    value, (da, db) = value_and_grads(lambda a, b: snp.log(a * b + snp.maximum(a, 2.0)),
                                      3.0, 2.0, backend=backend)
    assert value == pytest.approx(np.log(9.0), rel=1e-15)
    assert float(da) == pytest.approx(1 / 3, rel=1e-15)
    assert float(db) == pytest.approx(1 / 3, rel=1e-15)


def test_sqrt_plus_cos_of_shared_subexpression(backend):
    def f(x):
        u = x ** 2 + snp.exp(x ** 2)
        return snp.sum(snp.sqrt(u) + snp.cos(u))
    x = np.array([-1.3, -0.2, 0.0, 0.7, 1.5])
    value, (dx,) = value_and_grads(f, x, backend=backend)
    u = x ** 2 + np.exp(x ** 2)
    assert value == pytest.approx(np.sum(np.sqrt(u) + np.cos(u)), rel=1e-14)
    du = 2 * x + 2 * x * np.exp(x ** 2)
    np.testing.assert_allclose(dx, du * (1 / (2 * np.sqrt(u)) - np.sin(u)), rtol=1e-13,
                               atol=1e-15)


def test_sum_of_squares(backend):
    value, (dx, dy) = value_and_grads(lambda x, y: x ** 2 + y ** 2, 5.0, 3.0, backend=backend)
    assert value == 34.0
    assert (float(dx), float(dy)) == (10.0, 6.0)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_matrix_product_rule(backend, dtype, rng):
    W = rng.standard_normal((4, 3))
    X = rng.standard_normal((3, 5))
    G = rng.standard_normal((4, 5))                        # the upstream gradient dL/dD
    Gc = G.astype(dtype)
    _, (dW, dX) = value_and_grads(lambda W, X: snp.sum((W @ X) * Gc), W, X, backend=backend,
                                  dtype=dtype)
    tol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(dW, G @ X.T, rtol=tol, atol=tol)
    np.testing.assert_allclose(dX, W.T @ G, rtol=tol, atol=tol)


# --- losses against naive per-example loops ------------------------------------------------------

N, D, C = 7, 4, 3


@pytest.fixture
def data(rng):
    X = rng.standard_normal((N, D))
    W = 0.5 * rng.standard_normal((D, C))
    y = rng.integers(0, C, N)
    y[:C] = np.arange(C)                                # every class occurs
    return W, X, y


def mse(w, X, t):
    return snp.mean((X @ w - t) ** 2)


def test_mse(backend, data, rng):
    _, X, _ = data
    w, t = rng.standard_normal(D), rng.standard_normal(N)
    loss, dw = 0.0, np.zeros(D)
    for i in range(N):
        r = X[i] @ w - t[i]
        loss += r * r / N
        dw += 2 * r * X[i] / N
    f = symgrad.compile(mse, backend=backend)
    value, g = f.value_and_grad(w, X, t)
    assert value == pytest.approx(loss, rel=1e-13)
    np.testing.assert_allclose(g, dw, rtol=1e-12)


def binary_cross_entropy(w, X, t):
    p = nn.sigmoid(X @ w)
    return -snp.mean(t * snp.log(p) + (1 - t) * snp.log(1 - p))


def binary_cross_entropy_logits(w, X, t):
    z = X @ w
    return snp.mean(nn.softplus(z) - t * z)     # the same loss, stable for any z


@pytest.mark.parametrize("loss_fn", [binary_cross_entropy, binary_cross_entropy_logits])
def test_binary_cross_entropy(backend, data, rng, loss_fn):
    _, X, _ = data
    w = rng.standard_normal(D)
    t = (rng.uniform(size=N) < 0.5).astype(float)
    loss, dw = 0.0, np.zeros(D)
    for i in range(N):
        z = X[i] @ w
        p = 1 / (1 + np.exp(-z))
        loss -= (np.log(p) if t[i] else np.log(1 - p)) / N
        dw += (p - t[i]) * X[i] / N
    f = symgrad.compile(loss_fn, backend=backend)
    value, g = f.value_and_grad(w, X, t)
    assert value == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(g, dw, rtol=1e-10)


def cross_entropy(W, X, T):
    """Multi-class cross-entropy with one-hot targets T."""
    return -snp.mean(snp.sum(T * nn.log_softmax(X @ W, axis=1), axis=1))


def test_multiclass_cross_entropy(backend, data):
    W, X, y = data
    T = np.eye(C)[y]
    loss, dW = 0.0, np.zeros((D, C))
    for i in range(N):
        s = X[i] @ W
        p = np.exp(s) / np.sum(np.exp(s))
        loss -= np.log(p[y[i]]) / N
        for j in range(C):
            dW[:, j] += (p[j] - (j == y[i])) * X[i] / N
    f = symgrad.compile(cross_entropy, backend=backend)
    value, g = f.value_and_grad(W, X, T)
    assert value == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(g, dW, rtol=1e-10, atol=1e-14)


def softmax_loss(W, X, y, reg):
    """API.md's example, verbatim."""
    scores = X @ W                                            # (N, C)
    scores = scores - snp.max(scores, axis=1, keepdims=True)
    logp = scores - snp.log(snp.sum(snp.exp(scores), axis=1, keepdims=True))
    n = X.shape[0]
    return -snp.mean(logp[snp.arange(n), y]) + reg * snp.sum(W * W)


def softmax_loss_naive(W, X, y, reg):
    loss, dW = 0.0, np.zeros_like(W)
    for i in range(X.shape[0]):
        scores = X[i] @ W
        scores = scores - scores.max()
        p = np.exp(scores) / np.exp(scores).sum()
        loss -= np.log(p[y[i]])
        for j in range(W.shape[1]):
            dW[:, j] += (p[j] - (j == y[i])) * X[i]
    n = X.shape[0]
    return loss / n + reg * np.sum(W * W), dW / n + 2 * reg * W


def test_softmax_loss(backend, data):
    W, X, y = data
    reg = 0.1
    loss, dW = softmax_loss_naive(W, X, y, reg)
    f = symgrad.compile(softmax_loss, backend=backend)
    value, g = f.value_and_grad(W, X, y, reg)
    assert value == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(g, dW, rtol=1e-10, atol=1e-14)
    # the naive loop's own gradient is checked against finite differences of its loss
    np.testing.assert_allclose(numerical.grad(lambda W: softmax_loss_naive(W, X, y, reg)[0], W),
                               dW, rtol=1e-7, atol=1e-9)


def svm_loss(W, X, y, reg):
    """The multiclass SVM (hinge) loss, vectorized."""
    scores = X @ W
    n = X.shape[0]
    correct = scores[snp.arange(n), y]
    margins = snp.maximum(0.0, scores - correct[:, None] + 1.0)
    margins = snp.where(snp.arange(W.shape[1]) == y[:, None], 0.0, margins)
    return snp.sum(margins) / n + reg * snp.sum(W * W)


def svm_loss_naive(W, X, y, reg):
    loss, dW = 0.0, np.zeros_like(W)
    for i in range(X.shape[0]):
        scores = X[i] @ W
        for j in range(W.shape[1]):
            if j == y[i]:
                continue
            margin = scores[j] - scores[y[i]] + 1
            if margin > 0:
                loss += margin
                dW[:, j] += X[i]
                dW[:, y[i]] -= X[i]
    n = X.shape[0]
    return loss / n + reg * np.sum(W * W), dW / n + 2 * reg * W


def test_svm_loss(backend, data):
    W, X, y = data
    reg = 0.05
    loss, dW = svm_loss_naive(W, X, y, reg)
    margins = X @ W - (X @ W)[np.arange(N), y][:, None] + 1
    assert np.min(np.abs(margins)) > 1e-3         # no example sits on a hinge
    assert np.sum(margins > 0) > N                # and some margins are active
    f = symgrad.compile(svm_loss, backend=backend)
    value, g = f.value_and_grad(W, X, y, reg)
    assert value == pytest.approx(loss, rel=1e-12)
    np.testing.assert_allclose(g, dW, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("loss_fn", [softmax_loss, svm_loss])
def test_losses_on_float32(backend, data, loss_fn):
    W, X, y = data
    f = symgrad.compile(loss_fn, backend=backend)
    value, g = f.value_and_grad(W.astype(np.float32), X.astype(np.float32), y, 0.1)
    assert g.dtype == np.float32
    ref_value, ref_g = f.value_and_grad(W, X, y, 0.1)
    assert value == pytest.approx(ref_value, rel=1e-5)
    np.testing.assert_allclose(g, ref_g, rtol=1e-4, atol=1e-5)
