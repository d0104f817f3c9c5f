"""Generate ``symgrad/core/primitives/elementwise_table.py``: what a first build needs of the
elementwise tables' sympy math, made ahead of time so a process that compiles static-shape code
does not import sympy (about 0.25 s of CPU).

sympy stays the source of truth: this module prints the table from the sympy definitions (the
C format of every expression for each of the four C printers, and the recipe of every
derivative, ``elementwise.to_recipe``), and ``tests/test_elementwise_table.py`` regenerates it
and fails when the checked-in file differs. Whatever the table lacks (a primitive registered
later, a C type it has no printer for) is made from sympy as before.

    python -m symgrad.tools.elementwise_table          # rewrite the table
    python -m symgrad.tools.elementwise_table --check  # exit 1 if it is stale
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

TABLE = Path(__file__).resolve().parent.parent / "core" / "primitives" / "elementwise_table.py"
KINDS = ("float64", "float32", "double _Complex", "float _Complex")

HEADER = '''"""The elementwise tables' sympy math as a first build needs it: generated from the sympy
definitions by ``python -m symgrad.tools.elementwise_table``; do not edit (the test
``tests/test_elementwise_table.py`` fails when this file is stale).

``C``: (expression text, printer kind) -> C format string, operands as {0} and {1}.
``DERIVATIVES``: (expression text, stated derivative texts or None) -> one derivative per operand,
0, 1, -1 or a recipe (``elementwise.to_recipe``); None where it has no IR.
``NUMPY``: expression text -> the source of its NumPy function as sympy's lambdify writes it
(run in ``elementwise.numpy_namespace()``), where every name it reads is NumPy's or an extra.
"""
inf, nan = float("inf"), float("nan")
'''


def table_source():
    """The text of the generated module, from the registry's sympy definitions."""
    from symgrad.core.primitives import REGISTRY
    from symgrad.core.primitives import elementwise as ew

    maths = [p.sympy_math for p in REGISTRY.values() if p.sympy_math is not None]
    texts = sorted({t for m in maths for t in (m.text, m.c) if t is not None})
    c = {}
    for text in texts:
        for kind in KINDS:
            try:
                c[text, kind] = ew.c_format(text, kind)
            except Exception:   # noqa: BLE001  this printer cannot print it: not in the table,
                continue        # and the fallback (the same printer) raises the same error
    derivs = {(m.text, m.deriv): tuple(_recipe(ew, d) for d in m.derivs) for m in maths}
    numpy = {}
    for m in maths:
        source = _numpy_source(ew, m)
        if source is not None:
            numpy[m.text] = source
    lines = [HEADER, "C = {"]
    lines += [f"    {key!r}: {value!r}," for key, value in sorted(c.items())]
    lines += ["}", "", "DERIVATIVES = {"]
    lines += [f"    {key!r}: {value!r}," for key, value in
              sorted(derivs.items(), key=lambda kv: repr(kv[0]))]
    lines += ["}", "", "NUMPY = {"]
    lines += [f"    {key!r}: {value!r}," for key, value in sorted(numpy.items())]
    lines += ["}", ""]
    return "\n".join(lines)


def _numpy_source(ew, math):
    """lambdify's source of ``math``'s NumPy function, or None when it reads a name that is not
    the same object in ``ew.numpy_namespace()`` (a primitive whose own ``impl`` replaces it
    never calls it: those are left to lambdify, on first use)."""
    import inspect

    fn = ew.sympy_numpy_function(math)
    source = inspect.getsource(fn)
    namespace = ew.numpy_namespace()
    code = compile(source, "<lambdify>", "exec")
    if any(namespace.get(n, namespace) is not fn.__globals__.get(n)
           for n in ew.function_globals(code)):
        return None
    return source


def _recipe(ew, d):
    """The recipe of the derivative ``d``, or None where it has no IR (sign's DiracDelta, and
    polygamma's by its int order, which no rule asks for: the fallback raises if one does)."""
    try:
        return ew.derivative_recipe(d)
    except NotImplementedError:
        return None


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if the table is stale")
    args = parser.parse_args(argv)
    source = table_source()
    if args.check:
        stale = not TABLE.exists() or TABLE.read_text() != source
        print(f"{TABLE} is {'stale' if stale else 'up to date'}")
        return 1 if stale else 0
    TABLE.write_text(source)
    print(f"wrote {TABLE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
