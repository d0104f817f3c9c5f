"""Factorizations: symgrad's C (LAPACK above linalg.LAPACK_MIN in JIT builds; ``--own`` forces
symgrad's own routines, as ahead-of-time libraries run them) against NumPy's LAPACK.

    OPENBLAS_NUM_THREADS=1 python benchmarks/linalg_sizes.py [--own]

Prints the best of a few calls in milliseconds per size and operation (docs/linalg.md quotes it).
"""
import sys
import time

import numpy as np

import symgrad
import symgrad.core.primitives.linalg as primitives
from symgrad.numpy import linalg as sla

if "--own" in sys.argv:
    primitives.LAPACK_MIN = 10**9


def best(f, *args, reps=5):
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f(*args)
        times.append(time.perf_counter() - t)
    return min(times)


def main():
    rng = np.random.default_rng(0)
    print(f"{'n':>4} {'op':<9} {'symgrad ms':>11} {'numpy ms':>9}")
    for n in (10, 50, 200):
        a = rng.standard_normal((n, n)) + n * np.eye(n)
        s = a @ a.T
        b = rng.standard_normal((n, 1))
        ops = (("solve", lambda a, b: sla.solve(a, b), np.linalg.solve, (a, b)),
               ("cholesky", sla.cholesky, np.linalg.cholesky, (s,)),
               ("slogdet", lambda a: sla.slogdet(a)[1], lambda a: np.linalg.slogdet(a)[1], (a,)),
               ("qr", lambda a: sla.qr(a)[1], lambda a: np.linalg.qr(a)[1], (a,)),
               ("eigh", lambda s: sla.eigh(s)[1], lambda s: np.linalg.eigh(s)[1], (s,)),
               ("svd", lambda a: sla.svd(a)[1], lambda a: np.linalg.svd(a)[1], (a,)))
        for name, ours, theirs, args in ops:
            f = symgrad.compile(ours)
            f(*args)
            reps = 3 if n == 200 else 5
            print(f"{n:>4} {name:<9} {1e3 * best(f, *args, reps=reps):>11.3f} "
                  f"{1e3 * best(theirs, *args):>9.3f}")


if __name__ == "__main__":
    main()
