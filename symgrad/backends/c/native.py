"""Native execution: render a specialization as C, build it (or find it in the cache), load it
with cffi and call it.

A specialization has two functions: ``NAME`` (the value) and, for a scalar float result,
``NAME_value_and_grad``, built when first called: a first ``value_and_grad`` builds its function
alone, a first value both in one library (``NativeExecutable._choices``). Each gets a call plan,
worked out once when its library is loaded, so the per-call path only fills buffers and calls:
C-contiguous, aligned arrays are passed as they are (``from_buffer``), others are copied;
outputs are fresh arrays the C code writes into. A function of float64 scalars to float64
scalars (W1) makes no arrays at all: its inputs and outputs go through one pooled ``double[]``
buffer (``_scalar_call``), and once symgrad's CPython entry library is loaded, through a
CPython function calling the C directly (``pyentry.py``).

Loading is cheap when the library is in the cache: the key is computed from the traced forward
graph (``keys``), before the derivative graph is built or any C is rendered, and the manifest
holds what cffi needs (its out-of-line module: no C declarations to parse), so a warm first call
imports neither sympy nor Jinja nor cffi's parser.
"""
from __future__ import annotations

import functools
import operator
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from symgrad._version import __version__ as VERSION
from symgrad.core import dims, gcpause
from symgrad.core.cspell import CTYPES, STATUS
from symgrad.core.primitives import REGISTRY
from symgrad.backends.interp import evaluate
from symgrad.backends.c import abi, compiler, keys, pyentry, threads
from symgrad.backends.c.cache import Cache, cache_key
from symgrad.backends.program import BOTH, VALUE, VALUE_AND_GRAD, Program


