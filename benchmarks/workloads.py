"""The workloads W1-W6 of issue 7 and every peer's implementation of each.

A workload has cases (a size and a dtype). For a case, ``make_args(case)`` gives the arguments as
a user holds them (NumPy arrays, Python floats, int64 labels) and ``wrt`` the positions
differentiated. ``PEERS[name](workload, case)`` builds a callable ``fn`` and the arguments it takes
(converted once, the way a user of that library keeps them: device arrays for JAX, tensors for
PyTorch); ``fn(*args)`` computes value and gradient together, and ``to_numpy(result)`` turns its
result into ``(value, [grad, ...])`` for the gradient check (never timed).

The math is written once where the libraries share NumPy's names (symgrad.numpy, autograd.numpy,
jax.numpy, pytensor.tensor): ``loss(ns, *args)`` takes the namespace. PyTorch and CasADi, whose
APIs differ, and the hand-written NumPy gradients have their own code.
"""
from __future__ import annotations

import math
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Case:
    workload: str
    label: str            # e.g. "n=1000", "N=256"
    dtype: str            # "float64" / "float32"
    params: tuple = ()    # ((name, value), ...)

    @property
    def p(self):
        return dict(self.params)

    @property
    def key(self):
        return f"{self.workload} {self.label} {self.dtype[:1]}{self.dtype[-2:]}"


class NotApplicable(Exception):
    """A peer that does not implement this case (reason in the message)."""


# ----------------------------------------------------------------------------------------------
# Namespaces: the few names the shared math needs beyond NumPy's.

class NS:
    def __init__(self, mod, sigmoid, relu, arange=None):
        self.m = mod
        self.sigmoid = sigmoid
        self.relu = relu
        self.arange = arange or getattr(mod, "arange", None)

    def __getattr__(self, name):
        return getattr(self.m, name)


def ns_symgrad():
    import symgrad.numpy as snp
    import symgrad.nn as snn
    return NS(snp, snn.sigmoid, snn.relu)


def ns_autograd():
    import autograd.numpy as anp
    return NS(anp, lambda z: 1.0 / (1.0 + anp.exp(-z)), lambda z: anp.maximum(z, 0.0))


def ns_jax():
    import jax
    import jax.numpy as jnp
    return NS(jnp, jax.nn.sigmoid, lambda z: jnp.maximum(z, 0.0))


def ns_pytensor():
    import pytensor.tensor as pt
    return NS(pt, pt.sigmoid, lambda z: pt.maximum(z, 0.0))


# ----------------------------------------------------------------------------------------------
# The workloads, written once against a namespace.

def w1a(ns, x, y):
    return (x + ns.sigmoid(y)) / (ns.sigmoid(x) + (x + y) ** 2)


def w1b(ns, a, b):
    return ns.log(a * b + ns.maximum(a, 2.0))


def rosenbrock(ns, x):
    a = x[0::2]
    b = x[1::2]
    return ns.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)


def softmax_loss(ns, W, X, y, reg):
    scores = X @ W
    scores = scores - ns.max(scores, axis=1, keepdims=True)
    logp = scores - ns.log(ns.sum(ns.exp(scores), axis=1, keepdims=True))
    n = X.shape[0]
    return -ns.mean(logp[ns.arange(n), y]) + reg * ns.sum(W * W)


def svm_loss(ns, W, X, y, reg):
    # Multiclass SVM (hinge, delta = 1). The correct class's own term is max(0, 1) = 1 for every
    # row and has zero gradient, so it is subtracted instead of masked.
    scores = X @ W
    n = X.shape[0]
    correct = ns.expand_dims(scores[ns.arange(n), y], 1)
    margins = ns.maximum(scores - correct + 1.0, 0.0)
    return (ns.sum(margins) - n) / n + reg * ns.sum(W * W)


def two_layer(ns, W1, b1, W2, b2, X, y, reg):
    h = ns.relu(X @ W1 + b1)
    scores = h @ W2 + b2
    scores = scores - ns.max(scores, axis=1, keepdims=True)
    logp = scores - ns.log(ns.sum(ns.exp(scores), axis=1, keepdims=True))
    n = X.shape[0]
    return -ns.mean(logp[ns.arange(n), y]) + reg * (ns.sum(W1 * W1) + ns.sum(W2 * W2))


