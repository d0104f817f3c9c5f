"""Structured loops (``symgrad.fori_loop``, ``symgrad.scan``): one loop statement whatever the
trip count, reversed by a second loop over the tape of carries, on both backends."""
import re

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad import numerical

from c_source import workspace_bytes

G = 9.81


# --- the damped pendulum: explicit Euler over 5 s, loss on the final state ----------------------

def pendulum_step(dt, damping, length, theta, omega):
    return (theta + dt * omega,
            omega + dt * (-G / length * snp.sin(theta) - damping * omega))


def pendulum(T, checkpoint=None):
    dt = 5.0 / T

    def loss(damping, length):
        def step(i, state):
            return pendulum_step(dt, damping, length, *state)
        theta, omega = symgrad.fori_loop(0, T, step, (snp.asarray(1.0), snp.asarray(0.0)),
                                         checkpoint=checkpoint)
        return theta ** 2 + 0.5 * omega ** 2
    return loss


def pendulum_unrolled(T):
    dt = 5.0 / T

    def loss(damping, length):
        theta, omega = 1.0, 0.0
        for _ in range(T):
            theta, omega = pendulum_step(dt, damping, length, theta, omega)
        return theta ** 2 + 0.5 * omega ** 2
    return loss


def test_pendulum_equals_unrolled(backend):
    looped = symgrad.compile(pendulum(10), argnums=(0, 1), backend=backend)
    unrolled = symgrad.compile(pendulum_unrolled(10), argnums=(0, 1), backend=backend)
    value, grads = looped.value_and_grad(0.3, 1.5)
    ref_value, ref_grads = unrolled.value_and_grad(0.3, 1.5)
    np.testing.assert_allclose(value, ref_value, rtol=1e-14)
    np.testing.assert_allclose(grads, ref_grads, rtol=1e-12)


@pytest.mark.parametrize("T", [10, 1000])
def test_pendulum_check_grad(backend, T):
    f = symgrad.compile(pendulum(T), argnums=(0, 1), backend=backend)
    report = symgrad.check_grad(f, 0.3, 1.5, argnums=(0, 1))
    assert report.ok, str(report)


def test_pendulum_100000_steps(backend):
    """The gradient at T = 100,000 against central differences of the compiled (C) forward
    loop. check_grad's references run the interpreter (~5 s per forward evaluation at this T),
    so they are taken directly; the complex step is checked at T = 10 and 1,000."""
    T = 100_000
    f = symgrad.compile(pendulum(T), argnums=(0, 1), backend=backend)
    p = np.array([0.3, 1.5])
    value, grads = f.value_and_grad(*p)
    assert len(f.trace(*p).nodes) < 40        # one loop statement, not 100,000 steps
    native = symgrad.compile(pendulum(T), argnums=(0, 1), backend="c")
    fd = numerical.grad(lambda q: native(q[0], q[1]), p, method="central")
    np.testing.assert_allclose(grads, fd, rtol=1e-6)
    if backend != "c":
        native_value, native_grads = native.value_and_grad(*p)
        np.testing.assert_allclose(value, native_value, rtol=1e-12)
        np.testing.assert_allclose(grads, native_grads, rtol=1e-10)


def _normalized(source):
    """The C source with every number (trip counts, sizes, dt) replaced by N, and what the
    comments quoting statements hold besides: the loop bodies' content hashes (by H), and the
    padding that aligns the user's lines beside statements of different lengths."""
    source = re.sub(r"<(\w+) [0-9a-f]{16}>", r"<\1 H>", source)
    source = re.sub(r"\d+(\.\d*)?([eE][-+]?\d+)?", "N", source)
    return re.sub(r"(?<=\S) {2,}", " ", source)


def test_c_source_size_does_not_depend_on_trip_count():
    # Both tapes are over the size a workspace may take on the stack (codegen.STACK_WORKSPACE_MAX;
    # 10 steps' tape would be there: 1,216 bytes), so only numbers differ.
    sources = {T: symgrad.compile(pendulum(T), argnums=(0, 1), backend="c").source(0.3, 1.5)
               for T in (10_000, 100_000)}
    short, long_ = sources[10_000], sources[100_000]
    assert _normalized(short) == _normalized(long_)
    assert abs(len(short) - len(long_)) < 200     # only the digits of sizes and dt differ
    # The forward function's loop; value_and_grad's forward loop and its adjoint loop.
    assert len(re.findall(r"for \(int64_t _t = ", short)) == 3


