"""Data-parallel gradients on a Dask cluster (API.md §4; docs/distributed.md).

Contract:

- ``value_and_grad(f, params, shards, client, reduce="mean")``: ``f(params, *shard)`` is the
  loss on one shard; returns ``(value, grads)`` over all shards, ``grads`` in the structure of
  ``params`` (an array or any pytree of arrays, ``symgrad.tree_util``). With
  ``"mean"`` each shard's value and gradient are weighted by its rows (axis 0 of its first
  array), so a per-shard mean loss gives the mean over all rows; ``"sum"`` adds them.
- ``shards`` is a list of shards, each a tuple of NumPy arrays, Dask arrays or Dask futures
  (or one future whose result is such a tuple); or the data itself as a tuple of Dask arrays
  chunked along axis 0, one shard per chunk. ``put(shards, client)`` places them on the
  workers once and returns shards of futures, to pass to every later call.
- ``minimize(f, params, optimizer, shards, client, steps)`` trains with full-data steps, the
  shards placed once and reused every step; returns a ``symgrad.optim.MinimizeResult``.
- ``ShardedLoss(f, params, shards, client)`` is that per-step gradient on its own:
  ``value_and_grad(*leaves)``, the call ``symgrad.optim.minimize`` makes on its compiled loss.

Dask does the scheduling, the data transfer and the recovery: one task per shard runs the
compiled value and gradient where the shard lives. NumPy shards are placed as Dask tasks
holding the arrays (not with ``client.scatter``): a task's result has lineage, so when a worker
dies Dask recomputes its shards elsewhere and reruns the gradient tasks it was running, while
scattered data would be lost with the worker.

The loss is wrapped by ``symgrad.compile`` on the client (gradient for every leaf of ``params``;
nothing is traced there) and travels to the workers pickled as its function and options
(``CompiledFunction.__reduce__``); each worker process keeps one compiled
function per content, and compiles the data's row count as a run-time size ``N``, so shards of
any size share one native function: the C compiler runs at most once per worker per loss (none
when the worker's disk cache already holds the library).
"""
from __future__ import annotations

import math
import os
import threading

import numpy as np

from symgrad import training
from symgrad.api import CompiledFunction, compile
from symgrad.core.types import LONG_TO_SHORT, canonical_dtype
from symgrad.training import Batches, FlatLoss, train
from symgrad.tree_util import tree_flatten, tree_unflatten

__all__ = ["value_and_grad", "minimize", "put", "ShardedLoss"]

REDUCTIONS = ("mean", "sum")


def _dask():
    try:
        import dask.array
        import distributed
    except ImportError as e:
        raise ImportError("symgrad.distributed needs Dask's distributed scheduler: "
                          "pip install 'symgrad[distributed]'") from e
    return dask.array, distributed


# -- the loss as a function of the parameters' leaves ----------------------------------------

def _compile_flat(f, params):
    """(compiled flat loss, leaves as float arrays, treedef)."""
    leaves, treedef = tree_flatten(params)
    leaves = [_float_array(p) for p in leaves]
    options = {}
    if isinstance(f, CompiledFunction):
        options = dict(backend=f.backend, dtype=f.dtype, cache_dir=f.cache_dir, cflags=f.cflags)
        f = f.fn
    compiled = compile(FlatLoss(f, treedef, len(leaves)),
                       argnums=tuple(range(len(leaves))), **options)
    return compiled, leaves, treedef


def _float_array(p):
    p = np.asarray(p)
    return p if p.dtype.kind == "f" else p.astype(np.float64)


# -- on the workers --------------------------------------------------------------------------
# One compiled function per (loss, data types) in this process: the loss's specializations
# with the row count as a run-time size N, so every shard size runs one native function.

_BATCHED = {}
_BATCHED_LOCK = threading.Lock()