class NativeExecutable:
    """One specialization in native code: ``value`` and ``value_and_grad`` call its C functions,
    whose libraries are built (or found in the cache) when a function is first called. What
    that call asks for decides what is built (``_choices``); the other function, asked for
    later, is built then, as JAX compiles ``jit(f)`` and ``jit(grad(f))`` apart."""

    def __init__(self, program, cache_dir=None, cflags=None):
        self.program = program
        self._cache_dir, self._cflags = cache_dir, cflags
        graph = program.forward
        self.index_checks = index_checks(graph)
        # Run-time sizes go first in every call: each is read off the first argument using it.
        self.size_symbols = dims.free_symbols([v.shape for v in graph.inputs])
        self.size_sources = [next((p, a) for p, v in enumerate(graph.inputs)
                                  for a, d in enumerate(v.shape) if d == sym)
                             for sym in self.size_symbols]
        self._index_sizes = dims.evaluator([size for _, _, size, _ in self.index_checks],
                                           self.size_symbols)
        self._entries = {}          # VALUE / VALUE_AND_GRAD -> its _Entry, once loaded
        self._lock = threading.Lock()
        self._faster = []

    # What the API calls (api.py): each loads its function's library on first use. ``scalars``
    # and the ``scalars_and_*`` calls are None unless every input and output is a float64
    # scalar (``_scalar_call``).

    @property
    def value(self):
        return self._entry(VALUE).run

    @property
    def scalars(self):
        return self._entry(VALUE).scalars

    @property
    def value_and_grad(self):
        return self._entry(VALUE_AND_GRAD).run if self.program.differentiable else None

    @property
    def scalars_and_grad(self):
        return self._entry(VALUE_AND_GRAD).scalars if self.program.differentiable else None

    @property
    def scalars_and_first_grad(self):
        return (self._entry(VALUE_AND_GRAD).scalars_first if self.program.differentiable
                else None)

    @property
    def library_path(self):
        """The library of the value-and-gradient function (of the value function when there
        is no gradient), loaded first if it is not yet."""
        return self._entry(VALUE_AND_GRAD if self.program.differentiable else VALUE).path

    @property
    def source_path(self):
        """The C source of ``library_path`` (the cache entry's copy)."""
        return self.library_path.parent / "module.c"

    @property
    def source(self):
        """The C source of ``library_path``."""
        return self.source_path.read_text()

    def _entry(self, name):
        entry = self._entries.get(name)         # loaded once; later calls take no lock
        if entry is None:
            with self._lock:
                entry = self._entries.get(name)
                if entry is None:
                    with gcpause.paused():      # linear build time: see core/gcpause.py
                        self._entries.update(self._load(self._choices(name)))
                    entry = self._entries[name]
        return entry

    def _choices(self, name):
        """The libraries that serve ``name``'s first call, as tuples of function names, in the
        order they are looked for in the cache; the first is built if none is there.

        A first ``value_and_grad`` builds itself alone: a training loop asks for nothing else
        (the 3-layer network of benchmarks/startup.py, gcc alone: 88 ms, against 109 for both;
        the value alone 72; medians of 11). A first value of a differentiable function builds
        both, as a gradient usually follows (an optimizer asking for the value, then the
        gradient; a gradient check), and one library of both compiles faster than two (109 ms,
        against 72 + 88). Either finds a library of both or of itself alone that another
        process built (a Dask worker's first value_and_grad, the library its client built by a
        first value)."""
        if name == VALUE_AND_GRAD:
            return [(VALUE_AND_GRAD,), BOTH]
        if not self.program.differentiable:
            return [(VALUE,)]
        if self._entries:                       # the gradient's library is loaded already
            return [(VALUE,), BOTH]
        return [BOTH, (VALUE,)]

    def _load(self, choices):
        """``{name: its _Entry}`` of the functions of one of the libraries ``choices`` (see
        ``_choices``), found in the cache or built, and loaded."""
        program, graph = self.program, self.program.forward
        path, ffi, lib, c_names = _load_program(program, choices, self._cflags,
                                                self._cache_dir)
        # Resolved once: the per-call path only allocates and calls.
        in_types = [ffi.typeof(CTYPES[v.dtype] + "[]") for v in graph.inputs]
        loaded = {}
        for name, c_name in c_names.items():
            if name in self._entries:
                continue
            fn = getattr(lib, c_name)
            if name == VALUE:
                outputs = graph.outputs
                run = self._plan(ffi, in_types, fn, outputs)
            else:
                outputs = program.value_and_grad_outputs()
                run = self._plan(ffi, in_types, fn, outputs, split=True)
            scalars = _scalar_call(self, ffi, fn, graph.inputs, outputs, grads=name != VALUE)
            # The CPython entry points release the GIL around code with loops; the value-and-
            # gradient graph has loops where the forward graph has (an adjoint has its
            # primal's shape), and is not built just to see so when the library was cached.
            entry = _Entry(path, ffi, lib, fn, run, scalars, release=not _scalar_only(graph))
            if scalars is not None:
                pyentry.when_ready(functools.partial(self._python_entries, name, entry),
                                   self._cache_dir)
            loaded[name] = entry
        return loaded

    def when_faster(self, callback):
        """Call ``callback()`` when this executable's calls are replaced by faster ones (the
        scalar calls by CPython entry points, pyentry.py): remembered calls are stale then."""
        self._faster.append(callback)

    def _python_entries(self, name, entry):
        """Switch ``entry``'s scalar calls to CPython functions (pyentry.py), then tell the
        listeners."""
        program = self.program
        graph = program.forward
        n_in = len(graph.inputs)
        make = functools.partial(pyentry.entry, entry.ffi, entry.fn, n_in)
        if name == VALUE:
            value = make(len(graph.outputs), pyentry.VALUES if graph.tuple_output
                         else pyentry.VALUE, entry.release, entry.lib, program.name)
            if value is None:
                return
            entry.scalars = value
        else:
            n_out = len(program.value_and_grad_outputs())
            grads = make(n_out, pyentry.GRADS, entry.release, entry.lib, program.name)
            if grads is None:
                return
            entry.scalars_first = make(n_out, pyentry.FIRST_GRAD, entry.release, entry.lib,
                                       program.name)
            entry.scalars = grads
        for callback in self._faster:
            callback()

    # The call plans. ``value(arrays)`` and ``value_and_grad(arrays)`` take the arrays
    # ``api._convert`` made (right dtype, native byte order) and return fresh outputs
    # (``value_and_grad``: the value, a 0-d array or NumPy scalar, and the list of gradients).
    # ``scalars(values)`` and ``scalars_and_grad(values)``, set only when every input and
    # output is a float64 scalar, take the input values themselves (Python floats) and return
    # the user's result (see ``_scalar_call``): no NumPy array is made at all.

    def _plan(self, ffi, in_types, fn, outputs, split=False):
        """``run(arrays) -> outputs`` for the C function ``fn``; with ``split`` (the
        value-and-gradient function), ``(value, [gradients])``.

        C-contiguous aligned inputs, read-only ones included, are passed without a copy;
        strided, Fortran-ordered or misaligned ones are copied (``ascontiguousarray`` alone
        keeps a contiguous misaligned array as it is, which the C code must not be given).
        Outputs are fresh arrays; their shapes with run-time sizes are read off the inputs.
        A float64 value (``split``) is written into a slot of a pooled buffer instead, as in
        ``_scalar_call``, and read out as a NumPy float64 scalar. Index arrays that are
        arguments are range-checked first, so the error names them.
        """
        # ``FFI.from_buffer`` is a Python wrapper that only resolves a type given as a string
        # before calling the backend's; the types here are resolved already.
        backend = getattr(ffi, "_backend", None)
        from_buffer = getattr(backend, "from_buffer", None) or ffi.from_buffer
        cell = split and outputs[0].dtype == "float64" and outputs[0].shape == ()
        arrays_out = outputs[1:] if cell else outputs
        shapes = [v.shape for v in arrays_out]
        dtypes = [np.dtype(v.dtype) for v in arrays_out]
        ctypes = [ffi.typeof(CTYPES[v.dtype] + "[]") for v in arrays_out]
        out_plan = list(zip(shapes, dtypes, ctypes))
        check = self._check if self.index_checks or self.size_symbols else None
        dynamic = not all(dims.static_shape(shape) for shape in shapes)
        if dynamic:
            rank = [len(shape) for shape in shapes]
            flat = dims.evaluator([d for shape in shapes for d in shape], self.size_symbols)
            sources = self.size_sources

            def bind(arrays):
                values = flat([arrays[p].shape[a] for p, a in sources])
                out, k = [], 0
                for n in rank:
                    out.append(tuple(values[k:k + n]))
                    k += n
                return out
        empty = np.empty
        pool, new_cell = [], functools.partial(_cell, ffi)

        # Plain loops, no comprehensions: on Python 3.11 each comprehension is a function call.
        def run(arrays):
            sizes = check(arrays) if check is not None else ()
            bufs = []
            for a, t in zip(arrays, in_types):
                flags = a.flags
                if not (flags.c_contiguous and flags.aligned and a.dtype.isnative):
                    a = np.array(a, order="C", copy=True, dtype=a.dtype.newbyteorder("="))
                bufs.append(from_buffer(t, a, False))
            if cell:
                try:
                    entry = pool.pop()
                except IndexError:
                    entry = new_cell()
                bufs.append(entry[0])
            outs = []
            for shape, dtype, t in (zip(bind(arrays), dtypes, ctypes) if dynamic
                                    else out_plan):
                out = empty(shape, dtype)
                outs.append(out)
                bufs.append(from_buffer(t, out, True))
            status = fn(*sizes, *bufs)
            if cell:
                value = entry[1][0]
                pool.append(entry)
            if status != _OK:
                self._status(status, arrays)
            if not split:
                return outs
            return (value, outs) if cell else (outs[0], outs[1:])
        return run

    def _check(self, arrays):
        """The run-time sizes to pass first, after range-checking the index arguments."""
        sizes = [arrays[p].shape[a] for p, a in self.size_sources]
        if self.index_checks:
            for (pos, axis, _, what), size in zip(self.index_checks, self._index_sizes(sizes)):
                _check_range(arrays[pos], axis, size, what)
        return sizes

    def _status(self, status, arrays):
        if status == STATUS["SYMGRAD_OK"]:
            return
        if status == STATUS["SYMGRAD_ENOMEM"]:
            raise MemoryError(f"{self.program.name}: the native code could not allocate "
                              f"its workspace")
        if status == STATUS["SYMGRAD_EINDEX"]:
            evaluate(self.program.forward, arrays)      # raises IndexError saying which index
            raise IndexError(f"{self.program.name}: an integer index is out of range")
        raise RuntimeError(f"{self.program.name}: native code returned status {status}")


