"""A Program as one C module: its value function and, when differentiable, its value-and-gradient
function (or one of the two), with the prototypes cffi and headers declare."""
from __future__ import annotations

import re
from dataclasses import dataclass

from symgrad._version import __version__ as VERSION
from symgrad.backends.c import narrow
from symgrad.backends.c.codegen import FunctionRenderer, render_module, render_prototypes
from symgrad.backends.program import BOTH, VALUE, VALUE_AND_GRAD


@dataclass
class RenderedModule:
    source: str
    cdef: str
    value_name: str | None      # None: the module holds the value-and-gradient function only
    grad_name: str | None
    data: dict = None       # symbol -> (ctype, bytes): the files ``<symbol>.bin`` the C includes
    # Whether a call may give the thread pool work (``narrow.may_split``): else the library is
    # built without it (and a first build need not compile the pool at all).
    parallel: bool = False


def function_c_name(name):
    """``symgrad_<name>``: the prefix keeps user names (``exp``, ``main``) clear of libc's."""
    return "symgrad_" + re.sub(r"[^0-9A-Za-z_]", "_", name)


def program_functions(program, base, data=None, entries=BOTH):
    """The CFunctions of a program: ``base`` (the value) and, when it is differentiable,
    ``base_value_and_grad``; only those ``entries`` names (``VALUE``, ``VALUE_AND_GRAD``).
    ``data``: a dict collecting the constants kept as data (None: every constant is written
    as literals)."""
    return [renderer.render(doc=doc)
            for renderer, doc in program_renderers(program, base, data, entries)]


def program_renderers(program, base, data=None, entries=BOTH):
    """``(FunctionRenderer, doc lines)`` of each C function of a program (of those ``entries``
    names). After ``render`` a renderer knows the C name of every value (``storage``), which
    ``symgrad inspect`` shows and links: one naming, the renderer's."""
    graph = program.forward
    renderers = []
    if VALUE in entries:
        outs = (["out"] if len(graph.outputs) == 1
                else [f"out{k}" for k in range(len(graph.outputs))])
        renderers.append((FunctionRenderer(graph, base, outs, data=data),
                          [f"{base}: the value of {program.name}{_signature(graph)}"]))
    if VALUE_AND_GRAD in entries and program.differentiable:
        grad_name = f"{base}_value_and_grad"
        wrt = [graph.inputs[i] for i in program.wrt]
        names = (["value"] + [f"aux{k}" for k in range(program.n_aux)]
                 + [f"grad_{v.name}" for v in wrt])
        renderers.append((FunctionRenderer(program.value_and_grad, grad_name, names, data=data),
                          [f"{grad_name}: value and gradient of {program.name}"
                           f"{_signature(graph)}",
                           "with respect to " + ", ".join(v.name for v in wrt)]))
    return renderers


def render_program(program, functions=None, data_files=False, entries=BOTH):
    """The C module of a program (value function, and value-and-grad if it has one; only
    those ``entries`` names); ``functions``: its CFunctions when already rendered
    (``program_renderers``).

    With ``data_files`` (JIT builds on ELF platforms), large constants are kept as data: the
    module's ``data`` holds the files to write beside the source before compiling it.
    Otherwise the C is self-contained, every constant a literal (what ``source()`` shows and
    ahead-of-time builds ship)."""
    base = function_c_name(program.name)
    data = {} if data_files and functions is None else None
    if functions is None:
        functions = program_functions(program, base, data, entries)
    title = f"{program.name}: generated from {program.origin}"
    source = render_module(functions, title=title, version=VERSION, data=data)
    names = [fn.name for fn in functions]
    value_name = base if base in names else None
    grad_name = next((name for name in names if name != base), None)
    parallel = narrow.may_split(line for fn in functions for block in fn.blocks
                                for line in block.lines)
    return RenderedModule(source, render_prototypes(functions), value_name, grad_name,
                          data or {}, parallel)


def _signature(graph):
    return "(" + ", ".join(f"{v.name}: {v.type}" for v in graph.inputs) + ")"
