"""The C backend: generated source (golden snapshots), compiling, the cache, errors, calling."""
import functools
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.backends.c import compiler
from symgrad.backends.c.cache import Cache

import golden_functions as gf

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("SYMGRAD_UPDATE_GOLDEN") == "1"

CASES = {
    "add_mul": (gf.add_mul, (-2.0, 5.0, -4.0), (0, 1, 2)),
    "neuron": (gf.neuron, (np.array([2.0, -3.0, -3.0]), np.array([-1.0, -2.0])), (0, 1)),
    "rowmax_loss": (gf.rowmax_loss, (np.ones((3, 2)), np.array([0.5, -1.0])), (0, 1)),
    "pick": (gf.pick, (np.zeros((4, 3)), np.array([0, 2, 1, 2])), 0),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_c(name):
    """The generated C is pinned: a change to codegen shows up here as a diff."""
    fn, args, argnums = CASES[name]
    source = symgrad.compile(fn, argnums=argnums).source(*args)
    path = GOLDEN / f"{name}.c"
    if UPDATE or not path.exists():
        path.write_text(source)
    assert source == path.read_text(), (
        f"generated C for {name} changed; if intended, rerun with SYMGRAD_UPDATE_GOLDEN=1 and "
        f"review the diff of {path}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_golden_functions_native_equals_interpreter(name):
    fn, args, argnums = CASES[name]
    native = symgrad.compile(fn, argnums=argnums)
    interp = symgrad.compile(fn, argnums=argnums, backend="interp")
    v1, g1 = native.value_and_grad(*args)
    v2, g2 = interp.value_and_grad(*args)
    assert v1 == pytest.approx(v2, rel=1e-12)
    for a, b in zip(np.atleast_1d(g1) if isinstance(argnums, int) else g1,
                    np.atleast_1d(g2) if isinstance(argnums, int) else g2):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-300)


def test_add_mul_source_reads_like_the_math():
    src = symgrad.compile(gf.add_mul, argnums=(0, 1, 2)).source(-2.0, 5.0, -4.0)
    assert "const double a = x + y;" in src
    assert "const double b = a*z;" in src
    assert "*grad_x = z;" in src and "*grad_z = a;" in src


# --- C a C programmer reads without a decoder (issue 15) -----------------------------------------

def _function_bodies(src):
    """The body of every C function in ``src`` (between its opening and closing brace)."""
    return re.findall(r"^int \w+\([^)]*\)\n\{\n(.*?)^\}$", src, re.MULTILINE | re.DOTALL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_block_is_commented_with_its_statements(name):
    """Blocks are separated by blank lines: after the prologue, each one up to the epilogue
    opens with a comment naming IR statements and a user line."""
    fn, args, argnums = CASES[name]
    src = symgrad.compile(fn, argnums=argnums).source(*args)
    bodies = _function_bodies(src)
    assert len(bodies) == 2
    for body in bodies:
        chunks = body.rstrip("\n").split("\n\n")
        assert len(chunks) >= 3
        for chunk in chunks[1:-1]:
            comment = chunk.strip().split("*/")[0]
            assert comment.startswith("/* ") and " = " in comment \
                and "golden_functions.py:" in comment, chunk


def test_comments_quote_statements_as_the_ir_printer_writes_them():
    f = symgrad.compile(gf.rowmax_loss, argnums=(0, 1))
    src = f.source(np.ones((3, 2)), np.array([0.5, -1.0]))
    # a = reshape b has no code (the product reads b): it is named where it is first read
    assert ("/* a = reshape[shape=(2, 1)] b   golden_functions.py:18: scores = A @ b\n"
            "     * c = matmul A a                golden_functions.py:18 */") in src
    assert "/* grad of: c = matmul A a   golden_functions.py:18: scores = A @ b */" in src
    # a fused loop: one statement a line, the user's source text once per line of Python
    assert ("/* d = reshape[shape=(3,)] c     golden_functions.py:18: scores = A @ b\n"
            "     * e = maximum d 0.0             golden_functions.py:19: return snp.sum("
            "snp.maximum(scores, 0.0) ** 2)\n     * f = square e                  "
            "golden_functions.py:19\n") in src


def test_ir_names_are_c_names_even_where_kernels_have_locals():
    """Parameters named like the loop indices and locals kernels used to declare (i, j, p,
    acc, ...) keep their names in C, in a matrix product, a reduction, a gather, a loop."""
    def f(i, j, p, acc, base, ws, status, data, idx):
        y = (i @ j) * p + acc
        z = snp.sum(snp.max(y, axis=1) ** 2) + snp.sum(base[idx] * ws) + status
        return z * snp.sum(data)
    args = [np.arange(6.0).reshape(2, 3) / 7, np.arange(12.0).reshape(3, 4) / 5,
            np.linspace(-1, 1, 4), np.linspace(0, 1, 4), np.arange(5.0), np.linspace(1, 2, 3),
            0.25, np.array([1.0, -2.0]), np.array([4, 0, 2])]
    cf = symgrad.compile(f, argnums=(0, 1, 2, 3, 4, 5, 6, 7))
    src = cf.source(*args)
    names = ["i", "j", "p", "acc", "base", "ws", "data", "idx"]
    signature = re.search(r"int symgrad_f_value_and_grad\(([^)]*)\)", src).group(1)
    for name in names:
        assert re.search(rf"\*restrict {name}\b", signature), name
        assert f"grad_{name}" in signature or name == "idx"
    assert "status_ptr" in signature
    assert not re.search(r"\b(i|j|p|acc|base|ws|status|data|idx)_\b", src)
    want = f(*args)
    assert cf(*args) == pytest.approx(want, rel=1e-13)
    assert symgrad.check_grad(cf, *args, argnums=(0, 1, 2, 3, 4, 5, 6, 7)).ok


def test_scalar_parameter_beside_one_named_like_its_pointer():
    """A scalar ``x`` is passed as ``x_ptr``; a parameter called ``x_ptr`` keeps its name and
    the pointer gives way."""
    def f(x, x_ptr):
        return x * 3.0 + x_ptr * x_ptr
    cf = symgrad.compile(f, argnums=(0, 1))
    src = cf.source(2.0, 5.0)
    assert "const double x = *x_ptr_;" in src and "const double x_ptr = *x_ptr_ptr;" in src
    assert cf(2.0, 5.0) == 31.0
    assert cf.grad(2.0, 5.0) == (3.0, 10.0)


def test_no_loops_of_one_and_square_is_a_product():
    """A matrix-vector product has no ``j < 1`` loop, a length-1 axis gets no loop, a gather of
    one element per index no ``r < 1`` loop; ``x ** 2`` is ``x*x``."""
    def f(A, b, c, labels):
        return snp.sum((A @ b) ** 2) + snp.sum(c[labels] ** 2) + snp.sum((A[:1] @ b) * 2.0)
    args = (np.ones((3, 2)), np.array([0.5, -1.0]), np.arange(4.0), np.array([0, 3]))
    cf = symgrad.compile(f, argnums=(0, 1, 2))
    src = cf.source(*args)
    code = "\n".join(line for line in src.splitlines() if not line.strip().startswith(("/*", "*")))
    assert not re.search(r"< 1;", code)
    assert not re.search(r"const int64_t \w+ = 0;", code)   # no stand-in for a loop of one
    assert "pow(" not in code
    assert symgrad.check_grad(cf, *args, argnums=(0, 1, 2)).ok


def test_adjoint_blocks_name_the_statement_and_line():
    src = symgrad.compile(gf.pick).source(np.zeros((4, 3)), np.array([0, 2, 1, 2]))
    assert "/* grad of: " in src
    assert "golden_functions.py:" in src
    assert "restrict" in src


def test_elementwise_chain_fuses_into_one_loop():
    def chain(x):
        return snp.sum(snp.exp(snp.sin(x) * 2.0 + 1.0))
    import symgrad.numpy as snp
    src = symgrad.compile(chain).source(np.ones(100))
    forward = src.split("_value_and_grad")[0]
    # one loop, summing in 8 lanes (backends/c/lanes.py), and its remainder
    assert forward.count("for (int64_t _blk = 0; _blk + 8 <= 100;") == 1
    assert forward.count("for (int64_t _i = 100 - 100 % 8; _i < 100; ++_i)") == 1
    assert "for (int64_t _i = 0; _i < 100; ++_i)" not in forward


def test_a_very_long_elementwise_chain_is_split_into_bounded_loops():
    # One loop body is one basic block to gcc, whose cost grows faster than the block: a chain
    # longer than FUSED_MAX statements becomes several loops, values crossing in arrays.
    from symgrad.backends.c.codegen import FUSED_MAX

    def long_chain(x, w):
        # straight-line code (functools.reduce is not converted into a C loop, as a for is):
        # 3 statements a step, 360 in the forward loop
        x = functools.reduce(lambda x, i: snp.sin(x) * w[i % 3] + 0.1, range(120), x)
        return snp.sum(x)
    x, w = np.linspace(-1.0, 1.0, 16), np.array([0.9, 1.1, 0.7])
    cf = symgrad.compile(long_chain, argnums=(0, 1))
    forward = cf.source(x, w).split("_value_and_grad")[0]
    bodies = re.findall(r"for \(int64_t _i = 0; _i < 16; \+\+_i\) \{\n(.*?)\n    \}", forward,
                        re.S)
    statements = [body.count(";") for body in bodies]
    assert sum(statements) > FUSED_MAX >= max(statements)
    value, _ = cf.value_and_grad(x, w)
    expected = x
    for i in range(120):
        expected = np.sin(expected) * w[i % 3] + 0.1
    assert value == pytest.approx(expected.sum(), rel=1e-13)
    assert symgrad.check_grad(cf, x, w, argnums=(0, 1)).ok


def test_value_and_gradient_match_interpreter_on_noncontiguous_inputs():
    f = symgrad.compile(gf.rowmax_loss, argnums=(0, 1))
    A = np.asfortranarray(np.arange(6.0).reshape(3, 2) - 2.5)
    b = np.array([0.5, 9.0, -1.0])[::2]
    v, (dA, db) = f.value_and_grad(A, b)
    vi, (dAi, dbi) = symgrad.compile(gf.rowmax_loss, argnums=(0, 1),
                                     backend="interp").value_and_grad(A, b)
    assert v == pytest.approx(vi, rel=1e-14)
    np.testing.assert_allclose(dA, dAi, rtol=1e-14)
    np.testing.assert_allclose(db, dbi, rtol=1e-14)


def test_outputs_are_fresh_arrays():
    f = symgrad.compile(lambda x: x * 1.0)
    x = np.arange(3.0)
    y = f(x)
    assert not np.shares_memory(x, y)
    y[0] = 100.0
    assert x[0] == 0.0


def test_index_argument_out_of_range_is_rejected_before_native_code():
    f = symgrad.compile(gf.pick)
    before = compiler.invocations()
    f(np.zeros((4, 3)), np.array([0, 1, 2, 0]))     # compiles once
    assert compiler.invocations() - before <= 1
    with pytest.raises(IndexError, match=r"index 3 .*axis 1 with size 3"):
        f(np.zeros((4, 3)), np.array([0, 3, 1, 0]))
    with pytest.raises(IndexError, match="out of bounds"):
        f.grad(np.zeros((4, 3)), np.array([0, 1, -4, 0]))


def test_computed_index_out_of_range_is_caught_by_the_generated_code():
    import symgrad.numpy as snp

    def shifted(x, i):
        return snp.sum(x[i + 1])
    f = symgrad.compile(shifted)
    assert f(np.arange(4.0), np.array([0, 2])) == 4.0
    with pytest.raises(IndexError, match="out of bounds"):
        f(np.arange(4.0), np.array([0, 3]))


def test_compile_error_carries_command_stderr_and_source(tmp_path):
    f = symgrad.compile(gf.add_mul, cflags=["-O2", "--no-such-flag-for-symgrad"],
                        cache_dir=tmp_path)
    with pytest.raises(symgrad.CompileError) as info:
        f(1.0, 2.0, 3.0)
    err = info.value
    assert "--no-such-flag-for-symgrad" in err.command
    assert "no-such-flag-for-symgrad" in err.stderr
    assert Path(err.source_path).is_file()
    assert "int symgrad_add_mul(" in Path(err.source_path).read_text()


def test_cache_entry_has_source_library_and_manifest(tmp_path):
    f = symgrad.compile(gf.add_mul, cache_dir=tmp_path)
    assert f(1.0, 2.0, 3.0) == 9.0
    (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    manifest = json.loads((entry / "manifest.json").read_text())
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        ["manifest.json", "module.c", manifest["library"]])
    assert manifest["library"].endswith(".so")
    assert manifest["symgrad_version"] == symgrad.__version__
    # A first value builds the value-and-gradient function beside it (native.py says why).
    assert manifest["functions"] == ["symgrad_add_mul", "symgrad_add_mul_value_and_grad"]
    before = compiler.invocations()
    assert f.value_and_grad(1.0, 2.0, 3.0) == (9.0, 3.0)
    assert compiler.invocations() == before
    # add_mul computes scalars only: straight-line code, built at -O1 (compiler.py says why).
    assert "-O1" in manifest["flags"] and "-O2" not in manifest["flags"]


def _entries(cache_dir):
    """``{function names: the C source}`` of every library in ``cache_dir``."""
    out = {}
    for entry in Path(cache_dir).iterdir():
        if (entry / "manifest.json").is_file():
            manifest = json.loads((entry / "manifest.json").read_text())
            out[tuple(manifest["functions"])] = (entry / "module.c").read_text()
    return out


def test_each_function_is_compiled_when_first_called(tmp_path):
    def sq(x, y):
        return snp.sum((x + y) * x)
    f = symgrad.compile(sq, cache_dir=tmp_path)
    x = np.array([1.0, -2.0])
    before = compiler.invocations()
    value, grad = f.value_and_grad(x, 2.0)
    # The first call compiles the value-and-gradient function alone.
    assert compiler.invocations() == before + 1
    assert list(_entries(tmp_path)) == [("symgrad_sq_value_and_grad",)]
    (source,) = _entries(tmp_path).values()
    assert "int symgrad_sq_value_and_grad(" in source and "int symgrad_sq(" not in source
    assert value == 3.0
    np.testing.assert_array_equal(grad, 2 * x + 2.0)
    # The value function: built when first asked for, into a library of its own.
    assert f(x, 2.0) == 3.0
    assert compiler.invocations() == before + 2
    assert sorted(_entries(tmp_path)) == [("symgrad_sq",), ("symgrad_sq_value_and_grad",)]
    # Another function object over the same cache finds both.
    again = symgrad.compile(sq, cache_dir=tmp_path)
    assert again(x, 2.0) == 3.0
    np.testing.assert_array_equal(again.grad(x, 2.0), 2 * x + 2.0)
    assert compiler.invocations() == before + 2


def test_a_first_gradient_finds_the_library_a_first_value_built(tmp_path):
    def sq(x, y):
        return snp.sum((x + y) * x)
    x = np.array([1.0, -2.0])
    assert symgrad.compile(sq, cache_dir=tmp_path)(x, 2.0) == 3.0      # builds both
    before = compiler.invocations()
    value, grad = symgrad.compile(sq, cache_dir=tmp_path).value_and_grad(x, 2.0)
    assert compiler.invocations() == before
    assert value == 3.0
    np.testing.assert_array_equal(grad, 2 * x + 2.0)
    assert list(_entries(tmp_path)) == [("symgrad_sq", "symgrad_sq_value_and_grad")]


def test_array_code_is_built_at_O2_and_straight_line_code_at_O1(tmp_path):
    def flags_of(f, *args):
        f(*args)
        entry = f.specialize(*args)[0].executable().library_path.parent
        return json.loads((entry / "manifest.json").read_text())["flags"]
    assert "-O2" in flags_of(symgrad.compile(lambda x: snp.sum(x * x), cache_dir=tmp_path),
                             np.ones(3))
    assert "-O1" in flags_of(symgrad.compile(lambda x, y: x * y + 1.0, cache_dir=tmp_path),
                             2.0, 3.0)
    loop = symgrad.compile(lambda x: symgrad.fori_loop(0, 3, lambda i, c: c * x, x),
                           cache_dir=tmp_path)
    assert "-O2" in flags_of(loop, 2.0)                # a loop is not straight-line code
    custom = symgrad.compile(lambda x, y: x * y, cache_dir=tmp_path, cflags=["-O2"])
    assert "-O2" in flags_of(custom, 2.0, 3.0)         # the user's flags win


def test_memory_hit_does_not_retrace(tmp_path):
    f = symgrad.compile(gf.add_mul, cache_dir=tmp_path)
    f(1.0, 2.0, 3.0)
    spec = f.specialize(1.0, 2.0, 3.0)[0]
    exe = spec.executable()
    before = compiler.invocations()
    f(4.0, 5.0, 6.0)
    assert f.specialize(4.0, 5.0, 6.0)[0] is spec and spec.executable() is exe
    assert compiler.invocations() == before


def test_corrupted_library_is_rebuilt_not_loaded(tmp_path):
    f = symgrad.compile(gf.add_mul, cache_dir=tmp_path)
    f(1.0, 2.0, 3.0)
    (entry,) = [p for p in tmp_path.iterdir() if not p.name.startswith(".")]
    manifest = json.loads((entry / "manifest.json").read_text())
    broken = entry / "broken.tmp"
    broken.write_bytes(b"not a library")
    os.replace(broken, entry / manifest["library"])   # a new file: the loaded one stays mapped
    before = compiler.invocations()
    g = symgrad.compile(gf.add_mul, cache_dir=tmp_path)
    assert g(1.0, 2.0, 3.0) == 9.0
    assert compiler.invocations() == before + 1


_SCRIPT = textwrap.dedent("""
    import sys, numpy as np, symgrad
    sys.path.insert(0, {tests!r})
    import golden_functions as gf
    from symgrad.backends.c import compiler
    f = symgrad.compile(gf.pick, cflags={cflags!r})
    v, g = f.value_and_grad(np.zeros((4, 3)), np.array([0, 2, 1, 2]))
    print(compiler.invocations(), repr(v))
""")


def _run(cache, cflags=None):
    script = _SCRIPT.format(tests=str(Path(__file__).parent), cflags=cflags)
    env = dict(os.environ, SYMGRAD_CACHE_DIR=str(cache))
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                         check=True)
    count, value = out.stdout.split()
    return int(count), float(value)


def test_disk_cache_serves_a_new_process_without_compiling(tmp_path):
    first = _run(tmp_path)
    second = _run(tmp_path)
    assert first[0] == 1
    assert second[0] == 0
    assert first[1] == second[1] == pytest.approx(np.log(3.0))


def test_changed_flags_miss_the_cache(tmp_path):
    assert _run(tmp_path)[0] == 1
    assert _run(tmp_path, ["-O2"])[0] == 1
    assert _run(tmp_path, ["-O2"])[0] == 0
    assert len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2


def test_cache_lookup_rejects_manifest_for_another_key(tmp_path):
    cache = Cache(tmp_path)
    lib = cache.build("a" * 64, "int f(void) { return 1; }\n",
                      lambda src, lib: compiler.compile_library(src, lib), {})
    assert cache.lookup("a" * 64) == lib
    manifest = json.loads((lib.parent / "manifest.json").read_text())
    manifest["key"] = "b" * 64
    (lib.parent / "manifest.json").write_text(json.dumps(manifest))
    assert cache.lookup("a" * 64) is None


def test_float32_specialization_computes_in_float32():
    import symgrad.numpy as snp

    def f(x):
        return snp.sum(snp.tanh(x) ** 2)
    cf = symgrad.compile(f)
    x = np.linspace(-1, 1, 7).astype(np.float32)
    v, g = cf.value_and_grad(x)
    assert g.dtype == np.float32
    assert "float" in cf.source(x) and "tanhf(" in cf.source(x)
    np.testing.assert_allclose(g, 2 * np.tanh(x) * (1 - np.tanh(x) ** 2), rtol=1e-5)


def test_compiler_arguments_in_cc_are_part_of_the_cache_key():
    # CC="gcc -fsanitize=address" must not share cache entries with plain gcc: an instrumented
    # library loaded into a process without the sanitizer runtime fails to load or crashes.
    plain = compiler.compiler_identity("gcc")
    assert compiler.compiler_identity("gcc -fsanitize=address") != plain


def test_a_constant_of_one_repeated_value_is_read_as_that_value():
    # The gradient's seed, 1.0 broadcast to x's shape and folded, and a constant closed over,
    # are read by the loops as one literal: no array of them in the C, no loop copying one.
    two_and_a_half = np.full(5, 2.5)
    f = symgrad.compile(lambda x: snp.sum(x ** 2 * two_and_a_half))
    x = np.linspace(-1.0, 1.0, 5)
    source = f.source(x)
    assert "_data[" not in source and "2.5" in source
    value, grad = f.value_and_grad(x)
    assert value == pytest.approx(np.sum(x ** 2 * 2.5), rel=1e-15)
    np.testing.assert_array_equal(grad, 5.0 * x)
    # Equal by value is not enough: 0.0 and -0.0 differ in their sign bits.
    signed_zeros = np.array([0.0, -0.0, 0.0])
    g = symgrad.compile(lambda x: x * signed_zeros, argnums=())
    assert "_data[" in g.source(np.ones(3))
    np.testing.assert_array_equal(np.signbit(g(np.ones(3))), [False, True, False])


def _loop_after(source, pattern):
    """The two lines before the innermost ``for`` of the first loop whose body matches
    ``pattern`` (a regular expression over one line of C), and that ``for``."""
    lines = source.splitlines()
    at = next(k for k, line in enumerate(lines) if re.search(pattern, line))
    loop = max(k for k in range(at) if lines[k].lstrip().startswith("for ("))
    return lines[loop - 1].strip(), lines[loop].strip()


def test_elementwise_loops_promise_the_compiler_their_iterations_are_independent():
    # SYMGRAD_IVDEP before the innermost loop of an elementwise loop: gcc's very-cheap cost
    # model vectorises no loop needing a run-time overlap check, and in a large function gcc
    # may no longer tell the workspace's restrict pointers apart (W5's ReLU stayed scalar).
    X, b = np.ones((6, 12)), np.ones(12)
    source = symgrad.compile(lambda X, b: snp.maximum(X + b, 0.0), argnums=()).source(X, b)
    assert "#define SYMGRAD_IVDEP _Pragma(\"GCC ivdep\")" in source
    before, loop = _loop_after(source, r"= \(\(b\[|>= 0\.0")
    assert before == "SYMGRAD_IVDEP" and loop.startswith("for (int64_t _i1 = 0; _i1 < 12;")

    # A sum over the rows adds into one element per column: each iteration its own element.
    cols = symgrad.compile(lambda X: snp.sum(X * X, axis=0), argnums=()).source(X)
    assert _loop_after(cols, r"\+= ")[0] == "SYMGRAD_IVDEP"
    # A sum along the rows adds every iteration of the inner loop into one element, and a sum
    # to a scalar is a chain of adds whose order the compiler must keep: no promise.
    rows = symgrad.compile(lambda X: snp.sum(X * X, axis=1), argnums=()).source(X)
    assert _loop_after(rows, r"\+= ")[0] != "SYMGRAD_IVDEP"
    whole = symgrad.compile(lambda x: snp.sum(snp.sin(x) * x), argnums=()).source(np.ones(5))
    assert "SYMGRAD_IVDEP" not in whole
    # Too short for a vector: no pragma, and no macro.
    short = symgrad.compile(lambda x: snp.sin(x) * x, argnums=()).source(np.ones(3))
    assert "SYMGRAD_IVDEP" not in short
