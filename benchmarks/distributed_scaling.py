"""Time per data-parallel gradient step against the number of Dask workers (issue 11).

    python benchmarks/distributed_scaling.py [--rows 200000] [--features 64] [--steps 10]

For 1 and 2 local worker processes (one thread each, loopback), the softmax loss over
``--rows`` rows split into one shard per worker: the median time of a value-and-gradient step
(shards placed on the workers once, as training does), next to the same step in one process.
A step of a tiny problem (1,000 rows) measures the fixed per-step overhead of going through Dask.
Prints a Markdown table. Needs ``pip install 'symgrad[distributed]'``.
"""
from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import symgrad
import symgrad.numpy as snp
from symgrad import distributed


def softmax_loss(W, X, y):
    scores = X @ W
    scores = scores - snp.max(scores, axis=1, keepdims=True)
    logp = scores - snp.log(snp.sum(snp.exp(scores), axis=1, keepdims=True))
    return -snp.mean(logp[snp.arange(X.shape[0]), y])


def data(rows, features, classes=10, seed=0):
    r = np.random.default_rng(seed)
    return (r.standard_normal((features, classes)) * 0.01, r.standard_normal((rows, features)),
            r.integers(0, classes, rows))


def median_time(fn, steps):
    fn()                                    # compile / warm up
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rows", type=int, default=200_000)
    p.add_argument("--features", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    ns = p.parse_args(argv)
    from distributed import Client, LocalCluster

    rows = {"large": ns.rows, "tiny": 1_000}
    single = {}
    for label, n in rows.items():
        W, X, y = data(n, ns.features)
        f = symgrad.compile(softmax_loss)
        single[label] = median_time(lambda: f.value_and_grad(W, X, y), ns.steps)
    table = [("1 process (no Dask)", single["large"], single["tiny"])]
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          host="127.0.0.1", dashboard_address=None) as cluster, \
                Client(cluster) as client:
            measured = {}
            for label, n in rows.items():
                W, X, y = data(n, ns.features)
                bounds = np.linspace(0, n, workers + 1).astype(int)
                shards = distributed.put([(X[a:b], y[a:b]) for a, b in zip(bounds, bounds[1:])],
                                         client)
                measured[label] = median_time(
                    lambda: distributed.value_and_grad(softmax_loss, W, shards, client),
                    ns.steps)
            table.append((f"{workers} worker{'s' if workers > 1 else ''}", measured["large"],
                          measured["tiny"]))
    print(f"softmax loss, {ns.rows} x {ns.features} rows, 10 classes; median of {ns.steps} "
          f"steps\n")
    print(f"| run | ms per step, {ns.rows} rows | ms per step, 1000 rows (overhead) |")
    print("|---|---:|---:|")
    for name, large, tiny in table:
        print(f"| {name} | {large * 1e3:.1f} | {tiny * 1e3:.1f} |")


if __name__ == "__main__":
    main()
