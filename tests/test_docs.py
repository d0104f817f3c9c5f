"""The README and ``docs/api.md``, the first things a user reads, against the code.

- ``docs/api.md`` documents every public name, and every signature it writes out matches the
  function's real one (parameter names in order); where the team's contract (``API.md``, kept
  beside the repository) is at hand, every ``symgrad.*`` name it mentions is in the reference.
- The README keeps exactly two set-up commands, links the reference, and says what a newcomer
  needs: the cache and ``symgrad cache``, how long the tests take, that Graphviz and Chromium
  are optional. The package docstring links the reference too.
"""
import importlib
import inspect
import re
from pathlib import Path

import pytest

import symgrad

ROOT = Path(__file__).resolve().parent.parent
API = (ROOT / "docs" / "api.md").read_text()
README = (ROOT / "README.md").read_text()


def test_every_public_name_is_in_the_reference():
    missing = [name for name in symgrad.__all__
               if f"symgrad.{name}" not in API and f"`{name}`" not in API]
    assert missing == []
    for module, names in (("symgrad.numerical", ["grad", "directional", "spsa",
                                                 "regression_grad"]),
                          ("symgrad.nn", symgrad.nn.__all__),
                          ("symgrad.optim", ["SGD", "Adagrad", "RMSProp", "Adam", "minimize"])):
        for name in names:
            assert f"{name}(" in API, (module, name)


def documented_signatures(text):
    """``(dotted name, [parameter names])`` of each ``name(params)`` written out in code spans,
    where the parameters read like a signature (with defaults or ``*``)."""
    found = []
    text = re.sub(r"```.*?```", "", text, flags=re.S)            # fenced blocks
    for span in re.findall(r"`([^`]+)`", text.replace("\n", " ")):
        m = re.fullmatch(r"((?:symgrad\.)?[\w.]+)\((.*)\)", span.strip())
        if not m or "=" not in m.group(2):
            continue
        params, depth, parts, current = [], 0, [], ""
        for ch in m.group(2):                    # split at the commas outside brackets
            depth += ch in "([{" and 1 or (-1 if ch in ")]}" else 0)
            if ch == "," and depth == 0:
                parts.append(current)
                current = ""
            else:
                current += ch
        for part in parts + [current]:
            part = part.strip()
            if part in ("*", "") or part.startswith("**"):
                continue
            params.append(part.split("=")[0].strip().lstrip("*"))
        found.append((m.group(1), params))
    return found


def resolve(dotted):
    """The objects a documented name may stand for: itself when written ``symgrad.x``, else
    the name in symgrad or one of its public modules (``grad`` is also ``numerical.grad``;
    ``Adam`` is ``optim.Adam``). None of them: not in this version (see §6)."""
    name = dotted.removeprefix("symgrad.")
    prefixes = [""] if dotted.startswith("symgrad.") else ["", "optim.", "numerical.", "nn.",
                                                             "distributed.", "inspect."]
    found = []
    for cand in (p + name for p in prefixes):
        obj = symgrad
        try:
            for part in cand.split("."):
                obj = getattr(obj, part)
        except AttributeError:
            continue
        if callable(obj):
            found.append(obj)
    return found


def test_written_signatures_match_the_code():
    checked = 0
    for dotted, params in documented_signatures(API):
        reals = []
        for obj in resolve(dotted):
            ps = list(inspect.signature(obj).parameters.values())
            named = [p.name for p in ps if p.kind is not p.VAR_KEYWORD]
            # A **options that forwards keywords covers the documented ones past the named.
            forwards = any(p.kind is p.VAR_KEYWORD for p in ps)
            reals.append((named, forwards))
        if not reals:
            continue
        # The reference may leave out trailing options a user rarely sets, never reorder.
        assert any(named[:len(params)] == params or
                   (forwards and params[:len(named)] == named) for named, forwards in reals), \
            (dotted, params, reals)
        checked += 1
    assert checked >= 15


def test_the_reference_covers_the_contract():
    """Every ``symgrad.*`` name of the team's contract (when it is beside the repository) and
    every section of it, §6 included."""
    for contract in (ROOT.parent / "shared" / "API.md", ROOT.parent.parent / "shared" / "API.md"):
        if contract.is_file():
            break
    else:
        pytest.skip("the contract API.md is not beside this checkout")
    text = contract.read_text()
    names = set(re.findall(r"\bsymgrad(?:\.\w+)+", text))
    assert {n for n in names if n not in API} == set()
    for heading in re.findall(r"^## \d\. (.+)$", text, re.M):
        key = heading.split(",")[0].split(":")[0].strip().lower()
        assert key.split()[0] in API.lower(), heading
    for term in ("has_aux", "static_argnames", "vmap", "tree_util", "register_pytree_node",
                 "in-place", "symgrad cache", "c128"):
        assert term.lower() in API.lower(), term


def test_readme_has_two_setup_commands_and_links_the_reference():
    setup = README.split("## Set up", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", setup, re.S)
    commands = [line for block in blocks for line in block.splitlines() if line.strip()]
    assert commands == ["pip install . && symgrad demo", 'pip install -e ".[test]" && pytest']
    assert "](docs/api.md)" in README
    assert "shared/" not in README and "API.md" not in README.replace("docs/api.md", "")
    assert "docs/api.md" in symgrad.__doc__


def test_readme_says_what_a_newcomer_needs():
    assert "SYMGRAD_CACHE_DIR" in README and "symgrad cache --clear" in README
    assert re.search(r"The test suite takes about \d+ minutes", README)
    assert "Graphviz (`dot`) and\nChromium are optional" in README


def test_docs_links_resolve():
    for page in (ROOT / "docs").glob("*.md"):
        for target in re.findall(r"\]\(([^)#:]+\.md)\)", page.read_text()):
            assert (page.parent / target).is_file(), (page.name, target)
    for target in re.findall(r"\]\(([^)#:]+)\)", README):
        assert (ROOT / target).exists(), target
    importlib.import_module("symgrad.tools.cli")
