"""Ahead-of-time builds: ``symgrad.export`` declares entry points, ``build`` writes a C library.

A build of ``SPEC.py`` writes, into the output directory, for the whole SPEC:

- ``<spec>.c``: C99 source needing only libc and libm;
- ``<spec>.h``: one documented prototype per entry point (value; value and gradient), the status
  codes, and the size of every buffer;
- ``lib<spec>.so``: the shared library;
- ``<spec>.py``: a loader needing only numpy and cffi (importing it does not import symgrad):
  the code of ``backends/c/runtime.py`` under a docstring listing the exports;
- ``<spec>.json``: the manifest (exports, argument names and types, run-time sizes, symgrad
  version, content hash), which is also all the loader knows about the exports: their C
  functions, outputs and the shapes of those as data, and the cffi declarations.

A dimension written as a name (``f64[N,3073]``) is a run-time size: the C functions take it as
an ``int64_t`` argument, so one library serves every size. The same name in two places means the
same size. The C and the header are reproducible: the same SPEC and symgrad version give the same
bytes (no dates, no absolute paths). Libraries are compiled with ``-O2`` only, so they run on any
machine of the same architecture; pass ``cflags`` for ``-march=native``.
"""
from __future__ import annotations

import ast
import hashlib
import json
import keyword
import shutil
from dataclasses import dataclass
from pathlib import Path

from symgrad._version import __version__
from symgrad.core import dims
from symgrad.api import CompiledFunction, Specialization
from symgrad.backends.c import compiler, runtime
from symgrad import templates
from symgrad.backends.c.codegen import (C_KEYWORDS, HEADER_MACROS, LIBC_NAMES, c_identifier,
                                        render_module, render_prototypes)
from symgrad.backends.c.module import program_functions
from symgrad.core.cspell import CTYPES, STATUS
from symgrad.frontend.tracing import parameter_names
from symgrad.core.types import TensorType, parse_type
from symgrad.frontend.calls import Layout
from symgrad import tree_util
from symgrad.tools.userfiles import import_file

AOT_CFLAGS = ("-O2",)   # -O2, as for JIT builds: compiler.py says why
_EXPORTS: list = []


@dataclass
class Export:
    """One declared entry point: ``fn`` at the given argument types."""
    fn: object
    types: tuple
    name: str
    argnums: tuple

    def specialization(self):
        cf = CompiledFunction(self.fn, argnums=self.argnums)
        types, trees = [], []
        for text in self.types:
            leaves, tree = tree_util.tree_flatten(text)
            trees.append(tree)
            for leaf in leaves:
                dtype, shape = parse_type(leaf)
                types.append(TensorType(tuple(dims.symbol(d) if isinstance(d, str) else d
                                              for d in shape), dtype))
        cf.__name__ = self.name
        return Specialization(cf, types, {}, Layout(trees))


def export(fn, *types, name=None, argnums=0):
    """Declare that ``symgrad build`` should compile ``fn`` for arguments of these types.

    ``types`` are type strings, one per positional argument (``"f64[N,3073]"``, ``"i64[N]"``,
    ``"f64[]"``); for an argument that is a pytree, the same pytree of type strings
    (``{"W": "f64[3,2]", "b": "f64[2]"}``): the C functions take its leaves as parameters of
    their own (``params_W``, ``params_b``; dict keys sorted), and the loader takes and returns
    the structure (tuples, lists, dicts, named tuples and None). Returns the Export. Raises
    ValueError for a wrong count of types or a name that cannot be used, TypeError for a leaf
    that is not a type string or a container the loader cannot rebuild.
    """
    params = parameter_names(fn)
    if len(types) != len(params):
        raise ValueError(f"export of {fn.__name__}: {len(types)} types for the {len(params)} "
                         f"parameters ({', '.join(params)})")
    for param, t in zip(params, types):
        pairs, tree = tree_util.tree_flatten_with_path(t)
        for path, leaf in pairs:
            if not isinstance(leaf, str):
                raise TypeError(f"export of {fn.__name__}: the type of {param}"
                                f"{tree_util.keystr(path)} must be a type string such as "
                                f"'f64[N,3]', got {leaf!r}")
            parse_type(leaf)
        _tree_json(tree, f"export of {fn.__name__}: argument {param!r}")
    name = name or fn.__name__
    if not name.isidentifier():
        raise ValueError(f"export name {name!r} is not an identifier")
    argnums = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    e = Export(fn, tuple(types), name, argnums)
    _EXPORTS.append(e)
    return e


