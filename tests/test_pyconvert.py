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
from c_source import workspace_bytes

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
def test_values_and_gradients_match_plain_numpy(fn):
    f = _compiled(fn, "interp")
    for x in POINTS:
        value, grad = f.value_and_grad(x.copy())
        expected = fn(x.copy())
        assert value == pytest.approx(expected, rel=1e-13, abs=1e-13)
        np.testing.assert_allclose(grad, central(lambda z: fn(z.copy()), x), rtol=1e-6,
                                   atol=1e-7)


def test_every_function_in_one_c_module():
    """The whole table on the C backend, compiled once (P.every_function stacks the results):
    each function's value, and its gradient in reverse and in forward mode (the rows of the
    Jacobians), against plain NumPy and central differences."""
    values = _compiled(P.every_function, "c")
    reverse = symgrad.jacobian(P.every_function, mode="reverse", backend="c")
    forward = symgrad.jacobian(P.every_function, mode="forward", backend="c")
    for x in POINTS:
        got, expected = values(x.copy()), P.every_function(x.copy())
        fd = central(lambda z: P.every_function(z.copy()), x).T
        J, Jf = reverse(x.copy()), forward(x.copy())
        for k, fn in enumerate(P.TABLE):
            assert got[k] == pytest.approx(expected[k], rel=1e-13, abs=1e-13), fn.__name__
            np.testing.assert_allclose(J[k], fd[k], rtol=1e-6, atol=1e-7, err_msg=fn.__name__)
            np.testing.assert_allclose(Jf[k], J[k], rtol=1e-12, atol=1e-14,
                                       err_msg=fn.__name__)


@pytest.mark.parametrize("fn", [P.loop_with_branches, P.nested_loops_continue, P.loop_break,
                                P.while_traced, P.fill_in_loop, P.over_rows, P.calls_helper,
                                P.method, P.nested_helper_loop, P.return_in_loop,
                                P.return_in_nested_loop, P.return_in_while,
                                P.return_tuple_from_helper, P.enumerate_rows, P.zip_arrays,
                                P.for_else, P.while_else, P.method_inplace_boolean,
                                P.helper_writes_argument], ids=lambda f: f.__name__)
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


class Summer:
    def __init__(self, p):
        self.p = p

    def total(self, x, n):
        s, k = 0.0, 0
        for i in range(n):                  # n: a traced int, passed on to a method
            if x[i] > 0 and not x[i] > 2:
                s += x[i] ** self.p
            else:
                continue
            k += 1
        return s * (k + 1)


def method_with_traced_trip_count(x, n):
    return Summer(3).total(x, n)


def test_trip_count_from_an_int_argument_in_a_method(backend):
    f = _compiled(method_with_traced_trip_count, backend)
    x = np.array([0.5, -1.0, 1.5, 2.5, 0.7])
    for n in (0, 3, 5):
        value, grad = f.value_and_grad(x, n)
        assert value == pytest.approx(method_with_traced_trip_count(x, n), rel=1e-14)
        np.testing.assert_allclose(grad, central(lambda z: method_with_traced_trip_count(z, n),
                                                 x), rtol=1e-6, atol=1e-8)
    graph = f.trace(x, 5)
    assert [node.prim for node in graph.nodes].count("scan") == 1


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


def rows_program(X, w):
    total = 0.0
    for i, (row, wi) in enumerate(zip(X, w)):
        if row[0] > row[1]:
            total += (i + 1) * wi * row[0]
        else:
            total -= wi * row[1] ** 2
    for row in X:
        if np.sum(row) > 2.0:
            return total * row[0]
        total = total + 0.1 * np.sum(row)
    return total