_OK = STATUS["SYMGRAD_OK"]


@dataclass
class _Entry:
    """One C function of a specialization, in its library: the call plan ``run`` and, for
    float64 scalars only, ``scalars`` (and, for the gradient, ``scalars_first``: the first
    gradient alone), which ``_python_entries`` may replace by faster ones."""
    path: Path                      # the library
    ffi: Any
    lib: Any
    fn: Callable                    # the C function
    run: Callable
    scalars: Callable | None
    release: bool                   # whether a CPython entry point releases the GIL around it
    scalars_first: Callable | None = None


def _cell(ffi):
    """A pooled ``double[1]`` and its float64 view (indexing it makes a NumPy scalar)."""
    buf = ffi.new("double[1]")
    return buf, np.frombuffer(ffi.buffer(buf), np.float64)


def _scalar_only(graph):
    """Whether every value ``graph`` computes is a scalar (no loops; a loop statement's result
    is its table of rows, never a scalar)."""
    return all(n.out.ndim == 0 for n in graph.nodes)


def _straight_line(graphs):
    """Whether every value the ``graphs`` compute is a scalar."""
    return all(_scalar_only(g) for g in graphs)


def _load_program(program, choices, cflags, cache_dir):
    """The library of one of ``choices`` (tuples of ``VALUE``, ``VALUE_AND_GRAD``: the
    functions it holds): the first found in the cache (by ``keys.library_key``), else the first
    rendered and built. ``(library path, ffi, lib, {function: its C name})``."""
    cc = compiler.find_compiler()
    identity = compiler.compiler_identity(cc)
    cache = Cache(cache_dir)
    program_key = keys.program_key(program, identity, compiler.flags(cflags, cc=cc), VERSION)
    for entries in choices:
        found = _cached(cache, keys.library_key(program_key, entries))
        if found is not None:
            lib_path, manifest = found
            break
    else:
        entries = choices[0]
        key = keys.library_key(program_key, entries)
        from symgrad.backends.c.module import render_program     # Jinja: only to build
        module = render_program(program, data_files=DATA_FILES, entries=entries)
        if module.parallel:
            threads.prepare(cache_dir, cc)   # on another core, while this one compiles
        graphs = [program.forward if e == VALUE else program.value_and_grad for e in entries]
        if cflags is None and _straight_line(graphs):
            cflags = compiler.STRAIGHT_LINE_CFLAGS
        # cffi's declarations (pycparser: tens of ms of CPU) and the compiler's version line
        # are made while the C compiler runs: the manifest needs them only once it is done.
        # The thread starts once the compiler is running: started before, it delayed the
        # compiler's start by 4-9 ms on a loaded machine (Thread.start waits for the new
        # thread to be scheduled, which then holds the GIL for up to the switch interval).
        start_declaring, declared = _in_background(
            lambda: (compiler.compiler_version(cc), _ffi_module(module.cdef)))

        blas = compiler.calls_blas(module.source)

        def build(pool):
            def manifest():
                version, ffi_module = declared()
                return {"symgrad_version": VERSION, "compiler": identity,
                        "compiler_version": version,
                        "flags": list(compiler.flags(cflags, use_blas=blas, threads=pool,
                                                     cc=cc)),
                        "functions": [n for n in (module.value_name, module.grad_name) if n],
                        "threads": pool, "ffi_module": ffi_module}
            return cache.build(key, module.source, functools.partial(
                _compile_with_data, module.data, cflags=cflags, cc=cc, blas=blas, threads=pool,
                started=start_declaring), manifest), manifest()

        # The thread pool, for a library whose calls may split work (threads.py; a library of
        # small products only is built without it, so a first build need not compile the pool).
        # The library does not link against the pool (its symbols resolve when it is loaded
        # after the pool), so it compiles on this core while the pool, started just above,
        # compiles on the other: a cold build waits for the longer of the two, not their sum.
        pool = module.parallel and threads.may_load()
        lib_path, manifest = build(pool)
        if pool and threads.runtime(cache_dir, cc) is None:
            # The pool could not be built or loaded after all (threads.runtime warned once):
            # this library would not load without it, so it is built again, in one thread.
            cache.discard(key)
            lib_path, manifest = build(False)
    if manifest.get("threads"):
        threads.runtime(cache_dir, cc)       # the pool's library is loaded before this one
    ffi = _ffi_of(manifest["ffi_module"])
    lib = _open(ffi, lib_path, manifest["flags"])
    return lib_path, ffi, lib, dict(zip(entries, manifest["functions"]))


