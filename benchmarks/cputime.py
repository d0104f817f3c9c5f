"""symgrad against JAX in CPU time per call, pinned to one core: a measure that a loaded machine
disturbs less than wall time.

    benchmarks/.venv/bin/python benchmarks/cputime.py W3:256:float64,W5:200:float64 --rounds 5

On a shared machine a pinned process gets a fraction of its core, and its wall time per call
grows with the load (and, for a peer that runs several threads on the one core, as XLA does,
with how often they are switched); its CPU time (``time.process_time``: every thread of the
process) counts only the time it ran. Each round runs each peer in a fresh process pinned to the
last CPU (``taskset``-like ``sched_setaffinity``), every library capped to one thread, in
alternating order; the table gives medians over rounds and the load average before and after.
Cache contention from other processes still inflates both, so compare within one run.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ONE_THREAD = {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "SYMGRAD_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


def child(peer, spec, calls):
    """In the pinned child: build the case, warm it up, print wall and CPU ms per call."""
    import time
    sys.path.insert(0, str(HERE))
    if peer == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)   # float64 cases in float64, as run.py does
    import workloads as wl
    name, size, dtype = spec.split(":")
    w = wl.WORKLOADS[name]
    case = next(c for c in w.cases(False) if c.dtype == dtype and c.label.split("=")[-1] == size)
    f, args, _ = (wl.peer_symgrad if peer == "symgrad" else wl.peer_jax)(w, case)
    for _ in range(5):
        r = f(*args)
    t, c = time.perf_counter(), time.process_time()
    for _ in range(calls):
        r = f(*args)
    if hasattr(r[0], "block_until_ready"):
        r[0].block_until_ready()
    print(f"{(time.perf_counter() - t) / calls * 1e3} {(time.process_time() - c) / calls * 1e3}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", help="comma-separated WORKLOAD:SIZE:DTYPE, e.g. W3:256:float64")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=300, help="calls per process")
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        return child(a.child[0], a.child[1], int(a.child[2]))
    cpu = sorted(os.sched_getaffinity(0))[-1]
    env = dict(os.environ, **ONE_THREAD)
    load0 = os.getloadavg()
    rows = []
    for spec in a.cases.split(","):
        got = {"symgrad": [], "jax": []}
        for r in range(a.rounds):
            for peer in (("symgrad", "jax") if r % 2 == 0 else ("jax", "symgrad")):
                out = subprocess.run(
                    [sys.executable, __file__, "x", "--child", peer, spec, str(a.calls)],
                    env=env, capture_output=True, text=True, check=True,
                    preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
                got[peer].append([float(x) for x in out.stdout.split()[-2:]])
        med = {p: [statistics.median(v[i] for v in got[p]) for i in (0, 1)] for p in got}
        rows.append((spec, med))
    load1 = os.getloadavg()
    print(f"pinned to CPU {cpu}; load average before {load0[0]:.1f} {load0[1]:.1f} {load0[2]:.1f}"
          f", after {load1[0]:.1f} {load1[1]:.1f} {load1[2]:.1f}; {a.rounds} rounds x "
          f"{a.calls} calls\n")
    print("| case | symgrad CPU ms | JAX CPU ms | sg / JAX (CPU) | symgrad wall ms | JAX wall ms "
          "| sg / JAX (wall) |")
    print("|---|---|---|---|---|---|---|")
    for spec, m in rows:
        (sw, sc), (jw, jc) = m["symgrad"], m["jax"]
        print(f"| {spec} | {sc:.3f} | {jc:.3f} | {sc / jc:.2f} | {sw:.3f} | {jw:.3f} | "
              f"{sw / jw:.2f} |")


if __name__ == "__main__":
    main()
