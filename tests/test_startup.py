"""Start-up cost (issue 20): what ``import symgrad`` and a warm first call load, and large
constants kept as data rather than pasted into the C as literals."""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.backends.c import native

ROOT = Path(symgrad.__file__).resolve().parent.parent
# Not loaded by import symgrad, nor by a warm first call: sympy (the elementwise tables state their
# math as sympy text, parsed when a derivative, C or a NumPy evaluation needs what the generated
# table lacks; a cold build of static shapes does not load it either), SciPy
# (symgrad.scipy.special calls it on plain arrays only), Jinja and the C parser (a warm cache
# renders and compiles nothing), importlib.metadata (SciPy and cffi's build machinery load it).
HEAVY = ("sympy", "scipy", "jinja2", "pycparser", "cffi.cparser", "importlib.metadata")


def _run(code, *args):
    env_path = str(ROOT)
    r = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], capture_output=True,
                       text=True, env={"PYTHONPATH": env_path, "PATH": "/usr/bin:/bin",
                                       "HOME": str(Path.home())}, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_import_loads_no_heavy_module():
    loaded = _run(f"""
        import json, sys
        import symgrad, symgrad.numpy, symgrad.nn
        print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
    """)
    assert loaded == []


def test_the_elementwise_table_is_parsed_on_first_use_and_checked():
    loaded = _run("""
        import json, sys
        from symgrad.core.primitives import REGISTRY
        before = "sympy" in sys.modules
        tanh = REGISTRY["tanh"]
        print(json.dumps([before, tanh.sympy_math.text, str(tanh.derivs[0]),
                          "sympy" in sys.modules]))
    """)
    assert loaded == [False, "tanh(x)", "1 - out**2", True]
    from symgrad.core.primitives.elementwise import sympy_expr
    with pytest.raises(ValueError, match="only x, y and out are symbols"):
        sympy_expr("x + z")


MLP = """
    import json, sys
    import numpy as np
    import symgrad, symgrad.numpy as snp
    from symgrad.backends.c import compiler

    def loss(W1, W2, W3, X):
        h = snp.tanh(X @ W1)
        h = snp.tanh(h @ W2)
        return snp.sum((h @ W3) ** 2)

    rng = np.random.default_rng(0)
    args = [rng.standard_normal(s) * 0.1 for s in [(10, 32), (32, 32), (32, 1), (16, 10)]]
    v, g = symgrad.compile(loss, cache_dir=sys.argv[1]).value_and_grad(*args)
    print(json.dumps({"value": float(v), "grad": g.ravel().tolist(),
                      "loaded": [m for m in %r if m in sys.modules],
                      "compiles": compiler.invocations()}))
""" % (HEAVY,)


def test_a_warm_first_call_builds_and_loads_nothing_it_does_not_need(tmp_path):
    cold = _run(MLP, str(tmp_path))
    warm = _run(MLP, str(tmp_path))
    assert cold["compiles"] == 1 and warm["compiles"] == 0
    assert warm["loaded"] == [], "a warm cache needs no Jinja or C parser"
    # A cold build of static-shape code takes its C and its derivatives from the generated
    # elementwise table (core/primitives/elementwise_table.py): no sympy either.
    assert "sympy" not in cold["loaded"] and "scipy" not in cold["loaded"]
    # The same numbers, and right: NumPy's forward value and central differences.
    assert warm["value"] == cold["value"] and warm["grad"] == cold["grad"]
    rng = np.random.default_rng(0)
    W1, W2, W3, X = [rng.standard_normal(s) * 0.1 for s in [(10, 32), (32, 32), (32, 1), (16, 10)]]

    def f(W1):
        return np.sum((np.tanh(np.tanh(X @ W1) @ W2) @ W3) ** 2)
    assert warm["value"] == pytest.approx(f(W1), rel=1e-12)
    num = np.zeros_like(W1)
    for i in np.ndindex(W1.shape):
        e = np.zeros_like(W1)
        e[i] = 1e-6
        num[i] = (f(W1 + e) - f(W1 - e)) / 2e-6
    np.testing.assert_allclose(np.reshape(warm["grad"], W1.shape), num, rtol=1e-5, atol=1e-9)


