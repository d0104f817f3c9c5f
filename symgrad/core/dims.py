"""Dimensions: an int, or a sympy expression of named run-time sizes (``N``, ``2*N``).

A signature such as ``{"X": "f64[N,3073]"}`` makes ``N`` a run-time size: the graph is traced
once with the symbol ``N`` in its shapes, the C code takes ``int64_t N`` and loops over it, and
the interpreter binds ``N`` from the arrays it is given. Everything that computes with shapes goes
through these helpers, so plain ints stay plain ints.
"""
from __future__ import annotations

import math

import sympy as sp


def symbol(name):
    """The run-time size called ``name`` (a non-negative integer)."""
    return sp.Symbol(name, integer=True, nonnegative=True)


_VALUE_PREFIX = "symgrad_value_"


def value_of(name):
    """The value of the int argument ``name`` as a size (a loop's run-time trip count). Unlike
    a named size it may be negative; it is bound from the argument's value, not a shape."""
    return sp.Symbol(_VALUE_PREFIX + name, integer=True)


def value_source(sym):
    """The argument name behind a ``value_of`` symbol, else None."""
    return sym.name[len(_VALUE_PREFIX):] if sym.name.startswith(_VALUE_PREFIX) else None


def value_symbols(shapes):
    """The ``value_of`` symbols in ``shapes``."""
    return [s for s in free_symbols(shapes) if value_source(s) is not None]


def graph_symbols(graph):
    """Every run-time size a graph's statements use: in their types and attributes, and in the
    graphs of loop bodies they hold."""
    found = set(free_symbols([v.shape for v in graph.inputs]))

    def visit(value):
        if isinstance(value, sp.Basic):
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
    return sp.simplify(sp.sympify(a) - sp.sympify(b)) == 0


def normalize(d):
    """An int where the expression is a number; otherwise a simplified sympy expression."""
    if isinstance(d, int):
        return d
    d = sp.sympify(d)
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
                names |= sp.sympify(d).free_symbols
    return sorted(names, key=lambda s: s.name)


def substitute(d, bindings):
    """The int value of dimension ``d`` once the run-time sizes in ``bindings`` are known."""
    if isinstance(d, int):
        return d
    return int(sp.sympify(d).subs(bindings))


class CeilDiv(sp.Function):
    """``ceil(a / b)`` of non-negative integers, printed as C integer division."""
    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            return -(-a // b)

    def _ccode(self, printer):
        a, b = self.args
        return f"(({printer._print(a)} + {int(b) - 1}) / {printer._print(b)})"


class AtLeastZero(sp.Function):
    """``max(a, 0)`` of an integer, printed as a C conditional (a trip count ``upper - lower``
    is 0 when ``upper < lower``)."""
    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, a):
        if a.is_Integer:
            return max(a, sp.Integer(0))
        if a.is_nonnegative:
            return a

    def _ccode(self, printer):
        a = printer._print(self.args[0])
        return f"(({a}) > 0 ? ({a}) : 0)"


def at_least_zero(d):
    """``max(d, 0)`` of a dimension."""
    if isinstance(d, int):
        return max(d, 0)
    return normalize(AtLeastZero(sp.sympify(d)))


def align_up(d, alignment):
    """``d`` rounded up to a multiple of ``alignment`` (an int)."""
    if isinstance(d, int):
        return -(-d // alignment) * alignment
    return normalize(alignment * CeilDiv(sp.sympify(d), alignment))


def c_expr(d):
    """A dimension as a C expression (int64_t arithmetic)."""
    if isinstance(d, int):
        return str(d)
    from sympy.printing.c import ccode
    return f"({ccode(d)})" if not sp.sympify(d).is_Symbol else ccode(d)


def polynomial(d):
    """``d`` as plain data a program without sympy can evaluate: an int, or the terms of a
    polynomial of run-time sizes with integer coefficients, ``[[coefficient, {name: power}],
    ...]`` (``2*N*M + N`` is ``[[2, {"M": 1, "N": 1}], [1, {"N": 1}]]``). Raises ValueError for
    anything else (a trip count ``max(n, 0)``, a rounded-up quotient)."""
    if isinstance(d, int):
        return d
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
    ``symbols``) evaluated at ``values``, one per symbol in order. Built once (sympy's
    ``lambdify``), so a call costs microseconds where ``substitute`` costs a sympy ``subs``."""
    dims_ = list(dims_)
    if all(isinstance(d, int) for d in dims_):
        return lambda values: dims_
    f = sp.lambdify(list(symbols), [sp.sympify(d) for d in dims_],
                    modules=[{"CeilDiv": lambda a, b: -(-a // b),
                              "AtLeastZero": lambda a: max(a, 0)}, "math"])
    return lambda values: [int(v) for v in f(*values)]


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
        if isinstance(v, sp.Basic):
            return int(v.subs(bindings))
        if hasattr(v, "substitute"):         # a loop body (loops.Body)
            return v.substitute(bindings)
        return v
    return {k: sub(v) for k, v in attrs.items()}
