#!/usr/bin/env python
"""symgrad's benchmark suite (issue 7): every peer side by side, in one run, as ratios.

    bash benchmarks/setup_peers.sh                        # once: the peers' venv
    benchmarks/.venv/bin/python benchmarks/run.py         # the full run -> benchmarks/results.md
    python benchmarks/run.py --quick --peers symgrad,numpy   # what CI runs (no timing asserted)

Every peer runs in a worker process of its own, started once per run, as a user runs one tool:
no other peer's thread pools spin in its process. After a peer's timed batch the run waits
until its process is quiet (``_wait_quiet``: its threads may go on spinning, OpenBLAS's for
~0.1 s, autograd's aftermath longer), and each timed batch follows ~0.1 s of untimed calls
(``--warmup``), so the caches hold this peer's data again, as in a training loop.
Until 6 December 2026 every peer ran in this one process in 5 ms batches with no warm-up:
JAX's W3 (N = 256, float64) took 1.82 ms that way against 0.99 ms in a process of its own,
called back to back; ``--in-process --batch 0.005 --warmup 0`` still measures that way. A
pause instead of the warm-up made the calls after it slower (16-call batches of W5 after 0.15 s
asleep: symgrad's float64 3.5 -> 5.1 ms; JAX's float32 2.7 -> 3.6 ms).

For every case (workload x size x dtype) and every peer that imports:
1. first call: build (trace + compile; symgrad gets a fresh ``cache_dir``) and call once;
2. the gradient, checked against symgrad's (rtol 1e-6 in float64, 1e-3 in float32) before any
   timing; a mismatch is reported and makes the run exit non-zero;
3. steady per-call time: repetitions interleaved round-robin across the peers' processes
   (shuffled order each repetition), one at a time, each repetition ~``--warmup`` seconds of
   untimed calls and a timed batch of ~``--batch`` seconds; the median per call;
4. warm-cache first call in a fresh process (for peers with an on-disk compile cache).
Floors: the hand-written C gradient through cffi (W1, W6), and for W2-W5 the FLOP count at the
machine's measured matmul peak and the bytes at its measured copy bandwidth.
"""
from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def _limit_threads(argv):
    """--threads N: cap every peer's thread pools (BLAS, OpenMP, XLA, PyTorch) before any of
    them is imported; children inherit the environment. On a shared, loaded machine threaded
    BLAS calls stall whenever one of their threads is descheduled, so a single thread gives the
    steadier comparison there."""
    n = None
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    if n is None:
        n = os.environ.get("SGB_THREADS")
    if not n:
        return
    os.environ["SGB_THREADS"] = n
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                "NUMEXPR_NUM_THREADS", "VECLIB_MAXIMUM_THREADS"):
        os.environ[var] = n
    if n == "1":
        os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                                   " --xla_cpu_multi_thread_eigen=false"
                                   " intra_op_parallelism_threads=1").strip()


_limit_threads(sys.argv[1:])
if "--quick" in sys.argv[1:]:
    os.environ.setdefault("SGB_PEND_T", "50")   # W6 unrolls 50 steps in quick mode, 200 in full

import numpy as np  # noqa: E402

import workloads as wls  # noqa: E402
from workloads import PEERS, PEER_MODULES, WARM_PEERS, WORKLOADS, NotApplicable  # noqa: E402

HAND_WRITTEN = ("numpy",)     # hand-derived gradients, not an AD tool
DEFAULT_PEERS = ["symgrad", "numpy", "autograd", "jax", "torch", "casadi", "casadi_c",
                 "pytensor", "c_floor"]


def configure_env(tmp):
    """Per-run compile caches for the peers that keep one on disk, set before they are imported,
    so first calls are cold and fresh-process calls find this run's cache."""
    os.environ.setdefault("SGB_TMP", str(tmp))
    tmp = Path(os.environ["SGB_TMP"])
    flags = os.environ.get("PYTENSOR_FLAGS", "")
    if "base_compiledir" not in flags:
        os.environ["PYTENSOR_FLAGS"] = ",".join(
            x for x in (flags, f"base_compiledir={tmp / 'pytensor'}") if x)
    os.environ.setdefault("SGB_JAX_CACHE", str(tmp / "jax"))
    return tmp


def import_peer(name):
    mod = PEER_MODULES[name]
    importlib.import_module(mod)
    if name == "torch" and os.environ.get("SGB_THREADS"):
        import torch
        torch.set_num_threads(int(os.environ["SGB_THREADS"]))
    if name == "jax":
        import jax
        jax.config.update("jax_enable_x64", True)
        jax.config.update("jax_platforms", "cpu")
        for k, v in (("jax_compilation_cache_dir", os.environ["SGB_JAX_CACHE"]),
                     ("jax_persistent_cache_min_compile_time_secs", 0.0),
                     ("jax_persistent_cache_min_entry_size_bytes", 0)):
            try:
                jax.config.update(k, v)
            except Exception:
                pass
    return sys.modules[mod]


