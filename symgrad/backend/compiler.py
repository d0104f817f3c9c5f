"""Finding and running the C compiler.

``find_compiler`` honours $CC (which may carry arguments, e.g. ``"ccache gcc"``) and otherwise
looks for cc, gcc or clang on PATH; with none it raises a single CompileError saying what to
install and that ``SYMGRAD_BACKEND=interp`` runs without a compiler.

``compile_library`` turns one C file into a shared library next to it. Its command, stderr and
the C file's path go into ``CompileError`` on failure. ``invocations()`` counts compiler runs in
this process (the cache tests assert a warm cache makes none).
"""
from __future__ import annotations

import functools
import os
import platform
import shlex
import shutil
import subprocess

from ..errors import CompileError

# -fvect-cost-model=very-cheap: gcc 12's -O3 loop vectorizer (its "cheap" cost model) compiled
# a fused broadcast-and-select adjoint loop into garbage on AVX2 and AVX-512 alike (found by
# tests/test_fuzz.py; a standalone reproducer is in the closing note of the first session). The
# very-cheap model (-O2's) compiled every case right and measured as fast or faster here.
DEFAULT_CFLAGS = ("-O3", "-march=native", "-fvect-cost-model=very-cheap")
# Always passed: ISO C99 (which also keeps a*b+c unfused, as NumPy computes it), position-
# independent code for a shared library, and -fno-math-errno: generated code never reads errno,
# and without it gcc cannot vectorise loops over sqrt (an Adam step: 83 -> 32 us). Unlike
# -ffast-math it changes no result.
REQUIRED_CFLAGS = ("-std=c99", "-fno-math-errno", "-fPIC", "-shared")

_count = 0


def invocations():
    """How many times this process has run the C compiler."""
    return _count


_INSTALL_HINT = ("Install a C compiler (Debian/Ubuntu: apt-get install gcc; Fedora: dnf install "
                 "gcc; macOS: xcode-select --install) or point $CC at one; meanwhile "
                 "backend='interp' (or the environment variable SYMGRAD_BACKEND=interp) runs "
                 "everything in NumPy.")


def find_compiler():
    """The C compiler command: $CC, else cc, gcc or clang on PATH.

    $CC may carry arguments (``"ccache gcc"``). Raises one CompileError saying what to install
    and how to run without a compiler when there is none, or when $CC names no executable.
    """
    cc = os.environ.get("CC")
    if cc:
        program = shlex.split(cc)[0] if shlex.split(cc) else cc
        if shutil.which(program) is None:
            raise CompileError(f"$CC is set to {cc!r}, but {program!r} is not an executable "
                               f"program. Unset CC or set it to a C compiler. " + _INSTALL_HINT)
        return cc
    for name in ("cc", "gcc", "clang"):
        if shutil.which(name):
            return name
    raise CompileError("no C compiler found (looked for $CC, cc, gcc and clang on PATH): "
                       "symgrad's native backend needs one. " + _INSTALL_HINT)


@functools.lru_cache(maxsize=None)
def compiler_identity(cc):
    """A string naming the compiler command (with any arguments $CC carries, such as
    -fsanitize=...), its version and the machine: part of every cache key."""
    try:
        out = subprocess.run([*shlex.split(cc), "--version"], capture_output=True, text=True,
                             timeout=60)
        first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else cc
    except (OSError, subprocess.SubprocessError) as e:
        raise CompileError(f"cannot run the C compiler {cc!r}: {e}", command=[cc, "--version"])
    return f"{cc} | {first} | {platform.machine()} | {platform.system()}"


def flags(cflags=None):
    """The flags a compile uses: ``cflags`` (or the defaults) plus the required ones."""
    chosen = tuple(DEFAULT_CFLAGS if cflags is None else cflags)
    return chosen + REQUIRED_CFLAGS


def compile_library(source_path, library_path, cflags=None, cc=None):
    """Compile ``source_path`` into the shared library ``library_path``; raise CompileError."""
    global _count
    cc = cc or find_compiler()
    command = [*shlex.split(cc), *flags(cflags), "-o", str(library_path), str(source_path), "-lm"]
    _count += 1
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.SubprocessError) as e:
        raise CompileError(f"could not run the C compiler: {e}", command=command,
                           source_path=str(source_path)) from None
    if result.returncode != 0:
        raise CompileError(f"the C compiler failed (exit code {result.returncode})",
                           command=command, stderr=result.stderr, source_path=str(source_path))
    return result.stderr
