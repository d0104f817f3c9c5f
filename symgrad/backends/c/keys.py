"""The cache key of a Program, computed before any C is rendered.

A new process that meets a specialization it compiled before must not pay for what only a
build needs: the derivative graph, the passes on it, sympy, Jinja rendering. So the key is a
sha256 of what decides the library, read off the Program as traced:

- the forward graph: its listing with every constant in full (``Graph.format``), the source
  line of every statement (file, line and the line's text: the C quotes them in comments), and
  the same of every loop body it holds;
- which inputs the gradient is taken with respect to, the number of auxiliary outputs, the
  function's name and where it was written;
- which of the program's functions the library holds (the value, the value and gradient);
- the code that turns these into C: a sha256 of every file of the symgrad package (its Python
  modules and templates), so changing any of them makes new entries, with no version to bump;
  and of the primitive records as they are in this process (each rule's code and constants),
  so a record replaced at run time (a test's wrong derivative rule) is never served a library
  built with the old one;
- the compiler's identity and the flags asked for, and the symgrad version.

The value-and-gradient graph, the flags chosen from it and the C source are functions of these,
so two programs with one key build one library. Anything else that comes to decide the C (an
environment variable read while rendering, say) must be added to the key here.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
import re

from symgrad.core.ir import REGISTRY, Literal

_PACKAGE = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@functools.cache
def code_fingerprint():
    """A sha256 of symgrad's own files (modules and templates), computed once per process."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(_PACKAGE):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__")
        for name in sorted(files):
            if name.endswith((".py", ".j2", ".c", ".h")):
                path = os.path.join(root, name)
                h.update(os.path.relpath(path, _PACKAGE).encode() + b"\0")
                with open(path, "rb") as f:
                    h.update(f.read())
                h.update(b"\0")
    return h.hexdigest()


def registry_fingerprint():
    """Bytes that tell the primitive records in this process from the shipped ones: empty when
    no record was replaced since it was registered (the files, in ``code_fingerprint``, say
    the rest), else each replaced record's fields, functions by their code."""
    h = hashlib.sha256()
    for name in sorted(REGISTRY.replaced):
        record = REGISTRY[name]
        h.update(name.encode() + b"\0")
        for field in dataclasses.fields(record):
            h.update(_describe(getattr(record, field.name)) + b"\0")
    return h.hexdigest() if REGISTRY.replaced else ""


def _describe(value):
    """Bytes that identify ``value`` across processes: a function by its code and constants, a
    partial by its function and arguments, anything else by its repr (object addresses, which
    differ per process, are cut out)."""
    if isinstance(value, functools.partial):
        return b"partial " + b" ".join(_describe(v) for v in (value.func, *value.args,
                                                               *sorted(value.keywords.items())))
    if isinstance(value, tuple):
        return b"(" + b",".join(_describe(v) for v in value) + b")"
    code = getattr(value, "__code__", None)
    if code is not None:
        consts = b",".join(_describe(c) for c in code.co_consts)
        return code.co_qualname.encode() + code.co_code + consts
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value)).encode()


def _graph_parts(graph, out):
    """Append the content of ``graph`` (and of the loop bodies it holds) to ``out``."""
    out.append(graph.name)
    out.append(graph.format(inline_scalars=False))
    for v in graph.outputs:
        out.append(repr(v.type))
    out.append(repr(graph.tuple_output))
    for n in graph.nodes:
        loc = n.loc
        out.append("" if loc is None else f"{loc.filename}:{loc.lineno}:{loc.text}")
        for value in n.attrs.values():
            if isinstance(value, Literal):
                dtype, shape, data = value._key
                out.append(f"{dtype}{shape}")
                out.append(data)
            elif hasattr(value, "graph") and hasattr(value.graph, "nodes"):   # a loop body
                _graph_parts(value.graph, out)


def program_key(program, compiler, flags, version):
    """The key of ``program`` built by ``compiler`` (its identity) with ``flags``; each of its
    libraries is found by ``library_key``."""
    parts = [code_fingerprint(), registry_fingerprint(), program.name, program.origin,
             repr(tuple(program.wrt)), repr(program.n_aux), repr(program.differentiable),
             compiler, " ".join(flags), version]
    _graph_parts(program.forward, parts)
    h = hashlib.sha256()
    for part in parts:
        h.update(part if isinstance(part, bytes) else part.encode())
        h.update(b"\0")
    return h.hexdigest()


def library_key(program_key, entries):
    """The cache key of the library holding the functions ``entries`` (``VALUE``,
    ``VALUE_AND_GRAD``: backends/program.py) of the program whose key is ``program_key``."""
    return hashlib.sha256(f"{program_key}\0{' '.join(entries)}".encode()).hexdigest()
