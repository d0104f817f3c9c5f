"""Elementwise primitives: each written once as a sympy expression.

From the one expression come its NumPy evaluation (``lambdify``), its C (sympy's C99 printer) and
its derivative (``sympy.diff``, turned back into IR by ``to_ir`` so it composes to any order).
A few entries state their derivative in terms of ``out`` instead, where that is the numerically
sound form; ``tests/test_registry.py`` checks every such override against ``sympy.diff``.

The table states each expression as sympy source text (``"1 - out**2"``), parsed the first time
the primitive's math is needed (``sympy_expr``): importing the table and tracing need only shape
rules, so ``import symgrad``, and a process that finds its compiled code in the disk cache, never
import sympy (see ``symgrad.core.symbolic``). The record keeps the text (``sympy_math``); its
``expr`` and ``derivs`` are the parsed sympy objects all the same. A build needs less: each
expression's C and each derivative's recipe (``to_recipe``), which ``elementwise_table.py``
holds, generated from this table by ``python -m symgrad.tools.elementwise_table`` (a test fails
when it is stale), so a first build of static-shape code imports no sympy either.

Operands broadcast as in NumPy; reverse mode sums each adjoint back to its operand's shape with
``ops.sum_to_shape`` (the one place broadcasting is undone). Forward mode uses the same derivative
expressions: the tangent is ``sum_k d_k * t_k``, broadcast to the output's shape.
"""
from __future__ import annotations

import functools
import types

import numpy as np

from symgrad.core.cspell import literal_value
from symgrad.core.symbolic import sympy as _sympy
from symgrad.errors import DTypeError, ShapeError
from symgrad.core.types import (COMPLEX_DTYPES, COMPLEX_OF, FLOAT_DTYPES, REAL_PART, TensorType,
                                broadcast_shapes)
from symgrad.core import batching, ops
from symgrad.core.primitive import Primitive, bind, register

# Functions libm lacks are C functions of symgrad's own (templates/math.c.j2), in double only: a
# float operand converts to double and the result rounds back, so float32 loses nothing.
C_RUNTIME_FUNCTIONS = {"erfinv": "symgrad_math_erfinv", "polygamma": "symgrad_math_polygamma"}
_NUMPY_EXTRAS = {"expm1": np.expm1, "log1p": np.log1p}

# Makers of the names the table's text may use beyond sympy's own and x, y, out: functions
# sp -> {name: sympy object}, called when the sympy side is made (numeric.py's rounding and
# remainder functions are sympy classes, so they too are made only then).
_NAME_SOURCES = []

# sympy function name -> primitive, for turning derivative expressions back into IR: the
# primitive's name, or a function (expr, emit) -> recipe for those that need the expression's
# arguments (the order n of polygamma(n, x) picks the primitive). The names are resolved to
# sympy's functions when the sympy side is made.
_FUNCTIONS = {}


def _before_sympy(what):
    """Registration belongs to import time: the sympy side, once made, is not made again."""
    if _side.cache_info().currsize:
        raise RuntimeError(f"{what} registered after the sympy side of the elementwise table "
                           f"was made; register it when its module is imported")


def sympy_names(source):
    """Register ``source(sp) -> {name: sympy object}``: names the table's text may use."""
    _before_sympy("sympy names")
    _NAME_SOURCES.append(source)
    return source


def sympy_function(name, target):
    """Map the sympy function ``name`` (sympy's own or from ``sympy_names``) back to IR:
    ``target`` is a primitive's name or a function (expr, emit) -> recipe (``to_recipe``;
    ``emit`` gives the recipe of a sympy subexpression)."""
    _before_sympy(f"the sympy function {name!r}")
    _FUNCTIONS[name] = target


@functools.cache
def _side():
    """The table's sympy side, made once on first use (this is where sympy is imported): the
    symbols x, y, out, the names the text may use, the function map and the C printers."""
    sp = _sympy()
    from sympy.codegen import cfunctions

    x, y = sp.symbols("x y", real=True)
    out = sp.Symbol("out", real=True)
    names = {"x": x, "y": y, "out": out}
    names.update({f: getattr(cfunctions, f)
                  for f in ("expm1", "log1p", "exp2", "log2", "log10", "Cbrt", "hypot")})
    for source in _NAME_SOURCES:
        names.update(source(sp))
    functions = {names[k] if k in names else getattr(sp, k): target
                 for k, target in _FUNCTIONS.items()}
    return types.SimpleNamespace(sp=sp, X=x, Y=y, OUT=out, SYMBOLS=(x, y), names=names,
                                 functions=functions, printers=_printers())


