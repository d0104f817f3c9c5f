"""Losses and helpers for tests/test_distributed.py, in their own module so that Dask worker
processes can import them (functions pickle by reference)."""
import os

import numpy as np
from distributed import WorkerPlugin

import symgrad.numpy as snp
from symgrad import nn

REG = 1e-3


def softmax_loss(W, X, y):
    """Mean cross-entropy of a linear softmax classifier plus L2 on W."""
    logp = nn.log_softmax(X @ W, axis=1)
    n = X.shape[0]
    return -snp.mean(logp[snp.arange(n), y]) + REG * snp.sum(W * W)


def two_layer_loss(params, X, y):
    """Mean cross-entropy of a two-layer ReLU network plus L2 on the weights."""
    W1, b1, W2, b2 = params
    logp = nn.log_softmax(nn.relu(X @ W1 + b1) @ W2 + b2, axis=1)
    n = X.shape[0]
    return -snp.mean(logp[snp.arange(n), y]) + REG * (snp.sum(W1 * W1) + snp.sum(W2 * W2))


def blobs(n, d, classes, seed):
    """``n`` rows of ``d`` features in ``classes`` Gaussian blobs, and their labels."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, d)) * 2.0
    y = rng.integers(0, classes, size=n)
    return centres[y] + rng.normal(size=(n, d)), y.astype(np.int64)


def loaded_losses():
    """How many (loss, data types) this process holds compiled for distributed tasks."""
    from symgrad import distributed
    return len(distributed._BATCHED)


class KillOnce(WorkerPlugin):
    """A Dask worker plugin: the first worker to start a symgrad gradient task while
    ``marker`` does not exist creates it and dies on the spot (``os._exit``), mid-step."""

    name = "symgrad-test-kill-once"

    def __init__(self, marker):
        self.marker = marker

    def transition(self, key, start, finish, **kwargs):
        if finish == "executing" and "symgrad-value-and-grad" in str(key):
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                return
            os.close(fd)
            os._exit(1)


def dict_loss(params, X, y):
    """A two-layer network whose parameters are a dict (a pytree, keys sorted as in JAX)."""
    h = snp.tanh(X @ params["W1"] + params["b1"])
    scores = h @ params["W2"]
    return snp.mean((scores - y) ** 2) + 1e-3 * snp.sum(params["W1"] ** 2)