def _batched(compiled, leaves, shard):
    tail = tuple((np.shape(a)[1:], np.asarray(a).dtype.str) for a in shard)
    key = (compiled, tail)
    cf = _BATCHED.get(key)
    if cf is None:
        with _BATCHED_LOCK:
            cf = _BATCHED.get(key)
            if cf is None:
                cf = _BATCHED[key] = _with_runtime_rows(compiled, leaves, shard)
    return cf


def _with_runtime_rows(compiled, leaves, shard):
    """``compiled`` with a signature making axis 0 of every data array a run-time size; the
    loss as it is when it cannot be traced that way (say it builds an array of ``len(X)``
    elements), which then compiles per shard size."""
    k = len(leaves)
    signature = {k + j: "{}[{}]".format(LONG_TO_SHORT[canonical_dtype(np.asarray(a).dtype)],
                                        ",".join(["N", *map(str, np.shape(a)[1:])]))
                 for j, a in enumerate(shard) if np.ndim(a) >= 1}
    if not signature:
        return compiled
    try:
        cf = CompiledFunction(compiled.fn, argnums=compiled.argnums, signature=signature,
                              backend=compiled.backend, dtype=compiled.dtype,
                              cache_dir=compiled.cache_dir, cflags=compiled.cflags)
        cf.specialize(*leaves, *shard)
        return cf
    except Exception:       # whatever it was recurs (or not) when traced with concrete sizes
        return compiled


def _shard_value_and_grad(compiled, leaves, shard):
    """Runs on a worker: ``(value, grads, rows)`` of the loss on one shard."""
    shard = tuple(shard)
    value, grads = _batched(compiled, leaves, shard).value_and_grad(*leaves, *shard)
    rows = len(shard[0]) if shard and np.ndim(shard[0]) >= 1 else 1
    return value, grads, rows


def _hold(a):
    return a


# -- placing the data --------------------------------------------------------------------------

def put(shards, client):
    """The shards placed on the workers: a list of tuples of futures, to reuse across calls.

    Takes what ``value_and_grad`` takes. NumPy arrays become Dask tasks holding them (Dask
    recomputes them on another worker if theirs dies), Dask arrays are computed on the cluster
    (a tuple of Dask arrays splits into one shard per chunk along axis 0), futures are kept.
    """
    da, distributed = _dask()
    if isinstance(shards, da.Array):
        shards = (shards,)
    if isinstance(shards, tuple) and shards and all(isinstance(a, da.Array) for a in shards):
        return _chunks(shards, client, da)
    if not isinstance(shards, (list, tuple)) or not shards:
        raise ValueError("shards must be a non-empty list of shards (tuples of arrays or "
                         "futures) or a tuple of Dask arrays chunked along axis 0")
    placed = []
    for i, shard in enumerate(shards):
        if isinstance(shard, distributed.Future):
            placed.append(shard)
            continue
        if not isinstance(shard, (tuple, list)):
            shard = (shard,)
        placed.append(tuple(_place(a, client, da, distributed) for a in shard))
    return placed


def _place(a, client, da, distributed):
    if isinstance(a, distributed.Future):
        return a
    if isinstance(a, da.Array):
        return client.compute(a)
    return client.submit(_hold, np.asarray(a), key=f"symgrad-shard-{os.urandom(16).hex()}")


def _chunks(arrays, client, da):
    """One shard per chunk along axis 0 of ``arrays`` (which must share those chunks)."""
    rows = arrays[0].chunks[0]
    if any(a.ndim == 0 or a.chunks[0] != rows for a in arrays):
        raise ValueError(f"the Dask arrays must be chunked alike along axis 0; got "
                         f"{[a.chunks[0] if a.ndim else () for a in arrays]}")
    blocks = []
    for a in arrays:
        if any(len(c) > 1 for c in a.chunks[1:]):
            a = a.rechunk({axis: -1 for axis in range(1, a.ndim)})
        blocks.append(a.to_delayed().reshape(-1))
    futures = client.compute([b for per_array in blocks for b in per_array])
    n = len(rows)
    return [tuple(futures[j * n + i] for j in range(len(arrays))) for i in range(n)]


