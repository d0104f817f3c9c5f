"""``symgrad demo``: the lecture examples, then the softmax classifier on CIFAR-10 shapes.

Every gradient printed is compiled to C, and checked against the interpreter, central
differences and the complex step.
"""
from __future__ import annotations

import time

import numpy as np

from symgrad import nn
from symgrad import numpy as snp
from symgrad.api import compile
from symgrad.api import check_grad
from symgrad.backends.c import compiler

# Functions here are traced as the user's own code (symgrad.core.ir.user_location).
TRACED_AS_USER_CODE = True


def _mul(x, y):
    return x * y


def _add_mul(x, y, z):
    return (x + y) * z


def _max(x, y):
    return snp.maximum(x, y)


def _neuron(w0, w1, w2, x0, x1):
    return nn.sigmoid(w0 * x0 + w1 * x1 + w2)


def _staged(x, y):
    return (x + nn.sigmoid(y)) / (nn.sigmoid(x) + (x + y) ** 2)


def _log_max(a, b):
    return snp.log(a * b + snp.maximum(a, 2.0))


def _nested(x):
    u = x ** 2 + snp.exp(x ** 2)
    return snp.sqrt(u) + snp.cos(u)


def _norm(x, y):
    return x ** 2 + y ** 2


LECTURE = [
    ("x * y", _mul, (4.0, -3.0)),
    ("(x + y) * z", _add_mul, (-2.0, 5.0, -4.0)),
    ("max(x, y)", _max, (4.0, 2.0)),
    ("sigmoid(w0*x0 + w1*x1 + w2)", _neuron, (2.0, -3.0, -3.0, -1.0, -2.0)),
    ("(x + sigmoid(y)) / (sigmoid(x) + (x+y)^2)", _staged, (3.0, -4.0)),
    ("log(a*b + max(a, 2))", _log_max, (3.0, 2.0)),
    ("sqrt(x^2 + exp(x^2)) + cos(x^2 + exp(x^2))", _nested, (0.7,)),
    ("x^2 + y^2", _norm, (5.0, 3.0)),
]


def softmax_loss(W, X, y, reg):
    scores = X @ W
    scores = scores - snp.max(scores, axis=1, keepdims=True)
    logp = scores - snp.log(snp.sum(snp.exp(scores), axis=1, keepdims=True))
    n = X.shape[0]
    return -snp.mean(logp[snp.arange(n), y]) + reg * snp.sum(W * W)


def _fmt(values):
    return "(" + ", ".join(f"{v:.4f}" for v in values) + ")"


def run(out=print, n=256, seed=0):
    out("symgrad demo: every gradient below is native C, checked against the interpreter,")
    out("central differences and the complex step (max relative error of each).\n")
    out(f"  {'function':<44} {'value':>9}  {'gradient':<44} {'interp':>8} {'central':>8} "
        f"{'complex':>8}")
    for label, fn, args in LECTURE:
        argnums = tuple(range(len(args)))
        f = compile(fn, argnums=argnums)
        value, grads = f.value_and_grad(*args)
        report = check_grad(f, *args, argnums=argnums)
        errs = [report.errors(m) for m in ("interpreter", "central diff", "complex step")]
        out(f"  {label:<44} {value:9.4f}  {_fmt(grads):<44} "
            + " ".join(f"{e:8.1e}" for e in errs))

    out(f"\nsoftmax loss, CIFAR-10 shapes: W 3073x10, X {n}x3073 (random data, seed {seed})")
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((3073, 10)) * 1e-3
    X = rng.standard_normal((n, 3073))
    y = rng.integers(0, 10, n)
    f = compile(softmax_loss)
    before = compiler.invocations()
    t0 = time.perf_counter()
    value, dW = f.value_and_grad(W, X, y, 1e-3)
    first = time.perf_counter() - t0
    compiled = compiler.invocations() - before
    times = []
    for _ in range(20):
        t0 = time.perf_counter()
        f.value_and_grad(W, X, y, 1e-3)
        times.append(time.perf_counter() - t0)
    out(f"  loss {value:.6f} (chance level: ln 10 = {np.log(10):.6f}); |dW| = "
        f"{np.linalg.norm(dW):.6f}")
    out(f"  first call (trace + generate C + {'compile' if compiled else 'cache hit'}): "
        f"{first * 1e3:.1f} ms")
    out(f"  cached call (value and gradient), median of 20: {np.median(times) * 1e3:.3f} ms")
    report = check_grad(f, W, X, y, 1e-3)
    out("  " + str(report).replace("\n", "\n  "))
    return report.ok