PEND_T = int(os.environ.get("SGB_PEND_T", "200"))   # run.py --quick sets 50
PEND_DT = 0.05
PEND_G = 9.81


def pendulum(ns, c, L):
    th, om = 1.0, 0.0
    loss = 0.0
    for _ in range(PEND_T):
        th, om = th + PEND_DT * om, om + PEND_DT * (-(PEND_G / L) * ns.sin(th) - c * om)
        loss = loss + th * th
    return loss


# ----------------------------------------------------------------------------------------------
# Workload table

D, C = 3073, 10


@dataclass
class Workload:
    name: str
    title: str
    fn: object
    wrt: tuple
    dtypes: tuple
    sizes: list                       # list of (label, params)
    quick_sizes: list
    scalar_args: bool = False         # arguments are Python floats
    info: dict = field(default_factory=dict)

    def cases(self, quick, dtypes=None):
        out = []
        for dt in self.dtypes:
            if dtypes and dt not in dtypes:
                continue
            for label, params in (self.quick_sizes if quick else self.sizes):
                out.append(Case(self.name, label, dt, tuple(sorted(params.items()))))
        return out


WORKLOADS = {
    "W1a": Workload("W1a", "scalar (x+s(y))/(s(x)+(x+y)^2) at (3,-4)", w1a, (0, 1), ("float64",),
                    [("(3,-4)", {})], [("(3,-4)", {})], scalar_args=True),
    "W1b": Workload("W1b", "scalar log(a*b+max(a,2)) at (3,4)", w1b, (0, 1), ("float64",),
                    [("(3,4)", {})], [("(3,4)", {})], scalar_args=True),
    "W2": Workload("W2", "extended Rosenbrock", rosenbrock, (0,), ("float64", "float32"),
                   [(f"n={n:.0e}".replace("e+0", "e"), {"n": n}) for n in (10, 1000, 100000, 1000000)],
                   [("n=1e1", {"n": 10}), ("n=1e3", {"n": 1000})]),
    "W3": Workload("W3", "softmax classifier, W 3073x10", softmax_loss, (0,), ("float64", "float32"),
                   [(f"N={n}", {"N": n}) for n in (256, 500)], [("N=32", {"N": 32})]),
    "W4": Workload("W4", "multiclass SVM, W 3073x10", svm_loss, (0,), ("float64", "float32"),
                   [(f"N={n}", {"N": n}) for n in (256, 500)], [("N=32", {"N": 32})]),
    "W5": Workload("W5", "two-layer ReLU net D=3072 H=100 C=10", two_layer, (0, 1, 2, 3),
                   ("float64", "float32"), [("N=200", {"N": 200})], [("N=20", {"N": 20})]),
    "W6": Workload("W6", f"damped pendulum, Euler, T={PEND_T}", pendulum, (0, 1), ("float64",),
                   [(f"T={PEND_T}", {})], [(f"T={PEND_T}", {})], scalar_args=True),
}


def make_args(case):
    """The arguments as a user holds them, deterministic per case."""
    p = case.p
    dt = np.dtype(case.dtype)
    rng = np.random.default_rng(7)
    w = case.workload
    if w == "W1a":
        return (3.0, -4.0)
    if w == "W1b":
        return (3.0, 4.0)
    if w == "W6":
        return (0.1, 1.0)
    if w == "W2":
        x = rng.uniform(-1.5, 1.5, p["n"]).astype(dt)
        return (x,)
    if w in ("W3", "W4"):
        N = p["N"]
        W = (0.001 * rng.standard_normal((D, C))).astype(dt)
        X = rng.standard_normal((N, D)).astype(dt)
        y = rng.integers(0, C, N).astype(np.int64)
        return (W, X, y, 1e-3)
    if w == "W5":
        N, Dn, H = p["N"], 3072, 100
        W1 = (1e-2 * rng.standard_normal((Dn, H))).astype(dt)
        b1 = (1e-2 * rng.standard_normal(H)).astype(dt)
        W2 = (1e-1 * rng.standard_normal((H, C))).astype(dt)
        b2 = (1e-2 * rng.standard_normal(C)).astype(dt)
        X = rng.standard_normal((N, Dn)).astype(dt)
        y = rng.integers(0, C, N).astype(np.int64)
        return (W1, b1, W2, b2, X, y, 1e-3)
    raise KeyError(w)


