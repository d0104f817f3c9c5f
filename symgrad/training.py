"""The training loop shared by ``symgrad.optim.minimize`` and ``symgrad.distributed.minimize``.

Contract:

- ``FlatLoss(f, treedef, n_leaves)``: the loss ``f(params, *data)`` as a function of the leaves
  of ``params`` (``symgrad.tree_util`` order) followed by the data, its parameters named after
  the leaves' key paths (``params_W1``); a class, so it pickles by reference to ``f``.
- ``Batches(data, batch_size, seed)``: seeded, shuffled mini-batches; ``Progress``: the bar.
- ``train(compiled, leaves, treedef, optimizer, batches, total, ...)`` runs ``total`` steps of
  ``compiled.value_and_grad(*leaves, *batch)`` then ``optimizer.step`` and returns a
  ``MinimizeResult``.
- ``sharded_loss``: how ``optim.minimize(client=...)`` gets a cluster's loss without importing
  ``symgrad.distributed`` (which registers ``ShardedLoss`` here when it is imported), so the
  dependency runs one way: distributed -> training <- optim.
"""
from __future__ import annotations

import inspect
import math
import sys
import time
from dataclasses import dataclass

import numpy as np

from symgrad.frontend.calls import Layout
from symgrad.tree_util import tree_flatten, tree_unflatten

# Functions here are traced as the user's own code (symgrad.core.ir.user_location).
TRACED_AS_USER_CODE = True

sharded_loss = None     # set by symgrad.distributed: ShardedLoss(f, params, shards, client)


