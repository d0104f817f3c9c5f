"""User names reach C only mangled (issue 6): hostile function names, parameter names, file names
and source text cannot inject code into the generated C or an ahead-of-time build.

Each test compiles, checks the answer against NumPy, and scans the C: with comments and string
literals cut out (``code_outside_comments``), no hostile token may remain. Names that crash the
process or hang it today run in a subprocess, so the suite survives them; known bugs are
``xfail(strict=True)`` and turn into failures once fixed, to be flipped to plain tests.
"""
from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.tools.cli import main as cli_main

# Matched with all whitespace removed. A mangled name (symgrad_x___system__echo_pwned) keeps the
# words but loses the punctuation, so these patterns only match code that got through.
HOSTILE = ["evil(", "evil_dir(", "pwn(", "system(", "definesin", "echopwned"]


def code_outside_comments(c):
    """``c`` with comments and string/char literals removed, after C's line splicing (a
    backslash before a newline joins the lines, also inside a comment)."""
    c = c.replace("\\\n", "")
    out, i, n = [], 0, len(c)
    while i < n:
        if c.startswith("/*", i):
            end = c.find("*/", i + 2)
            i = n if end < 0 else end + 2
            out.append(" ")
        elif c.startswith("//", i):
            end = c.find("\n", i)
            i = n if end < 0 else end
        elif c[i] in "\"'":
            quote, i = c[i], i + 1
            while i < n and c[i] != quote:
                i += 2 if c[i] == "\\" else 1
            i += 1
            out.append('""')
        else:
            out.append(c[i])
            i += 1
    return "".join(out)


def assert_no_injection(c):
    code = re.sub(r"\s+", "", code_outside_comments(c))
    found = [t for t in HOSTILE if t in code]
    assert not found, f"hostile tokens {found} outside comments in:\n{code[:3000]}"


def test_the_scanner_sees_through_comments_and_splices():
    assert code_outside_comments('a /* x */ b // y\nc "s*/" d') == 'a   b \nc "" d'
    assert "evil" in code_outside_comments("/* x *\\\n/ int evil; /* */")
    assert "evil" not in code_outside_comments("/* x * / int evil; /* */")


def load(path, name="hostile_module"):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


SOURCE = textwrap.dedent('''
    import symgrad.numpy as snp

    def loss(x, y):
        s = "*/ int evil(void) { return 1; } /*"   # */ int evil2(void) { return 2; } /*
        return snp.sum(snp.sin(x) * y) + len(s) * snp.sum(x)  # */ #define sin cos /* ??/
''')


def _check_loss(module):
    f = symgrad.compile(module.loss)
    x, y = np.linspace(-1, 1, 5), np.linspace(0.5, 2, 5)
    n = len("*/ int evil(void) { return 1; } /*")
    value, grad = f.value_and_grad(x, y)
    assert value == pytest.approx(np.sum(np.sin(x) * y) + n * np.sum(x), rel=1e-13)
    np.testing.assert_allclose(grad, np.cos(x) * y + n, rtol=1e-13)
    assert_no_injection(f.source(x, y))


def test_source_lines_with_comment_terminators_stay_in_comments(tmp_path):
    path = tmp_path / "plain.py"
    path.write_text(SOURCE)
    _check_loss(load(path))


def test_hostile_file_and_directory_names(tmp_path):
    # A path can hold anything but NUL; only its last part may lack "/". The directory holds
    # "*\<newline>/", which a careless comment would splice into "*/".
    folder = tmp_path / "a*\\\n" / " int evil_dir(void) { return 1; } "
    folder.mkdir(parents=True)
    path = folder / "m* \\\n int pwn(void) { return 1; } '\" ??= λ main exp free.py"
    path.write_text(SOURCE)
    _check_loss(load(path))


# -- parameter names ------------------------------------------------------------------------------