# -- the API -----------------------------------------------------------------------------------

class ShardedLoss:
    """``f`` over ``shards`` placed on a cluster once; ``value_and_grad(*leaves)`` per step.

    It has the call ``symgrad.optim.minimize`` makes on its compiled loss
    (``value_and_grad(*leaves, *batch)`` with an empty batch, returning the value and one
    gradient per leaf), so a training loop can use it in the compiled loss's place.
    ``leaves`` are the leaves of ``params`` in ``symgrad.tree_util.tree_flatten`` order.
    """

    def __init__(self, f, params, shards, client, reduce="mean", retries=0):
        if reduce not in REDUCTIONS:
            raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")
        self.compiled, self.leaves, self.treedef = _compile_flat(f, params)
        self.shards = put(shards, client)
        self.client, self.reduce, self.retries = client, reduce, retries

    def value_and_grad(self, *leaves):
        """The reduced ``(value, gradient per leaf)``: one Dask task per shard, combined on the
        client; a task's exception is re-raised here."""
        leaves = [np.asarray(p, dtype=q.dtype) for p, q in zip(leaves, self.leaves)]
        step = os.urandom(16).hex()      # as uuid4, without importing uuid (and platform)
        futures = [self.client.submit(_shard_value_and_grad, self.compiled, leaves, shard,
                                      retries=self.retries,
                                      key=f"symgrad-value-and-grad-{step}-{i}")
                   for i, shard in enumerate(self.shards)]
        results = self.client.gather(futures)
        total = sum(rows for _, _, rows in results)
        weights = [rows / total if self.reduce == "mean" else 1.0 for _, _, rows in results]
        value = math.fsum(w * v for w, (v, _, _) in zip(weights, results))
        grads = tuple(np.asarray(sum(w * g[i] for w, (_, g, _) in zip(weights, results)),
                                 dtype=p.dtype).reshape(p.shape)
                      for i, p in enumerate(leaves))
        return value, grads


def value_and_grad(f, params, shards, client, reduce="mean", retries=0):
    """``(value, grads)`` of ``f(params, *shard)`` combined over ``shards`` on a Dask cluster.

    ``f``: a symgrad-traceable loss (a ``symgrad.compile``d one is unwrapped, keeping its
    backend, dtype, cache_dir and cflags). ``params``: an array or a nested tuple/list/dict of
    float arrays; ``grads`` comes back in its structure. ``shards``: see the module docstring
    (``put`` places them once for repeated calls). ``reduce``: ``"mean"`` weights each shard by
    its rows, ``"sum"`` adds. ``retries``: passed to Dask for tasks that raise (a worker's death
    is recovered by Dask in any case). Raises ValueError for an unknown ``reduce``; a task's
    exception is re-raised here.
    """
    loss = ShardedLoss(f, params, shards, client, reduce, retries)
    value, grads = loss.value_and_grad(*loss.leaves)
    return value, tree_unflatten(loss.treedef, grads)


def minimize(f, params, optimizer, shards, client, steps, reduce="mean", callback=None,
             retries=0):
    """Train ``params`` by ``steps`` full-data steps of ``optimizer`` on a Dask cluster.

    Each step is the combined value and gradient over ``shards`` (as ``value_and_grad``)
    followed by ``optimizer.step``; the shards are placed on the workers once (``put``) and
    reused every step, and only the parameters and gradients travel. ``callback(step, params,
    loss)`` runs after each step (True stops). Returns a ``symgrad.optim.MinimizeResult`` whose
    ``history`` holds the loss before each update; one epoch is one step. A loss that is not
    finite stops the run.
    """
    loss = ShardedLoss(f, params, shards, client, reduce, retries)
    leaves = [np.array(p) for p in loss.leaves]
    return train(loss, leaves, loss.treedef, optimizer, Batches(None, None, None), steps,
                 callback)


training.sharded_loss = ShardedLoss     # optim.minimize(client=...) finds it here
