"""``symgrad.vmap`` (API.md §6): batching as a graph transformation.

- every registered primitive has a batching rule, and the table of ``test_primitives.py`` run
  under ``vmap`` (examples mapped along the first and the last axis) equals a Python loop over
  the examples -- forward statements, and through ``vmap(grad(...))`` the adjoint ones;
- JAX's semantics: ``in_axes`` None/0/1/negative/pytree, ``out_axes``, keyword arguments,
  errors; the expected values below were computed with JAX 0.10 (``jax.vmap``) while writing
  the tests and are written out here (JAX is never imported);
- composition with ``grad``, ``jvp``, ``jacobian``, ``compile`` and ``vmap`` itself, in either
  order, on both backends; a run-time batch size; per-example gradients of the softmax
  classifier as one native function.
"""
from __future__ import annotations

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.core.primitive import REGISTRY
from test_primitives import TABLE, _seed, case_args, float_argnums, weighted_loss

B = 3       # examples per batch in the table tests


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_primitive_has_a_batching_rule(name):
    assert callable(REGISTRY[name].batch), f"{name} has no batching rule (Primitive.batch)"


# --- the primitive table, batched ----------------------------------------------------------------

def _examples(row, index):
    """B examples of the row's case ``index`` (each drawn with its own seed), float64."""
    out = []
    for b in range(B):
        rng = np.random.default_rng(_seed(row.name, index, "vmap", b))
        out.append(case_args(row.cases[index], rng))
    return out


def _batch(examples, axis):
    """The examples' arguments stacked along ``axis`` (arrays), and in_axes; Python scalars
    are shared (in_axes None, the first example's value used by every example)."""
    args, in_axes = [], []
    for k, first in enumerate(examples[0]):
        if isinstance(first, (np.ndarray, np.generic)):
            args.append(np.stack([e[k] for e in examples], axis=axis))
            in_axes.append(axis)
        else:
            args.append(first)
            in_axes.append(None)
    for e in examples:             # the shared scalars are the first example's
        for k, first in enumerate(examples[0]):
            if not isinstance(first, (np.ndarray, np.generic)):
                e[k] = first
    return args, tuple(in_axes)


CASES = [pytest.param(row, i, id=f"{row.name}-{i}") for row in TABLE
         for i in range(len(row.cases))]


