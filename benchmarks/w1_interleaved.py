#!/usr/bin/env python
"""W1 against its floors, interleaved (issue 20, goal 3): symgrad's ``value_and_grad`` on Python
floats, the hand-written C through cffi's API mode (``floors/``) and the hand-written Python
gradient, in shuffled rounds of 2,000 calls each; medians of 41 rounds.

    taskset -c 1 benchmarks/.venv/bin/python benchmarks/w1_interleaved.py

symgrad is measured on its steady path: after its CPython entry library has been built (in the
background on a function's first call with a fresh cache, backends/c/pyentry.py) and loaded.
"""
from __future__ import annotations

import random
import statistics
import sys
import tempfile
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import workloads as wls  # noqa: E402
from symgrad.backends.c import pyentry  # noqa: E402

PEERS = ("symgrad", "c_floor", "numpy")
ROUNDS, CALLS = 41, 2000


def main():
    for name in ("W1a", "W1b"):
        wl = wls.WORKLOADS[name]
        case = wl.cases(False)[0]
        fns = {p: wls.PEERS[p](wl, case, cache_dir=tempfile.mkdtemp()) for p in PEERS}
        for fn, args, _ in fns.values():
            fn(*args)
        pyentry.wait()
        samples = {p: [] for p in PEERS}
        order = list(PEERS)
        rnd = random.Random(0)
        for _ in range(ROUNDS):
            rnd.shuffle(order)
            for p in order:
                fn, args, _ = fns[p]
                samples[p].append(timeit.timeit(lambda: fn(*args), number=CALLS) / CALLS * 1e6)
        med = {p: statistics.median(v) for p, v in samples.items()}
        print(f"{name}: symgrad {med['symgrad']:.3f} us, hand C (cffi API) {med['c_floor']:.3f} "
              f"us, hand Python {med['numpy']:.3f} us; symgrad / C floor "
              f"{med['symgrad'] / med['c_floor']:.2f}, / Python {med['symgrad'] / med['numpy']:.2f}")


if __name__ == "__main__":
    main()