# --- an RNN-style cell: per-step outputs stacked by scan ------------------------------------------

def rnn_loss(W, U, h0, xs):
    def cell(h, x):
        h = snp.tanh(W @ h + U @ x)
        return h, h * h
    hT, ys = symgrad.scan(cell, h0, xs)
    return snp.sum(ys * snp.arange(1.0, 4.0)) + snp.sum(hT)


def rnn_reference(W, U, h0, xs):
    h, total = h0, 0.0
    for x in xs:
        h = np.tanh(W @ h + U @ x)
        total += np.sum(h * h * np.arange(1.0, 4.0))
    return total + np.sum(h)


def test_rnn_scan_matches_numpy(backend):
    rng = np.random.default_rng(0)
    W, U = rng.normal(size=(3, 3)) * 0.5, rng.normal(size=(3, 2))
    h0, xs = rng.normal(size=3), rng.normal(size=(7, 2))
    f = symgrad.compile(rnn_loss, argnums=(0, 1, 2, 3), backend=backend)
    value, grads = f.value_and_grad(W, U, h0, xs)
    args = [W, U, h0, xs]
    np.testing.assert_allclose(value, rnn_reference(*args), rtol=1e-12)
    for k, g in enumerate(grads):
        def partial(a, k=k):
            return rnn_reference(*[a if j == k else args[j] for j in range(4)])
        np.testing.assert_allclose(g, numerical.grad(partial, args[k]), rtol=1e-6, atol=1e-9)


def test_scan_tuples_and_length(backend):
    def fn(a, xs, ys):
        def body(carry, x):
            s, p = carry
            u, v = x
            return (s + u * snp.sum(v) * a, p * a), (s, u + p)
        (s, p), (out1, out2) = symgrad.scan(body, (snp.asarray(0.0), snp.ones(2)), (xs, ys))
        z, _ = symgrad.scan(lambda c, _: (c * 0.5 + a, None), a, length=4)
        return snp.sum(out1) + snp.sum(out2 * out2) + s + snp.sum(p) + z
    rng = np.random.default_rng(1)
    args = (0.7, rng.normal(size=5), rng.normal(size=(5, 2)))
    f = symgrad.compile(fn, argnums=(0, 1, 2), backend=backend)
    np.testing.assert_allclose(f(*args), fn(*args), rtol=1e-12)   # plain NumPy loop
    assert symgrad.check_grad(f, *args, argnums=(0, 1, 2)).ok


def test_fori_loop_uses_the_index(backend):
    def fn(x):
        return snp.sum(symgrad.fori_loop(2, 6, lambda i, c: c * x + i, snp.zeros(3)))
    x = np.array([0.5, -1.0, 2.0])
    f = symgrad.compile(fn, backend=backend)
    np.testing.assert_allclose(f(x), fn(x), rtol=1e-12)
    assert symgrad.check_grad(f, x).ok


# --- plain NumPy, errors --------------------------------------------------------------------------

def test_plain_numpy_loops():
    assert symgrad.fori_loop(0, 5, lambda i, c: c + i, 0) == 10
    carry, ys = symgrad.scan(lambda c, x: (c + x, c * x), 1.0, np.arange(4.0))
    assert carry == 7.0
    np.testing.assert_array_equal(ys, [0.0, 1.0, 4.0, 12.0])
    carry, ys = symgrad.scan(lambda c, _: (c * 2, None), np.ones(2), length=3)
    np.testing.assert_array_equal(carry, [8.0, 8.0])
    assert ys is None


def test_nested_loops(backend):
    def fn(a, xs):
        def outer(c, x):
            inner = symgrad.fori_loop(0, 3, lambda i, h: snp.sin(h * a + x), c)
            return inner, inner * x
        c, ys = symgrad.scan(outer, snp.zeros(2), xs)
        return snp.sum(ys) + snp.sum(c)
    xs = np.random.default_rng(3).normal(size=(4, 2))
    f = symgrad.compile(fn, argnums=(0, 1), backend=backend)
    np.testing.assert_allclose(f(0.7, xs), fn(0.7, xs), rtol=1e-12)
    assert symgrad.check_grad(f, 0.7, xs, argnums=(0, 1)).ok


# --- forward mode and second order ---------------------------------------------------------------

