"""Small functions whose generated C is pinned in tests/golden/ (see test_native.py).

Kept in their own file so that the source lines quoted in the C comments stay put.
"""
import symgrad.numpy as snp
from symgrad import nn


def add_mul(x, y, z):
    return (x + y) * z


def neuron(w, x):
    return nn.sigmoid(snp.sum(w[:2] * x) + w[2])


def rowmax_loss(A, b):
    scores = A @ b
    return snp.sum(snp.maximum(scores, 0.0) ** 2)


def pick(logits, labels):
    logp = nn.log_softmax(logits, axis=1)
    return -snp.mean(logp[snp.arange(logits.shape[0]), labels])