def _printers():
    """The C printers by C type: sympy's C99 printer, with a square printed as a product."""
    from sympy.codegen.ast import float32, real
    from sympy.printing.c import C99CodePrinter
    from sympy.printing.precedence import precedence

    class CPrinter(C99CodePrinter):
        """sympy's C99 printer, but a square is a product (``x*x``, as one writes it, not
        ``pow(x, 2)``)."""

        def _print_Pow(self, expr):
            if expr.exp == 2:
                base = self.parenthesize(expr.base, precedence(expr))
                return f"{base}*{base}"
            return super()._print_Pow(expr)

    class ComplexC99Printer(C99CodePrinter):
        """sympy's C99 printer for ``double complex``/``float complex`` operands: <complex.h>'s
        names (cexp, clog, csqrt, cpow, csin, ...; the f-suffixed ones for float complex), and
        x**2 as x*x, which is exact where cpow(x, 2) goes through exp and log."""
        _ns = "c"
        _prec_funcs = tuple(C99CodePrinter._prec_funcs) + tuple(
            "c" + f for f in "exp log sqrt pow sin cos tan sinh cosh tanh".split())

        def _print_Pow(self, expr):
            if expr.exp == 2:
                base = self.parenthesize(expr.base, 1000)    # an atom or in parentheses
                return f"({base}*{base})"
            return super()._print_Pow(expr)

    # The primitives whose sympy expression is analytic and whose C has a <complex.h>
    # counterpart take complex operands (elementwise(..., complex_ok=True)); every other one
    # refuses them.
    return {"float64": CPrinter({"user_functions": C_RUNTIME_FUNCTIONS}),
            "float32": CPrinter({"type_aliases": {real: float32},
                                 "user_functions": C_RUNTIME_FUNCTIONS}),
            "double _Complex": ComplexC99Printer(),
            "float _Complex": ComplexC99Printer({"type_aliases": {real: float32}})}


