"""Finding and running the C compiler.

``find_compiler`` honours $CC (which may carry arguments, e.g. ``"ccache gcc"``) and otherwise
looks for cc, gcc or clang on PATH; with none it raises a single CompileError saying what to
install and that ``SYMGRAD_BACKEND=interp`` runs without a compiler.

``compile_library`` turns one C file into a shared library next to it. Its command, stderr and
the C file's path go into ``CompileError`` on failure. ``invocations()`` counts compiler runs in
this process (the cache tests assert a warm cache makes none).

``blas`` finds scipy-openblas32. Where it is installed, JIT builds define ``SYMGRAD_USE_BLAS``
(large matrix products call its gemm) and call it through pointers that ``bind_blas`` sets
when the library is loaded, and it runs one thread per call (symgrad's thread pool splits the
products); where it is not, they build the loops alone. Either way the flags and the compiler
identity say so, so the two kinds of build never share a cache entry. Ahead-of-time builds pass
``use_blas=False``.
"""
from __future__ import annotations

import ctypes
import functools
import glob
import importlib.util
import os
import platform
import shlex
import shutil
import subprocess
from dataclasses import dataclass

from symgrad.errors import CompileError

# -fvect-cost-model=very-cheap: gcc 12's -O3 loop vectorizer (its "cheap" cost model) compiled
# a fused broadcast-and-select adjoint loop into garbage on AVX2 and AVX-512 alike (found by
# tests/test_fuzz.py; a standalone reproducer is in the closing note of the first session). The
# very-cheap model (-O2's) compiled every case right and measured as fast or faster here.
# -mno-avx512f: with AVX-512 enabled, gcc 12.2 stores the constant array {1, 1, 1, 0, 0, 0} as
# {1, 1, 1, 1, 0, 0} (one vpbroadcastq for the first four lanes), whether copied by a loop or by
# memcpy; this made a loop's gradient wrong (tests/test_reliability.py::test_avx512_constants).
# AVX2 compiles it right; on the AMD machines measured here AVX-512 was no faster.
# -O2, not -O3: a fuzzed program (the gradient of clip over a broadcast, tests/test_fuzz.py::
# test_regression_clip_of_broadcast_at_O3) came out wrong at -O3 with AVX or AVX2 whatever the
# cost model, and right at -O2, which in gcc 12 vectorises too (with the very-cheap model).
DEFAULT_CFLAGS = ("-O2", "-march=native", "-fvect-cost-model=very-cheap") + (
    ("-mno-avx512f",) if platform.machine().lower() in ("x86_64", "amd64") else ())
# Straight-line code, where every value is a scalar (W1, an unrolled simulation such as W6):
# -O1. -O3's vectorizer and unrolling find no loops there and only cost time. Measured on W6
# (200 unrolled Euler steps, ~9,000 lines of C): -O1 compiles in 1.4 s instead of 2.2 s, and
# its value and gradient run in 3.9 us instead of 5.7.
STRAIGHT_LINE_CFLAGS = ("-O1",) + DEFAULT_CFLAGS[1:]
# The flags above that only GCC knows, left out when the compiler is Clang (``is_clang``), which
# rejects them (its vectorizer has no such cost model).
GCC_ONLY_CFLAGS = ("-fvect-cost-model=very-cheap",)
# Put first for Clang (so flags of the caller's own come after them and win): -fno-unroll-loops.
# clang 14 at -O2 unrolled the 16-iteration loops of a 360-statement elementwise chain
# (tests/test_native.py, the long chain) for over 12 minutes; without unrolling, 0.8 s (and at
# -O1, 0.6 s). gcc's -O2 does not unroll loops either.
CLANG_CFLAGS = ("-fno-unroll-loops",)
# Always passed: ISO C99 (which also keeps a*b+c unfused, as NumPy computes it), position-
# independent code for a shared library, and -fno-math-errno: generated code never reads errno,
# and without it gcc cannot vectorise loops over sqrt (an Adam step: 83 -> 32 us). Unlike
# -ffast-math it changes no result. -pthread: the thread pool (threads.py).
# -Werror=implicit-function-declaration: a generated module declares the libc functions it
# calls itself (libc.py); one it missed must fail the build, not be called as returning int.
# -pipe: the compiler's stages pass the assembly through a pipe, not a temporary file (the
# first build of the 3-layer network of benchmarks/startup.py, gcc alone: 91.6 -> 89.8 ms,
# medians of 25 interleaved).
REQUIRED_CFLAGS = ("-std=c99", "-fno-math-errno", "-fPIC", "-shared", "-pthread",
                   "-Werror=implicit-function-declaration", "-pipe")