def versions(peers):
    out = {"python": platform.python_version()}
    for p in peers:
        m = PEER_MODULES[p]
        try:
            v = getattr(importlib.import_module(m), "__version__", None)
            if v is None:
                from importlib import metadata
                v = metadata.version(m)
            out[m] = v
        except Exception:
            pass
    try:
        import hashlib
        import symgrad
        root = Path(symgrad.__file__).resolve().parent
        h = hashlib.sha256()
        for f in sorted(list(root.rglob("*.py")) + list((root.parent / "templates").glob("*.j2"))):
            h.update(f.read_bytes())
        out["symgrad source"] = f"{root} (sha256 {h.hexdigest()[:12]})"
    except Exception:
        pass
    try:
        out["cc"] = subprocess.run(["cc", "--version"], capture_output=True, text=True).stdout.splitlines()[0]
    except Exception:
        pass
    return out


def machine():
    info = {"platform": platform.platform(), "cores": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["memory"] = f"{int(line.split()[1]) / 2**20:.1f} GiB"
                break
    except OSError:
        pass
    try:
        import threadpoolctl
        info["blas"] = [f"{d.get('internal_api')} {d.get('version')} {d.get('architecture')} "
                        f"threads={d.get('num_threads')}"
                        for d in threadpoolctl.threadpool_info() if d.get("user_api") == "blas"]
    except Exception:
        pass
    info["OPENBLAS_CORETYPE"] = os.environ.get("OPENBLAS_CORETYPE", "(unset)")
    info["threads"] = os.environ.get("SGB_THREADS", "library defaults")
    try:
        info["load average at end"] = " ".join(f"{x:.1f}" for x in os.getloadavg())
    except OSError:
        pass
    return info


def measure_floors(quick):
    """The machine's matmul peak (NumPy's own matmul, square) per dtype, and its copy bandwidth
    (np.copyto of a large array; bytes = read + write)."""
    out = {}
    n = 512 if quick else 2048
    for dt in ("float64", "float32"):
        a = np.random.default_rng(0).standard_normal((n, n)).astype(dt)
        b = a.copy()
        c = np.empty_like(a)
        np.matmul(a, b, out=c)
        best = min(_timeit(lambda: np.matmul(a, b, out=c), 1) for _ in range(3 if quick else 7))
        out[f"peak_{dt}"] = 2 * n ** 3 / best
    m = (1 << 22) if quick else (1 << 26)       # 32 MiB / 512 MiB of float64
    src = np.ones(m)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timeit(lambda: np.copyto(dst, src), 1) for _ in range(3 if quick else 7))
    out["bandwidth"] = 2 * src.nbytes / best
    return out


def _timeit(fn, inner):
    gcold = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(inner):
            fn()
        return (time.perf_counter() - t0) / inner
    finally:
        if gcold:
            gc.enable()


class BuildTimeout(Exception):
    pass


def _alarm(signum, frame):
    raise BuildTimeout()


def build(peer, wl, case, cache_dir, timeout=None):
    """(fn, args, to_numpy, first-call seconds, first result). ``timeout`` seconds bound the
    build and first call (SIGALRM: it interrupts Python-level work such as graph rewriting)."""
    old = None
    if timeout and hasattr(signal, "SIGALRM"):
        old = signal.signal(signal.SIGALRM, _alarm)
        signal.alarm(int(timeout))
    try:
        t0 = time.perf_counter()
        fn, args, conv = PEERS[peer](wl, case, cache_dir=cache_dir)
        res = fn(*args)
        return fn, args, conv, time.perf_counter() - t0, res
    finally:
        if old is not None:
            signal.alarm(0)
            signal.signal(signal.SIGALRM, old)


def check(ref, got, dtype):
    """Assert-close of value and every gradient, relative to each gradient's scale."""
    rtol = 1e-6 if dtype == "float64" else 1e-3
    (v0, g0), (v1, g1) = ref, got
    problems = []
    if not np.isclose(v1, v0, rtol=rtol, atol=rtol * 1e-3):
        problems.append(f"value {v1!r} != {v0!r}")
    if len(g0) != len(g1):
        return [f"{len(g1)} gradients, expected {len(g0)}"]
    for k, (a, b) in enumerate(zip(g0, g1)):
        a = np.asarray(a, dtype=np.float64)
        b = np.asarray(b, dtype=np.float64).reshape(a.shape) if np.size(b) == np.size(a) else b
        if np.shape(b) != np.shape(a):
            problems.append(f"grad {k}: shape {np.shape(b)} != {np.shape(a)}")
            continue
        scale = float(np.max(np.abs(a))) if a.size else 0.0
        if not np.allclose(b, a, rtol=rtol, atol=rtol * scale):
            err = float(np.max(np.abs(b - a)))
            problems.append(f"grad {k}: max abs err {err:.3g} (scale {scale:.3g})")
    return problems


