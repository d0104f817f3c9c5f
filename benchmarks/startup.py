#!/usr/bin/env python
"""Start-up costs (issue 20, goal 4), each measured in fresh processes: ``import symgrad``, the
first ``value_and_grad`` of a 3-layer network with a cold and a warm on-disk cache (beside
JAX's first call of the same network), and a function closing over a 300 x 300 constant.

    python benchmarks/startup.py                # -> benchmarks/startup.md (and .json)
    python benchmarks/run.py --startup ...      # the same table, beside the main run

Each cell is the median of ``--reps`` fresh processes: wall time and the process's own CPU time
(user + system). On a machine shared with other work the wall time stretches with the load;
the CPU time much less, so both are given. JAX runs in the peers' venv
(``benchmarks/.venv``, ``bash benchmarks/setup_peers.sh``) when it is there.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# SYMGRAD_BENCH_ROOT: measure another checkout (the "before" of a change), else this one.
ROOT = Path(os.environ.get("SYMGRAD_BENCH_ROOT") or HERE.parent)
PEERS_PYTHON = HERE / ".venv" / "bin" / "python"

# One child program per measurement; it prints one JSON line: wall and CPU seconds of the part
# measured (``t``/``cpu``), and of the whole process from interpreter start (``total``).
_CLOCK = """
import json, os, resource, sys, time
t0, c0 = time.perf_counter(), time.process_time()
def done(**extra):
    t, c = time.perf_counter() - t0, time.process_time() - c0
    print(json.dumps(dict(t=t, cpu=c, **extra)))
"""

IMPORT = _CLOCK + """
import symgrad
done(sympy="sympy" in sys.modules, scipy="scipy" in sys.modules, jinja2="jinja2" in sys.modules)
"""

IMPORT_NUMPY = _CLOCK + """
import numpy
done()
"""

MLP = _CLOCK + """
import numpy as np
import symgrad, symgrad.numpy as snp
from symgrad.backends.c import compiler
rng = np.random.default_rng(0)
args = [rng.standard_normal(s) * 0.1 for s in [(10, 32), (32, 32), (32, 1), (16, 10)]]
t1, c1 = time.perf_counter(), time.process_time()

def loss(W1, W2, W3, X):
    h = snp.tanh(X @ W1)
    h = snp.tanh(h @ W2)
    return snp.sum((h @ W3) ** 2)

v, g = symgrad.compile(loss, cache_dir=sys.argv[1]).value_and_grad(*args)
first, first_cpu = time.perf_counter() - t1, time.process_time() - c1
done(first=first, first_cpu=first_cpu, value=float(v), compiles=compiler.invocations(),
     sympy="sympy" in sys.modules)
"""

CONSTANT = _CLOCK + """
import numpy as np
import symgrad, symgrad.numpy as snp
rng = np.random.default_rng(0)
A = rng.standard_normal((300, 300))
x = rng.standard_normal(300)
t1, c1 = time.perf_counter(), time.process_time()

def f(x):
    return snp.sum(snp.tanh(A @ x) ** 2)

v, g = symgrad.compile(f, cache_dir=sys.argv[1]).value_and_grad(x)
first, first_cpu = time.perf_counter() - t1, time.process_time() - c1
c_bytes = sum(p.stat().st_size for p in __import__("pathlib").Path(sys.argv[1]).glob("*/module.c"))
done(first=first, first_cpu=first_cpu, c_bytes=c_bytes)
"""

JAX = _CLOCK + """
import os
os.environ.setdefault("JAX_PLATFORMS", "cpu")
import numpy as np
import jax, jax.numpy as jnp
jax.config.update("jax_enable_x64", True)
rng = np.random.default_rng(0)
args = [rng.standard_normal(s) * 0.1 for s in [(10, 32), (32, 32), (32, 1), (16, 10)]]
t1, c1 = time.perf_counter(), time.process_time()