# C keywords, libc/libm names, the generated code's own names (_ws, _status, _i, _i0, _data,
# _scratch_b, x_ptr, out, value, grad_x), IR names (a, b, b_a) and non-ASCII identifiers.
SAFE_PARAMS = ["int", "restrict", "ws", "status", "i", "i0", "a", "b", "b_a", "data", "main",
               "exp", "free", "malloc", "x", "grad_x", "λ", "value", "out", "double", "register",
               "inline", "_Bool", "bool", "true", "static_assert", "errno", "isnan", "size_t",
               "int64_t", "SYMGRAD_OK", "_", "_ws", "_status", "_i", "_i0", "_data",
               "_scratch_b", "x_ptr", "done"]


def test_hostile_parameter_names_are_mangled():
    params = ", ".join(SAFE_PARAMS)
    terms = " + ".join(f"({k + 1.0} * snp.sin({p}))" for k, p in enumerate(SAFE_PARAMS))
    ns = {"snp": snp}
    exec(f"def loss({params}):\n    return snp.sum(({terms}) * {SAFE_PARAMS[0]})\n", ns)
    argnums = tuple(range(len(SAFE_PARAMS)))
    f = symgrad.compile(ns["loss"], argnums=argnums)
    rng = np.random.default_rng(0)
    args = [rng.uniform(-1, 1, 3) for _ in SAFE_PARAMS]
    assert f(*args) == pytest.approx(ns["loss"](*args), rel=1e-13)
    assert symgrad.check_grad(f, *args, argnums=argnums).ok


_PROBE = textwrap.dedent("""
    import sys, numpy as np, symgrad, symgrad.numpy as snp
    name = sys.argv[1]
    ns = {"snp": snp}
    exec(f"def loss({name}, y):\\n    return snp.sum(snp.sin({name}) * y)\\n", ns)
    x, y = np.linspace(0.1, 0.9, 4), np.linspace(1.0, 2.0, 4)
    v, g = symgrad.compile(ns["loss"]).value_and_grad(x, y)
    assert abs(v - np.sum(np.sin(x) * y)) < 1e-12, v
    assert np.allclose(g, np.cos(x) * y)
    print("ok")
""")


def run_probe(name, tmp_path, timeout=60):
    """Compile a function with a parameter ``name`` in a fresh process (it may crash or hang)."""
    env = dict(__import__("os").environ, SYMGRAD_CACHE_DIR=str(tmp_path / "cache"))
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE, name], capture_output=True,
                             text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        pytest.fail(f"compiling a function with a parameter named {name!r} hung for {timeout} s")
    assert out.returncode == 0 and out.stdout.strip() == "ok", \
        f"parameter {name!r}: exit code {out.returncode}\n{out.stderr[-2000:]}"


# A parameter named like a macro from the headers the C includes (or a name C reserves) must be
# mangled: it was pasted into the C unmangled (a CompileError, or a segfault for HUGE_VAL).
MACRO_PARAMS = ["NULL", "INT64_MAX", "UINT8_MAX", "EXIT_SUCCESS", "EXIT_FAILURE", "RAND_MAX",
                "FP_NAN", "FP_INFINITE", "MATH_ERRNO", "math_errhandling", "__func__",
                "__LINE__", "_Pragma"]


@pytest.mark.parametrize("name", MACRO_PARAMS)
def test_parameter_named_like_a_c_macro(name):
    ns = {"snp": snp}
    exec(f"def loss({name}, y):\n    return snp.sum(snp.sin({name}) * y)\n", ns)
    x, y = np.linspace(0.1, 0.9, 4), np.linspace(1.0, 2.0, 4)
    value, grad = symgrad.compile(ns["loss"]).value_and_grad(x, y)
    assert value == pytest.approx(np.sum(np.sin(x) * y), rel=1e-13)
    np.testing.assert_allclose(grad, np.cos(x) * y, rtol=1e-13)


@pytest.mark.parametrize("name", ["HUGE_VAL", "MB_CUR_MAX"])
def test_parameter_named_like_a_function_macro_does_not_crash(name, tmp_path):
    run_probe(name, tmp_path)


def test_parameter_with_the_symgrad_prefix_does_not_hang(tmp_path):
    run_probe("symgrad_x", tmp_path, timeout=10)