def _open(ffi, lib_path, flags):
    """The library at ``lib_path``, built with ``flags``, loaded: its BLAS pointers bound before
    anything can call it, when it has them (``compiler.bind_blas``)."""
    lib = ffi.dlopen(str(lib_path))
    if compiler.BLAS_AT_LOAD in flags:
        compiler.bind_blas(lib_path)
    return lib


def _cached(cache, key):
    """``(library path, manifest)`` of the cache entry ``key``, or None (none, or one written
    before manifests held cffi's module)."""
    found = cache.read(key)
    return found if found is not None and "ffi_module" in found[1] else None


def _in_background(fn):
    """``(start, wait)``: ``start()`` runs ``fn()`` in a thread (once, however often it is
    called); ``wait()`` waits for it and returns its result (or raises its exception)."""
    result = []
    thread = threading.Thread(target=lambda: result.append(_outcome(fn)), name="symgrad-declare",
                              daemon=True)

    def start():
        if thread.ident is None:
            thread.start()

    def wait():
        start()
        thread.join()
        ok, value = result[0]
        if not ok:
            raise value
        return value
    return start, wait


def _outcome(fn):
    """``(True, fn())``, or ``(False, the exception it raised)`` (re-raised in the caller's
    thread)."""
    try:
        return True, fn()
    except BaseException as e:
        return False, e