def cost(case):
    """(flops, bytes) of the value and gradient, the minimum any implementation must do:
    the matmuls' FLOPs, and one read of every input plus one write of every gradient."""
    p = case.p
    s = np.dtype(case.dtype).itemsize
    w = case.workload
    if w == "W2":
        n = p["n"]
        return 8 * n, 2 * n * s
    if w in ("W3", "W4"):
        N = p["N"]
        return 4 * N * D * C, (N * D + 2 * D * C) * s + 8 * N
    if w == "W5":
        N, Dn, H = p["N"], 3072, 100
        return (4 * N * Dn * H + 6 * N * H * C,
                (N * Dn + 2 * (Dn * H + H + H * C + C)) * s + 8 * N)
    return None


# ----------------------------------------------------------------------------------------------
# Peers. Each returns (fn, args, to_numpy).

def _tonp(v):
    return np.asarray(v, dtype=np.float64)


def peer_symgrad(wl, case, cache_dir=None):
    import symgrad
    ns = ns_symgrad()
    fn = wl.fn

    def f(*a):
        return fn(ns, *a)
    f.__name__ = wl.name.lower()
    wrt = wl.wrt
    cf = symgrad.compile(f, argnums=wrt if len(wrt) > 1 else wrt[0], cache_dir=cache_dir)

    def conv(r):
        v, g = r
        g = g if isinstance(g, tuple) else (g,)
        return float(v), [_tonp(x) for x in g]
    return cf.value_and_grad, make_args(case), conv


def peer_numpy(wl, case, cache_dir=None):
    """Hand-written gradients: the classic vectorized derivations (Python math for scalars)."""
    w = wl.name
    args = make_args(case)
    f = HAND[w]

    def conv(r):
        return float(r[0]), [_tonp(x) for x in r[1]]
    return f, args, conv


def _w1a_hand(x, y):
    exp = math.exp
    sy = 1.0 / (1.0 + exp(-y))
    num = x + sy
    sx = 1.0 / (1.0 + exp(-x))
    xpy = x + y
    den = sx + xpy * xpy
    invden = 1.0 / den
    f = num * invden
    dden = -num / (den * den)
    dxpy = 2.0 * xpy * dden
    return f, (dxpy + (1.0 - sx) * sx * dden + invden, dxpy + (1.0 - sy) * sy * invden)


def _w1b_hand(a, b):
    wins = a >= 2.0
    s = a * b + (a if wins else 2.0)
    ds = 1.0 / s
    return math.log(s), (ds * (b + (1.0 if wins else 0.0)), ds * a)


def _rosen_hand(x):
    a = x[0::2]
    b = x[1::2]
    t = b - a * a
    u = 1 - a
    f = np.sum(100 * t * t + u * u)
    g = np.empty_like(x)
    g[0::2] = -400 * t * a - 2 * u
    g[1::2] = 200 * t
    return f, (g,)


def _softmax_hand(W, X, y, reg):
    N = X.shape[0]
    scores = X @ W
    scores -= scores.max(axis=1, keepdims=True)
    e = np.exp(scores)
    s = e.sum(axis=1, keepdims=True)
    r = np.arange(N)
    loss = np.mean(np.log(s[:, 0]) - scores[r, y]) + reg * np.sum(W * W)
    dscores = e / s
    dscores[r, y] -= 1
    dscores /= N
    return loss, (X.T @ dscores + (2 * reg) * W,)


def _svm_hand(W, X, y, reg):
    N = X.shape[0]
    scores = X @ W
    r = np.arange(N)
    margins = np.maximum(scores - scores[r, y][:, None] + 1, 0)
    margins[r, y] = 0
    loss = margins.sum() / N + reg * np.sum(W * W)
    binary = (margins > 0).astype(W.dtype)
    binary[r, y] = -binary.sum(axis=1)
    return loss, (X.T @ binary / N + (2 * reg) * W,)


