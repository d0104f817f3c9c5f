"""The package's shape: modules import one way (no cycles), from the front end down to the core.

The import graph is read from the source with ``ast`` (every import, also those inside
functions), so a cycle cannot hide behind a lazy import.
"""
import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import symgrad

PACKAGE = Path(symgrad.__file__).resolve().parent


def _module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules():
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def import_graph():
    """module -> the symgrad modules it imports (a package import counts as its __init__)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                found = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")
                    up = up[: len(up) - (node.level - 1)]
                    base = ".".join(up + ([base] if base else []))
                found = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                         for a in node.names]
            else:
                continue
            targets |= {t for t in found if t in modules and t != name}
        graph[name] = targets
    return graph


def _cycle(graph):
    """One import cycle as a list of modules, or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph[m]):
            if state.get(t) == "open":
                return stack[stack.index(t):] + [t]
            if t not in state:
                found = visit(t)
                if found:
                    return found
        state[m] = "done"
        stack.pop()
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_no_import_cycles():
    cycle = _cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_core_imports_no_front_end_backend_or_tool():
    upstream = ("symgrad.frontend", "symgrad.backends", "symgrad.tools", "symgrad.numpy",
                "symgrad.api", "symgrad.nn", "symgrad.optim", "symgrad.distributed")
    for module, targets in import_graph().items():
        if module.startswith("symgrad.core"):
            bad = sorted(t for t in targets if t.startswith(upstream))
            assert not bad, f"{module} imports {bad}, which sit above the core"


def test_backends_import_no_front_end_or_tool():
    upstream = ("symgrad.frontend", "symgrad.tools", "symgrad.numpy", "symgrad.api",
                "symgrad.nn", "symgrad.optim", "symgrad.distributed")
    for module, targets in import_graph().items():
        if module.startswith("symgrad.backends"):
            bad = sorted(t for t in targets if t.startswith(upstream))
            assert not bad, f"{module} imports {bad}, which sit above the backends"


def test_every_module_imports_on_its_own():
    """Each module imports in a fresh interpreter with nothing imported before it."""
    names = sorted(_modules())
    script = "import importlib, sys\nfor n in sys.argv[1:]:\n" \
             "    for m in [k for k in sys.modules if k.startswith('symgrad')]: del sys.modules[m]\n" \
             "    importlib.import_module(n)\n"
    r = subprocess.run([sys.executable, "-c", script, *names], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]


def _bound_at_module_level(path):
    """The names a module binds at its top level as the source spells them: ``def``, ``class``,
    assignments and imports (a star import contributes the names of the module it reads)."""
    names = set()
    for node in ast.parse(path.read_text(), str(path)).body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                names |= {n.id for n in ast.walk(t) if isinstance(n, ast.Name)}
        elif isinstance(node, ast.ImportFrom):
            for a in node.names:
                if a.name == "*":
                    module = PACKAGE.parent.joinpath(*node.module.split(".")).with_suffix(".py")
                    names |= _bound_at_module_level(module)
                else:
                    names.add(a.asname or a.name)
    return names


def test_every_symgrad_numpy_name_is_defined_where_a_reader_can_find_it():
    # No globals()[name] = ... loops: pyflakes and grep see every function of symgrad.numpy.
    import symgrad.numpy as snp
    source = (PACKAGE / "numpy" / "__init__.py").read_text()
    assert not re.search(r"globals\(\)\[[^]]*\]\s*=", source)
    spelled = _bound_at_module_level(PACKAGE / "numpy" / "__init__.py")
    assert sorted(set(snp.__all__) - spelled) == []


def _private_uses(path):
    """``module._name`` and ``from module import _name`` in ``path`` where the module is
    another symgrad module: reaching past a module's public names."""
    found = []
    tree = ast.parse(path.read_text(), str(path))
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("symgrad"):
            for a in node.names:
                if a.name.startswith("_") and not a.name.startswith("__"):
                    found.append(f"from {node.module} import {a.name}")
                elif f"{node.module}.{a.name}" in _modules():
                    modules.add(a.asname or a.name)
        elif isinstance(node, ast.Import):
            modules |= {a.asname for a in node.names if a.asname and a.name.startswith("symgrad")}
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id in modules and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            found.append(f"{node.value.id}.{node.attr}")
    return found


@pytest.mark.parametrize("folder", ["frontend", "backends", "tools"])
def test_a_layer_uses_only_public_names_of_other_modules(folder):
    # vmap traces through transforms.prepare (it used transforms._prepare); the CLI asks the
    # native backend for index_checks, inspect the IR for letter_names (both were private).
    uses = {str(p.relative_to(PACKAGE)): _private_uses(p)
            for p in sorted((PACKAGE / folder).rglob("*.py"))}
    assert {k: v for k, v in uses.items() if v} == {}


def test_docs_design_md_draws_every_module():
    # docs/design.md draws the layout; a module it does not name is a layout it does not show.
    text = (PACKAGE.parent / "docs" / "design.md").read_text()
    block = text.split("```\nsymgrad/\n", 1)[1].split("```", 1)[0]
    words = set(re.findall(r"[A-Za-z_]\w*", block))
    missing = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                     if p.name != "__init__.py" and p.stem not in words)
    folders = sorted(str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*")
                     if p.is_dir() and p.name != "__pycache__" and p.name not in words)
    assert missing == [] and folders == []
