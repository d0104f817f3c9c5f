"""``symgrad.inspect`` and ``symgrad inspect``: the text, Graphviz and HTML views of a function."""
import html
import re
import shutil
import subprocess
import textwrap
import warnings

import numpy as np
import pytest

import symgrad.numpy as snp
from symgrad.tools import cli
from symgrad.tools import inspect as sgi

HAVE_DOT = shutil.which("dot") is not None
NO_DOT = "Graphviz's dot is not installed (apt-get install -y graphviz)"


def lecture(x, y, z):
    q = x + y
    f = q * z
    return f


def ridge(w, X):
    r = X @ w
    return snp.sum(r * r) + snp.sum(w * w)


def line_of(text):
    """``test_inspect.py:N``: where ``text`` is written in this file."""
    with open(__file__) as f:
        for k, line in enumerate(f, 1):
            if line.strip() == text:
                return f"test_inspect.py:{k}"
    raise LookupError(text)


@pytest.fixture(scope="module")
def lecture_report():
    return sgi.report(lecture, -2.0, 5.0, -4.0, argnums=(0, 1, 2), values=True)


def statement(text, prefix):
    """The first line of ``text`` whose statement starts with ``prefix``."""
    return next(line for line in text.splitlines() if line.strip().startswith(prefix))


# --- the text view ---------------------------------------------------------------------------

def test_values_view_shows_the_forward_values_and_the_gradients(lecture_report):
    text = lecture_report.text()
    q = statement(text, "a:f64[] = add x y")
    f = statement(text, "b:f64[] = mul a z")
    assert re.search(r"= 3\s", q) and re.search(r"= -12\s", f)
    assert "d/dx = b_a = -4; d/dy = b_a = -4; d/dz = b_z = 3" in text
    assert re.search(r"b_a:f64\[\] = b_b \* z\s+= -4\s", text)
    assert re.search(r"b_z:f64\[\] = b_b \* a\s+= 3\s", text)


def test_every_statement_shows_its_source_line(lecture_report):
    text = lecture_report.text()
    assert f"# {line_of('q = x + y')}  q = x + y" in statement(text, "a:f64[] = add x y")
    assert f"# {line_of('f = q * z')}  f = q * z" in statement(text, "b:f64[] = mul a z")


def test_adjoint_statements_are_grouped_under_the_statement_they_differentiate(lecture_report):
    text = lecture_report.text()
    header = f"# grad of: b = mul a z   ({line_of('f = q * z')}  f = q * z)"
    assert header in text
    block = text[text.index(header):].splitlines()[1:3]
    assert [line.split("=")[0].strip() for line in block] == ["b_a:f64[]", "b_z:f64[]"]
    for line in block:
        assert line.endswith(f"# b = a * z   {line_of('f = q * z')}")


def test_accumulated_adjoints_read_plus_equals():
    w, X = np.linspace(-1, 1, 3), np.arange(6.0).reshape(2, 3)
    text = sgi.report(ridge, w, X).text()
    # w is used twice in w * w and once in X @ w: its adjoint is a sum of contributions.
    assert re.search(r"^  b_w \+= ", text, re.M)
    assert "# grad of: b = matmul X a" in text
    assert "FLOPs (estimate)" in text and "nodes: forward" in text


def test_a_non_scalar_result_has_no_adjoint():
    text = sgi.report(lambda x: snp.sin(x), np.ones(3)).text()
    assert "# no adjoint" in text and "sin x" in text


def test_cost_model():
    g = sgi.report(ridge, np.ones(3), np.ones((4, 3))).forward
    matmul = next(n for n in g.nodes if n.prim == "matmul")
    assert sgi.flops(matmul) == 2 * 4 * 1 * 3          # 2*M*N*K
    square = next(n for n in g.nodes if n.prim == "mul" and n.out.shape == (4,))
    assert sgi.flops(square) == 4
    total = next(n for n in g.nodes if n.prim == "reduce_sum" and n.inputs[0].shape == (4,))
    assert sgi.flops(total) == 4
    # w as a column (3 doubles), X @ w (4) and as a vector (4), r * r (4), w * w (3).
    assert sgi.temporary_bytes(g) == (3 + 4 + 4 + 4 + 3) * 8


