"""While loops on traced conditions whose trip count is known only at run time (issue 19): the
loop is counted (``while_count``) before its scan runs, so the tape holds one row per step taken,
allocated once the count is known, with no bound on the steps (JAX cannot differentiate such a
loop in reverse mode). Values against plain Python, gradients against central differences and
the complex step, on both backends and in an AOT build."""
import re
import resource
import textwrap

import numpy as np
import pytest

import symgrad
from symgrad.frontend.loops import memory_lines
from symgrad.frontend.pyflow import MAX_WHILE_STEPS
from symgrad.tools.cli import main

from c_source import workspace_bytes


def walk(p, T):
    x, v, s = p[0], p[1], 0.0
    while x < T:
        x = x + 0.1 + 0.05 * np.sin(v) ** 2
        v = v + 0.001 * x
        s = s + 0.001 * x * v
    return s + x * v


def walk_complex_step(p, T, h=1e-30):
    """The gradient of ``walk`` by the complex step (exact to rounding, whatever the count)."""
    out = []
    for i in range(2):
        x, v, s = (p[0] + 1j * h * (i == 0), p[1] + 1j * h * (i == 1), 0.0)
        while x.real < T:
            x = x + 0.1 + 0.05 * np.sin(v) ** 2
            v = v + 0.001 * x
            s = s + 0.001 * x * v
        out.append(((s + x * v) / h).imag)
    return np.array(out)


def walk_steps(p, T):
    x, v, n = p[0], p[1], 0
    while x < T:
        x, v, n = x + 0.1 + 0.05 * np.sin(v) ** 2, v + 0.001 * (x + 0.1 + 0.05 * np.sin(v) ** 2), n + 1
    return n


def walk_checkpointed(p, T):
    x, v, s = p[0], p[1], 0.0
    while x < T:  # symgrad: checkpoint=7
        x = x + 0.1 + 0.05 * np.sin(v) ** 2
        v = v + 0.001 * x
        s = s + 0.001 * x * v
    return s + x * v


def walk_bounded(p, T):
    x, v, s = p[0], p[1], 0.0
    while x < T:  # symgrad: max_steps=50
        x = x + 0.1 + 0.05 * np.sin(v) ** 2
        v = v + 0.001 * x
        s = s + 0.001 * x * v
    return s + x * v


def two_loops(p, T):
    x, y = p[0], p[1]
    while x < T:
        x = x * 1.1 + 0.01 * y
    while y < x:
        y = y + 0.5 + 0.1 * np.tanh(x)
    return x * y


def nested(p, T):
    total = 0.0
    for k in range(3):
        x = p[0] + k
        while x < T:  # symgrad: max_steps=200
            x = x + 0.3 + 0.1 * np.sin(p[1] * x)
        total = total + x * x
    return total


P = np.array([0.3, 0.7])
# Trip counts 0, 1, a few, and past MAX_WHILE_STEPS (the old bound of the tape): one compiled
# function serves them all.
HORIZONS = (0.2, 0.35, 2.0, 2000.0)
_cache = {}


def _compiled(fn, backend, **options):
    key = (fn, backend, tuple(sorted(options.items())))
    if key not in _cache:
        _cache[key] = symgrad.compile(fn, backend=backend, **options)
    return _cache[key]


def central(f, x, h=1e-6):
    x = np.asarray(x, float)
    out = np.zeros_like(x)
    for i in range(x.size):
        e = np.zeros_like(x)
        e[i] = h
        out[i] = (f(x + e) - f(x - e)) / (2 * h)
    return out


@pytest.fixture(params=["interp", "c"])
def backend(request):
    return request.param


def test_the_horizons_cover_zero_one_few_and_more_steps_than_the_old_bound():
    counts = [walk_steps(P, T) for T in HORIZONS]
    assert counts[0] == 0 and counts[1] == 1 and 5 < counts[2] < 50
    assert counts[3] > MAX_WHILE_STEPS


