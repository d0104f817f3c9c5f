"""Optimizers and a training loop for symgrad losses (API.md §4).

Contract:

- ``SGD``, ``Adagrad``, ``RMSProp`` and ``Adam`` update parameters with
  ``params = opt.step(params, grads)``. ``params`` is an array or any pytree of arrays
  (``symgrad.tree_util``: tuples, lists, dicts with their keys sorted as in JAX, named tuples,
  registered classes); the result has the same structure. Each optimizer keeps its state (momentum,
  squared-gradient averages, the step count) for every leaf, packed with the other leaves of
  its dtype into one vector (``leaf_state(i)`` shows one leaf's).
- Each update rule is written once, below, as a symgrad function of
  ``(param, grad, state..., hyperparameters...)`` returning ``(new param, new state...)``; it is
  compiled by ``symgrad.compile`` into one fused C loop, run over all leaves of one dtype packed
  into one vector. Hyperparameters are scalar arguments, so a learning-rate schedule never
  recompiles anything.
- ``lr`` is a number or a callable of the step count ``t`` (0 for the first step); the schedule
  helpers ``step_decay``, ``exponential_decay`` and ``cosine_decay`` build such callables.
- ``minimize(f, params, optimizer, ...)`` runs mini-batch training of ``f(params, *batch)`` and
  returns a ``MinimizeResult``; Ctrl-C stops it cleanly with the parameters reached so far.
- ``flatten(params)`` returns ``(x, unflatten)`` for optimizers that want one 1-D vector
  (``scipy.optimize.minimize``).
"""
from __future__ import annotations

import math

import numpy as np

from symgrad import numpy as snp
from symgrad import training
from symgrad.api import CompiledFunction, compile
from symgrad.core.types import LONG_TO_SHORT, canonical_dtype
from symgrad.training import Batches, FlatLoss, MinimizeResult, Progress, float_copy, train
from symgrad.tree_util import tree_flatten, tree_unflatten

# Functions here are traced as the user's own code (symgrad.core.ir.user_location).
TRACED_AS_USER_CODE = True

__all__ = ["Optimizer", "SGD", "Adagrad", "RMSProp", "Adam", "step_decay", "exponential_decay",
           "cosine_decay", "minimize", "MinimizeResult", "flatten"]


# -- parameter structures --------------------------------------------------------------------

def flatten(params):
    """``(x, unflatten)``: every leaf of ``params`` raveled into one 1-D float array ``x``.

    ``unflatten(x)`` returns arrays of the original shapes in the original structure (an array,
    or any pytree of arrays; leaves in ``symgrad.tree_util`` order, dict keys sorted), so a loss
    over several arrays plugs into optimizers that take one vector::

        x0, unflatten = flatten((A, omega))
        def fun(x):
            value, grads = loss.value_and_grad(*unflatten(x), t, y)
            return value, flatten(grads)[0]
        scipy.optimize.minimize(fun, x0, jac=True, method="L-BFGS-B")

    ``x`` has the leaves' common float dtype (float64 when they differ or are not floats).
    """
    leaves, treedef = tree_flatten(params)
    arrays = [np.asarray(a) for a in leaves]
    shapes = [a.shape for a in arrays]
    dtype = np.result_type(*arrays) if arrays else np.float64
    if dtype.kind != "f":
        dtype = np.float64
    x = np.concatenate([a.ravel() for a in arrays]).astype(dtype) if arrays else np.zeros(0)
    sizes = [int(np.prod(s)) for s in shapes]
    offsets = np.cumsum([0] + sizes)

    def unflatten(x):
        x = np.asarray(x)
        if x.shape != (offsets[-1],):
            raise ValueError(f"unflatten expects a 1-D array of {offsets[-1]} values, "
                             f"got shape {x.shape}")
        parts = [x[lo:hi].reshape(s) for lo, hi, s in zip(offsets[:-1], offsets[1:], shapes)]
        return tree_unflatten(treedef, parts)

    return x, unflatten


# -- update rules ----------------------------------------------------------------------------
# One symgrad function per rule, written as the published formula. Scalar work comes first so
# every elementwise statement lands in one fused loop. ``wd`` adds L2 weight decay to the
# gradient (PyTorch's ``weight_decay``); 0 leaves the gradient as it is.

def sgd_update(p, g, lr, wd):
    """p ← p − lr·g."""
    g = g + wd * p
    return p - lr * g


def momentum_update(p, g, v, lr, mu, wd):
    """Polyak momentum, PyTorch form: v ← μ·v + g; p ← p − lr·v."""
    g = g + wd * p
    v = mu * v + g
    return p - lr * v, v


