"""Native execution: render a specialization as C, build it (or find it in the cache), load it
with cffi and call it.

The library holds two functions: ``NAME`` (the value) and, for a scalar float result,
``NAME_value_and_grad``. The per-call path converts nothing it does not have to: C-contiguous,
aligned arrays are passed as they are (``ffi.from_buffer``), others are copied; outputs are fresh
arrays the C code writes into.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import cffi
import numpy as np

from .. import __version__ as VERSION
from .. import dims
from ..cspell import CTYPES, STATUS
from ..interp import evaluate
from . import compiler
from .cache import Cache, cache_key
from .codegen import FunctionRenderer, render_module, render_prototypes


@dataclass
class RenderedModule:
    source: str
    cdef: str
    value_name: str
    grad_name: str | None


def _c_name(name):
    """``symgrad_<name>``: the prefix keeps user names (``exp``, ``main``) clear of libc's."""
    return "symgrad_" + re.sub(r"[^0-9A-Za-z_]", "_", name)


def specialization_functions(spec, base):
    """The CFunctions of a specialization: ``base`` (the value) and, when the result is one
    float scalar, ``base_value_and_grad``."""
    graph = spec.graph
    outs = ["out"] if len(graph.outputs) == 1 else [f"out{k}" for k in range(len(graph.outputs))]
    functions = [FunctionRenderer(graph, base, outs).render(
        doc=[f"{base}: the value of {spec.owner.__name__}{_signature(graph)}"])]
    if spec.differentiable:
        vg = spec.value_and_grad_graph()
        grad_name = f"{base}_value_and_grad"
        wrt = [graph.inputs[spec.traced.index(i)] for i in spec.owner.argnums]
        names = ["value"] + [f"grad_{v.name}" for v in wrt]
        functions.append(FunctionRenderer(vg, grad_name, names).render(
            doc=[f"{grad_name}: value and gradient of {spec.owner.__name__}"
                 f"{_signature(graph)}",
                 "with respect to " + ", ".join(v.name for v in wrt)]))
    return functions


def render_specialization(spec):
    """The C module of a specialization (value function, and value-and-grad if it has one)."""
    base = _c_name(spec.owner.__name__)
    functions = specialization_functions(spec, base)
    title = f"{spec.owner.__name__}: generated from {_origin(spec.owner.fn)}"
    source = render_module(functions, title=title, version=VERSION)
    grad_name = functions[1].name if len(functions) > 1 else None
    return RenderedModule(source, render_prototypes(functions), base, grad_name)


def _signature(graph):
    return "(" + ", ".join(f"{v.name}: {v.type}" for v in graph.inputs) + ")"


def _origin(fn):
    code = getattr(fn, "__code__", None)
    if code is None:
        return "Python"
    import os
    return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"


