"""The page of ``symgrad inspect --format html`` as a reader gets it: opened in headless Chromium.

The seed example ``(x + σ(y)) / (σ(x) + (x + y)²)`` at (3, -4) with ``--values`` is written by
the command line, loaded from a ``file://`` URL with every host name mapped to nothing, and
checked four ways: the DOM after the scripts ran holds one SVG with one ``g.node`` per graph
node; Chromium's net log shows no request made by the page; a click on a node highlights its IR
and C lines; a screenshot is not blank and shows input (green), forward (blue) and adjoint
(orange) nodes. ``--format dot`` is rendered by Graphviz. Skips when Chromium or Graphviz is not
installed (``.ci/run`` installs both). Each Chromium run takes about a second.
"""
import html
import json
import os
import re
import shutil
import subprocess
import textwrap

import pytest

from symgrad.tools import cli
from symgrad.tools import inspect as sgi

CHROMIUM = next(filter(None, map(shutil.which, ("chromium", "chromium-browser",
                                                 "google-chrome"))), None)
NO_CHROMIUM = "Chromium is not installed (apt-get install -y chromium)"
HAVE_DOT = shutil.which("dot") is not None
NO_DOT = "Graphviz's dot is not installed (apt-get install -y graphviz)"

# Headless flags that work on a machine without network or display; without the
# background-networking ones Chromium keeps trying to reach its own services.
HEADLESS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--host-resolver-rules=MAP * ~NOTFOUND"]

SEED = textwrap.dedent("""\
    from symgrad import nn


    def seed(x, y):
        return (x + nn.sigmoid(y)) / (nn.sigmoid(x) + (x + y) ** 2)
    """)
SEED_ARGS = ["--arg", "x=3.0", "--arg", "y=-4.0", "--argnums", "0", "1", "--values"]

# Fill colours of the nodes in Report.dot(): inputs, forward statements, adjoint statements.
INPUT_FILL, FORWARD_FILL, ADJOINT_FILL = (0xdf, 0xf0, 0xd8), (0xee, 0xf3, 0xfb), (0xfd, 0xeb, 0xd0)


@pytest.fixture(scope="module")
def seed(tmp_path_factory):
    """(the seed file, its Report at (3, -4) with values, a directory for outputs)."""
    root = tmp_path_factory.mktemp("inspect_browser")
    path = root / "seed.py"
    path.write_text(SEED)
    rep = sgi.report(cli.load_function(f"{path}:seed"), 3.0, -4.0, argnums=(0, 1), values=True)
    return path, rep, root


@pytest.fixture(scope="module")
def page(seed):
    """The HTML report of the seed example, written by ``symgrad inspect -o``."""
    path, _, root = seed
    out = root / "seed.html"
    assert cli.main(["inspect", f"{path}:seed", *SEED_ARGS, "--format", "html",
                     "-o", str(out)]) == 0
    return out


def expected_nodes(rep):
    """Nodes the graph draws: every input and statement of the forward and adjoint graph,
    except scalar constants, which are written into their users as literals (``2.0 * d``);
    the adjoint seed ``b_g = 1.0`` is drawn, since it starts the backward pass."""
    y = rep.forward.outputs[0]
    literal = [n for n in rep.derived.nodes if n.prim == "const" and n.out.ndim == 0
               and getattr(n.out, "adjoint_of", None) is not y]
    statements = len(rep.forward.nodes) + len(rep.adjoint_nodes)
    assert len(rep.derived.nodes) == statements
    return len(rep.forward.inputs) + statements - len(literal)


def chromium(url, *flags, tmp_path):
    """Run headless Chromium on ``url`` with a fresh profile; returns the CompletedProcess."""
    profile = tmp_path / "profile"
    # The browser is not symgrad's code: under the sanitized suite (tests/test_sanitize.py's
    # LD_PRELOAD of libasan) Chromium hangs, so it runs without the preload.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    done = subprocess.run([CHROMIUM, *HEADLESS, f"--user-data-dir={profile}", *flags, url],
                          capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def page_requests(net_log):
    """URLs of the requests a page made, from a Chromium net log (``--log-net-log``).

    Chromium's own requests (update checks, time sync) have no initiator ("not an origin");
    those of a page carry its origin ("null" for a file:// page). A file:// page that loads
    nothing logs no URL request at all: its own load does not go through the network stack.
    """
    log = json.loads(net_log.read_text())
    start = log["constants"]["logEventTypes"]["URL_REQUEST_START_JOB"]
    return [e["params"]["url"] for e in log["events"] if e["type"] == start
            and e["params"].get("initiator", "not an origin") != "not an origin"]


# --- the page in the browser -------------------------------------------------------------------

NETWORK_URL = re.compile(r"""\b(?:src|href|action)\s*=\s*["']?\s*((?:https?:)?//[^"'\s>]*)""",
                         re.I)