def test_summary_reports_the_workspace_and_what_loops_store():
    import symgrad

    def loss(damping):
        def step(i, c):
            return c - 0.01 * damping * c
        return symgrad.fori_loop(0, 100, step, snp.ones(2), checkpoint=10) @ snp.ones(2)
    text = "\n".join(line.text for line in sgi.report(loss, 0.5).summary_lines())
    assert re.search(r"C workspace per call: .*symgrad_loss_value_and_grad [\d.]+ KiB "
                     r"\(on the stack\)", text)
    # Over codegen.STACK_WORKSPACE_MAX bytes (X @ W alone is 94 KiB): a block.
    large = "\n".join(line.text for line in sgi.report(
        lambda W, X: snp.sum(snp.tanh(X @ W) ** 2), np.ones((5, 3)), np.ones((4000, 5))
    ).summary_lines())
    assert re.search(r"C workspace per call: .*_value_and_grad [\d.]+ KiB \(a block kept "
                     r"between calls\)", large), large
    # The forward loop over 10 segments of 10 steps, and its adjoint, each with the inner
    # loop of a segment indented under it.
    assert "loops (value-and-gradient):" in text
    assert "10 steps of segment (forwards); rows 11 x (2 carry) float64 = 176 bytes" in text
    assert "\n    " in text.split("loops (value-and-gradient):")[1]
    assert "steps of adjoint_body (backwards)" in text


def test_bind_dims():
    assert sgi.bind_dims(["X=f64[N,3]", "y=i64[N]", "r=f64[]", "s=2.0"], ["N=256"]) == \
        ["X=f64[256,3]", "y=i64[256]", "r=f64[]", "s=2.0"]
    with pytest.raises(ValueError, match="NAME=SIZE"):
        sgi.bind_dims(["X=f64[N]"], ["N=many"])


# --- Graphviz ----------------------------------------------------------------------------------

def test_dot_is_a_digraph_with_solid_forward_and_dashed_adjoint_edges(lecture_report):
    dot = lecture_report.dot()
    assert dot.startswith('digraph "lecture" {') and dot.rstrip().endswith("}")
    assert dot.count("{") == dot.count("}")
    edges = re.findall(r'^  "(\w+)" -> "(\w+)" \[style=(\w+)', dot, re.M)
    assert ("x", "a", "solid") in edges and ("a", "b", "solid") in edges
    assert ("z", "b_a", "dashed") in edges and ("a", "b_z", "dashed") in edges
    # A node says what it computes; an adjoint also which derivative it is.
    assert 'label="b = a * z\\nf64[]\\n= -12"' in dot
    assert 'label="b_a = b_b * z\\nf64[]\\ndb/da = -4"' in dot
    assert "grad" not in dot