def test_forward_mode_equals_reverse_mode(backend):
    rng = np.random.default_rng(2)
    args = (rng.normal(size=(3, 3)) * 0.5, rng.normal(size=(3, 2)), rng.normal(size=3),
            rng.normal(size=(6, 2)))
    for argnums in (2, 3):     # the initial carry; the scanned inputs
        forward = symgrad.jacobian(rnn_loss, argnums=argnums, mode="forward", backend=backend)
        reverse = symgrad.jacobian(rnn_loss, argnums=argnums, mode="reverse", backend=backend)
        np.testing.assert_allclose(forward(*args), reverse(*args), rtol=1e-12, atol=1e-14)
    forward = symgrad.jacobian(pendulum(30), argnums=(0, 1), mode="forward", backend=backend)
    reverse = symgrad.jacobian(pendulum(30), argnums=(0, 1), mode="reverse", backend=backend)
    np.testing.assert_allclose(forward(0.3, 1.5), reverse(0.3, 1.5), rtol=1e-12)


def test_second_order_through_the_loop(backend):
    f = pendulum(30)
    gradient = symgrad.compile(f, argnums=0, backend=backend)
    second = symgrad.compile(symgrad.grad(f, argnums=0), argnums=0, backend=backend)
    h = 1e-5
    fd = (gradient.grad(0.3 + h, 1.5) - gradient.grad(0.3 - h, 1.5)) / (2 * h)
    np.testing.assert_allclose(second.grad(0.3, 1.5), fd, rtol=1e-6)
    hessian = symgrad.hessian(f, argnums=0, backend=backend)     # forward over reverse
    np.testing.assert_allclose(hessian(0.3, 1.5), fd, rtol=1e-6)


def test_loop_errors():
    with pytest.raises(symgrad.ShapeError, match="the carry enters the body as f64"):
        symgrad.compile(lambda x: symgrad.fori_loop(0, 3, lambda i, c: snp.sum(c), x))(
            np.ones(2))
    with pytest.raises(TypeError, match="trip count must be an int argument"):
        symgrad.compile(lambda x: symgrad.fori_loop(0, x, lambda i, c: c, x))(3.0)


def test_body_is_traced_once_with_closed_over_values_as_inputs():
    graph = symgrad.compile(pendulum(50), argnums=(0, 1)).trace(0.3, 1.5)
    loops = [n for n in graph.nodes if n.prim == "scan"]
    assert len(loops) == 1
    body = loops[0].attrs["body"].graph
    # i, the packed carry, then damping and length (closed over): explicit inputs of the body.
    assert [v.name for v in body.inputs][:2] == ["i", "carry"]
    assert len(body.inputs) == 4
    # The body attribute compares by content (CSE, graph hashes): a second trace gives an equal one.
    again = [n for n in symgrad.compile(pendulum(50), argnums=(0, 1)).trace(0.3, 1.5).nodes
             if n.prim == "scan"][0].attrs["body"]
    assert again == loops[0].attrs["body"] and hash(again) == hash(loops[0].attrs["body"])


# --- checkpointing: every K-th carry stored, the steps between recomputed -------------------------

def _workspace_bytes(f, *args):
    """The value-and-gradient C function's workspace (its tape included), in bytes."""
    return workspace_bytes(f.source(*args))


@pytest.mark.parametrize("checkpoint", [1, 7, 100, "sqrt"])
def test_checkpointed_gradient_equals_the_stored_tape(backend, checkpoint):
    T = 1000 if backend == "c" else 150
    plain = symgrad.compile(pendulum(T), argnums=(0, 1), backend=backend)
    checked = symgrad.compile(pendulum(T, checkpoint), argnums=(0, 1), backend=backend)
    value, grads = plain.value_and_grad(0.3, 1.5)
    c_value, c_grads = checked.value_and_grad(0.3, 1.5)
    # The forward steps are the same operations in the same order; the adjoints of the
    # closed-over damping and length are summed per segment, so they may differ in rounding.
    assert c_value == value
    np.testing.assert_allclose(c_grads, grads, rtol=1e-13)