class InProcess:
    """Builds and times one peer's calls in this process (--in-process: every peer shares it,
    and with it every peer's thread pools)."""

    def __init__(self, peer):
        self.peer = peer
        self.live = None

    def build(self, case, cache_dir, timeout):
        self.live = None
        try:
            fn, args, conv, first, res = build(self.peer, WORKLOADS[case.workload], case,
                                               cache_dir, timeout)
        except BuildTimeout:
            return {"status": "timeout",
                    "note": f"build + first call took over {timeout:.0f} s; not timed"}
        except NotApplicable as e:
            return {"status": "n/a", "note": str(e)}
        except Exception as e:
            if os.environ.get("SGB_VERBOSE"):
                traceback.print_exc()
            return {"status": "error",
                    "note": f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"[:300]}
        self.live = (fn, args)
        return {"status": "ok", "first_s": first, "result": conv(res)}

    def time(self, inner, warm=0):
        fn, args = self.live
        for _ in range(warm):
            fn(*args)
        return _timeit(lambda: fn(*args), inner)

    def drop(self):
        self.live = None

    def close(self):
        self.live = None


class Worker:
    """One peer in a process of its own (``--worker PEER``), as a user runs it: no other
    peer's thread pools or caches in the process. Lines of JSON on its stdin and stdout; the
    result of a first call comes back through an .npz file."""

    def __init__(self, peer, tmp):
        self.peer = peer
        self.tmp = Path(tmp)
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--worker", peer],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1)
        self.ready = self._read()

    def _read(self):
        for line in self.proc.stdout:
            if line.startswith("SGB_W "):
                return json.loads(line[len("SGB_W "):])
        code = self.proc.wait()
        return {"status": "error", "note": f"worker for {self.peer} exited ({code})"}

    def _ask(self, **msg):
        if self.proc.poll() is not None:
            return {"status": "error", "note": f"worker for {self.peer} has exited"}
        self.proc.stdin.write(json.dumps(msg) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def build(self, case, cache_dir, timeout):
        out = self.tmp / f"result-{self.peer}.npz"
        reply = self._ask(op="build", case=_case_spec(case), cache_dir=cache_dir,
                          timeout=timeout, out=str(out))
        if reply.get("status") == "ok":
            with np.load(out) as z:
                reply["result"] = (float(z["value"]),
                                   [z[f"g{k}"] for k in range(int(z["count"]))])
            out.unlink()
        return reply

    def time(self, inner, warm=0):
        reply = self._ask(op="time", inner=inner, warm=warm)
        if "s" not in reply:
            raise RuntimeError(f"{self.peer} stopped while timed: {reply.get('note')}")
        _wait_quiet(self.proc.pid)
        return reply["s"]

    def drop(self):
        self._ask(op="drop")

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()


def _cpu_ns(pid):
    """The CPU time of every thread of process ``pid`` (ns; /proc/PID/task/*/schedstat), or
    None where /proc does not tell."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass        # a thread that ended meanwhile
    return total


def _wait_quiet(pid, window=0.01, busy=0.05, limit=2.0):
    """Return once process ``pid`` has used less than ``busy`` of a core over ``window``
    seconds (at most ``limit`` seconds): a peer's thread pools may go on spinning after its
    timed batch (OpenBLAS's spin for ~0.1 s; autograd's W4 at N = 500 left the next peer's
    batch 15-20% slower for longer than the next ~0.1 s warm-up: symgrad 1.13-1.16 ms against
    0.93-0.97 without autograd in the run, JAX 1.78-2.01 against 1.56-1.60). The peers run one
    at a time; this keeps them so."""
    end = time.perf_counter() + limit
    before = _cpu_ns(pid)
    while before is not None and time.perf_counter() < end:
        time.sleep(window)
        after = _cpu_ns(pid)
        if after is None or after - before < busy * window * 1e9:
            return
        before = after


def _case_spec(case):
    return [case.workload, case.label, case.dtype, list(map(list, case.params))]


def _case_from(spec):
    w, label, dtype, params = spec
    return wls.Case(w, label, dtype, tuple(tuple(p) for p in params))


def worker_main(peer):
    """The loop of a ``Worker`` process: build a case, time batches of its calls, drop it."""
    def say(msg):
        print("SGB_W " + json.dumps(msg), flush=True)
    try:
        import_peer(peer)
    except Exception as e:
        say({"status": "error", "note": f"import: {type(e).__name__}: {e}"[:300]})
        return 1
    here = InProcess(peer)
    say({"status": "ready"})
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["op"] == "build":
            reply = here.build(_case_from(msg["case"]), msg["cache_dir"], msg["timeout"])
            if reply["status"] == "ok":
                value, grads = reply.pop("result")
                np.savez(msg["out"], value=value, count=len(grads),
                         **{f"g{k}": np.asarray(g) for k, g in enumerate(grads)})
            say(reply)
        elif msg["op"] == "time":
            say({"s": here.time(msg["inner"], msg.get("warm", 0))})
        elif msg["op"] == "drop":
            here.drop()
            gc.collect()
            say({})
    return 0


def run_case(case, peers, opts, log, runners):
    """Build, check and time one case on every peer. ``runners[peer]`` builds and times the
    peer's calls: a worker process of its own (the default) or this process (--in-process)."""
    records = {}
    live = []
    tmp = Path(os.environ["SGB_TMP"])
    ref = None
    for peer in peers:          # symgrad first: its gradient is the reference
        rec = {"peer": peer}
        records[peer] = rec
        cache_dir = tmp / "cache" / peer / case.key.replace(" ", "_")
        rec["cache_dir"] = str(cache_dir)
        built = runners[peer].build(case, str(cache_dir), opts.build_timeout)
        if built["status"] != "ok":
            rec.update(built)
            if built["status"] != "n/a":
                log(f"    {peer}: {built['status'].upper()} {rec['note']}")
            continue
        rec["first_s"] = built["first_s"]
        got = built["result"]
        if ref is None:
            ref = got
            rec["reference"] = True
            problems = []
        else:
            problems = check(ref, got, case.dtype)
        if problems:
            rec["status"] = "mismatch"
            rec["note"] = "; ".join(problems)[:300]
            log(f"    {peer}: GRADIENT MISMATCH {rec['note']}")
            continue
        rec["status"] = "ok"
        note = wls.NOTES.get((peer, case.workload))
        if note:
            rec["note"] = note
        live.append(peer)
    if "symgrad" in peers and records["symgrad"].get("status") != "ok":
        log("    (symgrad failed: gradients checked against the first working peer)")

    # Steady state: calibrate a batch size per peer, then round-robin repetitions.
    target = opts.target
    inner = {}
    est = {}
    for peer in live:
        t = min(runners[peer].time(1), runners[peer].time(1))
        est[peer] = t
        inner[peer] = max(1, int(target / max(t, 1e-9)))
    warm = {p: int(opts.warmup / max(est[p], 1e-9)) for p in live}
    per_rep = sum((inner[p] + warm[p]) * est[p] for p in live) or 1e-9
    reps = max(opts.min_reps, min(opts.reps, int(opts.case_budget / per_rep)))
    samples = {p: [] for p in live}
    order = list(live)
    rnd = random.Random(0)
    for _ in range(reps):
        rnd.shuffle(order)
        for peer in order:
            samples[peer].append(runners[peer].time(inner[peer], warm[peer]))
    for peer in live:
        runners[peer].drop()
    for peer, s in samples.items():
        records[peer]["steady_s"] = statistics.median(s)
        records[peer]["steady_min_s"] = min(s)
        records[peer]["reps"] = len(s)
        records[peer]["inner"] = inner[peer]

    # Warm-cache first call, each in a fresh process.
    warm = not opts.no_warm and (not opts.warm_workloads
                                 or case.workload in opts.warm_workloads.split(","))
    if warm:
        for peer in live:
            if peer not in WARM_PEERS:
                continue
            if peer == "symgrad":
                # This process loaded symgrad's thread pool from the first case's cache
                # directory, so the later cases' directories lack the pool's library, which a
                # user's one cache directory holds after a first run: a first child builds it
                # there (~100 ms of the warm call measured otherwise, W3 N=500 f64: 102 ms
                # against 13), and the second is measured.
                warm_child(case, peer, records[peer]["cache_dir"], log)
            records[peer]["warm_s"] = warm_child(case, peer, records[peer]["cache_dir"], log)
    return records


def warm_child(case, peer, cache_dir, log):
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child",
           json.dumps({"case": _case_spec(case), "peer": peer, "cache_dir": cache_dir})]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        line = [x for x in r.stdout.splitlines() if x.startswith("SGB_CHILD ")]
        if r.returncode or not line:
            log(f"    {peer}: warm child failed: {(r.stderr or r.stdout).strip().splitlines()[-1:]}")
            return None
        return json.loads(line[-1][len("SGB_CHILD "):])["first_s"]
    except subprocess.TimeoutExpired:
        return None


def child_main(spec):
    spec = json.loads(spec)
    case = _case_from(spec["case"])
    import_peer(spec["peer"])                  # import time is not part of the call
    fn, args, conv, first, res = build(spec["peer"], WORKLOADS[case.workload], case,
                                       spec["cache_dir"])
    print("SGB_CHILD " + json.dumps({"first_s": first}))


# ----------------------------------------------------------------------------------------------
# Report

def fmt_ms(s):
    if s is None:
        return "—"
    ms = s * 1e3
    if ms >= 100:
        return f"{ms:.0f}"
    if ms >= 1:
        return f"{ms:.3g}"
    return f"{ms:.3g}" if ms >= 0.001 else f"{ms:.2e}"


def _ratio(x):
    return "—" if x is None else f"{x:.2f}×"


def fmt_s(s):
    return "—" if s is None else (f"{s:.3g}")


def floor_of(case, recs, mach):
    """(floor seconds, how) for a case."""
    c = recs.get("c_floor", {})
    if c.get("status") == "ok":
        return c["steady_s"], "hand C via cffi"
    cost = wls.cost(case)
    if cost is None or mach is None:
        return None, ""
    flops, nbytes = cost
    tf = flops / mach[f"peak_{case.dtype}"]
    tb = nbytes / mach["bandwidth"]
    return max(tf, tb), ("FLOPs/peak" if tf >= tb else "bytes/bandwidth")


def summarize(results, mach):
    rows = []
    for r in results:
        case, recs = r["case"], r["records"]
        peers_ok = {p: x for p, x in recs.items() if x.get("status") == "ok" and "steady_s" in x}
        others = {p: x["steady_s"] for p, x in peers_ok.items()
                  if p not in ("symgrad",) + wls.FLOOR_PEERS}
        best = min(others.items(), key=lambda kv: kv[1]) if others else (None, None)
        tools = {p: t for p, t in others.items() if p not in HAND_WRITTEN}
        best_ad = min(tools.items(), key=lambda kv: kv[1]) if tools else (None, None)
        floor, how = floor_of(case, recs, mach)
        sg = peers_ok.get("symgrad", {}).get("steady_s")
        rows.append({"case": case, "recs": recs, "best_peer": best[0], "best_s": best[1],
                     "floor_s": floor, "floor_how": how, "symgrad_s": sg,
                     "vs_best": (sg / best[1]) if sg and best[1] else None,
                     "best_ad": best_ad[0], "best_ad_s": best_ad[1],
                     "vs_ad": (sg / best_ad[1]) if sg and best_ad[1] else None,
                     "vs_floor": (sg / floor) if sg and floor else None})
    return rows


def steady_table(rows, peers):
    """The steady per-call table's lines, and notes on failed cells."""
    L, notes = [], []
    cols = [p for p in peers if p not in wls.FLOOR_PEERS]
    L.append("| case | " + " | ".join(cols) +
             " | floor | best peer | sg/best | best AD tool | sg/best AD | sg/floor |")
    L.append("|---" * (len(cols) + 7) + "|")
    for r in rows:
        cells = []
        for p in cols:
            x = r["recs"].get(p)
            if x is None:
                cells.append("")
            elif x.get("status") == "ok":
                cells.append(fmt_ms(x.get("steady_s")))
            elif x.get("status") == "n/a":
                cells.append("n/a")
            else:
                cells.append({"error": "ERR", "timeout": "T/O"}.get(x["status"], "BAD"))
                notes.append(f"- {r['case'].key} · {p}: {x['status']}: {x.get('note', '')}")
        fl = f"{fmt_ms(r['floor_s'])} ({r['floor_how']})" if r["floor_s"] else "—"
        L.append(f"| {r['case'].key} | " + " | ".join(cells) +
                 f" | {fl} | {r['best_peer'] or '—'} | {_ratio(r['vs_best'])} | "
                 f"{r['best_ad'] or '—'} | {_ratio(r['vs_ad'])} | {_ratio(r['vs_floor'])} |")
    return L, notes


def ratio_summary(rows, pinned_rows):
    """Issue 20's table: symgrad ÷ JAX and ÷ the best peer, default threads and pinned."""
    pinned = {r["case"].key: r for r in pinned_rows}

    def jax_ratio(r):
        sg = r["recs"].get("symgrad", {}).get("steady_s")
        jx = r["recs"].get("jax", {})
        return sg / jx["steady_s"] if sg and jx.get("status") == "ok" else None

    L = ["## Both thread modes side by side (< 1: symgrad faster)\n",
         "| case | sg ÷ JAX, default threads | sg ÷ JAX, pinned | sg ÷ best peer, default "
         "(peer) | sg ÷ best peer, pinned (peer) |", "|---|---|---|---|---|"]
    for r in rows:
        q = pinned.get(r["case"].key)
        if q is None:
            continue
        L.append(f"| {r['case'].key} | {_ratio(jax_ratio(r))} | {_ratio(jax_ratio(q))} | "
                 f"{_ratio(r['vs_best'])} ({r['best_peer'] or '—'}) | {_ratio(q['vs_best'])} "
                 f"({q['best_peer'] or '—'}) |")
    L.append("")
    return L


def write_markdown(path, rows, peers, mach, meta, plot_name=None, pinned_rows=None):
    L = []
    L.append("# symgrad benchmark results\n")
    L.append(f"Command: `{meta['command']}`  ")
    L.append(f"Date: {meta['date']} · wall time {meta['wall_s']:.0f} s · mode: "
             f"{'quick' if meta['quick'] else 'full'}\n")
    L.append("Machine: " + ", ".join(f"{k}: {v}" for k, v in meta["machine"].items()) + "  ")
    if mach:
        L.append(f"Measured: matmul peak {mach['peak_float64'] / 1e9:.1f} GFLOP/s (f64), "
                 f"{mach['peak_float32'] / 1e9:.1f} GFLOP/s (f32); copy bandwidth "
                 f"{mach['bandwidth'] / 1e9:.1f} GB/s  ")
    L.append("Versions: " + ", ".join(f"{k} {v}" for k, v in meta["versions"].items()) + "\n")
    L.append("## Steady per-call time (ms, median), value and gradient together"
             + (", default threads" if pinned_rows else "") + "\n")
    L.append("`sg/best` = symgrad ÷ best peer (< 1: symgrad is first); `sg/best AD` = symgrad ÷ the best AD tool (every peer but the hand-written NumPy/Python "
             "gradients); `sg/floor` = symgrad ÷ floor. "
             "Floor: hand-written C through cffi (W1, W6), else max(FLOPs / matmul peak, bytes / "
             "bandwidth). `n/a`: the peer does not do this case; `ERR`/`BAD`: failed / gradient "
             "mismatch (see notes).\n")
    table, notes = steady_table(rows, peers)
    L.extend(table)
    L.append("")
    if notes:
        L.append("Notes:\n")
        L.extend(notes)
        L.append("")
    if pinned_rows:
        L.append("## Pinned to one core: every peer one thread, the process on one CPU "
                 "(`sched_setaffinity`, as `taskset -c`)\n")
        table, notes = steady_table(pinned_rows, peers)
        L.extend(table)
        L.append("")
        if notes:
            L.extend(notes)
            L.append("")
        L.extend(ratio_summary(rows, pinned_rows))
    where = {}
    for r in rows:
        for p, x in r["recs"].items():
            if x.get("status") == "n/a" or (x.get("status") == "ok" and x.get("note")):
                where.setdefault((p, x.get("note")), []).append(r["case"])
    na = []
    for (p, note), cs in where.items():
        wl = sorted({c.workload for c in cs})
        sizes = sorted({c.label for c in cs}) if len(wl) == 1 and len(cs) < 4 else []
        na.append(f"- {p} ({', '.join(wl)}{' ' + ', '.join(sizes) if sizes else ''}): {note}")
    if na:
        L.append("Peer notes (n/a cells, and how a peer runs a case):\n")
        L.extend(na)
        L.append("")
    L.append("## First call (s): trace + compile + one call, fresh caches · "
             "warm-cache first call in a fresh process\n")
    cp = [p for p in peers]
    L.append("| case | " + " | ".join(f"{p} cold / warm" for p in cp) + " |")
    L.append("|---" * (len(cp) + 1) + "|")
    for r in rows:
        cells = []
        for p in cp:
            x = r["recs"].get(p, {})
            if x.get("status") != "ok":
                cells.append("")
                continue
            cells.append(f"{fmt_s(x.get('first_s'))} / {fmt_s(x.get('warm_s'))}")
        L.append(f"| {r['case'].key} | " + " | ".join(cells) + " |")
    L.append("")
    L.append("## Where symgrad is not first (ranked by symgrad ÷ best peer)\n")
    for mode, mode_rows in (("default threads", rows), ("pinned to one core", pinned_rows)):
        if not mode_rows:
            continue
        if pinned_rows:
            L.append(f"{mode[0].upper() + mode[1:]}:\n")
        losing = sorted((r for r in mode_rows if r["vs_best"] and r["vs_best"] > 1),
                        key=lambda r: -r["vs_best"])
        if not losing:
            L.append("Nowhere among the cases measured.\n")
        for i, r in enumerate(losing, 1):
            L.append(f"{i}. {r['case'].key}: {r['vs_best']:.2f}× slower than {r['best_peer']} "
                     f"({fmt_ms(r['symgrad_s'])} vs {fmt_ms(r['best_s'])} ms)"
                     + (f"; {r['vs_ad']:.2f}× the best AD tool ({r['best_ad']})"
                        if r["vs_ad"] and r["best_ad"] != r["best_peer"] else "")
                     + (f"; {r['vs_floor']:.2f}× the floor" if r["vs_floor"] else ""))
        L.append("")
    failed = [r for r in rows if r["recs"].get("symgrad", {}).get("status") not in ("ok", None)]
    for r in failed:
        L.append(f"- {r['case'].key}: symgrad {r['recs']['symgrad']['status']}: "
                 f"{r['recs']['symgrad'].get('note')}")
    L.append("")
    if plot_name:
        L.append(f"![per-call time relative to the floor]({plot_name})\n")
    Path(path).write_text("\n".join(L))


def write_plot(path, rows, peers):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except Exception:
        return False
    cases = [r for r in rows if r["best_s"] or r["floor_s"]]
    if not cases:
        return False
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(cases) + 3), 5))
    markers = "os^vD<>pPX*h"
    for k, p in enumerate(peers):
        xs, ys = [], []
        for i, r in enumerate(cases):
            x = r["recs"].get(p, {})
            base = r["floor_s"] or r["best_s"]
            if x.get("status") == "ok" and x.get("steady_s") and base:
                xs.append(i)
                ys.append(x["steady_s"] / base)
        if xs:
            ax.scatter(xs, ys, label=p, marker=markers[k % len(markers)],
                       s=60 if p == "symgrad" else 30, zorder=3 if p == "symgrad" else 2)
    ax.set_yscale("log")
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(cases)))
    ax.set_xticklabels([r["case"].key for r in cases], rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("per-call time ÷ floor (log)")
    ax.set_title("value + gradient, steady per-call time relative to the floor")
    ax.grid(True, axis="y", which="both", alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


# ----------------------------------------------------------------------------------------------

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes, few repetitions")
    ap.add_argument("--peers", default=",".join(DEFAULT_PEERS), help="comma-separated peers")
    ap.add_argument("--workloads", default=",".join(WORKLOADS), help="e.g. W1a,W1b,W3")
    ap.add_argument("--dtypes", default="float64,float32")
    ap.add_argument("--sizes", default="", help="only these sizes (e.g. n=1e6,N=500) of the workloads that have them")
    ap.add_argument("--reps", type=int, default=None, help="max repetitions per case")
    ap.add_argument("--no-warm", action="store_true", help="skip the fresh-process measurements")
    ap.add_argument("--warm-workloads", default="",
                    help="measure the fresh-process call only for these workloads")
    ap.add_argument("--out", default=None, help="Markdown output (default benchmarks/results.md)")
    ap.add_argument("--json", default=None, help="raw results (default beside --out)")
    ap.add_argument("--build-timeout", type=float, default=None,
                    help="seconds for one peer's build + first call (default 300; quick 120)")
    ap.add_argument("--threads", default=None,
                    help="cap every peer's threads (BLAS, OpenMP, XLA, torch) to N; one mode only")
    ap.add_argument("--modes", default="default,pinned",
                    help="thread modes to measure, in one run: 'default' (every library's own "
                         "thread defaults) and 'pinned' (a child process on one CPU, every "
                         "peer one thread); ignored with --threads")
    ap.add_argument("--pinned-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--startup", action="store_true",
                    help="also measure start-up (benchmarks/startup.py -> startup.md)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=float, default=0.05,
                    help="seconds of calls in one timed batch (default 0.05)")
    ap.add_argument("--warmup", type=float, default=None,
                    help="seconds of untimed calls before each timed batch, so that the threads "
                         "the last peer left spinning (OpenBLAS's spin ~0.1 s) have gone to "
                         "sleep and the caches hold this peer's data again (default 0.1; quick 0)")
    ap.add_argument("--in-process", action="store_true",
                    help="run every peer in this one process (the method before 6 December "
                         "2026) instead of each in a worker process of its own")
    ap.add_argument("--merge", nargs="+", default=None, metavar="JSON",
                    help="no measuring: rebuild the report from earlier runs' JSON files (a "
                         "later file's case replaces an earlier one's)")
    opts = ap.parse_args(argv)
    if opts.merge:
        return merge_main(opts, argv)

    tmp = configure_env(tempfile.mkdtemp(prefix="symgrad-bench-"))
    if opts.child:
        return child_main(opts.child)
    if opts.worker:
        return worker_main(opts.worker)
    if opts.verbose:
        os.environ["SGB_VERBOSE"] = "1"
    # Fresh processes of their own, before this one loads any peer; once, in the parent: the
    # pinned child's run would overwrite startup.md with one CPU's numbers.
    if opts.startup and not opts.pinned_child:
        import startup
        # 40: twenty fresh processes for each first-call row. One such first call varies by
        # ±25% from process to process here (symgrad's cold call 123-189 ms, JAX's 109-173 in
        # twenty each, 09:33 UTC); five made medians that swapped order from run to run
        # (119 against JAX's 122.5 in run J, 150 against 131 in run K).
        startup.run(reps=3 if opts.quick else 40)

    opts.reps = opts.reps or (5 if opts.quick else 21)
    opts.warmup = (0.0 if opts.quick else 0.1) if opts.warmup is None else opts.warmup
    opts.min_reps = 3 if opts.quick else 11
    opts.target = 2e-4 if opts.quick else opts.batch
    opts.case_budget = 0.3 if opts.quick else 30.0
    opts.build_timeout = opts.build_timeout or (120.0 if opts.quick else 300.0)
    out = Path(opts.out or HERE / "results.md")
    jpath = Path(opts.json or out.with_suffix(".json"))

    def log(msg):
        print(msg, flush=True)

    wanted = [p.strip() for p in opts.peers.split(",") if p.strip()]
    peers, runners = [], {}
    for p in wanted:
        if p not in PEERS:
            ap.error(f"unknown peer {p!r}; choose from {', '.join(PEERS)}")
        if opts.in_process:
            try:
                import_peer(p)
            except Exception as e:
                log(f"skipping {p}: {type(e).__name__}: {e}")
                continue
            runners[p] = InProcess(p)
        else:
            runners[p] = Worker(p, tmp)
            if runners[p].ready.get("status") != "ready":
                log(f"skipping {p}: {runners[p].ready.get('note')}")
                runners.pop(p).close()
                continue
        peers.append(p)
    if "symgrad" in peers:
        peers.remove("symgrad")
        peers.insert(0, "symgrad")
    log(f"peers: {', '.join(peers)}")
    t_start = time.time()
    mach = measure_floors(opts.quick)
    log(f"matmul peak f64 {mach['peak_float64'] / 1e9:.1f} GFLOP/s, f32 "
        f"{mach['peak_float32'] / 1e9:.1f}; bandwidth {mach['bandwidth'] / 1e9:.1f} GB/s")

    cases = []
    dtypes = opts.dtypes.split(",")
    sizes = [s for s in opts.sizes.split(",") if s]
    for w in opts.workloads.split(","):
        mine = WORKLOADS[w.strip()].cases(opts.quick, dtypes)
        picked = [c for c in mine if c.label in sizes]
        cases.extend(picked or mine)     # --sizes filters only workloads it names a size of

    results = []
    bad = 0
    for case in cases:
        log(f"== {case.key}")
        recs = run_case(case, peers, opts, log, runners)
        for p, x in recs.items():
            if x.get("status") == "mismatch":
                bad += 1
            if x.get("status") == "ok":
                log(f"    {p:9s} first {x['first_s']:.3g} s  steady {fmt_ms(x['steady_s'])} ms"
                    + (f"  warm {x['warm_s']:.3g} s" if x.get("warm_s") is not None else ""))
        results.append({"case": case, "records": recs})

    for r in runners.values():
        r.close()
    again = measure_floors(opts.quick)       # the machine is shared: keep the best reading
    mach = {k: max(v, again[k]) for k, v in mach.items()}
    rows = summarize(results, mach)
    pinned = None
    modes = [m.strip() for m in opts.modes.split(",") if m.strip()]
    if "pinned" in modes and not opts.threads and not opts.pinned_child:
        pinned = run_pinned(argv if argv is not None else sys.argv[1:], jpath, log)
        if "default" not in modes:
            rows, results, pinned = summarize(pinned["results"], pinned["mach"]), \
                pinned["results"], None
    pinned_rows = summarize(pinned["results"], pinned["mach"]) if pinned else None
    bad += sum(x.get("status") == "mismatch" for r in (pinned or {}).get("results", [])
               for x in r["records"].values())
    meta = {"command": " ".join(["python", "benchmarks/run.py"] + (argv if argv is not None else sys.argv[1:])),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "wall_s": time.time() - t_start, "quick": opts.quick,
            "machine": machine(), "versions": versions(peers)}
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = out.with_suffix(".png")
    have_plot = write_plot(plot, rows, peers) if not opts.pinned_child else False
    if not opts.pinned_child:
        write_markdown(out, rows, peers, mach, meta, plot.name if have_plot else None,
                       pinned_rows)
    data = {"meta": meta, "measured": mach, "cases": _case_records(rows)}
    if pinned_rows:
        data["pinned"] = {"meta": pinned["meta"], "measured": pinned["mach"],
                          "cases": _case_records(pinned_rows)}
    jpath.write_text(json.dumps(data, indent=1, default=str))
    log(f"wrote {out}" + (f" and {plot}" if have_plot else "") + f" ({jpath.name})")
    if bad:
        log(f"{bad} gradient mismatch(es)")
        return 1
    return 0


def _case_records(rows):
    return [{"case": r["case"].key, "best_ad": r["best_ad"], "vs_ad": r["vs_ad"],
             "workload": r["case"].workload, "label": r["case"].label, "dtype": r["case"].dtype,
             "params": [list(x) for x in r["case"].params], "records": r["recs"],
             "best_peer": r["best_peer"], "floor_s": r["floor_s"], "vs_best": r["vs_best"],
             "vs_floor": r["vs_floor"]} for r in rows]


def _cases_of(data):
    return [{"case": wls.Case(c["workload"], c["label"], c["dtype"],
                              tuple(tuple(x) for x in c.get("params", []))),
             "records": c["records"]} for c in data["cases"]]


def run_pinned(argv, jpath, log):
    """The same cases measured again in a child process pinned to one CPU (the last this
    process may use), every peer capped to one thread (--threads 1 sets their variables
    before they are imported; XLA, which ignores them, is held to the CPU by the affinity).
    Returns {"results", "mach", "meta"} or None when the child fails."""
    cpu = sorted(os.sched_getaffinity(0))[-1]
    child_json = jpath.with_name(jpath.stem + "-pinned.json")
    skip = {"--threads", "--out", "--json", "--modes"}
    args, it = [], iter(argv)
    for a in it:
        if a in skip:
            next(it, None)
        elif a.split("=", 1)[0] not in skip:
            args.append(a)
    cmd = [sys.executable, str(Path(__file__).resolve()), *args, "--threads", "1",
           "--pinned-child", "--no-warm", "--json", str(child_json), "--out",
           str(child_json.with_suffix(".md"))]
    log(f"== pinned to CPU {cpu}, one thread per peer: {' '.join(cmd[1:])}")
    r = subprocess.run(cmd, preexec_fn=lambda: os.sched_setaffinity(0, {cpu}))
    if r.returncode not in (0, 1) or not child_json.exists():
        log(f"pinned run failed (exit {r.returncode})")
        return None
    data = json.loads(child_json.read_text())
    child_json.unlink()
    return {"results": _cases_of(data), "mach": data["measured"], "meta": data["meta"]}


def merge_main(opts, argv):
    cases, metas, machs = {}, [], []
    for f in opts.merge:
        d = json.loads(Path(f).read_text())
        metas.append(d["meta"])
        machs.append(d["measured"])
        for c in d["cases"]:
            case = wls.Case(c["workload"], c["label"], c["dtype"],
                            tuple(tuple(x) for x in c.get("params", [])))
            cases[case.key] = {"case": case, "records": c["records"]}
    order = {k: i for i, k in enumerate(WORKLOADS)}
    results = sorted(cases.values(), key=lambda r: (order[r["case"].workload], r["case"].dtype != "float64",
                                                   r["case"].p.get("n", r["case"].p.get("N", 0))))
    mach = {k: max(m[k] for m in machs) for k in machs[0]}
    peers = []
    for r in results:
        for p in r["records"]:
            if p not in peers:
                peers.append(p)
    meta = dict(metas[0])
    meta["command"] = " ; ".join(m["command"] for m in metas) + " ; " + \
        " ".join(["python", "benchmarks/run.py"] + (argv if argv is not None else sys.argv[1:]))
    meta["wall_s"] = sum(m["wall_s"] for m in metas)
    meta["date"] = " / ".join(m["date"] for m in metas)
    vers = {}
    for m in metas:
        for k, v in m["versions"].items():
            vers.setdefault(k, [])
            if v not in vers[k]:
                vers[k].append(v)
    meta["versions"] = {k: " → ".join(map(str, v)) for k, v in vers.items()}
    rows = summarize(results, mach)
    out = Path(opts.out or HERE / "results.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    plot = out.with_suffix(".png")
    have_plot = write_plot(plot, rows, peers)
    write_markdown(out, rows, peers, mach, meta, plot.name if have_plot else None)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
