"""Plain Python/NumPy code compiled as written (API.md section 6, issue 19): the source conversion
of if/for/while/break/continue/return, in-place updates, math and builtins on traced values.

Each function of ``pyconvert_fns.TABLE`` runs as it is in NumPy (the oracle for values; central
differences of it for gradients) and compiled on both backends. Compiled functions are shared
across tests (``_compiled``) to keep the suite fast."""
import functools
import inspect
import os

import numpy as np
import pytest

import symgrad
from symgrad.frontend import autograph

import pyconvert_fns as P

HERE = "pyconvert_fns.py"
POINTS = [np.array([0.7, 0.3, -0.4, 1.1]), np.array([-0.8, 0.45, 0.9, -0.2])]


@functools.lru_cache(maxsize=None)
def _compiled(fn, backend, **kwargs):
    return symgrad.compile(fn, backend=backend, **kwargs)


def central(f, x, h=1e-6):
    return np.array([(f(x + h * e) - f(x - h * e)) / (2 * h) for e in np.eye(x.size)])


def line_of(fn, text):
    lines, first = inspect.getsourcelines(fn)
    return f"{HERE}:{first + next(i for i, line in enumerate(lines) if text in line)}"


@pytest.mark.parametrize("fn", P.TABLE, ids=lambda f: f.__name__)
def test_values_and_gradients_match_plain_numpy(fn, backend):
    f = _compiled(fn, backend)
    for x in POINTS:
        value, grad = f.value_and_grad(x.copy())
        expected = fn(x.copy())
        assert value == pytest.approx(expected, rel=1e-13, abs=1e-13)
        np.testing.assert_allclose(grad, central(lambda z: fn(z.copy()), x), rtol=1e-6,
                                   atol=1e-7)


@pytest.mark.parametrize("fn", [P.loop_with_branches, P.nested_loops_continue, P.loop_break,
                                P.while_traced, P.fill_in_loop, P.over_rows, P.calls_helper,
                                P.method, P.nested_helper_loop], ids=lambda f: f.__name__)
def test_loops_over_traced_values_are_one_scan(fn):
    graph = _compiled(fn, "interp").trace(POINTS[0])
    assert [n.prim for n in graph.nodes].count("scan") == 1


def test_python_control_flow_stays_python():
    graph = _compiled(P.python_loop_stays_python, "interp").trace(POINTS[0])
    assert "scan" not in [n.prim for n in graph.nodes]


def test_inputs_are_not_modified_by_in_place_code():
    x = POINTS[0].copy()
    _compiled(P.inplace_argument, "c")(x)
    np.testing.assert_array_equal(x, POINTS[0])


def test_converted_source_keeps_the_users_lines():
    source = autograph.converted_source(P.nested_loops_continue)
    assert "_sg.for_stmt" in source and "_sg.if_stmt" in source and "_sg_cont" in source


# --- run-time trip counts --------------------------------------------------------------------

def sum_until(x, n):
    total = 0.0
    for i in range(n):
        total += x[i] ** 2
    return total


def test_trip_count_from_an_int_argument(backend):
    f = _compiled(sum_until, backend)
    x = np.arange(1.0, 6.0)
    for n in (0, 2, 5):
        value, grad = f.value_and_grad(x, n)
        assert value == pytest.approx(sum_until(x, n))
        np.testing.assert_allclose(grad, np.where(np.arange(5) < n, 2 * x, 0.0))
    assert len(f._specializations if hasattr(f, "_specializations") else [0]) <= 1


def rows_loss(X):
    loss = 0.0
    for i in range(X.shape[0]):
        if X[i, 0] > X[i, 1]:
            loss += X[i, 0] * X[i, 1]
    return loss


def test_trip_count_from_a_run_time_size(backend):
    f = symgrad.compile(rows_loss, backend=backend, signature={"X": "f64[N,2]"})
    for n in (3, 7):
        X = np.random.default_rng(n).standard_normal((n, 2))
        value, grad = f.value_and_grad(X)
        assert value == pytest.approx(rows_loss(X), rel=1e-13)
        np.testing.assert_allclose(grad.ravel(), central(lambda z: rows_loss(z.reshape(n, 2)),
                                                         X.ravel()), rtol=1e-6, atol=1e-8)


