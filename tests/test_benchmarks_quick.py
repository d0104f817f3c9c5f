"""The benchmark suite's quick mode stays runnable (issue 7).

Runs ``benchmarks/run.py --quick`` for symgrad and the hand-written NumPy references in a
subprocess (no peers' venv needed) and asserts that the gradients agree. It never asserts a
timing: the numbers from a shared CI machine mean nothing.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RUN = ROOT / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "results.md"
    # The fresh-process (warm-cache) call is measured for two cheap workloads only, to keep
    # this test short; the full run measures it everywhere.
    r = subprocess.run([sys.executable, str(RUN), "--quick", "--peers", "symgrad,numpy",
                        "--warm-workloads", "W1b,W2", "--dtypes", "float64,float32",
                        "--out", str(out)],
                       capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return out, json.loads(out.with_suffix(".json").read_text())


def test_quick_mode_gradients_agree(quick):
    out, data = quick
    workloads = {c["workload"] for c in data["cases"]}
    assert workloads == {"W1a", "W1b", "W2", "W3", "W4", "W5", "W6"}
    assert {c["dtype"] for c in data["cases"] if c["workload"] in ("W2", "W3", "W4", "W5")} \
        == {"float64", "float32"}
    # Both thread modes in one run: the pinned child measured the same cases.
    assert {c["case"] for c in data["pinned"]["cases"]} == {c["case"] for c in data["cases"]}
    for c in data["cases"] + data["pinned"]["cases"]:
        recs = c["records"]
        # symgrad is the reference; numpy's gradient was checked against it before timing
        # (a mismatch makes run.py exit non-zero and marks the record "mismatch").
        assert recs["symgrad"]["status"] == "ok", (c["case"], recs["symgrad"])
        assert recs["symgrad"].get("reference") is True
        assert recs["numpy"]["status"] == "ok", (c["case"], recs["numpy"])
        assert "steady_s" in recs["symgrad"] and "steady_s" in recs["numpy"]
    text = out.read_text()
    assert "| case |" in text and "symgrad" in text and "numpy" in text
    assert "## Pinned to one core" in text and "## Both thread modes side by side" in text


def test_warm_cache_call_in_fresh_process(quick):
    _, data = quick
    warm = [c for c in data["cases"] if c["workload"] in ("W1b", "W2")]
    assert warm
    for c in warm:
        sg = c["records"]["symgrad"]
        assert sg.get("warm_s") is not None, (c["case"], sg)
