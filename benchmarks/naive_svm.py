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


def main(quick):
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
    main(parser.parse_args().quick)