def test_checkpointed_scan_outputs_and_a_remainder(backend):
    """7 steps in segments of 3: two segments and one step left over; the stacked outputs
    come from both."""
    rng = np.random.default_rng(0)
    W, U = rng.normal(size=(3, 3)) * 0.5, rng.normal(size=(3, 2))
    h0, xs = rng.normal(size=3), rng.normal(size=(7, 2))

    def loss(W, U, h0, xs):
        def cell(h, x):
            h = snp.tanh(W @ h + U @ x)
            return h, h * h
        hT, ys = symgrad.scan(cell, h0, xs, checkpoint=3)
        return snp.sum(ys * snp.arange(1.0, 4.0)) + snp.sum(hT)
    f = symgrad.compile(loss, argnums=(0, 1, 2, 3), backend=backend)
    ref = symgrad.compile(rnn_loss, argnums=(0, 1, 2, 3), backend=backend)
    value, grads = f.value_and_grad(W, U, h0, xs)
    ref_value, ref_grads = ref.value_and_grad(W, U, h0, xs)
    np.testing.assert_allclose(value, rnn_reference(W, U, h0, xs), rtol=1e-12)
    for g, r in zip(grads, ref_grads):
        np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)
    assert symgrad.check_grad(f, W, U, h0, xs, argnums=(0, 1, 2, 3)).ok


def test_checkpointing_shrinks_the_tape():
    """The value-and-gradient workspace at T = 10,000: about 6 doubles per step with the full
    tape (docs/loops.md); with checkpoint="sqrt", two segments of 100 steps' worth."""
    T = 10_000
    plain = symgrad.compile(pendulum(T), argnums=(0, 1))
    sqrt = symgrad.compile(pendulum(T, "sqrt"), argnums=(0, 1))
    full, small = _workspace_bytes(plain, 0.3, 1.5), _workspace_bytes(sqrt, 0.3, 1.5)
    assert full >= T * 2 * 8             # at least the tape: 2 carries of 8 bytes per step
    assert small < 20 * 101 * 8 * 4      # O(sqrt(T)) rows, a few arrays of them
    assert small < full / 30
    lines = symgrad.frontend.loops.memory_lines(sqrt.specialize(0.3, 1.5)[0].value_and_grad_graph())
    assert any("100 steps of segment" in line and "rows 101 x (2 carry)" in line
               for line in lines), lines
    assert any(line.startswith("  ") and "100 steps of body" in line for line in lines), lines


def test_checkpointed_pendulum_100000_steps():
    T = 100_000
    f = symgrad.compile(pendulum(T, "sqrt"), argnums=(0, 1))
    p = np.array([0.3, 1.5])
    grads = f.grad(*p)
    fd = numerical.grad(lambda q: f(q[0], q[1]), p, method="central")
    np.testing.assert_allclose(grads, fd, rtol=1e-6)
    np.testing.assert_allclose(grads, symgrad.compile(pendulum(T), argnums=(0, 1)).grad(*p),
                               rtol=1e-12)


def test_forward_mode_and_second_order_through_checkpoints(backend):
    f = symgrad.compile(pendulum(40, checkpoint=6), argnums=(0, 1), backend=backend)
    g = symgrad.compile(pendulum(40), argnums=(0, 1), backend=backend)
    _, tangent = f.jvp((0.3, 1.5), (1.0, 0.5))
    _, ref_tangent = g.jvp((0.3, 1.5), (1.0, 0.5))
    np.testing.assert_allclose(tangent, ref_tangent, rtol=1e-12)
    np.testing.assert_allclose(symgrad.hessian(pendulum(40, checkpoint=6),
                                               backend=backend)(0.3, 1.5),
                               symgrad.hessian(pendulum(40), backend=backend)(0.3, 1.5),
                               rtol=1e-10)


@pytest.mark.parametrize("bad", [0, -3, 2.5, "log", True])
def test_checkpoint_argument_errors(bad):
    with pytest.raises(ValueError, match="checkpoint"):
        symgrad.compile(pendulum(10, bad), argnums=(0, 1))(0.3, 1.5)
    with pytest.raises(ValueError, match="checkpoint"):
        symgrad.fori_loop(0, 3, lambda i, c: c + i, 0.0, checkpoint=bad)


# --- run-time trip counts: a named size, or an int argument ---------------------------------------

