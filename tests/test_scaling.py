"""Cost that grows as the work grows (issue 20, goal 5): a Jacobian is one sweep in a loop,
not one copy of the sweep per row or column."""
import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp


def _f(x, W):
    return snp.tanh(W @ x) * snp.sum(x ** 2)


def _numeric(x, W):
    fn = lambda x: np.tanh(W @ x) * np.sum(x ** 2)      # noqa: E731
    return np.stack([(fn(x + 1e-6 * e) - fn(x - 1e-6 * e)) / 2e-6 for e in np.eye(x.size)],
                    axis=1)


def _statements(graph):
    return len(graph.nodes)


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_graph_does_not_grow_with_the_outputs(mode):
    rng = np.random.default_rng(0)
    x = rng.standard_normal(5)
    sizes = {}
    for n in (3, 40):
        W = rng.standard_normal((n, 5))
        J = symgrad.jacobian(_f, mode=mode)
        graph = J.trace(x, W)
        sizes[n] = _statements(graph)
        assert any(node.prim == "scan" for node in graph.nodes)
        np.testing.assert_allclose(J(x, W), _numeric(x, W), rtol=1e-6, atol=1e-8)
    assert sizes[3] == sizes[40]


@pytest.mark.parametrize("mode", ["reverse", "forward"])
def test_jacobian_in_the_interpreter_and_of_a_matrix_input(mode):
    # Blocks of several inputs and a 2-d input, checked against differences column by column.
    rng = np.random.default_rng(1)
    x, W = rng.standard_normal(4), rng.standard_normal((3, 4))
    J = symgrad.jacobian(_f, argnums=(0, 1), mode=mode, backend="interp")
    jx, jw = J(x, W)
    np.testing.assert_allclose(jx, _numeric(x, W), rtol=1e-6, atol=1e-8)
    fn = lambda W: np.tanh(W @ x) * np.sum(x ** 2)      # noqa: E731
    num = np.zeros((3, 3, 4))
    for i in np.ndindex(W.shape):
        e = np.zeros_like(W)
        e[i] = 1e-6
        num[(slice(None),) + i] = (fn(W + e) - fn(W - e)) / 2e-6
    np.testing.assert_allclose(jw, num, rtol=1e-6, atol=1e-8)


def test_builds_hold_off_the_cyclic_collector_and_restore_it():
    import gc
    import threading
    from symgrad.core import gcpause

    seen = []

    def f(x):
        seen.append(gc.isenabled())         # during the trace
        return snp.sum(snp.sin(x))

    assert gc.isenabled()
    symgrad.compile(f, backend="interp").value_and_grad(np.ones(3))
    assert seen == [False] and gc.isenabled()
    # A user who turned the collector off keeps it off.
    gc.disable()
    try:
        with gcpause.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    finally:
        gc.enable()
    # Overlapping builds in two threads: the collector comes back when the last one ends.
    first_in, second_done = threading.Event(), threading.Event()

    def first():
        with gcpause.paused():
            first_in.set()
            second_done.wait(10)
    t = threading.Thread(target=first)
    t.start()
    first_in.wait(10)
    with gcpause.paused():
        assert not gc.isenabled()
    assert not gc.isenabled()               # the first build is still running
    second_done.set()
    t.join(10)
    assert gc.isenabled()
