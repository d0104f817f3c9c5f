"""Ahead-of-time builds: symgrad build writes C, a header, a library and a symgrad-free loader."""
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import symgrad
from symgrad.tools import aot
from symgrad.tools.cli import main

SPEC = Path(__file__).parent / "aot_spec.py"
sys.path.insert(0, str(SPEC.parent))
import aot_spec  # noqa: E402

D, C = 30, 10


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("aot")
    assert main(["build", str(SPEC), "-o", str(out), "--quiet"]) == 0
    return out


def _import_loader(path, name):
    """The Python loader a build wrote, imported from its file."""
    import importlib.util
    module_spec = importlib.util.spec_from_file_location(name, path)
    loader = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(loader)
    return loader


def data(n, seed=0):
    r = np.random.default_rng(seed)
    return (r.standard_normal((D, C)) * 0.1, r.standard_normal((n, D)), r.integers(0, C, n),
            1e-3)


def test_build_writes_every_file(built):
    names = sorted(p.name for p in built.iterdir())
    assert names == ["aot_spec.c", "aot_spec.h", "aot_spec.json", "aot_spec.py",
                     "libaot_spec.so"]
    manifest = json.loads((built / "aot_spec.json").read_text())
    assert manifest["symgrad_version"] == symgrad.__version__
    (soft, dot, residual) = manifest["exports"]
    assert residual["c_functions"] == ["scaled_residual"] and residual["gradient_of"] == []
    assert soft["name"] == "softmax_loss" and soft["sizes"] == ["N"]
    assert [a["type"] for a in soft["arguments"]] == ["f64[30,10]", "f64[N,30]", "i64[N]", "f64[]"]
    assert soft["c_functions"] == ["softmax_loss", "softmax_loss_value_and_grad"]
    assert dot["name"] == "dot_int" and dot["gradient_of"] == ["x", "y"]


def test_header_documents_prototypes_and_buffer_sizes(built):
    header = (built / "aot_spec.h").read_text()
    assert "int softmax_loss_value_and_grad(int64_t N," in header
    assert "out grad_W: double[30 * 10]" in header
    assert "X: double[N * 30]" in header
    assert "#define SYMGRAD_EINDEX 2" in header
    assert "extern \"C\"" in header


_LOADER_SCRIPT = textwrap.dedent("""
    import sys, json
    class Block:
        def find_spec(self, name, path=None, target=None):
            if name == "symgrad" or name.startswith("symgrad."):
                raise ImportError("the loader must not import symgrad")
    sys.meta_path.insert(0, Block())
    sys.path.insert(0, {out!r})
    import numpy as np
    import aot_spec
    results = []
    for n in (1, 7, 256):
        r = np.random.default_rng(n)
        W = r.standard_normal((30, 10)) * 0.1
        X = r.standard_normal((n, 30))
        y = r.integers(0, 10, n)
        v, g = aot_spec.softmax_loss_value_and_grad(W, X, y, 1e-3)
        results.append([n, v, g.tolist(), aot_spec.softmax_loss(W, X, y, 1e-3)])
    print(json.dumps(results))
    print("symgrad" in sys.modules, file=sys.stderr)
""")


