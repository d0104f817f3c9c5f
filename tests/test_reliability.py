"""Reliability of the C backend (issue 6): argument checking and conversion before native code
runs, NaN and inf, the on-disk cache under concurrency, corruption and hostile or broken
directories, a missing compiler, threads and the GIL, and the generated C under ASan/UBSan."""
import errno
import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.backends.c import cache as cache_mod
from symgrad.backends.c import compiler
from symgrad.backends.c.cache import Cache


def dot_loss(x, y):
    return snp.sum(x * y)


def mat_loss(A, b):
    return snp.sum(snp.tanh(A @ b)) + snp.max(A) * snp.sum(b)


def scaled(x, s):
    return snp.sum(x * s)


def entries(root):
    """The cache entries (not hidden build or trash directories, not failed builds)."""
    return [p for p in Path(root).iterdir() if not p.name.startswith((".", "failed-"))]


# -- arguments: arity, shapes, signatures ---------------------------------------------------------

def test_wrong_number_of_arguments_is_a_type_error_before_any_compile(tmp_path):
    f = symgrad.compile(dot_loss, cache_dir=tmp_path)
    before = compiler.invocations()
    with pytest.raises(TypeError, match=r"dot_loss\(\) takes 2 positional arguments but 1 were"):
        f(np.ones(3))
    with pytest.raises(TypeError, match="but 3 were given"):
        f.grad(np.ones(3), np.ones(3), np.ones(3))
    assert compiler.invocations() == before


def test_a_new_shape_is_a_new_specialization_without_a_signature(tmp_path):
    f = symgrad.compile(dot_loss, cache_dir=tmp_path)
    assert f(np.arange(3.0), np.ones(3)) == 3.0
    assert f(np.arange(4.0), np.ones(4)) == 6.0
    assert len(f._specs) == 2


def test_signature_mismatches_are_errors_naming_the_argument():
    sig = {"W": "f64[3,2]", "X": "f64[N,3]", "y": "i64[N]"}

    def loss(W, X, y):
        return snp.sum((X @ W)[snp.arange(X.shape[0]), y])
    f = symgrad.compile(loss, signature=sig)
    W, X, y = np.ones((3, 2)), np.ones((4, 3)), np.array([0, 1, 0, 1])
    assert f(W, X, y) == 12.0
    with pytest.raises(symgrad.ShapeError, match=r"'W' has shape \(2, 3\).*f64\[3,2\]"):
        f(W.T, X, y)
    with pytest.raises(symgrad.ShapeError, match=r"'X' has shape \(4, 3, 1\)"):
        f(W, X[..., None], y)
    with pytest.raises(symgrad.ShapeError, match=r"'y'.*N = 3.*'X' set N = 4"):
        f(W, X, y[:3])
    with pytest.raises(symgrad.DTypeError, match=r"'y' has dtype float64.*i64\[N\]"):
        f(W, X, y.astype(float))


def test_signature_makes_same_kind_casts():
    f = symgrad.compile(scaled, signature={"x": "f32[3]", "s": "f64[]"})
    value, grad = f.value_and_grad([1, 2, 3], 2)          # ints become the declared floats
    assert value == 12.0 and grad.dtype == np.float32
    np.testing.assert_array_equal(grad, np.float32([2, 2, 2]))
    assert f.trace(np.ones(3), 1.0).inputs[0].type.dtype == "float32"


# -- arguments: dtypes ----------------------------------------------------------------------------

@pytest.mark.parametrize("y", [
    np.arange(6, dtype=np.uint8), np.arange(6, dtype=np.int16), np.arange(6, dtype=np.uint64),
    np.arange(6, dtype=np.int32), np.ones(6, dtype=bool), np.arange(6, dtype=np.float16),
    np.arange(6, dtype=np.longdouble), np.arange(6.0).astype(">f8"), np.arange(6).astype(">i4"),
    [0, 1, 2, 3, 4, 5], 3, np.int8(3), np.float32(3), np.array(3),
], ids=lambda y: getattr(y, "dtype", type(y).__name__).__str__())
def test_safe_casts_compute_what_numpy_computes(y, tmp_path):
    x = np.linspace(-1, 1, 6)
    f = symgrad.compile(dot_loss, cache_dir=tmp_path)
    expected = np.sum(x * np.asarray(y).astype(np.float64))
    assert f(x, y) == pytest.approx(expected, rel=1e-15)
    np.testing.assert_array_equal(f.grad(x, y), np.broadcast_to(np.asarray(y, float), (6,)))


