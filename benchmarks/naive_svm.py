"""Issue 19: cs231n's naive SVM loss, compiled as written, against the vectorized version and
against the same loops run by Python.

    python benchmarks/naive_svm.py            # N = 256, D = 3073, C = 10 (CIFAR-10 shapes)
    python benchmarks/naive_svm.py --quick    # N = 32: a smoke check

Rows (float64, value and gradient w.r.t. W in one call unless said otherwise):
- naive, symgrad C:      ``symgrad.compile(svm_loss_naive).value_and_grad`` (examples/
                         naive_losses.py,
                         the double loop with ``continue`` and ``if margin > 0:`` as written);
- vectorized, symgrad C: ``symgrad.compile(svm_loss_vectorized).value_and_grad``;
- naive, symgrad C, value only: the compiled function's value;
- naive, Python:         the same function called directly (NumPy; the value only: plain
                         Python has no gradient);

No Python peer differentiates these loops as written: autograd's boxes do not survive
``X[i].dot(W)`` (an ndarray method given a box turns it into an object array and does not
finish at N = 32 in 400 s), and JAX refuses ``if margin > 0:`` on a traced value.
The rows are timed interleaved (one call of each row per round, rounds for about 3 s per row,
at least 5), each reported as the median wall-clock time and the median process CPU time of
its calls: on the shared machine the CPU time is the steadier figure (a call preempted by
another process keeps its CPU time). Pin the process for a fair comparison
(``taskset -c 1 python benchmarks/naive_svm.py``; the thread pool then shares that core).
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "examples"))
sys.path.insert(0, os.path.join(HERE, ".."))

import symgrad  # noqa: E402
import naive_losses as L  # noqa: E402


def timed(fns, budget=3.0, least=5):
    """Median (wall, CPU) seconds per call of each of ``fns``, called in interleaved rounds."""
    walls, cpus = [[] for _ in fns], [[] for _ in fns]
    start = time.perf_counter()
    while (len(walls[0]) < least or time.perf_counter() - start < budget * len(fns)) \
            and len(walls[0]) < 400:
        for k, fn in enumerate(fns):
            c, t = time.process_time(), time.perf_counter()
            fn()
            walls[k].append(time.perf_counter() - t)
            cpus[k].append(time.process_time() - c)
    return [(statistics.median(w), statistics.median(c)) for w, c in zip(walls, cpus)]


def first(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(quick):
    N = 32 if quick else 256
    W, X, y = L.cifar_like(N)
    reg = 5e-6
    naive = symgrad.compile(L.svm_loss_naive)
    vectorized = symgrad.compile(L.svm_loss_vectorized)
    (v1, g1), t_first_naive = first(lambda: naive.value_and_grad(W, X, y, reg))
    (v2, g2), t_first_vec = first(lambda: vectorized.value_and_grad(W, X, y, reg))
    assert abs(v1 - v2) <= 1e-12 * abs(v2) and np.max(np.abs(g1 - g2)) <= 1e-12
    names = ["naive, symgrad C", "vectorized, symgrad C", "naive, symgrad C, value only",
             "naive, Python (value only)"]
    times = timed([lambda: naive.value_and_grad(W, X, y, reg),
                   lambda: vectorized.value_and_grad(W, X, y, reg),
                   lambda: naive(W, X, y, reg),
                   lambda: L.svm_loss_naive(W, X, y, reg)])
    firsts = [t_first_naive, t_first_vec, None, None]
    rows = [(name, wall, cpu, t0) for name, (wall, cpu), t0 in zip(names, times, firsts)]
    base_wall, base_cpu = rows[1][1], rows[1][2]
    print(f"svm_loss_naive, N={N}, D={X.shape[1]}, C={W.shape[1]}, float64; "
          f"{os.cpu_count()} cores (shared), load average {os.getloadavg()[0]:.2f}")
    print(f"  {'':28s} {'wall':>9s}    {'':>13s}  {'CPU':>9s}")
    for name, wall, cpu, t0 in rows:
        extra = f"   first call {t0:.2f} s" if t0 is not None else ""
        print(f"  {name:28s} {wall * 1e3:9.3f} ms {wall / base_wall:6.2f} x vec. "
              f"{cpu * 1e3:9.3f} ms {cpu / base_cpu:6.2f} x vec.{extra}")
    print(f"  Python loops / compiled naive: {rows[3][1] / rows[2][1]:.1f} x (value only, wall), "
          f"{rows[3][2] / rows[2][2]:.1f} x (CPU); Python's value alone / symgrad's value and "
          f"gradient: {rows[3][1] / rows[0][1]:.2f} x (wall)")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    main(parser.parse_args().quick)