# Large constants go into the library as data (``render_program``'s ``data_files``): the
# assembler includes their bytes with ``.incbin`` in an ELF section. Elsewhere (macOS's Mach-O)
# they stay literals in the C.
DATA_FILES = sys.platform.startswith(("linux", "freebsd", "netbsd", "openbsd"))


def _compile_with_data(data, src, lib, *, cflags, cc, blas=True, threads=False, started=None):
    """Compile ``src`` into ``lib``, first writing the constants ``data`` it includes beside it
    (the cache entry keeps them with the source). ``blas``, ``threads``, ``started``: see
    ``compile_library`` (its ``use_blas``)."""
    for symbol, (_, raw) in data.items():
        (src.parent / f"{symbol}.bin").write_bytes(raw)
    if data:                # the assembler looks for the files in the source's directory
        cflags = tuple(compiler.DEFAULT_CFLAGS if cflags is None else cflags) + (
            "-Xassembler", f"-I{src.parent}")
    return compiler.compile_library(src, lib, cflags, cc, use_blas=blas, threads=threads,
                                    started=started)


def _ffi_module(cdef):
    """cffi's out-of-line ABI module for the declarations ``cdef``, as Python source: loading it
    makes the FFI without parsing C (pycparser costs tens of milliseconds to import and run).
    symgrad's own prototypes are read without pycparser (``abi.py``); other C is parsed."""
    text = abi.module_text(cdef, "_symgrad_module")
    if text is not None:
        return text
    import io

    import cffi
    from cffi.recompiler import make_py_source
    ffi = cffi.FFI()
    ffi.cdef(cdef)
    text = io.StringIO()
    make_py_source(ffi, "_symgrad_module", text)    # ffi.emit_python_code, into a string
    return text.getvalue()