def pendulum(params, T):
    damping, length = params[0], params[1]
    theta, omega, t = 1.0, 0.0, 0.0
    while t < T:  # symgrad: max_steps=300
        theta, omega = (theta + 0.01 * omega,
                        omega + 0.01 * (-9.81 / length * np.sin(theta) - damping * omega))
        t += 0.01
    return theta ** 2 + 0.5 * omega ** 2


def test_reverse_mode_through_a_while_loop_whose_trip_count_is_known_at_run_time(backend):
    f = _compiled(pendulum, backend)
    p = np.array([0.3, 1.5])
    for T in (0.5, 2.0):
        value, grad = f.value_and_grad(p, T)        # one compiled function for every T
        assert value == pytest.approx(pendulum(p, T), rel=1e-13)
        np.testing.assert_allclose(grad, central(lambda z: pendulum(z, T), p), rtol=1e-6)


# --- errors name the variable and the user's line --------------------------------------------

ERRORS = [
    (P.one_branch_only, "'y' is assigned in only one branch", "return y * 2.0"),
    (P.shapes_differ, "'y' has shape (2,) in one branch and (4,)", "if x[0] > 0:"),
    (P.flat_write, "x.flat", "a.flat[0] = 1.0"),
    (P.out_to_numpy, "out=", "np.add(x, 1.0, out=buf)"),
    (P.return_in_loop, "return inside a loop", "for i in range(x.shape[0]):"),
    (P.array_truth, "ambiguous", "if x > 0:"),
    (P.only_inside_loop, "'last' is assigned only inside the loop", "return total + last"),
]


@pytest.mark.parametrize("fn, message, line", ERRORS, ids=[e[0].__name__ for e in ERRORS])
def test_errors_name_the_construct_and_line(fn, message, line):
    with pytest.raises(symgrad.TracingError) as info:
        _compiled(fn, "interp")(POINTS[0])
    assert message in str(info.value)
    assert line_of(fn, line) in str(info.value)


def test_python_semantics_of_the_examples_are_unchanged():
    # The functions still run as plain NumPy code (nothing was monkey-patched).
    x = POINTS[0].copy()
    assert P.if_else(x) == pytest.approx(2 * np.sum(x))
    assert os.path.basename(P.__file__) == HERE


# --- the naive losses (examples/naive_losses.py) ------------------------------------------------

