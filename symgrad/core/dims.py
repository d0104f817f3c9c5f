"""Dimensions: an int, or a sympy expression of named run-time sizes (``N``, ``2*N``).

A signature such as ``{"X": "f64[N,3073]"}`` makes ``N`` a run-time size: the graph is traced
once with the symbol ``N`` in its shapes, the C code takes ``int64_t N`` and loops over it, and
the interpreter binds ``N`` from the arrays it is given. Everything that computes with shapes goes
through these helpers, so plain ints stay plain ints.
"""
from __future__ import annotations

import math

from symgrad.core.symbolic import is_symbolic, sympy as _sympy


def symbol(name):
    """The run-time size called ``name`` (a non-negative integer)."""
    sp = _sympy()
    return sp.Symbol(name, integer=True, nonnegative=True)


_VALUE_PREFIX = "symgrad_value_"


def value_of(name):
    """The value of the int argument ``name`` as a size (a loop's run-time trip count). Unlike
    a named size it may be negative; it is bound from the argument's value, not a shape."""
    sp = _sympy()
    return sp.Symbol(_VALUE_PREFIX + name, integer=True)


def value_source(sym):
    """The argument name behind a ``value_of`` symbol, else None."""
    return sym.name[len(_VALUE_PREFIX):] if sym.name.startswith(_VALUE_PREFIX) else None


_COUNT_PREFIX = "symgrad_count_"


def count_of(name):
    """The trip count of the ``while`` loop called ``name``: a size bound at run time by the
    statement that counts the loop's steps (``while_count``), not by an input. Sizes with it
    (the loop's tape) are allocated once it is known."""
    sp = _sympy()
    return sp.Symbol(_COUNT_PREFIX + name, integer=True, nonnegative=True)


def is_count(sym):
    """Whether ``sym`` is a ``count_of`` size."""
    return sym.name.startswith(_COUNT_PREFIX)


def count_symbols(shapes_or_dims):
    """The ``count_of`` sizes in an expression or a list of shapes."""
    if isinstance(shapes_or_dims, (list, tuple)):
        return [s for s in free_symbols(shapes_or_dims) if is_count(s)]
    if isinstance(shapes_or_dims, int):
        return []
    return sorted((s for s in _sympy().sympify(shapes_or_dims).free_symbols if is_count(s)),
                  key=lambda s: s.name)


def value_symbols(shapes):
    """The ``value_of`` symbols in ``shapes``."""
    return [s for s in free_symbols(shapes) if value_source(s) is not None]


def graph_symbols(graph):
    """Every run-time size a graph's statements use: in their types and attributes, and in the
    graphs of loop bodies they hold."""
    found = set(free_symbols([v.shape for v in graph.inputs]))

    def visit(value):
        if is_symbolic(value):
            found.update(value.free_symbols)
        elif isinstance(value, tuple):
            for x in value:
                visit(x)
        elif hasattr(value, "graph") and hasattr(value.graph, "nodes"):
            found.update(graph_symbols(value.graph))

    for n in graph.nodes:
        found.update(free_symbols([n.out.shape]))
        for a in n.attrs.values():
            visit(a)
    return sorted(found, key=lambda s: s.name)


def is_static(d):
    return isinstance(d, int)


def static_shape(shape):
    return all(isinstance(d, int) for d in shape)


def equal(a, b):
    """Whether two dimensions are certainly equal."""
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    sp = _sympy()
    return sp.simplify(sp.sympify(a) - sp.sympify(b)) == 0


def same_shape(a, b):
    """Whether two shapes are certainly equal, axis by axis (``2*(N + 1)`` is ``2*N + 2``); a
    structural ``a != b`` would reject equal sizes spelled differently."""
    return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b))


def normalize(d):
    """An int where the expression is a number; otherwise a simplified sympy expression."""
    if isinstance(d, int):
        return d
    d = _sympy().sympify(d)
    return int(d) if d.is_Integer else d


def prod(shape):
    """The number of elements (an int, or an expression)."""
    return normalize(math.prod(shape, start=1))


def broadcast(*shapes):
    """NumPy broadcasting of shapes that may hold symbols; ValueError when they do not fit."""
    ndim = max((len(s) for s in shapes), default=0)
    out = []
    for axis in range(ndim):
        dim = 1
        for s in shapes:
            k = axis - (ndim - len(s))
            if k < 0:
                continue
            d = s[k]
            if isinstance(d, int) and d == 1:
                continue
            if isinstance(dim, int) and dim == 1:
                dim = d
            elif not equal(dim, d):
                raise ValueError(f"shapes {' and '.join(str(tuple(s)) for s in shapes)} do not "
                                 f"broadcast together")
        out.append(dim)
    return tuple(out)


