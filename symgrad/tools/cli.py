"""The ``symgrad`` command: ``demo``, ``check FILE.py:FUNC``, ``inspect FILE.py:FUNC``,
``build SPEC.py`` and ``cache``.

A bad command line (a missing or unknown ``--arg``, a malformed type, an ``--argnums`` out of
range, shapes the function cannot take) is one line on stderr, ``symgrad COMMAND: ...``, and
exit code 2; a gradient mismatch in ``check`` is exit code 1.
"""
from __future__ import annotations

import argparse
import ast
import inspect as pyinspect
import sys
from pathlib import Path

import numpy as np

from symgrad import backends
from symgrad.api import CompiledFunction, check_grad
from symgrad.errors import CompileError, GradientCheckError
from symgrad.tools import demo
from symgrad.tools.aot import build
from symgrad.tools.inspect import bind_dims, report
from symgrad.core.types import parse_type
from symgrad.tools.userfiles import import_file


class UsageError(Exception):
    """A bad command line: reported as one line, ``symgrad COMMAND: message``, exit code 2."""


def load_function(target):
    """Import ``FILE.py:FUNC`` and return the function (a CompiledFunction's ``fn`` unwrapped).
    Raises UsageError for a malformed target, a missing file or function."""
    if ":" not in target:
        raise UsageError(f"expected FILE.py:FUNC, got {target!r}")
    path, name = target.rsplit(":", 1)
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"no such file: {path}")
    fn = getattr(import_file(path), name, None)
    if fn is None:
        raise UsageError(f"{path} has no function {name!r}")
    if not callable(fn):
        raise UsageError(f"{path}:{name} is not a function")
    return getattr(fn, "fn", fn)


def parse_arg(text):
    """``(name, value)`` of one ``--arg NAME=VALUE``.

    VALUE is a type (``f64[3,4]``, ``i64[N]``: random data drawn later), a number (``1e-3``), a
    list (``[0, 2, 1]``, nested for an array) or ``@file.npy`` (an array saved with
    ``numpy.save``). Numbers are floats; a list of ints is an int64 array. Raises UsageError
    saying what is wrong.
    """
    name, eq, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not eq or not name.isidentifier() or not value:
        raise UsageError(f"--arg {text!r}: expected NAME=VALUE, e.g. W=f64[3,4], reg=1e-3, "
                         f"y=[0,2,1] or X=@data.npy")
    if value.startswith("@"):
        path = Path(value[1:])
        try:
            return name, np.load(path, allow_pickle=False)
        except (OSError, ValueError) as e:
            raise UsageError(f"--arg {name}: cannot read {path} as a .npy array ({e})") from None
    if value[0] in "[(" or value[0] in "+-.0123456789":
        try:
            data = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            raise UsageError(f"--arg {text!r}: {value!r} is not a number or a list of "
                             f"numbers") from None
        if isinstance(data, (int, float)) and not isinstance(data, bool):
            return name, float(data)
        try:
            arr = np.asarray(data)
        except ValueError as e:
            raise UsageError(f"--arg {name}: {value!r} is not a rectangular array ({e})") \
                from None
        if arr.dtype.kind not in "biuf":
            raise UsageError(f"--arg {name}: {value!r} is not a number or a list of numbers")
        return name, arr
    try:
        return name, parse_type(value)
    except ValueError as e:
        raise UsageError(f"--arg {name}: {e}") from None


def bind_parameters(fn, specs):
    """The ``--arg`` values in the order of ``fn``'s parameters, matched by name. Raises
    UsageError naming an unknown, repeated or missing argument (a parameter with a default may
    be left out: its default is used)."""
    given = {}
    for text in specs:
        name, value = parse_arg(text)
        if name in given:
            raise UsageError(f"--arg {name} is given twice")
        given[name] = value
    try:
        params = list(pyinspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return list(given.values())              # no signature to match: in the order given
    if any(p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) for p in params):
        return list(given.values())
    names = [p.name for p in params]
    fname = getattr(fn, "__name__", "the function")
    unknown = [n for n in given if n not in names]
    if unknown:
        raise UsageError(f"--arg {unknown[0]}: {fname} has no parameter {unknown[0]!r}; its "
                         f"parameters are {', '.join(names)}")
    missing = [p.name for p in params if p.name not in given and p.default is p.empty]
    if missing:
        raise UsageError(f"missing --arg for {', '.join(missing)}: {fname} takes "
                         f"{', '.join(names)}, give each as --arg NAME=TYPE or NAME=VALUE")
    return [given[p.name] if p.name in given else p.default for p in params]


