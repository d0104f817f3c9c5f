#!/usr/bin/env python
"""Per-example gradients of the softmax classifier (API.md §1, issue 17): ``vmap(grad(loss))``.

    benchmarks/.venv/bin/python benchmarks/per_example_grads.py   # D 3073, N 64, 256; D 100
    benchmarks/.venv/bin/python benchmarks/per_example_grads.py --quick   # small sizes

Three ways to get the N gradients of the loss of each example with respect to W:

- **symgrad vmap(grad)**: ``symgrad.vmap(symgrad.grad(loss), in_axes=(None, 0, 0, None))``,
  one native function for the whole batch (the C backend), no Python loop;
- **symgrad loop**: a Python loop over the examples calling the compiled gradient
  (``symgrad.grad(loss)``) once per example, stacked;
- **JAX vmap(grad)**: ``jax.jit(jax.vmap(jax.grad(loss), in_axes=(None, 0, 0, None)))``
  (skipped when JAX does not import);
- **NumPy by hand**: the gradients written out, ``2 reg W + x_i (p_i - e_{y_i})^T`` for all
  examples at once (the memory-bound floor: the result alone is N * D * C numbers).

Every result is checked against the symgrad loop before timing. Threads are capped at one
(BLAS, XLA, symgrad's own pool) before anything is imported; the machine may be shared, so the
contenders take turns, round by round, and the median of the rounds is reported (ms per batch),
with the ratios to symgrad's vmap.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "SYMGRAD_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                           " intra_op_parallelism_threads=1").strip()

import numpy as np  # noqa: E402

import symgrad  # noqa: E402
import symgrad.numpy as snp  # noqa: E402


def loss(W, x, y, reg):
    """The classifier's loss on one example (x: D features, y: its label)."""
    scores = x[None] @ W
    scores = scores - snp.max(scores, axis=1, keepdims=True)
    logp = scores - snp.log(snp.sum(snp.exp(scores), axis=1, keepdims=True))
    return -snp.mean(logp[snp.arange(1), y[None]]) + reg * snp.sum(W * W)


def by_hand(W, X, y, reg):
    """Every example's gradient, written out with NumPy broadcasting."""
    s = X @ W
    s -= s.max(axis=1, keepdims=True)
    p = np.exp(s)
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(X)), y] -= 1
    return 2 * reg * W + X[:, :, None] * p[:, None, :]


def jax_contender():
    try:
        import jax
        import jax.numpy as jnp
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)

    def jloss(W, x, y, reg):
        scores = x[None] @ W
        scores = scores - jnp.max(scores, axis=1, keepdims=True)
        logp = scores - jnp.log(jnp.sum(jnp.exp(scores), axis=1, keepdims=True))
        return -jnp.mean(logp[jnp.arange(1), y[None]]) + reg * jnp.sum(W * W)
    f = jax.jit(jax.vmap(jax.grad(jloss), in_axes=(None, 0, 0, None)))
    return lambda *args: np.asarray(f(*args).block_until_ready())


def medians(fns, args, rounds, budget=0.05):
    """Median seconds per call of each of ``fns``, over ``rounds`` rounds taken in turns."""
    counts = []
    for fn in fns:
        fn(*args)
        t0 = time.perf_counter()
        fn(*args)
        counts.append(max(1, int(budget / max(time.perf_counter() - t0, 1e-7))))
    times = [[] for _ in fns]
    for _ in range(rounds):
        for k, (fn, n) in enumerate(zip(fns, counts)):
            t0 = time.perf_counter()
            for _ in range(n):
                fn(*args)
            times[k].append((time.perf_counter() - t0) / n)
    return [statistics.median(t) for t in times]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, few rounds")
    opts = ap.parse_args(argv)
    C = 10
    cases = ((100, 16), (100, 64)) if opts.quick else ((3073, 64), (3073, 256), (100, 256))
    rounds = 3 if opts.quick else 9
    reg = 1e-3
    per_example = symgrad.vmap(symgrad.grad(loss), in_axes=(None, 0, 0, None))
    grad = symgrad.grad(loss)

    def loop(W, X, y, reg):
        return np.stack([grad(W, X[i], y[i], reg) for i in range(len(X))])
    contenders = [("symgrad vmap(grad)", per_example), ("symgrad loop over examples", loop),
                  ("NumPy by hand", by_hand)]
    jax_fn = jax_contender()
    if jax_fn is not None:
        contenders.append(("JAX vmap(grad) (jit)", jax_fn))
    print(f"Per-example gradients of the softmax classifier, C={C}, float64, one thread; "
          f"median ms per batch of {rounds} rounds ({sys.executable})\n")
    print("| D | N | " + " | ".join(name for name, _ in contenders)
          + " | loop / vmap | JAX / vmap |")
    print("|---|---|" + "---|" * (len(contenders) + 2))
    rng = np.random.default_rng(0)
    for D, n in cases:
        W = rng.normal(size=(D, C)) * 0.01
        X = rng.normal(size=(n, D))
        y = rng.integers(0, C, n)
        args = (W, X, y, reg)
        reference = loop(*args)
        for name, fn in contenders:
            err = np.max(np.abs(fn(*args) - reference))
            if not err <= 1e-10 * max(1.0, np.max(np.abs(reference))):
                raise SystemExit(f"{name} differs from the loop by {err}")
        t = medians([fn for _, fn in contenders], args, rounds)
        jax_ratio = f"{t[3] / t[0]:.2f}" if len(t) > 3 else "-"
        print(f"| {D} | {n} | " + " | ".join(f"{s * 1e3:.3f}" for s in t)
              + f" | {t[1] / t[0]:.1f} | {jax_ratio} |")


if __name__ == "__main__":
    main()