def free_symbols(shapes):
    """The run-time sizes named in the shapes, sorted by name."""
    names = set()
    for shape in shapes:
        for d in shape:
            if not isinstance(d, int):
                names |= _sympy().sympify(d).free_symbols
    return sorted(names, key=lambda s: s.name)


def substitute(d, bindings):
    """The int value of dimension ``d`` once the run-time sizes in ``bindings`` are known."""
    if isinstance(d, int):
        return d
    return int(_sympy().sympify(d).subs(bindings))


def _functions():
    """The sympy functions sizes use (``size_functions``), imported with sympy on first use."""
    from symgrad.core import size_functions
    return size_functions


def at_least_zero(d):
    """``max(d, 0)`` of a dimension."""
    if isinstance(d, int):
        return max(d, 0)
    return normalize(_functions().AtLeastZero(_sympy().sympify(d)))


def ceil_div(d, k):
    """``ceil(d / k)`` of a dimension and a positive int ``k``."""
    if isinstance(d, int):
        return -(-d // k)
    return normalize(_functions().CeilDiv(_sympy().sympify(d), k))


def align_up(d, alignment):
    """``d`` rounded up to a multiple of ``alignment`` (an int)."""
    if isinstance(d, int):
        return -(-d // alignment) * alignment
    return normalize(alignment * _functions().CeilDiv(_sympy().sympify(d), alignment))


# --- printing sizes: integer arithmetic, in C and in Python ------------------------------------
# A size is an integer polynomial (with CeilDiv/AtLeastZero) in the run-time sizes. sympy's own
# printers would spell N**2 as pow(N, 2) -- a double, which C refuses to add to a pointer and
# which rounds past 2**53 -- and N*(N + 1)/2 as (1.0/2.0)*N*(N + 1). Every place that prints a
# size (loops, workspace offsets, kernels, the native caller, the AOT loader) goes through
# ``c_expr`` / ``py_expr``, which print only integer operations and refuse anything else.

_INT32_MAX = 2**31 - 1


class SizeExpressionError(ValueError):
    """A size expression that has no exact integer form (a symgrad bug if it ever shows)."""


def _int_code(e, py):
    """``e`` (a sympy integer expression) as integer arithmetic: Python if ``py`` else C."""
    sp = _sympy()
    CeilDiv, AtLeastZero = _functions().CeilDiv, _functions().AtLeastZero
    e = sp.sympify(e)       # a Python int too
    if any(not r.is_Integer for r in e.atoms(sp.Rational)):
        # Rational coefficients (N**2/2 + N/2): one exact division of an integer numerator.
        num, den = sp.fraction(sp.together(e))
        if not den.is_Integer:
            raise SizeExpressionError(f"the size {e} is not an integer polynomial")
        if den != 1:
            return f"({_int_code(sp.expand(num), py)}) {'//' if py else '/'} {int(den)}"

    def atom(x):
        """x as an operand of * or unary minus: parenthesized unless it is a name or number."""
        text = _int_code(x, py)
        return text if (x.is_Symbol or (x.is_Integer and x >= 0)) else f"({text})"

    if e.is_Integer:
        v = int(e)
        text = str(v) if py or abs(v) <= _INT32_MAX else f"INT64_C({v})"
        return f"({text})" if v < 0 else text
    if e.is_Symbol:
        return e.name
    if e.is_Add:
        terms = sorted(e.args, key=sp.default_sort_key)
        plus = [t for t in terms if not t.could_extract_minus_sign()]
        minus = [-t for t in terms if t.could_extract_minus_sign()]
        text = " + ".join(_int_code(t, py) for t in plus) if plus else "0"
        return text + "".join(f" - {atom(t)}" for t in minus)
    if e.is_Mul:
        coeff, factors = e.as_coeff_mul()
        parts = [atom(f) for f in factors]
        if coeff == -1:
            return f"-{'*'.join(parts)}" if len(parts) == 1 else f"-({'*'.join(parts)})"
        return "*".join(([atom(coeff)] if coeff != 1 else []) + parts)
    if e.is_Pow and e.exp.is_Integer and e.exp > 0:
        return "*".join([atom(e.base)] * int(e.exp))
    if isinstance(e, CeilDiv):
        a, b = (atom(x) for x in e.args)
        return f"(-(-{a} // {b}))" if py else f"(({a} + {b} - 1) / {b})"
    if isinstance(e, AtLeastZero):
        a = atom(e.args[0])
        return f"max({a}, 0)" if py else f"({a} > 0 ? {a} : 0)"
    raise SizeExpressionError(f"cannot print the size {e} as integer arithmetic")


def c_expr(d):
    """A dimension as a C expression in int64_t arithmetic (``N*N``, never ``pow(N, 2)``);
    parenthesized unless it is a name or a non-negative number."""
    if isinstance(d, int):
        return str(d) if 0 <= d <= _INT32_MAX else f"({_int_code(d, False)})"
    d = _sympy().sympify(d)
    text = _int_code(d, False)
    return text if d.is_Symbol or (d.is_Integer and d >= 0) else f"({text})"


def py_expr(d):
    """A dimension as a Python expression in exact int arithmetic, of the size names."""
    if isinstance(d, int):
        return str(d)
    return _int_code(d, True)


def polynomial(d):
    """``d`` as plain data a program without sympy can evaluate: an int, or the terms of a
    polynomial of run-time sizes with integer coefficients, ``[[coefficient, {name: power}],
    ...]`` (``2*N*M + N`` is ``[[2, {"M": 1, "N": 1}], [1, {"N": 1}]]``). Raises ValueError for
    anything else (a trip count ``max(n, 0)``, a rounded-up quotient)."""
    if isinstance(d, int):
        return d
    sp = _sympy()
    expr = sp.expand(sp.sympify(d))
    symbols = sorted(expr.free_symbols, key=lambda s: s.name)
    try:
        poly = sp.Poly(expr, *symbols)
    except sp.PolynomialError:
        poly = None
    if poly is None or poly.domain != sp.ZZ:
        raise ValueError(f"the dimension {d} is not a polynomial of run-time sizes with "
                         f"integer coefficients")
    return [[int(c), {s.name: int(k) for s, k in zip(symbols, powers) if k}]
            for powers, c in poly.terms()]


def evaluator(dims_, symbols):
    """``f(values) -> [int per dimension]``: the dimensions ``dims_`` (ints or expressions of
    ``symbols``) evaluated at ``values``, one per symbol in order. Compiled once from
    ``py_expr`` (exact integers), so a call costs microseconds where ``substitute`` costs a
    sympy ``subs``."""
    dims_ = list(dims_)
    if all(isinstance(d, int) for d in dims_):
        return lambda values: dims_
    names = [s.name for s in symbols]
    source = f"lambda {', '.join(names)}: [{', '.join(py_expr(d) for d in dims_)}]"
    f = eval(source, {"__builtins__": {}, "max": max})
    return lambda values: f(*[int(v) for v in values])


def bind(declared, actual, names=None):
    """The values of the run-time sizes, read off ``actual`` shapes against ``declared`` ones.

    Raises ValueError naming the argument when a size disagrees with another use of its name or
    a fixed dimension differs.
    """
    bindings = {}
    for k, (want, got) in enumerate(zip(declared, actual)):
        label = names[k] if names else f"argument {k}"
        if len(want) != len(got):
            raise ValueError(f"{label} has shape {tuple(got)}, expected {len(want)} dimensions "
                             f"{_fmt(want)}")
        for w, g in zip(want, got):
            if isinstance(w, int):
                if w != g:
                    raise ValueError(f"{label} has shape {tuple(got)}, expected {_fmt(want)}")
            elif w in bindings and bindings[w] != g:
                raise ValueError(f"{label} has shape {tuple(got)}: {w} is {g} here but "
                                 f"{bindings[w]} in an earlier argument")
            else:
                bindings[w] = g
    return bindings


def _fmt(shape):
    return "[" + ",".join(str(d) for d in shape) + "]"


def substitute_attrs(attrs, bindings):
    """Attributes with every run-time size replaced by its value."""
    def sub(v):
        if isinstance(v, tuple):
            return tuple(sub(x) for x in v)
        if is_symbolic(v):
            return int(v.subs(bindings))
        if hasattr(v, "substitute"):         # a loop body (loops.Body)
            return v.substitute(bindings)
        return v
    return {k: sub(v) for k, v in attrs.items()}