def example_arguments(fn, values, seed=0):
    """Arrays for the bound ``--arg`` values: given numbers and arrays as they are, random data
    for a type ``(dtype, dims)``: floats standard normal, bools fair coins, and integers valid
    for how ``fn`` uses them. An integer argument that indexes an axis (``a[snp.arange(n), y]``)
    is drawn within that axis (the trace knows which); any other within its smallest dimension.
    Named dimensions (``N``) are 8."""
    rng = np.random.default_rng(seed)
    sizes, args, drawn = {}, [], []
    for value in values:
        if not (isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], tuple)):
            args.append(value)
            continue
        dtype, dims = value
        shape = tuple(d if isinstance(d, int) else sizes.setdefault(d, 8) for d in dims)
        if dtype.startswith("f") or dtype.startswith("c"):
            arr = rng.standard_normal(shape).astype(dtype)
        elif dtype == "bool":
            arr = rng.integers(0, 2, shape).astype(bool)
        else:
            arr = np.zeros(shape, dtype)           # drawn once the trace says what it indexes
            drawn.append(len(args))
        args.append(arr)
    if drawn:
        bounds = index_bounds(fn, args)
        for k in drawn:
            shape = args[k].shape
            high = bounds.get(k, max(1, min(shape) if shape else 1))
            args[k] = rng.integers(0, high, shape).astype(args[k].dtype)
    return args


def index_bounds(fn, args):
    """``{argument position: bound}`` for the integer arguments ``fn`` uses as indices: the
    smallest size of the axes each one indexes in the traced graph (the native library checks
    the same ranges before a call)."""
    from symgrad.api import CompiledFunction
    from symgrad.backends.c.native import index_checks
    spec, _ = CompiledFunction(fn, backend="interp").specialize(*args)
    bounds = {}
    for position, _, size, _ in index_checks(spec.graph):
        if isinstance(size, int):
            k = spec.traced[position]
            bounds[k] = min(bounds.get(k, size), size)
    return bounds


def _argnums(ns, nargs):
    if not ns.argnums:
        return 0
    for k in ns.argnums:
        if not 0 <= k < nargs:
            raise UsageError(f"--argnums {k}: the function has {nargs} parameter(s), numbered "
                             f"0 to {nargs - 1}")
    return tuple(ns.argnums)


def cmd_demo(ns):
    return 0 if demo.run() else 1


def cmd_check(ns):
    fn = load_function(ns.target)
    args = example_arguments(fn, bind_parameters(fn, ns.arg), ns.seed)
    argnums = _argnums(ns, len(args))
    try:
        report = check_grad(CompiledFunction(fn, argnums=argnums, backend=ns.backend), *args,
                            argnums=argnums, rtol=ns.rtol, atol=ns.atol)
    except GradientCheckError as e:
        print(e.report)
        return 1
    print(report)
    return 0