def test_value_and_gradient_for_every_trip_count(backend):
    f = _compiled(walk, backend)
    for T in HORIZONS:
        value, grad = f.value_and_grad(P, T)
        assert value == pytest.approx(walk(P, T), rel=1e-12)
        np.testing.assert_allclose(grad, walk_complex_step(P, T), rtol=1e-11, atol=1e-13)
        if T < 100:
            np.testing.assert_allclose(grad, central(lambda z: walk(z, T), P), rtol=1e-6,
                                       atol=1e-8)


def test_check_grad_complex_step_and_interpreter_agree():
    for T in (2.0, 30.0):
        report = symgrad.check_grad(walk, P, T)
        assert report.ok, str(report)


def test_the_tape_is_sized_by_the_steps_taken_not_by_a_bound():
    f = _compiled(walk, "c")
    graph = f.specialize(P, 1.0)[0].value_and_grad_graph()
    lines = memory_lines(graph)
    assert any(line.startswith("m:") or "symgrad_count_while0 steps of body" in line
               for line in lines), lines
    assert not any(str(MAX_WHILE_STEPS) in line for line in lines), lines
    source = f.source(P, 1.0)
    fn = re.search(r"int symgrad_walk_value_and_grad\((?:.|\n)*?\n}\n", source).group(0)
    # The workspace allocated on entry holds no tape: a few hundred bytes, not 10,000 rows.
    static = workspace_bytes(fn, after="symgrad_walk_value_and_grad(")
    assert static < 4096
    # The tape: allocated after the count, freed after done: (every exit).
    alloc = re.search(r"_ws_counted0_block = \(char \*\)malloc\((.*)\);", fn)
    assert fn.index("symgrad_count_while0 = _n;") < alloc.start() < fn.index("done:")
    assert fn.index("free(_ws_counted0_block);") > fn.index("done:")
    size = alloc.group(1).replace("(size_t)", "").replace("/", "//")
    per_step = (eval(size, {"symgrad_count_while0": 1000})
                - eval(size, {"symgrad_count_while0": 0})) / 1000
    # The forward tape and the adjoint loop's rows: a few float64 numbers per step taken.
    assert 40 <= per_step <= 16 * 8


def test_forward_mode_and_hessian_vector_products(backend):
    f = _compiled(walk, backend)
    v = np.array([0.4, -1.3])
    for T in (0.35, 2.0, 40.0):
        value, tangent = f.jvp((P, T), (v,))
        assert value == pytest.approx(walk(P, T), rel=1e-12)
        grad = lambda z: central(lambda w: walk(w, T), z, h=1e-5)      # noqa: E731
        assert tangent == pytest.approx(central(lambda z: walk(z, T), P) @ v, rel=1e-6)
        hv = f.hvp((P, T), v)
        fd = (grad(P + 1e-4 * v) - grad(P - 1e-4 * v)) / 2e-4
        np.testing.assert_allclose(hv, fd, rtol=1e-3, atol=1e-5)
        exact = (f.grad(P + 1e-6 * v, T) - f.grad(P - 1e-6 * v, T)) / 2e-6
        np.testing.assert_allclose(hv, exact, rtol=1e-6, atol=1e-8)


def test_vmap_of_grad_over_examples_with_different_trip_counts(backend):
    Ps = np.array([[0.3, 0.7], [1.9, -0.2], [5.0, 0.1], [0.0, 2.0]])
    T = 3.0
    counts = [walk_steps(p, T) for p in Ps]
    assert len(set(counts)) == 4 and 0 in counts
    g = symgrad.vmap(symgrad.grad(walk), in_axes=(0, None))
    got = np.asarray(g(Ps, T))
    for p, row in zip(Ps, got):
        np.testing.assert_allclose(row, central(lambda z: walk(z, T), p), rtol=1e-6, atol=1e-8)
    vg = symgrad.compile(symgrad.vmap(symgrad.grad(walk), in_axes=(0, None)), backend=backend)
    np.testing.assert_allclose(vg(Ps, T), got, rtol=1e-12, atol=1e-14)


