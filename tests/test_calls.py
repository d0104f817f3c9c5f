"""JAX's calling conventions (API.md §6): pytrees, keyword arguments, has_aux, static_argnames.

Expected structures were written down from JAX 0.10.2 (benchmarks/.venv, x64), e.g.
``jax.tree_util.tree_structure(jax.value_and_grad(loss, has_aux=True)(params, batch))`` is
``PyTreeDef(((*, {'acc': *, 'out': *}), {'W': *, 'b': *}))``; JAX itself is never imported.
Values are checked against NumPy and central differences.
"""
import collections
import dataclasses

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad import optim, tree_util
from symgrad.tree_util import tree_structure


P = collections.namedtuple("P", "w b")


def _fd(f, x, h=1e-6):
    """Central differences of a scalar f at array x."""
    x = np.asarray(x, dtype=float)
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        e = np.zeros_like(x)
        e[i] = h
        g[i] = (f(x + e) - f(x - e)) / (2 * h)
    return g


def loss(params, batch):
    X, y = batch
    out = snp.tanh(X @ params["W"] + params["b"])
    return snp.mean((out - y) ** 2), {"acc": snp.mean(out), "out": out}


def _problem(seed=0):
    r = np.random.default_rng(seed)
    params = {"b": r.standard_normal(2), "W": r.standard_normal((3, 2))}
    batch = (r.standard_normal((4, 3)), r.standard_normal((4, 2)))
    return params, batch


def _np_loss(params, batch):
    X, y = batch
    out = np.tanh(X @ params["W"] + params["b"])
    return np.mean((out - y) ** 2)


# -- tree_util ----------------------------------------------------------------------------------

def test_tree_util_structures_match_jax():
    assert repr(tree_structure({"b": 1, "a": (2, None, [3])})) == \
        "PyTreeDef({'a': (*, None, [*]), 'b': *})"
    assert repr(tree_structure(P(1, 2))) == "PyTreeDef(CustomNode(namedtuple[P], [*, *]))"
    assert tree_util.tree_leaves({"b": 1, "a": (2, None, [3])}) == [2, 3, 1]
    assert tree_util.tree_leaves(None) == [] and repr(tree_structure(None)) == "PyTreeDef(None)"
    pairs, _ = tree_util.tree_flatten_with_path({"b": 1, "a": (2, P(3, 4))})
    assert [tree_util.keystr(p) for p, _ in pairs] == ["['a'][0]", "['a'][1].w", "['a'][1].b",
                                                       "['b']"]
    od = collections.OrderedDict(b=1, a=2)
    assert tree_util.tree_leaves(od) == [1, 2]                  # insertion order, as JAX
    leaves, tree = tree_util.tree_flatten({"x": [1.0, 2.0], "y": None})
    assert tree_util.tree_unflatten(tree, [5, 6]) == {"x": [5, 6], "y": None}
    assert tree_util.tree_map(lambda a, b: a + b, {"a": 1, "b": (2, 3)},
                              {"a": 10, "b": (20, 30)}) == {"a": 11, "b": (22, 33)}
    with pytest.raises(ValueError, match="holds 2 leaves; got 3"):
        tree_util.tree_unflatten(tree, [1, 2, 3])


def test_register_pytree_node_and_dataclass():
    class Box:
        def __init__(self, lo, hi, name):
            self.lo, self.hi, self.name = lo, hi, name
    tree_util.register_pytree_node(Box, lambda b: ((b.lo, b.hi), b.name),
                                   lambda name, c: Box(*c, name))

    @tree_util.register_dataclass
    @dataclasses.dataclass
    class Layer:
        w: object
        b: object
        act: str = dataclasses.field(default="tanh", metadata={"static": True})

    def f(box, layer):
        return snp.sum((box.hi - box.lo) * layer.w) + snp.sum(layer.b ** 2)

    box = Box(np.zeros(3), np.array([1.0, 2.0, 3.0]), "unit")
    layer = Layer(np.array([0.5, -1.0, 2.0]), np.array([1.5]))
    g_box, g_layer = symgrad.grad(f, argnums=(0, 1))(box, layer)
    assert isinstance(g_box, Box) and g_box.name == "unit"
    assert isinstance(g_layer, Layer) and g_layer.act == "tanh"
    np.testing.assert_allclose(g_box.hi, layer.w)
    np.testing.assert_allclose(g_box.lo, -layer.w)
    np.testing.assert_allclose(g_layer.w, box.hi)
    np.testing.assert_allclose(g_layer.b, 2 * layer.b)
    with pytest.raises(ValueError, match="already registered"):
        tree_util.register_pytree_node(Box, None, None)


# -- pytrees through compile, grad, value_and_grad ------------------------------------------------