def _two_layer_hand(W1, b1, W2, b2, X, y, reg):
    N = X.shape[0]
    hpre = X @ W1 + b1
    h = np.maximum(hpre, 0)
    scores = h @ W2 + b2
    scores -= scores.max(axis=1, keepdims=True)
    e = np.exp(scores)
    s = e.sum(axis=1, keepdims=True)
    r = np.arange(N)
    loss = np.mean(np.log(s[:, 0]) - scores[r, y]) + reg * (np.sum(W1 * W1) + np.sum(W2 * W2))
    ds = e / s
    ds[r, y] -= 1
    ds /= N
    dW2 = h.T @ ds + (2 * reg) * W2
    db2 = ds.sum(axis=0)
    dh = ds @ W2.T
    dh *= hpre >= 0          # relu = maximum(z, 0): a tie sends the gradient to z
    dW1 = X.T @ dh + (2 * reg) * W1
    db1 = dh.sum(axis=0)
    return loss, (dW1, db1, dW2, db2)


def _pendulum_hand(c, L):
    """Reverse mode by hand: forward sweep storing the states, then the adjoint sweep."""
    T, dt, g = PEND_T, PEND_DT, PEND_G
    sin, cos = math.sin, math.cos
    k = g / L
    ths = [1.0]
    oms = [0.0]
    th, om, loss = 1.0, 0.0, 0.0
    for _ in range(T):
        th, om = th + dt * om, om + dt * (-k * sin(th) - c * om)
        ths.append(th)
        oms.append(om)
        loss += th * th
    bth = bom = bk = bc = 0.0
    for t in range(T, 0, -1):
        bth += 2.0 * ths[t]            # loss term of theta_t
        pth, pom = ths[t - 1], oms[t - 1]
        # th_t = pth + dt*pom ; om_t = pom + dt*(-k sin(pth) - c pom)
        nbth = bth - bom * dt * k * cos(pth)
        nbom = bth * dt + bom * (1.0 - dt * c)
        bk += -bom * dt * sin(pth)
        bc += -bom * dt * pom
        bth, bom = nbth, nbom
    return loss, (bc, bk * (-g / (L * L)))


HAND = {"W1a": _w1a_hand, "W1b": _w1b_hand, "W2": _rosen_hand, "W3": _softmax_hand,
        "W4": _svm_hand, "W5": _two_layer_hand, "W6": _pendulum_hand}


def peer_autograd(wl, case, cache_dir=None):
    import autograd
    ns = ns_autograd()
    fn = wl.fn

    def f(*a):
        return fn(ns, *a)
    wrt = wl.wrt
    vg = autograd.value_and_grad(f, argnum=wrt if len(wrt) > 1 else wrt[0])

    def conv(r):
        v, g = r
        g = g if len(wrt) > 1 else (g,)
        return float(v), [_tonp(x) for x in g]
    return vg, make_args(case), conv


def peer_jax(wl, case, cache_dir=None):
    import jax
    import jax.numpy as jnp
    ns = ns_jax()
    fn = wl.fn

    def f(*a):
        return fn(ns, *a)
    wrt = wl.wrt
    vg = jax.jit(jax.value_and_grad(f, argnums=wrt if len(wrt) > 1 else wrt[0]))
    args = make_args(case)
    if not wl.scalar_args:   # data lives on the device, as a JAX user keeps it
        args = tuple(jnp.asarray(a) if isinstance(a, np.ndarray) else a for a in args)

    def call(*a):
        return jax.block_until_ready(vg(*a))

    def conv(r):
        v, g = r
        g = g if len(wrt) > 1 else (g,)
        return float(v), [_tonp(x) for x in g]
    return call, args, conv


