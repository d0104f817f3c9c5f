#!/usr/bin/env python
"""Where symgrad's per-call time goes: W1a/W1b (Python floats in, the scalar buffer path) and
W2 at n=10 (a small float64 array, the array path).

    python benchmarks/profile_overhead.py                 # prints Markdown
    python benchmarks/profile_overhead.py --out benchmarks/profile_w1.md

Each row times one layer of ``f.value_and_grad(*args)`` on its own, from the inside out, with
the same objects the call uses (the remembered call, the executable's plan, its cffi function
and buffers): each outer row includes the inner ones, so the differences are what each layer
adds. The rows follow ``symgrad/api.py`` (fast key, remembered call) and
``symgrad/backends/c/native.py`` (``_scalar_call``, ``_plan``) and ``pyentry.py``; if those internals are renamed the
breakdown says so and the totals and cProfile still run. Every figure is the best of several
runs (the machine is shared), so rows are lower bounds and need not add up exactly.
"""
from __future__ import annotations

import argparse
import cProfile
import io
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

N, REPEAT = 20000, 15


def per_call(fn, n=N, repeat=REPEAT):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n)
    return best   # the machine is shared: the least-disturbed run


def compiled(name):
    import symgrad
    import workloads as wls
    from workloads import WORKLOADS, ns_symgrad
    wl = WORKLOADS[name]
    ns = ns_symgrad()

    def f(*a):
        return wl.fn(ns, *a)
    f.__name__ = wl.name.lower()
    wrt = wl.wrt
    cf = symgrad.compile(f, argnums=wrt if len(wrt) > 1 else wrt[0],
                         cache_dir=tempfile.mkdtemp())
    case = wls.Case(wl.name, "n=1e1", "float64", (("n", 10),)) if name == "W2" else \
        wls.Case(wl.name, "", "float64")
    args = wls.make_args(case)
    cf.value_and_grad(*args)
    # Functions of float64 scalars switch to CPython entry points once their library is built
    # (in the background, backends/c/pyentry.py): wait for it, so the rows time that path.
    from symgrad.backends.c import pyentry
    pyentry.wait()
    cf.value_and_grad(*args)
    return wl, cf, args