def loss(W1, W2, W3, X):
    h = jnp.tanh(X @ W1)
    h = jnp.tanh(h @ W2)
    return jnp.sum((h @ W3) ** 2)

v, g = jax.jit(jax.value_and_grad(loss))(*args)
g.block_until_ready()
first, first_cpu = time.perf_counter() - t1, time.process_time() - c1
done(first=first, first_cpu=first_cpu, value=float(v))
"""


def _child(program, *args, python=None, env=None):
    """Run ``program`` in a fresh interpreter; its JSON record, plus the child's CPU time as the
    OS counts it (``os_cpu``: interpreter start included)."""
    before = os.times()
    # cwd: ``python -c`` puts the working directory first on sys.path, before PYTHONPATH.
    r = subprocess.run([python or sys.executable, "-c", program, *args], capture_output=True,
                       text=True, env=env, timeout=600, cwd=str(ROOT))
    after = os.times()
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    rec["os_cpu"] = (after.children_user - before.children_user
                     + after.children_system - before.children_system)
    return rec


def _median(recs, key):
    values = [r[key] for r in recs if r.get(key) is not None]
    return statistics.median(values) if values else None


def _symgrad_env():
    """The children's environment: this checkout first on the path, and Python's bytecode cache
    on (PYTHONDONTWRITEBYTECODE off), as an installed package has it: without it every child
    compiles symgrad's ~70 modules from source (0.4 s of CPU here), which no user pays twice."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def _importtime(env):
    """The cumulative import time (us) of each top-level module of ``import symgrad`` as
    ``-X importtime`` reports it, largest first: what each module costs, whatever the load."""
    r = subprocess.run([sys.executable, "-X", "importtime", "-c", "import symgrad"],
                       capture_output=True, text=True, env=env, timeout=300, cwd=str(ROOT))
    heavy = {m: 0 for m in ("numpy", "sympy", "jinja2", "cffi", "symgrad")}
    for line in r.stderr.splitlines():
        if not line.startswith("import time:") or "imported package" in line:
            continue
        parts = line.split("|")
        name = parts[2].strip()
        if name in heavy:
            heavy[name] = max(heavy[name], int(parts[1]))
    return heavy