def _torch_fns():
    import torch

    def t_w1a(x, y):
        return (x + torch.sigmoid(y)) / (torch.sigmoid(x) + (x + y) ** 2)

    def t_w1b(a, b):
        return torch.log(a * b + torch.clamp(a, min=2.0))

    def t_rosen(x):
        a = x[0::2]
        b = x[1::2]
        return torch.sum(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)

    def t_softmax(W, X, y, reg):
        logp = torch.log_softmax(X @ W, dim=1)
        return -logp[torch.arange(X.shape[0]), y].mean() + reg * torch.sum(W * W)

    def t_svm(W, X, y, reg):
        scores = X @ W
        n = X.shape[0]
        correct = scores[torch.arange(n), y].unsqueeze(1)
        margins = torch.clamp(scores - correct + 1.0, min=0.0)
        return (margins.sum() - n) / n + reg * torch.sum(W * W)

    def t_two_layer(W1, b1, W2, b2, X, y, reg):
        h = torch.relu(X @ W1 + b1)
        logp = torch.log_softmax(h @ W2 + b2, dim=1)
        return (-logp[torch.arange(X.shape[0]), y].mean()
                + reg * (torch.sum(W1 * W1) + torch.sum(W2 * W2)))

    def t_pend(c, L):
        th = torch.tensor(1.0, dtype=torch.float64)
        om = torch.tensor(0.0, dtype=torch.float64)
        loss = 0.0
        for _ in range(PEND_T):
            th, om = th + PEND_DT * om, om + PEND_DT * (-(PEND_G / L) * torch.sin(th) - c * om)
            loss = loss + th * th
        return loss

    return {"W1a": t_w1a, "W1b": t_w1b, "W2": t_rosen, "W3": t_softmax, "W4": t_svm,
            "W5": t_two_layer, "W6": t_pend}


def peer_torch(wl, case, cache_dir=None):
    import torch
    f = _torch_fns()[wl.name]
    wrt = wl.wrt
    args = make_args(case)
    if wl.scalar_args:
        def call(*a):                 # from Python floats, every call
            ts = [torch.tensor(v, dtype=torch.float64, requires_grad=True) for v in a]
            out = f(*ts)
            return out, torch.autograd.grad(out, [ts[i] for i in wrt])
        targs = args
    else:
        targs = tuple(torch.from_numpy(a).requires_grad_(i in wrt) if isinstance(a, np.ndarray)
                      else a for i, a in enumerate(args))
        leaves = [targs[i] for i in wrt]

        def call(*a):
            out = f(*a)
            return out, torch.autograd.grad(out, leaves)

    def conv(r):
        return float(r[0].detach()), [_tonp(g.detach().numpy()) for g in r[1]]
    return call, targs, conv


def _pt_input(name, a):
    import pytensor.tensor as pt
    if isinstance(a, float):
        return pt.scalar(name, dtype="float64")
    a = np.asarray(a)
    return pt.tensor(name=name, dtype=a.dtype.name, shape=(None,) * a.ndim)


PYTENSOR_W6 = ("PyTensor's graph rewriting of the 200-step unrolled graph did not finish in 5 min "
               "(FAST_RUN, and FAST_RUN without canonicalize); SGB_PYTENSOR_W6=1 tries anyway")


def peer_pytensor(wl, case, cache_dir=None):
    import pytensor
    if wl.name == "W6" and not os.environ.get("SGB_PYTENSOR_W6"):
        raise NotApplicable(PYTENSOR_W6)
    ns = ns_pytensor()
    args = make_args(case)
    wrt = wl.wrt
    dt = case.dtype
    # reg arrives as a Python float; in a float32 case it is a float32 scalar like the data.
    conv_args = []
    for a in args:
        if isinstance(a, float) and not wl.scalar_args:
            a = np.asarray(a, dtype=dt)
        conv_args.append(a)
    with pytensor.config.change_flags(floatX=dt):
        syms = [_pt_input(f"a{i}", a) for i, a in enumerate(conv_args)]
        out = wl.fn(ns, *syms)
        grads = pytensor.grad(out, [syms[i] for i in wrt])
        fn = pytensor.function(syms, [out, *grads], trust_input=True)
    if wl.scalar_args:
        asarray = np.asarray

        def call(*a):                 # trust_input needs arrays: convert the floats per call
            return fn(*[asarray(v) for v in a])
        targs = args
    else:
        call = fn
        targs = tuple(np.asarray(a) if isinstance(a, np.ndarray) and a.ndim == 0 else a
                      for a in conv_args)

    def conv(r):
        return float(r[0]), [_tonp(g) for g in r[1:]]
    return call, targs, conv


# CasADi: SX (scalar graph) for W1, W2 (n <= 1e5) and W6; MX (matrix graph) for W3-W5, where
# the labels become a one-hot matrix (CasADi has no gather) and the row max is dropped from the
# softmax (no per-row max; the data keeps exp() in range). CasADi computes in float64 only.

CASADI_SX_MAX_N = 100000
CASADI_C_MAX_N = 1000