@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_dot_parses_with_graphviz(lecture_report):
    done = subprocess.run(["dot", "-Tcanon"], input=lecture_report.dot(), text=True,
                          capture_output=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("digraph lecture")


# --- HTML --------------------------------------------------------------------------------------

def visible(page):
    """The text a reader sees: tags dropped, entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", page))


def assert_self_contained(page):
    assert "<script src" not in page and "<link" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page


@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_html_page_is_self_contained_with_the_graph_ir_and_c(lecture_report):
    page = lecture_report.html()
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")
    assert_self_contained(page)
    assert page.count("<svg") == 1 and 'id="node_b_a"' in page
    assert 'data-ids="b a z"' in page                             # b = mul a z is clickable
    assert '<span class="kw">mul</span> a z' in page              # highlighted IR
    assert "lecture_value_and_grad(" in visible(page)             # the C
    assert '<div class="row c" data-ids="a x y">' in page           # C line of a = add x y


def test_html_without_dot_warns_and_still_has_the_text_views(lecture_report, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with pytest.warns(RuntimeWarning, match="apt-get install graphviz"):
        page = lecture_report.html()
    assert_self_contained(page)
    assert "<svg" not in page and "brew install graphviz" in page
    text = visible(page)
    assert "a:f64[] = add x y" in text and "grad of: b = mul a z" in text
    assert "value_and_grad(" in text                              # the C is there
    assert 'digraph "lecture"' in text                            # so is the Graphviz source


def test_c_lines_link_to_ir_names(lecture_report):
    rows = sgi.highlight_c(["    const double a = x + y;", "/* b = mul a z", " still */ b;"],
                           {"a", "x", "y", "b"})
    assert rows[0][1] == ["a", "x", "y"]
    assert rows[1][1] == [] and rows[2][1] == ["b"]            # comments link nothing
    assert '<span class="kw">double</span>' in rows[0][0]


def test_repr_html_is_a_fragment(lecture_report, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fragment = lecture_report._repr_html_()
    assert "<html" not in fragment and fragment.lstrip().startswith('<div class="symgrad-report"')


# --- the command line --------------------------------------------------------------------------

@pytest.fixture
def loss_file(tmp_path):
    path = tmp_path / "loss.py"
    path.write_text(textwrap.dedent("""\
        import symgrad.numpy as snp

        def f(x, y, z):
            q = x + y
            f = q * z
            return f

        def mse(w, X):
            r = X @ w
            return snp.mean(r * r)
        """))
    return path


def test_cli_text_with_values(loss_file, capsys):
    code = cli.main(["inspect", f"{loss_file}:f", "--arg", "x=-2.0", "--arg", "y=5.0",
                     "--arg", "z=-4.0", "--argnums", "0", "1", "2", "--values"])
    out = capsys.readouterr().out
    assert code == 0
    sections = ["# forward IR of f", "# adjoint IR", "# ---- generated C ----", "# cost summary"]
    positions = [out.index(s) for s in sections]
    assert positions == sorted(positions)
    assert "# grad of: b = mul a z   (loss.py:5  f = q * z)" in out
    assert "d/dx = b_a = -4; d/dy = b_a = -4; d/dz = b_z = 3" in out


def test_cli_symbolic_dims_and_dot(loss_file, capsys):
    code = cli.main(["inspect", f"{loss_file}:mse", "--arg", "w=f64[3]", "--arg", "X=f64[N,3]",
                     "--dim", "N=16", "--format", "dot"])
    out = capsys.readouterr().out
    assert code == 0 and out.startswith('digraph "mse"') and "f64[16,3]" in out


def test_cli_html_without_dot_writes_the_page_and_says_how_to_install(loss_file, tmp_path,
                                                                    capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name, *a, **k: None)
    page = tmp_path / "report.html"
    code = cli.main(["inspect", f"{loss_file}:mse", "--arg", "w=f64[3]", "--arg", "X=f64[N,3]",
                     "--format", "html", "-o", str(page)])
    err = capsys.readouterr().err
    assert code == 0
    assert "apt-get install graphviz" in err and "brew install graphviz" in err
    text = visible(page.read_text())
    assert "matmul X a" in text and "mse_value_and_grad" in text and "<svg" not in text


@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_cli_html_with_dot(loss_file, tmp_path):
    page = tmp_path / "report.html"
    assert cli.main(["inspect", f"{loss_file}:mse", "--arg", "w=f64[3]", "--arg", "X=f64[4,3]",
                     "--format", "html", "-o", str(page)]) == 0
    text = page.read_text()
    assert "<svg" in text and 'id="node_b_w"' in text
    assert_self_contained(text)


def test_tangent_view_shows_forward_mode_along_ones():
    r = sgi.report(lambda x, y, z: (x + y) * z, -2.0, 5.0, -4.0, argnums=(0, 1, 2), values=True)
    lines = [line.text for line in r.tangent_lines()]
    assert lines[0].startswith("# tangent IR (forward mode, along t_x, t_y, t_z): 4 statements")
    # The tangent of the forward value a is t_a; temporaries of the rules get fresh letters.
    assert [line.split("  =")[0].strip() for line in lines if line.startswith("  ")] == \
        ["t_a:f64[] = t_x + t_y", "c:f64[] = t_a * z", "d:f64[] = t_z * a", "t_b:f64[] = c + d"]
    # d/dt [(x+y)*z] along (1, 1, 1) = z + z + (x + y) = -4 - 4 + 3
    assert lines[-1] == "# tangent of the result: t_b = -5"
    assert "tangent IR" in [title for title, _ in r.sections()]
