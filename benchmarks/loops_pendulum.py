"""Structured loops (issue 10): the damped pendulum's value and gradient against JAX, PyTorch and
CasADi at T = 1,000 and 100,000 steps.

    benchmarks/.venv/bin/python benchmarks/loops_pendulum.py            # full run (< 5 min)
    benchmarks/.venv/bin/python benchmarks/loops_pendulum.py --quick    # T = 10, 100; few reps

The problem (explicit Euler over a fixed 10 s horizon, dt = 10 / T, so dt = 0.01 at T = 1,000 and
1e-4 at T = 100,000; the motion is the same decaying swing at both T):

    theta_{t+1} = theta_t + dt * omega_t
    omega_{t+1} = omega_t + dt * (-g / length * sin(theta_t) - damping * omega_t)
    theta_0 = 1, omega_0 = 0, g = 9.81
    loss = theta_T ** 2 + omega_T ** 2,  gradient w.r.t. (damping, length) at (0.3, 1.5)

Peers (every one computes value and gradient in one call, float64):
- symgrad:    ``symgrad.fori_loop``, ``symgrad.compile(..., backend="c").value_and_grad``,
              fresh cache_dir (so the first call includes tracing, C generation and cc).
- jax:        ``jax.lax.fori_loop`` + ``jax.jit(jax.value_and_grad)``, x64, single-threaded XLA.
- torch:      eager, a Python loop over 0-d tensors + ``torch.autograd.grad``, 1 thread.
- casadi_sx:  a plain Python for-loop over SX (graph unrolled), SX Function of value and
              gradient; T = 1,000 only.
- casadi_map: an SX step Function, ``mapaccum`` over T, MX Function of value and gradient
              (CasADi's virtual machine).
- casadi_map_c: the same MX Function's generated C (``cc -O3 -march=native``), loaded with
              ``casadi.external``.

Per peer and T: "first call" = build (trace/record/compile, whatever the peer needs) + one call;
then the gradient is checked against symgrad's (rtol 1e-8), and "steady" is the median time per
value-and-gradient over repetitions (each repetition a batch of calls calibrated to ~20 ms; a
budget of ~15 s per peer and T, at least 3 repetitions).
"""
import os
import sys

# Single-threaded everywhere, before any peer is imported (the workload is scalar anyway).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false"
                           " intra_op_parallelism_threads=1").strip()

import platform  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

G = 9.81
HORIZON = 10.0
THETA0, OMEGA0 = 1.0, 0.0
P = (0.3, 1.5)                      # damping, length
RTOL = 1e-8
BUDGET_S = 15.0                     # steady-state timing budget per peer and T
SLOW_LIMIT_S = 60.0                 # skip steady timing if one call takes longer than this
CASADI_SX_MAX_T = 1000


class Skip(Exception):
    pass


# ---------------------------------------------------------------------------------------------
# peers: each returns call() -> (value, (d_damping, d_length)) as Python floats

def _symgrad_loss(damping, length, dt, steps, checkpoint=None):
    import symgrad
    import symgrad.numpy as snp

    def step(i, state):
        theta, omega = state
        return (theta + dt * omega,
                omega + dt * (-G / length * snp.sin(theta) - damping * omega))
    theta, omega = symgrad.fori_loop(0, steps, step, (snp.asarray(THETA0), snp.asarray(OMEGA0)),
                                     checkpoint=checkpoint)
    return theta ** 2 + omega ** 2


def peer_symgrad(T, tmp, checkpoint=None, name="symgrad"):
    import symgrad
    dt = HORIZON / T

    def loss(damping, length):
        return _symgrad_loss(damping, length, dt, T, checkpoint)

    f = symgrad.compile(loss, argnums=(0, 1), backend="c", cache_dir=str(tmp / name))

    def call():
        return f.value_and_grad(*P)

    def conv(r):
        v, (a, b) = r
        return float(v), (float(a), float(b))
    return call, conv


def peer_symgrad_sqrt(T, tmp):
    """symgrad with checkpoint="sqrt": every ceil(sqrt(T))-th carry stored, the rest recomputed."""
    return peer_symgrad(T, tmp, checkpoint="sqrt", name="symgrad_sqrt")


def peer_symgrad_T_arg(T, tmp):
    """symgrad with the trip count (and dt) as arguments: one build serves every T."""
    import symgrad

    def loss(damping, length, dt, steps):
        return _symgrad_loss(damping, length, dt, steps)

    f = symgrad.compile(loss, argnums=(0, 1), backend="c", cache_dir=str(tmp / "symgrad_T_arg"))
    dt = HORIZON / T

    def call():
        return f.value_and_grad(*P, dt, T)

    def conv(r):
        v, (a, b) = r
        return float(v), (float(a), float(b))
    return call, conv