def test_enumerate_zip_and_rows_over_a_run_time_size_are_c_loops(backend):
    # N is a run-time size: the loops cannot unroll; one compiled function for every N.
    f = symgrad.compile(rows_program, backend=backend, argnums=(0, 1),
                        signature={"X": "f64[N,2]", "w": "f64[N]"})
    graph = f.trace(np.zeros((3, 2)), np.zeros(3))
    assert [n.prim for n in graph.nodes].count("scan") == 2
    for n, seed in ((3, 1), (7, 2), (7, 5)):
        rng = np.random.default_rng(seed)
        X, w = rng.standard_normal((n, 2)) * 1.5, rng.standard_normal(n)
        value, (gX, gw) = f.value_and_grad(X, w)
        assert value == pytest.approx(rows_program(X, w), rel=1e-13)
        z = np.concatenate([X.ravel(), w])
        fd = central(lambda v: rows_program(v[:2 * n].reshape(n, 2), v[2 * n:]), z)
        np.testing.assert_allclose(np.concatenate([gX.ravel(), gw]), fd, rtol=1e-6, atol=1e-8)


# --- checkpointing: `# symgrad: checkpoint=K` on the loop's line --------------------------------

def pendulum_checkpointed(params, T):
    damping, length = params[0], params[1]
    theta, omega, t = 1.0, 0.0, 0.0
    while t < T:  # symgrad: max_steps=300, checkpoint=sqrt
        theta, omega = (theta + 0.01 * omega,
                        omega + 0.01 * (-9.81 / length * np.sin(theta) - damping * omega))
        t += 0.01
    return theta ** 2 + 0.5 * omega ** 2


def recurrence(x):
    h = 0.0
    for i in range(x.shape[0]):
        h = np.tanh(0.9 * h + x[i]) + 0.01 * h * h
    return h


def recurrence_checkpointed(x):
    h = 0.0
    for i in range(x.shape[0]):  # symgrad: checkpoint=6
        h = np.tanh(0.9 * h + x[i]) + 0.01 * h * h
    return h


def vec_recurrence(x):
    h = np.zeros(64)
    for i in range(x.shape[0]):
        h = np.tanh(0.9 * h + x[i]) + 0.01 * h * h
    return np.sum(h)


def vec_recurrence_checkpointed(x):
    h = np.zeros(64)
    for i in range(x.shape[0]):  # symgrad: checkpoint=20
        h = np.tanh(0.9 * h + x[i]) + 0.01 * h * h
    return np.sum(h)


def _workspace_bytes(f, *args):
    """The value-and-gradient C function's workspace (its tape included), in bytes."""
    return workspace_bytes(f.source(*args))


def _counted_bytes(f, steps, *args):
    """The value-and-gradient C function's arrays sized by its while loop's trip count (the
    tape, allocated once the loop is counted), in bytes, for a loop of ``steps`` steps."""
    import re
    source = re.search(r"_value_and_grad\((?:.|\n)*", f.source(*args)).group(0)
    size = re.search(r"_ws_counted0_block = \(char \*\)malloc\((.*)\);", source).group(1)
    return eval(size.replace("(size_t)", "").replace("/", "//"),
                {"symgrad_count_while0": steps})