def nesterov_update(p, g, v, lr, mu, wd):
    """Nesterov momentum (Sutskever et al. 2013, PyTorch form): v ← μ·v + g;
    p ← p − lr·(g + μ·v)."""
    g = g + wd * p
    v = mu * v + g
    return p - lr * (g + mu * v), v


def adagrad_update(p, g, s, lr, eps, wd):
    """Adagrad (Duchi et al. 2011): s ← s + g²; p ← p − lr·g / (√s + ε)."""
    g = g + wd * p
    s = s + g * g
    return p - lr * g / (snp.sqrt(s) + eps), s


def rmsprop_update(p, g, s, lr, decay, eps, wd):
    """RMSProp (Tieleman & Hinton 2012): s ← ρ·s + (1−ρ)·g²; p ← p − lr·g / (√s + ε)."""
    c = 1 - decay
    g = g + wd * p
    s = decay * s + c * (g * g)
    return p - lr * g / (snp.sqrt(s) + eps), s


def adam_update(p, g, m, v, lr, beta1, beta2, eps, wd, t):
    """Adam (Kingma & Ba 2015, Algorithm 1) at step ``t`` (1 for the first):
    m ← β₁m + (1−β₁)g; v ← β₂v + (1−β₂)g²; p ← p − lr·m̂ / (√v̂ + ε) with the bias-corrected
    m̂ = m/(1−β₁ᵗ), v̂ = v/(1−β₂ᵗ)."""
    c1 = 1 - beta1
    c2 = 1 - beta2
    bc1 = 1 - beta1 ** t
    bc2 = 1 - beta2 ** t
    g = g + wd * p
    m = beta1 * m + c1 * g
    v = beta2 * v + c2 * (g * g)
    return p - lr * (m / bc1) / (snp.sqrt(v / bc2) + eps), m, v


_RULES = {}


def _rule(fn):
    """The compiled update rule, shared by all optimizers (one specialization per packed size
    and dtype, compiled once per process and then served from the disk cache)."""
    compiled = _RULES.get(fn.__name__)
    if compiled is None:
        compiled = _RULES[fn.__name__] = compile(fn)
    return compiled


# -- optimizers ------------------------------------------------------------------------------

class _Packing:
    """Where each leaf sits in one flat vector per dtype.

    ``groups``: (dtype, leaf indices, offsets) per dtype, in order of first appearance. A group
    holding a single contiguous leaf packs without copying (``reshape(-1)`` is a view).
    """

    def __init__(self, leaves):
        self.shapes = [p.shape for p in leaves]
        self.dtypes = [p.dtype for p in leaves]
        by_dtype = {}
        for i, p in enumerate(leaves):
            by_dtype.setdefault(p.dtype, []).append(i)
        self.groups = [(dtype, indices, np.cumsum([0] + [leaves[i].size for i in indices]))
                       for dtype, indices in by_dtype.items()]

    def fits(self, leaves):
        return ([p.shape for p in leaves] == self.shapes
                and [p.dtype for p in leaves] == self.dtypes)

    def pack(self, arrays, group):
        dtype, indices, _ = group
        parts = [np.asarray(arrays[i], dtype=dtype).reshape(-1) for i in indices]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def unpack(self, flat, group, out):
        """Put leaf-shaped views of ``flat`` into ``out`` at the group's leaf indices."""
        _, indices, offsets = group
        for i, lo, hi in zip(indices, offsets[:-1], offsets[1:]):
            out[i] = flat[lo:hi].reshape(self.shapes[i])


