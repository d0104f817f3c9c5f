#!/usr/bin/env bash
# Create benchmarks/.venv with every peer of the benchmark suite (issue 7) and symgrad itself
# installed editable from this repository. Peers are never symgrad dependencies.
#
#   bash benchmarks/setup_peers.sh            # create / update benchmarks/.venv
#   benchmarks/.venv/bin/python benchmarks/run.py
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
VENV="${BENCH_VENV:-$HERE/.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
PIP="$VENV/bin/python -m pip"
$PIP install --upgrade pip wheel setuptools
# torch first, pinned: 2.13.0 is the local CPU wheel; a range would pull a multi-GB CUDA build.
$PIP install "torch==2.13.0"
$PIP install numpy scipy cffi autograd "jax[cpu]" casadi pytensor matplotlib threadpoolctl
# symgrad itself, editable from the repository.
$PIP install -e "$HERE/.."
"$VENV/bin/python" - <<'PY'
import importlib
for name in ["numpy", "scipy", "cffi", "autograd", "jax", "torch", "casadi", "pytensor", "symgrad", "matplotlib"]:
    try:
        m = importlib.import_module(name)
        print(f"{name:12s} {getattr(m, '__version__', '?')}")
    except Exception as e:  # report, don't fail: run.py skips peers that don't import
        print(f"{name:12s} MISSING ({type(e).__name__}: {e})")
PY