def test_checkpointing_over_the_run_time_count(backend):
    plain, checked = _compiled(walk, backend), _compiled(walk_checkpointed, backend)
    for T in (0.2, 0.35, 0.9, 2.0, 30.0):        # 0, 1 and counts that are not multiples of 7
        (v1, g1), (v2, g2) = plain.value_and_grad(P, T), checked.value_and_grad(P, T)
        assert v2 == v1
        np.testing.assert_allclose(g2, g1, rtol=1e-12, atol=1e-15)
    lines = memory_lines(checked.specialize(P, 1.0)[0].value_and_grad_graph())
    assert any("CeilDiv(symgrad_count_while0, 7) steps of segment" in line for line in lines)
    assert any(line.startswith("  ") and "7 steps of body" in line for line in lines), lines


def sqrt_checkpoint(p, T):
    x = p[0]
    while x < T:  # symgrad: checkpoint=sqrt
        x = x * 1.5 + 0.1
    return x


def test_checkpoint_sqrt_needs_a_bound_or_a_k():
    f = symgrad.compile(sqrt_checkpoint, backend="interp")
    with pytest.raises(NotImplementedError, match=r"checkpoint=sqrt.*counted at run time.*"
                                                  r"test_while_counted.py:\d+.*checkpoint=K"):
        f.grad(P, 3.0)


def test_max_steps_is_an_optional_bound(backend):
    f = _compiled(walk_bounded, backend)
    value, grad = f.value_and_grad(P, 2.0)          # about 15 steps: within the bound
    assert value == pytest.approx(walk(P, 2.0), rel=1e-12)
    with pytest.raises(RuntimeError, match=r"test_while_counted.py:\d+.*still runs after its 50 "
                                           r"steps.*max_steps=N"):
        f.value_and_grad(P, 100.0)


def walk_long_bound(p, T):
    x, v = p[0], p[1]
    while x < T:  # symgrad: max_steps=20000
        x = x + 0.1 + 0.05 * np.sin(v) ** 2
        v = v + 0.001 * x
    return x * v


def test_a_failure_after_the_tape_is_allocated_frees_it(monkeypatch):
    """The C call fails after its tape was allocated (the guard follows the loop) and returns
    through done:, which frees it: called many times with 20,000-row tapes (2 MB or more each),
    the process does not grow by them. (The interpreter's rerun, which finds the message, is
    replaced by a plain error: only the C path is measured.)"""
    import os
    from symgrad.backends.c import native
    f = _compiled(walk_long_bound, "c")
    assert f.value_and_grad(P, 50.0)[0] == pytest.approx(
        walk_long_bound(P, 50.0), rel=1e-12)

    def rerun(graph, arrays):
        raise RuntimeError("the C call failed")
    monkeypatch.setattr(native, "evaluate", rerun)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(200):
        with pytest.raises(RuntimeError, match="the C call failed"):
            f.value_and_grad(P, 1e9)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before     # kB
    if "asan" not in os.environ.get("LD_PRELOAD", ""):     # ASan's quarantine keeps freed blocks
        assert grown < 50_000


def index_after_loop(p, T, k):
    x = p[0]
    while x < T:
        x = x * 1.2 + 0.05
    j = k * 2
    return x * p[j]


def test_an_index_error_after_the_loop_returns_cleanly(backend):
    f = _compiled(index_after_loop, backend)
    assert f(P, 30.0, 0) == pytest.approx(index_after_loop(P, 30.0, 0), rel=1e-13)
    for _ in range(3 if backend == "interp" else 500):
        with pytest.raises(IndexError):
            f.value_and_grad(P, 30.0, 4)


def test_two_loops_two_counts(backend):
    f = _compiled(two_loops, backend)
    for T in (0.1, 1.0, 50.0):
        value, grad = f.value_and_grad(P, T)
        assert value == pytest.approx(two_loops(P, T), rel=1e-12)
        np.testing.assert_allclose(grad, central(lambda z: two_loops(z, T), P), rtol=1e-6,
                                   atol=1e-8)