class Optimizer:
    """Base class: subclasses name their update rule, state slots and hyperparameters.

    ``t`` counts the steps taken. The update runs over one flat vector per dtype holding every
    leaf of that dtype, so a model compiles each rule once (not once per leaf shape) and a step
    makes one native call per dtype. ``state`` holds, per dtype group, the list of flat state
    arrays in the order of the rule's state arguments; ``leaf_state(i)`` shows leaf ``i``'s.
    """

    n_state = 0

    def __init__(self, lr, weight_decay=0.0):
        if not callable(lr) and not lr > 0:
            raise ValueError(f"lr must be a positive number or a callable of the step count, "
                             f"got {lr!r}")
        self.lr = lr
        self.weight_decay = float(weight_decay)
        self.t = 0
        self.state = None
        self._packing = None

    def learning_rate(self, t=None):
        """The learning rate at step ``t`` (default: the next step)."""
        t = self.t if t is None else t
        return float(self.lr(t)) if callable(self.lr) else float(self.lr)

    def _rule(self):
        raise NotImplementedError

    def _hyperparameters(self):
        """The scalar arguments of the rule for the next step, after the state arrays."""
        raise NotImplementedError

    def step(self, params, grads):
        """The parameters after one update, in the structure of ``params``.

        ``grads`` must have the same leaves (shapes) as ``params``; they are cast to the
        parameters' dtypes. Raises ValueError when they differ, or when this optimizer was
        used before with parameters of other shapes or dtypes. The state changes only once
        every leaf is updated, so an interrupted step leaves the optimizer as it was.
        """
        leaves, treedef = tree_flatten(params)
        gleaves, _ = tree_flatten(grads)
        leaves = [np.asarray(p) for p in leaves]
        gleaves = [np.asarray(g) for g in gleaves]
        shapes = [p.shape for p in leaves]
        if [g.shape for g in gleaves] != shapes:
            raise ValueError(f"grads do not match params: parameter shapes {shapes}, gradient "
                             f"shapes {[g.shape for g in gleaves]}")
        if self._packing is None:
            self._packing = _Packing(leaves)
            self.state = [[np.zeros(offsets[-1], dtype) for _ in range(self.n_state)]
                          for dtype, _, offsets in self._packing.groups]
        elif not self._packing.fits(leaves):
            raise ValueError(f"this optimizer holds state for parameters of shapes "
                             f"{self._packing.shapes} and dtypes "
                             f"{[d.name for d in self._packing.dtypes]}, got "
                             f"{shapes} and {[p.dtype.name for p in leaves]}; use a new "
                             f"optimizer")
        rule = self._rule()
        hyper = self._hyperparameters()
        new_leaves, new_state = [None] * len(leaves), []
        for group, state in zip(self._packing.groups, self.state):
            out = rule(self._packing.pack(leaves, group), self._packing.pack(gleaves, group),
                       *state, *hyper)
            out = out if isinstance(out, tuple) else (out,)
            self._packing.unpack(out[0], group, new_leaves)
            new_state.append(list(out[1:]))
        self.state = new_state
        self.t += 1
        return tree_unflatten(treedef, new_leaves)

    def leaf_state(self, i):
        """The state arrays of leaf ``i`` (views, shaped like the leaf); [] before a step."""
        if self._packing is None:
            return []
        for group, state in zip(self._packing.groups, self.state):
            dtype, indices, offsets = group
            if i in indices:
                k = indices.index(i)
                return [s[offsets[k]:offsets[k + 1]].reshape(self._packing.shapes[i])
                        for s in state]
        raise IndexError(f"leaf {i} out of range: the parameters have "
                         f"{len(self._packing.shapes)} leaves")

    def __repr__(self):
        return f"{type(self).__name__}(lr={self.lr!r})"


class SGD(Optimizer):
    """Stochastic gradient descent, optionally with (Nesterov) momentum and L2 weight decay.

    PyTorch's formulation: ``v ← momentum·v + g``; ``p ← p − lr·v``, or with ``nesterov``
    ``p ← p − lr·(g + momentum·v)``; ``weight_decay`` adds ``weight_decay·p`` to ``g``.
    """

    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        if nesterov and momentum <= 0:
            raise ValueError("nesterov=True needs momentum > 0")
        self.momentum = float(momentum)
        self.nesterov = bool(nesterov)
        self.n_state = 1 if momentum else 0

    def _rule(self):
        if not self.momentum:
            return _rule(sgd_update)
        return _rule(nesterov_update if self.nesterov else momentum_update)

    def _hyperparameters(self):
        lr = self.learning_rate()
        if not self.momentum:
            return lr, self.weight_decay
        return lr, self.momentum, self.weight_decay