def _ffi_of(module_source):
    """The FFI an ``_ffi_module`` text defines. It comes from a cache entry, which is trusted as
    the library beside it is (``cache``: only a directory of ours is read)."""
    namespace = {}
    exec(compile(module_source, "<symgrad ffi module>", "exec"), namespace)
    return namespace["ffi"]


def _load(source, cdef, names, cflags, cache_dir):
    """The library of the C ``source`` (built, or found in the cache by its content hash),
    loaded: ``(library path, ffi, lib)``. ``names``: its functions, for the manifest."""
    cc = compiler.find_compiler()
    identity = compiler.compiler_identity(cc)
    # The thread pool, for a library with parallel loops: loaded before it (threads.py).
    pool = "symgradrt_parallel_for(" in source and threads.runtime(cache_dir, cc) is not None
    blas = compiler.calls_blas(source)
    flags = compiler.flags(cflags, use_blas=blas, threads=pool, cc=cc)
    key = cache_key(source, identity, flags, VERSION)
    cache = Cache(cache_dir)
    found = _cached(cache, key)
    if found is not None:
        lib_path, manifest = found
    else:
        manifest = {"symgrad_version": VERSION, "compiler": identity,
                    "compiler_version": compiler.compiler_version(cc), "flags": list(flags),
                    "functions": names, "ffi_module": _ffi_module(cdef)}
        lib_path = cache.build(
            key, source, lambda src, lib: compiler.compile_library(src, lib, cflags, cc,
                                                                   use_blas=blas,
                                                                   threads=pool),
            manifest)
    ffi = _ffi_of(manifest["ffi_module"])
    return lib_path, ffi, _open(ffi, lib_path, manifest["flags"])


def evaluate_native(graph, arrays, *, cache_dir=None, cflags=None):
    """Run any ``graph`` as C once (the interpreter's counterpart, for diagnosis): compile it
    as one function (cached like every build) and call it on ``arrays``, one per input, of the
    graph's dtypes. Returns its outputs as fresh arrays."""
    from symgrad.backends.c.module import render_program
    module = render_program(Program(f"{graph.name}_probe", "a probe of every value", graph))
    name = module.value_name
    _, ffi, lib = _load(module.source, module.cdef, [name], cflags, cache_dir)
    symbols = dims.free_symbols([v.shape for v in graph.inputs])
    binding = dims.bind([v.shape for v in graph.inputs], [a.shape for a in arrays]) \
        if symbols else {}
    ins = [np.ascontiguousarray(a, dtype=v.dtype) for v, a in zip(graph.inputs, arrays)]
    results = [np.empty(tuple(dims.substitute(d, binding) for d in v.shape), v.dtype)
               for v in graph.outputs]
    status = getattr(lib, name)(*[binding[s] for s in symbols],
                                *[ffi.from_buffer(CTYPES[v.dtype] + "[]", a)
                                  for v, a in zip(graph.inputs, ins)],
                                *[ffi.from_buffer(CTYPES[v.dtype] + "[]", a, True)
                                  for v, a in zip(graph.outputs, results)])
    if status != _OK:
        raise RuntimeError(f"{graph.name}: native code returned status {status}")
    return results