def test_checkpointed_loops_give_the_same_gradients_from_a_smaller_tape(backend):
    from symgrad.frontend.loops import memory_lines
    p = np.array([0.3, 1.5])
    plain, checked = _compiled(pendulum, backend), _compiled(pendulum_checkpointed, backend)
    for T in (0.5, 2.0):
        (v1, g1), (v2, g2) = plain.value_and_grad(p, T), checked.value_and_grad(p, T)
        assert v2 == v1
        np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=0)
    x = np.sin(np.arange(40.0))
    plain_for, checked_for = _compiled(recurrence, backend), _compiled(recurrence_checkpointed,
                                                                       backend)
    (v1, g1), (v2, g2) = plain_for.value_and_grad(x), checked_for.value_and_grad(x)
    assert v2 == v1 == pytest.approx(recurrence(x), rel=1e-14)
    np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(g2, central(recurrence, x), rtol=1e-6, atol=1e-9)
    # The tape: segments of K steps (K = ceil(sqrt(300)) = 18; 6), one carry stored per segment;
    # the while loop's as many segments as its steps taken, counted at run time, need.
    lines = memory_lines(checked.specialize(p, 1.0)[0].value_and_grad_graph())
    assert any(": CeilDiv(symgrad_count_while0, 18) steps of segment" in line
               and not line.startswith(" ") for line in lines), lines
    assert any(line.startswith("  ") and "18 steps of body" in line for line in lines), lines
    lines = memory_lines(checked_for.specialize(x)[0].value_and_grad_graph())
    assert any("6 steps of segment" in line and not line.startswith(" ") for line in lines)
    assert any(line.startswith("  ") and "6 steps of body" in line for line in lines), lines
    if backend == "c":
        assert _counted_bytes(checked, 300, p, 1.0) < _counted_bytes(plain, 300, p, 1.0) / 3
        # Checkpointing trades a stored carry per step for one per segment: it pays when the
        # carry is wide. A scalar carry is the size of the step's own input and adjoint, which
        # both versions store, so the vector recurrence shows it: 400 steps of 64 numbers.
        long_x = np.sin(np.arange(400.0))
        wide, wide_checked = (_compiled(vec_recurrence, backend),
                              _compiled(vec_recurrence_checkpointed, backend))
        np.testing.assert_allclose(wide_checked.grad(long_x), wide.grad(long_x), rtol=1e-12)
        assert _workspace_bytes(wide_checked, long_x) < _workspace_bytes(wide, long_x) / 3


def checkpoint_over_a_run_time_size(X):
    total = 0.0
    for i in range(X.shape[0]):  # symgrad: checkpoint=4
        total += X[i, 0] * X[i, 1]
    return total


def test_checkpointing_a_loop_over_a_run_time_size_is_an_error():
    f = symgrad.compile(checkpoint_over_a_run_time_size, backend="interp",
                        signature={"X": "f64[N,2]"})
    with pytest.raises(symgrad.TracingError) as info:
        f(np.ones((3, 2)))
    message = str(info.value)
    assert "checkpoint=4 needs a trip count known when tracing" in message
    assert f"test_pyconvert.py:{inspect.getsourcelines(checkpoint_over_a_run_time_size)[1] + 2}" \
        in message


# --- errors name the variable and the user's line --------------------------------------------