def test_value_and_grad_outputs_match_the_graph():
    def f(w, x):
        return snp.sum(snp.tanh(x @ w)), x * 2.0
    cf = symgrad.compile(f, has_aux=True, backend="interp")
    spec, _ = cf.specialize(np.ones((3, 2)), np.ones((4, 3)))
    program = spec.program()
    assert "value_and_grad" not in program.__dict__          # not built until asked for
    stated = [(v.shape, v.dtype) for v in program.value_and_grad_outputs()]
    assert stated == [(v.shape, v.dtype) for v in program.value_and_grad.outputs]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_large_constant_is_data_not_literals(tmp_path, dtype):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((300, 300)).astype(dtype)
    b = rng.standard_normal(300).astype(dtype)        # 300 < DATA_MIN_ELEMENTS: literals

    def f(x):
        return snp.sum(snp.tanh(A @ x + b) ** 2) + snp.sum(x * np.array([1.5, 2.5] * 150, dtype))

    cf = symgrad.compile(f, cache_dir=tmp_path)
    x = rng.standard_normal(300).astype(dtype)
    v, g = cf.value_and_grad(x)
    A64, b64, x64 = A.astype(float), b.astype(float), x.astype(float)
    c = np.array([1.5, 2.5] * 150)
    t = np.tanh(A64 @ x64 + b64)
    rtol = 1e-10 if dtype == "float64" else 1e-4
    assert float(v) == pytest.approx(np.sum(t ** 2) + c @ x64, rel=rtol)
    np.testing.assert_allclose(g, A64.T @ (2 * t * (1 - t ** 2)) + c, rtol=rtol * 10, atol=rtol)
    (entry,) = [d for d in tmp_path.iterdir() if len(d.name) == 40]
    blobs = sorted(entry.glob("symgrad_data_*.bin"))
    if not native.DATA_FILES:
        pytest.skip("constants are data only on ELF platforms")
    assert len(blobs) == 1                    # one file, shared by both functions
    assert blobs[0].stat().st_size == A.nbytes
    source = (entry / "module.c").read_text()
    # Pasted as literals, A would take ~20 characters for each of its 90,000 values (1.8 MB);
    # the rest of this module (the runtime helpers, b and c as literals) takes ~70,000.
    assert len(source) < 2 * A.size, "the constant is not pasted into the C"
    assert f".incbin \\\"{blobs[0].stem}.bin\\\"" in source
    # The self-contained C that source() shows (and AOT ships) keeps every value as literals.
    assert ".incbin" not in cf.source(x) and len(cf.source(x)) > 2 * A.size


def test_a_cold_build_compiles_the_thread_pool_while_it_compiles_the_library(tmp_path):
    # The pool's library (built once per cache) compiles on another core while the library
    # that needs it (here for its gemms: 64 x 64 x 64 multiply-adds, enough to split) compiles,
    # not before it.
    events, value = _run("""
        import json, sys, time
        import numpy as np
        import symgrad, symgrad.numpy as snp
        from symgrad.backends.c import compiler, module
        events = []
        real_compile, real_render = compiler.compile_library, module.render_program

        def compile_library(src, lib, *args, **kwargs):
            what = "pool" if ".runtime" in str(src) else "module"
            events.append((what + " start", time.perf_counter()))
            try:
                return real_compile(src, lib, *args, **kwargs)
            finally:
                events.append((what + " end", time.perf_counter()))

        def render_program(*args, **kwargs):
            result = real_render(*args, **kwargs)
            events.append(("rendered", time.perf_counter()))
            return result
        compiler.compile_library, module.render_program = compile_library, render_program
        w = np.linspace(-0.1, 0.1, 4096).reshape(64, 64)
        x = np.linspace(0.0, 1.0, 4096).reshape(64, 64)
        f = symgrad.compile(lambda w, x: snp.sum(snp.tanh(x @ w) ** 2), cache_dir=sys.argv[1])
        v, g = f.value_and_grad(w, x)
        print(json.dumps([dict(events), float(v)]))
    """, str(tmp_path))
    assert set(events) == {"rendered", "pool start", "pool end", "module start", "module end"}
    assert events["rendered"] < events["pool start"] < events["module end"]
    assert events["module start"] < events["pool end"], "the two compiles overlap"
    (entry,) = [d for d in tmp_path.iterdir() if len(d.name) == 40]
    assert json.loads((entry / "manifest.json").read_text())["threads"], "the build uses the pool"
    # Its products are split over the pool (float64 only: no float32 C to compile).
    source = (entry / "module.c").read_text()
    assert "static void symgradrt_dgemm_par(" in source and "symgradrt_sgemm" not in source
    w = np.linspace(-0.1, 0.1, 4096).reshape(64, 64)
    x = np.linspace(0.0, 1.0, 4096).reshape(64, 64)
    assert value == pytest.approx(np.sum(np.tanh(x @ w) ** 2), rel=1e-12)