def export_name_problem(name):
    """Why ``name`` cannot name an exported C function as it is, or None.

    An export's C functions are ``name`` and ``name_value_and_grad``, public symbols of the
    library, so a name C cannot take is renamed there (``exp`` is ``exp_``): ``build`` says so
    in its output and in the header, with this reason; the Python loader keeps the name."""
    if name in HEADER_MACROS:
        return ("it is a macro of the C headers the generated code includes (the preprocessor "
                "would replace it)")
    if name in LIBC_NAMES:
        return ("it is a function of the C library (libc or libm), which the library links "
                "and the generated code calls")
    if name in C_KEYWORDS or keyword.iskeyword(name):
        return "it is a C or Python keyword or type name"
    if name in STATUS:
        return "the generated C uses that name for a status code"
    if name.startswith(("symgrad_", "symgradrt_")):
        return "names beginning with symgrad_ or symgradrt_ belong to the generated code"
    if name.startswith(("cblas_", "LAPACKE_", "scipy_")):
        return ("names beginning with cblas_, LAPACKE_ or scipy_ belong to the BLAS and LAPACK "
                "the library links")
    if name.startswith("_"):
        return ("names beginning with _ are the generated code's own variables (and C reserves "
                "those beginning with __ or with _ and a capital letter)")
    if c_identifier(name, set()) != name:
        return ("a C name is made of ASCII letters, digits and underscores, and one in "
                "capitals with an underscore (or named like a standard macro) reads as a macro")
    return None


def renaming_note(name, c_name, taken_before=False):
    """The sentence ``build`` prints and the header holds for an export renamed in C."""
    why = export_name_problem(name) or ("another export's C name is already "
                                        f"{c_name.rstrip('_')}")
    return (f"export {name!r} is the C function {c_name} (and {c_name}_value_and_grad): "
            f"{why}; the Python loader keeps the name {name!r}")


def collect(spec_path):
    """Import SPEC.py and return the exports it declares, in order."""
    spec_path = Path(spec_path)
    if not spec_path.is_file():
        raise FileNotFoundError(f"no such SPEC file: {spec_path}")
    del _EXPORTS[:]
    import_file(spec_path, f"symgrad_spec_{spec_path.stem}")
    exports = list(_EXPORTS)
    del _EXPORTS[:]
    if not exports:
        raise ValueError(f"{spec_path} declares no exports; call symgrad.export(fn, types...)")
    names = [e.name for e in exports]
    if len(set(names)) != len(names):
        raise ValueError(f"{spec_path} exports the name(s) "
                         f"{sorted({n for n in names if names.count(n) > 1})} twice")
    return exports


# --- what the templates get ---------------------------------------------------------------------

def _dim_text(d):
    """A dimension as the loader evaluates it: a number, a size name, or exact int arithmetic."""
    return dims.py_expr(d)


def _tree_json(tree, what):
    """A pytree structure as JSON the loader rebuilds without symgrad. Raises TypeError for a
    container it cannot rebuild (registered classes, dataclasses)."""
    if tree is tree_util.LEAF:
        return {"kind": "leaf"}
    node = tree.node
    children = [_tree_json(c, what) for c in tree.children]
    if node.type is type(None):
        return {"kind": "none"}
    if node.type in (tuple, list):
        return {"kind": node.type.__name__, "children": children}
    if node.type is dict:
        if not all(isinstance(k, (str, int)) for k in tree.aux):
            raise TypeError(f"{what}: dict keys must be strings or ints for the loader; got "
                            f"{list(tree.aux)!r}")
        return {"kind": "dict", "keys": list(tree.aux), "children": children}
    if hasattr(node.type, "_fields") and issubclass(node.type, tuple):
        return {"kind": "namedtuple", "name": node.type.__name__,
                "fields": list(node.type._fields), "children": children}
    raise TypeError(f"{what}: the loader of an ahead-of-time build rebuilds tuples, lists, "
                    f"dicts, named tuples and None; {node.name} is none of them")


def _entry(export_, functions, taken):
    """The description of one export's C functions for the header, loader and manifest."""
    spec = export_.specialization()
    graph = spec.graph
    sizes = [s.name for s in dims.free_symbols([v.shape for v in graph.inputs])]
    trip_counts = {dims.value_source(s) for s in dims.graph_symbols(graph)} - {None}
    params = parameter_names(export_.fn)
    paths = []
    for i, tree in enumerate(spec.layout.trees):
        paths += [params[i] + tree_util.keystr(p) for p in tree_util.leaf_paths(tree)]
    args = [{"name": v.name, "path": path, "dtype": v.dtype, "ctype": CTYPES[v.dtype],
             "shape": [_dim_text(d) for d in v.shape], "type": str(v.type),
             "trip_count": v.name in trip_counts}
            for v, path in zip(graph.inputs, paths)]
    what = f"export {export_.name}"
    trees = {"args": [_tree_json(t, what) for t in spec.layout.trees],
             "result": _tree_json(spec.out_tree, f"{what}: its result"),
             "grads": [_tree_json(t, what) for t in spec.groups] if spec.differentiable
             else []}
    size_sources = {}
    for k, v in enumerate(graph.inputs):
        for axis, d in enumerate(v.shape):
            if not isinstance(d, int):
                size_sources.setdefault(str(d), (k, axis))
    base = c_identifier(export_.name, taken)
    renamed = renaming_note(export_.name, base) if base != export_.name else None
    funcs = program_functions(spec.program(), base)
    functions.extend(funcs)
    entries = []
    for fn, vg_graph in zip(funcs, [graph, spec.value_and_grad_graph() if spec.differentiable
                                    else None]):
        g = graph if fn is funcs[0] else vg_graph
        outs = [{"name": cname, "dtype": v.dtype, "ctype": CTYPES[v.dtype],
                 "shape": [_dim_text(d) for d in v.shape],
                 "count": dims.c_expr(v.type.size)}
                for (cname, _, _), v in zip(fn.outputs, g.outputs)]
        calls = {"c_name": fn.name,
                 "outputs": [{"dtype": v.dtype, "ctype": CTYPES[v.dtype],
                              "shape": [dims.polynomial(d) for d in v.shape]}
                             for v in g.outputs]}
        entries.append({"c_name": fn.name, "outputs": outs, "calls": calls,
                        "params": [p.replace("*restrict ", "*SYMGRAD_RESTRICT ")
                                   for p in fn.params]})
    wrt = ([params[i] if i < len(params) else f"arg{i}" for i in export_.argnums]
           if spec.differentiable else [])
    return {"name": export_.name, "python": export_.fn.__name__, "args": args, "sizes": sizes,
            "size_sources": size_sources, "value": entries[0],
            "value_and_grad": entries[1] if len(entries) > 1 else None, "wrt": wrt,
            "types": list(export_.types), "params": params, "trees": trees,
            "renamed": renamed}