def test_loader_without_symgrad_matches_jit_and_interpreter(built):
    out = subprocess.run([sys.executable, "-c", _LOADER_SCRIPT.format(out=str(built))],
                         capture_output=True, text=True, check=True)
    assert out.stderr.strip() == "False"
    jit = symgrad.compile(aot_spec.softmax_loss)
    interp = symgrad.compile(aot_spec.softmax_loss, backend="interp")
    for n, value, grad, plain in json.loads(out.stdout):
        r = np.random.default_rng(n)
        W = r.standard_normal((30, 10)) * 0.1
        X = r.standard_normal((n, 30))
        y = r.integers(0, 10, n)
        v_jit, g_jit = jit.value_and_grad(W, X, y, 1e-3)
        v_int, g_int = interp.value_and_grad(W, X, y, 1e-3)
        assert value == pytest.approx(v_jit, rel=1e-13) and plain == value
        assert value == pytest.approx(v_int, rel=1e-12)
        np.testing.assert_allclose(grad, g_jit, rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(grad, g_int, rtol=1e-10, atol=1e-13)


_MAIN_C = textwrap.dedent("""
    #include <stdio.h>
    #include "aot_spec.h"

    int main(void)
    {
        double W[30 * 10], X[7 * 30], reg = 1e-3, value, grad[30 * 10];
        int64_t y[7];
        for (int i = 0; i < 30 * 10; ++i) W[i] = 0.01 * (i % 17) - 0.05;
        for (int i = 0; i < 7 * 30; ++i) X[i] = 0.1 * (i % 13) - 0.6;
        for (int i = 0; i < 7; ++i) y[i] = (3 * i) % 10;
        int status = softmax_loss_value_and_grad(7, W, X, y, &reg, &value, grad);
        printf("%d %.17g %.17g %.17g\\n", status, value, grad[0], grad[299]);
        y[3] = 10;
        printf("%d\\n", softmax_loss_value_and_grad(7, W, X, y, &reg, &value, grad));
        y[3] = 3;
        printf("%d\\n", softmax_loss(-1, W, X, y, &reg, &value));
        return 0;
    }
""")


def test_c_program_links_the_library_and_matches_jit(built, tmp_path):
    (tmp_path / "main.c").write_text(_MAIN_C)
    exe = tmp_path / "main"
    subprocess.run(["cc", "-std=c99", "-O2", "-I", str(built), str(tmp_path / "main.c"),
                    "-L", str(built), "-laot_spec", f"-Wl,-rpath,{built}", "-lm", "-o",
                    str(exe)], check=True, capture_output=True, text=True)
    lines = subprocess.run([str(exe)], capture_output=True, text=True,
                           check=True).stdout.split("\n")
    status, value, g0, g299 = lines[0].split()
    W = np.array([0.01 * (i % 17) - 0.05 for i in range(300)]).reshape(30, 10)
    X = np.array([0.1 * (i % 13) - 0.6 for i in range(210)]).reshape(7, 30)
    y = np.array([(3 * i) % 10 for i in range(7)])
    v, g = symgrad.compile(aot_spec.softmax_loss).value_and_grad(W, X, y, 1e-3)
    assert int(status) == 0
    assert float(value) == pytest.approx(v, rel=1e-14)
    assert float(g0) == pytest.approx(g[0, 0], rel=1e-12)
    assert float(g299) == pytest.approx(g[29, 9], rel=1e-12)
    assert int(lines[1]) == 2      # SYMGRAD_EINDEX: label 10 of 10 classes
    assert int(lines[2]) == 3      # SYMGRAD_ESIZE: N = -1


def load(built, name):
    """Import the loader of a build under its own module name (the SPEC has the same stem)."""
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, built / "aot_spec.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_loader_raises_clear_errors(built):
    loader = load(built, "aot_loader_errors")
    W, X, y, reg = data(5)
    with pytest.raises(IndexError, match="out of range"):
        loader.softmax_loss_value_and_grad(W, X, np.array([0, 1, 10, 2, 3]), reg)
    with pytest.raises(ValueError, match=r"N = 4.*N = 5"):
        loader.softmax_loss(W, X, y[:4], reg)
    with pytest.raises(ValueError, match="expected f64\\[30,10\\]"):
        loader.softmax_loss(W[:, :9], X, y, reg)
    with pytest.raises(TypeError, match="takes 4 arguments"):
        loader.softmax_loss(W, X, y)
    with pytest.raises(TypeError, match="dtype complex128"):
        loader.softmax_loss(W.astype(complex), X, y, reg)


def test_keyword_names_are_mangled_and_work(built):
    source = (built / "aot_spec.c").read_text()
    assert "int dot_int(" in source and "int int(" not in source
    loader = load(built, "aot_loader_keywords")
    x, y = np.arange(4.0), np.arange(4.0) + 1
    v, (gx, gy) = loader.dot_int_value_and_grad(x, y)
    assert v == float(x @ y)
    np.testing.assert_array_equal(gx, y)
    np.testing.assert_array_equal(gy, x)


def test_build_is_reproducible(built, tmp_path):
    assert main(["build", str(SPEC), "-o", str(tmp_path), "--quiet"]) == 0
    for name in ("aot_spec.c", "aot_spec.h", "aot_spec.py", "aot_spec.json"):
        assert (tmp_path / name).read_bytes() == (built / name).read_bytes(), name


def test_build_reports_what_it_wrote(tmp_path, capsys):
    assert main(["build", str(SPEC), "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "3 export(s)" in out and str(tmp_path / "libaot_spec.so") in out


def test_spec_without_exports_is_an_error(tmp_path, capsys):
    spec = tmp_path / "empty.py"
    spec.write_text("x = 1\n")
    assert main(["build", str(spec), "-o", str(tmp_path / "out")]) == 1
    assert "declares no exports" in capsys.readouterr().err


def test_export_checks_its_types():
    with pytest.raises(ValueError, match="2 types for the 4 parameters"):
        symgrad.export(aot_spec.softmax_loss, "f64[3]", "f64[3]")
    with pytest.raises(ValueError, match="cannot read type string"):
        symgrad.export(aot_spec.int, "f64(3)", "f64[3]")
    aot._EXPORTS.clear()


def test_vector_result_export_has_a_value_function_only(built):
    loader = load(built, "aot_loader_vector")
    out = loader.scaled_residual(np.array([1.0, 2.0, 4.0], dtype=np.float32), 2.0)
    assert out.dtype == np.float32
    np.testing.assert_array_equal(out, [0.0, 2.0, 6.0])
    assert not hasattr(loader, "scaled_residual_value_and_grad")


_DERIVATIVE_SPEC = '''
import symgrad
import symgrad.numpy as snp


def rosen(x):
    return snp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


symgrad.export(symgrad.hessian(rosen), "f64[4]", name="rosen_hessian")
symgrad.export(symgrad.jacobian(lambda x: snp.sin(x) * x[0], mode="forward"), "f64[3]",
               name="jac")
'''


def test_hessian_and_jacobian_export(tmp_path):
    spec = tmp_path / "derivs.py"
    spec.write_text(_DERIVATIVE_SPEC)
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    loader = _import_loader(tmp_path / "out" / "derivs.py", "aot_derivs")
    x = np.array([1.2, 0.7, -0.3, 2.0])
    H = loader.rosen_hessian(x)
    # d2/dx_i dx_j of Rosenbrock, written out
    expected = np.zeros((4, 4))
    for i in range(3):
        expected[i, i] += 1200 * x[i] ** 2 - 400 * x[i + 1] + 2
        expected[i + 1, i + 1] += 200
        expected[i, i + 1] = expected[i + 1, i] = -400 * x[i]
    np.testing.assert_allclose(H, expected, rtol=1e-13)
    z = np.array([0.5, 1.0, 2.0])
    J = np.diag(np.cos(z) * z[0])
    J[:, 0] += np.sin(z)
    np.testing.assert_allclose(loader.jac(z), J, rtol=1e-14)


_LOOP_SPEC = textwrap.dedent("""
    import symgrad
    import symgrad.numpy as snp

    def pendulum(damping, length, steps):
        def step(i, state):
            theta, omega = state
            return (theta + 0.01 * omega,
                    omega + 0.01 * (-9.81 / length * snp.sin(theta) - damping * omega))
        theta, omega = symgrad.fori_loop(0, steps, step, (snp.asarray(1.0), snp.asarray(0.0)))
        return theta ** 2 + 0.5 * omega ** 2

    def rnn(W, xs, h0):
        def cell(h, x):
            h = snp.tanh(W @ h + x)
            return h, snp.sum(h * h)
        hT, ys = symgrad.scan(cell, h0, xs, checkpoint=None)
        return snp.sum(hT) + snp.sum(ys)

    symgrad.export(pendulum, "f64[]", "f64[]", "i64[]", argnums=(0, 1))
    symgrad.export(rnn, "f64[3,3]", "f64[T,3]", "f64[3]", argnums=(0, 1, 2))
""")


def test_one_loop_library_serves_every_horizon(tmp_path):
    """A trip count given as an argument, and one given by a run-time size: the library built
    once gives the JIT's numbers for every T, 0 included."""
    spec = tmp_path / "loops_spec.py"
    spec.write_text(_LOOP_SPEC)
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    loader = _import_loader(tmp_path / "out" / "loops_spec.py", "aot_loops")
    namespace = {}
    exec(compile(_LOOP_SPEC, "loops_spec.py", "exec"), namespace)
    jit_pendulum = symgrad.compile(namespace["pendulum"], argnums=(0, 1))
    for steps in (0, 1, 10, 1000):
        value, grads = loader.pendulum_value_and_grad(0.3, 1.5, steps)
        ref_value, ref_grads = jit_pendulum.value_and_grad(0.3, 1.5, steps)
        assert value == pytest.approx(ref_value, rel=1e-14)
        np.testing.assert_allclose(grads, ref_grads, rtol=1e-13)
    jit_rnn = symgrad.compile(namespace["rnn"], argnums=(0, 1, 2))
    rng = np.random.default_rng(0)
    W, h0 = rng.normal(size=(3, 3)) * 0.5, rng.normal(size=3)
    for T in (0, 4, 50):
        xs = rng.normal(size=(T, 3))
        value, grads = loader.rnn_value_and_grad(W, xs, h0)
        ref_value, ref_grads = jit_rnn.value_and_grad(W, xs, h0)
        assert value == pytest.approx(ref_value, rel=1e-14)
        for g, r in zip(grads, ref_grads):
            np.testing.assert_allclose(g, r, rtol=1e-13, atol=1e-15)
    header = (tmp_path / "out" / "loops_spec.h").read_text()
    assert "steps: int64_t[1] (a loop's trip count, read at run time)" in header


_SHAPES_SPEC = textwrap.dedent("""
    import symgrad, symgrad.numpy as snp

    def tile(x, A):
        return snp.concatenate([x, x * 2.0, (A @ x).reshape(-1)])

    symgrad.export(tile, "f64[N]", "f64[M,N]")
""")


def test_loader_sizes_outputs_from_the_manifest_without_eval(tmp_path):
    """An output of 2*N + M elements: its shape is a polynomial of the sizes, stored in the
    manifest as data; the loader evaluates it without ``eval`` and checks nothing twice."""
    spec = tmp_path / "shapes_spec.py"
    spec.write_text(_SHAPES_SPEC)
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    manifest = json.loads((tmp_path / "out" / "shapes_spec.json").read_text())
    (tile,) = manifest["exports"]
    assert tile["calls"]["value"]["outputs"][0]["shape"] == [[[1, {"M": 1}], [2, {"N": 1}]]]
    loader_source = (tmp_path / "out" / "shapes_spec.py").read_text()
    assert "eval(" not in loader_source
    loader = _import_loader(tmp_path / "out" / "shapes_spec.py", "aot_shapes")
    for n, m in ((3, 2), (1, 5), (0, 0)):
        x, A = np.arange(float(n)), np.ones((m, n))
        np.testing.assert_array_equal(loader.tile(x, A), np.concatenate([x, 2 * x, A @ x]))


_POLYNOMIAL_SPEC = textwrap.dedent("""
    import symgrad
    import symgrad.numpy as snp

    def gram(x):                       # an N*N result, from N*N and N*N*N temporaries
        square = snp.tanh(snp.outer(x, x))
        cube = snp.outer(snp.ravel(square), x)
        return square + snp.reshape(snp.sum(snp.reshape(cube, (-1, x.shape[0])), axis=1),
                                    square.shape)

    def loss(x):
        return snp.sum(gram(x) @ x)

    symgrad.export(gram, "f64[N]")
    symgrad.export(loss, "f64[N]")
""")


def test_sizes_that_are_polynomials_in_a_runtime_size(tmp_path):
    # issue 21: 8*N**2 printed as pow(N, 2), a double, which gcc refused to add to a pointer;
    # the loader evaluates the N*N output shape as exact int arithmetic
    spec = tmp_path / "poly.py"
    spec.write_text(_POLYNOMIAL_SPEC)
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    source = (tmp_path / "out" / "poly.c").read_text() + (tmp_path / "out" / "poly.h").read_text()
    assert "N*N" in source and not re.search(r"pow\(\s*N\b", source)
    loader = _import_loader(tmp_path / "out" / "poly.py", "aot_poly")
    for n in (1, 3, 6):
        x = np.linspace(-1.0, 1.0, n)
        square = np.tanh(np.outer(x, x))
        expected = square + square * np.sum(x)
        np.testing.assert_allclose(loader.gram(x), expected, rtol=1e-14)
        value, grad = loader.loss_value_and_grad(x)
        assert value == pytest.approx(np.sum(expected @ x), rel=1e-14)

        def numpy_loss(x):
            square = np.tanh(np.outer(x, x))
            return np.sum((square + square * np.sum(x)) @ x)
        h = 1e-6
        numeric = [(numpy_loss(x + h * e) - numpy_loss(x - h * e)) / (2 * h) for e in np.eye(n)]
        np.testing.assert_allclose(grad, numeric, rtol=1e-7, atol=1e-8)


@pytest.mark.parametrize("name, reason", [
    ("exp", "a function of the C library"), ("sqrt", "a function of the C library"),
    ("double", "keyword"), ("_status", "the generated code's own variables"), ("status", None),
    ("__x", "C reserves"), ("symgrad_loss", "belong to the generated code"),
    ("symgradrt_entry", "belong to the generated code"), ("sinf", "a function of the C library"),
    ("scipy_cblas_dgemm", "the BLAS and LAPACK"),
    ("LOSS_MAX", "reads as a macro"), ("EDOM", "reads as a macro"), ("LOSS", None), ("W1", None),
    ("λ", "ASCII letters"), ("loss", None), ("I", "a macro of the C headers"),
    ("complex", "a macro of the C headers"), ("offsetof", "a macro of the C headers")])
def test_why_an_export_name_is_renamed_in_c(name, reason):
    problem = aot.export_name_problem(name)
    assert (problem is None) if reason is None else (reason in problem)


def test_an_export_named_exp_is_renamed_and_the_build_says_so(tmp_path, capsys):
    """It was renamed exp_ silently. The build output and the header say so, and why; the
    Python loader keeps the name."""
    spec = tmp_path / "libm_spec.py"
    spec.write_text("import symgrad, symgrad.numpy as snp\n"
                    "def exp(x):\n"
                    "    return snp.sum(snp.exp(x))\n"
                    "symgrad.export(exp, 'f64[3]')\n"
                    "symgrad.export(exp, 'f64[3]', name='sum_exp')\n")
    out = tmp_path / "out"
    assert main(["build", str(spec), "-o", str(out)]) == 0
    note = ("export 'exp' is the C function exp_ (and exp__value_and_grad): it is a function of "
            "the C library (libc or libm), which the library links and the generated code "
            "calls; the Python loader keeps the name 'exp'")
    assert f"  note: {note}" in capsys.readouterr().out
    header = (out / "libm_spec.h").read_text()
    assert "int exp_(" in header and "int sum_exp(" in header
    assert " *   note: export 'exp' is the C function exp_" in header
    assert "note" not in header.split("sum_exp:")[1].split("*/")[0]     # only the renamed one
    manifest = json.loads((out / "libm_spec.json").read_text())
    assert [e.get("renamed") for e in manifest["exports"]] == [note, None]
    call = ("import sys, numpy as np; sys.path.insert(0, sys.argv[1]); import libm_spec; "
            "print(libm_spec.exp(np.zeros(3)))")
    done = subprocess.run([sys.executable, "-c", call, str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and float(done.stdout) == 3.0, done.stderr


_PYTREE_SPEC = textwrap.dedent("""
    import collections
    import symgrad
    import symgrad.numpy as snp

    Stats = collections.namedtuple("Stats", "loss scale")

    def mlp(params, batch):
        X, y = batch
        h = snp.tanh(X @ params["W1"] + params["b1"])
        out = h @ params["w2"]
        return snp.mean((out - y) ** 2)

    def stats(params, batch):
        X, y = batch
        out = snp.tanh(X @ params["W1"] + params["b1"]) @ params["w2"]
        return {"pred": out, "stats": Stats(snp.mean((out - y) ** 2), snp.max(params["b1"]))}

    PARAMS = {"W1": "f64[3,4]", "b1": "f64[4]", "w2": "f64[4]"}
    symgrad.export(mlp, PARAMS, ("f64[N,3]", "f64[N]"))
    symgrad.export(stats, PARAMS, ("f64[N,3]", "f64[N]"))
""")


def test_pytree_export_round_trip(tmp_path):
    """Parameters as a dict and the batch as a tuple: the header flattens them into parameters
    of their own (dict keys sorted, as JAX), documented with their paths; the loader takes the
    same structures and returns the gradient as a dict and a pytree result as itself."""
    spec = tmp_path / "trees.py"
    spec.write_text(_PYTREE_SPEC)
    assert main(["build", str(spec), "-o", str(tmp_path / "out"), "--quiet"]) == 0
    header = (tmp_path / "out" / "trees.h").read_text()
    assert ("int mlp_value_and_grad(int64_t N,\n"
            "                       const double *SYMGRAD_RESTRICT params_W1,") in header
    assert "params_b1: double[4]  -- params['b1']" in header
    assert "batch_0: double[N * 3]  -- batch[0]" in header
    assert "out grad_params_w2: double[4]" in header
    manifest = json.loads((tmp_path / "out" / "trees.json").read_text())
    assert [a["path"] for a in manifest["exports"][0]["arguments"]] == [
        "params['W1']", "params['b1']", "params['w2']", "batch[0]", "batch[1]"]
    loader = _import_loader(tmp_path / "out" / "trees.py", "aot_trees")
    r = np.random.default_rng(3)
    params = {"w2": r.standard_normal(4), "W1": r.standard_normal((3, 4)),
              "b1": r.standard_normal(4)}
    batch = (r.standard_normal((6, 3)), r.standard_normal(6))
    jit = symgrad.compile(_load_spec(spec).mlp)
    value, grads = loader.mlp_value_and_grad(params, batch)
    v_jit, g_jit = jit.value_and_grad(params, batch)
    assert isinstance(grads, dict) and sorted(grads) == ["W1", "b1", "w2"]
    assert value == pytest.approx(v_jit, rel=1e-13)
    for k in grads:
        np.testing.assert_allclose(grads[k], g_jit[k], rtol=1e-12, atol=1e-15)
    # an independent check of one entry: central differences of the loader's own value
    e = np.zeros((3, 4))
    e[1, 2] = 1e-6
    up = loader.mlp(dict(params, W1=params["W1"] + e), batch)
    down = loader.mlp(dict(params, W1=params["W1"] - e), batch)
    assert grads["W1"][1, 2] == pytest.approx((up - down) / 2e-6, rel=1e-6)
    out = loader.stats(params, batch)
    want = symgrad.compile(_load_spec(spec).stats)(params, batch)
    assert sorted(out) == ["pred", "stats"] and out["stats"]._fields == ("loss", "scale")
    np.testing.assert_allclose(out["pred"], want["pred"], rtol=1e-13)
    assert out["stats"].loss == pytest.approx(want["stats"].loss, rel=1e-13)
    with pytest.raises(TypeError, match="params must be a dict with keys"):
        loader.mlp({"W1": params["W1"]}, batch)
    with pytest.raises(TypeError, match="batch must be a tuple of 2"):
        loader.mlp(params, batch[0])


def _load_spec(path):
    return _import_loader(path, f"spec_{path.stem}")


def test_export_rejects_a_pytree_of_non_types():
    with pytest.raises(TypeError, match=r"params\['b'\] must be a type string"):
        symgrad.export(lambda params: params["w"], {"w": "f64[2]", "b": 3})