# A library calling symgrad's thread pool leaves its symbols to be found at load time, where the
# pool's library is already loaded (threads.py); Linux does so for shared libraries by default.
POOL_LINK_FLAGS = ("-undefined", "dynamic_lookup") if platform.system() == "Darwin" else ()

# The linker, where binutils' gold is installed (Linux): it links a generated library in about
# two thirds of the time of the default ld.bfd. Measured on the first build of a 3-layer network
# (benchmarks/startup.py), the link step alone, medians of 21: 24.3 ms with ld.bfd, 16.4 ms with
# gold (when JIT builds still linked scipy-openblas32, 27.5 and 14.5 ms). The library it writes
# is the same kind of ELF shared object; where gold is missing (newer binutils drop it, other
# systems) the default linker links.
def _linker_flags():
    if platform.system() == "Linux" and shutil.which("ld.gold"):
        return ("-fuse-ld=gold",)
    return ()


LINKER_FLAGS = _linker_flags()

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


@dataclass(frozen=True)
class Blas:
    """The CBLAS library JIT builds call: its name, version, directory, link name and path.

    A JIT library does not link it. With ``-DSYMGRAD_BLAS_AT_LOAD`` (templates/blas.h) each
    BLAS function it may call is a pointer it exports, which ``bind_blas`` points at this
    library's function when the library is loaded: the link then need not read the BLAS's
    25 MB library for its symbols (the 3-layer network's library: ~7 ms of a 90–105 ms build)."""
    name: str
    version: str
    lib_dir: str
    link_name: str
    path: str

    def compile_flags(self):
        return ("-DSYMGRAD_USE_BLAS", BLAS_AT_LOAD)


# The flag of a build whose library needs ``bind_blas`` when it is loaded.
BLAS_AT_LOAD = "-DSYMGRAD_BLAS_AT_LOAD"


# The functions a JIT library calls through pointers (templates/blas.h): each pointer's name,
# symgrad_blas_<name>, and scipy-openblas32's symbol.
BLAS_FUNCTIONS = {"dgemm": "scipy_cblas_dgemm", "sgemm": "scipy_cblas_sgemm"} | {
    name: f"scipy_LAPACKE_{name}" for name in
    "dsyevd ssyevd dgesdd sgesdd dgesv sgesv dgetrf sgetrf dpotrf spotrf dgeqrf sgeqrf dorgqr "
    "sorgqr".split()}


def bind_blas(library_path):
    """Point the BLAS pointers of the JIT library at ``library_path`` (one built with
    ``-DSYMGRAD_BLAS_AT_LOAD``) at scipy-openblas32's functions. Called when the library is
    loaded, before any of its functions runs; binding it again (a second program finding the
    same library) writes the same addresses."""
    addresses = _blas_addresses()
    handle = ctypes.CDLL(str(library_path))     # the library already loaded: the same handle
    for name, address in addresses.items():
        try:
            pointer = ctypes.c_void_p.in_dll(handle, f"symgrad_blas_{name}")
        except ValueError:          # a library without blas.h calls none of them
            continue
        pointer.value = address


@functools.lru_cache(maxsize=None)
def _blas_addresses():
    """``{name: address}`` of ``BLAS_FUNCTIONS`` in the BLAS's library; CompileError when it
    cannot be loaded (a library built with it should not have been found then: the BLAS is in
    the cache key)."""
    installed = blas()
    try:
        if installed is None:
            raise OSError("scipy-openblas32 is not installed")
        library = ctypes.CDLL(installed.path)
        return {name: ctypes.cast(getattr(library, symbol), ctypes.c_void_p).value
                for name, symbol in BLAS_FUNCTIONS.items()}
    except (OSError, AttributeError) as e:
        raise CompileError(f"a compiled function calls scipy-openblas32, which cannot be "
                           f"loaded ({e}); reinstall it (pip install scipy-openblas32) or clear "
                           f"symgrad's cache") from None


