"""The IR: a deterministic printer, a content hash, and passes (CSE, DCE, constant folding,
simplification) that keep results equal while shrinking graphs."""
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symgrad
import symgrad.numpy as snp
from symgrad import nn
from symgrad.core import passes
from symgrad.core.autodiff import value_and_grad_graph
from symgrad.backends.interp import evaluate
from symgrad.core.ir import Builder, Graph, Literal, Var, building
from symgrad.core.primitives import bind
from symgrad.core import ops
from symgrad.frontend.tracing import trace
from symgrad.core.types import TensorType

F3 = TensorType((3,), "float64")
F0 = TensorType((), "float64")
HERE = os.path.basename(__file__)


def raw(fn, *types):
    """The graph of ``fn`` exactly as traced, before any pass."""
    return trace(fn, list(types))


def prims(graph, *, consts=False):
    return [n.prim for n in graph.nodes if consts or n.prim != "const"]


# --- the printer ------------------------------------------------------------------------------

def sin_mul_sum(x, y):
    return snp.sum(snp.sin(x) * y)


SIN_MUL_SUM = """\
{ lambda x:f64[3], y:f64[] .
  a:f64[3] = sin x
  b:f64[3] = mul a y
  c:f64[] = reduce_sum[axes=(0,)] b
  in (c) }"""


def test_printer_listing_is_pinned():
    assert str(raw(sin_mul_sum, F3, F0)) == SIN_MUL_SUM
    assert str(symgrad.trace(sin_mul_sum, np.ones(3), 2.0)) == SIN_MUL_SUM


def test_printer_inlines_scalar_constants_and_shows_attributes():
    graph = raw(lambda x: snp.sum(x * 2.0, axis=0, keepdims=True) + np.array([1.0, 2.0, 3.0])[0],
                TensorType((3, 2), "float64"))
    text = str(graph)
    assert "mul x 2.0" in text
    assert "reduce_sum[axes=(0,)] a" in text
    assert "reshape[shape=(1, 2)]" in text
    assert "const[" not in text.split("\n")[1]       # the scalar 2.0 has no line of its own
    full = graph.format(inline_scalars=False)
    assert "const[value=2.0]" in full


def test_printer_names_adjoints_after_their_primal():
    graph = symgrad.compile(sin_mul_sum, argnums=(0, 1), backend="interp").specialize(
        np.ones(3), 2.0)[0].value_and_grad_graph()
    names = graph.names()
    assert [names[v] for v in graph.outputs] == ["c", "b_x", "b_y"]
    lines = str(graph).splitlines()
    assert lines[0] == "{ lambda x:f64[3], y:f64[] ."
    assert lines[-1] == "  in (c, b_x, b_y) }"
    assert "  b_x:f64[3] = chain_mul " in str(graph)


def test_printer_is_deterministic():
    def build():
        return symgrad.compile(sin_mul_sum, argnums=(0, 1), backend="interp").specialize(
            np.ones(3), 2.0)[0]
    first, second = build(), build()
    assert str(first.graph) == str(second.graph)
    assert str(first.value_and_grad_graph()) == str(second.value_and_grad_graph())
    assert (first.value_and_grad_graph().structural_hash()
            == second.value_and_grad_graph().structural_hash())


def test_printer_source_lines_point_at_user_code():
    def f(x):
        y = snp.exp(x)
        return snp.sum(y)
    first = f.__code__.co_firstlineno
    text = raw(f, F3).format(lines=True).splitlines()
    assert text[1].startswith("  a:f64[3] = exp x") and text[1].endswith(f"# {HERE}:{first + 1}")
    assert text[2].endswith(f"# {HERE}:{first + 2}")


def test_names_run_past_z_and_skip_input_names():
    def chain(a):
        for f in [snp.sin] * 30:     # over a Python list: unrolled (a range would be a scan)
            a = f(a)
        return a
    graph = raw(chain, F3)
    names = graph.names()
    values = [names[n.out] for n in graph.nodes]
    assert len(set(values)) == 30
    assert "a" not in values                      # the input is called a
    assert values[:3] == ["b", "c", "d"]
    # a1, b1, ... rather than jaxpr's ba, bb, ...: a value is never named like the adjoint b_a
    assert values[25:] == ["a1", "b1", "c1", "d1", "e1"]
    assert str(graph).splitlines()[-1] == "  in (e1) }"