@pytest.mark.parametrize("backend", ["c", "interp"])
def test_has_aux_structures_and_values(backend):
    params, batch = _problem()
    f = symgrad.compile(loss, has_aux=True, backend=backend)
    (value, aux), grads = f.value_and_grad(params, batch)
    # JAX: PyTreeDef(((*, {'acc': *, 'out': *}), {'W': *, 'b': *}))
    assert repr(tree_structure(((value, aux), grads))) == \
        "PyTreeDef(((*, {'acc': *, 'out': *}), {'W': *, 'b': *}))"
    assert value == pytest.approx(_np_loss(params, batch), rel=1e-13)
    out = np.tanh(batch[0] @ params["W"] + params["b"])
    np.testing.assert_allclose(aux["out"], out, rtol=1e-13)
    assert aux["acc"] == pytest.approx(out.mean(), rel=1e-13)
    for k in params:
        fd = _fd(lambda x: _np_loss(dict(params, **{k: x}), batch), params[k])
        np.testing.assert_allclose(grads[k], fd, rtol=1e-6, atol=1e-9)
    # JAX: grad with has_aux is PyTreeDef(({'W': *, 'b': *}, {'acc': *, 'out': *}))
    g, aux2 = f.grad(params, batch)
    assert repr(tree_structure((g, aux2))) == \
        "PyTreeDef(({'W': *, 'b': *}, {'acc': *, 'out': *}))"
    np.testing.assert_array_equal(g["W"], grads["W"])
    # symgrad.grad and symgrad.value_and_grad, JAX style; and the value call
    g3, _ = symgrad.grad(loss, has_aux=True, backend=backend)(params, batch)
    np.testing.assert_array_equal(g3["b"], grads["b"])
    (v4, _), _ = symgrad.value_and_grad(loss, has_aux=True, backend=backend)(params, batch)
    assert v4 == value
    v5, aux5 = f(params, batch)
    assert v5 == value and sorted(aux5) == ["acc", "out"]


def test_has_aux_needs_a_pair():
    f = symgrad.compile(lambda x: snp.sum(x), has_aux=True)
    with pytest.raises(TypeError, match="must return a pair"):
        f.value_and_grad(np.ones(3))


@pytest.mark.parametrize("backend", ["c", "interp"])
def test_argnums_over_pytrees(backend):
    def f2(a, b, c):
        return snp.sum(a[0] * c["x"]) + snp.sum(b) * snp.sum(a[1])
    a = (np.array([1.0, 2.0]), np.array([3.0, 4.0, 5.0]))
    b = np.array([0.5, 1.5])
    c = {"x": np.array([-1.0, 2.0])}
    ga, gc = symgrad.grad(f2, argnums=(0, 2), backend=backend)(a, b, c)
    # JAX: PyTreeDef(((*, *), {'x': *}))
    assert repr(tree_structure((ga, gc))) == "PyTreeDef(((*, *), {'x': *}))"
    np.testing.assert_allclose(ga[0], c["x"])
    np.testing.assert_allclose(ga[1], np.full(3, b.sum()))
    np.testing.assert_allclose(gc["x"], a[0])
    # named tuples come back as themselves; None is an empty subtree
    g = symgrad.grad(lambda q: snp.sum(q.w) * q.b, backend=backend)(P(np.ones(2), 2.0))
    assert type(g) is P and g.b == pytest.approx(2.0)
    np.testing.assert_allclose(g.w, [2.0, 2.0])
    g = symgrad.grad(lambda p: snp.sum(p[0] ** 2), backend=backend)((np.ones(2), None))
    assert repr(tree_structure(g)) == "PyTreeDef((*, None))"


def test_integer_leaf_of_a_differentiated_pytree_is_named():
    f = symgrad.compile(lambda p: snp.sum(p["w"]) * p["n"])
    with pytest.raises(ValueError, match=r"argument 0 \('p'\)\['n'\]: it is int64 data"):
        f.grad({"w": np.ones(2), "n": 3})


def test_pytree_results_and_new_structures_respecialize():
    f = symgrad.compile(lambda p: {"s": snp.sum(p["x"]), "pair": [p["x"] * 2, p["y"]]})
    out = f({"x": np.arange(3.0), "y": np.array(1.5)})
    assert repr(tree_structure(out)) == "PyTreeDef({'pair': [*, *], 's': *})"
    assert out["s"] == 3.0 and out["pair"][1] == 1.5
    np.testing.assert_array_equal(out["pair"][0], [0.0, 2.0, 4.0])
    g = symgrad.compile(lambda p: snp.sum(p[0]) + (snp.sum(p[1]) if len(p) > 1 else 0.0))
    assert g((np.ones(2),)) == 2.0 and g((np.ones(2), np.ones(3))) == 5.0
    assert len(g._specs) == 2
    # a list result is a list, as JAX's jit gives
    assert isinstance(symgrad.compile(lambda x: [x, x * 2])(1.0), list)


