"""The worked examples in their --quick mode, each in its own Python process.

All five start at once (one module-scoped fixture) and each test reads its own output, so the
suite waits for the slowest, not the sum. Figures go to a temporary directory, never into docs/.
"""
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

for module in ("sklearn", "matplotlib", "scipy"):
    pytest.importorskip(module, reason=f"the examples need {module}: "
                                       f"pip install 'symgrad[examples]'")

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NAMES = ["random_search_vs_gradient", "linear_classifiers", "two_layer_net", "optimizers_race",
         "curve_fit"]
TIMEOUT = 300


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """name -> (returncode, stdout, stderr, figures directory) of each example's quick run."""
    procs = {}
    for name in NAMES:
        figures = tmp_path_factory.mktemp(name)
        procs[name] = (subprocess.Popen(
            [sys.executable, str(EXAMPLES / f"{name}.py"), "--quick", "--figures", str(figures)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "MPLBACKEND": "Agg"}), figures)
    done = {}
    for name, (proc, figures) in procs.items():
        out, err = proc.communicate(timeout=TIMEOUT)
        done[name] = (proc.returncode, out, err, figures)
    return done


def finished(runs, name):
    code, out, err, figures = runs[name]
    assert code == 0, f"{name}.py --quick failed:\n{out}\n{err}"
    assert (figures / f"{name}.png").stat().st_size > 10_000
    return out


def accuracies(out):
    """{label: accuracy} from lines like ``softmax test accuracy: 0.9511``."""
    return {label: float(value) for label, value in
            re.findall(r"^(.*?) test accuracy: ([0-9.]+)", out, flags=re.MULTILINE)}


def test_random_search_vs_gradient(runs):
    acc = accuracies(finished(runs, "random_search_vs_gradient"))
    assert set(acc) == {"random search", "random local search", "gradient descent"}
    assert acc["gradient descent"] > 0.85                   # chance is 0.1
    assert acc["gradient descent"] > acc["random search"]


def test_linear_classifiers(runs):
    acc = accuracies(finished(runs, "linear_classifiers"))
    assert set(acc) == {"softmax", "svm"}
    assert min(acc.values()) > 0.85


def test_two_layer_net(runs):
    out = finished(runs, "two_layer_net")
    assert accuracies(out)["two-layer net"] > 0.9
    assert re.search(r"symgrad [0-9.]+ ms, hand-derived NumPy [0-9.]+ ms", out)


def test_optimizers_race(runs):
    out = finished(runs, "optimizers_race")
    acc = accuracies(out)
    assert len(acc) == 6 and min(acc.values()) > 0.8
    losses = [float(x) for x in re.findall(r"^Rosenbrock .* loss ([0-9.e+-]+),", out,
                                           flags=re.MULTILINE)]
    assert len(losses) == 6 and min(losses) < 0.1           # it starts at 24.2


def test_curve_fit(runs):
    out = finished(runs, "curve_fit")
    error = float(re.search(r"max relative parameter error: ([0-9.]+)", out).group(1))
    assert error < 0.1


def test_no_figure_unless_asked(tmp_path):
    """Without --figures an example writes no file (it wrote into docs/figures)."""
    before = {p: p.stat().st_mtime_ns for p in (EXAMPLES.parent / "docs" / "figures").iterdir()}
    done = subprocess.run([sys.executable, str(EXAMPLES / "curve_fit.py"), "--quick"],
                          capture_output=True, text=True, timeout=TIMEOUT, cwd=tmp_path,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    assert done.returncode == 0, done.stderr
    assert "figure not saved (--figures DIR saves it)" in done.stdout
    assert list(tmp_path.iterdir()) == []
    assert {p: p.stat().st_mtime_ns
            for p in (EXAMPLES.parent / "docs" / "figures").iterdir()} == before
    for name in NAMES:
        assert "--figures DIR" in (EXAMPLES / f"{name}.py").read_text()


def test_curve_fit_draws_the_true_curve_on_top():
    """The fit covered the true curve: the true curve is drawn last, above, in another style."""
    sys.path.insert(0, str(EXAMPLES))
    try:
        import curve_fit
    finally:
        sys.path.remove(str(EXAMPLES))
    import numpy as np
    t = np.linspace(0, 10, 50)
    fig = curve_fit.figure(t, np.zeros_like(t), dict(curve_fit.TRUE))
    lines = {line.get_label(): line for line in fig.axes[0].get_lines()}
    true, fit = lines["true curve"], lines["L-BFGS-B fit"]
    assert true.get_zorder() > fit.get_zorder()
    assert true.get_linestyle() == "--" and fit.get_linestyle() == "-"
    assert true.get_color() != fit.get_color() and true.get_linewidth() < fit.get_linewidth()