class NativeExecutable:
    """A loaded library for one specialization; ``value`` and ``value_and_grad`` call into it."""

    def __init__(self, spec, cache_dir=None, cflags=None):
        self.spec = spec
        self.module = render_specialization(spec)
        cc = compiler.find_compiler()
        identity = compiler.compiler_identity(cc)
        flags = compiler.flags(cflags)
        key = cache_key(self.module.source, identity, flags, VERSION)
        cache = Cache(cache_dir)
        lib_path = cache.lookup(key)
        if lib_path is None:
            lib_path = cache.build(
                key, self.module.source,
                lambda src, lib: compiler.compile_library(src, lib, cflags, cc),
                {"symgrad_version": VERSION, "compiler": identity, "flags": list(flags),
                 "functions": [n for n in (self.module.value_name, self.module.grad_name) if n]})
        self.library_path = lib_path
        self.source_path = lib_path.parent / "module.c"
        self.ffi = cffi.FFI()
        self.ffi.cdef(self.module.cdef)
        self.lib = self.ffi.dlopen(str(lib_path))
        self._value = getattr(self.lib, self.module.value_name)
        self._vg = getattr(self.lib, self.module.grad_name) if self.module.grad_name else None
        graph = spec.graph
        # Resolved once: the per-call path only allocates and calls.
        self.in_types = [self.ffi.typeof(CTYPES[v.dtype] + "[]") for v in graph.inputs]
        self._value_plan = self._plan(graph.outputs)
        self._vg_plan = (self._plan(spec.value_and_grad_graph().outputs)
                         if self.module.grad_name else None)
        self.index_checks = _index_checks(graph)
        # Run-time sizes go first in every call: each is read off the first argument using it.
        self.size_symbols = dims.free_symbols([v.shape for v in graph.inputs])
        self.size_sources = [next((p, a) for p, v in enumerate(graph.inputs)
                                  for a, d in enumerate(v.shape) if d == sym)
                             for sym in self.size_symbols]

    def _plan(self, outputs):
        return [(v.shape, np.dtype(v.dtype), self.ffi.typeof(CTYPES[v.dtype] + "[]"))
                for v in outputs]

    def _inputs(self, arrays):
        """cffi buffers over ``arrays`` (converted by ``api._convert``: right dtype, native byte
        order). C-contiguous aligned arrays, read-only ones included, are passed without a copy;
        strided, Fortran-ordered or misaligned ones are copied (``ascontiguousarray`` alone keeps
        a contiguous misaligned array as it is, which the C code must not be given)."""
        sizes = [arrays[p].shape[a] for p, a in self.size_sources]
        binding = dict(zip(self.size_symbols, sizes)) if sizes else None
        for pos, axis, size, what in self.index_checks:
            _check_range(arrays[pos], axis,
                         size if binding is None else dims.substitute(size, binding), what)
        bufs = list(sizes)
        for a, t in zip(arrays, self.in_types):
            if not (a.flags.c_contiguous and a.flags.aligned and a.dtype.isnative):
                a = np.array(a, order="C", copy=True, dtype=a.dtype.newbyteorder("="))
            bufs.append(self.ffi.from_buffer(t, a))
        return bufs

    def _outputs(self, plan, arrays):
        """Fresh output arrays (shapes with run-time sizes read off the inputs) and their
        buffers."""
        binding = None
        outs, bufs = [], []
        for shape, dtype, ctype in plan:
            if not dims.static_shape(shape):
                if binding is None:
                    binding = {sym: arrays[p].shape[a]
                               for sym, (p, a) in zip(self.size_symbols, self.size_sources)}
                shape = tuple(dims.substitute(d, binding) for d in shape)
            arr = np.empty(shape, dtype=dtype)
            outs.append(arr)
            bufs.append(self.ffi.from_buffer(ctype, arr, require_writable=True))
        return outs, bufs

    def value(self, arrays):
        bufs = self._inputs(arrays)
        outs, out_bufs = self._outputs(self._value_plan, arrays)
        self._status(self._value(*bufs, *out_bufs), arrays)
        return outs

    def value_and_grad(self, arrays):
        bufs = self._inputs(arrays)
        outs, out_bufs = self._outputs(self._vg_plan, arrays)
        self._status(self._vg(*bufs, *out_bufs), arrays)
        return outs[0], outs[1:]

    def _status(self, status, arrays):
        if status == STATUS["SYMGRAD_OK"]:
            return
        if status == STATUS["SYMGRAD_ENOMEM"]:
            raise MemoryError(f"{self.spec.owner.__name__}: the native code could not allocate "
                              f"its workspace")
        if status == STATUS["SYMGRAD_EINDEX"]:
            evaluate(self.spec.graph, arrays)      # raises IndexError saying which index
            raise IndexError(f"{self.spec.owner.__name__}: an integer index is out of range")
        raise RuntimeError(f"{self.spec.owner.__name__}: native code returned status {status}")


def _index_checks(graph):
    """(input position, axis, size, description) for every index array that is a graph input,
    so out-of-range indices are reported before any native code runs."""
    producers = graph.producers()
    positions = {v: i for i, v in enumerate(graph.inputs)}
    checks = set()
    for n in graph.nodes:
        if n.prim not in ("gather", "scatter_add"):
            continue
        table = n.inputs[0].shape if n.prim == "gather" else n.attrs["shape"]
        for axis, idx in enumerate(n.inputs[1:]):
            v = idx
            while v in producers and producers[v].prim in ("convert", "broadcast_in_dim",
                                                           "reshape"):
                v = producers[v].inputs[0]
            if v in positions:
                checks.add((positions[v], axis, table[axis], f"argument {v.name!r}"))
    return sorted(checks)


def _check_range(arr, axis, size, what):
    if arr.size == 0:
        return
    lo, hi = arr.min(), arr.max()
    if lo < -size or hi >= size:
        bad = lo if lo < -size else hi
        raise IndexError(f"index {int(bad)} in {what} is out of bounds for axis {axis} with "
                         f"size {size}")