def measure(reps=10, log=print, peers_python=None):
    env = _symgrad_env()
    out = {"reps": reps, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_before": os.getloadavg()[0]}
    _child(IMPORT, env=env)             # writes the bytecode cache; not measured
    log("import symgrad ...")
    out["python"] = [_child(_CLOCK + "done()", env=env) for _ in range(reps)]
    out["numpy"] = [_child(IMPORT_NUMPY, env=env) for _ in range(reps)]
    out["import"] = [_child(IMPORT, env=env) for _ in range(reps)]
    out["importtime_us"] = _importtime(env)
    log("first value_and_grad, cold and warm, interleaved with JAX's ...")
    peers_python = Path(peers_python or PEERS_PYTHON)
    cold, warm, jax = [], [], []
    if not peers_python.exists():
        log(f"JAX not measured: no peers' Python at {peers_python} (bash benchmarks/setup_peers.sh, "
            f"or --peers-python)")
    for _ in range(max(3, reps // 2)):
        with tempfile.TemporaryDirectory() as d:
            cold.append(_child(MLP, d, env=env))
            warm.extend(_child(MLP, d, env=env) for _ in range(3))
        if peers_python.exists():
            try:
                jax.append(_child(JAX, python=str(peers_python)))
            except RuntimeError as e:
                log(f"JAX failed: {e}")
    out["mlp_cold"], out["mlp_warm"] = cold, warm
    if jax:
        out["jax"] = jax
    log("a 300 x 300 constant ...")
    ccold, cwarm = [], []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as d:
            ccold.append(_child(CONSTANT, d, env=env))
            cwarm.append(_child(CONSTANT, d, env=env))
    out["const_cold"], out["const_warm"] = ccold, cwarm
    out["load_after"] = os.getloadavg()[0]
    return out


def table(m):
    ms = lambda s: "–" if s is None else f"{1e3 * s:.0f}"      # noqa: E731
    ms1 = lambda s: "–" if s is None else f"{1e3 * s:.1f}"     # noqa: E731
    load = (f"; load average {m['load_before']:.1f} before, {m['load_after']:.1f} after"
            if "load_before" in m else "")
    L = [f"Start-up, medians of fresh processes ({m['date']}{load}; wall time, and the "
         f"process's own CPU time, which a loaded machine stretches less; symgrad's bytecode "
         f"cached, as installed). symgrad's cold and warm first calls and JAX's are "
         f"interleaved.", "",
         "| what | wall ms | CPU ms | note |", "|---|---|---|---|"]
    L.append(f"| `python -c pass` | – | {ms(_median(m['python'], 'os_cpu'))} | the "
             f"interpreter's start (OS CPU time), included in no other row |")
    L.append(f"| `import numpy` | {ms(_median(m['numpy'], 't'))} | "
             f"{ms(_median(m['numpy'], 'cpu'))} | |")
    sympy_loaded = any(r.get("sympy") for r in m["import"])
    L.append(f"| `import symgrad` (numpy included) | {ms(_median(m['import'], 't'))} | "
             f"{ms(_median(m['import'], 'cpu'))} | sympy loaded: {sympy_loaded}; scipy loaded: "
             f"{any(r.get('scipy') for r in m['import'])}; "
             f"median of {len(m['import'])} |")
    it = m.get("importtime_us", {})
    L.append("| `-X importtime`, cumulative | " + ", ".join(
        f"{k} {v / 1e3:.0f}" for k, v in it.items() if v) + " | | one process |")
    for key, label in (("mlp_cold", "first `value_and_grad`, 3-layer net, cold cache"),
                       ("mlp_warm", "first `value_and_grad`, 3-layer net, warm cache")):
        recs = m[key]
        L.append(f"| {label} | {ms1(_median(recs, 'first'))} | "
                 f"{ms1(_median(recs, 'first_cpu'))} | compiles: "
                 f"{sorted({r['compiles'] for r in recs})}; sympy loaded: "
                 f"{any(r['sympy'] for r in recs)}; whole process "
                 f"{ms(_median(recs, 't'))} ms wall, {ms(_median(recs, 'os_cpu'))} ms CPU "
                 f"with the C compiler's |")
    if m.get("jax"):
        L.append(f"| JAX first `jit(value_and_grad)` call, same net | "
                 f"{ms1(_median(m['jax'], 'first'))} | {ms1(_median(m['jax'], 'first_cpu'))} | "
                 f"after `import jax`; whole process {ms(_median(m['jax'], 't'))} ms wall, "
                 f"{ms(_median(m['jax'], 'os_cpu'))} ms CPU |")
    for key, label in (("const_cold", "300 x 300 constant, cold cache"),
                       ("const_warm", "300 x 300 constant, warm cache")):
        recs = m[key]
        L.append(f"| {label} | {ms(_median(recs, 'first'))} | {ms(_median(recs, 'first_cpu'))}"
                 f" | C source {_median(recs, 'c_bytes') / 1e3:.0f} KB |")
    return "\n".join(L) + "\n"


def run(out=None, reps=10, log=print, peers_python=None):
    """Measure, write the table (``out``, default benchmarks/startup.md) and its JSON."""
    m = measure(reps, log, peers_python)
    out = Path(out or HERE / "startup.md")
    text = "# symgrad start-up\n\n" + table(m)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps(m, indent=1))
    log(text)
    return m


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--reps", type=int, default=10, help="fresh processes per measurement")
    ap.add_argument("--out", default=None, help="Markdown output (default benchmarks/startup.md)")
    ap.add_argument("--peers-python", default=None,
                    help="the Python with JAX (default benchmarks/.venv/bin/python)")
    opts = ap.parse_args(argv)
    run(opts.out, opts.reps, peers_python=opts.peers_python)


if __name__ == "__main__":
    main()
