"""``symgrad inspect`` on every function a user meets first: the demo's, the examples' and the
golden set's, in text, HTML and Graphviz; and what each view may name.

Each listing names only values it (or the forward IR) defines; the adjoint and tangent listings
hold no dead statement (the graph after dead-code elimination is the one that runs); a C
comment names only variables its function declares; a node of the drawing says what it
computes (an adjoint is ``dy/dx``, never the word "grad" for every backward node).
"""
import re
import shutil
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest

import golden_functions as gf
import symgrad.numpy as snp
from symgrad.tools import cli, demo
from symgrad.tools import inspect as sgi
from symgrad.core.passes import dce

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
rng = np.random.default_rng(0)


def normal(*shape):
    return rng.standard_normal(shape)


def labels(n, classes):
    return rng.integers(0, classes, n)


def _examples():
    """(name, flat function, args) of each loss in examples/ (pytrees of parameters spread out
    into positional arguments, which is how inspect takes them)."""
    pytest.importorskip("sklearn", reason="the examples import scikit-learn")
    sys.path.insert(0, str(EXAMPLES))
    try:
        import curve_fit
        import linear_classifiers as lc
        import optimizers_race as race
        import random_search_vs_gradient as rs
        import two_layer_net as tl
    finally:
        sys.path.remove(str(EXAMPLES))
    t = np.linspace(0, 3, 9)
    return [
        ("curve_fit.mse",
         lambda A, gamma, omega, phi, c, t, y: curve_fit.mse.fn(
             dict(A=A, gamma=gamma, omega=omega, phi=phi, c=c), t, y),
         (1.0, 0.3, 2.0, 0.1, 0.5, t, np.sin(t))),
        ("linear_classifiers.softmax_loss", lambda W, b, X, y: lc.softmax_loss((W, b), X, y),
         (normal(4, 3), normal(3), normal(6, 4), labels(6, 3))),
        ("linear_classifiers.svm_loss", lambda W, b, X, y: lc.svm_loss((W, b), X, y),
         (normal(4, 3), normal(3), normal(6, 4), labels(6, 3))),
        ("optimizers_race.rosenbrock", race.rosenbrock, (np.array([-1.2, 1.0]),)),
        ("random_search_vs_gradient.softmax_loss", rs.softmax_loss.fn,
         (normal(4, 3), normal(6, 4), labels(6, 3))),
        ("two_layer_net.loss",
         lambda W1, b1, W2, b2, X, y: tl.loss((W1, b1, W2, b2), X, y),
         (normal(4, 5), normal(5), normal(5, 3), normal(3), normal(6, 4), labels(6, 3))),
    ]


def _cases():
    cases = [(f"demo {label}", fn, args) for label, fn, args in demo.LECTURE]
    cases.append(("demo softmax_loss", demo.softmax_loss,
                  (normal(7, 3), normal(5, 7), labels(5, 3), 1e-3)))
    cases += [("golden add_mul", gf.add_mul, (-2.0, 5.0, -4.0)),
              ("golden neuron", gf.neuron, (normal(3), normal(2))),
              ("golden rowmax_loss", gf.rowmax_loss, (normal(4, 3), normal(3))),
              ("golden pick", gf.pick, (normal(5, 3), labels(5, 3)))]
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def example_cases():
    return _examples()


def every_case(example_cases):
    return CASES + example_cases


def defined_and_read(lines):
    """(names a listing defines, names it reads) from its statement lines."""
    defined, read = set(), []
    for line in lines:
        if line.kind != "stmt":
            continue
        stmt = line.text.split("  #")[0].split("  = ")[0].strip()
        if "+=" in stmt:
            target, rhs = stmt.split("+=")
        else:
            target, _, rhs = stmt.partition("=")
        defined.add(target.split(":")[0].strip())
        rhs = re.sub(r"\[[^\]]*\]", "", rhs).replace(".T", "")   # attributes, transposes
        read += [t for t in re.findall(r"(?<![\w.])[A-Za-z_]\w*", rhs)
                 if t not in sgi.REGISTRY and t not in ("true", "false", "inf", "nan")]
    return defined, read


