"""The workspace of a compiled function: an array on the stack when small and of a fixed size,
else a block kept between calls (symgrad/templates/workspace.c).

A function's intermediate arrays live in one workspace, whose contents on entry are whatever
the last call left there (a block is kept between calls in slots the calling threads share).
Compiled with ``-DSYMGRAD_POISON_WORKSPACE`` the workspace is filled with NaNs on every call:
code that reads workspace it never wrote then shows up as NaNs or wrong numbers.
"""
import threading

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.backends.c.codegen import STACK_WORKSPACE_MAX
from symgrad.backends.c.compiler import DEFAULT_CFLAGS

from c_source import workspace_bytes
from test_primitives import CASES, float_argnums, make_args, signature, weighted_loss

POISON = list(DEFAULT_CFLAGS) + ["-DSYMGRAD_POISON_WORKSPACE"]


@pytest.mark.parametrize("row, index", CASES)
def test_no_statement_reads_workspace_it_did_not_write(row, index):
    args = make_args(row, index, "float64")
    argnums = float_argnums(row, args)
    loss = weighted_loss(row, args)
    sig = signature(row, "float64")
    poisoned = symgrad.compile(loss, argnums=argnums, cflags=POISON, signature=sig)
    reference = symgrad.compile(loss, argnums=argnums, backend="interp", signature=sig)
    for _ in range(2):    # the second call also sees what the first left behind
        value, grads = poisoned.value_and_grad(*args)
        want_value, want_grads = reference.value_and_grad(*args)
        np.testing.assert_allclose(value, want_value, rtol=1e-12, atol=1e-12)
        for g, w in zip(grads, want_grads):
            np.testing.assert_allclose(g, w, rtol=1e-12, atol=1e-12)


def _loop_loss(x):
    return snp.sum(symgrad.fori_loop(2, 6, lambda i, c: c * x + i, snp.zeros(3)))


def test_loop_with_poisoned_workspace():
    x = np.array([0.5, 1.0, 1.5])
    f = symgrad.compile(_loop_loss, cflags=POISON)
    value, grad = f.value_and_grad(x)
    # c_{k+1} = c_k x + i for i = 2..5 from 0: c = 2x^3 + 3x^2 + 4x + 5
    np.testing.assert_allclose(value, np.sum(2 * x**3 + 3 * x**2 + 4 * x + 5), rtol=1e-14)
    np.testing.assert_allclose(grad, 6 * x**2 + 6 * x + 4, rtol=1e-14)


def test_avx512_constants():
    """gcc 12.2 with AVX-512 stored the constant [1, 1, 1, 0, 0, 0] as [1, 1, 1, 1, 0, 0]; the
    default flags must not (this is the initial adjoint of the loop above, and a plain
    constant)."""
    x = np.array([0.5, 1.0, 1.5])
    np.testing.assert_allclose(symgrad.compile(_loop_loss).grad(x), 6 * x**2 + 6 * x + 4,
                               rtol=1e-14)
    const = np.array([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
    f = symgrad.compile(lambda v: v * const, argnums=())
    np.testing.assert_array_equal(f(np.full(6, 2.0)), 2.0 * const)


def _matvec_loss(W, X):
    return snp.sum(snp.tanh(X @ W) ** 2)


def _matvec_batches(cflags, batches, seed):
    """_matvec_loss compiled with ``cflags``, called on X of each batch size in turn, each
    value and gradient checked against the interpreter's."""
    rng = np.random.default_rng(seed)
    W = rng.normal(size=(5, 3))
    sig = {"W": "f64[5,3]", "X": "f64[N,5]"}
    f = symgrad.compile(_matvec_loss, signature=sig, cflags=cflags)
    ref = symgrad.compile(_matvec_loss, signature=sig, backend="interp")
    for n in batches:
        X = rng.normal(size=(n, 5))
        value, grad = f.value_and_grad(W, X)
        want_value, want_grad = ref.value_and_grad(W, X)
        np.testing.assert_allclose(value, want_value, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-300)


def test_workspace_grows_and_shrinks_with_run_time_sizes():
    """One function, batch sizes going up and down: each call gets a block big enough."""
    _matvec_batches(POISON, (1, 100, 3, 2000, 0, 7), seed=0)


@pytest.mark.parametrize("n_threads", [4, 12])    # 12: more calls at once than slots (8)
def test_calls_at_once_each_hold_their_own_block(n_threads):
    rng = np.random.default_rng(1)
    W = rng.normal(size=(5, 3))
    f = symgrad.compile(_matvec_loss, signature={"W": "f64[5,3]", "X": "f64[N,5]"})
    batches = [rng.normal(size=(n, 5)) for n in (10, 300, 40, 1000)]
    expected = [f.value_and_grad(W, X) for X in batches]
    errors = []
    start = threading.Barrier(n_threads)

    def work(k):
        try:
            start.wait()
            for _ in range(50):
                X = batches[k % len(batches)]
                value, grad = f.value_and_grad(W, X)
                want_value, want_grad = expected[k % len(batches)]
                assert value == want_value and np.array_equal(grad, want_grad)
                k += 1
        except Exception as e:          # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_blocks_over_the_kept_size_are_freed_after_their_call():
    """-DSYMGRAD_WORKSPACE_KEEP=4096: the small batches' blocks are kept, the large ones freed
    after each call (the sanitizer run checks the frees)."""
    _matvec_batches(POISON + ["-DSYMGRAD_WORKSPACE_KEEP=4096"], (2, 500, 3, 900, 1, 1), seed=2)


def test_generated_c_keeps_the_workspace_between_calls():
    f = symgrad.compile(_matvec_loss, signature={"W": "f64[5,3]", "X": "f64[N,5]"})
    src = f.source(np.zeros((5, 3)), np.zeros((4, 5)))
    assert "symgrad_workspace(_ws_bytes)" in src and "symgrad_workspace_release" in src
    assert "malloc(" not in src.split("static char *symgrad_workspace")[1].split("\n}\n", 1)[1]


def test_a_small_fixed_workspace_is_on_the_stack_and_a_large_one_is_a_kept_block():
    """Up to codegen.STACK_WORKSPACE_MAX bytes of a size fixed at compile time: an array on the
    stack, and the module holds no block functions; more: the kept block. Both right, poisoned."""
    rng = np.random.default_rng(3)
    W = rng.normal(size=(5, 3))
    f = symgrad.compile(_matvec_loss, cflags=POISON)
    ref = symgrad.compile(_matvec_loss, backend="interp")
    small, large = rng.normal(size=(40, 5)), rng.normal(size=(4000, 5))
    on_stack, kept = f.source(W, small), f.source(W, large)
    assert workspace_bytes(on_stack) <= STACK_WORKSPACE_MAX < workspace_bytes(kept)
    assert f"char _ws[{workspace_bytes(on_stack)}]" in on_stack
    assert "symgrad_workspace" not in on_stack
    assert "symgrad_workspace(_ws_bytes)" in kept and "char _ws[" not in kept
    for X in (small, large, small):
        value, grad = f.value_and_grad(W, X)
        want_value, want_grad = ref.value_and_grad(W, X)
        np.testing.assert_allclose(value, want_value, rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(grad, want_grad, rtol=1e-12, atol=1e-300)
