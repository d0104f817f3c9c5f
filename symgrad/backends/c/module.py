"""A Program as one C module: its value function and, when differentiable, its value-and-gradient
function, with the prototypes cffi and headers declare."""
from __future__ import annotations

import re
from dataclasses import dataclass

from symgrad._version import __version__ as VERSION
from symgrad.backends.c.codegen import FunctionRenderer, render_module, render_prototypes


@dataclass
class RenderedModule:
    source: str
    cdef: str
    value_name: str
    grad_name: str | None


def _c_name(name):
    """``symgrad_<name>``: the prefix keeps user names (``exp``, ``main``) clear of libc's."""
    return "symgrad_" + re.sub(r"[^0-9A-Za-z_]", "_", name)


def program_functions(program, base):
    """The CFunctions of a program: ``base`` (the value) and, when it is differentiable,
    ``base_value_and_grad``."""
    return [renderer.render(doc=doc) for renderer, doc in program_renderers(program, base)]


def program_renderers(program, base):
    """``(FunctionRenderer, doc lines)`` of each C function of a program. After ``render`` a
    renderer knows the C name of every value (``storage``), which ``symgrad inspect`` shows and
    links: one naming, the renderer's."""
    graph = program.forward
    outs = ["out"] if len(graph.outputs) == 1 else [f"out{k}" for k in range(len(graph.outputs))]
    renderers = [(FunctionRenderer(graph, base, outs),
                  [f"{base}: the value of {program.name}{_signature(graph)}"])]
    if program.differentiable:
        grad_name = f"{base}_value_and_grad"
        wrt = [graph.inputs[i] for i in program.wrt]
        names = (["value"] + [f"aux{k}" for k in range(program.n_aux)]
                 + [f"grad_{v.name}" for v in wrt])
        renderers.append((FunctionRenderer(program.value_and_grad, grad_name, names),
                          [f"{grad_name}: value and gradient of {program.name}"
                           f"{_signature(graph)}",
                           "with respect to " + ", ".join(v.name for v in wrt)]))
    return renderers


def render_program(program, functions=None):
    """The C module of a program (value function, and value-and-grad if it has one);
    ``functions``: its CFunctions when already rendered (``program_renderers``)."""
    base = _c_name(program.name)
    functions = program_functions(program, base) if functions is None else functions
    title = f"{program.name}: generated from {program.origin}"
    source = render_module(functions, title=title, version=VERSION)
    grad_name = functions[1].name if len(functions) > 1 else None
    return RenderedModule(source, render_prototypes(functions), base, grad_name)


def _signature(graph):
    return "(" + ", ".join(f"{v.name}: {v.type}" for v in graph.inputs) + ")"