def test_a_while_inside_a_loop_body_keeps_its_bound(backend):
    f = _compiled(nested, backend)
    graph = f.trace(P, 1.0)
    assert "while_count" not in [n.prim for n in graph.nodes]
    for T in (0.1, 2.0, 20.0):
        value, grad = f.value_and_grad(P, T)
        assert value == pytest.approx(nested(P, T), rel=1e-12)
        np.testing.assert_allclose(grad, central(lambda z: nested(z, T), P), rtol=1e-6,
                                   atol=1e-8)
    with pytest.raises(RuntimeError, match=r"test_while_counted.py:\d+.*still runs after its 200 "
                                           r"steps.*max_steps=N"):
        f(P, 1000.0)


def test_jacobian_and_hessian_hold_the_loop_in_their_sweeps_with_its_bound(backend):
    J = symgrad.jacobian(walk, backend=backend)
    H = symgrad.hessian(walk, backend=backend)
    T = 2.0
    np.testing.assert_allclose(J(P, T), _compiled(walk, backend).grad(P, T), rtol=1e-12)
    fd = np.array([central(lambda z: _compiled(walk, "c").grad(z, T)[i], P) for i in range(2)])
    np.testing.assert_allclose(H(P, T), fd, rtol=1e-5, atol=1e-7)


_SPEC = textwrap.dedent("""
    import numpy as np
    import symgrad

    def walk(p, T):
        x, v, s = p[0], p[1], 0.0
        while x < T:
            x = x + 0.1 + 0.05 * np.sin(v) ** 2
            v = v + 0.001 * x
            s = s + 0.001 * x * v
        return s + x * v

    symgrad.export(walk, "f64[2]", "f64[]")
""")


def test_an_ahead_of_time_build_serves_every_trip_count(tmp_path):
    import importlib.util
    spec = tmp_path / "while_spec.py"
    spec.write_text(_SPEC)
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    module_spec = importlib.util.spec_from_file_location("aot_while",
                                                         tmp_path / "out" / "while_spec.py")
    loader = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(loader)
    for T in HORIZONS:
        value, grad = loader.walk_value_and_grad(P, T)
        ref_value, ref_grad = _compiled(walk, "c").value_and_grad(P, T)
        assert value == pytest.approx(ref_value, rel=1e-14)
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-13)
        assert loader.walk(P, T) == pytest.approx(walk(P, T), rel=1e-12)


def walk_and_its_gradient(p, T):
    # grad(walk) is traced on its own (its loop named while0, as walk's here): inlined, its
    # count is renamed, so the function defines two sizes, one per loop.
    return walk(p, T) + symgrad.grad(walk)(p, 2 * T)[0]


def test_a_transformed_function_with_a_while_inside_another_one(backend):
    f = _compiled(walk_and_its_gradient, backend)
    graph = f.trace(P, 2.0)
    assert [n.attrs["loop"] for n in graph.nodes if n.prim == "while_count"] == ["while0",
                                                                                 "while1"]
    grad_walk = _compiled(walk, "c").grad
    for T in (0.45, 2.0):            # (not at a count's jump: T = 0.3 is p[0])
        value, grad = f.value_and_grad(P, T)
        assert value == pytest.approx(walk(P, T) + grad_walk(P, 2 * T)[0], rel=1e-12)
        fd = central(lambda z: walk(z, T) + grad_walk(z, 2 * T)[0], P, h=1e-5)
        np.testing.assert_allclose(grad, fd, rtol=1e-5, atol=1e-7)


def test_inspect_states_the_tape_by_the_count(tmp_path, capsys):
    source = tmp_path / "walker.py"
    source.write_text("import numpy as np\n\n\n" + textwrap.dedent('''
        def walk(p, T):
            x, v, s = p[0], p[1], 0.0
            while x < T:
                x = x + 0.1 + 0.05 * np.sin(v) ** 2
                v = v + 0.001 * x
                s = s + 0.001 * x * v
            return s + x * v
        '''))
    assert main(["inspect", f"{source}:walk", "--arg", "p=[0.3,0.7]", "--arg", "T=2.0",
                 "--argnums", "0"]) == 0
    out = capsys.readouterr().out
    assert "C arrays sized by a while loop's count, allocated once it is known" in out
    assert re.search(r"FLOPs \(estimate\): value .*symgrad_count_while0", out)