ERRORS = [
    (P.one_branch_only, "'y' is assigned in only one branch", "return y * 2.0"),
    (P.shapes_differ, "'y' has shape (2,) in one branch and (4,)", "if x[0] > 0:"),
    (P.flat_write, "x.flat", "a.flat[0] = 1.0"),
    (P.out_to_numpy, "out=", "np.add(x, 1.0, out=buf)"),
    (P.falls_off_the_end, "returns a value only where a traced condition holds",
     "def falls_off_the_end"),
    (P.return_of_a_string_in_loop, "return of a str inside a loop over traced values",
     "for i in range(x.shape[0]):"),
    (P.unknown_directive, "'chekpoint=4' is not a loop directive", "# symgrad: chekpoint"),
    (P.max_steps_on_a_for, "max_steps= bounds a while loop", "# symgrad: max_steps=10"),
    (P.bad_checkpoint, "checkpoint must be a positive int", "# symgrad: checkpoint=0"),
    (P.break_over_a_python_list, "break on a traced condition inside a loop over a Python "
                                 "iterable", "for v in [x[0], x[1], x[2]]:"),
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


def _beside(text, original, converted):
    """The row of the side-by-side view where ``original`` (a line of the user's) is shown with
    ``converted`` beside it."""
    return any(original in line.split(" | ")[0] and converted in line.split(" | ", 1)[1]
               for line in text.splitlines() if " | " in line)


def test_inspect_shows_the_converted_function_next_to_the_original():
    from symgrad.tools import inspect as sg_inspect
    text = sg_inspect.report(P.loop_with_branches, POINTS[0]).text()
    assert f"# original ({line_of(P.loop_with_branches, 'def loop_with_branches')})" in text
    assert "_sg.for_stmt(_sg.Range(x.shape[0])" in text and "_sg.if_stmt(" in text
    # each line of the user's beside what it became, with its line number
    number = line_of(P.loop_with_branches, "total += x[i] ** 2").split(":")[1]
    assert _beside(text, f"{number}              total += x[i] ** 2",
                   "total = _sg.iop('+', total, x[i] ** 2)")
    assert _beside(text, "for i in range(x.shape[0]):", "def _sgf_for_body_")
    plain = sg_inspect.report(lambda x: np.sum(x * x), POINTS[0]).text()
    assert "# converted" not in plain
    page = sg_inspect.report(P.loop_with_branches, POINTS[0]).html()
    assert "<h2>converted source</h2>" in page and '<table class="side">' in page
    assert ("<td class=\"row\">            total += x[i] ** 2</td><td class=\"row\">"
            "            total = _sg.iop(&#x27;+&#x27;, total, x[i] ** 2)</td>") in page


def test_inspect_command_line_shows_the_converted_function(tmp_path, capsys):
    from symgrad.tools.cli import main
    target = f"{os.path.join(os.path.dirname(__file__), HERE)}:return_in_loop"
    assert main(["inspect", target, "--arg", "x=f64[4]"]) == 0
    text = capsys.readouterr().out
    assert "# original (pyconvert_fns.py:" in text and "# converted" in text
    assert _beside(text, "return x[i]", "_sg_retval = x[i]")
    assert _beside(text, "for i in range(x.shape[0]):", "_sg_brk_")
    assert main(["inspect", target, "--arg", "x=f64[4]", "--format", "html",
                 "-o", str(tmp_path / "r.html")]) == 0
    page = (tmp_path / "r.html").read_text()
    assert "<h2>converted source</h2>" in page and "_sg.for_stmt(_sg.Range(x.shape[0])" in page


_AOT_SPEC = '''
import numpy as np
import symgrad
import pyconvert_fns as P               # tests/, on the path when the tests run


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
    while t < T:  # symgrad: max_steps=400, checkpoint=sqrt
        theta, omega = (theta + 0.01 * omega,
                        omega + 0.01 * (-9.81 / length * np.sin(theta) - damping * omega))
        t += 0.01
    return theta ** 2 + 0.5 * omega ** 2


def rows_program(X, w):
    total = 0.0
    for i, (row, wi) in enumerate(zip(X, w)):
        if row[0] > row[1]:
            total += (i + 1) * wi * row[0]
        else:
            total -= wi * row[1] ** 2
    for row in X:
        if np.sum(row) > 2.0:
            return total * row[0]
        total = total + 0.1 * np.sum(row)
    return total


symgrad.export(rows_loss, "f64[N,2]", "i64[]")
symgrad.export(pendulum, "f64[2]", "f64[]")
symgrad.export(rows_program, "f64[N,2]", "f64[N]")
symgrad.export(P.weighted_sum, "f64[4]")                # the whole table, in one module
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
    for n, seed in ((3, 1), (8, 2), (8, 5)):
        rng = np.random.default_rng(seed)
        X, w = rng.standard_normal((n, 2)) * 1.5, rng.standard_normal(n)
        value, grad = loader.rows_program_value_and_grad(X, w)
        assert value == pytest.approx(namespace["rows_program"](X, w), rel=1e-13)
        np.testing.assert_allclose(grad.ravel(), central(
            lambda z: namespace["rows_program"](z.reshape(n, 2), w), X.ravel()), rtol=1e-6,
            atol=1e-8)
    for x in POINTS:
        value, grad = loader.weighted_sum_value_and_grad(x.copy())
        assert value == pytest.approx(P.weighted_sum(x.copy()), rel=1e-13)
        np.testing.assert_allclose(grad, central(lambda z: P.weighted_sum(z.copy()), x),
                                   rtol=1e-6, atol=1e-7)
    p = np.array([0.3, 1.5])
    for T in (0.5, 3.0):
        value, grad = loader.pendulum_value_and_grad(p, T)
        assert value == pytest.approx(namespace["pendulum"](p, T), rel=1e-13)
        np.testing.assert_allclose(grad, central(lambda z: namespace["pendulum"](z, T), p),
                                   rtol=1e-6)