def test_page_has_no_network_url(page):
    text = page.read_text()
    assert NETWORK_URL.findall(text) == []                 # xlink:href too, it ends in href
    assert NETWORK_URL.findall('<img src="https://x.invalid/a.png">') == ["https://x.invalid/a.png"]
    assert not re.search(r"url\(\s*[\"']?(?:https?:)?//|@import", text, re.I)


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_page_draws_every_node_and_makes_no_request(seed, page, tmp_path):
    _, rep, _ = seed
    net_log = tmp_path / "net.json"
    dom = chromium(page.as_uri(), "--dump-dom", f"--log-net-log={net_log}",
                   tmp_path=tmp_path).stdout
    assert dom.count("<svg") == 1
    nodes = re.findall(r'<g id="node_(\w+)" class="node"', dom)
    assert len(nodes) == len(set(nodes)) == expected_nodes(rep) == 29
    names = rep.derived.names()
    assert {names[v] for v in rep.forward.inputs} | {"g", "b_g", "b_x", "b_y"} <= set(nodes)
    svg_text = re.sub(r"<[^>]+>", " ", dom[dom.index("<svg"):dom.index("</svg>")])
    for label in ("= 1.54564", "dg/dx = 2.05957", "dg/dy = 1.59223"):    # g, d/dx, d/dy
        assert label in svg_text
    assert page_requests(net_log) == []


def hit_rows(dom):
    """{section title: [text of each highlighted row]} in a dumped DOM."""
    hits = {}
    for part in dom.split("<h2>")[1:]:
        title = part[:part.index("</h2>")]
        rows = re.findall(r'<div class="row \w+ hit" data-ids="[^"]*">(.*?)</div>', part, re.S)
        hits[title] = [re.sub(r"<[^>]+>", "", row) for row in rows]
    return hits


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_clicking_a_node_highlights_its_ir_and_c_lines(page, tmp_path):
    """A click on the graph's ``g = div b f`` (the result) marks the node, the IR that defines
    and differentiates ``g`` and the C that computes it, and nothing in the tangent view, whose
    names are its own."""
    clicked = tmp_path / "clicked.html"
    click = ('<script>document.getElementById("node_g").dispatchEvent('
             'new MouseEvent("click", {bubbles: true}));</script>')
    clicked.write_text(page.read_text().replace("</body>", click + "\n</body>"))
    dom = chromium(clicked.as_uri(), "--dump-dom", tmp_path=tmp_path).stdout
    assert re.findall(r'<g id="(node_\w+)" class="node hit"', dom) == ["node_g"]
    hits = hit_rows(dom)
    assert [row.split("=")[0].strip() for row in hits["forward IR"]] == ["g:f64[]", "in (g) }"]
    assert any(row.startswith("# grad of: g = div b f") for row in hits["adjoint IR"])
    assert any(re.search(r"\bg = b ?/ ?f;", row) for row in hits["generated C"])
    assert hits["tangent IR"] == [] and hits["graph"] == []


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
def test_net_log_check_sees_the_requests_of_a_page_that_makes_them(tmp_path):
    """The check above would catch an image, a style sheet or a fetch from the network."""
    bad = tmp_path / "bad.html"
    bad.write_text('<!DOCTYPE html><img src="http://img.example.invalid/a.png">'
                   '<link rel="stylesheet" href="https://css.example.invalid/b.css">'
                   '<script>fetch("https://api.example.invalid/c").catch(function () {});'
                   '</script>')
    net_log = tmp_path / "net.json"
    chromium(bad.as_uri(), "--dump-dom", f"--log-net-log={net_log}", tmp_path=tmp_path)
    assert sorted(page_requests(net_log)) == ["http://img.example.invalid/a.png",
                                              "https://api.example.invalid/c",
                                              "https://css.example.invalid/b.css"]


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_screenshot_shows_the_graph(page, tmp_path):
    image_module = pytest.importorskip("PIL.Image", reason="Pillow (a dependency of matplotlib, "
                                       "in the test extras) reads the screenshot")
    shot = tmp_path / "seed.png"
    chromium(page.as_uri(), f"--screenshot={shot}", "--window-size=1400,2000",
             tmp_path=tmp_path)
    with image_module.open(shot) as im:
        assert im.size == (1400, 2000)
        rgb = im.convert("RGB")
    colours = rgb.getcolors(maxcolors=1 << 20)
    count = {c: n for n, c in colours}
    total = 1400 * 2000
    white = count.get((255, 255, 255), 0)
    assert len(colours) > 50 and white < 0.97 * total
    # Each kind of node is drawn: filled areas of its colour, a few node interiors' worth.
    for fill in (INPUT_FILL, FORWARD_FILL, ADJOINT_FILL):
        assert count.get(fill, 0) > 2000, (fill, count.get(fill, 0))


# --- Graphviz ------------------------------------------------------------------------------------

