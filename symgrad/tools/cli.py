"""The ``symgrad`` command: ``demo``, ``check FILE.py:FUNC`` and ``inspect FILE.py:FUNC``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from symgrad.core.types import parse_type
from symgrad.tools.userfiles import import_file


def load_function(target):
    """Import ``FILE.py:FUNC`` and return the function (a CompiledFunction's ``fn`` unwrapped)."""
    if ":" not in target:
        raise SystemExit(f"symgrad: expected FILE.py:FUNC, got {target!r}")
    path, name = target.rsplit(":", 1)
    path = Path(path)
    if not path.is_file():
        raise SystemExit(f"symgrad: no such file: {path}")
    fn = getattr(import_file(path), name, None)
    if fn is None:
        raise SystemExit(f"symgrad: {path} has no function {name!r}")
    return getattr(fn, "fn", fn)


def example_arguments(specs, seed=0):
    """Arrays for ``--arg NAME=TYPE`` (random) or ``--arg NAME=VALUE`` (a number)."""
    rng = np.random.default_rng(seed)
    sizes, args = {}, []
    for text in specs:
        name, _, value = text.partition("=")
        try:
            args.append((name, float(value)))
            continue
        except ValueError:
            pass
        dtype, dims = parse_type(value)
        shape = tuple(d if isinstance(d, int) else sizes.setdefault(d, 8) for d in dims)
        if dtype.startswith("f"):
            arr = rng.standard_normal(shape).astype(dtype)
        elif dtype == "bool":
            arr = rng.integers(0, 2, shape).astype(bool)
        else:
            arr = rng.integers(0, max(1, min(shape) if shape else 1), shape).astype(dtype)
        args.append((name, arr))
    return args


def cmd_demo(ns):
    from symgrad.tools.demo import run
    return 0 if run() else 1


def cmd_check(ns):
    from symgrad.api import CompiledFunction
    from symgrad.tools.check import check_grad
    from symgrad.errors import GradientCheckError
    fn = load_function(ns.target)
    args = [a for _, a in example_arguments(ns.arg, ns.seed)]
    argnums = tuple(ns.argnums) if ns.argnums else 0
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

    from symgrad.tools.inspect import bind_dims, report
    fn = load_function(ns.target)
    try:
        specs = bind_dims(ns.arg, ns.dim)
    except ValueError as e:
        raise SystemExit(f"symgrad inspect: {e}") from None
    args = [a for _, a in example_arguments(specs, ns.seed)]
    argnums = tuple(ns.argnums) if ns.argnums else 0
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
    from symgrad.tools.aot import build
    from symgrad.errors import CompileError
    log = (lambda *a: None) if ns.quiet else print
    try:
        build(ns.spec, ns.output, cflags=ns.cflags.split() if ns.cflags else None, log=log)
    except (FileNotFoundError, ValueError, CompileError) as e:
        print(f"symgrad build: {e}", file=sys.stderr)
        return 1
    return 0


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
    for name, helptext in (("check", "check a function's gradient"),
                           ("inspect", "show the IR, the adjoint IR and the generated C")):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("target", help="FILE.py:FUNC")
        p.add_argument("--arg", action="append", default=[], metavar="NAME=TYPE",
                       help="an argument: a type such as f64[3,4] (random values) or a number")
        p.add_argument("--argnums", type=int, nargs="*", help="arguments to differentiate")
        p.add_argument("--seed", type=int, default=0)
        if name == "check":
            p.add_argument("--rtol", type=float, default=1e-6)
            p.add_argument("--atol", type=float, default=1e-9)
            p.add_argument("--backend", default="c", choices=("c", "interp"))
        if name == "inspect":
            p.add_argument("--dim", action="append", default=[], metavar="NAME=SIZE",
                           help="the size of a named dimension such as N (default 8)")
            p.add_argument("--values", action="store_true",
                           help="show the value of every statement (use numbers as --arg)")
            p.add_argument("--format", default="text", choices=("text", "dot", "html"))
            p.add_argument("-o", "--output", metavar="FILE", help="write here, not to stdout")
    ns = parser.parse_args(argv)
    return {"demo": cmd_demo, "build": cmd_build, "check": cmd_check,
            "inspect": cmd_inspect}[ns.command](ns)


if __name__ == "__main__":
    sys.exit(main())
