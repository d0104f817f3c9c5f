"""Issue 19: cs231n's naive SVM loss, compiled as written, against the vectorized version and
against the same loops run by Python.

    python benchmarks/naive_svm.py            # N = 256, D = 3073, C = 10 (CIFAR-10 shapes)
    python benchmarks/naive_svm.py --quick    # N = 32: a smoke check
    benchmarks/.venv/bin/python benchmarks/naive_svm.py --autograd   # adds autograd (slow)

Rows (float64, value and gradient w.r.t. W in one call unless said otherwise):
- naive, symgrad C:      ``symgrad.compile(svm_loss_naive).value_and_grad`` (examples/naive_losses.py,
                         the double loop with ``continue`` and ``if margin > 0:`` as written);
- vectorized, symgrad C: ``symgrad.compile(svm_loss_vectorized).value_and_grad``;
- naive, symgrad C, value only: the compiled function's value;
- naive, Python:         the same function called directly (NumPy; the value only: plain
                         Python has no gradient);
- naive, autograd:       with ``--autograd``: ``autograd.value_and_grad(svm_loss_naive)`` (the same
                         loops in Python, with a gradient; one call: it takes minutes and GBs
                         at N = 256).
Each row: median of repeated calls (at least 5, about 3 s per row); first call separately.
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


def timed(fn, budget=3.0, least=5):
    times, start = [], time.perf_counter()
    while len(times) < least or time.perf_counter() - start < budget:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 200:
            break
    return statistics.median(times)


def first(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def main(quick, with_autograd=False):
    N = 32 if quick else 256
    W, X, y = L.cifar_like(N)
    reg = 5e-6
    naive = symgrad.compile(L.svm_loss_naive)
    vectorized = symgrad.compile(L.svm_loss_vectorized)
    (v1, g1), t_first_naive = first(lambda: naive.value_and_grad(W, X, y, reg))
    (v2, g2), t_first_vec = first(lambda: vectorized.value_and_grad(W, X, y, reg))
    assert abs(v1 - v2) <= 1e-12 * abs(v2) and np.max(np.abs(g1 - g2)) <= 1e-12
    rows = [("naive, symgrad C", timed(lambda: naive.value_and_grad(W, X, y, reg)),
             t_first_naive),
            ("vectorized, symgrad C", timed(lambda: vectorized.value_and_grad(W, X, y, reg)),
             t_first_vec),
            ("naive, symgrad C, value only", timed(lambda: naive(W, X, y, reg)), None),
            ("naive, Python (value only)", timed(lambda: L.svm_loss_naive(W, X, y, reg)), None)]
    try:
        if not with_autograd:
            raise ImportError
        import autograd
        import autograd.numpy as anp
        L.np = anp                      # the example module's np, for autograd's boxes
        try:
            vg = autograd.value_and_grad(L.svm_loss_naive)
            v3, g3 = vg(W, X, y, reg)
            assert abs(v3 - v1) <= 1e-12 * abs(v1) and np.max(np.abs(g3 - g1)) <= 1e-12
            rows.append(("naive, autograd", timed(lambda: vg(W, X, y, reg), 0, 1), None))
        finally:
            L.np = np
    except ImportError:
        pass
    base = rows[1][1]
    print(f"svm_loss_naive, N={N}, D={X.shape[1]}, C={W.shape[1]}, float64; "
          f"{os.cpu_count()} cores (shared)")
    for name, t, t0 in rows:
        extra = f"   first call {t0:.2f} s" if t0 is not None else ""
        print(f"  {name:28s} {t * 1e3:9.3f} ms   {t / base:7.2f} x vectorized{extra}")
    print(f"  Python loops / compiled naive: {rows[3][1] / rows[2][1]:.1f} x (value only), "
          f"{rows[3][1] / rows[0][1]:.2f} x (Python's value alone vs symgrad's value and "
          f"gradient)")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--autograd", action="store_true")
    args = parser.parse_args()
    main(args.quick, args.autograd)
