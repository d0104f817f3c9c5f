"""Loops that close over a value they differentiate: the adjoint loop sums that value's adjoint
into one buffer (the scan's ``summed`` output), never a row per step, or, for a sum of outer
products with the rows of a closed-over matrix, stores one short row per step and multiplies
once after the loop. First and second order, vmap, on both backends, against complex-step and
central differences of plain NumPy code."""
import re

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.core.primitives.scan import widths

from c_source import workspace_bytes

T, D, C = 7, 5, 3


def rows(W, X, b):
    """A loop over the rows of X closing over W and b: a carry, a per-step product with W (a
    sum of outer products X[i]^T v_i in reverse mode, which leaves the loop) and b (summed)."""
    def body(i, acc):
        s = snp.tanh(X[i] @ W + b)
        return acc * 0.9 + snp.sum(s * s * s) + snp.sum(s) * acc * 0.1
    return symgrad.fori_loop(0, X.shape[0], body, 0.25)


def rows_numpy(W, X, b):
    """The same in plain NumPy (complex-safe): the oracle."""
    acc = 0.25
    for i in range(X.shape[0]):
        s = np.tanh(X[i] @ W + b)
        acc = acc * 0.9 + np.sum(s * s * s) + np.sum(s) * acc * 0.1
    return acc


def rnn(W, X, b):
    """A recurrence whose product with W reads the carry: W's adjoint is summed in the loop."""
    def body(i, h):
        return snp.tanh((X[i] * (1.0 + 0.1 * h[0])) @ W + b * h)
    h = symgrad.fori_loop(0, X.shape[0], body, np.full(C, 0.1))
    return snp.sum(h * h * h)


def rnn_numpy(W, X, b):
    h = np.full(C, 0.1)
    for i in range(X.shape[0]):
        h = np.tanh((X[i] * (1.0 + 0.1 * h[0])) @ W + b * h)
    return np.sum(h * h * h)


CASES = {"rows": (rows, rows_numpy), "rnn": (rnn, rnn_numpy)}


def grad_complex_step(fn, W, X, b, h=1e-30):
    """d fn / d (W, b) by the complex step: exact to rounding, independent of symgrad."""
    out = []
    for k, a in enumerate((W, b)):
        g = np.zeros(a.size)
        for j in range(a.size):
            e = np.zeros(a.size, complex)
            e[j] = 1j * h
            args = [W.astype(complex), b.astype(complex)]
            args[k] = args[k] + e.reshape(a.shape)
            g[j] = fn(args[0], X, args[1]).imag / h
        out.append(g.reshape(a.shape))
    return out


@pytest.fixture
def data():
    rng = np.random.default_rng(19)
    return rng.normal(size=(D, C)) * 0.5, rng.normal(size=(T, D)), rng.normal(size=C) * 0.3