def _naive():
    import importlib.util
    path = os.path.join(os.path.dirname(__file__), "..", "examples", "naive_losses.py")
    spec = importlib.util.spec_from_file_location("naive_losses", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


NAIVE = _naive()


@pytest.mark.parametrize("which", ["svm", "softmax"])
def test_naive_losses_equal_the_vectorized_ones(which, backend):
    naive = getattr(NAIVE, f"{which}_loss_naive")
    vectorized = getattr(NAIVE, f"{which}_loss_vectorized")
    W, X, y = NAIVE.cifar_like(12, D=7, C=4, seed=3)
    f, g = _compiled(naive, backend), _compiled(vectorized, backend)
    (v1, g1), (v2, g2) = f.value_and_grad(W, X, y, 1e-3), g.value_and_grad(W, X, y, 1e-3)
    assert v1 == pytest.approx(naive(W, X, y, 1e-3), rel=1e-13)
    assert v1 == pytest.approx(v2, rel=1e-13)
    np.testing.assert_allclose(g1, g2, rtol=0, atol=1e-12)


def test_rosenbrock_and_pendulum_equal_the_vectorized_ones():
    x = np.linspace(-1.2, 1.5, 7)
    f, g = _compiled(NAIVE.rosenbrock_loop, "c"), _compiled(NAIVE.rosenbrock_vectorized, "c")
    np.testing.assert_allclose(f.grad(x), g.grad(x), rtol=0, atol=1e-12)
    p, T = np.array([0.3, 1.5]), 1.0
    f = _compiled(NAIVE.pendulum, "c")
    g = _compiled(NAIVE.pendulum_fixed_steps, "c", static_argnums=(1,))
    steps = NAIVE.pendulum_steps(T)
    assert f(p, T) == pytest.approx(g(p, steps), rel=1e-13)
    np.testing.assert_allclose(f.grad(p, T), g.grad(p, steps), rtol=0, atol=1e-12)


def test_the_adjoint_loop_carries_only_the_adjoints_it_needs():
    # svm_loss_naive reads X (N x D) and W (D x C) in its loop; the gradient w.r.t. W must not
    # carry X's adjoint through every step (N x D numbers per step).
    from symgrad.core.autodiff import value_and_grad_graph
    # Nor W's: its adjoint, a sum over the steps of X[i]^T v_i, leaves the loop (the loop
    # stores v_i, C numbers a step, and one product X^T V follows it): no row of the adjoint
    # loop holds W.size numbers, and nothing is summed that is as big as X.
    from symgrad.core.primitives.scan import widths
    W, X, y = NAIVE.cifar_like(5, D=6, C=3)
    graph = symgrad.trace(NAIVE.svm_loss_naive, W, X, y, 1e-3)
    vg = value_and_grad_graph(graph, [0])
    loops = [n for n in vg.nodes if n.prim == "scan"]
    assert len(loops) == 2
    for n in loops:
        P, Q = widths(n.attrs["body"], n.attrs.get("summed", 0))
        assert P + Q <= 1 + W.shape[1] and n.attrs.get("summed", 0) < X.size
    after = [n for n in vg.nodes if n.prim == "matmul"]
    assert [n.out.shape for n in after] == [W.shape]


def test_a_while_loop_running_past_its_bound_fails_at_run_time(backend):
    f = _compiled(pendulum, backend)
    p = np.array([0.3, 1.5])
    for call in (f, f.grad):
        with pytest.raises(RuntimeError, match=r"still runs after its 300 steps.*max_steps=N"):
            call(p, 3.5)            # 350 steps of 0.01
    assert f(p, 2.0) == pytest.approx(pendulum(p, 2.0), rel=1e-13)


def test_inspect_shows_the_converted_function_next_to_the_original():
    from symgrad.tools import inspect as sg_inspect
    text = sg_inspect.report(P.loop_with_branches, POINTS[0]).text()
    assert f"# original ({line_of(P.loop_with_branches, 'def loop_with_branches')})" in text
    assert "_sg.for_stmt(_sg.Range(x.shape[0])" in text and "_sg.if_stmt(" in text
    plain = sg_inspect.report(lambda x: np.sum(x * x), POINTS[0]).text()
    assert "# converted" not in plain


_AOT_SPEC = '''
import numpy as np
import symgrad


def rows_loss(X, n):
    loss = 0.0
    for i in range(n):
        if X[i, 0] > X[i, 1]:
            loss += X[i, 0] * X[i, 1]
        else:
            loss -= 0.5 * X[i, 1]
    return loss


def pendulum(params, T):
    damping, length = params[0], params[1]
    theta, omega, t = 1.0, 0.0, 0.0
    while t < T:  # symgrad: max_steps=400
        theta, omega = (theta + 0.01 * omega,
                        omega + 0.01 * (-9.81 / length * np.sin(theta) - damping * omega))
        t += 0.01
    return theta ** 2 + 0.5 * omega ** 2


symgrad.export(rows_loss, "f64[N,2]", "i64[]")
symgrad.export(pendulum, "f64[2]", "f64[]")
'''


def test_converted_loops_build_ahead_of_time(tmp_path):
    import importlib.util
    from symgrad.tools.cli import main
    spec = tmp_path / "plain_spec.py"
    spec.write_text(_AOT_SPEC)
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    module_spec = importlib.util.spec_from_file_location("aot_plain", tmp_path / "out" /
                                                         "plain_spec.py")
    loader = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(loader)
    namespace = {}
    exec(compile(_AOT_SPEC.replace("symgrad.export", "# "), str(spec), "exec"), namespace)
    X = np.random.default_rng(0).standard_normal((6, 2))
    for n in (0, 3, 6):
        value, grad = loader.rows_loss_value_and_grad(X, n)
        assert value == pytest.approx(namespace["rows_loss"](X, n), rel=1e-13, abs=1e-15)
        np.testing.assert_allclose(grad.ravel(), central(
            lambda z: namespace["rows_loss"](z.reshape(6, 2), n), X.ravel()), atol=1e-8)
    p = np.array([0.3, 1.5])
    for T in (0.5, 3.0):
        value, grad = loader.pendulum_value_and_grad(p, T)
        assert value == pytest.approx(namespace["pendulum"](p, T), rel=1e-13)
        np.testing.assert_allclose(grad, central(lambda z: namespace["pendulum"](z, T), p),
                                   rtol=1e-6)