def _scalar_call(exe, ffi, fn, inputs, outputs, *, grads):
    """``run(values)`` for a C function whose inputs and outputs are all float64 scalars (None
    for any other function). ``run`` gives the user's result: for the value function a Python
    float, or a tuple of them for a tuple result; with ``grads``, ``(value, gradients)``, the
    value a Python float and the gradients a tuple of NumPy float64 scalars (what indexing a
    0-d output array gives on the array path).

    The values go through one ``double[]`` buffer, inputs first, and the C function gets a
    pointer to each slot. Buffers come from a pool and go back after the call, so each call, in
    whatever thread, has a buffer of its own while it runs (``list.pop`` and ``append`` are
    atomic); the results are read out as new objects, never shared.
    """
    if exe.index_checks or any(v.dtype != "float64" or v.shape != ()
                               for v in (*inputs, *outputs)):
        return None
    n_in, n = len(inputs), len(inputs) + len(outputs)
    slots = ffi.typeof(f"double[{n}]")
    # The results: indexing the float64 view of the buffer makes NumPy scalars, indexing the
    # buffer itself Python floats; ``_getter`` makes a tuple of several in one step.
    value_slot = n_in if grads or not exe.program.forward.tuple_output else None
    grads_of = _getter(n_in + 1, n) if grads else None
    outs_of = _getter(n_in, n)
    pool = []

    def new():
        buf = ffi.new(slots)
        view = np.frombuffer(ffi.buffer(buf), np.float64)
        return buf, view, tuple(buf + k for k in range(n))   # pointers do not keep buf alive

    def run(values):
        try:
            entry = pool.pop()
        except IndexError:
            entry = new()
        buf, view, pointers = entry
        buf[0:n_in] = values
        status = fn(*pointers)
        if grads:
            result = buf[value_slot], grads_of(view)
        elif value_slot is not None:
            result = buf[value_slot]
        else:
            result = outs_of(buf)
        pool.append(entry)
        if status != _OK:
            exe._status(status, [np.array(v, dtype=np.float64) for v in values])
        return result
    return run


def _getter(start, stop):
    """``get(seq) -> (seq[start], ..., seq[stop - 1])``, a tuple even of one or none."""
    if stop - start == 0:
        return lambda seq: ()
    if stop - start == 1:
        return lambda seq: (seq[start],)
    return operator.itemgetter(*range(start, stop))


def index_checks(graph):
    """(input position, axis, size, description) for every index array that is a graph input
    (the operands the records' ``index_bounds`` name, looked for through statements that keep
    their operand's elements), so out-of-range indices are reported before any native code
    runs."""
    producers = graph.producers()
    positions = {v: i for i, v in enumerate(graph.inputs)}
    checks = set()
    for n in graph.nodes:
        bounds = REGISTRY[n.prim].index_bounds
        if bounds is None:
            continue
        for operand, axis, size in bounds(n):
            v = n.inputs[operand]
            while v in producers and REGISTRY[producers[v].prim].same_elements:
                v = producers[v].inputs[0]
            if v in positions:
                checks.add((positions[v], axis, size, f"argument {v.name!r}"))
    return sorted(checks)


def _check_range(arr, axis, size, what):
    if arr.size == 0:
        return
    lo, hi = arr.min(), arr.max()
    if lo < -size or hi >= size:
        bad = lo if lo < -size else hi
        raise IndexError(f"index {int(bad)} in {what} is out of bounds for axis {axis} with "
                         f"size {size}")


class NativeBackend:
    """Native C as a backend (``backend="c"``): render, build or find in the cache, load."""
    name = "c"

    def build(self, program, *, cache_dir=None, cflags=None):
        return NativeExecutable(program, cache_dir=cache_dir, cflags=cflags)


BACKEND = NativeBackend()