def test_a_list_of_numbers_is_still_an_array():
    """API.md §2: lists are inputs read as arrays; a list holding arrays is a pytree."""
    f = symgrad.compile(lambda x: snp.sum(x * x))
    assert f([1.0, 2.0, 3.0]) == 14.0
    np.testing.assert_allclose(f.grad([1.0, 2.0]), [2.0, 4.0])
    h = symgrad.compile(lambda xs: snp.sum(xs[0]) * xs[1])
    g = h.grad([np.array([1.0, 2.0]), np.array(3.0)])
    assert isinstance(g, list) and g[1] == pytest.approx(3.0)


# -- keywords ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["c", "interp"])
def test_keywords_bind_by_name_and_argnums_counts_positions(backend):
    def f(w, X, y, reg=0.0):
        return snp.mean((X @ w - y) ** 2) + reg * snp.sum(w * w)
    r = np.random.default_rng(1)
    w, X, y = r.standard_normal(3), r.standard_normal((5, 3)), r.standard_normal(5)
    cf = symgrad.compile(f, argnums=(0, 3), backend=backend)
    v1, g1 = cf.value_and_grad(w, X, y, 0.1)
    v2, g2 = cf.value_and_grad(w=w, X=X, y=y, reg=0.1)
    v3, g3 = cf.value_and_grad(y=y, reg=0.1, X=X, w=w)
    assert v1 == v2 == v3
    for a, b in zip(g1, g2 + g3):
        np.testing.assert_array_equal(a, b)
    plain = symgrad.compile(f, backend=backend)
    assert plain(w, X, y=y) == pytest.approx(np.mean((X @ w - y) ** 2), rel=1e-13)
    with pytest.raises(TypeError, match="argnums includes 3"):
        cf(w, X, y=y)
    with pytest.raises(TypeError, match="unexpected keyword argument 'z'"):
        cf(w, X, y, z=1.0)
    with pytest.raises(TypeError, match="multiple values for argument 'w'"):
        cf(w, X, y, w=w)
    with pytest.raises(TypeError, match="missing required argument 'X'"):
        cf(w, y=y)
    # JAX-style entry points take keywords too
    assert symgrad.grad(f, backend=backend)(w, X=X, y=y).shape == (3,)


def test_static_argnames_and_keyword_only_parameters():
    def f(x, n, *, scale, mode="sum"):
        out = x ** n * scale
        return snp.sum(out) if mode == "sum" else snp.max(out)
    cf = symgrad.compile(f, static_argnames=("n", "mode"))
    x = np.array([1.0, 2.0, 3.0])
    assert cf.static_argnums == (1,)
    assert cf(x, 2, scale=2.0) == pytest.approx(28.0)
    assert cf(x, n=3, scale=1.0, mode="max") == pytest.approx(27.0)
    np.testing.assert_allclose(cf.grad(x, 2, scale=2.0), 4 * x)
    with pytest.raises(TypeError, match="keyword-only argument.*'scale'"):
        cf(x, 2)
    with pytest.raises(ValueError, match="static_argnames names 'm'"):
        symgrad.compile(f, static_argnames="m")


# -- forward mode and second order with pytrees ---------------------------------------------------