@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("row, index", CASES)
def test_table_value_matches_loop(row, index, axis):
    examples = _examples(row, index)
    args, in_axes = _batch(examples, axis)
    expected = np.stack([np.asarray(row.fn(*e)) for e in examples])
    f = symgrad.vmap(row.fn, in_axes=in_axes, backend="interp")
    np.testing.assert_allclose(f(*args), expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("row, index", CASES)
def test_table_per_example_gradients_match_loop(row, index):
    examples = _examples(row, index)
    args, in_axes = _batch(examples, 0)
    loss = weighted_loss(row, examples[0])
    argnums = float_argnums(row, examples[0])
    grad = symgrad.grad(loss, argnums=argnums, backend="interp")
    expected = [grad(*e) for e in examples]
    got = symgrad.vmap(grad, in_axes=in_axes, backend="interp")(*args)
    for k in range(len(argnums)):
        np.testing.assert_allclose(got[k], np.stack([g[k] for g in expected]), rtol=1e-10,
                                   atol=1e-12)


# --- JAX's semantics (values from jax.vmap, written out) ------------------------------------------

X12 = np.arange(12.0).reshape(3, 4)


def _f(a, b):
    return a * b + snp.sum(a)


def test_in_axes_one_maps_columns(backend):
    # jax.vmap(f, in_axes=(1, None))(x, 2.0)
    out = symgrad.vmap(_f, in_axes=(1, None), backend=backend)(X12, 2.0)
    np.testing.assert_allclose(out, [[12, 20, 28], [17, 25, 33], [22, 30, 38], [27, 35, 43]])


def test_negative_in_axes(backend):
    # jax.vmap(f, in_axes=(-1, 0))(x, arange(4.))
    out = symgrad.vmap(_f, in_axes=(-1, 0), backend=backend)(X12, np.arange(4.0))
    np.testing.assert_allclose(out, [[12, 12, 12], [16, 20, 24], [22, 30, 38], [30, 42, 54]])


def test_in_axes_list_is_a_tuple():
    out = symgrad.vmap(_f, in_axes=[1, None], backend="interp")(X12, 2.0)
    assert out.shape == (4, 3)


def test_pytree_in_axes(backend):
    # jax.vmap(lambda p, x: p['w'] * x + p['b'], in_axes=({'w': None, 'b': 0}, 0))
    def f(p, x):
        return p["w"] * x + p["b"]
    params = {"w": np.array(2.0), "b": np.arange(3.0)}
    out = symgrad.vmap(f, in_axes=({"w": None, "b": 0}, 0), backend=backend)(params,
                                                                            np.ones(3))
    np.testing.assert_allclose(out, [2.0, 3.0, 4.0])


def test_pytree_argument_mapped_whole(backend):
    def f(p, x):
        return snp.sum(p[0] * x) + p[1]
    p = (np.arange(6.0).reshape(3, 2), np.array([1.0, 2.0, 3.0]))
    out = symgrad.vmap(f, in_axes=(0, None), backend=backend)(p, np.array([1.0, -1.0]))
    np.testing.assert_allclose(out, [np.sum(p[0][i] * [1, -1]) + p[1][i] for i in range(3)])


def test_out_axes(backend):
    # jax.vmap(lambda x: (x * 2, jnp.sum(x)), out_axes=(1, 0))(x)
    a, s = symgrad.vmap(lambda x: (x * 2, snp.sum(x)), out_axes=(1, 0), backend=backend)(X12)
    np.testing.assert_allclose(a, (X12 * 2).T)
    np.testing.assert_allclose(s, [6, 22, 38])


def test_out_axes_none_for_a_shared_result(backend):
    # jax.vmap(lambda x, y: (x * 2, y), in_axes=(0, None), out_axes=(0, None))
    a, y = symgrad.vmap(lambda x, y: (x * 2, y), in_axes=(0, None), out_axes=(0, None),
                        backend=backend)(X12, np.ones(2))
    np.testing.assert_allclose(a, X12 * 2)
    np.testing.assert_allclose(y, [1.0, 1.0])


def test_unmapped_result_is_broadcast():
    out = symgrad.vmap(lambda x, y: y * 2, in_axes=(0, None), backend="interp")(X12, np.ones(2))
    np.testing.assert_allclose(out, np.full((3, 2), 2.0))


def test_keyword_arguments_are_mapped_along_axis_0(backend):
    # jax.vmap(lambda x, y=1: x * y)(ones(3), y=arange(3.)) -> [0, 1, 2]
    out = symgrad.vmap(lambda x, y=1.0: x * y, backend=backend)(np.ones(3), y=np.arange(3.0))
    np.testing.assert_allclose(out, [0.0, 1.0, 2.0])


def test_nested_vmap(backend):
    # jax.vmap(jax.vmap(lambda a, b: a * b, in_axes=(0, None)), in_axes=(None, 0))
    inner = symgrad.vmap(lambda a, b: a * b, in_axes=(0, None))
    out = symgrad.vmap(inner, in_axes=(None, 0), backend=backend)(np.arange(3.0),
                                                                   np.arange(2.0))
    np.testing.assert_allclose(out, [[0, 0, 0], [0, 1, 2]])


def test_errors_name_the_problem():
    f = symgrad.vmap(_f, backend="interp")
    with pytest.raises(ValueError, match=r"inconsistent sizes.*argument 1 \('b'\) has size 4"):
        f(np.ones((3, 2)), np.ones((4, 2)))
    with pytest.raises(ValueError, match="len\\(in_axes\\)=1, len\\(args\\)=2"):
        symgrad.vmap(_f, in_axes=(0,))(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="at least one non-None value in in_axes"):
        symgrad.vmap(_f, in_axes=None, backend="interp")(np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="along axis 2.*rank should be at least 3"):
        symgrad.vmap(_f, in_axes=(2, None), backend="interp")(np.ones((3, 2)), np.ones(2))
    with pytest.raises(ValueError, match="out_axes is None.*depends on a mapped input"):
        symgrad.vmap(_f, in_axes=(0, None), out_axes=None, backend="interp")(np.ones((3, 2)),
                                                                             np.ones(2))
    with pytest.raises(TypeError, match="in_axes"):
        symgrad.vmap(_f, in_axes="0")
    with pytest.raises(ValueError, match="in_axes\\[0\\]"):
        symgrad.vmap(lambda p: p["a"], in_axes=({"b": 0},), backend="interp")({"a": np.ones(2)})


def test_axis_size_without_mapped_arguments():
    out = symgrad.vmap(lambda x: x * 2, in_axes=None, axis_size=3, backend="interp")(np.ones(2))
    np.testing.assert_allclose(out, np.full((3, 2), 2.0))


# --- composition with the other transformations ---------------------------------------------------

def _g(w, x):
    return snp.sum(snp.tanh(x @ w) ** 2) + snp.sum(w * x[:, None])


W = np.random.default_rng(0).normal(size=(3, 2))
XS = np.random.default_rng(1).normal(size=(5, 3))


def test_vmap_of_grad(backend):
    g = symgrad.grad(_g, argnums=(0, 1), backend="interp")
    expected = [g(W, x) for x in XS]
    dw, dx = symgrad.vmap(symgrad.grad(_g, argnums=(0, 1)), in_axes=(None, 0),
                          backend=backend)(W, XS)
    np.testing.assert_allclose(dw, np.stack([e[0] for e in expected]), rtol=1e-12)
    np.testing.assert_allclose(dx, np.stack([e[1] for e in expected]), rtol=1e-12)


def test_grad_of_vmap(backend):
    def total(w, xs):
        return snp.sum(symgrad.vmap(_g, in_axes=(None, 0))(w, xs))
    g = symgrad.grad(_g, backend="interp")
    expected = sum(g(W, x) for x in XS)
    np.testing.assert_allclose(symgrad.grad(total, backend=backend)(W, XS), expected,
                               rtol=1e-12)


def test_jvp_of_vmap(backend):
    v = np.random.default_rng(2).normal(size=W.shape)
    f = symgrad.compile(symgrad.vmap(_g, in_axes=(None, 0)), backend=backend)
    value, tangent = f.jvp((W, XS), v)
    np.testing.assert_allclose(value, [symgrad.compile(_g, backend="interp")(W, x) for x in XS])
    g = symgrad.grad(_g, backend="interp")
    np.testing.assert_allclose(tangent, [np.sum(g(W, x) * v) for x in XS], rtol=1e-12)


def test_jacobian_of_vmap_and_vmap_of_jacobian(backend):
    def h(x):
        return snp.sin(x) * snp.sum(x ** 2)
    jac = symgrad.jacobian(h, backend="interp")
    per_example = np.stack([jac(x) for x in XS])              # (5, 3, 3)
    np.testing.assert_allclose(symgrad.vmap(symgrad.jacobian(h), backend=backend)(XS),
                               per_example, rtol=1e-12)
    full = symgrad.jacobian(symgrad.vmap(h), backend=backend)(XS)    # (5, 3, 5, 3)
    expected = np.zeros((5, 3, 5, 3))
    for i in range(5):
        expected[i, :, i, :] = per_example[i]
    np.testing.assert_allclose(full, expected, rtol=1e-12, atol=1e-15)


def test_vmap_inside_compile_is_one_function(backend):
    f = symgrad.compile(symgrad.vmap(symgrad.grad(_g), in_axes=(None, 0)), backend=backend)
    np.testing.assert_allclose(f(W, XS), symgrad.vmap(symgrad.grad(_g), in_axes=(None, 0),
                                                      backend="interp")(W, XS))
    # The batch changes shapes, not the number of statements: no Python loop over examples.
    assert len(f.trace(W, XS[:2]).nodes) == len(f.trace(W, XS).nodes)


def test_runtime_batch_size(backend):
    f = symgrad.vmap(symgrad.grad(_g), in_axes=(None, 0), backend=backend,
                     signature={"w": "f64[3,2]", "x": "f64[N,3]"})
    g = symgrad.grad(_g, backend="interp")
    for n in (1, 4, 5):
        np.testing.assert_allclose(f(W, XS[:n]), np.stack([g(W, x) for x in XS[:n]]),
                                   rtol=1e-12)
    assert len(f.compiled._specs) == 1


@pytest.mark.parametrize("in_axes", [(0, None, 0), (None, 0, None), (0, 0, 1)])
def test_vmap_of_a_loop(backend, in_axes):
    # Mapped carries, mapped scanned arrays (their batch axis second, for in_axes 1) and a
    # mapped value the body closes over.
    def run(c, w, xs):
        final, ys = symgrad.scan(lambda h, x: (snp.tanh(h * w + x), h * x), c, xs)
        return snp.sum(final) + snp.sum(ys)
    rng = np.random.default_rng(3)
    shapes = {None: [(3,), (3,), (5, 3)], 0: [(4, 3), (4, 3), (4, 5, 3)],
              1: [None, None, (5, 4, 3)]}
    c, w, xs = (rng.normal(size=shapes[ax][k]) for k, ax in enumerate(in_axes))

    def example(i):
        return [a if ax is None else np.take(a, i, axis=ax)
                for a, ax in zip((c, w, xs), in_axes)]
    f = symgrad.compile(run, backend="interp")
    out = symgrad.vmap(run, in_axes=in_axes, backend=backend)(c, w, xs)
    np.testing.assert_allclose(out, [f(*example(i)) for i in range(4)], rtol=1e-12)
    g = symgrad.grad(run, argnums=(0, 1), backend="interp")
    dc, dw = symgrad.vmap(symgrad.grad(run, argnums=(0, 1)), in_axes=in_axes,
                          backend=backend)(c, w, xs)
    expected = [g(*example(i)) for i in range(4)]
    np.testing.assert_allclose(dc, np.stack([e[0] for e in expected]), rtol=1e-12)
    np.testing.assert_allclose(dw, np.stack([e[1] for e in expected]), rtol=1e-12)


def softmax_loss(W, x, y, reg):
    """The classifier of API.md §1 on one example."""
    scores = x[None] @ W
    scores = scores - snp.max(scores, axis=1, keepdims=True)
    logp = scores - snp.log(snp.sum(snp.exp(scores), axis=1, keepdims=True))
    return -snp.mean(logp[snp.arange(1), y[None]]) + reg * snp.sum(W * W)


def test_per_example_softmax_gradients(backend):
    rng = np.random.default_rng(4)
    Wc, X, y = rng.normal(size=(6, 4)), rng.normal(size=(9, 6)), rng.integers(0, 4, 9)
    per_example = symgrad.vmap(symgrad.grad(softmax_loss), in_axes=(None, 0, 0, None),
                               backend=backend)
    g = symgrad.grad(softmax_loss, backend="interp")
    np.testing.assert_allclose(per_example(Wc, X, y, 1e-3),
                               np.stack([g(Wc, X[i], y[i], 1e-3) for i in range(9)]),
                               rtol=1e-12, atol=1e-15)


# --- one operand mapped, the other shared: the rules' cheaper paths -------------------------------

SHARED = {
    # matmul: rows stacked (left mapped), columns side by side (right mapped), both transposed
    "matmul": (lambda a, b: a @ b + (b.T @ a.T).T, (3, 4), (4, 2)),
    "matvec": (lambda a, b: a @ b, (3, 4), (4,)),
    # gather with shared indices or shared table; scatter through their gradients
    "gather": (lambda x, i: x[i] * x[i[::-1]], (5, 2), "index"),
    "take_pairs": (lambda x, i: x[snp.arange(3), i], (3, 4), "index"),
    "concatenate": (lambda a, b: snp.concatenate([a, b.T, a], axis=1), (4, 3), (2, 4)),
    "where": (lambda a, b: snp.where(a > 0, a, b.T[:, :3]), (4, 3), (5, 4)),
    "broadcast_reduce": (lambda a, b: snp.max(a[:, None, :] * b[None, :, :], axis=(0, 2)),
                         (3, 4), (2, 4)),
}


def _make(spec, rng, other=None):
    if spec == "index":
        return rng.integers(-2, 3, size=(3,))
    return rng.normal(size=spec)


@pytest.mark.parametrize("axes", [(0, None), (None, 0), (1, 0), (-1, None), (None, -1)])
@pytest.mark.parametrize("name", sorted(SHARED))
def test_one_operand_mapped(name, axes, backend):
    fn, sa, sb = SHARED[name]
    rng = np.random.default_rng(_seed(name, axes))
    examples = [(_make(sa, rng), _make(sb, rng)) for _ in range(B)]
    if axes[0] is None:
        examples = [(examples[0][0], e[1]) for e in examples]
    if axes[1] is None:
        examples = [(e[0], examples[0][1]) for e in examples]
    args = [examples[0][k] if ax is None else
            np.stack([e[k] for e in examples], axis=ax if ax < 0 else min(ax, examples[0][k].ndim))
            for k, ax in enumerate(axes)]
    axes = tuple(None if ax is None else (ax if ax < 0 else min(ax, examples[0][k].ndim))
                 for k, ax in enumerate(axes))
    expected = np.stack([np.asarray(fn(*e)) for e in examples])
    out = symgrad.vmap(fn, in_axes=axes, backend=backend)(*args)
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=1e-12)
    if np.asarray(examples[0][0]).dtype.kind == "f":
        def loss(a, b):
            return snp.sum(fn(a, b) ** 2)
        g = symgrad.grad(loss, backend="interp")
        got = symgrad.vmap(symgrad.grad(loss), in_axes=axes, backend=backend)(*args)
        np.testing.assert_allclose(got, np.stack([g(*e) for e in examples]), rtol=1e-10,
                                   atol=1e-12)


