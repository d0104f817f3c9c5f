#!/usr/bin/env python
"""Cost that grows as the work grows (issue 20, goal 5): compile time and generated-code size
against the number of graph statements, and the compile time of ``jacobian`` against the
number of outputs.

    python benchmarks/scaling.py              # -> benchmarks/scaling.png, scaling.md, scaling.json
    python benchmarks/scaling.py --quick      # fewer, smaller points

1. Statements: ``chain(k)`` applies k elementwise-and-reduction steps to a vector; for each k
   the phases of a first call are timed in this process: trace (and the forward passes), the
   value-and-gradient graph (reverse mode and its passes), rendering C, and the C compiler;
   the C's size in bytes. Statements are those of both graphs the library holds.
2. Jacobian: ``jacobian`` of ``x -> tanh(W x) * sum(x^2)`` where the mode needs n sweeps:
   ``reverse`` (one vjp per output) with n outputs, W n x 5; ``forward`` (one jvp per input)
   with n inputs, W 5 x n. The time of the first call (trace, build, compile; a fresh cache)
   and the size of the C.

Times are CPU seconds (this process's for the Python phases, the compiler process's for cc;
the jacobian's first call is wall time): on a shared machine they vary far less than wall
time. Each point is the best of ``--reps`` runs (the minimum is the least disturbed). The log-log slope between the last points is printed: 1 is linear.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
import os  # noqa: E402
# SYMGRAD_BENCH_ROOT: measure another checkout (the "before" of a change), else this one.
sys.path.insert(0, os.environ.get("SYMGRAD_BENCH_ROOT") or str(HERE.parent))

import numpy as np  # noqa: E402

import symgrad  # noqa: E402
import symgrad.numpy as snp  # noqa: E402
from symgrad.backends.c import compiler  # noqa: E402
from symgrad.backends.c.module import render_program  # noqa: E402
try:
    from symgrad.core.gcpause import paused as _paused  # noqa: E402
except ImportError:                     # a checkout from before it existed
    from contextlib import nullcontext as _paused  # noqa: E402


def chain(k):
    def f(x, w):
        for i in range(k):
            if i % 4 == 3:
                x = x - snp.mean(x) * w[i % 3]
            else:
                x = snp.tanh(x * w[i % 3]) + 0.5 * x
        return snp.sum(x ** 2)
    f.__name__ = f"chain{k}"
    return f


def fused(k):
    """k elementwise steps and no reduction until the end: one fused loop of every statement."""
    def f(x, w):
        for i in range(k):
            x = snp.sin(x) * w[i % 3] + 0.1
        return snp.sum(x)
    f.__name__ = f"fused{k}"
    return f


def statements_point(k, kind=chain):
    x, w = np.linspace(-1, 1, 16), np.array([0.9, 1.1, 0.7])
    cf = symgrad.compile(kind(k))
    t0 = time.process_time()
    spec, _ = cf.specialize(x, w)
    t1 = time.process_time()
    vg = spec.value_and_grad_graph()
    t2 = time.process_time()
    with _paused():              # as a build does (api.Specialization.executable)
        try:
            module = render_program(spec.program(), data_files=True)
        except TypeError:               # a checkout from before data files
            module = render_program(spec.program())
    t3 = time.process_time()
    with tempfile.TemporaryDirectory() as d:
        src, lib = Path(d) / "module.c", Path(d) / "module.so"
        src.write_text(module.source)
        before = os.times()
        compiler.compile_library(src, lib)
        after = os.times()
    cc = (after.children_user - before.children_user
          + after.children_system - before.children_system)
    return {"k": k, "kind": kind.__name__, "statements": len(spec.graph.nodes) + len(vg.nodes),
            "forward_statements": len(spec.graph.nodes), "c_bytes": len(module.source),
            "trace_s": t1 - t0, "gradient_s": t2 - t1, "render_s": t3 - t2, "cc_s": cc}


def jacobian_point(n, mode):
    """The first call of ``jacobian(f, mode=mode)`` where the mode needs n sweeps: reverse mode
    of n outputs (W is n x 5), forward mode of n inputs (W is 5 x n)."""
    rng = np.random.default_rng(0)
    m = 5 if mode == "reverse" else n
    x, W = rng.standard_normal(m), rng.standard_normal((n, m) if mode == "reverse" else (5, m))

    def f(x, W):
        return snp.tanh(W @ x) * snp.sum(x ** 2)
    with tempfile.TemporaryDirectory() as d:
        J = symgrad.jacobian(f, mode=mode, cache_dir=d)
        t0 = time.perf_counter()
        out = J(x, W)
        t1 = time.perf_counter()
        c_bytes = sum(p.stat().st_size for p in Path(d).glob("*/module.c"))
    fn = lambda x: np.tanh(W @ x) * np.sum(x ** 2)      # noqa: E731
    num = np.stack([(fn(x + 1e-6 * e) - fn(x - 1e-6 * e)) / 2e-6 for e in np.eye(m)], axis=1)
    assert np.allclose(out, num, rtol=1e-5, atol=1e-7), "jacobian disagrees with differences"
    return {"n": n, "mode": mode, "first_call_s": t1 - t0, "c_bytes": c_bytes}


def best(fn, reps, *args):
    runs = [fn(*args) for _ in range(reps)]
    out = dict(runs[0])
    for key in out:
        if key.endswith("_s"):
            out[key] = min(r[key] for r in runs)
    return out


def slope(points, x, y):
    (x0, y0), (x1, y1) = [(p[x], p[y]) for p in points[-2:]]
    return math.log(y1 / y0) / math.log(x1 / x0) if y0 > 0 and y1 > 0 and x1 != x0 else None


def plot(path, stmts, jac, before=(), long_loops=()):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(15, 4.5))
    s = [p["statements"] for p in stmts]
    for key, label in (("trace_s", "trace + passes"), ("gradient_s", "reverse mode + passes"),
                       ("render_s", "render C"), ("cc_s", "C compiler")):
        a.plot(s, [p[key] for p in stmts], "o-", label=label)
    a.plot(s, [sum(p[k] for k in ("trace_s", "gradient_s", "render_s", "cc_s")) for p in stmts],
           "k.--", label="total")
    if long_loops:
        a.plot([p["statements"] for p in long_loops], [p["render_s"] for p in long_loops], "s:",
               label="render C, one fused loop of them all")
        a.plot([p["statements"] for p in long_loops], [p["cc_s"] for p in long_loops], "^:",
               label="C compiler, one fused loop of them all")
    a.set(xscale="log", yscale="log", xlabel="graph statements (forward + value-and-grad)",
          ylabel="CPU seconds", title="compile time against statements")
    b.plot(s, [p["c_bytes"] / 1e3 for p in stmts], "o-")
    b.set(xscale="log", yscale="log", xlabel="graph statements", ylabel="KB of C",
          title="generated C against statements")
    for mode in ("reverse", "forward"):
        pts = [p for p in jac if p["mode"] == mode]
        c.plot([p["n"] for p in pts], [p["first_call_s"] for p in pts], "o-", label=mode)
    for mode in ("reverse", "forward"):
        pts = [p for p in before if p["mode"] == mode]
        if pts:
            c.plot([p["n"] for p in pts], [p["first_call_s"] for p in pts], "x--",
                   label=f"{mode}, before (one sweep per row, unrolled)")
    c.set_ylim(bottom=0)
    c.set(xscale="log", xlabel="sweeps n (reverse: n outputs; forward: n inputs)", ylabel="seconds",
          title="jacobian: first call (trace + compile)")
    for ax in (a, b, c):
        ax.grid(True, which="both", alpha=0.3)
    for ax in (a, c):
        ax.legend(fontsize=8)
    for ax, pts, key in ((a, stmts, None), (b, stmts, None)):
        xs = [p["statements"] for p in pts]
        ref = np.array([xs[0], xs[-1]], dtype=float)
        y0 = (pts[0]["c_bytes"] / 1e3) if ax is b else sum(
            pts[0][k] for k in ("trace_s", "gradient_s", "render_s", "cc_s"))
        ax.plot(ref, y0 * ref / ref[0], color="grey", lw=0.8, ls=":", label="linear")
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--reps", type=int, default=None)
    ap.add_argument("--out", default=str(HERE / "scaling"))
    ap.add_argument("--jacobian-only", action="store_true")
    ap.add_argument("--ns", default=None, help="jacobian sizes, e.g. 2,8,32")
    ap.add_argument("--before", default=None,
                    help="JSON of an earlier run (e.g. of the previous code, via "
                         "SYMGRAD_BENCH_ROOT) whose jacobian points the plot shows too")
    opts = ap.parse_args(argv)
    reps = opts.reps or (1 if opts.quick else 3)
    ks = [25, 50, 100] if opts.quick else [25, 50, 100, 200, 400, 800]
    ns = [2, 8, 32] if opts.quick else [2, 8, 32, 128, 512]
    if opts.ns:
        ns = [int(n) for n in opts.ns.split(",")]
    if opts.jacobian_only:
        ks = []
    statements_point(5)                 # warm up: sympy, Jinja and cffi load on the first build
    stmts, long_loops = [], []
    for k in ks:
        stmts.append(best(statements_point, reps, k))
        print(json.dumps(stmts[-1]), flush=True)
    for k in ks:
        long_loops.append(best(statements_point, reps, k, fused))
        print(json.dumps(long_loops[-1]), flush=True)
    jac = []
    for mode in ("reverse", "forward"):
        for n in ns:
            jac.append(best(jacobian_point, reps, n, mode))
            print(json.dumps(jac[-1]), flush=True)
    out = Path(opts.out)
    out.with_suffix(".json").write_text(json.dumps({"statements": stmts, "fused": long_loops,
                                                    "jacobian": jac}, indent=1))
    if not stmts:
        return
    before = json.loads(Path(opts.before).read_text())["jacobian"] if opts.before else []
    L = ["# Cost against the size of the work", "",
         f"`python benchmarks/scaling.py{' --quick' if opts.quick else ''}`, "
         f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; best of {reps}.", "",
         "CPU seconds (the compiler's own for cc); best of the runs.", "",
         "| chain k | statements | trace s | reverse mode s | render s | cc s | C KB |",
         "|---|---|---|---|---|---|---|"]
    for p in stmts:
        L.append(f"| {p['k']} | {p['statements']} | {p['trace_s']:.3f} | {p['gradient_s']:.3f}"
                 f" | {p['render_s']:.3f} | {p['cc_s']:.2f} | {p['c_bytes'] / 1e3:.0f} |")
    L += ["", "One fused loop of every statement (``fused(k)``: elementwise steps, a sum at the end):",
          "", "| fused k | statements | trace s | reverse mode s | render s | cc s | C KB |",
          "|---|---|---|---|---|---|---|"]
    for p in long_loops:
        L.append(f"| {p['k']} | {p['statements']} | {p['trace_s']:.3f} | {p['gradient_s']:.3f}"
                 f" | {p['render_s']:.3f} | {p['cc_s']:.2f} | {p['c_bytes'] / 1e3:.0f} |")
    L.append("")
    for label, pts in (("chain", stmts), ("fused", long_loops)):
        L.append(f"Log-log slope over the last two points of {label} (1 = linear): " + ", ".join(
            f"{key} {slope(pts, 'statements', key):.2f}"
            for key in ("trace_s", "gradient_s", "render_s", "cc_s", "c_bytes")) + "  ")
    L += ["", "| jacobian mode | n outputs | first call s | C KB |", "|---|---|---|---|"]
    for p in jac:
        L.append(f"| {p['mode']} | {p['n']} | {p['first_call_s']:.2f} | "
                 f"{p['c_bytes'] / 1e3:.0f} |")
    for p in before:
        L.append(f"| {p['mode']}, before | {p['n']} | {p['first_call_s']:.2f} | "
                 f"{p['c_bytes'] / 1e3:.0f} |")
    L += ["", f"![compile time and C size against statements; jacobian against n]"
              f"({out.with_suffix('.png').name})", ""]
    out.with_suffix(".md").write_text("\n".join(L))
    try:
        plot(out.with_suffix(".png"), stmts, jac, before, long_loops)
    except ImportError:
        print("matplotlib missing: no plot")
    print("\n".join(L))


if __name__ == "__main__":
    main()