class FlatLoss:
    """``f(params, *data)`` as a function of the leaves of ``params`` followed by the data.

    A class rather than a closure so it pickles by reference (with ``f``, when ``f`` is
    importable) and to the same bytes every time, which is what lets a Dask worker recognise a
    loss it has already compiled.
    """

    def __init__(self, f, treedef, n_leaves):
        self.f = f
        self.treedef = treedef
        self.n_leaves = n_leaves
        self.__name__ = self.__qualname__ = getattr(f, "__name__", "loss")

    def __call__(self, *args):
        k = self.n_leaves
        return self.f(tree_unflatten(self.treedef, args[:k]), *args[k:])

    @property
    def __signature__(self):
        """Leaves named after ``f``'s first parameter and their key paths (``params_W1``,
        ``params_0``), then ``f``'s data parameters, so traces and generated C read like the
        user's code."""
        try:
            params = list(inspect.signature(self.f).parameters.values())
        except (TypeError, ValueError):
            params = []
        positional = [p.name for p in params
                      if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        base = positional[0] if positional else "params"
        data = positional[1:]
        names = Layout([self.treedef]).entry_names([base])
        for i, name in enumerate(data):
            while name in names[:self.n_leaves]:
                name += "_"
            data[i] = name
        kind = inspect.Parameter.POSITIONAL_ONLY
        out = [inspect.Parameter(n, kind) for n in names + data]
        if not positional or any(p.kind == p.VAR_POSITIONAL for p in params):
            out.append(inspect.Parameter("data", inspect.Parameter.VAR_POSITIONAL))
        return inspect.Signature(out)


def float_copy(p):
    """A copy of ``p`` as a float array (float64 unless it already is a float array)."""
    p = np.asarray(p)
    return np.array(p, dtype=p.dtype if p.dtype.kind == "f" else np.float64)


@dataclass
class MinimizeResult:
    """What ``minimize`` reached.

    ``params``: the final parameters (structure of the initial ones). ``history``: the loss per
    step, each evaluated at the parameters before that step's update (on that step's batch).
    ``best_params``/``best_loss``: the parameters with the lowest loss in ``history`` (with
    mini-batches, the lowest batch loss). ``message`` says why the loop stopped.
    """

    params: object
    history: np.ndarray
    best_params: object
    best_loss: float
    steps: int
    epochs: float
    message: str
    wall_time: float


def train(compiled, leaves, treedef, optimizer, batches, total, callback=None, bar=None):
    """The training loop of ``minimize`` (also ``symgrad.distributed.minimize``'s): ``total``
    steps of ``compiled.value_and_grad(*leaves, *batch)`` then ``optimizer.step``; stops early
    on a loss that is not finite, a callback returning True, or Ctrl-C. Returns a
    MinimizeResult."""
    bar = bar or Progress(total, False)
    history, best_loss, best = [], math.inf, leaves
    message, step, start = "done", 0, time.perf_counter()
    try:
        while step < total:
            batch = batches.next()
            value, grads = compiled.value_and_grad(*leaves, *batch)
            history.append(value)
            if not math.isfinite(value):
                message = f"stopped: the loss is {value} at step {step}"
                break
            if value < best_loss:
                best_loss, best = value, leaves
            leaves = tree_flatten(optimizer.step(list(leaves), list(grads)))[0]
            step += 1
            bar.update(value, optimizer)
            if callback is not None and callback(step, tree_unflatten(treedef, leaves), value):
                message = f"stopped by the callback at step {step}"
                break
    except KeyboardInterrupt:
        message = f"interrupted at step {step}"
    finally:
        bar.close()
    return MinimizeResult(params=tree_unflatten(treedef, leaves), history=np.asarray(history),
                          best_params=tree_unflatten(treedef, best), best_loss=best_loss,
                          steps=step, epochs=batches.epochs_done(step), message=message,
                          wall_time=time.perf_counter() - start)


class Batches:
    """Seeded, shuffled mini-batches of ``data`` (a tuple of arrays), one epoch after another."""

    def __init__(self, data, batch_size, seed):
        if data is None:
            data = ()
        elif not isinstance(data, (tuple, list)):
            data = (data,)
        self.data = tuple(np.asarray(a) for a in data)
        self.n = len(self.data[0]) if self.data else 0
        if any(len(a) != self.n for a in self.data):
            raise ValueError(f"data arrays differ in length: {[len(a) for a in self.data]}")
        if self.data and self.n == 0:
            raise ValueError("data is empty")
        self.shuffle = batch_size is not None and bool(self.data)
        self.batch_size = batch_size or max(self.n, 1)
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.per_epoch = math.ceil(self.n / self.batch_size) if self.data else 1
        self.rng = np.random.default_rng(seed)
        self.order, self.pos = None, 0

    def steps_for(self, epochs):
        return None if epochs is None else int(math.ceil(epochs * self.per_epoch))

    def epochs_done(self, steps):
        return steps / self.per_epoch

    def next(self):
        if not self.data:
            return ()
        if not self.shuffle:
            return self.data
        if self.order is None or self.pos >= self.n:
            self.order, self.pos = self.rng.permutation(self.n), 0
        idx = self.order[self.pos:self.pos + self.batch_size]
        self.pos += self.batch_size
        return tuple(a[idx] for a in self.data)


class Progress:
    """A tqdm bar with the loss, or a one-line status on stderr when tqdm is not installed.

    While training the bar shows a running average of the loss (mini-batch losses are noisy),
    updated at most five times a second; the last step, and a run that stops early, show the
    loss of the last step, so the bar never ends on a stale number."""

    def __init__(self, total, enabled):
        self.enabled, self.total, self.n = enabled, total, 0
        self.smooth, self.last, self.start = None, 0.0, time.perf_counter()
        self.loss, self.lr = None, None
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, unit="step", dynamic_ncols=True, leave=True)

    def update(self, loss, optimizer):
        if not self.enabled:
            return
        self.n += 1
        self.smooth = loss if self.smooth is None else 0.95 * self.smooth + 0.05 * loss
        self.loss, self.lr = loss, optimizer.learning_rate()
        now = time.perf_counter()
        if self.bar is not None:
            if self.n == self.total:
                self._final()
            self.bar.update(1)
            if now - self.last > 0.2 and self.n < self.total:
                self.bar.set_postfix(loss=f"{self.smooth:.4g}",
                                     lr=f"{optimizer.learning_rate():.3g}", refresh=False)
                self.last = now
        elif now - self.last > 0.5 or self.n == self.total:
            self._status(self.loss if self.n == self.total else self.smooth, now)
            self.last = now

    def _status(self, loss, now):
        rate = self.n / max(now - self.start, 1e-9)
        print(f"\rstep {self.n}/{self.total}  loss {loss:.4g}  {rate:.0f} steps/s",
              end="", file=sys.stderr, flush=True)

    def _final(self):
        """The postfix of the last step: its own loss, not the running average."""
        self.bar.set_postfix(loss=f"{self.loss:.4g}", lr=f"{self.lr:.3g}", refresh=False)

    def close(self):
        if self.bar is not None:
            if self.loss is not None and self.n < self.total:      # stopped early
                self._final()
                self.bar.refresh()
            self.bar.close()
        elif self.enabled and self.n:
            if self.n < self.total:
                self._status(self.loss, time.perf_counter())
            print(file=sys.stderr, flush=True)