def full_path(cf, args):
    """A call that misses the fast key: ``_convert``, the specialization lookup, the arrays."""
    def call():
        cf._fast_grads.clear()
        cf.value_and_grad(*args)
    return per_call(call, n=N // 4) - per_call(cf._fast_grads.clear)


def scalar_rows(cf, args):
    """The layers of a W1 call (float64 scalars: ``native._scalar_call``)."""
    import numpy as np
    spec = cf.specialize(*args)[0]
    exe = spec.executable()
    key = cf._fast_key(args)
    remembered = cf._fast_grads[key]
    run = exe.scalars_and_grad
    fn = exe._vg
    n_in = len(args)
    n = n_in + 1 + len(cf.argnums)
    buf = exe.ffi.new(f"double[{n}]")
    buf[0:n_in] = args
    view = np.frombuffer(exe.ffi.buffer(buf), np.float64)
    pointers = tuple(buf + k for k in range(n))
    pool = [(buf, view, pointers)]
    import operator
    grads_of = operator.itemgetter(*range(n_in + 1, n))

    def pool_ops():
        entry = pool.pop()
        pool.append(entry)

    def write():
        buf[0:n_in] = args

    def read():
        return buf[n_in], grads_of(view)
    fast, table = cf._fast_key, cf._fast_grads
    entry = type(run).__name__ == "builtin_function_or_method"
    return [
        ("fast key + table lookup (`_fast_key`, dict get)", per_call(lambda: table[fast(args)])),
        ("the remembered call: `exe.scalars_and_grad(args)`"
         + (", a CPython entry point (reads the floats, calls the C, builds the result)"
            if entry else " (cffi)")
         + ("" if remembered is run else " (wrapped)"), per_call(lambda: remembered(args))),
        ("for comparison, the cffi path it replaces: buffer from the pool and back",
         per_call(pool_ops)),
        ("  write the inputs (`buf[0:n] = args`)", per_call(write)),
        ("  the C function through cffi (ABI mode, pointers ready)",
         per_call(lambda: fn(*pointers))),
        ("  read value + gradients (float, NumPy float64 scalars)", per_call(read)),
    ]


def array_rows(cf, args):
    """The layers of a W2 n=10 call (one float64 array: ``NativeExecutable._plan``)."""
    import numpy as np
    spec, arrays = cf.specialize(*args)
    exe = spec.executable()
    fn = exe._vg
    ffi = exe.ffi
    x = arrays[0]
    t = ffi.typeof("double[]")
    cell = ffi.new("double[1]")
    grad = np.empty(x.shape)
    bufs = [ffi.from_buffer(t, x), cell, ffi.from_buffer(t, grad, True)]
    from_buffer = ffi._backend.from_buffer
    fast, table = cf._fast_key, cf._fast_grads
    remembered = table[fast(args)]
    value_and_grad = exe.value_and_grad
    pool = [cell]

    def check():
        flags = x.flags
        return flags.c_contiguous and flags.aligned and x.dtype.isnative

    def pool_ops():
        entry = pool.pop()
        pool.append(entry)
    return [
        ("fast key + table lookup (`_fast_key`, dict get)", per_call(lambda: table[fast(args)])),
        ("the remembered call (array plan + result)", per_call(lambda: remembered(args))),
        ("  the array plan: `exe.value_and_grad(arrays)`", per_call(lambda: value_and_grad(args))),
        ("    layout check of the input (`a.flags`)", per_call(check)),
        ("    `from_buffer` per array (2: the input, the gradient)",
         2 * per_call(lambda: from_buffer(t, x, False))),
        ("    `np.empty` for the gradient", per_call(lambda: np.empty(x.shape, x.dtype))),
        ("    the value's pooled `double[1]` (`list.pop`/`append`)", per_call(pool_ops)),
        ("    the C function through cffi (ABI mode, buffers ready)", per_call(lambda: fn(*bufs))),
    ]


def floor_rows(name, args):
    """The hand-written C (floors/floors.c: scalars by value, one output buffer), through cffi in
    API mode (the floor run.py uses) and in ABI mode (as symgrad loads its libraries)."""
    import cffi
    sys.path.insert(0, str(HERE / "floors"))
    import build as floors_build
    mod = floors_build.load()
    out = mod.ffi.new("double[3]")
    cfn = getattr(mod.lib, f"{name.lower()}_vg")
    rows = [("reference: hand C, cffi API mode (call + 3 reads)",
             per_call(lambda: (cfn(args[0], args[1], out), out[0], out[1], out[2])))]
    ffi = cffi.FFI()
    ffi.cdef((HERE / "floors" / "floors.h").read_text())
    lib = ffi.dlopen(mod.__file__)
    abi = getattr(lib, f"{name.lower()}_vg")
    out2 = ffi.new("double[3]")
    rows.append(("reference: the same C, cffi ABI mode (call + 3 reads)",
                 per_call(lambda: (abi(args[0], args[1], out2), out2[0], out2[1], out2[2]))))
    return rows


def section(name):
    wl, cf, args = compiled(name)
    shown = ", ".join(repr(a) if isinstance(a, float) else f"x: f64[{a.size}]" for a in args)
    lines = [f"## {wl.name}: {wl.title}, `f.value_and_grad({shown})`\n"]
    total = per_call(lambda: cf.value_and_grad(*args))
    rows = [("**total** `f.value_and_grad(...)`", total)]
    try:
        rows += scalar_rows(cf, args) if name != "W2" else array_rows(cf, args)
    except Exception as e:  # internals moved: report, keep the rest
        lines.append(f"(layer breakdown unavailable: {type(e).__name__}: {e})\n")
    try:
        rows.append(("for comparison: a call that misses the fast key (`_convert`, lookup, "
                     "the array plan, remembering the key)", full_path(cf, args)))
    except Exception as e:
        lines.append(f"(full-path timing unavailable: {type(e).__name__}: {e})\n")
    if name != "W2":
        try:
            rows += floor_rows(name, args)
        except Exception as e:
            lines.append(f"(C floor unavailable: {type(e).__name__}: {e})\n")
    lines.append("| layer | µs per call | share of total |")
    lines.append("|---|---:|---:|")
    for label, t in rows:
        lines.append(f"| {label} | {t * 1e6:.2f} | {100 * t / total:.0f}% |")
    lines.append("")
    return lines, cf, args


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--workloads", default="W1a,W1b,W2", help="any of W1a, W1b, W2 (n=10)")
    ap.add_argument("--out", default=None)
    opts = ap.parse_args(argv)

    lines = ["# symgrad per-call overhead (W1: Python floats; W2: a 10-element array)\n",
             f"Generated by `python benchmarks/profile_overhead.py --out {opts.out or 'FILE'}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, Python "
             f"{platform.python_version()}, {platform.machine()}. The machine is shared with other "
             f"work (2 cores): each figure is the best of {REPEAT} runs of {N:,} calls, so it is "
             f"the least-disturbed reading, and indented rows are parts of the row above.\n",
             "Before the fast key and the call plans (commit da5f68e) W1a took 9.6 µs: "
             "`_convert` 2.8, two 0-d input arrays and `from_buffer` 2.1, three output arrays "
             "and `from_buffer` 2.8, the specialization lookup, `executable()` and glue 1.3, "
             "the cffi call 0.6 (this file's git history has that breakdown).\n"]
    first = None
    for name in opts.workloads.split(","):
        sec, cf, args = section(name.strip())
        lines += sec
        first = first or (cf, args)

    cf, args = first
    pr = cProfile.Profile()
    pr.enable()
    for _ in range(N):
        cf.value_and_grad(*args)
    pr.disable()
    s = io.StringIO()
    pstats.Stats(pr, stream=s).sort_stats("tottime").print_stats(12)
    text = s.getvalue()
    body = text[text.find("ncalls"):] if "ncalls" in text else text
    lines.append(f"cProfile of the first workload, {N:,} calls, sorted by own time (cProfile "
                 f"sees Python functions only: the cffi call and NumPy are inside them):\n")
    lines.append("```\n" + body.strip() + "\n```\n")
    md = "\n".join(lines)
    if opts.out:
        Path(opts.out).write_text(md)
    print(md)


if __name__ == "__main__":
    main()