@functools.lru_cache(maxsize=None)
def blas():
    """scipy-openblas32 as a ``Blas``, or None when it is not installed (or broken).

    The package is located, not imported: importing it loads its library with RTLD_GLOBAL, and
    a few of its symbols share names with the 64-bit-index OpenBLAS that NumPy's wheels carry,
    so it could capture NumPy's calls. It is loaded here in its own scope instead, and our
    libraries call it through pointers (``bind_blas``). Its helpers get_lib_dir()/get_library()
    compute the same directory and name.
    """
    try:
        spec = importlib.util.find_spec("scipy_openblas32")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.origin:
        return None
    version = _distribution_version(os.path.dirname(spec.origin), "scipy_openblas32",
                                    "scipy-openblas32")
    if version is None:
        return None
    lib_dir = os.path.join(os.path.dirname(spec.origin), "lib")
    found = sorted(glob.glob(os.path.join(glob.escape(lib_dir), "libscipy_openblas*.so")) +
                   glob.glob(os.path.join(glob.escape(lib_dir), "libscipy_openblas*.dylib")))
    if not found:
        return None
    _one_thread(found[0])
    link_name = os.path.splitext(os.path.basename(found[0]))[0][len("lib"):]
    return Blas("scipy-openblas32", version, lib_dir, link_name, found[0])


def _distribution_version(package_dir, module, distribution):
    """The installed version of ``distribution``: read off the name of its ``.dist-info``
    folder beside ``package_dir`` (one directory listing; ``importlib.metadata`` costs tens of
    milliseconds to import and search), else asked of ``importlib.metadata``."""
    site = os.path.dirname(package_dir)
    found = glob.glob(os.path.join(glob.escape(site), f"{module}-*.dist-info"))
    if len(found) == 1:
        return os.path.basename(found[0])[len(module) + 1:-len(".dist-info")]
    import importlib.metadata
    try:
        return importlib.metadata.version(distribution)
    except (ValueError, importlib.metadata.PackageNotFoundError):
        return None


def _one_thread(path):
    """Make the BLAS run one thread in each call.

    symgrad's thread pool (threads.py) splits a big product into blocks, one single-threaded
    gemm call per thread; a threaded BLAS inside would start a second pool whose threads spin
    after each call (measured on 2 cores in session 2: NumPy's W3 step went from 8 to 30 ms
    with our OpenBLAS at 2 threads beside NumPy's). The library is loaded here by path
    (RTLD_LOCAL): it is the one instance our libraries call (``bind_blas``), so NumPy's own
    OpenBLAS keeps its settings."""
    try:
        ctypes.CDLL(path).scipy_openblas_set_num_threads(1)
    except (OSError, AttributeError):
        pass                        # a library we cannot load fails, clearly, in bind_blas


@functools.lru_cache(maxsize=None)
def compiler_version(cc):
    """The compiler's own first line of ``--version`` (for manifests and messages)."""
    try:
        out = subprocess.run([*shlex.split(cc), "--version"], capture_output=True, text=True,
                             timeout=60)
        first = (out.stdout or out.stderr).splitlines()[0] if (out.stdout or out.stderr) else cc
    except (OSError, subprocess.SubprocessError) as e:
        raise CompileError(f"cannot run the C compiler {cc!r}: {e}", command=[cc, "--version"])
    return f"{cc} | {first} | {platform.machine()} | {platform.system()}"


@functools.lru_cache(maxsize=None)
def _programs(cc):
    """The resolved path of each program the command ``cc`` runs (``ccache gcc``: both)."""
    words = [shutil.which(word) for word in shlex.split(cc) if not word.startswith("-")]
    return tuple(os.path.realpath(path) for path in words if path is not None)


@functools.lru_cache(maxsize=None)
def _executables(cc):
    """Each program the command ``cc`` runs, by resolved path, size and modification time: a
    new or upgraded compiler is a new file. A stat, where running ``cc --version`` costs a
    process start (milliseconds, more on a loaded machine) in every process that loads a cached
    library."""
    found = []
    for real in _programs(cc):
        try:
            st = os.stat(real)
        except OSError:
            continue
        found.append(f"{real}:{st.st_size}:{st.st_mtime_ns}")
    return " ".join(found)


@functools.lru_cache(maxsize=None)
def is_clang(cc):
    """Whether the command ``cc`` runs Clang: a program of it is named clang (``clang-14``, or
    ``cc`` linked to it), or it is macOS's ``/usr/bin/cc`` or ``gcc``, which are Clang. Read off
    the names, not ``cc --version``: the flags are part of every cache key, and a first call
    whose library is in the cache starts no process."""
    for real in _programs(cc):
        name = os.path.basename(real)
        if "clang" in name:
            return True
        if (platform.system() == "Darwin" and os.path.dirname(real) == "/usr/bin"
                and name in ("cc", "gcc", "c99")):
            return True
    return False