def _casadi_function(wl, case):
    import casadi as ca
    args = make_args(case)
    w = wl.name
    if case.dtype != "float64":
        raise NotApplicable("CasADi computes in float64 only")
    ns = NS(ca, lambda z: 1.0 / (1.0 + ca.exp(-z)), lambda z: ca.fmax(z, 0.0))
    ns.maximum = ca.fmax
    if w in ("W1a", "W1b", "W6"):
        x, y = ca.SX.sym("x"), ca.SX.sym("y")
        f = wl.fn(ns, x, y)
        F = ca.Function(w, [x, y], [f, ca.gradient(f, ca.vertcat(x, y))])
        return F, args, "scalar"
    if w == "W2":
        n = case.p["n"]
        if n > CASADI_SX_MAX_N:
            raise NotApplicable(f"SX graph of n={n} scalars too large")
        x = ca.SX.sym("x", n)
        a, b = x[0::2], x[1::2]
        f = ca.sum1(100.0 * (b - a * a) ** 2 + (1.0 - a) ** 2)
        return ca.Function(w, [x], [f, ca.gradient(f, x)]), args, "vector"
    # W3-W5: MX
    MX = ca.MX
    if w in ("W3", "W4"):
        Wn, Xn, yn, reg = args
        N = Xn.shape[0]
        Wm, Xm, Ym = MX.sym("W", D, C), MX.sym("X", N, D), MX.sym("Y", N, C)
        scores = ca.mtimes(Xm, Wm)
        if w == "W3":
            lse = ca.log(ca.sum2(ca.exp(scores)))
            loss = -ca.sum1(ca.sum2(Ym * scores) - lse) / N + reg * ca.sumsqr(Wm)
        else:
            correct = ca.sum2(Ym * scores)
            margins = ca.fmax(scores - ca.repmat(correct, 1, C) + 1.0, 0.0)
            loss = (ca.sum1(ca.sum2(margins)) - N) / N + reg * ca.sumsqr(Wm)
        F = ca.Function(w, [Wm, Xm, Ym], [loss, ca.gradient(loss, Wm)])
        Y = np.zeros((N, C))
        Y[np.arange(N), yn] = 1.0
        return F, (Wn, Xn, Y), "matrix"
    if w == "W5":
        W1n, b1n, W2n, b2n, Xn, yn, reg = args
        N, Dn, H = Xn.shape[0], Xn.shape[1], W1n.shape[1]
        W1, b1, W2, b2 = MX.sym("W1", Dn, H), MX.sym("b1", 1, H), MX.sym("W2", H, C), MX.sym("b2", 1, C)
        Xm, Ym = MX.sym("X", N, Dn), MX.sym("Y", N, C)
        h = ca.fmax(ca.mtimes(Xm, W1) + ca.repmat(b1, N, 1), 0.0)
        scores = ca.mtimes(h, W2) + ca.repmat(b2, N, 1)
        lse = ca.log(ca.sum2(ca.exp(scores)))
        loss = (-ca.sum1(ca.sum2(Ym * scores) - lse) / N
                + reg * (ca.sumsqr(W1) + ca.sumsqr(W2)))
        F = ca.Function(w, [W1, b1, W2, b2, Xm, Ym],
                        [loss, ca.gradient(loss, W1), ca.gradient(loss, b1),
                         ca.gradient(loss, W2), ca.gradient(loss, b2)])
        Y = np.zeros((N, C))
        Y[np.arange(N), yn] = 1.0
        return F, (W1n, b1n[None, :], W2n, b2n[None, :], Xn, Y), "matrix"
    raise NotApplicable(w)


def _casadi_conv(kind, case, args):
    def conv(r):
        v = float(r[0])
        if kind in ("scalar", "vector"):
            return v, [np.asarray(r[1]).ravel()]
        shapes = [np.asarray(a).shape for a in make_args(case)]
        gs = [np.asarray(g).reshape(shapes[i]) for i, g in
              zip(WORKLOADS[case.workload].wrt, r[1:])]
        return v, gs
    return conv


def peer_casadi(wl, case, cache_dir=None):
    F, args, kind = _casadi_function(wl, case)
    if kind == "scalar":
        conv = lambda r: (float(r[0]), [np.asarray(r[1]).ravel()[i] for i in range(2)])
    else:
        conv = _casadi_conv(kind, case, args)
    return F, args, conv