@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_dot_output_renders_with_graphviz(seed, capsys):
    path, rep, _ = seed
    assert cli.main(["inspect", f"{path}:seed", *SEED_ARGS, "--format", "dot"]) == 0
    source = capsys.readouterr().out
    assert source.startswith('digraph "seed" {')
    done = subprocess.run(["dot", "-Tsvg"], input=source, capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    assert "<svg" in done.stdout and done.stdout.rstrip().endswith("</svg>")
    assert done.stdout.count('class="node"') == expected_nodes(rep)


# --- the drawing fits a laptop screen ------------------------------------------------------------

LAPTOP = (1366, 768)
MEASURE = """<script>
window.addEventListener("load", function () {
  var box = document.querySelector(".graph-box"), svg = box.querySelector("svg");
  var r = box.getBoundingClientRect(), s = svg.getBoundingClientRect();
  var before = svg.getAttribute("viewBox");
  box.dispatchEvent(new WheelEvent("wheel", {deltaY: -100, clientX: s.left + s.width / 2,
                                             clientY: s.top + s.height / 2, bubbles: true,
                                             cancelable: true}));
  var zoomed = svg.getAttribute("viewBox");
  box.dispatchEvent(new MouseEvent("dblclick", {bubbles: true}));
  document.body.setAttribute("data-measure", JSON.stringify({
    scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth,
    innerHeight: window.innerHeight, boxRight: r.right, boxBottom: r.bottom,
    svgWidth: s.width, svgHeight: s.height, before: before, zoomed: zoomed,
    reset: svg.getAttribute("viewBox")}));
});
</script>"""


def demo_pages(root):
    """(label, page) for each function of ``symgrad demo``, written by ``Report.html``."""
    import numpy as np

    from symgrad.tools import demo
    rng = np.random.default_rng(0)
    cases = [(label, fn, args, tuple(range(len(args)))) for label, fn, args in demo.LECTURE]
    cases.append(("softmax_loss", demo.softmax_loss,
                  (rng.standard_normal((20, 10)), rng.standard_normal((16, 20)),
                   rng.integers(0, 10, 16), 1e-3), 0))
    pages = []
    for k, (label, fn, args, argnums) in enumerate(cases):
        page = root / f"demo{k}.html"
        page.write_text(sgi.report(fn, *args, argnums=argnums, values=True).html()
                        .replace("</body>", MEASURE + "\n</body>"))
        pages.append((label, page))
    return pages


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_demo_drawings_fit_a_laptop_screen_and_zoom(tmp_path):
    """Each demo function's page, in a 1366x768 window: no horizontal scroll, the whole drawing
    inside the window (forward and backward side by side, scaled to fit), and the wheel zooms
    (the viewBox shrinks) and a double click fits it again."""
    pages = demo_pages(tmp_path)
    assert len(pages) == 9
    for label, page in pages:
        dom = chromium(page.as_uri(), "--dump-dom", f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
                       tmp_path=tmp_path).stdout
        m = json.loads(html.unescape(re.search(r'data-measure="([^"]*)"', dom).group(1)))
        assert m["innerWidth"] == LAPTOP[0], m
        assert m["scrollWidth"] <= m["innerWidth"], (label, m)         # no horizontal scroll
        assert m["boxRight"] <= m["innerWidth"] and m["boxBottom"] <= m["innerHeight"], \
            (label, m)                                                  # all of it on screen
        assert m["svgWidth"] > 100 and m["svgHeight"] > 100, (label, m)
        w0, w1 = (float(v.split()[2]) for v in (m["before"], m["zoomed"]))
        assert w1 == pytest.approx(0.8 * w0), (label, m)
        assert [float(v) for v in m["reset"].split()] == \
            pytest.approx([float(v) for v in m["before"].split()], abs=1e-3)


@pytest.mark.skipif(CHROMIUM is None, reason=NO_CHROMIUM)
@pytest.mark.skipif(not HAVE_DOT, reason=NO_DOT)
def test_laptop_screenshot_shows_the_whole_softmax_graph(tmp_path):
    """The demo's softmax classifier (about 20 forward statements): a screenshot of the first
    screen of a 1366x768 window holds the drawing, with input, forward and adjoint nodes, and
    the drawing's two clusters side by side (the adjoint's nodes right of the forward's)."""
    image_module = pytest.importorskip("PIL.Image", reason="Pillow reads the screenshot")
    label, page = demo_pages(tmp_path)[-1]
    shot = tmp_path / "softmax.png"
    chromium(page.as_uri(), f"--screenshot={shot}", f"--window-size={LAPTOP[0]},{LAPTOP[1]}",
             tmp_path=tmp_path)
    with image_module.open(shot) as im:
        assert im.size == LAPTOP
        rgb = im.convert("RGB")
    found = {}
    for x in range(0, LAPTOP[0], 2):
        for y in range(0, LAPTOP[1], 2):
            c = rgb.getpixel((x, y))
            if c in (INPUT_FILL, FORWARD_FILL, ADJOINT_FILL):
                found.setdefault(c, []).append(x)
    assert set(found) == {INPUT_FILL, FORWARD_FILL, ADJOINT_FILL}
    # Side by side: most adjoint pixels lie right of most forward ones.
    forward, adjoint = sorted(found[FORWARD_FILL]), sorted(found[ADJOINT_FILL])
    assert adjoint[len(adjoint) // 2] > forward[len(forward) // 2]