def compiler_identity(cc):
    """A string naming the compiler command (with any arguments $CC carries, such as
    -fsanitize=...), the programs it runs (``_executables``), the machine and the BLAS a JIT
    build links (or "no BLAS"): part of every cache key, so a new compiler or BLAS version is a
    new entry."""
    linked = blas()
    return (f"{cc} | {_executables(cc)} | {platform.machine()} | {platform.system()} | "
            + (f"{linked.name} {linked.version}" if linked else "no BLAS"))


def _flag_groups(cflags, use_blas, threads=False, include=None, cc=None):
    """(compile flags, link flags): ``cflags`` (or the defaults; for Clang, after
    ``CLANG_CFLAGS`` and without ``GCC_ONLY_CFLAGS``) and the required ones; with ``use_blas``,
    when scipy-openblas32 is installed, those that compile its calls (``Blas``); with
    ``threads``, those that make the library call symgrad's thread pool (threads.py)."""
    linked = blas() if use_blas else None
    compile_flags = tuple(DEFAULT_CFLAGS if cflags is None else cflags)
    if is_clang(cc or find_compiler()):
        compile_flags = CLANG_CFLAGS + tuple(f for f in compile_flags if f not in GCC_ONLY_CFLAGS)
    compile_flags += REQUIRED_CFLAGS
    link_flags = LINKER_FLAGS
    if include:                 # CPython's headers, for pyentry.py's entry points
        compile_flags += (f"-I{include}",)
    if threads:
        compile_flags += ("-DSYMGRAD_USE_THREADS",)
        link_flags += POOL_LINK_FLAGS
    if linked is None:
        return compile_flags, link_flags
    return compile_flags + linked.compile_flags(), link_flags


def calls_blas(source):
    """Whether the C ``source`` may call the BLAS: whether it names ``SYMGRAD_USE_BLAS``, the
    define under which every BLAS or LAPACK call is written. A JIT build of a source that does
    not is compiled without the BLAS's flags, which changes none of its code, and its library is
    loaded without ``bind_blas``."""
    return "SYMGRAD_USE_BLAS" in source


def flags(cflags=None, use_blas=True, threads=False, include=None, cc=None):
    """The flags a compile by ``cc`` (default ``find_compiler()``) uses (see ``_flag_groups``):
    part of the cache key."""
    compile_flags, link_flags = _flag_groups(cflags, use_blas, threads, include, cc)
    return compile_flags + link_flags


def compile_library(source_path, library_path, cflags=None, cc=None, use_blas=True,
                    threads=False, include=None, counted=True, started=None):
    """Compile ``source_path`` into the shared library ``library_path``; raise CompileError.

    With ``use_blas`` (JIT builds) the library calls scipy-openblas32 when it is installed,
    through pointers ``bind_blas`` sets; without (ahead-of-time builds), it needs only libc and
    libm. With ``threads`` (JIT builds,
    once threads.runtime() is loaded) its big loops and products use symgrad's thread pool.
    ``counted``: the build counts in ``invocations()`` (symgrad's own runtime libraries, built
    once per cache, do not). ``started()``, if given, is called once the compiler is running
    (or could not be started): work meant for the other core waits for it (native.py)."""
    global _count
    cc = cc or find_compiler()
    compile_flags, link_flags = _flag_groups(cflags, use_blas, threads, include, cc)
    # Libraries go after the source: a linker with --as-needed drops one nothing needed yet.
    command = [*shlex.split(cc), *compile_flags, "-o", str(library_path), str(source_path),
               *link_flags, "-lm"]
    _count += counted
    try:
        try:
            process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True)
        finally:
            if started is not None:
                started()
        with process:
            try:
                _, stderr = process.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                process.kill()
                process.communicate()
                raise
    except (OSError, subprocess.SubprocessError) as e:
        raise CompileError(f"could not run the C compiler: {e}", command=command,
                           source_path=str(source_path)) from None
    if process.returncode != 0:
        raise CompileError(f"the C compiler failed (exit code {process.returncode})",
                           command=command, stderr=stderr, source_path=str(source_path))
    return stderr