def test_none_is_an_empty_pytree_passed_as_it_is():
    """API.md §6 (as in JAX): None is an empty subtree, not an array to convert."""
    f = symgrad.compile(lambda x, y: snp.sum(x) if y is None else snp.sum(x * y))
    assert f(np.ones(6), None) == 6.0 and f(np.ones(6), 2.0) == 12.0


@pytest.mark.parametrize("y", [np.ones(6) + 1j, 2j], ids=["complex", "pycomplex"])
def test_complex_inputs_are_data_symgrad_computes_with(y):
    """Complex arguments are no longer refused (docs/complex.md): the value is NumPy's."""
    f = symgrad.compile(dot_loss)
    x = np.linspace(-1, 1, 6) + 0.5
    assert f(x, y) == pytest.approx(complex(np.sum(x * np.asarray(y))), rel=1e-15)


@pytest.mark.parametrize("y, error, words", [
    (np.array(["a"] * 6), symgrad.DTypeError, "dtype <U1"),
    ("abc", symgrad.DTypeError, "dtype <U3"),
    (b"abcdef", symgrad.DTypeError, "dtype |S6"),
    (np.arange(6).astype("datetime64[s]"), symgrad.DTypeError, "datetime64"),
    (np.zeros(6, dtype=[("a", "f8")]), symgrad.DTypeError, "dtype"),
    (np.arange(6, dtype=object), TypeError, "numeric array"),
    ([[1.0, 2.0], [3.0]], TypeError, "ragged"),
], ids=["str", "pystr", "bytes", "datetime", "struct", "object", "ragged"])
def test_unsafe_inputs_raise_naming_the_argument(y, error, words):
    f = symgrad.compile(dot_loss)
    before = compiler.invocations()
    with pytest.raises(error) as info:
        f(np.ones(6), y)
    assert "dot_loss: argument 1 ('y')" in str(info.value) and words in str(info.value)
    assert compiler.invocations() == before


def test_unsigned_values_too_big_for_int64_are_refused_not_wrapped():
    f = symgrad.compile(dot_loss)
    with pytest.raises(OverflowError, match=r"argument 1 \('y'\) holds 9223372036854775808"):
        f(np.ones(2), np.array([1, 2**63], dtype=np.uint64))


def test_integer_data_is_not_differentiated():
    with pytest.raises(ValueError, match=r"argument 0 \('x'\): it is int64 data"):
        symgrad.compile(dot_loss).grad(np.arange(3), np.ones(3))


# -- arguments: layouts ---------------------------------------------------------------------------

def _misaligned(a):
    """A C-contiguous copy of ``a`` that starts one byte into a uint8 buffer."""
    buf = np.zeros(a.nbytes + 1, dtype=np.uint8)
    out = buf[1:].view(a.dtype).reshape(a.shape)
    out[...] = a
    assert not out.flags.aligned and out.flags.c_contiguous
    return out


def _readonly(a):
    a = a.copy()
    a.flags.writeable = False
    return a


LAYOUTS = {
    "fortran": np.asfortranarray,
    "strided": lambda a: np.repeat(a, 2, axis=-1)[..., ::2],
    "negative_strides": lambda a: np.flip(np.flip(a).copy()),
    "readonly": _readonly,
    "frombuffer": lambda a: np.frombuffer(a.tobytes(), dtype=a.dtype).reshape(a.shape),
    "misaligned": _misaligned,
    "big_endian": lambda a: a.astype(a.dtype.newbyteorder(">")),
}


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_every_layout_gives_the_contiguous_answer_bit_for_bit(layout):
    rng = np.random.default_rng(6)
    A, b = rng.normal(size=(5, 4)), rng.normal(size=4)
    f = symgrad.compile(mat_loss, argnums=(0, 1))
    value, (dA, db) = f.value_and_grad(A, b)
    A2, b2 = LAYOUTS[layout](A), LAYOUTS[layout](b)
    np.testing.assert_array_equal(A2, A)
    keep = A2.copy(), b2.copy()
    value2, (dA2, db2) = f.value_and_grad(A2, b2)
    assert value2 == value and f(A2, b2) == value
    np.testing.assert_array_equal(dA2, dA)
    np.testing.assert_array_equal(db2, db)
    np.testing.assert_array_equal(A2, keep[0])          # inputs are never written
    np.testing.assert_array_equal(b2, keep[1])