def check_report(name, rep):
    text = rep.text()
    assert "Traceback" not in text
    # Every view renders.
    dot = rep.dot()
    assert dot.startswith("digraph") and dot.count("{") == dot.count("}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # no Graphviz: still a page
        page = rep.html()
    assert page.rstrip().endswith("</html>")
    inputs = {rep.names[v] for v in rep.forward.inputs}
    forward, read = defined_and_read(rep.forward_lines())
    assert set(read) <= inputs | forward, (name, set(read) - inputs - forward)
    if not rep.gradable:
        return
    # The adjoint listing: no dead statement, and it reads only what is defined.
    assert len(dce(rep.derived).nodes) == len(rep.derived.nodes)
    adjoint, read = defined_and_read(rep.adjoint_lines())
    known = inputs | forward | adjoint
    assert set(read) <= known, (name, set(read) - known)
    # The tangent listing reads forward values by their forward names, its own tangents, the
    # tangent inputs t_x.
    if not rep.tangent_lines()[0].text.startswith("# no tangent"):
        tangent, read = defined_and_read(rep.tangent_lines())
        t_inputs = {f"t_{rep.names[rep.forward.inputs[i]]}" for i in rep.wrt}
        assert set(read) <= inputs | forward | tangent | t_inputs, \
            (name, set(read) - inputs - forward - tangent - t_inputs)
    # A drawn node says what it computes.
    assert "grad " not in dot
    check_c_comments(rep.c_source)


def declared(body):
    """Identifiers a C function declares (parameters, locals, loop variables)."""
    return set(re.findall(r"\b(?:double|float|int64_t|int32_t|bool|char|size_t)\s*\*?\s*"
                          r"(?:restrict\s+)?(\w+)", body))


_COMMENT_STATEMENT = re.compile(r"^\s*(?:/\*|\*)\s+(?:grad of: )?(\w+) = (\w+(?:\[[^\]]*\])?)"
                                r"((?: [^\s*/]+)*)", re.M)


def check_c_comments(source):
    """Each statement a comment quotes names only what a reader finds in its function: a
    variable the function declares, or a value another of its comments defines (a view, a
    folded value), or a literal."""
    for m in re.finditer(r"^int (\w+)\((.*?)^}", source, re.S | re.M):
        body = m.group(2)
        statements = _COMMENT_STATEMENT.findall(body)
        assert statements, m.group(1)
        found = declared(body) | {target for target, _, _ in statements}
        for target, operation, operands in statements:
            for token in operands.split():
                if re.fullmatch(r"\(?-?[\d.]+(e[-+]?\d+)?\)?|true|false|\(?-?inf\)?|nan", token):
                    continue
                assert token in found, (m.group(1), f"{target} = {operation}{operands}", token)


@pytest.mark.parametrize("case", range(len(CASES)), ids=[c[0] for c in CASES])
def test_inspect_demo_and_golden_functions(case):
    name, fn, args = CASES[case]
    argnums = tuple(range(len(args))) if name.startswith("demo") and len(args) <= 5 \
        and all(isinstance(a, float) for a in args) else 0
    check_report(name, sgi.report(fn, *args, argnums=argnums, values=True))


def test_inspect_example_functions(example_cases):
    assert len(example_cases) == 6
    for name, fn, args in example_cases:
        check_report(name, sgi.report(fn, *args, values=True))


# --- item by item ------------------------------------------------------------------------------

SMALL = textwrap.dedent("""\
    import symgrad.numpy as snp, symgrad.nn as snn
    def small(W, X, y, reg):
        h = snp.tanh(X @ W)
        logp = snn.log_softmax(h, axis=1)
        n = X.shape[0]
        return -snp.mean(logp[snp.arange(n), y]) + reg * snp.sum(W * W)
    """)


@pytest.mark.parametrize("rows", ["N", "6"])
@pytest.mark.parametrize("form", ["text", "html", "dot"])
def test_inspect_the_classifier_with_log_softmax(tmp_path, capsys, rows, form):
    """It crashed with a KeyError: log_softmax's stop_gradient had no name in the adjoint's
    graph, from which it was dropped."""
    path = tmp_path / "small.py"
    path.write_text(SMALL)
    out = tmp_path / f"report.{form}"
    code = cli.main(["inspect", f"{path}:small", "--arg", "W=f64[5,3]", "--arg",
                     f"X=f64[{rows},5]", "--arg", f"y=i64[{rows}]", "--arg", "reg=f64[]",
                     "--format", form, "-o", str(out)])
    assert code == 0
    text = out.read_text()
    assert "stop_gradient" in text
    if form == "text":
        assert "# grad of: f = sub b e" in text and "compiled, but the call failed" not in text


def test_dead_derivatives_are_not_shown():
    """z ** 3: the derivative with respect to the constant exponent, log(z) * z**3, is dead
    code (NaN for z < 0); neither listing nor drawing shows it."""
    rep = sgi.report(lambda z: snp.sum(z ** 3), np.array([0.5, -1.0, 2.0]), values=True)
    assert "log" not in "\n".join(line.text for line in rep.adjoint_lines())
    assert "log" not in "\n".join(line.text for line in rep.tangent_lines())
    assert "log" not in rep.dot() and "nan" not in rep.dot()
    assert rep.values[rep.derived.outputs[1]].tolist() == [0.75, 3.0, 12.0]   # 3 z**2


def test_drawing_labels_say_what_a_node_computes():
    rep = sgi.report(lambda z: snp.sum(z ** 3), np.array([0.5, -1.0, 2.0]), values=True)
    dot = rep.dot()
    # The exponent's derivative rule computes 3 - 1 = 2: a value, not a gradient. (Its guard,
    # select(3.0 == 0.0, 0.0, ...), comes first: pow's rule is exact at x = 0, issue 21.)
    assert re.search(r'label="[a-z] = 3\.0 \+ -1\.0\\nf64\[\]\\n= 2"', dot)
    # The adjoint of z is the derivative of the result b with respect to z.
    assert re.search(r'label="b_z = b_a \* [a-z]\\nf64\[3\]\\ndb/dz = \[ 0\.75, 3\. , 12\. \]"',
                     dot)


def test_c_comments_name_only_declared_variables():
    """``z ** 3``'s comment said ``pow z e``, with e the constant 3.0, which the C writes as a
    literal; log_softmax's said ``sub logits ?``."""
    rep = sgi.report(lambda z: snp.sum(z ** 3), np.array([0.5, -1.0, 2.0]))
    assert "grad of: a = pow z 3.0" in rep.c_source
    pick = sgi.report(gf.pick, normal(5, 3), labels(5, 3))
    assert "?" not in "".join(re.findall(r"/\*.*?\*/", pick.c_source))
    check_c_comments(rep.c_source)
    check_c_comments(pick.c_source)


def test_c_lines_link_through_the_renderers_names(tmp_path):
    """IR ``j`` is ``j`` in the C too (invented names start with ``_``): its line links to
    ``j``; the value function and the value-and-gradient function each link by their own
    names."""
    path = tmp_path / "small.py"
    path.write_text(SMALL)
    rep = sgi.report(cli.load_function(f"{path}:small"), normal(5, 3), normal(4, 5),
                     labels(4, 3), 0.1)
    texts = [line.text for line in rep.c_lines()]
    rows = sgi.highlight_c(texts, rep._c_links(texts))
    j = next(v for v, name in rep.names.items() if name == "j")
    assert rep.forward.producers()[j].prim == "log"
    linked = [ids for text, (_, ids) in zip(texts, rows) if re.search(r"\bj = log\(", text)]
    assert linked and all("j" in ids for ids in linked)
    # Every linked id is a value of the listings (or of the optimized graph only).
    assert {i for _, ids in rows for i in ids} <= set(rep.names.values()) | {
        i for _, ids in rows for i in ids if i.startswith("opt-")}


def test_graphviz_missing_does_not_hide_the_text(monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    rep = sgi.report(gf.pick, normal(5, 3), labels(5, 3))
    with pytest.warns(RuntimeWarning):
        assert "stop_gradient" in rep.html()