def test_trip_count_from_a_named_size(backend):
    """scan over xs whose length the signature names, and fori_loop up to xs.shape[0] from 2:
    one compiled function for every length, 0 included."""
    def loss(W, xs, h0):
        def cell(h, x):
            h = snp.tanh(W @ h + x)
            return h, snp.sum(h * h)
        hT, ys = symgrad.scan(cell, h0, xs)
        shifted = symgrad.fori_loop(2, xs.shape[0], lambda i, c: c * 0.5 + xs[i], hT)
        return snp.sum(shifted) + snp.sum(ys * ys)
    rng = np.random.default_rng(3)
    W, h0 = rng.normal(size=(2, 2)) * 0.5, rng.normal(size=2)
    sig = {"W": "f64[2,2]", "xs": "f64[T,2]", "h0": "f64[2]"}
    f = symgrad.compile(loss, argnums=(0, 1, 2), signature=sig, backend=backend)
    f.value_and_grad(W, np.ones((3, 2)), h0)
    for T in (0, 1, 2, 5, 40):
        xs = rng.normal(size=(T, 2))
        before = symgrad.backends.c.compiler.invocations()
        value, grads = f.value_and_grad(W, xs, h0)
        assert symgrad.backends.c.compiler.invocations() == before     # no new build for a T
        ref_value, ref_grads = symgrad.compile(loss, argnums=(0, 1, 2),
                                               backend=backend).value_and_grad(W, xs, h0)
        np.testing.assert_allclose(value, ref_value, rtol=1e-13)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g, r, rtol=1e-12, atol=1e-15)
    assert symgrad.check_grad(f, W, rng.normal(size=(6, 2)), h0, argnums=(0, 1, 2)).ok


def pendulum_for(damping, length, T):
    def step(i, state):
        return pendulum_step(0.01, damping, length, *state)
    theta, omega = symgrad.fori_loop(0, T, step, (snp.asarray(1.0), snp.asarray(0.0)))
    return theta ** 2 + 0.5 * omega ** 2


def test_trip_count_from_an_argument(backend):
    """The horizon is an argument: every T, negative ones running no step (range semantics),
    from one compiled function."""
    f = symgrad.compile(pendulum_for, argnums=(0, 1), backend=backend)
    f.value_and_grad(0.3, 1.5, 7)
    before = symgrad.backends.c.compiler.invocations()
    for T in (0, 1, 10, 300, -3):
        value, grads = f.value_and_grad(0.3, 1.5, T)
        assert symgrad.backends.c.compiler.invocations() == before     # no new build for a T
        static = symgrad.compile(lambda d, l, T=T: pendulum_for(d, l, T), argnums=(0, 1),
                                 backend=backend)
        ref_value, ref_grads = static.value_and_grad(0.3, 1.5)
        before = symgrad.backends.c.compiler.invocations()
        assert value == ref_value
        np.testing.assert_allclose(grads, ref_grads, rtol=1e-13)
    assert symgrad.check_grad(f, 0.3, 1.5, 200, argnums=(0, 1)).ok
    _, tangent = f.jvp((0.3, 1.5, 50), (1.0, 0.0))
    np.testing.assert_allclose(tangent, symgrad.compile(
        lambda d, l: pendulum_for(d, l, 50), argnums=(0, 1), backend=backend).grad(0.3, 1.5)[0],
        rtol=1e-12)


def test_trip_count_argument_keeps_the_c_and_its_size_at_run_time():
    f = symgrad.compile(pendulum_for, argnums=(0, 1))
    src = f.source(0.3, 1.5, 10)
    assert src == f.source(0.3, 1.5, 100_000)
    assert "const int64_t symgrad_value_T = (int64_t)*T_ptr;" in src
    grads = f.grad(0.3, 1.5, 2000)        # 20 s of swinging, dt = 0.01
    fd = numerical.grad(lambda q: f(q[0], q[1], 2000), np.array([0.3, 1.5]))
    np.testing.assert_allclose(grads, fd, rtol=1e-6)


def test_run_time_trip_count_errors():
    def stacked(x, n):
        _, ys = symgrad.scan(lambda c, _: (c * x, c), x, length=n)
        return ys
    with pytest.raises(symgrad.TracingError, match="depends on the value of the argument n"):
        symgrad.compile(stacked, argnums=())(0.5, 4)
    with pytest.raises(TypeError, match="computed inside it"):
        symgrad.compile(lambda x, n: symgrad.fori_loop(0, 2 * n, lambda i, c: c * x, x))(
            0.5, 3)
    with pytest.raises(NotImplementedError, match="checkpoint= needs a trip count"):
        symgrad.compile(lambda x, n: symgrad.fori_loop(0, n, lambda i, c: c * x, x,
                                                       checkpoint=4))(0.5, 3)