def peer_jax(T, tmp):
    import jax
    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp
    dt = HORIZON / T

    def loss(damping, length):
        def step(i, state):
            theta, omega = state
            return (theta + dt * omega,
                    omega + dt * (-G / length * jnp.sin(theta) - damping * omega))
        theta, omega = jax.lax.fori_loop(0, T, step, (jnp.asarray(THETA0), jnp.asarray(OMEGA0)))
        return theta ** 2 + omega ** 2

    vg = jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))
    args = tuple(jnp.asarray(p, dtype=jnp.float64) for p in P)   # on the device once

    def call():
        return jax.block_until_ready(vg(*args))

    def conv(r):
        v, (a, b) = r
        return float(v), (float(a), float(b))
    return call, conv


def peer_torch(T, tmp):
    import torch
    torch.set_num_threads(1)
    dt = HORIZON / T

    def call():
        damping = torch.tensor(P[0], dtype=torch.float64, requires_grad=True)
        length = torch.tensor(P[1], dtype=torch.float64, requires_grad=True)
        theta = torch.tensor(THETA0, dtype=torch.float64)
        omega = torch.tensor(OMEGA0, dtype=torch.float64)
        for _ in range(T):
            theta, omega = (theta + dt * omega,
                            omega + dt * (-G / length * torch.sin(theta) - damping * omega))
        out = theta ** 2 + omega ** 2
        return out, torch.autograd.grad(out, (damping, length))

    def conv(r):
        v, (a, b) = r
        return float(v.detach()), (float(a), float(b))
    return call, conv


def _casadi_sx_function(T):
    import casadi as ca
    dt = HORIZON / T
    damping, length = ca.SX.sym("damping"), ca.SX.sym("length")
    theta, omega = ca.SX(THETA0), ca.SX(OMEGA0)
    for _ in range(T):
        theta, omega = (theta + dt * omega,
                        omega + dt * (-G / length * ca.sin(theta) - damping * omega))
    loss = theta ** 2 + omega ** 2
    p = ca.vertcat(damping, length)
    return ca.Function("pend_sx", [damping, length], [loss, ca.gradient(loss, p)])


def _casadi_map_function(T, name="pend_map"):
    import casadi as ca
    dt = HORIZON / T
    x, p = ca.SX.sym("x", 2), ca.SX.sym("p", 2)      # x = (theta, omega), p = (damping, length)
    theta, omega = x[0], x[1]
    step = ca.Function("step", [x, p],
                       [ca.vertcat(theta + dt * omega,
                                   omega + dt * (-G / p[1] * ca.sin(theta) - p[0] * omega))])
    acc = step.mapaccum("acc", T)                     # (x0, p[2 x T] or broadcast) -> x[2 x T]
    pm = ca.MX.sym("p", 2)
    xs = acc(ca.DM([THETA0, OMEGA0]), ca.repmat(pm, 1, T))
    xT = xs[:, T - 1]
    loss = ca.sumsqr(xT)
    return ca.Function(name, [pm], [loss, ca.gradient(loss, pm)])


def _casadi_conv(r):
    g = np.asarray(r[1]).ravel()
    return float(r[0]), (float(g[0]), float(g[1]))


def peer_casadi_sx(T, tmp):
    if T > CASADI_SX_MAX_T:
        raise Skip(f"unrolled SX graph of {T} steps not built (T <= {CASADI_SX_MAX_T} only)")
    F = _casadi_sx_function(T)

    def call():
        return F(*P)
    return call, _casadi_conv


def peer_casadi_map(T, tmp):
    F = _casadi_map_function(T)
    p = np.array(P)

    def call():
        return F(p)
    return call, _casadi_conv


def peer_casadi_map_c(T, tmp):
    import casadi as ca
    name = f"pend_map_c_{T}"
    F = _casadi_map_function(T, name)
    d = tmp / "casadi_c"
    d.mkdir(parents=True, exist_ok=True)
    cwd = os.getcwd()
    os.chdir(d)
    try:
        F.generate(f"{name}.c", {"with_header": False})
    finally:
        os.chdir(cwd)
    so = d / f"{name}.so"
    subprocess.run(["cc", "-O3", "-march=native", "-fPIC", "-shared", "-o", str(so),
                    str(d / f"{name}.c"), "-lm"], check=True)
    Gx = ca.external(name, str(so))
    p = np.array(P)

    def call():
        return Gx(p)
    return call, _casadi_conv


PEERS = {"symgrad": peer_symgrad, "symgrad_sqrt": peer_symgrad_sqrt,
         "symgrad_T_arg": peer_symgrad_T_arg, "jax": peer_jax, "torch": peer_torch,
         "casadi_sx": peer_casadi_sx, "casadi_map": peer_casadi_map,
         "casadi_map_c": peer_casadi_map_c}


# ---------------------------------------------------------------------------------------------

def steady(call, one_call_s, budget, min_reps):
    """Median seconds per call over repetitions of a batch of calls (~20 ms a batch)."""
    batch = max(1, int(0.02 / max(one_call_s, 1e-7)))
    times = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget and len(times) < 41):
        t0 = time.perf_counter()
        for _ in range(batch):
            call()
        times.append((time.perf_counter() - t0) / batch)
    return statistics.median(times), len(times), batch


def fmt_s(s):
    if s is None:
        return "–"
    if s >= 1:
        return f"{s:.2f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.3g} ms"
    return f"{s * 1e6:.3g} µs"