@pytest.mark.parametrize("backend", ["c", "interp"])
def test_jacobian_hessian_jvp_structures(backend):
    def f3(p):
        return {"u": p["w"] * 2.0, "v": (snp.sum(p["b"] ** 2),)}
    p = {"w": np.array([1.0, 2.0]), "b": np.array([0.5, -1.0, 2.0])}
    J = symgrad.jacobian(f3, backend=backend)(p)
    # JAX: {'u': {'b': (2, 3), 'w': (2, 2)}, 'v': ({'b': (3,), 'w': (2,)},)}
    shapes = tree_util.tree_map(np.shape, J)
    assert shapes == {"u": {"b": (2, 3), "w": (2, 2)}, "v": ({"b": (3,), "w": (2,)},)}
    np.testing.assert_allclose(J["u"]["w"], 2 * np.eye(2))
    np.testing.assert_allclose(J["u"]["b"], 0)
    np.testing.assert_allclose(J["v"][0]["b"], 2 * p["b"])

    def s(p):
        return snp.sum(p["w"] ** 2) * snp.sum(p["b"])
    H = symgrad.hessian(s, backend=backend)(p)
    # JAX: {'b': {'b': (3, 3), 'w': (3, 2)}, 'w': {'b': (2, 3), 'w': (2, 2)}}
    assert tree_util.tree_map(np.shape, H) == {"b": {"b": (3, 3), "w": (3, 2)},
                                               "w": {"b": (2, 3), "w": (2, 2)}}
    np.testing.assert_allclose(H["w"]["w"], 2 * p["b"].sum() * np.eye(2))
    np.testing.assert_allclose(H["w"]["b"], np.tile(2 * p["w"][:, None], (1, 3)))
    cf = symgrad.compile(f3, backend=backend)
    out, t = cf.jvp((p,), {"w": np.ones(2), "b": np.zeros(3)})
    # JAX: PyTreeDef(({'u': *, 'v': (*,)}, {'u': *, 'v': (*,)}))
    assert repr(tree_structure((out, t))) == "PyTreeDef(({'u': *, 'v': (*,)}, {'u': *, 'v': (*,)}))"
    np.testing.assert_allclose(t["u"], [2.0, 2.0])
    assert t["v"][0] == pytest.approx(0.0)
    hv = symgrad.compile(s, backend=backend).hvp((p,), {"w": np.ones(2), "b": np.zeros(3)})
    np.testing.assert_allclose(hv["w"], H["w"]["w"] @ np.ones(2))
    np.testing.assert_allclose(hv["b"], H["b"]["w"] @ np.ones(2))
    J2, aux = symgrad.jacobian(lambda p: (p["w"] * 3, snp.sum(p["b"])), has_aux=True,
                               backend=backend)(p)
    # JAX: PyTreeDef(({'b': *, 'w': *}, *))
    assert repr(tree_structure((J2, aux))) == "PyTreeDef(({'b': *, 'w': *}, *))"
    assert aux == pytest.approx(1.5)


def test_grad_of_grad_with_a_dict():
    def f(p):
        return snp.sum(p["a"] ** 3) + snp.sum(p["a"] * p["b"])

    def g(p):
        return snp.sum(symgrad.grad(f)(p)["a"])
    gg = symgrad.grad(g)({"a": np.array([1.0, 2.0]), "b": np.array([3.0, 4.0])})
    np.testing.assert_allclose(gg["a"], [6.0, 12.0])
    np.testing.assert_allclose(gg["b"], [1.0, 1.0])


# -- signature, check_grad, optim and AOT with pytrees ---------------------------------------------

def test_signature_of_a_pytree_gives_run_time_sizes():
    sig = {"params": {"W": "f64[3,2]", "b": "f64[2]"}, "batch": ("f64[N,3]", "f64[N,2]")}
    f = symgrad.compile(lambda params, batch: loss(params, batch)[0], signature=sig)
    params, batch = _problem()
    for n in (4, 9):
        r = np.random.default_rng(n)
        b = (r.standard_normal((n, 3)), r.standard_normal((n, 2)))
        v, g = f.value_and_grad(params, b)
        assert v == pytest.approx(_np_loss(params, b), rel=1e-13)
    assert len(f._specs) == 1
    with pytest.raises(TypeError, match="structured as"):
        f({"W": params["W"]}, batch)
    with pytest.raises(symgrad.ShapeError, match=r"params\['W'\]"):
        f({"W": np.ones((2, 2)), "b": params["b"]}, batch)


def test_check_grad_on_a_dict_of_parameters():
    params, batch = _problem(2)

    def value(params, batch):
        return loss(params, batch)[0]
    report = symgrad.check_grad(value, params, batch)
    assert report.ok
    assert sorted({c.argument for c in report.comparisons}) == ["params_W", "params_b"]
    assert {c.method for c in report.comparisons} >= {"interpreter", "central diff",
                                                      "complex step"}
    # has_aux functions are checked on their loss
    assert symgrad.check_grad(symgrad.compile(loss, has_aux=True), params, batch).ok


def test_optim_minimize_on_a_dict_model():
    params, batch = _problem(3)
    X, y = batch

    def mse(p, X, y):
        return snp.mean((snp.tanh(X @ p["W"] + p["b"]) - y) ** 2)
    result = optim.minimize(mse, params, optim.Adam(0.05), data=(X, y), steps=60,
                            progress=False)
    assert isinstance(result.params, dict) and sorted(result.params) == ["W", "b"]
    assert result.history[-1] < 0.5 * result.history[0]
    assert result.history[-1] == pytest.approx(_np_loss(result.best_params, batch), rel=0.2)


def test_the_jax_training_step_of_docs_runs_with_symgrad_imports():
    """docs/jax.md's code block, run as it stands; JAX (x64) prints 0.3178309570 0.9805."""
    import contextlib
    import io
    import pathlib
    import re
    text = (pathlib.Path(__file__).parent.parent / "docs" / "jax.md").read_text()
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "docs/jax.md", "exec"), {})
    assert out.getvalue().split() == ["0.3178309570", "0.9805"]