# --- pytrees: carries, xs and ys of nested tuples, named tuples, lists and dicts -------------------

def test_pytree_carries_xs_and_ys(backend):
    from collections import namedtuple
    State = namedtuple("State", "pos vel")

    def loss(k, xs):
        def f(c, x):
            st = c["state"]
            new = State(st.pos + 0.1 * st.vel, st.vel - 0.1 * k * st.pos + x["force"])
            return {"state": new, "energy": c["energy"] + snp.sum(new.vel ** 2)}, \
                (new.pos, {"v": new.vel})
        init = {"state": State(snp.ones(2), snp.zeros(2)), "energy": snp.asarray(0.0)}
        c, (ps, d) = symgrad.scan(f, init, {"force": xs})
        assert isinstance(c["state"], State)
        return snp.sum(c["state"].pos) + c["energy"] + snp.sum(ps * d["v"])
    xs = np.random.default_rng(0).normal(size=(5, 2))
    f = symgrad.compile(loss, argnums=(0, 1), backend=backend)
    np.testing.assert_allclose(f(0.7, xs), loss(0.7, xs), rtol=1e-13)    # plain NumPy loop
    assert symgrad.check_grad(f, 0.7, xs, argnums=(0, 1)).ok


def test_pytree_structure_errors():
    def swaps(x):
        return symgrad.fori_loop(0, 2, lambda i, c: (c[1], c[0], c[0]), (x, x))
    with pytest.raises(symgrad.TracingError, match=r"structured as PyTreeDef\(\(\*, \*, \*\)\) "
                                                   r"for one structured as PyTreeDef\(\(\*, \*\)\)"):
        symgrad.compile(swaps, argnums=())(1.0)

    def grows(x):
        return symgrad.fori_loop(0, 2, lambda i, c: {"a": c["a"], "b": snp.stack([c["b"]] * 2)},
                                 {"a": x, "b": x})
    with pytest.raises(symgrad.ShapeError, match=r"the carry\['b'\] enters the body as f64\[\]"):
        symgrad.compile(grows, argnums=())(1.0)


# --- scan(reverse=True): last x first, ys in xs' order ----------------------------------------------

def _backward_recursion(a, xs, checkpoint=None):
    """h_t = tanh(a * h_{t+1} + x_t), from the last x; ys the h's, and their weighted sum."""
    def cell(h, x):
        h = snp.tanh(a * h + x)
        return h, h
    h0, ys = symgrad.scan(cell, snp.zeros(2), xs, reverse=True, checkpoint=checkpoint)
    return snp.sum(h0) + snp.sum(ys * snp.arange(1.0, 1.0 + ys.shape[0])[:, None])


def _backward_reference(a, xs):
    h, ys = np.zeros(2), np.zeros_like(xs)
    for t in range(len(xs) - 1, -1, -1):
        h = np.tanh(a * h + xs[t])
        ys[t] = h
    return np.sum(h) + np.sum(ys * np.arange(1.0, 1.0 + len(xs))[:, None])


@pytest.mark.parametrize("checkpoint", [None, 3, "sqrt"])
def test_reverse_scan(backend, checkpoint):
    xs = np.random.default_rng(5).normal(size=(11, 2))
    f = symgrad.compile(lambda a, xs: _backward_recursion(a, xs, checkpoint), argnums=(0, 1),
                        backend=backend)
    np.testing.assert_allclose(f(0.8, xs), _backward_reference(0.8, xs), rtol=1e-13)
    np.testing.assert_allclose(_backward_recursion(0.8, xs, checkpoint),     # plain NumPy
                               _backward_reference(0.8, xs), rtol=1e-13)
    assert symgrad.check_grad(f, 0.8, xs, argnums=(0, 1)).ok


def test_trip_count_argument_inside_a_loop_body(backend):
    """The inner loop's count is an argument the outer body closes over."""
    def f(x, n):
        def outer(i, c):
            return symgrad.fori_loop(0, n, lambda j, d: d * x + 0.1 * i, c)
        return snp.sum(symgrad.fori_loop(0, 3, outer, snp.ones(2)))

    def reference(x, n):
        c = np.ones(2)
        for i in range(3):
            for _ in range(n):
                c = c * x + 0.1 * i
        return np.sum(c)
    g = symgrad.compile(f, backend=backend)
    for n in (0, 1, 4):
        value, grad = g.value_and_grad(0.7, n)
        np.testing.assert_allclose(value, reference(0.7, n), rtol=1e-14)
        np.testing.assert_allclose(grad, numerical.grad(lambda x: reference(x, n), 0.7),
                                   rtol=1e-7, atol=1e-12)