def test_docs_example_runs():
    """The vmap block of docs/jax.md, run as it stands."""
    import contextlib
    import io
    import pathlib
    import re
    text = (pathlib.Path(__file__).parent.parent / "docs" / "jax.md").read_text()
    code = re.search(r"## vmap.*?```python\n(.*?)```", text, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/jax.md", "exec"), {})
    assert out.getvalue().split() == ["(5,", "3)", "True"]


# --- the table of further elementwise functions and scipy.special (test_elementwise_more.py) ------

MORE = pytest.importorskip("test_elementwise_more").TABLE


@pytest.mark.parametrize("name, fn, gens", MORE, ids=[row[0] for row in MORE])
def test_more_elementwise_value_and_gradient_match_loop(name, fn, gens):
    examples = []
    for b in range(B):
        rng = np.random.default_rng(_seed(name, "vmap", b))
        examples.append([g(rng) for g in gens])
    args = [np.stack([e[k] for e in examples]) for k in range(len(gens))]
    expected = np.stack([np.asarray(fn(*e)) for e in examples])
    np.testing.assert_allclose(symgrad.vmap(fn, backend="interp")(*args), expected,
                               rtol=1e-12, atol=1e-12)

    def loss(*xs):
        return snp.sum(fn(*xs) * snp.cos(xs[0]))
    g = symgrad.grad(loss, argnums=0, backend="interp")
    got = symgrad.vmap(symgrad.grad(loss, argnums=0), backend="interp")(*args)
    np.testing.assert_allclose(got, np.stack([g(*e) for e in examples]), rtol=1e-10,
                               atol=1e-12)


# --- more of JAX's semantics, and compositions ----------------------------------------------------

X24 = np.arange(24.0).reshape(2, 3, 4)


def test_negative_out_axes(backend):
    # jax.vmap(lambda a: a.T * 2, in_axes=1, out_axes=-1)(x): shape (4, 2, 3)
    out = symgrad.vmap(lambda a: a.T * 2, in_axes=1, out_axes=-1, backend=backend)(X24)
    assert out.shape == (4, 2, 3)
    np.testing.assert_allclose(out[:, :, 1], [[8, 32], [10, 34], [12, 36], [14, 38]])


def test_nested_vmap_over_inner_axes(backend):
    # jax.vmap(jax.vmap(jnp.sum, in_axes=1), in_axes=2)(x): shape (4, 3)
    out = symgrad.vmap(symgrad.vmap(lambda a: snp.sum(a), in_axes=1), in_axes=2,
                       backend=backend)(X24)
    np.testing.assert_allclose(out, [[12, 20, 28], [14, 22, 30], [16, 24, 32], [18, 26, 34]])


def test_pytree_out_axes(backend):
    # out_axes={'s': 1, 't': 0} over a dict result
    out = symgrad.vmap(lambda p: {"s": p["a"] + p["b"], "t": p["a"]},
                       in_axes=({"a": 0, "b": None},), out_axes={"s": 1, "t": 0},
                       backend=backend)({"a": np.arange(6.0).reshape(3, 2), "b": np.ones(2)})
    np.testing.assert_allclose(out["s"], [[1, 3, 5], [2, 4, 6]])
    np.testing.assert_allclose(out["t"], [[0, 1], [2, 3], [4, 5]])


def _h(w, x):
    return snp.sum(snp.sin(x * w) ** 2)


def test_hessian_of_vmap_and_vmap_of_hessian():
    w, xs = W[:, 0], XS[:4]
    hess = symgrad.hessian(_h, backend="interp")
    per_example = [hess(w, x) for x in xs]
    total = symgrad.hessian(lambda w, xs: snp.sum(symgrad.vmap(_h, in_axes=(None, 0))(w, xs)),
                            backend="interp")(w, xs)
    np.testing.assert_allclose(total, sum(per_example), rtol=1e-12)
    np.testing.assert_allclose(symgrad.vmap(symgrad.hessian(_h), in_axes=(None, 0),
                                            backend="interp")(w, xs),
                               np.stack(per_example), rtol=1e-12)


def test_vmap_of_value_and_grad_with_aux(backend):
    def f(w, x):
        return _h(w, x), {"m": snp.mean(x)}
    w, xs = W[:, 0], XS[:4]
    (v, aux), g = symgrad.vmap(symgrad.value_and_grad(f, has_aux=True), in_axes=(None, 0),
                               backend=backend)(w, xs)
    ref = symgrad.value_and_grad(_h, backend="interp")
    np.testing.assert_allclose(v, [ref(w, x)[0] for x in xs], rtol=1e-12)
    np.testing.assert_allclose(g, np.stack([ref(w, x)[1] for x in xs]), rtol=1e-12)
    np.testing.assert_allclose(aux["m"], xs.mean(axis=1))


def test_vmap_inside_a_loop_body(backend):
    def body(c, x):
        return c + snp.sum(symgrad.vmap(lambda a: a * c)(x)), None
    xs = np.random.default_rng(5).normal(size=(3, 2, 2))
    c = 1.0
    for x in xs:
        c = c + np.sum(x * c)
    f = symgrad.compile(lambda c, xs: symgrad.scan(body, c, xs)[0], backend=backend)
    np.testing.assert_allclose(f(1.0, xs), c, rtol=1e-12)


def test_per_example_benchmark_quick_mode_runs():
    """benchmarks/per_example_grads.py --quick: every contender agrees with the loop (the
    script exits non-zero otherwise); no timing is asserted."""
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    r = subprocess.run([sys.executable, str(root / "benchmarks" / "per_example_grads.py"),
                        "--quick"], capture_output=True, text=True, timeout=300, cwd=root)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rows = [line for line in r.stdout.splitlines() if line.startswith("| 100 | 16 |")
            or line.startswith("| 100 | 64 |")]
    assert len(rows) == 2


_EXPORT_SPEC = '''
import symgrad
import symgrad.numpy as snp


def loss(w, x, y):
    return (snp.tanh(x @ w) - y) ** 2


per_example = symgrad.vmap(symgrad.grad(loss), in_axes=(None, 0, 0))
per_example.__name__ = "per_example"
symgrad.export(per_example, "f64[3]", "f64[N,3]", "f64[N]", argnums=())
'''


def test_ahead_of_time_export_of_per_example_gradients(tmp_path):
    """An exported vmap(grad) is one C function for every batch size N."""
    import importlib.util
    from symgrad.tools.cli import main
    spec = tmp_path / "pe.py"
    spec.write_text(_EXPORT_SPEC)
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    module_spec = importlib.util.spec_from_file_location("aot_vmap_pe", tmp_path / "out" / "pe.py")
    loader = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(loader)
    rng = np.random.default_rng(6)
    w = rng.normal(size=3)
    g = symgrad.grad(lambda w, x, y: (snp.tanh(x @ w) - y) ** 2, backend="interp")
    for n in (1, 6):
        X, y = rng.normal(size=(n, 3)), rng.normal(size=n)
        np.testing.assert_allclose(loader.per_example(w, X, y),
                                   np.stack([g(w, X[i], y[i]) for i in range(n)]), rtol=1e-12)


# --- the breadth tables of linalg and statistics (tests/breadth.py's Case), batched ---------------

def _breadth_cases():
    cases = []
    for module in ("test_linalg", "test_statistics"):
        try:
            cases += [pytest.param(c, id=f"{module}-{c.name}")
                      for c in __import__(module).CASES]
        except ImportError:
            pass
    return cases


def _leaves(value):
    return [np.asarray(v) for v in symgrad.tree_util.tree_leaves(value)]


@pytest.mark.parametrize("case", _breadth_cases())
def test_breadth_tables_value_and_gradient_match_loop(case):
    examples = [case.args(np.random.default_rng(_seed(case.name, "vmap", b))) for b in range(B)]
    args, in_axes = _batch(examples, 0)
    got = _leaves(symgrad.vmap(case.fn, in_axes=in_axes, backend="interp")(*args))
    expected = [_leaves(case.fn(*e)) for e in examples]
    for k, leaf in enumerate(got):
        np.testing.assert_allclose(leaf, np.stack([e[k] for e in expected]), rtol=1e-9,
                                   atol=1e-11)
    if not case.grad:
        return

    def loss(x, *rest):
        return sum(snp.sum(snp.sin(o)) for o in symgrad.tree_util.tree_leaves(case.fn(x, *rest))
                   if o.dtype.kind == "f")
    g = symgrad.grad(loss, backend="interp")
    vg = symgrad.vmap(symgrad.grad(loss), in_axes=in_axes, backend="interp")(*args)
    np.testing.assert_allclose(vg, np.stack([g(*e) for e in examples]), rtol=1e-8, atol=1e-10)


def test_static_arguments_of_a_compiled_function_stay_static(backend):
    @symgrad.compile(static_argnums=1)
    def f(x, n):
        return x[:n] * snp.arange(n)
    out = symgrad.vmap(f, in_axes=(0, None), backend=backend)(X12, 2)
    np.testing.assert_allclose(out, X12[:, :2] * np.arange(2))
    out = symgrad.vmap(lambda x, n: x[:n] * 2, in_axes=(0, None), static_argnums=1,
                       backend=backend)(X12, 3)
    np.testing.assert_allclose(out, X12[:, :3] * 2)


def test_vmap_of_jvp_and_hvp(backend):
    f = symgrad.compile(lambda x: snp.sin(x) * snp.sum(x ** 2), backend="interp")
    g = symgrad.compile(lambda x: snp.sum(snp.sin(x) ** 3), backend="interp")
    ts = np.random.default_rng(7).normal(size=XS.shape)
    v, t = symgrad.vmap(lambda x, tx: f.jvp((x,), (tx,)), backend=backend)(XS, ts)
    expected = [f.jvp((x,), (tx,)) for x, tx in zip(XS, ts)]
    np.testing.assert_allclose(v, np.stack([e[0] for e in expected]), rtol=1e-12)
    np.testing.assert_allclose(t, np.stack([e[1] for e in expected]), rtol=1e-12)
    hv = symgrad.vmap(lambda x, tx: g.hvp((x,), (tx,)), backend=backend)(XS, ts)
    np.testing.assert_allclose(hv, np.stack([g.hvp((x,), (tx,)) for x, tx in zip(XS, ts)]),
                               rtol=1e-12)


def test_linear_algebra_cumulative_and_sorting_on_both_backends(backend):
    la = pytest.importorskip("symgrad.numpy.linalg")
    rng = np.random.default_rng(8)
    a = rng.uniform(-1, 1, (4, 3, 3)) + 5 * np.eye(3)
    b = rng.normal(size=(4, 3))

    def f(a, b):
        return (la.solve(a, b) + la.cholesky(a @ a.T)[:, 0] + snp.cumsum(b)
                + snp.argsort(b).astype(b.dtype) + la.slogdet(a)[1])
    expected = np.stack([f(a[i], b[i]) for i in range(4)])
    np.testing.assert_allclose(symgrad.vmap(f, backend=backend)(a, b), expected, rtol=1e-12)
    shared = symgrad.vmap(f, in_axes=(None, 0), backend=backend)(a[0], b)
    np.testing.assert_allclose(shared, np.stack([f(a[0], b[i]) for i in range(4)]), rtol=1e-12)

    def loss(a, b):
        return snp.sum(f(a, b) ** 2)
    g = symgrad.grad(loss, backend="interp")
    np.testing.assert_allclose(symgrad.vmap(symgrad.grad(loss), backend=backend)(a, b),
                               np.stack([g(a[i], b[i]) for i in range(4)]), rtol=1e-10)


def test_while_loop_with_a_trip_count_per_example(backend):
    """A traced while loop (its bound checked by a guard) under vmap: each example stops at its
    own step."""
    def f(x):
        s = x
        while snp.sum(s) < 50.0:
            s = s * 2.0
        return s
    xs = np.array([[1.0, 2.0], [3.0, 4.0], [0.5, 0.5]])
    g = symgrad.compile(f, backend="interp")
    np.testing.assert_allclose(symgrad.vmap(f, backend=backend)(xs),
                               np.stack([g(x) for x in xs]))