def peer_casadi_c(wl, case, cache_dir=None):
    """CasADi's generated C for the SX function, compiled with -O3 and loaded with
    ``casadi.external``. The shared library is kept in ``cache_dir`` (the warm-cache call finds it
    there and skips code generation and the C compiler)."""
    import casadi as ca
    if wl.name in ("W3", "W4", "W5"):
        raise NotApplicable("MX with matrix products: generated C not benchmarked")
    if wl.name == "W2" and case.p["n"] > CASADI_C_MAX_N:
        raise NotApplicable(f"generated C for an SX graph of n={case.p['n']} too large")
    cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="casadi_c_"))
    cache_dir.mkdir(parents=True, exist_ok=True)
    name = f"cg_{wl.name}_{case.label}".replace("=", "").replace("(", "").replace(")", "") \
        .replace(",", "_").replace("-", "m")
    so = cache_dir / f"{name}.so"
    args = make_args(case)
    if not so.exists():
        F, args, kind = _casadi_function(wl, case)
        F = ca.Function(name, F.sx_in(), F.call(F.sx_in()))
        cfile = F.generate(f"{name}.c", {"with_header": False})
        src = Path(cfile)
        tmp = cache_dir / f"{name}.{os.getpid()}.so"
        subprocess.run(["cc", "-O3", "-march=native", "-fPIC", "-shared", "-o", str(tmp),
                        str(src), "-lm"], check=True)
        src.unlink()
        os.replace(tmp, so)
    G = ca.external(name, str(so))
    kind = "scalar" if wl.scalar_args else "vector"
    if kind == "scalar":
        conv = lambda r: (float(r[0]), [np.asarray(r[1]).ravel()[i] for i in range(2)])
    else:
        conv = _casadi_conv(kind, case, args)
    return G, args, conv


_FLOORS = None


def peer_c_floor(wl, case, cache_dir=None):
    """Hand-written C (floors/floors.c) through cffi in API mode: value and gradient into a
    preallocated buffer, returned as Python floats."""
    global _FLOORS
    if wl.name not in ("W1a", "W1b", "W6"):
        raise NotApplicable("C floor written for W1 and W6 only")
    if _FLOORS is None:
        import sys
        sys.path.insert(0, str(HERE / "floors"))
        import build as floors_build
        _FLOORS = floors_build.load()
    ffi, lib = _FLOORS.ffi, _FLOORS.lib
    out = ffi.new("double[3]")
    if wl.name == "W6":
        cfn = lib.w6_vg

        def call(c, L):
            cfn(c, L, PEND_T, out)
            return out[0], (out[1], out[2])
    else:
        cfn = lib.w1a_vg if wl.name == "W1a" else lib.w1b_vg

        def call(x, y):
            cfn(x, y, out)
            return out[0], (out[1], out[2])
    conv = lambda r: (float(r[0]), [_tonp(g) for g in r[1]])
    return call, make_args(case), conv


PEERS = {
    "symgrad": peer_symgrad,
    "numpy": peer_numpy,
    "autograd": peer_autograd,
    "jax": peer_jax,
    "torch": peer_torch,
    "casadi": peer_casadi,
    "casadi_c": peer_casadi_c,
    "pytensor": peer_pytensor,
    "c_floor": peer_c_floor,
}
# The module each peer needs (a peer whose module does not import is skipped).
PEER_MODULES = {"symgrad": "symgrad", "numpy": "numpy", "autograd": "autograd", "jax": "jax",
                "torch": "torch", "casadi": "casadi", "casadi_c": "casadi",
                "pytensor": "pytensor", "c_floor": "cffi"}
# Peers with a compile step whose result can be cached on disk (warm-cache first call measured).
WARM_PEERS = ("symgrad", "jax", "pytensor", "casadi_c")
FLOOR_PEERS = ("c_floor",)
# How a peer runs a workload, where that departs from the obvious (shown under the table).
NOTES = {
    ("casadi", "W3"): "CasADi MX (matrix graph), labels as a one-hot matrix, softmax without "
                      "the row max; inputs converted to DM (column-major copies) every call",
    ("casadi", "W4"): "CasADi MX, labels as a one-hot matrix; DM conversion every call",
    ("casadi", "W5"): "CasADi MX, labels as a one-hot matrix, softmax without the row max; "
                      "DM conversion every call",
}