# --- carries of mixed dtypes: ints and bools ride in the float vector as its bits ----------------

def _counted(x, checkpoint=None):
    """Float state beside an int counter that goes negative (its bits are a NaN pattern), a
    huge int (2**62: no float holds it exactly) and a bool flag."""
    def body(i, c):
        s, k, big, flag = c
        return s * x + k * 0.001, k - 7, big + 1, k > -20
    s, k, big, flag = symgrad.fori_loop(0, 6, body, (snp.ones(2), -1, 2 ** 62, False),
                                        checkpoint=checkpoint)
    return snp.sum(s) + (k + (big - 2 ** 62)) * 0.5 + flag * 1.0


@pytest.mark.parametrize("checkpoint", [None, 4])
def test_int_and_bool_carries_beside_float_state(backend, checkpoint):
    f = symgrad.compile(lambda x: _counted(x, checkpoint), backend=backend)
    np.testing.assert_allclose(f(0.7), _counted(0.7), rtol=1e-14)     # plain Python loop
    assert symgrad.check_grad(f, 0.7).ok                               # complex step included
    _, tangent = f.jvp((0.7,), (1.0,))
    np.testing.assert_allclose(tangent, f.grad(0.7), rtol=1e-12)

    def final(x):
        return symgrad.fori_loop(0, 6, lambda i, c: (c[0] * x, c[1] - 7), (snp.ones(2), -1))
    state, k = symgrad.compile(final, argnums=(), backend=backend)(0.7)
    assert k == -43            # (a scalar result comes back as a Python float: API.md §2)
    np.testing.assert_allclose(state, 0.7 ** 6, rtol=1e-14)


def test_int_carry_errors():
    def f32_state(x):
        return snp.sum(symgrad.fori_loop(0, 3, lambda i, c: (c[0] * x, c[1] + 1),
                                         (snp.ones(2).astype("float32"), 0))[0])
    with pytest.raises(TypeError, match="int64 carry cannot travel beside float32"):
        symgrad.compile(f32_state)(np.float32(0.5))

    def f64_output_beside_f32_state(x):
        return symgrad.scan(lambda c, _: (c * x, snp.sum(c).astype("float64")),
                            snp.ones(2).astype("float32"), length=3)[1]
    with pytest.raises(TypeError, match="64-bit per-step output cannot travel beside float32"):
        symgrad.compile(f64_output_beside_f32_state, argnums=())(np.float32(0.5))

    def int_becomes_float(x):
        return symgrad.fori_loop(0, 3, lambda i, c: (c[0] * x, c[1] * 0.5), (x, 3))[0]
    with pytest.raises(symgrad.ShapeError, match=r"the carry\[1\] enters the body as i64\[\]"):
        symgrad.compile(int_becomes_float)(0.5)


def test_per_step_outputs_of_any_dtype(backend):
    """ys keep their own dtypes (ints and bools by their bits, a float32 y beside float64
    state converted back exactly), as in JAX."""
    xs = np.random.default_rng(0).normal(size=(5, 2))

    def f(x, xs):
        def cell(c, xx):
            s, k = c
            s2 = snp.tanh(s * x + xx)
            return (s2, k + 1), (s2, k * 10 - 3, s2 > 0, snp.sum(s2).astype("float32"))
        _, (ss, ks, flags, f32s) = symgrad.scan(cell, (snp.zeros(2), -2), xs)
        return ss, ks, flags, f32s
    got = symgrad.compile(f, argnums=(), backend=backend)(0.7, xs)
    want = f(0.7, xs)                        # plain NumPy loop
    assert [g.dtype for g in got] == [np.float64, np.int64, np.bool_, np.float32]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-14 if g.dtype != np.float32 else 1e-6)
    np.testing.assert_array_equal(got[1], [-23, -13, -3, 7, 17])

    def loss(x, xs):
        ss, ks, flags, _ = f(x, xs)
        return snp.sum(ss * ks[:, None]) + snp.sum(flags * 1.0)
    assert symgrad.check_grad(symgrad.compile(loss, backend=backend), 0.7, xs).ok