def test_literals_compare_by_value():
    assert Literal(np.array([1.0, 2.0])) == Literal(np.array([1.0, 2.0]))
    assert hash(Literal(np.array(2.0))) == hash(Literal(np.array(2.0)))
    assert Literal(np.array([1.0, 2.0])) != Literal(np.array([1.0, 2.5]))
    assert Literal(np.array(1.0)) != Literal(np.array(1.0, dtype=np.float32))
    assert Literal(np.array(1)) != Literal(np.array(1.0))
    assert repr(Literal(np.array(2.5))) == "2.5"
    assert repr(Literal(np.array(True))) == "true"


# --- the structural hash ------------------------------------------------------------------------

def test_structural_hash_is_stable_across_traces():
    assert raw(sin_mul_sum, F3, F0).structural_hash() == raw(sin_mul_sum, F3, F0).structural_hash()
    same_body = raw(lambda x, y: snp.sum(snp.sin(x) * y), F3, F0)
    assert same_body.structural_hash() == raw(sin_mul_sum, F3, F0).structural_hash()


def test_structural_hash_tells_apart_what_matters():
    base = raw(sin_mul_sum, F3, F0).structural_hash()
    assert raw(sin_mul_sum, TensorType((4,), "float64"), F0).structural_hash() != base
    assert raw(sin_mul_sum, TensorType((3,), "float32"),
               TensorType((), "float32")).structural_hash() != base
    assert raw(lambda x, y: snp.sum(snp.cos(x) * y), F3, F0).structural_hash() != base
    assert raw(lambda x, y: snp.sum(snp.sin(x) + y), F3, F0).structural_hash() != base


def test_structural_hash_sees_constants_the_listing_abbreviates():
    c1 = np.arange(20.0)
    c2 = c1.copy()
    c2[10] = 99.0
    g1 = raw(lambda x: x * c1, TensorType((20,), "float64"))
    g2 = raw(lambda x: x * c2, TensorType((20,), "float64"))
    assert str(g1) == str(g2)                      # both print as [0., 1., 2., ..., 19.]
    assert g1.structural_hash() != g2.structural_hash()
    g3 = raw(lambda x: x * 2.0, F3)
    g4 = raw(lambda x: x * 2.0000000000000004, F3)  # one ulp apart
    assert g3.structural_hash() != g4.structural_hash()


HASH_SCRIPT = """
import numpy as np, symgrad, symgrad.numpy as snp
from symgrad import nn
def loss(W, X, y):
    return -snp.mean(nn.log_softmax(X @ W)[snp.arange(X.shape[0]), y]) + 0.1 * snp.sum(W * W)
spec = symgrad.compile(loss, backend="interp").specialize(
    np.ones((3, 2)), np.ones((4, 3)), np.array([0, 1, 1, 0]))[0]
print(spec.graph.structural_hash(), spec.value_and_grad_graph().structural_hash())
"""


