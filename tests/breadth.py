"""Shared checks for the NumPy-breadth test files (statistics, shapes, contractions, linalg).

A test file lists ``Case``s: a function written against ``symgrad.numpy`` (so that on plain
arrays it *is* NumPy: the value oracle) and its arguments. The checks group the cases of a file
into a few traced functions (``CHUNK`` cases each: gcc's time grows faster than the size of the
function it compiles, so one huge module is slower than a few), so each file compiles a handful
of C modules rather than one per case:

- ``check_values``: the grouped function, compiled for a backend and dtype, returns each case's
  value; each is compared with NumPy's.
- ``check_gradient``: one case, on the interpreter: ``symgrad.check_grad`` against central
  differences and the complex step (no C compile per case).
- ``check_grouped_gradients``: the C gradient of the grouped weighted loss equals the
  interpreter's (which ``check_gradient`` checked against the numerical references).
- ``check_jvp`` / ``check_hvp``: forward mode against a central difference of the values, and
  the Hessian-vector product against a central difference of the gradients.

``standard_tests(CASES)`` makes the first three into a file's test functions.
"""
from __future__ import annotations

import zlib
from typing import Callable, NamedTuple

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp


CHUNK = 4


def chunks(cases, size=CHUNK):
    return [cases[i:i + size] for i in range(0, len(cases), size)]


class Case(NamedTuple):
    name: str
    fn: Callable
    args: Callable            # rng -> list of arguments (float64 arrays are cast per dtype)
    grad: bool = True         # differentiable (a float result)
    rtol32: float = 2e-5      # value tolerance in float32, relative to the result's scale


def seed(*parts):
    return zlib.crc32("/".join(map(str, parts)).encode())


def case_args(case, dtype="float64"):
    rng = np.random.default_rng(seed(case.name))
    args = case.args(rng)
    return [a.astype(dtype) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a
            for a in args]


def float_positions(args):
    return tuple(i for i, a in enumerate(args)
                 if isinstance(a, np.ndarray) and a.dtype.kind == "f")


def _outputs(value):
    return list(value) if isinstance(value, (tuple, list)) else [value]


def grouped(cases, dtype):
    """(fn(*all_args) -> tuple of every case's outputs, all args, per case (start, count,
    number of outputs))."""
    layout, all_args = [], []
    for case in cases:
        args = case_args(case, dtype)
        n_out = len(_outputs(case.fn(*args)))
        layout.append((len(all_args), len(args), n_out))
        all_args += args

    def fn(*xs):
        outs = []
        for case, (start, count, _) in zip(cases, layout):
            outs += _outputs(case.fn(*xs[start:start + count]))
        return tuple(outs)
    return fn, all_args, layout


def assert_close(name, actual, expected, rtol, atol_scale=True):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.shape == expected.shape, f"{name}: shape {actual.shape} != {expected.shape}"
    if expected.dtype.kind in "biu":
        np.testing.assert_array_equal(actual, expected, err_msg=name)
        return
    scale = max(1.0, float(np.max(np.abs(expected), initial=0.0))) if atol_scale else 1.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale, err_msg=name)


def check_values(cases, backend, dtype):
    for part in chunks(cases):
        _check_values(part, backend, dtype)


def _check_values(cases, backend, dtype):
    fn, args, layout = grouped(cases, dtype)
    f = symgrad.compile(fn, backend=backend, argnums=())
    got = f(*args)
    k = 0
    for case, (start, count, n_out) in zip(cases, layout):
        expected = _outputs(case.fn(*args[start:start + count]))
        for j, want in enumerate(expected):
            rtol = 1e-12 if dtype == "float64" else case.rtol32
            assert_close(f"{case.name}[{j}] ({backend}, {dtype})", got[k], want, rtol)
            want = np.asarray(want)
            if want.ndim and want.dtype.kind == "f":
                assert np.asarray(got[k]).dtype == want.dtype, case.name
            k += 1


def weighted_loss(case, name=None):
    """sum over the case's float outputs of sum(out * W), W fixed and random."""
    args = case_args(case)
    weights = []
    for j, out in enumerate(_outputs(case.fn(*args))):
        out = np.asarray(out)
        rng = np.random.default_rng(seed(case.name, "weights", j))
        weights.append(rng.uniform(0.5, 1.5, out.shape) if out.dtype.kind == "f" else None)

    def loss(*xs):
        total = 0.0
        for out, w in zip(_outputs(case.fn(*xs)), weights):
            if w is not None:
                total = total + snp.sum(out * w)
        return total
    loss.__name__ = name or f"loss_{case.name}"
    return loss


def check_gradient(case, **tol):
    args = case_args(case)
    argnums = float_positions(args)
    f = symgrad.compile(weighted_loss(case), backend="interp", argnums=argnums)
    report = symgrad.check_grad(f, *args, argnums=argnums, **tol)
    methods = {c.method for c in report.comparisons}
    assert {"central diff", "complex step"} <= methods
    assert report.ok, str(report)