# -- function names -------------------------------------------------------------------------------

def _named(name):
    def loss(x):
        return snp.sum(snp.sin(x) * x)
    loss.__name__ = loss.__qualname__ = name
    return loss


def _check_named(name):
    f = symgrad.compile(_named(name))
    x = np.linspace(-1, 1, 4)
    value, grad = f.value_and_grad(x)
    assert value == pytest.approx(np.sum(np.sin(x) * x), rel=1e-13)
    np.testing.assert_allclose(grad, np.cos(x) * x + np.sin(x), rtol=1e-13)
    assert_no_injection(f.source(x))


@pytest.mark.parametrize("name", ['x(); system("echo pwned"); //', "main", "exp", "free",
                                  "int", "λ ' \" ??/ \\", "symgrad"])
def test_hostile_function_names(name):
    _check_named(name)


@pytest.mark.parametrize("name", ["x */ int evil(void) { return 1; } /*",
                                  "x */\n#define sin cos\n/*"])
def test_function_name_cannot_close_a_comment(name):
    # the second one used to compile and silently compute with cos in place of sin
    _check_named(name)


# -- ahead-of-time builds -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ['x(); system("echo pwned"); //', "a b", "1x", "x-y",
                                  "x*/", "x\n"])
def test_export_rejects_names_that_are_not_identifiers(name):
    with pytest.raises(ValueError, match="not an identifier"):
        symgrad.export(_named("loss"), "f64[3]", name=name)


AOT_SPEC = textwrap.dedent('''
    import symgrad
    import symgrad.numpy as snp


    def loss(x, ws, status):   # */ int evil(void) { return 1; } /*
        s = "*/ int pwn(void) { return 1; } /*"
        return snp.sum(snp.sin(x) * ws) + snp.sum(status * x)


    for name in NAMES:
        symgrad.export(loss, "f64[N]", "f64[N]", "f64[N]", name=name)
''')

_AOT_CALLER = textwrap.dedent("""
    import sys, json
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import evil_spec
    x, w, s = np.linspace(-1, 1, 5), np.linspace(0.5, 2, 5), np.linspace(2, 3, 5)
    res = {}
    for name in json.loads(sys.argv[2]):
        v, g = getattr(evil_spec, name + "_value_and_grad")(x, w, s)
        res[name] = [float(v), g.tolist(), float(getattr(evil_spec, name)(x, w, s))]
    print(json.dumps(res))
""")