def test_structural_hash_is_the_same_in_another_process():
    """Cache keys must not depend on ids, dict order or the hash seed of one process."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    seed = "1" if os.environ.get("PYTHONHASHSEED") != "1" else "2"
    other = subprocess.run([sys.executable, "-c", HASH_SCRIPT], env=dict(env, PYTHONHASHSEED=seed),
                           capture_output=True, text=True, check=True).stdout
    namespace = {}
    exec(HASH_SCRIPT.replace("print(", "result = ("), namespace)
    forward, adjoint = namespace["result"]
    assert len(forward) == len(adjoint) == 64 and forward != adjoint
    assert other.split() == [forward, adjoint]


# --- passes ---------------------------------------------------------------------------------------

def redundant(x, y):
    unused = snp.exp(x) * 3.0                                  # dead
    a = snp.sin(x) * y
    b = snp.sin(x) * y                                         # common subexpression
    k = snp.ones(3) * 2.0 + np.array([0.0, 0.5, 1.0])          # foldable
    z = (a + b) * k + 0.0                                      # x + 0
    z = z * 1.0 / 1.0 - 0.0                                    # x * 1, x / 1, x - 0
    z = -(-z)                                                  # double negation
    return snp.sum(z * snp.cos(y))


RX = np.array([0.3, -1.2, 2.0])
RY = np.array(0.7)


def run(graph, *args):
    return evaluate(graph, list(args))


@pytest.mark.parametrize("pass_", [passes.cse, passes.dce, passes.fold_constants,
                                   passes.simplify, passes.optimize])
def test_each_pass_keeps_results_and_never_grows(pass_):
    graph = raw(redundant, F3, F0)
    out = pass_(graph)
    assert len(out.nodes) <= len(graph.nodes)
    assert [v.type for v in out.outputs] == [v.type for v in graph.outputs]
    assert out.inputs == graph.inputs
    np.testing.assert_allclose(run(out, RX, RY), run(graph, RX, RY), rtol=1e-15)
    before = len(graph.nodes)
    assert len(pass_(out).nodes) <= before


def test_optimize_shrinks_and_reaches_a_fixed_point():
    graph = raw(redundant, F3, F0)
    out = passes.optimize(graph)
    assert len(out.nodes) < len(graph.nodes) // 2
    assert str(passes.optimize(out)) == str(out)
    assert prims(out) == ["sin", "mul", "add", "mul", "cos", "mul", "reduce_sum"]
    assert "exp" not in prims(out)
    assert "neg" not in prims(out)
    # the folded constant 2 + [0, 0.5, 1]
    (k,) = [n for n in out.nodes if n.prim == "const" and n.out.shape == (3,)]
    np.testing.assert_array_equal(k.attrs["value"].value, [2.0, 2.5, 3.0])


def test_cse_merges_repeated_work():
    graph = raw(lambda x: snp.sin(x) * snp.sin(x) + snp.sin(x), F3)
    assert prims(graph).count("sin") == 3
    out = passes.dce(passes.cse(graph))
    assert prims(out).count("sin") == 1
    assert prims(out) == ["sin", "mul", "add"]
    np.testing.assert_allclose(run(out, RX), run(graph, RX), rtol=0)


def test_cse_keeps_different_attributes_apart():
    graph = raw(lambda x: snp.sum(x, axis=0) + snp.sum(x, axis=1) + snp.sum(x, axis=0),
                TensorType((2, 2), "float64"))
    out = passes.dce(passes.cse(graph))
    assert prims(out).count("reduce_sum") == 2
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(run(out, x)[0], [4.0 + 3.0 + 4.0, 6.0 + 7.0 + 6.0])


def test_dce_drops_only_dead_nodes():
    graph = raw(lambda x: (snp.exp(x), snp.log(x * x), snp.sin(x))[2], F3)
    out = passes.dce(graph)
    assert prims(out) == ["sin"]
    assert prims(passes.dce(out)) == ["sin"]


def test_constant_folding_respects_the_size_limit():
    small = raw(lambda x: x * (snp.ones(4) * 2.0 + 1.0), TensorType((4,), "float64"))
    out = passes.optimize(small)
    assert prims(out) == ["mul"]
    n = passes.FOLD_LIMIT + 1
    big = raw(lambda x: x * (snp.ones(n) * 2.0 + 1.0), TensorType((n,), "float64"))
    out = passes.optimize(big)
    assert "broadcast_in_dim" in prims(out)         # not folded into a large literal
    x = np.linspace(-1, 1, n)
    np.testing.assert_array_equal(run(out, x)[0], 3.0 * x)


def test_constant_folding_keeps_dtypes():
    graph = raw(lambda x: x * (snp.arange(3) * 2 + 1), TensorType((3,), "float32"))
    out = passes.optimize(graph)
    consts = [n for n in out.nodes if n.prim == "const" and n.out.ndim]
    assert all(n.attrs["value"].value.dtype == np.dtype(n.out.dtype) for n in consts)
    x = np.array([1.0, 2.0, 3.0], dtype=np.float32)
    (y,) = run(out, x)
    assert y.dtype == np.float64                    # int64 arange promotes float32 to float64
    np.testing.assert_array_equal(y, [1.0, 6.0, 15.0])


def test_simplify_removes_identities():
    graph = raw(lambda x: -(-((x + 0.0) * 1.0 / 1.0 - 0.0)) + (0.0 + x) * (1.0 * x), F3)
    out = passes.dce(passes.simplify(graph))
    assert prims(out) == ["mul", "add"]
    np.testing.assert_array_equal(run(out, RX)[0], RX + RX * RX)


def test_simplify_removes_no_op_shape_operations():
    x = Var(TensorType((2, 3), "float64"), name="x")
    builder = Builder()
    with building(builder):
        a = bind("reshape", x, shape=(2, 3))
        b = bind("transpose", a, perm=(0, 1))
        c = bind("broadcast_in_dim", b, shape=(2, 3), dims=(0, 1))
        d = bind("convert", c, dtype="float64")
        e = bind("sin", d)
    graph = Graph([x], builder.nodes, [e])
    out = passes.optimize(graph)
    assert prims(out) == ["sin"]
    assert out.nodes[0].inputs == (x,)
    value = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(run(out, value)[0], np.sin(value))


def test_simplify_never_changes_types():
    # 0.0 + x with x of a smaller shape is a broadcast, not an identity
    graph = raw(lambda x: snp.zeros((2, 3)) + x * 1.0, F3)
    out = passes.optimize(graph)
    assert out.outputs[0].type == TensorType((2, 3), "float64")
    np.testing.assert_array_equal(run(out, RX)[0], np.broadcast_to(RX, (2, 3)))
    # x + 0 with an int x and a float zero promotes: not an identity either
    ints = raw(lambda k: k + 0.0, TensorType((3,), "int64"))
    out = passes.optimize(ints)
    assert out.outputs[0].dtype == "float64"
    assert run(out, np.array([1, 2, 3]))[0].dtype == np.float64


def test_passes_keep_identities_that_fail_for_nan_and_inf():
    graph = raw(lambda x: x * 0.0 + (x - x), F3)
    out = passes.optimize(graph)
    assert "mul" in prims(out) and "sub" in prims(out)
    x = np.array([np.inf, np.nan, 1.0])
    with np.errstate(invalid="ignore"):
        y = run(out, x)[0]
    assert np.isnan(y[0]) and np.isnan(y[1]) and y[2] == 0.0


def test_passes_on_adjoint_graphs_keep_gradients():
    def loss(W, X, y):
        return -snp.mean(nn.log_softmax(X @ W)[snp.arange(X.shape[0]), y]) + 0.1 * snp.sum(W * W)
    types = [TensorType((3, 2), "float64"), TensorType((4, 3), "float64"),
             TensorType((4,), "int64")]
    forward = trace(loss, types)
    plain = value_and_grad_graph(forward, [0, 1], simplify=False)
    optimized = value_and_grad_graph(forward, [0, 1])
    assert len(optimized.nodes) < len(plain.nodes)
    rng = np.random.default_rng(0)
    args = [rng.standard_normal((3, 2)), rng.standard_normal((4, 3)), np.array([0, 1, 1, 0])]
    for a, b in zip(run(optimized, *args), run(plain, *args)):
        np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)


# --- random programs: optimize never changes what a graph computes --------------------------

UNARY = [snp.sin, snp.tanh, lambda a: a * 1.0, lambda a: a + 0.0, lambda a: -(-a),
         lambda a: a / 1.0, lambda a: a - 0.0, lambda a: snp.square(a) * 0.5]
BINARY = [snp.add, snp.subtract, snp.multiply, lambda a, b: a / (1.0 + b * b),
          snp.maximum, lambda a, b: snp.where(a > b, a, b * 2.0)]

steps = st.lists(st.tuples(st.booleans(), st.integers(0, 7), st.integers(0, 40),
                           st.integers(0, 40)), min_size=1, max_size=14)


def program(plan):
    def fn(x, y):
        pool = [x, y, snp.ones(3) * 2.0, snp.arange(3) * 0.5]
        for binary, op, i, j in plan:
            a, b = pool[i % len(pool)], pool[j % len(pool)]
            pool.append(BINARY[op % len(BINARY)](a, b) if binary else UNARY[op](a))
        return snp.sum(pool[-1] * pool[-2]) + snp.sum(pool[len(pool) // 2])
    return fn


@settings(max_examples=60, deadline=None, database=None)
@given(plan=steps)
def test_optimize_keeps_random_programs_equal(plan):
    graph = raw(program(plan), F3, F0)
    out = passes.optimize(graph)
    assert len(out.nodes) <= len(graph.nodes)
    x, y = np.array([0.3, -1.1, 0.8]), np.array(-0.4)
    expected = run(graph, x, y)[0]
    assert np.isfinite(expected)
    np.testing.assert_allclose(run(out, x, y)[0], expected, rtol=1e-13, atol=1e-13)
    plain = value_and_grad_graph(graph, [0, 1], simplify=False)
    optimized = value_and_grad_graph(graph, [0, 1])
    assert len(optimized.nodes) <= len(plain.nodes)
    for a, b in zip(run(optimized, x, y), run(plain, x, y)):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-13)


def test_graph_helpers():
    graph = raw(lambda x: snp.sin(x) * snp.sin(x), F3)
    producers = graph.producers()
    assert all(producers[n.out] is n for n in graph.nodes)
    uses = graph.uses()
    assert len(uses[graph.inputs[0]]) == 2
    assert graph.input_index() == {graph.inputs[0]: 0}
    assert repr(graph).startswith("<Graph ") and "1 inputs" in repr(graph)
    with building(Builder()):
        with pytest.raises(symgrad.ShapeError, match=r"add\(f64\[3\], f64\[4\]\)"):
            ops.add(Var(F3), Var(TensorType((4,), "float64")))
    with pytest.raises(RuntimeError, match="outside of tracing"):
        bind("sin", Var(F3))