def test_a_library_of_small_products_is_built_without_the_pool(tmp_path):
    # 16 x 32 x 32 multiply-adds never give two threads SYMGRAD_MIN_WORK each: the pool would
    # run every call in the caller's thread, so the library is built without it, and a cold
    # cache compiles no pool at all.
    out = _run(MLP, str(tmp_path))
    assert out["compiles"] == 1
    (entry,) = [d for d in tmp_path.iterdir() if len(d.name) == 40]
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["threads"] is False and "-DSYMGRAD_USE_THREADS" not in manifest["flags"]
    assert not list((tmp_path / ".runtime").glob("*/manifest.json")), "no pool was built"
    # Nor does its C hold the split: each product is one BLAS call (a macro, nothing more for
    # gcc to compile), and its 33 KB of intermediate arrays are on the stack, not in a kept
    # block (so the block's functions are left out too). Together, gcc alone on this module:
    # 112.0 -> 83.7 ms (medians of 21, interleaved).
    source = (entry / "module.c").read_text()
    assert "#define symgradrt_dgemm_par(" in source
    assert "symgradrt_parallel_for" not in source and "symgradrt_dgemm_task" not in source
    assert "char _ws[33024] __attribute__((aligned(64)));" in source
    assert "symgrad_workspace" not in source
    # The threshold the decision uses is the pool's own.
    from symgrad.backends.c import narrow
    template = (ROOT / "symgrad" / "templates" / "threads.c.j2").read_text()
    assert "#define SYMGRAD_MIN_WORK 65536.0" in template
    assert narrow.SPLIT_MIN_WORK == 2 * 65536
    assert not narrow.may_split(["symgradrt_dgemm_par(0, 1, 16, 32, 32,",
                                 "symgradrt_mm_nn_d10_run(40, 327, _pa, _pb, _pc, 0);",
                                 "symgradrt_mm_mv_d10_run(n, _pa, _pb, _pc, 0);"])
    assert narrow.may_split(["symgradrt_dgemm_par(0, 1, 64, 64, 32,"])
    assert narrow.may_split(["symgradrt_mm_tn_s10_run(41, 327, _pa, _pb, _pc, 0);"])
    assert narrow.may_split(["symgradrt_dgemm_par(0, 0, N, 4, 4,"]), "a run-time size"
    assert narrow.may_split(["symgradrt_mm_nn_d3_run(N, 3, _pa, _pb, _pc, 1);"])


def test_a_cold_build_links_with_gold_where_it_is_installed(tmp_path, monkeypatch):
    # gold links a generated library in about half ld.bfd's time (compiler.LINKER_FLAGS); the
    # library it writes carries its version note. Without ld.gold, the compiler's default.
    import platform
    import shutil
    from symgrad.backends.c import compiler
    have_gold = platform.system() == "Linux" and shutil.which("ld.gold") is not None
    assert ("-fuse-ld=gold" in compiler.flags()) == have_gold
    out = _run(MLP, str(tmp_path))
    assert out["compiles"] == 1
    (entry,) = [d for d in tmp_path.iterdir() if len(d.name) == 40]
    manifest = json.loads((entry / "manifest.json").read_text())
    library = (entry / manifest["library"]).read_bytes()
    assert (b".note.gnu.gold-version" in library) == have_gold
    assert ("-fuse-ld=gold" in manifest["flags"]) == have_gold, "the linker is in the key"
    # Only the library: no CPython entry library (its arguments are arrays) and no pool.
    assert not (tmp_path / ".runtime").exists()
    real_which = shutil.which
    monkeypatch.setattr(shutil, "which",
                        lambda name, *a, **k: None if name == "ld.gold" else real_which(name))
    assert compiler._linker_flags() == ()