def test_broadcast_view_with_zero_strides():
    f = symgrad.compile(dot_loss)
    x = np.broadcast_to(np.array([2.0]), (5,))
    assert x.strides == (0,)
    assert f(x, np.arange(5.0)) == 20.0


@pytest.mark.parametrize("s", [np.array(2.5), 2.5, np.float64(2.5), np.float32(2.5),
                               np.array([[2.5]])[0, 0]],
                         ids=["0d", "float", "np.float64", "np.float32", "indexed"])
def test_zero_d_arrays_and_python_scalars(s):
    x = np.arange(4.0)
    f = symgrad.compile(scaled, argnums=(0, 1))
    value, (dx, ds) = f.value_and_grad(x, s)
    assert value == 15.0 and np.ndim(ds) == 0 and ds == 6.0
    np.testing.assert_array_equal(dx, np.full(4, 2.5))
    assert isinstance(symgrad.compile(lambda a: a * 2.0)(s), float)


def test_empty_arrays():
    f = symgrad.compile(dot_loss)
    assert f(np.zeros(0), np.zeros(0)) == 0.0
    assert f(np.zeros((3, 0)), np.zeros((3, 0))) == 0.0
    assert symgrad.compile(lambda a: a * 2.0)(np.zeros((0, 2))).shape == (0, 2)


# -- NaN and inf ----------------------------------------------------------------------------------

SPECIALS = np.array([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e308, -1e-310, 710.0])


