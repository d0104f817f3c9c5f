"""symgrad's thread pool: one small library per process, shared by every library symgrad builds.

``symgrad/templates/threads.c.j2`` is the pool (pthreads; how it sizes itself, waits for work
(0.1 ms watching, then asleep), and survives ``fork()`` is said there). ``runtime(cache_dir,
cc)`` builds it once into the compile cache (in ``.runtime``, beside the compiled functions'
entries), and loads it with ``RTLD_GLOBAL`` so that the libraries built afterwards with
``-DSYMGRAD_USE_THREADS`` find its ``symgrad_rt1_parallel_for`` when they are loaded. The first
library loaded serves the whole process, whichever cache directory later builds use: one pool,
never one per compiled function.

Why a pool of our own rather than OpenMP or OpenBLAS's: OpenMP's runtime does not survive
``fork()`` (Dask and multiprocessing fork), and its idle threads spin; OpenBLAS's pool is not a
public API. symgrad's OpenBLAS runs one thread (compiler.py), and the pool splits the big
products into single-threaded gemm calls instead, so all threads are the pool's.

Ahead-of-time libraries never use the pool (no ``-DSYMGRAD_USE_THREADS``): they stay
self-contained and run in their caller's thread.
"""
from __future__ import annotations

import ctypes
import threading
import warnings

from symgrad._version import __version__ as VERSION

ABI = "rt1"                   # in the pool's C names: a change of its interface renames them
CFLAGS = ("-O2",)         # compile_library adds -pthread, -fPIC, -shared

_lock = threading.Lock()
_library = None               # the loaded pool (ctypes.CDLL), once per process
_failed = False


def source():
    from symgrad import templates
    return templates.render("threads.c.j2", version=VERSION)


def runtime(cache_dir=None, cc=None):
    """The pool's library, built if needed and loaded for the whole process; None when it cannot
    be built or loaded (then libraries are built without ``-DSYMGRAD_USE_THREADS`` and run in
    their caller's thread, after one warning saying why)."""
    global _library, _failed
    if _library is not None or _failed:
        return _library
    with _lock:
        if _library is None and not _failed:
            try:
                _library = _load(cache_dir, cc)
            except Exception as e:       # CompileError, OSError: symgrad works on, one thread
                _failed = True
                warnings.warn(f"symgrad: its thread pool could not be built or loaded "
                              f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
                              f"); compiled functions run in one thread", RuntimeWarning,
                              stacklevel=2)
    return _library


def may_load():
    """Whether the pool is loaded, or may still be (being built, or not tried yet): a library
    is compiled for it before ``runtime`` says whether it loaded (see native._load_program)."""
    return not _failed


def prepare(cache_dir=None, cc=None):
    """Start making the pool's library ready (found in the cache, or built) in a background
    thread, for a build whose library may split work (``RenderedModule.parallel``): its compile
    then runs on another core while this one compiles the library, instead of before it
    (``may_load``). ``runtime``
    waits for it (the lock); a build that turns out not to need it loses nothing but that core's
    time, once per cache directory."""
    if _library is None and not _failed and not _lock.locked():
        threading.Thread(target=runtime, args=(cache_dir, cc), name="symgrad-pool-build",
                         daemon=True).start()


def _load(cache_dir, cc):
    from symgrad.backends.c import compiler, keys
    from symgrad.backends.c.cache import cache_key
    from symgrad.backends.c.pyentry import runtime_cache
    cc = cc or compiler.find_compiler()
    identity = compiler.compiler_identity(cc)
    flags = compiler.flags(CFLAGS, use_blas=False, cc=cc)
    # Keyed by symgrad's own files (the template among them), so a warm process renders
    # nothing: Jinja is loaded only to build.
    key = cache_key(f"thread pool {ABI} " + keys.code_fingerprint(), identity, flags, VERSION)
    cache = runtime_cache(cache_dir)
    path = cache.lookup(key) or cache.build(
        key, source(), lambda src, lib: compiler.compile_library(src, lib, CFLAGS, cc,
                                                             use_blas=False, counted=False),
        {"symgrad_version": VERSION, "compiler": identity, "flags": list(flags),
         "functions": [f"symgrad_{ABI}_parallel_for", f"symgrad_{ABI}_threads"]})
    return ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)


def count():
    """The number of threads symgrad's loops and products use (1 without the pool)."""
    lib = runtime()
    return lib.symgrad_rt1_threads() if lib is not None else 1
