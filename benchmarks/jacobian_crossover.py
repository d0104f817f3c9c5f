#!/usr/bin/env python
"""Forward against reverse Jacobians, as input and output sizes vary: the lecture's crossover.

    python benchmarks/jacobian_crossover.py            # prints Markdown, writes the figure
    python benchmarks/jacobian_crossover.py --quick    # smaller sizes, fewer repeats

The map is a two-layer network ``f(x) = W2 @ tanh(W1 @ x)`` from R^n to R^m with a hidden layer
of ``HIDDEN`` units; the weights are (non-differentiated) arguments, so nothing is folded into
constants. One sweep, forward (a jvp) or reverse (a vjp), costs about ``HIDDEN * (n + m)``
multiply-adds either way; the forward Jacobian takes n sweeps and the reverse one m, so the
lecture predicts forward mode wins when n < m and reverse mode when n > m.

Two series: m fixed at ``FIXED`` while n varies, and n fixed at ``FIXED`` while m varies. Each
Jacobian is compiled by ``symgrad.jacobian(..., mode=...)`` (the C backend, sweeps unrolled
into one C function) and timed per call (the two modes take turns, best of nine rounds: the
machine may be shared). The
figure goes to ``docs/figures/jacobian_crossover.png``, the numbers beside it as JSON.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

import symgrad
import symgrad.numpy as snp

ROOT = Path(__file__).resolve().parent.parent
FIGURE = ROOT / "docs" / "figures" / "jacobian_crossover.png"
HIDDEN = 128
FIXED = 32


def network(x, W1, W2):
    return W2 @ snp.tanh(W1 @ x)


def per_call(fns, args, budget=0.05, rounds=9):
    """Seconds per call of each of ``fns``: the best of ``rounds`` runs of about ``budget``
    seconds each. The functions take turns, round by round, so a busy spell of the (shared)
    machine slows all of them alike rather than one."""
    counts = []
    for fn in fns:
        fn(*args)
        t0 = time.perf_counter()
        fn(*args)
        counts.append(max(1, int(budget / max(time.perf_counter() - t0, 1e-7))))
    best = [float("inf")] * len(fns)
    for _ in range(rounds):
        for k, (fn, n) in enumerate(zip(fns, counts)):
            t0 = time.perf_counter()
            for _ in range(n):
                fn(*args)
            best[k] = min(best[k], (time.perf_counter() - t0) / n)
    return best


def measure(n, m, rounds, cache_dir):
    rng = np.random.default_rng(n * 1000 + m)
    args = (rng.standard_normal(n), rng.standard_normal((HIDDEN, n)) / np.sqrt(n),
            rng.standard_normal((m, HIDDEN)) / np.sqrt(HIDDEN))
    row = {"n": n, "m": m}
    jacobians, compiled = {}, []
    for mode in ("forward", "reverse"):
        jac = symgrad.jacobian(network, mode=mode, cache_dir=cache_dir)
        t0 = time.perf_counter()
        jacobians[mode] = jac(*args)
        row[f"{mode}_compile_s"] = time.perf_counter() - t0
        compiled.append(jac)
    assert np.allclose(jacobians["forward"], jacobians["reverse"], rtol=1e-10, atol=1e-12)
    row["forward_us"], row["reverse_us"] = (t * 1e6 for t in per_call(compiled, args,
                                                                       rounds=rounds))
    row["auto"] = symgrad.frontend.transforms.choose_mode("auto", n, m)
    return row


def crossover(rows, key):
    """Where reverse stops or starts winning along ``key``: the first size at which the
    faster mode differs from the one at the smallest size (None if it never does)."""
    first = rows[0]["forward_us"] < rows[0]["reverse_us"]
    for r in rows[1:]:
        if (r["forward_us"] < r["reverse_us"]) != first:
            return r[key]
    return None


def markdown(series):
    lines = []
    for title, key, rows in series:
        lines += [f"### {title}", "",
                  "| n | m | forward (µs) | reverse (µs) | reverse/forward | auto picks |",
                  "|---:|---:|---:|---:|---:|---|"]
        for r in rows:
            lines.append(f"| {r['n']} | {r['m']} | {r['forward_us']:.1f} | {r['reverse_us']:.1f} "
                         f"| {r['reverse_us'] / r['forward_us']:.2f} | {r['auto']} |")
        lines += ["", f"Faster mode changes at {key} = {crossover(rows, key)}.", ""]
    return "\n".join(lines)


def plot(series, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for ax, (title, key, rows) in zip(axes, series):
        sizes = [r[key] for r in rows]
        ax.loglog(sizes, [r["forward_us"] for r in rows], "o-",
                  label="forward (one jvp per input)")
        ax.loglog(sizes, [r["reverse_us"] for r in rows], "s-",
                  label="reverse (one vjp per output)")
        ax.axvline(FIXED, color="grey", linestyle=":", label=f"n = m = {FIXED}")
        ax.set_xscale("log", base=2)
        ax.set_xlabel(f"{key} ({'inputs' if key == 'n' else 'outputs'})")
        ax.set_ylabel("time per Jacobian (µs)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    fig.suptitle(f"Jacobian of W2 @ tanh(W1 @ x), hidden {HIDDEN}, native C")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sizes up to 16, fewer repeats")
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--no-figure", action="store_true")
    opts = parser.parse_args(argv)
    sizes = [2, 4, 8, 16] if opts.quick else [2, 4, 8, 16, 32, 64, 128]
    fixed = 8 if opts.quick else FIXED
    rounds = 3 if opts.quick else 9
    with tempfile.TemporaryDirectory(prefix="symgrad-crossover-") as cache_dir:
        series = [
            (f"m = {fixed} outputs, n varies", "n",
             [measure(n, fixed, rounds, cache_dir) for n in sizes]),
            (f"n = {fixed} inputs, m varies", "m",
             [measure(fixed, m, rounds, cache_dir) for m in sizes]),
        ]
    print(markdown(series))
    if not opts.no_figure:
        plot(series, opts.figure)
        numbers = {"hidden": HIDDEN, "fixed": fixed, "series": [
            {"title": t, "varies": k, "rows": rows} for t, k, rows in series]}
        opts.figure.with_suffix(".json").write_text(json.dumps(numbers, indent=2) + "\n")
        print(f"figure: {opts.figure}")
    return series


if __name__ == "__main__":
    main()