def render(exports, stem):
    """(C source, header, loader, manifest) text for the exports, named after ``stem``."""
    functions, taken = [], set()
    entries = [_entry(e, functions, taken) for e in exports]
    guard = c_identifier(stem.upper() + "_H", set())
    source = render_module(functions, title=f"{stem}: ahead-of-time build of {stem}.py",
                           version=__version__)
    header = templates.render(
        "header.h.j2", stem=stem, guard=guard, entries=entries, status=STATUS, version=__version__)
    digest = hashlib.sha256((source + header).encode()).hexdigest()
    loader = templates.render(
        "loader.py.j2", stem=stem, entries=entries, version=__version__, content_hash=digest,
        runtime=_runtime_code())
    manifest = {"spec": f"{stem}.py", "symgrad_version": __version__, "content_hash": digest,
                "library": f"lib{stem}.so", "header": f"{stem}.h", "source": f"{stem}.c",
                "loader": f"{stem}.py", "status_codes": STATUS,
                "cdef": render_prototypes(functions).strip(),
                "exports": [{"name": e["name"], "function": e["python"], "types": e["types"],
                             "arguments": [{"name": a["name"], "path": a["path"],
                                            "type": a["type"], "dtype": a["dtype"],
                                            "ctype": a["ctype"],
                                            "shape": [int(d) if d.isdigit() else d
                                                      for d in a["shape"]]}
                                           for a in e["args"]],
                             "parameters": e["params"], "structure": e["trees"],
                             "sizes": e["sizes"], "gradient_of": e["wrt"],
                             "c_functions": [x["c_name"] for x in (e["value"],
                                                                   e["value_and_grad"]) if x],
                             "calls": {kind: e[kind]["calls"] for kind in
                                       ("value", "value_and_grad") if e[kind]},
                             **({"renamed": e["renamed"]} if e["renamed"] else {})}
                            for e in entries]}
    return source, header, loader, json.dumps(manifest, indent=2, sort_keys=True) + "\n"


def _runtime_code():
    """The code of ``backends/c/runtime.py`` without its module docstring (the loader has its
    own), for the loader template to paste."""
    source = Path(runtime.__file__).read_text()
    docstring = ast.parse(source).body[0]
    return "\n".join(source.splitlines()[docstring.end_lineno:]).strip("\n")


def build(spec_path, out_dir="build", cflags=None, log=print):
    """Build every export of ``spec_path`` into ``out_dir``; return the paths written."""
    spec_path = Path(spec_path)
    out_dir = Path(out_dir)
    exports = collect(spec_path)
    stem = c_identifier(spec_path.stem, set())
    log(f"symgrad build: {len(exports)} export(s) from {spec_path}: "
        + ", ".join(e.name for e in exports))
    source, header, loader, manifest = render(exports, stem)
    for e in json.loads(manifest)["exports"]:
        if "renamed" in e:
            log(f"  note: {e['renamed']}")
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"source": out_dir / f"{stem}.c", "header": out_dir / f"{stem}.h",
             "loader": out_dir / f"{stem}.py", "manifest": out_dir / f"{stem}.json",
             "library": out_dir / f"lib{stem}.so"}
    for key, text in (("source", source), ("header", header), ("loader", loader),
                      ("manifest", manifest)):
        _write_atomic(paths[key], text)
    tmp_lib = paths["library"].with_suffix(".so.tmp")
    # Self-contained: no BLAS (docs/aot.md says how to compile the source with one).
    compiler.compile_library(paths["source"], tmp_lib, AOT_CFLAGS if cflags is None else cflags,
                             use_blas=False)
    shutil.move(tmp_lib, paths["library"])
    for key in ("source", "header", "library", "loader", "manifest"):
        log(f"  wrote {paths[key]}")
    return paths


def _write_atomic(path, text):
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