def test_the_declarations_are_made_once_the_compiler_runs(tmp_path):
    # cffi's declarations and the compiler's version line are made in a thread while the C
    # compiler runs; the thread starts only once the compiler has started, so it never holds
    # the GIL between the render and the compiler's start (the first call's critical path).
    events, value = _run("""
        import json, subprocess, sys, time
        import numpy as np
        import symgrad, symgrad.numpy as snp
        from symgrad.backends.c import compiler
        events = {}
        real_popen, real_version = subprocess.Popen, compiler.compiler_version

        def popen(command, *args, **kwargs):
            process = real_popen(command, *args, **kwargs)
            if "--version" not in command:
                events.setdefault("compiler started", time.perf_counter())
            return process

        def version(cc):                # the thread's first step
            events.setdefault("declaring", time.perf_counter())
            return real_version(cc)
        subprocess.Popen, compiler.compiler_version = popen, version
        f = symgrad.compile(lambda x: snp.sum(snp.tanh(x) ** 2), cache_dir=sys.argv[1])
        v, g = f.value_and_grad(np.linspace(-1.0, 1.0, 7))
        print(json.dumps([events, float(v)]))
    """, str(tmp_path))
    assert set(events) == {"compiler started", "declaring"}
    assert events["compiler started"] < events["declaring"]
    assert value == pytest.approx(np.sum(np.tanh(np.linspace(-1.0, 1.0, 7)) ** 2), rel=1e-13)


# Found by the long fuzz run (issue 21): a large constant copied into the workspace (here the
# weights of an elementwise product, not a matmul operand) was written with a loop index spelled
# 'i0' inside a loop over '_i0' (the readable-C names), and gcc rejected it. The class: every
# dtype a constant can hold, materialized by the const kernel from data.
@pytest.mark.parametrize("kind", ["float64", "float32", "int64", "bool"])
def test_a_large_constant_copied_from_data_compiles_and_is_right(tmp_path, kind):
    n = 1296
    rng = np.random.default_rng(2)
    x = rng.standard_normal((36, 36))
    if kind in ("float64", "float32"):
        W = np.linspace(0.5, 1.5, n).reshape(36, 36).astype(kind)
        x = x.astype(kind)

        def f(x):
            return snp.sum(snp.sin(x) * W)
        value, grad = float(np.sum(np.sin(x.astype(float)) * W)), np.cos(x.astype(float)) * W
    elif kind == "int64":
        I = rng.integers(-36, 36, n)                   # negative and repeated indices

        def f(x):
            return snp.sum(snp.sin(x[I]) * np.arange(1.0, n + 1).reshape(n, 1))
        c = np.zeros(36)
        np.add.at(c, I, np.arange(1.0, n + 1))
        value = float(np.sum(np.sin(x[I]) * np.arange(1.0, n + 1).reshape(n, 1)))
        grad = np.cos(x) * c[:, None]
    else:
        M = rng.random((36, 36)) < 0.5

        def f(x):
            return snp.sum(snp.where(M, snp.sin(x), x * x))
        value = float(np.sum(np.where(M, np.sin(x), x * x)))
        grad = np.where(M, np.cos(x), 2 * x)
    cf = symgrad.compile(f, cache_dir=tmp_path)
    v, g = cf.value_and_grad(x)
    rtol = 1e-5 if kind == "float32" else 1e-12
    assert float(v) == pytest.approx(value, rel=rtol)
    np.testing.assert_allclose(g, grad, rtol=rtol, atol=rtol)
    if native.DATA_FILES:
        (entry,) = [d for d in tmp_path.iterdir() if len(d.name) == 40]
        assert list(entry.glob("symgrad_data_*.bin")), "the constant was not kept as data"