def run(Ts, peers, quick):
    tmp = Path(tempfile.mkdtemp(prefix="loops_pendulum_"))
    rows, failures = [], []
    budget = 1.0 if quick else BUDGET_S
    try:
        for T in Ts:
            ref = None
            for peer in peers:
                rec = {"T": T, "peer": peer}
                try:
                    t0 = time.perf_counter()
                    call, conv = PEERS[peer](T, tmp / f"T{T}")
                    r = call()
                    rec["first"] = time.perf_counter() - t0
                    v, g = conv(r)
                    rec["value"], rec["grad"] = v, g
                    if peer == "symgrad":
                        ref = (v, g)
                    elif ref is None:
                        raise RuntimeError("no symgrad reference to check against")
                    else:
                        ok = (np.allclose(v, ref[0], rtol=RTOL, atol=0)
                              and np.allclose(g, ref[1], rtol=RTOL, atol=0))
                        rec["maxrel"] = float(np.max(np.abs(np.subtract(g, ref[1]))
                                                     / np.abs(ref[1])))
                        if not ok:
                            raise AssertionError(
                                f"gradient mismatch: {peer} value {v!r} grad {g!r}; symgrad "
                                f"value {ref[0]!r} grad {ref[1]!r} (rtol {RTOL})")
                    # a second, timed call (caches warm) calibrates the batch size
                    t0 = time.perf_counter()
                    call()
                    one = time.perf_counter() - t0
                    rec["one"] = one
                    if one > SLOW_LIMIT_S:
                        rec["note"] = f"one call {one:.0f} s > {SLOW_LIMIT_S:.0f} s: not repeated"
                        rec["steady"], rec["reps"] = one, 1
                    else:
                        min_reps = 3 if one > 1 else (3 if quick else 11)
                        med, n, batch = steady(call, one, budget, min_reps)
                        rec["steady"], rec["reps"], rec["batch"] = med, n, batch
                except Skip as e:
                    rec["skip"] = str(e)
                except Exception as e:   # noqa: BLE001 - report every peer's failure, go on
                    rec["error"] = f"{type(e).__name__}: {e}"
                    failures.append(rec)
                    traceback.print_exc()
                rows.append(rec)
                status = rec.get("skip") or rec.get("error") or (
                    f"first {fmt_s(rec['first'])}, steady {fmt_s(rec['steady'])} "
                    f"({rec['reps']} reps x {rec.get('batch', 1)})")
                print(f"# T={T:>7} {peer:<13} {status}", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return rows, failures


def table(rows):
    out = ["| T | peer | first call (build + 1 call) | steady per value+grad | vs symgrad "
           "| max rel. grad diff vs symgrad | note |",
           "|---:|---|---:|---:|---:|---:|---|"]
    sg = {r["T"]: r.get("steady") for r in rows if r["peer"] == "symgrad"}
    for r in rows:
        if "skip" in r or "error" in r:
            out.append(f"| {r['T']:,} | {r['peer']} | – | – | – | – | "
                       f"{'skipped: ' + r['skip'] if 'skip' in r else 'FAILED: ' + r['error']} |")
            continue
        ratio = "–"
        if sg.get(r["T"]):
            x = r["steady"] / sg[r["T"]]
            ratio = f"{x:,.0f}×" if x >= 100 else f"{x:.3g}×"
        diff = f"{r['maxrel']:.1e}" if "maxrel" in r else "(reference)"
        note = r.get("note", f"median of {r['reps']} reps × {r.get('batch', 1)} calls")
        out.append(f"| {r['T']:,} | {r['peer']} | {fmt_s(r['first'])} | {fmt_s(r['steady'])} | "
                   f"{ratio} | {diff} | {note} |")
    return "\n".join(out)


def main(argv):
    quick = "--quick" in argv
    Ts = (10, 100) if quick else (1000, 100_000)
    peers = list(PEERS)
    for a in argv:
        if a.startswith("--peers="):
            peers = ["symgrad"] + [p for p in a.split("=", 1)[1].split(",") if p != "symgrad"]
    # Import every peer up front, so that no first call pays for an import.
    import casadi  # noqa: F401
    import jax
    jax.config.update("jax_enable_x64", True)
    import symgrad  # noqa: F401
    import symgrad.numpy  # noqa: F401
    import torch  # noqa: F401
    t0 = time.perf_counter()
    rows, failures = run(Ts, peers, quick)
    import importlib.metadata as md
    versions = []
    for pkg in ("jax", "torch", "casadi"):
        try:
            versions.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    print(f"Damped pendulum, explicit Euler, dt = {HORIZON:g}/T, loss = theta_T^2 + omega_T^2, "
          f"gradient w.r.t. (damping, length) at {P}; float64, 1 thread; "
          f"{platform.machine()}, Python {platform.python_version()}, {', '.join(versions)}; "
          f"load average {os.getloadavg()[0]:.2f}; total run {time.perf_counter() - t0:.0f} s.\n")
    print(table(rows))
    if failures:
        print(f"\n{len(failures)} peer(s) failed.")
    return 1 if any("mismatch" in f["error"] for f in failures) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