def _same(actual, expected, rtol=4e-16):
    """Equal as NumPy's results: identical non-finite entries (NaN matches NaN, infs their
    sign), finite entries to the last couple of ulps (libm and NumPy's exp/log may differ by
    one), and the sign of zeros."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape and actual.dtype == expected.dtype
    finite = np.isfinite(expected)
    np.testing.assert_array_equal(np.isfinite(actual), finite)
    np.testing.assert_array_equal(actual[~finite], expected[~finite])
    np.testing.assert_allclose(actual[finite], expected[finite], rtol=rtol, atol=0)
    np.testing.assert_array_equal(np.signbit(actual[expected == 0]),
                                  np.signbit(expected[expected == 0]))


ELEMENTWISE = {"exp": (snp.exp, np.exp), "log": (snp.log, np.log),
               "sqrt": (snp.sqrt, np.sqrt), "tanh": (snp.tanh, np.tanh),
               "maximum": (lambda x: snp.maximum(x, 0.5), lambda x: np.maximum(x, 0.5)),
               "minimum": (lambda x: snp.minimum(0.5, x), lambda x: np.minimum(0.5, x))}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_nan_and_inf_propagate_elementwise_as_in_numpy(name, dtype):
    ours, theirs = ELEMENTWISE[name]
    x = SPECIALS.astype(dtype) if dtype == "float64" else SPECIALS[:-3].astype(dtype)
    with np.errstate(all="ignore"):
        expected = theirs(x)
    actual = symgrad.compile(ours)(x)
    _same(actual, expected, rtol=4e-16 if dtype == "float64" else 1e-6)


REDUCTIONS = {"sum": (snp.sum, np.sum), "max": (snp.max, np.max), "min": (snp.min, np.min),
              "mean": (snp.mean, np.mean), "prod": (snp.prod, np.prod)}
REDUCED = {"nan_first": [np.nan, 1.0, 2.0], "nan_last": [1.0, 2.0, np.nan],
           "inf": [1.0, np.inf, 2.0], "-inf": [-np.inf, -np.inf, 3.0],
           "inf-inf": [np.inf, 1.0, -np.inf], "all_-inf": [-np.inf, -np.inf, -np.inf],
           "overflow": [1e308, 1e308, -1.0], "nan_and_inf": [np.inf, np.nan, -np.inf]}


@pytest.mark.parametrize("data", sorted(REDUCED))
@pytest.mark.parametrize("name", sorted(REDUCTIONS))
def test_nan_and_inf_in_reductions_as_in_numpy(name, data):
    ours, theirs = REDUCTIONS[name]
    x = np.array(REDUCED[data])
    with np.errstate(all="ignore"):
        expected = theirs(x)
        rows = theirs(np.stack([x, x[::-1], np.ones(3)]), axis=1)
    f = symgrad.compile(ours)
    g = symgrad.compile(lambda a: ours(a, axis=1))
    _same(np.float64(f(x)), expected, rtol=0)          # three terms: NumPy's order, exactly
    _same(g(np.stack([x, x[::-1], np.ones(3)])), rows, rtol=0)


def test_nan_in_a_loss_reaches_value_and_gradient():
    f = symgrad.compile(lambda x: snp.sum(snp.exp(x)))
    value, grad = f.value_and_grad(np.array([0.0, np.nan, -np.inf, np.inf]))
    assert np.isnan(value)
    _same(grad, np.array([1.0, np.nan, 0.0, np.inf]))


# -- the on-disk cache ----------------------------------------------------------------------------

_WORKER_SOURCE = "double twice(double x) { return 2 * x; }\n"


def _compile_in_child(cache_dir, barrier, results):
    """One of several processes compiling the same function into a fresh cache at once."""
    try:
        f = symgrad.compile(mat_loss, argnums=(0, 1), cache_dir=cache_dir)
        A, b = np.arange(12.0).reshape(4, 3) / 7, np.linspace(-1, 1, 3)
        f.trace(A, b)                              # trace first, so the compiles overlap
        before = compiler.invocations()
        barrier.wait(timeout=60)
        value, (dA, db) = f.value_and_grad(A, b)
        results.put((os.getpid(), compiler.invocations() - before, value, dA.tobytes(),
                     db.tobytes(), None))
    except BaseException as e:                    # report, never hang the parent
        results.put((os.getpid(), 0, None, None, None, repr(e)))


@pytest.mark.skipif(sys.platform == "win32", reason="uses fork")
def test_processes_compiling_the_same_function_at_once_share_one_entry(tmp_path):
    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_compile_in_child, args=(tmp_path, barrier, results))
             for _ in range(4)]
    for p in procs:
        p.start()
    got = [results.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(timeout=60)
    assert [g[5] for g in got] == [None] * 4
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    assert len({g[2:5] for g in got}) == 1        # identical value and gradients
    assert sum(g[1] for g in got) >= 1
    listing = sorted(p.name for p in tmp_path.iterdir())
    assert len(entries(tmp_path)) == 1 and len(listing) == 1, listing    # no leftovers
    entry = tmp_path / listing[0]
    manifest = json.loads((entry / "manifest.json").read_text())
    assert Cache(tmp_path).lookup(manifest["key"]) == entry / manifest["library"]


def _build(cache, key="k" * 64):
    return cache.build(key, _WORKER_SOURCE, lambda src, lib: compiler.compile_library(src, lib),
                       {})


def test_losing_the_publish_race_uses_the_winners_entry(tmp_path):
    """Deterministic version of the race: another builder publishes while we compile."""
    cache, key = Cache(tmp_path), "k" * 64
    winner = []

    def compile_slowly(src, lib):
        winner.append(_build(Cache(tmp_path), key))
        compiler.compile_library(src, lib)
    assert cache.build(key, _WORKER_SOURCE, compile_slowly, {}) == winner[0]
    assert sorted(p.name for p in tmp_path.iterdir()) == [winner[0].parent.name]


def test_a_broken_entry_appearing_during_the_build_is_replaced(tmp_path):
    cache, key = Cache(tmp_path), "k" * 64

    def compile_and_break(src, lib):
        cache.entry(key).mkdir()
        (cache.entry(key) / "manifest.json").write_text("garbage")
        compiler.compile_library(src, lib)
    lib = cache.build(key, _WORKER_SOURCE, compile_and_break, {})
    assert cache.lookup(key) == lib
    assert sorted(p.name for p in tmp_path.iterdir()) == [lib.parent.name]


def _truncate(lib):
    lib.write_bytes(lib.read_bytes()[: lib.stat().st_size // 2])


def _break_manifest(text):
    return lambda lib: (lib.parent / "manifest.json").write_text(text)


def _retarget_manifest(lib):
    m = json.loads((lib.parent / "manifest.json").read_text())
    m["library"] = "../../../../etc/passwd"
    (lib.parent / "manifest.json").write_text(json.dumps(m))


CORRUPTIONS = {
    "truncated_library": _truncate,
    "missing_library": lambda lib: lib.unlink(),
    "manifest_not_json": _break_manifest("{\"key\": "),
    "manifest_a_list": _break_manifest("[1, 2]"),
    "manifest_empty": _break_manifest(""),
    "manifest_missing": lambda lib: (lib.parent / "manifest.json").unlink(),
    "manifest_elsewhere": _retarget_manifest,
}


@pytest.mark.parametrize("how", sorted(CORRUPTIONS))
def test_corrupted_entry_is_detected_and_rebuilt(how, tmp_path):
    cache = Cache(tmp_path)
    lib = _build(cache)
    assert cache.lookup("k" * 64) == lib
    CORRUPTIONS[how](lib)
    assert cache.lookup("k" * 64) is None
    before = compiler.invocations()
    rebuilt = _build(cache)
    assert compiler.invocations() == before + 1
    assert rebuilt != lib and cache.lookup("k" * 64) == rebuilt
    assert sorted(p.name for p in tmp_path.iterdir()) == [rebuilt.parent.name]


def test_truncated_library_of_a_compiled_function_is_rebuilt(tmp_path):
    f = symgrad.compile(dot_loss, cache_dir=tmp_path)
    assert f(np.ones(3), np.ones(3)) == 3.0
    (entry,) = entries(tmp_path)
    lib = entry / json.loads((entry / "manifest.json").read_text())["library"]
    cut = entry / "cut.tmp"
    cut.write_bytes(lib.read_bytes()[:1000])
    os.replace(cut, lib)                          # a new file: the loaded one stays mapped
    before = compiler.invocations()
    assert symgrad.compile(dot_loss, cache_dir=tmp_path)(np.ones(3), np.ones(3)) == 3.0
    assert compiler.invocations() == before + 1


def _assert_falls_back(call, directory, match):
    with pytest.warns(RuntimeWarning, match=match) as record:
        assert call() == 3.0
    message = str(record[0].message)
    assert str(directory) in message and "private temporary directory" in message
    return message


@pytest.mark.parametrize("mode", [0o777, 0o1777, 0o775])
def test_directory_writable_by_others_is_refused(mode, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(mode)
    f = symgrad.compile(dot_loss, cache_dir=shared)
    _assert_falls_back(lambda: f(np.ones(3), np.ones(3)), shared, "writable by group or others")
    assert list(shared.iterdir()) == []           # nothing read or written there


def test_a_missing_directory_is_created_private(tmp_path):
    root = tmp_path / "new" / "cache"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        cache = Cache(root)
        lib = _build(cache)
    assert cache.root == root and lib.parent.parent == root
    assert stat.S_IMODE(root.stat().st_mode) & 0o077 == 0
    assert cache_mod.insecure_reason(root) is None


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0,
                    reason="giving a directory to another user needs root")
def test_directory_owned_by_another_user_is_refused(tmp_path):
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o700)
    os.chown(theirs, 65534, 65534)
    f = symgrad.compile(dot_loss, cache_dir=theirs)
    _assert_falls_back(lambda: f(np.ones(3), np.ones(3)), theirs, "owned by uid 65534")


def test_planted_entry_in_a_shared_directory_is_never_loaded(tmp_path):
    """The reason for refusing shared directories: an entry someone else put there."""
    ours = tmp_path / "ours"
    f = symgrad.compile(dot_loss, cache_dir=ours)
    f(np.ones(3), np.ones(3))
    shared = tmp_path / "shared"
    shutil.copytree(ours, shared)
    shared.chmod(0o777)
    (entry,) = entries(shared)
    for lib in entry.glob("*.so"):
        lib.write_bytes(b"planted")
    with pytest.warns(RuntimeWarning):
        assert symgrad.compile(dot_loss, cache_dir=shared)(np.ones(3), np.ones(3)) == 3.0


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0,
                    reason="root writes into a 0o500 directory anyway; "
                           "test_unwritable_directory_simulated covers this path")
def test_read_only_directory_falls_back(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        f = symgrad.compile(dot_loss, cache_dir=ro)
        _assert_falls_back(lambda: f(np.ones(3), np.ones(3)), ro, "cannot write")
    finally:
        ro.chmod(0o700)


def test_unwritable_directory_simulated(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o700)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, m, **kw: False if Path(p) == ro
                        else real_access(p, m, **kw))
    f = symgrad.compile(dot_loss, cache_dir=ro)
    _assert_falls_back(lambda: f(np.ones(3), np.ones(3)), ro, "cannot write")
    assert list(ro.iterdir()) == []


def test_read_only_file_system_simulated(tmp_path, monkeypatch):
    ro = tmp_path / "ro"
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir) == ro:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))
        return real_mkdtemp(*args, dir=dir, **kwargs)
    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    f = symgrad.compile(dot_loss, cache_dir=ro)
    _assert_falls_back(lambda: f(np.ones(3), np.ones(3)), ro, "Read-only file system")


def test_full_disk_falls_back_and_leaves_nothing_behind(tmp_path, monkeypatch):
    full = tmp_path / "full"
    real_write = Path.write_text

    def write_text(self, *args, **kwargs):
        if full in self.parents:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real_write(self, *args, **kwargs)
    monkeypatch.setattr(Path, "write_text", write_text)
    f = symgrad.compile(dot_loss, cache_dir=full)
    _assert_falls_back(lambda: f(np.ones(3), np.ones(3)), full, "No space left on device")
    assert list(full.iterdir()) == []


def test_a_compile_error_is_not_mistaken_for_a_cache_problem(tmp_path):
    f = symgrad.compile(dot_loss, cflags=["--no-such-flag-for-symgrad"], cache_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(symgrad.CompileError):
            f(np.ones(3), np.ones(3))


# -- no compiler ----------------------------------------------------------------------------------

def test_cc_naming_no_program_is_one_clear_compile_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CC", "/nonexistent/cc")
    monkeypatch.delenv("SYMGRAD_BACKEND", raising=False)
    f = symgrad.compile(dot_loss, cache_dir=tmp_path)
    for _ in range(2):                            # and the same error again, not a stale state
        with pytest.raises(symgrad.CompileError) as info:
            f(np.ones(3), np.ones(3))
        message = str(info.value)
        assert "/nonexistent/cc" in message and "apt-get install gcc" in message
        assert "SYMGRAD_BACKEND=interp" in message


def _no_compiler(monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda *args, **kwargs: None)


def test_no_compiler_on_path_says_what_to_install(monkeypatch, tmp_path):
    _no_compiler(monkeypatch)
    monkeypatch.delenv("SYMGRAD_BACKEND", raising=False)
    f = symgrad.compile(dot_loss, cache_dir=tmp_path)
    with pytest.raises(symgrad.CompileError, match="no C compiler found") as info:
        f.grad(np.ones(3), np.ones(3))
    assert "install gcc" in str(info.value) and "SYMGRAD_BACKEND=interp" in str(info.value)


def test_symgrad_backend_interp_runs_without_a_compiler(monkeypatch, tmp_path):
    _no_compiler(monkeypatch)
    monkeypatch.setenv("SYMGRAD_BACKEND", "interp")
    before = compiler.invocations()
    f = symgrad.compile(mat_loss, argnums=(0, 1), cache_dir=tmp_path)
    A, b = np.arange(6.0).reshape(2, 3), np.ones(3)
    value, (dA, db) = f.value_and_grad(A, b)
    assert f.backend == "interp" and compiler.invocations() == before
    assert value == pytest.approx(np.sum(np.tanh(A @ b)) + A.max() * 3)
    assert list(tmp_path.iterdir()) == []


# -- Clang ----------------------------------------------------------------------------------------

def test_gccs_own_flags_are_left_out_for_clang(monkeypatch):
    monkeypatch.setattr(compiler, "is_clang", lambda cc: cc == "my-clang")
    gcc = compiler.flags(cc="my-gcc")
    assert set(compiler.GCC_ONLY_CFLAGS) <= set(gcc) and not set(compiler.CLANG_CFLAGS) & set(gcc)
    for cflags in (None, compiler.STRAIGHT_LINE_CFLAGS):
        clang = compiler.flags(cflags, cc="my-clang")
        assert not set(compiler.GCC_ONLY_CFLAGS) & set(clang)
        assert clang[:len(compiler.CLANG_CFLAGS)] == compiler.CLANG_CFLAGS     # the caller's win


@pytest.mark.skipif(shutil.which("clang") is None, reason="clang is not installed")
def test_clang_builds_and_runs_a_gradient(monkeypatch, tmp_path):
    """With CC=clang: the libc declarations, the workspace and the BLAS pointers, built by
    Clang, against the interpreter."""
    monkeypatch.setenv("CC", "clang")
    assert compiler.is_clang("clang")

    def loss(A, B):
        return snp.sum(snp.tanh(A @ B) ** 2) + snp.max(A)      # a product for the BLAS

    rng = np.random.default_rng(3)
    A, B = rng.normal(size=(40, 30)), rng.normal(size=(30, 24))
    f = symgrad.compile(loss, argnums=(0, 1), cache_dir=tmp_path)
    value, (dA, dB) = f.value_and_grad(A, B)
    want, (wA, wB) = symgrad.compile(loss, argnums=(0, 1), backend="interp").value_and_grad(A, B)
    assert "SYMGRAD_USE_BLAS" in f.source(A, B)
    np.testing.assert_allclose(value, want, rtol=1e-12)
    np.testing.assert_allclose(dA, wA, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dB, wB, rtol=1e-10, atol=1e-12)


# -- threads --------------------------------------------------------------------------------------

def test_eight_threads_calling_at_once_get_their_own_answers(tmp_path):
    """Each thread's results are bit-for-bit those of a single-threaded run of the same code
    (built separately, in another cache), and agree with the interpreter."""
    reference = symgrad.compile(mat_loss, argnums=(0, 1), cache_dir=tmp_path / "reference")
    interp = symgrad.compile(mat_loss, argnums=(0, 1), backend="interp")
    f = symgrad.compile(mat_loss, argnums=(0, 1), cache_dir=tmp_path / "threads")
    rng = np.random.default_rng(8)
    inputs = [(rng.normal(size=(3 + i % 2, 4)), rng.normal(size=4)) for i in range(8)]
    expected = [reference.value_and_grad(*args) for args in inputs]
    for args, (value, grads) in zip(inputs, expected):
        assert value == pytest.approx(interp(*args), rel=1e-13)
    barrier, errors = threading.Barrier(8), []
    before = compiler.invocations()

    def work(i):
        try:
            barrier.wait(timeout=30)               # first calls race to specialize and compile
            value0, (dA0, db0) = expected[i]
            for _ in range(150):
                value, (dA, db) = f.value_and_grad(*inputs[i])
                assert value == value0 and f(*inputs[i]) == value0
                np.testing.assert_array_equal(dA, dA0)
                np.testing.assert_array_equal(db, db0)
        except BaseException as e:
            errors.append((i, e))
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    # Two specializations, each compiling its value and value-and-gradient functions once.
    assert len(f._specs) == 2 and compiler.invocations() - before == 4


def test_native_calls_release_the_gil(tmp_path):
    """While one thread is inside native code, another runs Python.

    The switch interval is made huge, so the only way the counting thread can run while the main
    thread is busy is the main thread giving up the GIL itself, which it does only inside a
    native call (the counter yields the GIL on every step, so it never blocks the main thread).
    Held GIL: the counter never moves across a call. Released: it moves during one of them.
    """
    f = symgrad.compile(lambda A: snp.sum(snp.tanh(A @ A)), cache_dir=tmp_path)
    A = np.random.default_rng(0).normal(size=(200, 200)) / 200
    f(A)                                          # compile outside the measured part
    count, stop, started = [0], threading.Event(), threading.Event()

    def counter():
        started.set()
        while not stop.is_set():
            count[0] += 1
            time.sleep(0)                         # releases the GIL
    def moves(call):
        before = count[0]
        call()
        return count[0] - before
    old = sys.getswitchinterval()
    thread = threading.Thread(target=counter)
    sys.setswitchinterval(1000.0)
    try:
        thread.start()
        started.wait()
        held = [moves(lambda: sum(range(100_000))) for _ in range(5)]   # the control
        native = [moves(lambda: f(A)) for _ in range(50)]
    finally:
        stop.set()
        sys.setswitchinterval(old)
        thread.join()
    assert held == [0] * 5, "the method cannot tell a held GIL from a released one"
    assert any(native), "no Python ran during 50 native calls: the GIL was held"


# -- sanitizers -----------------------------------------------------------------------------------

def _libasan():
    try:
        path = subprocess.run(["gcc", "-print-file-name=libasan.so"], capture_output=True,
                              text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return path if os.path.isabs(path) and os.path.exists(path) else None


LIBASAN = _libasan()
needs_asan = pytest.mark.skipif(LIBASAN is None, reason="gcc's libasan.so is not installed")
SANITIZE = ["-fsanitize=address,undefined", "-fno-omit-frame-pointer", "-O1"]

_SANITIZED_PROGRAM = textwrap.dedent("""
    import sys
    import numpy as np
    import symgrad
    import symgrad.numpy as snp

    def softmax_loss(W, X, y, reg):
        scores = X @ W
        scores = scores - snp.max(scores, axis=1, keepdims=True)
        logp = scores - snp.log(snp.sum(snp.exp(scores), axis=1, keepdims=True))
        n = X.shape[0]
        return -snp.mean(logp[snp.arange(n), y]) + reg * snp.sum(W * W)

    def slicing(x):
        return snp.sum(x[1:, ::2] * x[:-1, 1::2]) + snp.sum(x[::-1, 0] ** 2)

    def joined(a, b):
        return snp.sum(snp.concatenate([a, b], axis=1) ** 2) + snp.sum(snp.stack([a, b]) * a)

    def reductions(x):
        return (snp.sum(snp.max(x, axis=0)) + snp.sum(snp.min(x, axis=1, keepdims=True))
                + snp.mean(x) + snp.sum(snp.prod(x, axis=0)))

    rng = np.random.default_rng(0)
    W, X, y = rng.normal(size=(5, 3)), rng.normal(size=(7, 5)), rng.integers(0, 3, size=7)
    x = rng.normal(size=(4, 6))
    for fn, args in [(softmax_loss, (W, X, y, 1e-3)), (slicing, (x,)), (joined, (x, x + 1)),
                     (reductions, (x,))]:
        native = symgrad.compile(fn, cflags=sys.argv[2].split(), cache_dir=sys.argv[1])
        interp = symgrad.compile(fn, backend="interp")
        v, g = native.value_and_grad(*args)
        vi, gi = interp.value_and_grad(*args)
        np.testing.assert_allclose(v, vi, rtol=1e-10)
        np.testing.assert_allclose(g, gi, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(native(*args), v, rtol=1e-15)
    print("sanitized run ok")
""")

_BUGGY_C = "int overflow(int n) { int *a = __builtin_malloc(4 * n); int s = a[n]; " \
           "__builtin_free(a); return s; }\n"
_BUGGY_PROGRAM = textwrap.dedent("""
    import sys, cffi
    ffi = cffi.FFI()
    ffi.cdef("int overflow(int n);")
    print(ffi.dlopen(sys.argv[1]).overflow(4))
""")


def _sanitized(args):
    env = dict(os.environ, LD_PRELOAD=LIBASAN, ASAN_OPTIONS="detect_leaks=0",
               UBSAN_OPTIONS="print_stacktrace=1")
    return subprocess.run([sys.executable, "-c", *args], env=env, capture_output=True,
                          text=True, timeout=300)


@needs_asan
def test_generated_code_is_clean_under_asan_and_ubsan(tmp_path):
    out = _sanitized([_SANITIZED_PROGRAM, str(tmp_path), " ".join(SANITIZE)])
    assert out.returncode == 0, out.stderr[-4000:]
    assert "runtime error" not in out.stderr and "AddressSanitizer" not in out.stderr, \
        out.stderr[-4000:]
    assert "sanitized run ok" in out.stdout
    manifests = [json.loads((e / "manifest.json").read_text()) for e in entries(tmp_path)]
    # Four functions, each with its value and its value-and-gradient library.
    assert len(manifests) == 8 and all("-fsanitize=address,undefined" in m["flags"]
                                       for m in manifests)


@needs_asan
def test_the_sanitizer_harness_catches_a_heap_overflow(tmp_path):
    """The negative control: the same flags and preload do report a bug."""
    src, lib = tmp_path / "buggy.c", tmp_path / "buggy.so"
    src.write_text(_BUGGY_C)
    compiler.compile_library(src, lib, SANITIZE)
    out = _sanitized([_BUGGY_PROGRAM, str(lib)])
    assert out.returncode != 0 and "ERROR: AddressSanitizer: heap-buffer-overflow" in out.stderr