def test_a_library_compiled_for_a_pool_that_then_fails_is_built_again_without_it(tmp_path):
    # The library compiles while the pool still compiles (on another core); when the pool then
    # cannot be built or loaded, the library (which would not load without it) is rebuilt for
    # one thread, with one warning, and computes the same numbers.
    out = _run("""
        import json, sys, threading, warnings
        import numpy as np
        import symgrad, symgrad.numpy as snp
        from symgrad.backends.c import compiler, threads
        from symgrad.errors import CompileError
        compiling, real_compile = threading.Event(), compiler.compile_library

        def compile_library(*args, **kwargs):
            compiling.set()
            return real_compile(*args, **kwargs)

        def broken(cache_dir, cc):     # fails while the library compiles
            compiling.wait(60)
            raise CompileError("no pool today")
        compiler.compile_library, threads._load = compile_library, broken
        w = np.linspace(-0.1, 0.1, 4096).reshape(64, 64)
        x = np.linspace(0.0, 1.0, 4096).reshape(64, 64)
        f = symgrad.compile(lambda w, x: snp.sum(snp.tanh(x @ w) ** 2), cache_dir=sys.argv[1])
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            v, g = f.value_and_grad(w, x)
        print(json.dumps([float(v), g.ravel().tolist(), compiler.invocations(),
                          [str(c.message) for c in caught]]))
    """, str(tmp_path))
    value, grad, compiles, caught = out
    assert compiles == 2
    assert len(caught) == 1 and "thread pool could not be built" in caught[0]
    (entry,) = [d for d in tmp_path.iterdir() if len(d.name) == 40]
    manifest = json.loads((entry / "manifest.json").read_text())
    assert manifest["threads"] is False and "-DSYMGRAD_USE_THREADS" not in manifest["flags"]
    w = np.linspace(-0.1, 0.1, 4096).reshape(64, 64)
    x = np.linspace(0.0, 1.0, 4096).reshape(64, 64)
    t = np.tanh(x @ w)
    assert value == pytest.approx(np.sum(t ** 2), rel=1e-12)
    np.testing.assert_allclose(np.reshape(grad, w.shape), x.T @ (2 * t * (1 - t ** 2)),
                               rtol=1e-10, atol=1e-12)


def test_compiled_templates_are_kept_and_checked_against_their_source(tmp_path):
    # Jinja compiles a template to Python code on first load in a process (~10 ms for a
    # module's templates on every cold build); the code is kept, and an entry whose template
    # changed is compiled again, never used.
    import jinja2
    from symgrad import templates

    def env(cache):
        return jinja2.Environment(loader=jinja2.FileSystemLoader(str(tmp_path / "t")),
                                  bytecode_cache=cache)
    (tmp_path / "t").mkdir()
    (tmp_path / "t" / "a.j2").write_text("one {{ x }}")
    cache = templates._bytecode_cache(tmp_path / "bc")
    assert env(cache).get_template("a.j2").render(x=1) == "one 1"
    (entry,) = (tmp_path / "bc").iterdir()
    assert entry.name.startswith("jinja2-") and entry.stat().st_size > 0
    calls = []
    fresh = env(cache)
    compile_ = fresh.compile
    fresh.compile = lambda *a, **k: calls.append(a) or compile_(*a, **k)
    assert fresh.get_template("a.j2").render(x=2) == "one 2" and calls == [], "loaded, not compiled"
    (tmp_path / "t" / "a.j2").write_text("two {{ x }}")
    assert env(cache).get_template("a.j2").render(x=3) == "two 3"
    # A folder that cannot be made (a file is in the way) only costs the compile.
    (tmp_path / "file").write_text("")
    blocked = templates._bytecode_cache(tmp_path / "file" / "bc")
    assert env(blocked).get_template("a.j2").render(x=4) == "two 4"
    # symgrad's own environment keeps its templates beside them.
    assert templates.environment().bytecode_cache.directory == str(templates.BYTECODE_DIR)


FOLDS = """
    import json, sys
    import numpy as np
    import symgrad, symgrad.numpy as snp

    def loss(W, X):
        s = X @ W
        return snp.mean(snp.sum(s * s, axis=1)) + 1e-3 * snp.sum(W * W)

    r = np.random.default_rng(0)
    W, X = r.standard_normal((5, 3)), r.standard_normal((4, 5))
    v, g = symgrad.compile(loss, cache_dir=sys.argv[1]).value_and_grad(W, X)
    from symgrad.core.primitives import elementwise
    print(json.dumps({"value": float(v), "grad": g.tolist(), "sympy": "sympy" in sys.modules,
                      "numpy_functions": elementwise._lambdify.cache_info().currsize}))
"""


def test_a_cold_build_that_folds_constants_imports_no_sympy(tmp_path):
    # The mean's 1/N and the gradient's constants fold to literals (x/y and x**2 of constants),
    # evaluated by the functions the generated table keeps: sympy (~0.3 s of CPU) stays out.
    out = _run(FOLDS, str(tmp_path))
    assert out["numpy_functions"] >= 1 and out["sympy"] is False
    r = np.random.default_rng(0)
    W, X = r.standard_normal((5, 3)), r.standard_normal((4, 5))
    s = X @ W
    assert out["value"] == pytest.approx(np.mean(np.sum(s * s, axis=1)) + 1e-3 * np.sum(W * W),
                                         rel=1e-12)
    np.testing.assert_allclose(out["grad"], X.T @ (2 * s / 4) + 2e-3 * W, rtol=1e-12)
