"""Functions of float64 scalars are called through CPython entry points built into their library
(backends/c/pyentry.py): the same results, of the same types, as the interpreter's path."""
import threading

import numpy as np
import pytest

import symgrad
import symgrad.nn as snn
import symgrad.numpy as snp
from symgrad.backends.c import pyentry

pytestmark = pytest.mark.skipif(pyentry.include_dir() is None, reason="no CPython headers")


def w1a(x, y):
    return (x + snn.sigmoid(y)) / (snn.sigmoid(x) + (x + y) ** 2)


def pair(x, y):
    return x * y, x - y


@pytest.fixture(autouse=True)
def _entries_ready(tmp_path):
    # The entry library is built in the background by the first scalar function; wait for it.
    f = symgrad.compile(lambda x: x * 2.0, cache_dir=tmp_path)
    f(1.0)
    pyentry.wait()
    assert pyentry._make is not None




@pytest.mark.parametrize("argnums", [(0, 1), 0, 1])
def test_values_gradients_and_their_types(argnums, tmp_path):
    f = symgrad.compile(w1a, argnums=argnums, cache_dir=tmp_path)
    ref = symgrad.compile(w1a, argnums=argnums, backend="interp")
    for x, y in ((3.0, -4.0), (np.float64(0.5), 2.0), (-1e3, 1e-300)):
        v, g = f.value_and_grad(x, y)
        rv, rg = ref.value_and_grad(x, y)
        assert type(v) is float and v == pytest.approx(float(rv), rel=1e-14)
        grads = g if isinstance(argnums, tuple) else (g,)
        ref_grads = rg if isinstance(argnums, tuple) else (rg,)
        assert all(type(a) is np.float64 for a in grads)
        np.testing.assert_allclose(grads, ref_grads, rtol=1e-13)
        value = f(x, y)
        assert type(value) is float and value == v
    exe = f.specialize(3.0, -4.0)[0]._executable
    for run in (exe.scalars, exe.scalars_and_grad, exe.scalars_and_first_grad):
        assert type(run).__name__ == "builtin_function_or_method"
    assert type(f._fast_grads[f._fast_key((3.0, -4.0))]).__name__ in (
        "builtin_function_or_method", "function")


def test_a_tuple_result(tmp_path):
    f = symgrad.compile(pair, cache_dir=tmp_path)
    assert f(3.0, 4.0) == (12.0, -1.0)
    assert all(type(v) is float for v in f(3.0, 4.0))


def test_static_arguments_pass_a_list(tmp_path):
    def scaled(x, k):
        return x * k
    f = symgrad.compile(scaled, static_argnums=1, cache_dir=tmp_path)
    assert f.value_and_grad(2.0, 3) == (6.0, 3.0)
    assert f.value_and_grad(2.0, 3) == (6.0, 3.0)      # the remembered call


def test_bad_calls_raise_like_python(tmp_path):
    f = symgrad.compile(w1a, argnums=(0, 1), cache_dir=tmp_path)
    f.value_and_grad(3.0, -4.0)
    exe = f.specialize(3.0, -4.0)[0]._executable
    with pytest.raises(TypeError, match="takes 2 values, got 1"):
        exe.scalars_and_grad((1.0,))
    with pytest.raises(TypeError):
        exe.scalars_and_grad(("a", 1.0))
    with pytest.raises(TypeError, match="tuple or list"):
        exe.scalars_and_grad({1.0, 2.0})
    with pytest.raises(TypeError):
        f.value_and_grad(3.0)


def test_a_loop_inside_releases_the_gil(tmp_path):
    # Not straight-line: the entry point lets other threads run while the C does.
    def power(x, n_steps):
        return symgrad.fori_loop(0, 200, lambda i, acc: acc * 0.99 + snp.sin(x), x) + n_steps
    f = symgrad.compile(power, argnums=0, cache_dir=tmp_path)
    want = symgrad.compile(power, argnums=0, backend="interp").value_and_grad(0.3, 1.0)
    results = []

    def call():
        results.append(f.value_and_grad(0.3, 1.0))
    threads = [threading.Thread(target=call) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == 8
    for v, g in results:
        assert v == pytest.approx(float(want[0]), rel=1e-12)
        assert g == pytest.approx(float(want[1]), rel=1e-12)


def test_the_generated_libraries_stay_plain_c(tmp_path):
    f = symgrad.compile(w1a, cache_dir=tmp_path)
    f.value_and_grad(3.0, -4.0)
    assert "Python.h" not in f.source(3.0, -4.0)
    assert "Python.h" not in f.specialize(3.0, -4.0)[0]._executable.source_path.read_text()


def test_a_function_made_before_the_library_switches_when_it_is_loaded(tmp_path, monkeypatch):
    # As in a fresh process with a cold cache: the first calls go through cffi, then the
    # remembered calls are dropped and the next call remembers the entry point.
    monkeypatch.setattr(pyentry, "_make", None)
    monkeypatch.setattr(pyentry, "_builder", None)
    f = symgrad.compile(w1a, argnums=(0, 1), cache_dir=tmp_path / "fresh")
    first = f.value_and_grad(3.0, -4.0)
    pyentry.wait()
    exe = f.specialize(3.0, -4.0)[0]._executable
    assert type(exe.scalars_and_grad).__name__ == "builtin_function_or_method"
    assert f.value_and_grad(3.0, -4.0) == first
    assert f._fast_grads[f._fast_key((3.0, -4.0))] is exe.scalars_and_grad
    assert (tmp_path / "fresh" / ".runtime").is_dir()
