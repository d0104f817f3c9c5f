"""CPython entry points for functions of float64 scalars (W1).

Such a function's arithmetic takes tens of nanoseconds; through cffi's ABI mode its call took 1.4
us (benchmarks/profile_w1.md): the foreign call 0.3, filling and reading its buffer 0.3, the rest
symgrad's fast path. ``symgrad/templates/python_entry.c.j2`` is a small CPython library, built once
per cache (and loaded once per process) like the thread pool: ``entry(...)`` makes a CPython
function bound to one generated C function's address, which reads the argument values, calls it
with pointers into a local array and builds the user's result, as ``native._scalar_call``'s ``run``
does. The generated libraries themselves stay plain C, so a function's first call compiles no more
than before. The entry library is built once per cache directory (in ``.runtime``, ~50 ms of
compiler time here), in a background thread: until it is loaded, calls go through cffi; then the
waiting functions switch (``when_ready``).

It needs CPython's headers (``Python.h``); where they are missing (or the interpreter is not
CPython), or the library cannot be built, the cffi path serves.
Results: a Python float for a value (a tuple of them for a tuple result), and NumPy float64
scalars for gradients, as on every other path.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import sysconfig
import threading
import warnings

import numpy as np

from symgrad._version import __version__ as VERSION

MOST = 32                      # inputs + outputs an entry point takes (one C pointer each)
CFLAGS = ("-O2",)
VALUE, VALUES, GRADS, FIRST_GRAD = range(4)     # what an entry point returns (see the C)

_lock = threading.Lock()
_make = None                   # symgrad_python_entry, once loaded
_failed = False


@functools.lru_cache(maxsize=None)
def include_dir():
    """The directory of ``Python.h``, or None when symgrad cannot build CPython entry points
    (not CPython, no headers, or a NumPy float64 that is not laid out as a float)."""
    if platform.python_implementation() != "CPython":
        return None
    if not (issubclass(np.float64, float) and np.float64.__basicsize__ == float.__basicsize__):
        return None
    path = sysconfig.get_paths().get("include")
    if not path or not os.path.isfile(os.path.join(path, "Python.h")):
        return None
    return path


def when_ready(callback, cache_dir=None, cc=None):
    """Call ``callback()`` once the entry library is loaded: now, if it is loaded or in the
    cache; else after a build in a background thread (which calls it there), so that no call
    waits for it. Never called when the library cannot be made."""
    global _builder
    if include_dir() is None or _failed:
        return
    with _lock:
        if _make is None and _builder is None:
            try:
                found = _find(cache_dir, cc)
            except Exception as e:          # no compiler, an unusable cache: cffi serves
                _give_up(e)
                return
            if found is None:
                _pending.append(callback)
                _builder = threading.Thread(target=_build, args=(cache_dir, cc), daemon=True,
                                            name="symgrad-python-entries")
                _builder.start()
                return
            _loaded(found)
        elif _make is None:
            _pending.append(callback)
            return
    callback()


def wait(timeout=None):
    """Wait for a background build of the entry library (tests; never needed otherwise)."""
    builder = _builder
    if builder is not None:
        builder.join(timeout)


_builder = None
_pending = []


def _give_up(e):
    global _failed
    _failed = True
    warnings.warn(f"symgrad: its Python entry points could not be built ({type(e).__name__}: "
                  f"{str(e).splitlines()[0] if str(e) else ''}); scalar functions are called "
                  f"through cffi", RuntimeWarning, stacklevel=3)


def _source_and_key(cc):
    from symgrad.backends.c import compiler
    from symgrad.backends.c.cache import cache_key
    from symgrad import templates
    text = templates.render("python_entry.c.j2", version=VERSION, most=MOST)
    identity = compiler.compiler_identity(cc)
    flags = compiler.flags(CFLAGS, use_blas=False, include=include_dir(), cc=cc)
    return text, cache_key(text, identity, flags, VERSION), identity, flags


def _find(cache_dir, cc):
    """The entry library's path if the cache has it, else None."""
    from symgrad.backends.c import compiler
    cc = cc or compiler.find_compiler()
    return runtime_cache(cache_dir).lookup(_source_and_key(cc)[1])


def _build(cache_dir, cc):
    from symgrad.backends.c import compiler
    try:
        cc = cc or compiler.find_compiler()
        text, key, identity, flags = _source_and_key(cc)
        path = runtime_cache(cache_dir).build(
            key, text, lambda src, lib: compiler.compile_library(
                src, lib, CFLAGS, cc, use_blas=False, include=include_dir(), counted=False),
            {"symgrad_version": VERSION, "compiler": identity, "flags": list(flags),
             "functions": ["symgrad_python_entry"]})
        with _lock:
            _loaded(path)
            callbacks = list(_pending)
            _pending.clear()
    except Exception as e:
        with _lock:
            _pending.clear()
        _give_up(e)
        return
    for callback in callbacks:
        callback()


def _loaded(path):
    """Load the library at ``path`` (with ``_lock`` held)."""
    global _make
    make = ctypes.PyDLL(str(path)).symgrad_python_entry
    make.argtypes = [ctypes.py_object, ctypes.py_object, ctypes.c_int, ctypes.c_int,
                     ctypes.c_int, ctypes.c_int, ctypes.py_object, ctypes.c_char_p]
    make.restype = ctypes.py_object
    _make = make


def runtime_cache(cache_dir):
    """Where symgrad's own libraries (this one, the thread pool) are cached: ``.runtime`` in the
    cache directory, apart from the compiled functions' entries."""
    from symgrad.backends.c.cache import Cache, default_cache_dir
    root = default_cache_dir() if cache_dir is None else os.fspath(cache_dir)
    return Cache(os.path.join(root, ".runtime"))


def entry(ffi, fn, inputs, outputs, result, release_gil, keep, name):
    """A CPython function calling the cffi function ``fn`` (of ``inputs`` + ``outputs`` float64
    scalar pointers) on a tuple or list of values, returning ``result`` (VALUE, VALUES, GRADS
    or FIRST_GRAD); None when the entry library is not loaded. ``keep`` stays alive as long
    as the function (the library ``fn`` is in)."""
    if _make is None or inputs + outputs > MOST:
        return None
    address = int(ffi.cast("uintptr_t", fn))
    return _make(np.float64, address, inputs, outputs, result, int(release_gil), keep,
                 name.encode("utf-8", "replace")[:190])