@pytest.mark.parametrize("case", CASES)
def test_gradient_of_closed_over_values(backend, data, case):
    loss, loss_numpy = CASES[case]
    W, X, b = data
    f = symgrad.compile(loss, argnums=(0, 2), backend=backend)
    value, (gW, gb) = f.value_and_grad(W, X, b)
    np.testing.assert_allclose(value, loss_numpy(W, X, b), rtol=1e-13)
    rW, rb = grad_complex_step(loss_numpy, W, X, b)
    np.testing.assert_allclose(gW, rW, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gb, rb, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("case", CASES)
def test_jvp_and_hvp_through_the_summed_loop(backend, data, case):
    """Forward over reverse: the jvp of the adjoint loop, whose closed-over values' adjoints
    are a summed output, against central differences of the complex-step gradient."""
    loss, loss_numpy = CASES[case]
    W, X, b = data
    rng = np.random.default_rng(5)
    vW, vb = rng.normal(size=W.shape), rng.normal(size=b.shape)
    f = symgrad.compile(loss, argnums=(0, 2), backend=backend)
    h = 1e-5
    plus = grad_complex_step(loss_numpy, W + h * vW, X, b + h * vb)
    minus = grad_complex_step(loss_numpy, W - h * vW, X, b - h * vb)
    fd = [(p - m) / (2 * h) for p, m in zip(plus, minus)]
    hv = f.hvp((W, X, b), (vW, vb))
    for got, want in zip(hv, fd):
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    # jvp of the gradient, written as a function: forward mode through the summed scan.
    gradient = symgrad.grad(loss, argnums=0)
    jv = symgrad.compile(gradient, argnums=0, backend=backend).jvp((W, X, b), (vW,))
    tangent = jv[1] if isinstance(jv, tuple) else jv
    plus = grad_complex_step(loss_numpy, W + h * vW, X, b)[0]
    minus = grad_complex_step(loss_numpy, W - h * vW, X, b)[0]
    np.testing.assert_allclose(tangent, (plus - minus) / (2 * h), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", CASES)
def test_reverse_over_reverse_through_the_summed_loop(backend, data, case):
    """The gradient of <grad loss, v>: the vjp of the adjoint loop, whose summed output's
    cotangent enters every step of the second adjoint loop as a closed-over value."""
    loss, loss_numpy = CASES[case]
    W, X, b = data
    v = np.random.default_rng(6).normal(size=W.shape)

    def directional(W, X, b):
        return snp.sum(symgrad.grad(loss, argnums=0)(W, X, b) * v)
    second = symgrad.compile(directional, argnums=0, backend=backend).grad(W, X, b)
    h = 1e-5
    fd = (grad_complex_step(loss_numpy, W + h * v, X, b)[0]
          - grad_complex_step(loss_numpy, W - h * v, X, b)[0]) / (2 * h)
    # The Hessian is symmetric: H v either way.
    np.testing.assert_allclose(second, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("case", CASES)
def test_vmap_of_the_gradient(backend, data, case):
    """Per-example gradients: vmap batches the adjoint loop, summed output included."""
    loss, loss_numpy = CASES[case]
    W, X, b = data
    Xs = np.stack([X, X[::-1] * 0.5, X + 1.0])
    per = symgrad.vmap(symgrad.grad(loss, argnums=0), in_axes=(None, 0, None), backend=backend)
    got = per(W, Xs, b)
    for k in range(3):
        np.testing.assert_allclose(got[k], grad_complex_step(loss_numpy, W, Xs[k], b)[0],
                                   rtol=1e-12, atol=1e-14)


def _adjoint_scans(graph):
    """The scans of a value-and-gradient graph, nested bodies included."""
    found = []

    def walk(g):
        for n in g.nodes:
            if n.prim == "scan":
                found.append(n)
                walk(n.attrs["body"].graph)
    walk(graph)
    return found


@pytest.mark.parametrize("case", CASES)
def test_the_adjoint_loop_keeps_no_row_per_step_for_closed_over_values(case):
    """The tape grows with T x the carry, never with T x W.size: the adjoint of the closed-over
    W is one summed buffer (rnn) or, a sum of outer products with X's rows, one product after
    the loop (rows). Seen in the IR (no loop row as wide as W) and in the C workspace, which
    stays far under T x W.size doubles at T = 200."""
    loss, loss_numpy = CASES[case]
    rng = np.random.default_rng(0)
    steps, d = 200, 300
    W, X, b = rng.normal(size=(d, C)) * 0.1, rng.normal(size=(steps, d)), np.zeros(C)
    f = symgrad.compile(loss, argnums=0)
    graph = f.specialize(W, X, b)[0].value_and_grad_graph()
    scans = _adjoint_scans(graph)
    for n in scans:
        P, Q = widths(n.attrs["body"], n.attrs.get("summed", 0))
        assert P + Q < W.size, (P, Q)          # no per-step row holds W's adjoint
    summed = [n.attrs.get("summed", 0) for n in scans]
    if case == "rnn":
        assert d * C in summed, summed
    else:
        assert d * C not in summed, summed
        assert [n.out.shape for n in graph.nodes if n.prim == "matmul"] == [W.shape]
    source = f.source(W, X, b)
    ws = workspace_bytes(source)
    assert ws < steps * W.size * 8 / 20, ws
    value, grad = f.value_and_grad(W, X, b)
    np.testing.assert_allclose(grad, grad_complex_step(loss_numpy, W, X, b)[0], rtol=1e-11,
                               atol=1e-13)


@pytest.mark.parametrize("case", CASES)
def test_interpreter_and_c_sum_the_same_way(data, case):
    """The summed output of the adjoint loop: the interpreter and the C kernel agree."""
    loss, _ = CASES[case]
    W, X, b = data
    interp = symgrad.compile(loss, argnums=(0, 2), backend="interp").grad(W, X, b)
    c = symgrad.compile(loss, argnums=(0, 2)).grad(W, X, b)
    for a, z in zip(interp, c):
        np.testing.assert_allclose(a, z, rtol=1e-13, atol=1e-15)


def test_a_loop_over_fewer_steps_than_the_rows_it_reads(backend, data):
    """The product after the loop uses x[:T] when the loop stops before x's last row."""
    W, X, b = data

    def head(W, X, b):
        return symgrad.fori_loop(0, 4, lambda i, acc: acc + snp.sum(snp.tanh(X[i] @ W + b)),
                                 0.0)

    def head_numpy(W, X, b):
        return sum(np.sum(np.tanh(X[i] @ W + b)) for i in range(4))
    g = symgrad.compile(head, argnums=0, backend=backend).grad(W, X, b)
    np.testing.assert_allclose(g, grad_complex_step(head_numpy, W, X, b)[0], rtol=1e-12,
                               atol=1e-14)


def test_a_wide_product_leaves_the_loop_as_one_product(backend):
    """x[i] @ W with 70 columns: too wide to store per step (the loop would keep 70 numbers a
    step), so the adjoint loop computes it again; W's adjoint, a sum of outer products
    x[i]^T v_i, still leaves the loop: the loop stores v_i, one product x^T V follows."""
    rng = np.random.default_rng(4)
    W, X, b = rng.normal(size=(4, 70)) * 0.3, rng.normal(size=(5, 4)), rng.normal(size=70) * 0.1
    f = symgrad.compile(rows, argnums=0, backend=backend)
    graph = f.specialize(W, X, b)[0].value_and_grad_graph()
    scans = _adjoint_scans(graph)
    assert all(n.attrs.get("summed", 0) < W.size for n in scans), [n.attrs for n in scans]
    assert [n.out.shape for n in graph.nodes if n.prim == "matmul"] == [W.shape]
    np.testing.assert_allclose(f.grad(W, X, b), grad_complex_step(rows_numpy, W, X, b)[0],
                               rtol=1e-12, atol=1e-14)


def test_the_loop_stores_the_steps_products_instead_of_computing_them_again():
    """The naive SVM's scores x[i] @ W: the forward loop of the gradient stores them (C numbers a
    step) and its adjoint loop reads them: no product with W in the adjoint loop's body."""
    W, X, b = np.zeros((5, 3)), np.ones((7, 5)), np.zeros(3)
    graph = symgrad.compile(rows, argnums=0).specialize(W, X, b)[0].value_and_grad_graph()
    scans = [n for n in graph.nodes if n.prim == "scan"]
    forward, adjoint = scans[0], scans[-1]
    assert widths(forward.attrs["body"]) == (1, 3)
    assert not any(n.prim == "matmul" for n in adjoint.attrs["body"].graph.nodes)