def build_and_call(names, tmp_path):
    """Build AOT_SPEC exporting ``names`` and call each export through the loader."""
    import json
    spec = tmp_path / "evil_spec.py"
    spec.write_text(AOT_SPEC.replace("NAMES", repr(tuple(names))))
    out = tmp_path / "out"
    assert cli_main(["build", str(spec), "-o", str(out), "--quiet"]) == 0
    assert_no_injection((out / "evil_spec.c").read_text())
    assert_no_injection((out / "evil_spec.h").read_text())
    run = subprocess.run([sys.executable, "-c", _AOT_CALLER, str(out), json.dumps(list(names))],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    x, w, s = np.linspace(-1, 1, 5), np.linspace(0.5, 2, 5), np.linspace(2, 3, 5)
    results = json.loads(run.stdout)
    assert sorted(results) == sorted(names)
    for name, (v, g, plain) in results.items():
        assert v == pytest.approx(np.sum(np.sin(x) * w) + np.sum(s * x), rel=1e-13), name
        assert plain == v
        np.testing.assert_allclose(g, np.cos(x) * w + s, rtol=1e-13)


def test_aot_build_with_hostile_names(tmp_path):
    # C's main, libm's exp, libc's free, a C keyword, a non-ASCII name: mangled in the C, and the
    # Python loader still offers them under the export names
    build_and_call(["main", "exp", "free", "restrict", "λ"], tmp_path)


# The loader used to define each export as a module global, so an export named like a name the
# loader itself used (np, tuple, len, _call) replaced it and every call failed.
@pytest.mark.parametrize("name", ["np", "tuple", "len", "_call"])
def test_aot_export_named_like_a_loader_global(name, tmp_path):
    build_and_call([name, "other"], tmp_path)


# -- names C, libm, the runtime and the linked libraries already use (issue 15) ----------------

# A parameter of a function whose C calls sin, cos, exp, sqrt, log, tanh and pow (sinf, ...
# in float32): named like one of them, it shadowed the function in C (a CompileError for sinf
# in float32 code, symgradrt_dgemm_par in a large product); offsetof broke cffi's parser.
C_TAKEN = ["int", "double", "char", "static", "switch", "restrict", "signed", "bool", "size_t",
           "sin", "cos", "exp", "pow", "sqrt", "log", "tanh", "I", "NAN", "INFINITY", "isnan",
           "offsetof", "main", "memcpy", "free", "symgradrt_entry", "symgradrt_parallel_for",
           "symgrad_x", "scipy_cblas_dgemm", "cblas_dgemm", "_x", "__y", "_X", "_i0", "_acc",
           "_status", "_ws"]
F32_TAKEN = ["sinf", "cosf", "expf", "powf", "sqrtf", "logf", "tanhf", "fabsf", "int", "_x",
             "symgradrt_entry"]


def _libm_loss(name):
    ns = {"snp": snp}
    exec(f"def loss({name}, q):\n"
         f"    return snp.sum(snp.exp(snp.sin({name}) * q) + snp.sqrt(q * q + 1.0)\n"
         f"                   + snp.log(q * q + 2.0) + {name} ** 3.5 + snp.tanh({name}))\n", ns)
    return ns["loss"]


def _libm_expected(p, q):
    """The value and the gradient of ``_libm_loss``, by hand in float64."""
    p, q = p.astype(np.float64), q.astype(np.float64)
    e = np.exp(np.sin(p) * q)
    value = np.sum(e + np.sqrt(q * q + 1) + np.log(q * q + 2) + p ** 3.5 + np.tanh(p))
    dp = e * np.cos(p) * q + 3.5 * p ** 2.5 + 1 - np.tanh(p) ** 2
    dq = e * np.sin(p) + q / np.sqrt(q * q + 1) + 2 * q / (q * q + 2)
    return value, dp, dq


@pytest.mark.parametrize("dtype, name", [("float64", n) for n in C_TAKEN]
                         + [("float32", n) for n in F32_TAKEN])
def test_parameter_named_like_a_c_library_or_runtime_name(dtype, name):
    p, q = np.linspace(0.1, 0.9, 5).astype(dtype), np.linspace(-1.0, 2.0, 5).astype(dtype)
    f = symgrad.compile(_libm_loss(name), argnums=(0, 1))
    value, (dp, dq) = f.value_and_grad(p, q)
    want, want_dp, want_dq = _libm_expected(p, q)
    rtol = 1e-13 if dtype == "float64" else 2e-5
    assert value == pytest.approx(want, rel=rtol)
    np.testing.assert_allclose(dp, want_dp, rtol=rtol)
    np.testing.assert_allclose(dq, want_dq, rtol=rtol)
    assert name not in c_parameters(f.source(p, q), "symgrad_loss")


def c_parameters(c, function):
    """The parameter names of ``function``'s first prototype in the C source ``c``."""
    prototype = code_outside_comments(c).split(f"{function}(", 1)[1].split(")", 1)[0]
    return [re.findall(r"\w+", p)[-1] for p in prototype.split(",")]


def test_parameters_named_like_the_parallel_runtime_in_a_threaded_product():
    # A product this large runs on the runtime's threads (symgradrt_parallel_for, and the
    # BLAS gemm through symgradrt_dgemm_par): parameters named so shadowed them.
    def loss(symgradrt_parallel_for, symgradrt_dgemm_par):
        return snp.sum(snp.tanh(symgradrt_parallel_for @ symgradrt_dgemm_par))
    rng = np.random.default_rng(1)
    a, b = rng.uniform(-0.1, 0.1, (300, 300)), rng.uniform(-0.1, 0.1, (300, 300))
    f = symgrad.compile(loss, argnums=(0, 1))
    assert "symgradrt_parallel_for(" in f.source(a, b)
    value, (da, db) = f.value_and_grad(a, b)
    t = 1 - np.tanh(a @ b) ** 2
    assert value == pytest.approx(np.sum(np.tanh(a @ b)), rel=1e-12)
    np.testing.assert_allclose(da, t @ b.T, rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(db, a.T @ t, rtol=1e-10, atol=1e-13)


_TAKEN_SPEC = textwrap.dedent('''
    import symgrad
    import symgrad.numpy as snp


    def loss(int, sinf, symgradrt_entry, _x, offsetof):
        return snp.sum(snp.sin(int) * sinf + snp.exp(symgradrt_entry) * _x
                       + snp.sqrt(offsetof))


    symgrad.export(loss, *["f32[K]"] * 5, argnums=(0, 1, 2, 3, 4))
''')

_TAKEN_CALLER = textwrap.dedent("""
    import sys, json
    import numpy as np
    sys.path.insert(0, sys.argv[1])
    import taken_spec
    args = [(np.linspace(0.1, 0.9, 4) + k).astype(np.float32) for k in range(5)]
    value, grads = taken_spec.loss_value_and_grad(*args)
    print(json.dumps([float(taken_spec.loss(*args)), float(value),
                      [g.astype(float).tolist() for g in grads]]))
""")


def test_aot_build_with_parameters_named_like_c_library_or_runtime_names(tmp_path):
    import json
    spec = tmp_path / "taken_spec.py"
    spec.write_text(_TAKEN_SPEC)
    out = tmp_path / "out"
    assert cli_main(["build", str(spec), "-o", str(out), "--quiet"]) == 0
    header = (out / "taken_spec.h").read_text()
    user = ["int", "sinf", "symgradrt_entry", "_x", "offsetof"]
    # the header documents the user's names; the prototype takes C names
    assert "loss(int: f32[K], sinf: f32[K], symgradrt_entry: f32[K], _x: f32[K], " \
           "offsetof: f32[K])" in header
    assert c_parameters(header, "int loss") == ["K", "int_", "sinf_", "vsymgradrt_entry", "v_x",
                                                "offsetof_", "out"]
    manifest = json.loads((out / "taken_spec.json").read_text())
    assert [a["name"] for a in manifest["exports"][0]["arguments"]] == user
    run = subprocess.run([sys.executable, "-c", _TAKEN_CALLER, str(out)], capture_output=True,
                         text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    plain, value, grads = json.loads(run.stdout)
    a = [(np.linspace(0.1, 0.9, 4) + k).astype(np.float32).astype(float) for k in range(5)]
    want = np.sum(np.sin(a[0]) * a[1] + np.exp(a[2]) * a[3] + np.sqrt(a[4]))
    assert plain == value == pytest.approx(want, rel=2e-6)
    expected = [np.cos(a[0]) * a[1], np.sin(a[0]), np.exp(a[2]) * a[3], np.exp(a[2]),
                0.5 / np.sqrt(a[4])]
    for got, exp_ in zip(grads, expected):
        np.testing.assert_allclose(got, exp_, rtol=2e-5)


def test_keyword_arguments_named_like_c_and_python_keywords():
    # Python keywords reach the graph only as ** keyword names; they are IR names like any other.
    def loss(x, **kw):
        return snp.sum(snp.sin(x) * kw["for"] + kw["int"] * kw["while"])
    x = np.linspace(0.1, 0.9, 3)
    kw = {"for": x + 1.0, "int": x * 2.0, "while": x - 3.0}
    f = symgrad.compile(loss)
    value, grad = f.value_and_grad(x, **kw)
    assert value == pytest.approx(np.sum(np.sin(x) * kw["for"] + kw["int"] * kw["while"]),
                                  rel=1e-13)
    np.testing.assert_allclose(grad, np.cos(x) * kw["for"], rtol=1e-13)
    assert c_parameters(f.source(x, **kw), "symgrad_loss") == ["x", "for_", "int_", "while_",
                                                               "out"]
