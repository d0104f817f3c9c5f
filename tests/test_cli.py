"""``symgrad check`` and ``symgrad inspect`` command lines, and ``symgrad cache``.

A bad command line is one line on stderr and exit code 2 (never a traceback); ``--arg NAME=``
names are matched to the parameters; random integer data is valid for how the function uses it;
explicit values come as numbers, lists or ``@file.npy``.
"""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from symgrad.tools import cli

SMALL = textwrap.dedent("""\
    import symgrad.numpy as snp, symgrad.nn as snn
    def small(W, X, y, reg):
        h = snp.tanh(X @ W)
        logp = snn.log_softmax(h, axis=1)
        n = X.shape[0]
        return -snp.mean(logp[snp.arange(n), y]) + reg * snp.sum(W * W)

    def rows(A, k):
        return snp.sum(A[k] ** 2)

    def scaled(x, s=2.0):
        return snp.sum(x * s)
    """)
GOOD = ["--arg", "W=f64[5,3]", "--arg", "X=f64[6,5]", "--arg", "y=i64[6]", "--arg", "reg=f64[]"]


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.py"
    path.write_text(SMALL)
    return path


@pytest.mark.parametrize("seed", range(4))
def test_check_draws_labels_within_the_classes(small, capsys, seed):
    """y indexes axis 1 of the (6, 3) log-probabilities: labels are drawn in 0..2, not 0..5."""
    assert cli.main(["check", f"{small}:small", *GOOD, "--seed", str(seed)]) == 0
    assert "(ok;" in capsys.readouterr().out


def test_random_indices_fit_the_axis_they_index(small):
    fn = cli.load_function(f"{small}:small")
    args = cli.example_arguments(fn, cli.bind_parameters(fn, GOOD[1::2]), seed=1)
    assert args[2].dtype == np.int64 and args[2].shape == (6,) and args[2].max() <= 2
    assert cli.index_bounds(fn, args) == {2: 3}
    # An index into the first axis of a (4, 9) array: 0..3.
    fn = cli.load_function(f"{small}:rows")
    args = cli.example_arguments(fn, cli.bind_parameters(fn, ["A=f64[4,9]", "k=i64[50]"]))
    assert cli.index_bounds(fn, args) == {1: 4} and set(args[1]) == {0, 1, 2, 3}


def test_explicit_values(small, tmp_path, capsys):
    X = np.linspace(-1, 1, 15).reshape(3, 5)
    np.save(tmp_path / "X.npy", X)
    assert cli.main(["check", f"{small}:small", "--arg", "W=f64[5,3]", "--arg",
                     f"X=@{tmp_path / 'X.npy'}", "--arg", "y=[0, 2, 1]", "--arg",
                     "reg=0.5"]) == 0
    assert "(ok;" in capsys.readouterr().out
    assert cli.parse_arg("y=[0,2,1]")[1].dtype == np.int64
    assert cli.parse_arg("x=[[1.5, 2], [3, 4]]")[1].shape == (2, 2)
    assert cli.parse_arg("r=-1e-3") == ("r", -1e-3)
    assert cli.parse_arg("W=f64[N,3]") == ("W", ("float64", ("N", 3)))


def test_arguments_are_matched_by_name_in_any_order(small, capsys):
    shuffled = ["--arg", "reg=f64[]", "--arg", "y=i64[6]", "--arg", "X=f64[6,5]", "--arg",
                "W=f64[5,3]"]
    assert cli.main(["check", f"{small}:small", *shuffled]) == 0
    # A parameter with a default may be left out.
    assert cli.main(["check", f"{small}:scaled", "--arg", "x=f64[3]"]) == 0
    capsys.readouterr()


