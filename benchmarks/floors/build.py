"""Build the hand-written C floors (floors.c) as a cffi extension module in API mode.

API mode compiles a CPython extension whose wrappers call the C functions directly (no libffi
dispatch), so it is the cheapest way cffi offers to call C from Python: the per-call floor.

    python benchmarks/floors/build.py      # builds into benchmarks/floors/_build/
"""
from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BUILD = HERE / "_build"
MODULE = "_symgrad_bench_floors"


def build(quiet=True):
    import cffi
    ffi = cffi.FFI()
    ffi.cdef((HERE / "floors.h").read_text())
    ffi.set_source(MODULE, '#include "floors.h"', sources=[str(HERE / "floors.c")],
                   include_dirs=[str(HERE)], extra_compile_args=["-O3", "-march=native"],
                   libraries=["m"])
    BUILD.mkdir(exist_ok=True)
    return ffi.compile(tmpdir=str(BUILD), verbose=not quiet)


def load():
    """The compiled module (building it first if needed): ``mod.ffi``, ``mod.lib``."""
    if str(BUILD) not in sys.path:
        sys.path.insert(0, str(BUILD))
    try:
        mod = importlib.import_module(MODULE)
        src = HERE / "floors.c"
        if os.path.getmtime(mod.__file__) < os.path.getmtime(src):
            raise ImportError("stale")
        return mod
    except ImportError:
        build()
        importlib.invalidate_caches()
        sys.modules.pop(MODULE, None)
        return importlib.import_module(MODULE)


if __name__ == "__main__":
    print(build(quiet=False))