class Adagrad(Optimizer):
    """Adagrad: per-coordinate steps scaled by the root of the summed squared gradients."""

    n_state = 1

    def __init__(self, lr, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.eps = float(eps)

    def _rule(self):
        return _rule(adagrad_update)

    def _hyperparameters(self):
        return self.learning_rate(), self.eps, self.weight_decay


class RMSProp(Optimizer):
    """RMSProp: steps scaled by the root of a running average of squared gradients."""

    n_state = 1

    def __init__(self, lr, decay=0.99, eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.decay = float(decay)
        self.eps = float(eps)

    def _rule(self):
        return _rule(rmsprop_update)

    def _hyperparameters(self):
        return self.learning_rate(), self.decay, self.eps, self.weight_decay


class Adam(Optimizer):
    """Adam with bias correction; ``weight_decay`` is L2 added to the gradient (not AdamW)."""

    n_state = 2

    def __init__(self, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        super().__init__(lr, weight_decay)
        self.betas = (float(betas[0]), float(betas[1]))
        self.eps = float(eps)

    def _rule(self):
        return _rule(adam_update)

    def _hyperparameters(self):
        beta1, beta2 = self.betas
        return (self.learning_rate(), beta1, beta2, self.eps, self.weight_decay,
                float(self.t + 1))


# -- learning-rate schedules -----------------------------------------------------------------

def step_decay(lr, step_size, gamma=0.1):
    """``lr · gamma^(t // step_size)``: multiply by ``gamma`` every ``step_size`` steps."""
    return lambda t: lr * gamma ** (t // step_size)


def exponential_decay(lr, gamma):
    """``lr · gamma^t``."""
    return lambda t: lr * gamma ** t


def cosine_decay(lr, total_steps, lr_min=0.0):
    """Cosine annealing from ``lr`` at step 0 to ``lr_min`` at ``total_steps`` (then flat)."""
    def schedule(t):
        frac = min(t, total_steps) / total_steps
        return lr_min + 0.5 * (lr - lr_min) * (1 + math.cos(math.pi * frac))
    return schedule


# -- the training loop -----------------------------------------------------------------------

def minimize(f, params, optimizer, data=None, batch_size=None, epochs=None, steps=None,
             callback=None, progress=True, seed=None, client=None):
    """Minimize ``f(params, *batch)`` with ``optimizer``; returns a ``MinimizeResult``.

    ``params``: an array or a (nested) tuple/list/dict of float arrays. ``f`` is a symgrad-
    traceable function (written with ``symgrad.numpy``); it is compiled once here, with the
    gradient taken for every leaf of ``params`` (a ``symgrad.compile``d ``f`` is unwrapped).
    ``data``: None (``f(params)``), an array, or a tuple of arrays with a common first axis.
    Each epoch shuffles the rows (``numpy.random.default_rng(seed)``) and serves them in
    batches of ``batch_size`` (default: all rows, unshuffled); the last batch may be smaller
    and runs the same native code (the row count is a run-time size).
    ``epochs`` and ``steps`` bound the run; with both, whichever ends first. Without data an
    epoch is one step.
    ``callback(step, params, loss)`` runs after each step with the number of steps taken, the
    updated parameters and the loss measured before the update; returning True stops the run.
    ``progress``: a tqdm bar when tqdm is installed, else a one-line status on stderr.
    Ctrl-C stops the run and returns what was reached; a loss that is not finite stops it too.
    ``client``: a Dask client; ``data`` is then a list of shards (see
    ``symgrad.distributed.value_and_grad``), placed on the workers once, and each step is the
    full-data gradient computed shard by shard on the cluster.
    Raises ValueError when neither ``epochs`` nor ``steps`` is given.
    """
    if epochs is None and steps is None:
        raise ValueError("minimize needs epochs or steps")
    leaves, treedef = tree_flatten(params)
    leaves = [float_copy(p) for p in leaves]
    fn = f.fn if isinstance(f, CompiledFunction) else f      # compiled again below, for leaves
    if client is not None:
        if batch_size is not None:
            raise ValueError("with a client, data are shards on the cluster: batch_size does "
                             "not apply")
        if training.sharded_loss is None:
            raise ImportError("minimize(client=...) needs symgrad.distributed: import it (it "
                              "needs Dask's distributed scheduler)")
        compiled = training.sharded_loss(fn, params, data, client)
        batches = Batches(None, None, seed)
    else:
        batches = Batches(data, batch_size, seed)
        compiled = _compile_batched(FlatLoss(fn, treedef, len(leaves)), leaves, batches)

    total = batches.steps_for(epochs)
    if steps is not None:
        total = steps if total is None else min(total, steps)
    return train(compiled, leaves, treedef, optimizer, batches, total, callback,
                 Progress(total, progress))


def _compile_batched(loss, leaves, batches):
    """``loss`` compiled with the gradient for every leaf. With mini-batches the rows of the data
    are a run-time size ``N`` (a ``signature``), so the last, smaller batch runs the same native
    function; if ``loss`` cannot be traced with a run-time row count (say it builds a NumPy array
    of ``X.shape[0]`` elements), the batch sizes are compiled one by one instead."""
    argnums = tuple(range(len(leaves)))
    if not batches.shuffle:
        return compile(loss, argnums=argnums)
    try:
        signature = {len(leaves) + j: "{}[{}]".format(
            LONG_TO_SHORT[canonical_dtype(a.dtype)], ",".join(["N", *map(str, a.shape[1:])]))
            for j, a in enumerate(batches.data)}
        cf = compile(loss, argnums=argnums, signature=signature)
        cf.specialize(*leaves, *(a[:batches.batch_size] for a in batches.data))   # traces
        return cf
    except Exception:       # whatever it was recurs (or not) when traced with concrete sizes
        return compile(loss, argnums=argnums)