BAD = {
    "too few --arg": (["--arg", "W=f64[5,3]"], "missing --arg for X, y, reg: small takes W, "
                                               "X, y, reg"),
    "unknown name": (["--arg", "a=1", *GOOD[2:]], "--arg a: small has no parameter 'a'; its "
                                                  "parameters are W, X, y, reg"),
    "twice": ([*GOOD, "--arg", "W=f64[2]"], "--arg W is given twice"),
    "malformed type": (["--arg", "W=f64[5,3", *GOOD[2:]], "--arg W: cannot read type string "
                                                         "'f64[5,3'"),
    "not NAME=VALUE": (["--arg", "f64[5,3]", *GOOD[2:]], "expected NAME=VALUE"),
    "argnums out of range": ([*GOOD, "--argnums", "4"], "--argnums 4: the function has 4 "
                                                       "parameter(s), numbered 0 to 3"),
    "integer argnums": ([*GOOD, "--argnums", "2"], "cannot differentiate small with respect "
                                                   "to argument 2"),
    "shapes": (["--arg", "W=f64[5,3]", "--arg", "X=f64[6,4]", *GOOD[4:]],
               "ShapeError: matmul: shapes (6, 4) and (5, 3) are not aligned"),
    "label out of range": ([*GOOD[:4], "--arg", "y=[0,1,2,0,1,5]", *GOOD[6:]],
                           "index 5 in argument 'y' is out of bounds for axis 1 with size 3"),
    "missing file": ([*GOOD[:2], "--arg", "X=@nowhere.npy", *GOOD[4:]],
                     "--arg X: cannot read nowhere.npy as a .npy array"),
    "bad list": ([*GOOD[:4], "--arg", "y=[0,1", *GOOD[6:]], "is not a number or a list"),
}


@pytest.mark.parametrize("command", ["check", "inspect"])
@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_command_lines_are_one_line_and_exit_2(small, capsys, command, case):
    argv, message = BAD[case]
    if command == "inspect" and case == "label out of range":
        # inspect still shows the graphs and the C; its summary says the call failed.
        assert cli.main([command, f"{small}:small", *argv]) == 0
        assert f"compiled, but the call failed: IndexError: {message}" in capsys.readouterr().out
        return
    assert cli.main([command, f"{small}:small", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"symgrad {command}: ") and message in err, err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("target", ["nofile.py:f", "SMALL:nofn", "SMALL"])
def test_bad_targets(small, capsys, target):
    target = target.replace("SMALL", str(small))
    assert cli.main(["inspect", target, *GOOD]) == 2
    err = capsys.readouterr().err
    assert err.startswith("symgrad inspect: ") and err.count("\n") == 1


def test_the_installed_command_exits_2_without_a_traceback(small):
    """Through the console entry point (``python -m symgrad.tools.cli``), as a user runs it."""
    done = subprocess.run([sys.executable, "-m", "symgrad.tools.cli", "check", f"{small}:small",
                           "--arg", "W=f64[5,3"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.startswith("symgrad check: --arg W: cannot read type string")


# --- symgrad cache -----------------------------------------------------------------------------

def run_cache(env, *argv):
    done = subprocess.run([sys.executable, "-m", "symgrad.tools.cli", "cache", *argv],
                          capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_cache_shows_where_and_how_big_and_clears(tmp_path):
    root = tmp_path / "cache"
    env = {**os.environ, "SYMGRAD_CACHE_DIR": str(root)}
    out = run_cache(env)
    assert f"symgrad cache: {root} ($SYMGRAD_CACHE_DIR) (not created yet)" in out
    assert "0 compiled entries, 0 bytes" in out
    # Compile one function into it (in a process of its own, as a user would).
    code = ("import numpy as np, symgrad, symgrad.numpy as snp\n"
            "f = symgrad.compile(lambda x: snp.sum(snp.sin(x)))\n"
            "f.value_and_grad(np.ones(3))\n")
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)
    (root / "notes.txt").write_text("not symgrad's")
    out = run_cache(env)
    assert "1 compiled entry, " in out and "KiB" in out
    out = run_cache(env, "--clear")
    assert "removed 1 compiled entry" in out
    assert (root / "notes.txt").read_text() == "not symgrad's"     # only symgrad's own
    assert "0 compiled entries, 0 bytes" in run_cache(env)
