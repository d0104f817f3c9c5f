"""The generated elementwise table (``symgrad/core/primitives/elementwise_table.py``): what a first
build needs of the sympy math (C formats, derivative recipes), made ahead of time so that build
does not import sympy. sympy stays the source: the table must be exactly what the generator
prints from the sympy definitions today, and its derivatives must be the functions' slopes."""
import math

import numpy as np
import pytest

from symgrad.core.primitives import REGISTRY, elementwise_table
from symgrad.core.primitives import elementwise as ew
from symgrad.tools import elementwise_table as generator


def test_the_checked_in_table_is_what_sympy_gives_today():
    assert generator.TABLE.read_text() == generator.table_source(), (
        "symgrad/core/primitives/elementwise_table.py is stale: a definition in the elementwise "
        "tables changed; run `python -m symgrad.tools.elementwise_table` and commit the result")


SYMPY_DEFINED = sorted(n for n, p in REGISTRY.items() if p.sympy_math is not None)


def test_every_sympy_defined_primitive_is_in_the_table():
    for name in SYMPY_DEFINED:
        m = REGISTRY[name].sympy_math
        assert (m.text, m.deriv) in elementwise_table.DERIVATIVES, name
        for kind in ("float64", "float32"):
            assert (m.c or m.text, kind) in elementwise_table.C, (name, kind)


def _evaluate(recipe, env):
    """A recipe evaluated with NumPy, each node by its primitive's NumPy rule (``impl``)."""
    if recipe in (0, 1, -1):
        return float(recipe)
    kind = recipe[0]
    if kind == "sym":
        return env[recipe[1]]
    if kind == "num":
        return recipe[1]
    if kind == "const":
        return np.array(recipe[1], dtype=recipe[2])
    if kind == "op" and recipe[1] == "convert":
        return np.asarray(_evaluate(recipe[2], env)).astype(recipe[3])
    args = [np.asarray(_evaluate(a, env)) for a in recipe[2:]]
    return REGISTRY[recipe[1]].impl(*args)


POINTS = (0.3, 0.7, 1.6, 2.5, -0.45)


@pytest.mark.parametrize("name", SYMPY_DEFINED)
def test_the_tables_derivatives_are_the_slopes(name):
    # An oracle independent of sympy and of the IR: central differences of the primitive's own
    # NumPy rule, at points inside its domain and away from its kinks.
    prim = REGISTRY[name]
    m = prim.sympy_math
    recipes = elementwise_table.DERIVATIVES[m.text, m.deriv]
    checked = 0
    for x in POINTS:
        for y in (POINTS if len(recipes) == 2 else (None,)):
            if name == "polygamma":
                x = float(int(abs(x) * 2))          # the order: an int, not differentiated
            operands = [np.float64(x)] + ([] if y is None else [np.float64(y)])
            with np.errstate(all="ignore"):
                out = prim.impl(*operands)
                if not np.isfinite(out):
                    continue
                env = {"x": operands[0], "out": out}
                if y is not None:
                    env["y"] = operands[1]
                for i, r in enumerate(recipes):
                    if r is None or (name == "polygamma" and i == 0):
                        continue
                    slopes = []
                    for h in (1e-6, 2.5e-7):
                        h *= max(1.0, abs(float(operands[i])))
                        up, down = list(operands), list(operands)
                        up[i], down[i] = operands[i] + h, operands[i] - h
                        slopes.append((prim.impl(*up) - prim.impl(*down)) / (2 * h))
                    slope = slopes[1]
                    if not np.isfinite(slope) or abs(slopes[0] - slope) > 1e-3 * (1 + abs(slope)):
                        continue                    # a jump or a kink between the points
                    value = float(_evaluate(r, env))
                    assert value == pytest.approx(float(slope), rel=1e-5, abs=1e-6), (
                        name, i, x, y, r)
                    checked += 1
    # sign's derivative (DiracDelta) has no recipe: its own rules give no gradient.
    assert checked > 0 or all(r is None for r in recipes), f"no point of {name} was checked"


def test_expressions_the_table_lacks_still_come_from_sympy():
    # A primitive registered after the table was made (a user's, or one defined since): its
    # C and its derivative are made from sympy, as before.
    math_ = ew.SympyMath("x**3 + sin(y)")
    assert (math_.text, None) not in elementwise_table.DERIVATIVES
    assert math_.recipe(0) == ("op", "mul", ("num", 3.0), ("bind", "square", ("sym", "x")))
    assert math_.recipe(1) == ("bind", "cos", ("sym", "y"))
    assert ew.c_from_sympy("x**3 + sin(y)", ["a", "b"], "double") == "pow(a, 3) + sin(b)"
    assert ew.c_from_sympy("x**3 + sin(y)", ["a", "b"], "float") == "powf(a, 3) + sinf(b)"


def test_the_table_and_sympy_give_the_same_c():
    # The table's entries are sympy's own printing (the staleness test compares the whole file;
    # this names the path a build takes: c_from_sympy reads the table first).
    for (text, kind), fmt in list(elementwise_table.C.items())[::7]:
        assert ew.c_format(text, kind) == fmt
    assert math.isfinite(len(elementwise_table.C))


def _grid(arity):
    """Operands over the values that tell functions apart: signs, zeros, integers, fractions,
    large ones, infinities and NaN, every pair of them for two operands."""
    xs = np.array([-np.inf, -1e300, -3.0, -2.0, -1.0, -0.5, -0.0, 0.0, 0.25, 0.5, 1.0, 2.0, 3.0,
                   7.5, 1e300, np.inf, np.nan])
    if arity == 1:
        return [xs]
    a, b = np.meshgrid(xs, xs)
    return [a.ravel(), b.ravel()]


@pytest.mark.parametrize("text", sorted(elementwise_table.NUMPY))
def test_the_tables_numpy_functions_are_lambdifys(text):
    # Folding constants evaluates the NumPy function of an expression; the table keeps the source
    # lambdify writes, so a first build need not import sympy for it. Both must give the very same
    # numbers, bit for bit (NaN where NaN), in float64 and float32.
    math_ = ew.SympyMath(text)
    ours = ew._tabled_numpy_function(text)
    assert ours is not None
    theirs = ew.sympy_numpy_function(math_)
    for dtype in (np.float64, np.float32):
        with np.errstate(all="ignore"):       # 1e300 overflows float32 to inf, as meant
            operands = [x.astype(dtype) for x in _grid(len(math_.args))]
            got, want = np.asarray(ours(*operands)), np.asarray(theirs(*operands))
        assert got.dtype == want.dtype
        np.testing.assert_array_equal(got.view(np.uint8), want.view(np.uint8), err_msg=text)


def test_a_table_entry_naming_what_numpy_lacks_falls_back_to_lambdify(monkeypatch):
    # A NumPy without a name the table's source reads (another version): lambdify makes it.
    monkeypatch.setitem(elementwise_table.NUMPY, "frobnicate(x)",
                        "def _lambdifygenerated(x):\n    return frobnicate(x)\n")
    assert ew._tabled_numpy_function("frobnicate(x)") is None
    assert ew._tabled_numpy_function("x/y")(np.float64(1.0), np.float64(4.0)) == 0.25
    assert ew._tabled_numpy_function("no such expression") is None