def _grouped_loss(cases):
    cases = [c for c in cases if c.grad]
    losses = [weighted_loss(c) for c in cases]
    _, args, layout = grouped(cases, "float64")

    def loss(*xs):
        total = 0.0
        for fn, (start, count, _) in zip(losses, layout):
            total = total + fn(*xs[start:start + count])
        return total
    return loss, args


def check_grouped_gradients(cases):
    for part in chunks([c for c in cases if c.grad]):
        _check_grouped_gradients(part)


def _check_grouped_gradients(cases):
    loss, args = _grouped_loss(cases)
    argnums = float_positions(args)
    v_c, g_c = symgrad.compile(loss, argnums=argnums).value_and_grad(*args)
    v_i, g_i = symgrad.compile(loss, argnums=argnums, backend="interp").value_and_grad(*args)
    np.testing.assert_allclose(v_c, v_i, rtol=1e-12)
    for i, a, b in zip(argnums, g_c, g_i):
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-10, err_msg=f"argument {i}")


def check_jvp(cases, backend, h=1e-6):
    """Forward mode of every differentiable case (grouped) against central differences."""
    for part in chunks([c for c in cases if c.grad]):
        _check_jvp(part, backend, h)


def _check_jvp(cases, backend, h):
    fn, args, _ = grouped(cases, "float64")
    argnums = float_positions(args)
    rng = np.random.default_rng(seed("tangents"))
    tangents = tuple(rng.uniform(-1, 1, np.shape(args[i])) for i in argnums)
    f = symgrad.compile(fn, backend=backend, argnums=argnums)
    _, t_out = f.jvp(args, tangents)
    ref = symgrad.compile(fn, backend="interp", argnums=())

    def at(s):
        moved = list(args)
        for i, t in zip(argnums, tangents):
            moved[i] = args[i] + s * t
        return ref(*moved)
    plus, minus = at(h), at(-h)
    for k, (t, p, m) in enumerate(zip(t_out, plus, minus)):
        if np.asarray(p).dtype.kind != "f":
            continue
        fd = (np.asarray(p) - np.asarray(m)) / (2 * h)
        np.testing.assert_allclose(t, fd, rtol=1e-5, atol=1e-5, err_msg=f"output {k}")


def check_hvp(cases, backend, h=1e-5):
    """Second order: H v of the grouped loss against a central difference of its gradient."""
    for part in chunks(cases):
        _check_hvp(part, backend, h)


def _check_hvp(cases, backend, h):
    loss, args = _grouped_loss(cases)
    argnums = float_positions(args)
    rng = np.random.default_rng(seed("hvp"))
    v = tuple(rng.uniform(-1, 1, np.shape(args[i])) for i in argnums)
    f = symgrad.compile(loss, backend=backend, argnums=argnums)
    hv = f.hvp(args, v)
    ref = symgrad.compile(loss, backend="interp", argnums=argnums)

    def grad_at(s):
        moved = list(args)
        for i, t in zip(argnums, v):
            moved[i] = args[i] + s * t
        return ref.grad(*moved)
    plus, minus = grad_at(h), grad_at(-h)
    for i, got, p, m in zip(argnums, hv, plus, minus):
        fd = (p - m) / (2 * h)
        scale = max(1.0, float(np.max(np.abs(fd))))
        np.testing.assert_allclose(got, fd, rtol=1e-4, atol=1e-4 * scale,
                                   err_msg=f"argument {i}")


def primitives_used(cases):
    """The primitives of the forward and adjoint graphs of the differentiable cases (the checks
    above run forward mode over all of them on the interpreter)."""
    used = set()
    for case in cases:
        if not case.grad:
            continue
        args = case_args(case)
        argnums = float_positions(args)
        f = symgrad.compile(weighted_loss(case), backend="interp", argnums=argnums)
        spec, _ = f.specialize(*args)
        for graph in (spec.graph, spec.value_and_grad_graph()):
            used.update(n.prim for n in graph.nodes)
    return used


def standard_tests(cases):
    """The checks every breadth file runs on its cases, as pytest test functions (both backends
    and dtypes for the values; the interpreter's gradient of each differentiable case; the C
    gradients of the groups)::

        (test_values_match_numpy, test_gradient_against_differences,
         test_c_gradients_equal_interpreter) = standard_tests(CASES)
    """
    by_name = {c.name: c for c in cases}

    @pytest.mark.parametrize("dtype", ["float64", "float32"])
    def test_values_match_numpy(backend, dtype):
        check_values(cases, backend, dtype)

    @pytest.mark.parametrize("name", [c.name for c in cases if c.grad])
    def test_gradient_against_differences(name):
        check_gradient(by_name[name])

    def test_c_gradients_equal_interpreter():
        check_grouped_gradients(cases)
    return test_values_match_numpy, test_gradient_against_differences, \
        test_c_gradients_equal_interpreter