def __getattr__(name):
    """``X``, ``Y``, ``OUT`` and ``SYMBOLS``: the table's sympy symbols (sympy loads here)."""
    if name in ("X", "Y", "OUT", "SYMBOLS"):
        return getattr(_side(), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@functools.cache
def sympy_expr(text):
    """The sympy expression of the table's ``text`` (in x, y and out), parsed once."""
    side = _side()
    expr = side.sp.sympify(text, locals=side.names)
    unknown = expr.free_symbols - {side.X, side.Y, side.OUT}
    if unknown:
        raise ValueError(f"the elementwise expression {text!r} names {sorted(map(str, unknown))}:"
                         f" only x, y and out are symbols")
    return expr


class SympyMath:
    """An elementwise primitive's math as sympy text, made into sympy objects on first use:
    ``text`` (the definition, in x and y), ``deriv`` (the derivative per operand where it is
    stated, in x, y and out; None: ``sympy.diff``'s) and ``c`` (the text printed as C where it
    differs from the definition)."""

    def __init__(self, text, deriv=None, c=None):
        self.text, self.deriv, self.c = text, None if deriv is None else tuple(deriv), c

    def __repr__(self):
        return f"SympyMath({self.text!r})"

    @functools.cached_property
    def expr(self):
        return sympy_expr(self.text)

    @functools.cached_property
    def args(self):
        """The symbols of the operands, x (and y), in order."""
        return tuple(s for s in _side().SYMBOLS if s in self.expr.free_symbols)

    @functools.cached_property
    def derivs(self):
        if self.deriv is not None:
            return tuple(sympy_expr(d) for d in self.deriv)
        return tuple(_sympy().diff(self.expr, s) for s in self.args)

    def recipe(self, i):
        """The derivative by operand ``i`` as the vjp and jvp rules emit it
        (``derivative_recipe``): from the generated table when it has it (no sympy), else made
        from ``derivs``, when a rule first asks (polygamma's by its int order never is)."""
        found = _table().DERIVATIVES.get((self.text, self.deriv))
        if found is not None and found[i] is not None:
            return found[i]
        return _recipe_of(self, i)

    @functools.cached_property
    def arity(self):
        """How many operands the derivatives are stated for."""
        found = _table().DERIVATIVES.get((self.text, self.deriv))
        return len(found) if found is not None else len(self.derivs)


@functools.cache
def _recipe_of(math, i):
    return derivative_recipe(math.derivs[i])


def _broadcast_type(name, *in_types, out_dtype=None, float_only=False, complex_ok=False):
    dtypes = {t.dtype for t in in_types}
    if len(dtypes) > 1:
        raise DTypeError(f"operands have different dtypes {sorted(dtypes)}")
    dtype = dtypes.pop()
    if dtype in COMPLEX_DTYPES and not complex_ok:
        raise DTypeError(f"{name} is not defined for complex values ({dtype}) in symgrad; "
                         f"docs/complex.md lists what is")
    if float_only and dtype not in FLOAT_DTYPES:
        raise DTypeError(f"{name} needs a floating-point operand, got {dtype}")
    try:
        shape = broadcast_shapes(*[t.shape for t in in_types])
    except ValueError:
        raise ShapeError("shapes " + " and ".join(str(t.shape) for t in in_types)
                         + " do not broadcast together") from None
    return TensorType(shape, out_dtype or dtype)


_RELATIONS = {"==": "eq", "!=": "ne", "<": "lt", "<=": "le", ">": "gt", ">=": "ge"}


# --- sympy expression -> recipe -> IR -----------------------------------------------------------
# A derivative expression becomes IR in two steps: ``to_recipe`` (sympy) turns it into a recipe,
# nested tuples naming the IR to emit, and ``from_recipe`` (no sympy) emits it. The recipes of the
# table's own derivatives are generated ahead of time (``elementwise_table``), so a first build
# of static-shape code differentiates without importing sympy; both paths run ``from_recipe``,
# so they give the same IR. A recipe node is one of
#   ("sym", name)                 an operand: "x", "y" or "out"
#   ("num", value)                a float constant, shaped and typed like the operands
#   ("const", value, dtype)       an integer constant of its own dtype (polygamma's order)
#   ("op", name, *args)           ``ops.name(*args)``: add, sub, mul, div, neg, select, convert
#   ("bind", primitive, *args)    ``bind(primitive, *args)``
# and a derivative as a whole is a recipe, or 0, 1 or -1 (no statement: no adjoint, the incoming
# adjoint itself, its negation).

def to_recipe(expr):
    """The recipe (see above) of the sympy expression ``expr`` in x, y and out."""
    side = _side()
    sp = side.sp
    symbols = {side.X: "x", side.Y: "y", side.OUT: "out"}

    def number(v):
        return ("num", float(v))

    def emit(e):
        if e in symbols:
            return ("sym", symbols[e])
        if e.is_number:             # 3, pi, log(2): folded to one constant here
            return number(e)
        if isinstance(e, sp.Piecewise):
            (value, cond), rest = e.args[0], e.args[1:]
            if cond == sp.true:
                return emit(value)
            return ("op", "select", emit(cond), emit(value), emit(sp.Piecewise(*rest)))
        if isinstance(e, sp.core.relational.Relational) and e.rel_op in _RELATIONS:
            return ("bind", _RELATIONS[e.rel_op], emit(e.lhs), emit(e.rhs))
        if e.is_Add:
            coeff, terms = e.as_coeff_add()
            pos = [emit(t) for t in terms if not t.could_extract_minus_sign()]
            neg = [emit(-t) for t in terms if t.could_extract_minus_sign()]
            acc = functools.reduce(lambda a, b: ("op", "add", a, b), pos) if pos else None
            if coeff != 0:
                acc = number(coeff) if acc is None else ("op", "add", acc, number(coeff))
            for t in neg:
                acc = ("op", "neg", t) if acc is None else ("op", "sub", acc, t)
            return acc
        if e.is_Mul:
            coeff, factors = e.as_coeff_mul()
            num = [f for f in factors if not (f.is_Pow and f.exp.is_negative)]
            den = [f.base ** -f.exp for f in factors if f.is_Pow and f.exp.is_negative]
            top = functools.reduce(lambda a, b: ("op", "mul", a, b),
                                   [emit(f) for f in num]) if num else None
            if coeff not in (1, -1):
                top = number(coeff) if top is None else ("op", "mul", number(coeff), top)
            if den:
                bottom = functools.reduce(lambda a, b: ("op", "mul", a, b),
                                          [emit(f) for f in den])
                top = ("op", "div", top if top is not None else number(1), bottom)
            return ("op", "neg", top) if coeff == -1 else top
        if e.is_Pow:
            base, exp = e.base, e.exp
            if exp == 2:
                return ("bind", "square", emit(base))
            if exp == sp.Rational(1, 2):
                return ("bind", "sqrt", emit(base))
            if exp.is_negative:
                return ("op", "div", number(1), emit(base ** -exp))
            return ("bind", "pow", emit(base), emit(exp))
        if e.func in side.functions:
            target = side.functions[e.func]
            if callable(target):
                return target(e, emit)
            return ("bind", target, *[emit(a) for a in e.args])
        raise NotImplementedError(f"no IR for the sympy expression {e}")

    return emit(expr)


def derivative_recipe(d):
    """A derivative expression as the vjp and jvp rules take it: 0, 1, -1 or a recipe."""
    for known in (0, 1, -1):
        if d == known:
            return known
    return to_recipe(d)


def from_recipe(recipe, env):
    """Emit the IR of ``recipe``; ``env`` maps "x", "y" and "out" to ``Var``s."""
    like = next(iter(env.values()))

    def emit(r):
        kind = r[0]
        if kind == "sym":
            return env[r[1]]
        if kind == "num":
            return ops.scalar_like(r[1], like)
        if kind == "const":
            return ops.const(r[1], r[2])
        if kind == "op":
            if r[1] == "convert":
                return ops.convert(emit(r[2]), r[3])
            return getattr(ops, r[1])(*[emit(a) for a in r[2:]])
        if kind == "bind":
            return bind(r[1], *[emit(a) for a in r[2:]])
        raise ValueError(f"not a recipe node: {r!r}")

    return emit(recipe)


def to_ir(expr, env):
    """Emit IR computing the sympy ``expr``; ``env`` maps "x", "y" and "out" to ``Var``s."""
    return from_recipe(to_recipe(expr), env)


# --- registration -------------------------------------------------------------------------------

def _scaled(v, d, env):
    """``v * d`` for a derivative ``d`` (0, 1, -1 or a recipe): no statement for d = 1, a
    negation for -1."""
    if d == 1:
        return v
    if d == -1:
        return ops.neg(v)
    return bind("chain_mul", v, from_recipe(d, env))


def _env(out, inputs):
    env = dict(zip(("x", "y"), inputs))
    env["out"] = out
    return env


def _sympy_vjp(math, g, out, *inputs):
    """Adjoints of an elementwise primitive: g * d(expr)/d(input), summed back to each shape."""
    env = _env(out, inputs)
    # A derivative that is 0 (floor, rint, ...: constant almost everywhere) gives no adjoint.
    return tuple(ops.sum_to_shape(_scaled(g, d, env), x.shape)
                 if x.type.is_float and (d := math.recipe(i)) != 0 else None
                 for i, x in enumerate(inputs[:math.arity]))


def _sympy_jvp(math, t, out, *inputs):
    """Tangent of an elementwise primitive: sum over operands of d(expr)/d(input) * t."""
    env = _env(out, inputs)
    total = None
    for i, tx in enumerate(t[:math.arity]):
        if tx is None or (d := math.recipe(i)) == 0:
            continue
        term = _scaled(tx, d, env)
        total = term if total is None else ops.add(total, term)
    return None if total is None else ops.broadcast_to(total, out.shape)


def c_from_sympy(text, operands, ctype):
    """The C of the table's expression ``text`` on the C expressions ``operands``."""
    kind = printer_kind(ctype)
    found = _table().C.get((text, kind))
    return (found if found is not None else c_format(text, kind)).format(*operands)


def printer_kind(ctype):
    """Which of ``_printers()`` prints C for operands of C type ``ctype``: float32 for float,
    the complex ones for theirs, float64 for double and the integer types."""
    if ctype in ("float _Complex", "double _Complex"):
        return ctype
    return "float32" if ctype == "float" else "float64"


@functools.cache
def _table():
    """The generated table (``elementwise_table``), imported on first use."""
    from symgrad.core.primitives import elementwise_table
    return elementwise_table


@functools.cache
def c_format(text, kind):
    """The C format string (operands as {0}, {1}) of the expression ``text`` printed by the
    printer ``kind`` (``printer_kind``)."""
    side = _side()
    sp = side.sp
    printer = side.printers[kind]
    placeholders = {s: sp.Symbol("{%d}" % i) for i, s in enumerate(side.SYMBOLS)}
    # Constants such as pi or log(2) as literals: sympy would print M_PI and M_LN2, which the
    # C standard does not define (-std=c99 hides them).
    expr = sympy_expr(text).replace(lambda e: e.is_number and not e.is_Rational,
                                    lambda e: sp.Float(e.evalf(20), 17))
    # One line: sympy prints a Piecewise as a ternary spread over several.
    return " ".join(printer.doprint(expr.xreplace(placeholders)).split())


@functools.cache
def _lambdify(math):
    """The NumPy function of ``math``: the generated table's copy of lambdify's source when it
    has one (so folding a constant, e.g. ``x/y`` of two literals, imports no sympy: ~0.3 s of
    CPU), else made by sympy's ``lambdify``."""
    return _tabled_numpy_function(math.text) or sympy_numpy_function(math)


def sympy_numpy_function(math):
    """sympy's ``lambdify`` of ``math``: a NumPy function of its operands."""
    return _sympy().lambdify(list(math.args), math.expr, modules=[_NUMPY_EXTRAS, "numpy"])


@functools.cache
def numpy_namespace():
    """The names the generated table's NumPy functions may use (``NUMPY``): NumPy's, and
    ``_NUMPY_EXTRAS``, as lambdify's namespace with ``modules=[_NUMPY_EXTRAS, "numpy"]`` has
    them; the generator keeps only functions whose every name is the same object here."""
    return {**vars(np), "numpy": np, **_NUMPY_EXTRAS}


def function_globals(code):
    """The global names the function defined by the module code ``code`` reads."""
    names = set()
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            names |= set(const.co_names) | function_globals(const)
    return names


def _tabled_numpy_function(text):
    """The function ``NUMPY[text]`` of the generated table defines, or None when the table lacks
    it or this NumPy lacks a name it reads (then lambdify makes it)."""
    source = getattr(_table(), "NUMPY", {}).get(text)
    if source is None:
        return None
    code = compile(source, f"<symgrad elementwise {text}>", "exec")
    namespace = dict(numpy_namespace())
    if not function_globals(code) <= namespace.keys():
        return None
    exec(code, namespace)       # the table's own text, generated from sympy: see its test
    (name,) = [c.co_name for c in code.co_consts if isinstance(c, types.CodeType)]
    return namespace[name]


def _lambdified(math, *arrays):
    """The expression evaluated by NumPy (sympy's ``lambdify``, made on the first call)."""
    return _lambdify(math)(*arrays)


def elementwise(name, text, *, deriv=None, impl=None, vjp=None, jvp=None, float_only=True,
                complex_ok=False, sympy_func=None, c=None, shape_rule=None, doc="", **facts):
    """Register the elementwise primitive ``name`` computing the sympy expression ``text`` of x
    (and y), written as sympy source text and parsed on first use (``sympy_expr``): importing
    the table and tracing with it need no sympy; differentiating, printing C and evaluating
    with NumPy parse it.

    ``deriv``: derivative texts per operand, in x, y and ``out``, where sympy's own would be
    numerically worse; default ``sympy.diff``. ``impl``: a NumPy function where lambdify's
    would be wrong for the complex step. ``sympy_func``: the name of the sympy function this
    primitive stands for, so derivatives that mention it map back to it. ``vjp``: a
    hand-written rule, only for the subgradient conventions sympy cannot state; ``jvp``
    likewise for tangents. ``c``: the text of an expression equal to ``text`` to print as C
    instead, where the definition (which sympy differentiates) would overflow or cancel when
    evaluated; or a function (operands, ctype) -> C, for C that depends on the operands' type.
    ``shape_rule``: for operands of different dtypes (default: one dtype, broadcast shapes).
    ``complex_ok``: the expression is analytic and its C prints with <complex.h>
    (``ComplexC99Printer``), so complex operands are allowed; its derivative is then the complex
    derivative, and the adjoint g * f'(z) (JAX's convention, docs/complex.md). ``facts``:
    further fields of the record (``identities``, ``infix``, ...).
    """
    math = SympyMath(text, deriv, c if isinstance(c, str) else None)
    if impl is None:
        impl = functools.partial(_lambdified, math)     # made on first use
    if sympy_func is not None:
        sympy_function(sympy_func, name)
    return register(Primitive(
        name=name,
        shape_rule=shape_rule or functools.partial(_broadcast_type, name, float_only=float_only,
                                                   complex_ok=complex_ok),
        impl=impl,
        vjp=vjp or functools.partial(_sympy_vjp, math),
        jvp=jvp or functools.partial(_sympy_jvp, math),
        batch=functools.partial(batching.elementwise, name),
        elementwise=True,
        c_expr=c if callable(c) else functools.partial(c_from_sympy, c or text),
        doc=doc or f"{name}: {text}",
        sympy_math=math,
        **facts,
    ))


# Arithmetic. Integer operands are allowed (index arithmetic), so float_only=False. The
# identities are the units the simplifier removes (0 + x, x - 0, 1 * x, x / 1: true for NaN and
# inf too; x * 0 is not). A derivative rule's add prints as an accumulation, ``b_x += ...``.
# All but pow take complex operands too (complex_ok).
elementwise("add", "x + y", float_only=False, identities=((0, 0), (1, 0)), infix="{0} + {1}",
            accumulate="+=", complex_ok=True)
elementwise("sub", "x - y", float_only=False, identities=((1, 0),), infix="{0} - {1}",
            complex_ok=True)
elementwise("mul", "x*y", float_only=False, identities=((0, 1), (1, 1)), infix="{0} * {1}",
            complex_ok=True)
elementwise("div", "x/y", identities=((1, 1),), infix="{0} / {1}", complex_ok=True)
# sympy's d/dx of x**y is x**y*y/x, which is 0/0 at x = 0 (x**3 there has slope 0). Where a
# derivative's formula is 0 * inf but its value is 0, a guard picks the safe branch (as JAX's
# rules do), and since the guarded formulas are written in pow again, every order stays exact:
# d/dx x**0 = 0 (y * x**(y-1) is 0 * inf at x = 0), d/dy 0**y = 0 for y > 0 (out * log 0 is
# 0 * -inf), d2/dx2 x**1 = 0 at 0.
elementwise("pow", "x**y", deriv=["Piecewise((0, Eq(y, 0)), (y*x**(y - 1), True))",
                                   "out*log(Piecewise((1, Eq(x, 0)), (x, True)))"],
            infix="{0} ** {1}")
elementwise("neg", "-x", float_only=False, involution=True, infix="-{0}", complex_ok=True)
elementwise("square", "x**2", float_only=False, complex_ok=True)
# pow's guards compare with 0, which complex values do not (docs/complex.md): a complex power
# is exp(y log x) in symgrad.numpy.power.

# Exponentials and logarithms. The derivative of exp is its own output: reuse it.
elementwise("exp", "exp(x)", deriv=["out"], sympy_func="exp", complex_ok=True)
# expm1 and log1p are accurate for small x: no cancellation in e^x - 1, no rounding in 1 + x.
elementwise("expm1", "expm1(x)", sympy_func="expm1")
elementwise("log", "log(x)", sympy_func="log", complex_ok=True)
elementwise("log1p", "log1p(x)", sympy_func="log1p")
elementwise("sqrt", "sqrt(x)", deriv=["1/(2*out)"], complex_ok=True)

# Trigonometric and hyperbolic functions.
elementwise("sin", "sin(x)", sympy_func="sin", complex_ok=True)
elementwise("cos", "cos(x)", sympy_func="cos", complex_ok=True)
elementwise("tan", "tan(x)", sympy_func="tan", complex_ok=True)
elementwise("arcsin", "asin(x)", sympy_func="asin")
elementwise("arccos", "acos(x)", sympy_func="acos")
elementwise("arctan", "atan(x)", sympy_func="atan")
elementwise("sinh", "sinh(x)", sympy_func="sinh", complex_ok=True)
elementwise("cosh", "cosh(x)", sympy_func="cosh", complex_ok=True)
elementwise("tanh", "tanh(x)", deriv=["1 - out**2"], sympy_func="tanh", complex_ok=True)

# The logistic sigmoid. sympy's derivative e^-x / (1 + e^-x)^2 is inf/inf = nan for x << 0;
# out * (1 - out) would round 1 - out to 0 for x >> 0 (x > 37 in float64); out * sigmoid(-x)
# keeps full relative accuracy on both sides.
def _logistic_impl(x):
    # Both forms are analytic (the complex step rides along); each is the one that cannot
    # overflow on its half-line.
    positive = np.real(x) >= 0
    z = np.exp(np.where(positive, -x, x))      # exp(-|x|): never overflows
    return np.where(positive, 1 / (1 + z), z / (1 + z))


elementwise("logistic", "1/(1 + exp(-x))", deriv=["out/(1 + exp(x))"], impl=_logistic_impl)

# abs and sign. For the complex step, abs must stay analytic (x * sign(Re x)), not the modulus.
# abs'(0) follows the max(x, -x) subgradient convention of API.md: the tie goes to x, slope 1.
def _abs_vjp(g, out, x):
    return (ops.select(ops.ge(x, ops.scalar_like(0, x)), g, ops.neg(g)),)


def _abs_jvp(t, out, x):
    (tx,) = t
    return ops.select(ops.ge(x, ops.scalar_like(0, x)), tx, ops.neg(tx))


def _no_gradient(g, out, *inputs, **attrs):
    return (None,) * len(inputs)


def _no_tangent(t, out, *inputs, **attrs):
    return None


def _select_tangents(c, t, out):
    """select(c, t0, t1) with a zero for a missing tangent; None when both are missing."""
    if all(tx is None for tx in t):
        return None
    zero = ops.scalar_like(0, out)
    t0, t1 = (zero if tx is None else tx for tx in t)
    return ops.broadcast_to(ops.select(c, t0, t1), out.shape)


elementwise("abs", "Abs(x)", float_only=False, sympy_func="Abs", vjp=_abs_vjp, jvp=_abs_jvp,
            impl=lambda x: np.where(np.real(x) < 0, -x, x))
elementwise("sign", "sign(x)", float_only=False, sympy_func="sign", vjp=_no_gradient,
            jvp=_no_tangent,
            impl=lambda x: np.sign(np.real(x)).astype(x.dtype))


# --- elementwise primitives that sympy does not express: the subgradient conventions -------------
# maximum/minimum send the gradient to the winner, and on a tie to the first operand. NaN
# propagates from either operand, as in NumPy (fmax would drop it).

def _max_impl(x, y):
    if np.iscomplexobj(x) or np.iscomplexobj(y):
        return np.where((np.real(x) >= np.real(y)) | np.isnan(x), x, y)
    return np.maximum(x, y)


def _min_impl(x, y):
    if np.iscomplexobj(x) or np.iscomplexobj(y):
        return np.where((np.real(x) <= np.real(y)) | np.isnan(x), x, y)
    return np.minimum(x, y)


def _winner_vjp(compare, g, out, x, y):
    first = bind(compare, x, y)
    zero = ops.scalar_like(0, g)
    return (ops.sum_to_shape(ops.select(first, g, zero), x.shape),
            ops.sum_to_shape(ops.select(first, zero, g), y.shape))


def _winner_jvp(compare, t, out, x, y):
    return _select_tangents(bind(compare, x, y), t, out)


def _minmax_c(compare, operands, ctype):
    x, y = operands
    nan = f" || isnan({x})" if ctype in ("double", "float") else ""
    return f"(({x} {compare} {y}{nan}) ? {x} : {y})"


for _name, _cmp, _impl in (("maximum", "ge", _max_impl), ("minimum", "le", _min_impl)):
    register(Primitive(
        name=_name, elementwise=True,
        shape_rule=functools.partial(_broadcast_type, _name, float_only=False),
        impl=_impl,
        vjp=functools.partial(_winner_vjp, _cmp),
        jvp=functools.partial(_winner_jvp, _cmp),
        batch=functools.partial(batching.elementwise, _name),
        c_expr=functools.partial(_minmax_c, ">=" if _cmp == "ge" else "<="),
        doc=f"{_name}(x, y); the gradient goes to the winner, to x on a tie",
    ))


# --- comparisons, select, convert: no gradient through the boolean --------------------------------

def _compare_type(name, x, y):
    return _broadcast_type(name, x, y, out_dtype="bool")


_COMPARISONS = {"lt": ("<", np.less), "le": ("<=", np.less_equal), "gt": (">", np.greater),
                "ge": (">=", np.greater_equal), "eq": ("==", np.equal), "ne": ("!=", np.not_equal)}


def _compare_impl(np_op, x, y):
    return np_op(np.real(x), np.real(y))


for _name, (_c_op, _np_op) in _COMPARISONS.items():
    register(Primitive(
        name=_name, elementwise=True,
        shape_rule=functools.partial(_compare_type, _name),
        impl=functools.partial(_compare_impl, _np_op),
        vjp=_no_gradient,
        jvp=_no_tangent,
        batch=functools.partial(batching.elementwise, _name),
        c_expr=functools.partial(lambda op, operands, ctype: f"({operands[0]} {op} {operands[1]})",
                                 _c_op),
        infix=f"{{0}} {_c_op} {{1}}",
        doc=f"x {_c_op} y (compares real parts for the complex step)",
    ))


def _select_type(c, x, y):
    if c.dtype != "bool":
        raise DTypeError(f"the condition of where/select must be bool, got {c.dtype}")
    out = _broadcast_type("select", x, y, complex_ok=True)
    try:
        shape = broadcast_shapes(c.shape, out.shape)
    except ValueError:
        raise ShapeError(f"condition shape {c.shape} does not broadcast with {out.shape}") from None
    return TensorType(shape, out.dtype)


def _select_vjp(g, out, c, x, y):
    zero = ops.scalar_like(0, g)
    return (None,
            ops.sum_to_shape(ops.select(c, g, zero), x.shape) if x.type.is_float else None,
            ops.sum_to_shape(ops.select(c, zero, g), y.shape) if y.type.is_float else None)


def _select_simplify(node, ins, producer):
    """A condition known now (a guard of a derivative rule: pow's y == 0 for a constant y)
    picks its branch."""
    cond = producer(ins[0])
    if cond is None or cond.prim != "const" or ins[0].ndim != 0:
        return None
    pick = ins[1] if cond.attrs["value"].value.item() else ins[2]
    return pick if pick.type == node.out.type else None


def _select_c(operands, ctype, scalar=False):
    """Floats through a helper whose arguments are evaluated whatever the condition, so that
    gcc vectorizes the loop (templates/branch_free.c.j2); the operands are values already
    computed (names, array elements), so evaluating both changes no result."""
    if ctype in ("double", "float") and not scalar:
        return f"symgradrt_select{'f' if ctype == 'float' else ''}({', '.join(operands)})"
    return "({} ? {} : {})".format(*operands)


register(Primitive(
    name="select", elementwise=True, shape_rule=_select_type,
    impl=lambda c, x, y: np.where(c, x, y),
    vjp=_select_vjp,
    jvp=lambda t, out, c, x, y: _select_tangents(c, t[1:], out),
    batch=functools.partial(batching.elementwise, "select"),
    c_expr=_select_c, c_scalar_expr=functools.partial(_select_c, scalar=True),
    simplify=_select_simplify,
    doc="select(c, x, y) = where(c, x, y); the gradient goes to the branch taken",
))


def _convert_type(x, *, dtype):
    if x.dtype in COMPLEX_DTYPES and dtype not in COMPLEX_DTYPES:
        # NumPy's astype keeps the real part (with a ComplexWarning); symgrad says so in the IR
        # (ops.convert binds ``real`` first), which also keeps this primitive's interpreter
        # rule free to carry the complex step through float casts.
        raise DTypeError(f"convert from {x.dtype} to {dtype}: take the real part first")
    return TensorType(x.shape, dtype)


def _convert_impl(x, *, dtype):
    if np.iscomplexobj(x) and dtype in ("float32", "float64"):
        return x  # the complex step carries its imaginary part through float casts
    return x.astype(dtype)


def _convert_vjp(g, out, x, *, dtype):
    return (ops.convert(g, x.dtype) if x.type.is_float else None,)


# --- bitcast: the same bits read as another type of the same width ------------------------------
# A loop packs an int carry (a step counter) into its float carry vector this way: exact for every
# value, where a conversion to float would round large ints. Only copies ever touch those bits.

BITCAST_PAIRS = {("int64", "float64"), ("float64", "int64"), ("int32", "float32"),
                 ("float32", "int32")}


def _bitcast_type(x, *, dtype):
    if (x.dtype, dtype) not in BITCAST_PAIRS:
        raise DTypeError(f"cannot bitcast {x.dtype} to {dtype}: only int64 <-> float64 and "
                         f"int32 <-> float32 (same width)")
    return TensorType(x.shape, dtype)


def _bitcast_impl(x, *, dtype):
    x = np.asarray(x)
    if np.iscomplexobj(x):          # the complex step: the bits sit in the real part
        x = x.real
    return (x if x.flags.c_contiguous else x.copy()).view(dtype)   # 0-d stays 0-d


_BITCAST_FROM = {"double": "int64_t", "int64_t": "double", "float": "int32_t", "int32_t": "float"}


register(Primitive(
    name="bitcast", elementwise=True, shape_rule=_bitcast_type, impl=_bitcast_impl,
    # An int's bits read as a float may be a NaN with a payload, which no C float literal
    # spells: the bitcast of an int constant is not folded, it runs in C.
    fold=lambda node: not node.out.type.is_float,
    vjp=lambda g, out, x, *, dtype: (None,),
    jvp=lambda t, out, x, *, dtype: None,
    batch=functools.partial(batching.elementwise, "bitcast"),
    c_expr=lambda operands, ctype: (f"((union {{ {_BITCAST_FROM[ctype]} from; {ctype} to; }})"
                                    f"{{ .from = {operands[0]} }}).to"),
    doc="bitcast[dtype](x): x's bits read as dtype (int64 <-> float64, int32 <-> float32); "
        "no gradient",
))


register(Primitive(
    name="convert", elementwise=True, shape_rule=_convert_type, impl=_convert_impl,
    vjp=_convert_vjp,
    jvp=lambda t, out, x, *, dtype: (ops.convert(t[0], dtype)
                                     if t[0] is not None and out.type.is_float else None),
    batch=functools.partial(batching.elementwise, "convert"),
    c_expr=lambda operands, ctype: f"({ctype})({operands[0]})",
    simplify=lambda node, ins, producer: ins[0] if ins[0].type == node.out.type else None,
    same_elements=True,     # for index data (ints to ints), where it is looked through
    cost=0,
    doc="convert[dtype](x): a cast; gradients flow back between float dtypes only",
))


# --- stop_gradient: the identity, with no derivative ------------------------------------------

register(Primitive(
    name="stop_gradient", elementwise=True,
    shape_rule=functools.partial(_broadcast_type, "stop_gradient", float_only=False,
                                 complex_ok=True),
    impl=lambda x: x,
    vjp=_no_gradient,
    jvp=_no_tangent,
    batch=functools.partial(batching.elementwise, "stop_gradient"),
    c_expr=lambda operands, ctype: operands[0],
    gradient_barrier=True,
    cost=0,
    doc="stop_gradient(x) = x, treated as a constant by reverse mode",
))


# --- chain_mul: the chain rule's product, NaN-safe by construction ------------------------------
# Reverse and forward mode multiply an incoming adjoint (or tangent) g by a local derivative d.
# Where either is exactly 0 the product is exactly 0, even if the other is inf or NaN:
# - g == 0: the branch a where/maximum/clip/abs did not take. where(x > 0, sqrt(x), 0) has a
#   finite gradient at 0, which plain g * d (JAX, autograd) turns into NaN;
# - d == 0: a zero partial behind an infinite adjoint, the chain 0 * inf of sqrt at 0:
#   sqrt(x**4) (= x**2, slope 0), and sqrt(sum(x**2)) at x = 0, whose subgradient 0 this gives
#   (JAX: NaN). Forward mode meets the same product the other way round (x * sqrt(x) at 0).
# A zero factor wins ("strong zero", as in Julia's ChainRules): the result is 0 or a valid
# subgradient wherever the chain's infinity comes from a square root, and an infinite slope that
# no zero meets (sqrt at 0 itself) stays infinite.

def _chain_mul_impl(g, d):
    with np.errstate(all="ignore"):
        return np.where((g == 0) | (d == 0), np.zeros((), dtype=np.result_type(g, d)), g * d)


def _chain_mul_vjp(a, out, g, d):
    return (ops.sum_to_shape(bind("chain_mul", a, d), g.shape),
            ops.sum_to_shape(bind("chain_mul", a, g), d.shape))


def _chain_mul_jvp(t, out, g, d):
    tg, td = t
    terms = [bind("chain_mul", tg, d) if tg is not None else None,
             bind("chain_mul", g, td) if td is not None else None]
    terms = [x for x in terms if x is not None]
    total = terms[0] if len(terms) == 1 else ops.add(*terms)
    return ops.broadcast_to(total, out.shape)


def _chain_mul_c(operands, ctype, scalar=False):
    """In loops the helper of templates/branch_free.c.j2; in a scalar statement the branches
    (see Primitive.c_scalar_expr)."""
    g, d = operands
    zero = "0.0f" if ctype == "float" else "0.0"
    known_g, known_d = literal_value(g), literal_value(d)
    for known, other in ((known_g, d), (known_d, g)):
        if known is not None and np.isfinite(known):    # a literal factor: the test is decided
            return zero if known == 0 else other if known == 1 else f"{g}*{d}"
    if ctype in ("double", "float") and not scalar:   # branch-free: loops of it vectorize
        return f"symgradrt_chain_mul{'f' if ctype == 'float' else ''}({g}, {d})"
    return f"(({g} == 0 || {d} == 0) ? {zero} : {g}*{d})"


register(Primitive(
    name="chain_mul", elementwise=True,
    shape_rule=functools.partial(_broadcast_type, "chain_mul", float_only=True, complex_ok=True),
    impl=_chain_mul_impl, vjp=_chain_mul_vjp, jvp=_chain_mul_jvp, c_expr=_chain_mul_c,
    c_scalar_expr=functools.partial(_chain_mul_c, scalar=True),
    batch=functools.partial(batching.elementwise, "chain_mul"),
    # Units as for mul (g = 1 gives d, d = 1 gives g: a zero factor still gives 0); it prints as
    # the math.
    identities=((0, 1), (1, 1)), infix="{0} * {1}",
    doc="chain_mul(g, d) = g * d, and exactly 0 where g or d is 0 (even if the other is inf or NaN)",
))