def cmd_inspect(ns):
    """Print (or write to ``-o``) the IR, adjoint, C and costs of FILE.py:FUNC; see inspect.py."""
    import warnings

    fn = load_function(ns.target)
    try:
        specs = bind_dims(ns.arg, ns.dim)
    except ValueError as e:
        raise UsageError(str(e)) from None
    args = example_arguments(fn, bind_parameters(fn, specs), ns.seed)
    argnums = _argnums(ns, len(args))
    rep = report(fn, *args, argnums=argnums, values=ns.values)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        text = {"text": rep.text, "dot": rep.dot, "html": rep.html}[ns.format]()
    for w in caught:
        print(w.message, file=sys.stderr)
    if ns.output:
        Path(ns.output).write_text(text, encoding="utf-8")
        print(f"symgrad inspect: wrote {ns.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def cmd_build(ns):
    log = (lambda *a: None) if ns.quiet else print
    try:
        build(ns.spec, ns.output, cflags=ns.cflags.split() if ns.cflags else None, log=log)
    except (FileNotFoundError, ValueError, CompileError) as e:
        print(f"symgrad build: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_cache(ns):
    """Where the on-disk cache of compiled libraries is, and its size; ``--clear`` empties it."""
    import os

    from symgrad.backends.c import cache
    source = ("$SYMGRAD_CACHE_DIR" if os.environ.get("SYMGRAD_CACHE_DIR") else
              "$XDG_CACHE_HOME/symgrad" if os.environ.get("XDG_CACHE_HOME") else
              "the default, ~/.cache/symgrad")
    if ns.clear:
        root, entries, nbytes = cache.clear()
        print(f"symgrad cache: {root} ({source}): removed {entries} compiled "
              f"entr{'y' if entries == 1 else 'ies'}, {_size(nbytes)}")
    else:
        root, entries, nbytes = cache.usage()
        state = "" if root.is_dir() else " (not created yet)"
        print(f"symgrad cache: {root} ({source}){state}\n  {entries} compiled "
              f"entr{'y' if entries == 1 else 'ies'}, {_size(nbytes)}")
    return 0


def _size(nbytes):
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024


def main(argv=None):
    parser = argparse.ArgumentParser(prog="symgrad", description="symbolic-to-C automatic "
                                     "differentiation for NumPy-style Python")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("demo", help="run the lecture examples and the softmax classifier")
    p = sub.add_parser("build", help="compile the exports of SPEC.py into a C library, a "
                       "header and a Python loader")
    p.add_argument("spec", help="SPEC.py, which calls symgrad.export(fn, types...)")
    p.add_argument("-o", "--output", default="build", help="output directory (default: build/)")
    p.add_argument("--cflags", default=None,
                   help="compiler flags instead of the portable default -O2, e.g. "
                   "'-O2 -march=native'")
    p.add_argument("--quiet", action="store_true", help="print nothing on success")
    p = sub.add_parser("cache", help="show where the cache of compiled libraries is and its "
                       "size (set SYMGRAD_CACHE_DIR to move it)")
    p.add_argument("--clear", action="store_true", help="delete every compiled entry")
    for name, helptext in (("check", "check a function's gradient"),
                           ("inspect", "show the IR, the adjoint IR and the generated C")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("target", help="FILE.py:FUNC")
        p.add_argument("--arg", action="append", default=[], metavar="NAME=VALUE",
                       help="an argument by name: a type such as f64[3,4] or i64[N] (random "
                       "data; integers valid as the indices the function uses them as), a "
                       "number, a list such as [0,2,1], or @file.npy")
        p.add_argument("--argnums", type=int, nargs="*", help="arguments to differentiate")
        p.add_argument("--seed", type=int, default=0)
        if name == "check":
            p.add_argument("--rtol", type=float, default=1e-6)
            p.add_argument("--atol", type=float, default=1e-9)
            p.add_argument("--backend", default="c", choices=backends.NAMES)
        if name == "inspect":
            p.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE",
                           help="the size of a named dimension such as N (default 8)")
            p.add_argument("--values", action="store_true",
                           help="show the value of every statement (use numbers as --arg)")
            p.add_argument("--format", default="text", choices=("text", "dot", "html"))
            p.add_argument("-o", "--output", metavar="FILE", help="write here, not to stdout")
    ns = parser.parse_args(argv)
    command = {"demo": cmd_demo, "build": cmd_build, "check": cmd_check,
               "inspect": cmd_inspect, "cache": cmd_cache}[ns.command]
    from symgrad.errors import CompileError, SymgradError
    try:
        return command(ns)
    except UsageError as e:
        print(f"symgrad {ns.command}: {e}", file=sys.stderr)
        return 2
    except CompileError:
        raise
    except (SymgradError, ValueError, TypeError, IndexError) as e:
        # The arguments do not fit the function (shapes, dtypes, argnums, index ranges): the
        # command line is wrong, and the message says how.
        if ns.command not in ("check", "inspect"):
            raise
        print(f"symgrad {ns.command}: {type(e).__name__}: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
