"""What converted code calls: Python's statements, deciding at run time whether a value is traced.

``symgrad.frontend.autograph`` rewrites a function's ``if``/``for``/``while``, ``and``/``or``/
``not``, conditional expressions, calls and in-place updates into calls of the functions here
(``_sg.<name>`` in converted code, ``_sg`` being the converter's module, which re-exports them).
Each one looks at the values it gets:

- plain Python values (a Python bool condition, a ``range`` of ints no traced value flows
  through) run exactly as Python would, so Python control flow stays Python control flow;
- a traced condition runs both branches of an ``if`` (the values each assigns are selected with
  ``where``); a loop whose trip count or state is traced becomes one ``scan`` statement (a C loop
  with a tape for reverse mode, ``symgrad.frontend.loops``), its state the variables the loop
  assigns that exist before it.

State goes in and out of the generated branch and body functions as tuples of values, in the order
of ``names``; a variable that does not exist yet is ``Undefined``. Arrays updated in place are
``Tracer`` boxes: their *roots* (the array a view was taken of) are saved before a branch and put
back after it, and are carried through loops, so an in-place write inside a branch or a loop is
seen by every name and view of the array afterwards, as in NumPy.
"""
from __future__ import annotations

import builtins
import math
import operator

import numpy as np

from symgrad.core import dims
from symgrad.core.ir import Builder, Var, building, current_builder, user_location
from symgrad.core.primitives import REGISTRY, bind
from symgrad.core.types import TensorType
from symgrad.errors import ShapeError, TracingError, where
from symgrad.frontend import loops
from symgrad.frontend.tracer import WRITES, Tracer, View
from symgrad.tree_util import tree_leaves, tree_map
from symgrad import numpy as snp

# A while loop on a traced condition runs this many steps at most unless the loop's line says
# otherwise (``while t < T:  # symgrad: max_steps=5000``); docs/python_code.md explains why.
MAX_WHILE_STEPS = loops.MAX_WHILE_STEPS


class Undefined:
    """The value of a variable that is not (or not everywhere) defined: any use is an error
    naming the variable and why, as the NameError Python would raise would not say it."""
    __slots__ = ("name", "why")

    def __init__(self, name, why=None):
        self.name, self.why = name, why

    def fail(self):
        why = self.why or "is used before it is assigned"
        raise TracingError(f"the variable {self.name!r} {why}{where(user_location())}")

    def __getattr__(self, attr):
        self.fail()

    def __repr__(self):
        return f"<undefined {self.name}>"


def _poison(op):
    def fail(self, *args, **kwargs):
        self.fail()
    return fail


for _op in ("__bool__", "__add__", "__radd__", "__sub__", "__rsub__", "__mul__", "__rmul__",
            "__truediv__", "__rtruediv__", "__pow__", "__rpow__", "__matmul__", "__rmatmul__",
            "__neg__", "__getitem__", "__setitem__", "__lt__", "__le__", "__gt__", "__ge__",
            "__len__", "__iter__", "__array__", "__float__", "__int__", "__index__", "__call__",
            "__abs__", "__array_ufunc__", "__array_function__"):
    setattr(Undefined, _op, _poison(_op))
Undefined.__eq__ = _poison("__eq__")
Undefined.__ne__ = _poison("__ne__")
Undefined.__hash__ = lambda self: id(self)


class _Unset:
    """The initial return value of a function whose returns were lowered to assignments: a branch
    that has not returned leaves it unset, and selection takes the other branch's value."""

    def __repr__(self):
        return "<no return value yet>"


UNSET = _Unset()


def _defined(v):
    return not isinstance(v, (Undefined, _Unset))


def ld(thunk, name):
    """The value of the variable ``name`` (read by ``thunk``), or Undefined."""
    try:
        return thunk()
    except NameError:
        return Undefined(name)


def _tracing():
    return current_builder() is not None


def _traced(v):
    return isinstance(v, Tracer)


def _line():
    loc = user_location()
    return f"line {loc.lineno}" if loc is not None else "this line"


# --- expressions ------------------------------------------------------------------------------

def _cond(value, what):
    """A traced condition as a 0-d bool Tracer."""
    if isinstance(value, Undefined):
        value.fail()
    if value.ndim != 0 and value.size != 1:
        raise TracingError(f"{what} on a traced array of shape {value.shape}: its truth value is "
                           f"ambiguous (as in NumPy){where(user_location())}. Use .any() or "
                           f".all(), or np.where for elementwise choice")
    if value.ndim:
        value = snp.reshape(value, ())
    return value if value.dtype == np.bool_ else snp.not_equal(value, 0)


def not_(x):
    if _traced(x):
        return snp.equal(_cond(x, "not"), False)
    return not x


def and_(*thunks):
    """``a and b and ...``: Python's (short-circuit, returning an operand) until a traced value
    appears, then NumPy's logical_and of the truth values of the rest (all evaluated)."""
    value = thunks[0]()
    for k, thunk in enumerate(thunks[1:], 1):
        if _traced(value):
            rest = [_cond(value, "and")] + [_as_cond(t(), "and") for t in thunks[k:]]
            out = rest[0]
            for r in rest[1:]:
                out = snp.where(out, r, False)
            return out
        if not value:
            return value
        value = thunk()
    return value


def or_(*thunks):
    value = thunks[0]()
    for k, thunk in enumerate(thunks[1:], 1):
        if _traced(value):
            rest = [_cond(value, "or")] + [_as_cond(t(), "or") for t in thunks[k:]]
            out = rest[0]
            for r in rest[1:]:
                out = snp.where(out, True, r)
            return out
        if value:
            return value
        value = thunk()
    return value


def _as_cond(v, what):
    return _cond(v, what) if _traced(v) else bool(v)


def ifexp(test, body, orelse):
    """``body() if test else orelse()``: both evaluated and selected when ``test`` is traced."""
    if not _traced(test):
        return body() if test else orelse()
    c = _cond(test, "a conditional expression")
    a, b = body(), orelse()
    _check_same_shape(a, b, "the conditional expression's two values")
    return snp.where(c, a, b)


def _check_same_shape(a, b, what, name=None):
    sa, sb = np.shape(a) if not _traced(a) else a.shape, np.shape(b) if not _traced(b) else b.shape
    if len(sa) != len(sb) or not all(dims.equal(x, y) for x, y in zip(sa, sb)):
        subject = f"the variable {name!r}" if name else what
        raise TracingError(f"{subject} has shape {tuple(sa)} in one branch and {tuple(sb)} in "
                           f"the other of the if at {_line()}, whose condition is traced (both "
                           f"branches run and their values are selected, so they must agree)"
                           f"{where(user_location())}")


# --- calls: NumPy-spelled code, math and the builtins on traced values --------------------------

_MATH = {math.exp: "exp", math.log: "log", math.log1p: "log1p", math.expm1: "expm1",
         math.sqrt: "sqrt", math.sin: "sin", math.cos: "cos", math.tan: "tan",
         math.asin: "arcsin", math.acos: "arccos", math.atan: "arctan", math.sinh: "sinh",
         math.cosh: "cosh", math.tanh: "tanh", math.fabs: "abs", math.pow: "power",
         math.atan2: "arctan2", math.hypot: "hypot", math.floor: "floor", math.ceil: "ceil",
         math.log2: "log2", math.log10: "log10", math.erf: "erf", math.trunc: "trunc"}
_ARRAY_MAKERS = (np.array, np.asarray, np.asanyarray, np.ascontiguousarray)
_SCALAR_TYPES = {np.float64: "float64", np.float32: "float32", np.int64: "int64",
                 np.int32: "int32", float: "float64", int: "int64"}


def _has_traced(values):
    for v in values:
        if _traced(v):
            return True
        if isinstance(v, (list, tuple)) and _has_traced(v):
            return True
    return False


def retval(v, returned=True, falls_off=False):
    """What a function whose returns were lowered to assignments returns. ``returned``: the
    flag ``_sg_ret``; ``falls_off``: whether the function's end can be reached without a
    ``return`` (Python returns None there)."""
    if falls_off and _defined(v) and _traced(returned):
        raise TracingError(f"the function returns a value only where a traced condition holds "
                           f"and ends without a return (None) elsewhere{where(user_location())}; "
                           f"symgrad cannot select between a value and None: end the function "
                           f"with a return")
    if falls_off and not _traced(returned) and not returned:
        return None
    return None if isinstance(v, _Unset) else v


def special_call(f, args, kwargs):
    """``f(*args, **kwargs)`` done by symgrad when ``f`` is a function of ``math``, a builtin
    or a NumPy constructor that does not dispatch on traced arguments; else NotImplemented."""
    try:
        name = _MATH.get(f)
        hashable = True
    except TypeError:
        name, hashable = None, False
    if name is not None and _has_traced(args):
        from symgrad.frontend.tracer import implementation
        return implementation(name)(*args)
    if not hashable:
        return NotImplemented
    if f in (builtins.max, builtins.min) and not kwargs:
        items = args[0] if len(args) == 1 else args
        if len(args) == 1 and _traced(items):
            return snp.max(items) if f is builtins.max else snp.min(items)
        if len(args) > 1 or isinstance(items, (list, tuple)):
            items = list(items)
            if _has_traced(items):
                pick = snp.maximum if f is builtins.max else snp.minimum
                out = items[0]
                for v in items[1:]:
                    out = pick(out, v)
                return out
        return NotImplemented
    if f is builtins.sum and len(args) == 1 and _traced(args[0]) and not kwargs:
        return snp.sum(args[0], axis=0)
    if f in _ARRAY_MAKERS and args and _has_traced(args[:1]):
        out = snp.asarray(args[0])
        dtype = kwargs.get("dtype", args[1] if len(args) > 1 else None)
        return snp.astype(out, dtype) if dtype is not None else out
    if f in _SCALAR_TYPES and len(args) == 1 and _traced(args[0]) and not kwargs:
        if args[0].size != 1:
            return NotImplemented
        return snp.astype(snp.reshape(args[0], ()), _SCALAR_TYPES[f])
    return NotImplemented


# --- in-place updates ---------------------------------------------------------------------------

_BINARY = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv,
           "//": operator.floordiv, "%": operator.mod, "**": operator.pow, "@": operator.matmul}
_INPLACE = {"+": operator.iadd, "-": operator.isub, "*": operator.imul, "/": operator.itruediv,
            "//": operator.ifloordiv, "%": operator.imod, "**": operator.ipow,
            "@": operator.imatmul}


def _becomes_traced(a, *values):
    """Whether the NumPy array ``a`` must turn into a traced array to receive ``values``."""
    return isinstance(a, np.ndarray) and _tracing() and _has_traced(values)


def setitem(a, key, v):
    """``a[key] = v``; returns what the name ``a`` holds afterwards (a traced array when a NumPy
    array created in the function receives a traced value)."""
    if isinstance(a, Undefined):
        a.fail()
    if _becomes_traced(a, v, key if isinstance(key, tuple) else (key,)):
        a = snp.asarray(a)
        a = Tracer(a.irvar)
    a[key] = v
    return a


def setitem_aug(a, key, op, v):
    """``a[key] op= v`` as NumPy does it: ``a[key] = a[key] op v`` (so a repeated index is
    updated once, the last write winning)."""
    if isinstance(a, Undefined):
        a.fail()
    if _becomes_traced(a, v, key if isinstance(key, tuple) else (key,)):
        a = Tracer(snp.asarray(a).irvar)
    if isinstance(a, Tracer):
        old = snp.getitem(a, key)
        new = _BINARY[op](old, v)
        if new.dtype != a.dtype and not (new.dtype.kind in "iub" or a.dtype.kind in "fc"):
            raise TypeError(f"a[...] {op}= v: cannot cast the {new.dtype} result to the "
                            f"{a.dtype} array{where(user_location())}")
        a[key] = new
        return a
    a[key] = _INPLACE[op](a[key], v)
    return a


def ufunc_at(method, a, *args):
    """``np.add.at(a, ...)``: returns what the name ``a`` holds afterwards (a NumPy array made
    in the function becomes traced to receive traced values)."""
    if isinstance(a, Undefined):
        a.fail()
    if _becomes_traced(a, *args):
        a = Tracer(snp.asarray(a).irvar)
    method(a, *args)
    return a


def iop(op, x, v):
    """``x op= v``: in place for arrays (a traced array's box is updated, so aliases and views
    see it, as in NumPy), rebinding for numbers."""
    if isinstance(x, Undefined):
        x.fail()
    if _becomes_traced(x, v):
        return _BINARY[op](Tracer(snp.asarray(x).irvar), v)
    return _INPLACE[op](x, v)


# --- boxes: the arrays a branch or a loop may update in place -----------------------------------

def _root(t):
    while isinstance(t, View):
        t = t.base
    return t


def _roots(values):
    out = []
    for v in values:
        if isinstance(v, Tracer):
            r = _root(v)
            if not any(r is o for o in out):
                out.append(r)
    return out


class _Writes:
    """Logs the arrays (boxes) written while it is active (``tracer.WRITES``), with their values
    before the first write: ``into(saved)`` adds them to a {id: (box, value before)} map."""

    def __enter__(self):
        self.log = {}
        WRITES.append(self.log)
        return self

    def __exit__(self, *exc):
        WRITES.pop()

    def into(self, saved):
        for k, entry in self.log.items():
            saved.setdefault(k, entry)

    def undo(self):
        _undo(self.log)


def _undo(saved):
    """Put back the values of a {id: (box, value)} map, without logging it as a write."""
    for r, v in saved.values():
        r._irvar = v


# --- if ---------------------------------------------------------------------------------------

def if_stmt(test, body, orelse, state, names, boxes=()):
    """``if test: body else: orelse`` over the variables ``names`` (values ``state``); returns
    their values afterwards. ``boxes``: arrays of the enclosing scopes written in place."""
    if isinstance(test, Undefined):
        test.fail()
    if not _traced(test):
        return body(*state) if test else orelse(*state)
    c = _cond(test, "if")
    line = _line()
    # The arrays either branch may write: the enclosing scopes' (``boxes``, the state's) and
    # any other a branch writes through a call (``helper(m)`` doing ``m[i] = v``), logged.
    saved = {id(r): (r, r.irvar) for r in _roots(list(state) + list(boxes))}
    try:
        with _Writes() as written:
            taken = body(*state)
        written.into(saved)
        after_true = {k: r.irvar for k, (r, _) in saved.items()}
        _undo(saved)
        with _Writes() as written:
            other = orelse(*state)
        written.into(saved)
        after_false = {k: r.irvar for k, (r, _) in saved.items()}
    finally:
        _undo(saved)
    for k, (r, before) in saved.items():
        t, f = after_true.get(k, before), after_false[k]
        if t is not f:
            r.irvar = _select(c, Tracer(t), Tracer(f), None, line).irvar
    return tuple(_merge(c, a, b, name, line) for a, b, name in zip(taken, other, names))


def _merge(c, a, b, name, line):
    if a is b:
        return a
    if isinstance(a, _Unset):
        return b
    if isinstance(b, _Unset):
        return a
    if not _defined(a) or not _defined(b):
        return Undefined(name, f"is assigned in only one branch of the if at {line}, whose "
                               f"condition is traced (both branches run); assign it before the "
                               f"if or in both branches")
    if _arrayish(a) and _arrayish(b):
        return _select(c, a, b, name, line)
    if type(a) in (tuple, list) and type(a) is type(b) and len(a) == len(b):
        # (value, index) pairs and the like: each element selected (a return of a tuple)
        return type(a)(_merge(c, x, y, f"{name}[{k}]", line) for k, (x, y) in
                       enumerate(zip(a, b)))
    try:
        same = bool(a == b)
    except Exception:
        same = False
    if same:
        return a
    raise TracingError(f"the variable {name!r} holds different Python objects ({type(a).__name__}"
                       f", {type(b).__name__}) after the two branches of the if at {line}, whose "
                       f"condition is traced; only arrays and numbers can be selected")


def _arrayish(v):
    return isinstance(v, (Tracer, np.ndarray, np.generic, int, float, bool, complex))


def _carriable(v):
    """An array or number, or a tuple or list of them (nested): what a loop can carry."""
    if type(v) in (tuple, list):
        return len(v) > 0 and all(_carriable(e) for e in v)
    return _arrayish(v)


def _fresh(v):
    """``v`` (a carried value) with new boxes: the scan's carries must not alias the state's."""
    if type(v) in (tuple, list):
        return type(v)(_fresh(e) for e in v)
    return Tracer(v.irvar)


def _select(c, a, b, name, line):
    _check_same_shape(a, b, "a value", name)
    return snp.where(c, a, b)


# --- loops ------------------------------------------------------------------------------------

class Range:
    """The arguments of ``range(...)`` in a ``for`` statement, kept apart so that traced bounds
    and run-time sizes reach the loop (``range`` itself takes only ints)."""
    __slots__ = ("args",)

    def __init__(self, *args):
        if not 1 <= len(args) <= 3:
            raise TypeError(f"range expected 1 to 3 arguments, got {len(args)}")
        self.args = args

    def bounds(self):
        a = self.args
        start, stop, step = (0, a[0], 1) if len(a) == 1 else (a[0], a[1], a[2] if len(a) > 2 else 1)
        return start, stop, step

    def python(self):
        return all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in self.args)


class Enumerate:
    """``enumerate(iterable, start)`` in a ``for`` statement: over a traced array, the loop
    scans its rows and the index is the step's (a C loop, not unrolled)."""
    __slots__ = ("iterable", "start")

    def __init__(self, iterable, start=0):
        self.iterable, self.start = iterable, start

    def python(self):
        return enumerate(_python_iterable(self.iterable), self.start)


class Zip:
    """``zip(a, b, ...)`` in a ``for`` statement: over traced arrays (and NumPy arrays and
    ranges beside them), the loop scans their rows together."""
    __slots__ = ("iterables", "strict")

    def __init__(self, *iterables, strict=False):
        self.iterables, self.strict = iterables, strict

    def python(self):
        its = [_python_iterable(v) for v in self.iterables]
        return zip(*its, strict=True) if self.strict else zip(*its)


def _python_iterable(v):
    if isinstance(v, Range):
        return range(*v.args)
    if isinstance(v, (Enumerate, Zip)):
        return v.python()
    return v


def _rows(iterable):
    """How a ``for`` over ``iterable`` scans rows: ``(xs, item(i, x), length)`` (``xs`` a
    traced array or a tuple of arrays; ``item`` builds the loop target from the step index
    and the step's rows), or None when it is not over a traced array."""
    if isinstance(iterable, Tracer) and iterable.ndim:
        return _Rows((iterable, lambda i, x: x, iterable.shape[0]))
    if isinstance(iterable, Enumerate):
        inner = _rows(iterable.iterable)
        if inner is None:
            return None
        xs, item, n = inner
        start = iterable.start
        if _traced(start) or not isinstance(start, (int, np.integer)):
            return None
        return _Rows((xs, lambda i, x: (i if start == 0 else snp.add(i, start), item(i, x)), n))
    if isinstance(iterable, Zip):
        parts = [_rows(v) if isinstance(v, (Tracer, Enumerate, Zip)) else _range_of(v)
                 for v in iterable.iterables]
        if not any(isinstance(p, _Rows) for p in parts) or any(
                p is None or not (isinstance(p, (_Rows, _Steps)) or
                                  isinstance(p, np.ndarray) and p.ndim) for p in parts):
            return None
        lengths = [p[2] if isinstance(p, _Rows) else p.length if isinstance(p, _Steps)
                   else len(p) for p in parts]
        if all(dims.is_static(n) for n in lengths):
            n = min(lengths)
            if iterable.strict and len(set(lengths)) > 1:
                raise ValueError(f"zip() arguments have lengths {lengths} (strict=True)"
                                 f"{where(user_location())}")
        else:
            n = lengths[0]
            if not all(dims.equal(m, n) for m in lengths):
                raise TracingError(f"a for loop over zip() of arrays of leading sizes "
                                   f"{lengths}{where(user_location())}: the sizes may differ at "
                                   f"run time; slice them to one length (a[:n])")
        xs, items = [], []
        for p in parts:
            if isinstance(p, _Steps):
                items.append(lambda i, x, r=p: r.at(i))
                continue
            if isinstance(p, np.ndarray):
                p = (snp.asarray(p), lambda i, x: x, len(p))
            sub_xs, sub_item, m = p
            if not (dims.is_static(m) and dims.is_static(n) and m == n):
                sub_xs = tree_map(lambda a: a if dims.equal(a.shape[0], n) else a[:n], sub_xs)
            j = len(xs)
            xs.append(sub_xs)
            items.append(lambda i, x, j=j, f=sub_item: f(i, x[j]))
        return _Rows((tuple(xs), lambda i, x: tuple(f(i, x) for f in items), n))
    return None


class _Rows(tuple):
    """``(xs, item(i, x), length)``: how a ``for`` loop scans rows (see ``_rows``); a class of
    its own so that a Python tuple zipped beside arrays is not mistaken for one."""


class _Steps:
    """A range beside arrays in a ``zip``: its value at step ``i`` and its length."""

    def __init__(self, start, step, length):
        self.start, self.step, self.length = start, step, length

    def at(self, i):
        i = i if (not _traced(self.step) and self.step == 1) else snp.multiply(i, self.step)
        return i if (not _traced(self.start) and self.start == 0) else snp.add(i, self.start)


def _range_of(v):
    """A ``range`` (or ``Range``) in a ``zip`` as ``_Steps``; anything else as it is."""
    if isinstance(v, range):
        return _Steps(v.start, v.step, len(v))
    if isinstance(v, Range):
        if v.python():
            return _range_of(range(*v.args))
        start, stop, step = v.bounds()
        if _traced(step) or step != 1:
            return None
        lower, upper = loops.trip_count(start, "zip"), loops.trip_count(stop, "zip")
        return _Steps(start, 1, dims.at_least_zero(dims.normalize(upper - lower)))
    return v


class _MoreBoxes(Exception):
    """A loop body wrote arrays of the enclosing scope that are not carried yet."""

    def __init__(self, boxes):
        super().__init__()
        self.boxes = boxes


class _Unroll(Exception):
    """A loop that cannot become a scan, run as a Python loop instead (its trip count is known)."""


def for_stmt(iterable, body, state, names, inplace=(), brk=None, boxes=(), checkpoint=None):
    """``for target in iterable: body`` over the variables ``names``; ``body(i, *state)``
    returns the state after one step. ``inplace``: names only updated in place (their arrays'
    boxes are carried, not their bindings); ``brk``: the index in ``names`` of the loop's break
    flag; ``checkpoint``: the loop's ``# symgrad: checkpoint=K`` (as ``symgrad.scan``'s), for
    the C loop it becomes."""
    if isinstance(iterable, Range) and _tracing():
        start, stop, step = iterable.bounds()
        static = iterable.python()
        if not static or _should_scan(body, state, None):
            try:
                return _scan_range(body, state, names, inplace, brk, boxes, start, stop, step,
                                   static, checkpoint)
            except _Unroll:
                pass
        iterable = range(*iterable.args)
    elif isinstance(iterable, Range):
        iterable = range(*iterable.args)
    elif _tracing() and (rows := _rows(iterable)) is not None:
        # Over the rows of traced arrays (``x``, ``enumerate(x)``, ``zip(x, y)``): a scan over
        # them (xs), or Python's iteration (the leading size is known) when no traced state
        # flows through the loop.
        xs, item, n = rows
        static = dims.is_static(n)

        def probe():
            i = Tracer(Var(TensorType((), "int64"), name="i"))
            return item(i, tree_map(lambda a: Tracer(Var(TensorType(a.shape[1:], a.irvar.dtype),
                                                         name="x")), xs))
        if not static or _should_scan(body, state, probe):
            try:
                return _run_loop(lambda i, x, current: body(item(i, x), *current), state, names,
                                 inplace, boxes, static, n, "for loop", xs=xs,
                                 checkpoint=checkpoint)
            except _Unroll:
                pass
    iterable = _python_iterable(iterable)
    for item in iterable:
        state = body(item, *state)
        if brk is not None and not _traced(state[brk]) and state[brk]:
            break
        if brk is not None and _traced(state[brk]):
            raise TracingError(f"break on a traced condition inside a loop over a Python "
                               f"iterable{where(user_location())}; loop over range(...) instead")
    return state


def _should_scan(body, state, item):
    """For a loop over a range of Python ints: whether traced values flow through it (then it
    becomes a C loop instead of being unrolled). Decided by tracing one step with a traced
    index into a scratch graph; a step that cannot take a traced index is unrolled."""
    if any(_traced(v) for v in state):
        return True
    roots = _roots(state)
    saved = [r.irvar for r in roots]
    written = _Writes()
    try:
        with building(Builder()), written:
            item = Tracer(Var(TensorType((), "int64"), name="i")) if item is None else item()
            out = body(item, *state)
        return any(_traced(v) for v in out) or any(
            not any(r is box for r in roots) for box, _ in written.log.values())
    except Exception:
        return False
    finally:
        written.undo()
        for r, v in zip(roots, saved):
            r._irvar = v


def _carry_value(v, dtype=None):
    if type(v) in (tuple, list):
        return type(v)(_carry_value(e) for e in v)
    if isinstance(v, Tracer):
        return v if dtype is None or v.dtype == dtype else snp.astype(v, dtype)
    arr = np.asarray(v)
    if dtype is not None:
        arr = arr.astype(dtype)
    elif isinstance(v, bool):
        arr = arr.astype(bool)
    elif isinstance(v, int):
        arr = arr.astype(np.int64)
    elif isinstance(v, float):
        arr = arr.astype(np.float64)
    return snp.asarray(arr)


def _carries(state, names, inplace, boxes, static):
    """The loop's carried slots: [(kind, index or root)]: "root" for an array updated in place
    (its box), "name" for a variable's binding."""
    roots = _roots([v for v in state if isinstance(v, Tracer)] + list(boxes))
    slots = [("root", r) for r in roots]
    for k, (v, name) in enumerate(zip(state, names)):
        if not _defined(v):
            continue            # not assigned yet; _sg_retval: no step returns (see _returned)
        if name in inplace and isinstance(v, Tracer):
            continue            # its box is a root's slot (or a view of one)
        if not _carriable(v):
            if static:
                raise _Unroll()
            if callable(v) or v is None:
                continue
            raise TracingError(f"the variable {name!r} is assigned in a loop compiled as a C loop "
                               f"but holds a {type(v).__name__}, not an array or a number"
                               f"{where(user_location())}")
        slots.append(("name", k))
    return slots


def _run_loop(step_fn, state, names, inplace, boxes, static, length, what, offset=0, stride=1,
              xs=None, checkpoint=None, count=None):
    """One scan over the carried slots of ``state``; ``step_fn(i, state)`` runs one step on
    the state (whose carried values are the scan's carries). Returns the state after it.
    ``checkpoint``: as ``symgrad.scan``'s (None, K or "sqrt"). ``count``: ``(name, k, limit)``
    for a while loop counted at run time whose ``state[k]`` is the flag its gated steps set
    (``loops.indexed_scan``'s ``count``)."""
    if checkpoint is not None and count is None:
        steps = length
        if not dims.is_static(steps):
            raise TracingError(f"# symgrad: checkpoint={checkpoint} needs a trip count known "
                               f"when tracing; the {what}{where(user_location())} runs {steps} "
                               f"times (a run-time size). Drop the directive, or give the size "
                               f"in the signature")
    state = _returned(step_fn, state, names, xs)
    slots = _carries(state, names, inplace, boxes, static)
    if not slots:
        # Nothing assigned: the body may still write arrays of the enclosing scope through
        # calls (``helper(m, i)`` doing ``m[i] = v``); those are its carries.
        probe = _probe(lambda i, x, current: step_fn(i, x, current), state, xs)
        if probe is not None and probe[1]:
            return _run_loop(step_fn, state, names, inplace, tuple(boxes) + tuple(probe[1]),
                             static, length, what, offset, stride, xs, checkpoint, count)
        raise _Unroll() if static else TracingError(
            f"a loop with a traced trip count that assigns no array{where(user_location())}")
    roots = [r for kind, r in slots if kind == "root"]
    saved = [r.irvar for r in roots]
    dtypes = [None] * len(slots)
    for attempt in range(2):
        init = tuple(r if kind == "root" else _carry_value(state[r], dtypes[j])
                     for j, (kind, r) in enumerate(slots))
        init = tuple(_fresh(v) for v in init)
        seen = {}

        def f(i, c, x):
            for (kind, r), v in zip(slots, c):
                if kind == "root":
                    r._irvar = v.irvar
            current = list(state)
            for (kind, r), v in zip(slots, c):
                if kind == "name":
                    current[r] = v
            index = i if stride == 1 else snp.multiply(i, stride)
            if not (isinstance(offset, int) and offset == 0):
                index = snp.add(index, offset)
            inputs = {id(v.irvar) for v in tree_leaves((i, x, c))}    # before the step writes
            with _Writes() as written:
                out = step_fn(index, x, current)
            # (the nodes after the step: an array the step created and then wrote is its own)
            inner = inputs | {id(n.out) for n in current_builder().nodes}
            outer = [box for box, before in written.log.values()
                     if id(before) not in inner and not any(box is r for r in roots)]
            if outer:
                # An array of the enclosing scope written through a call (a helper writing
                # its argument): carried too, in a new attempt.
                written.undo()
                raise _MoreBoxes(outer)
            new = []
            for j, (kind, r) in enumerate(slots):
                value = r if kind == "root" else out[r]
                if not _defined(value):
                    raise TracingError(f"the variable {names[r]!r} is no longer defined after a "
                                       f"step of the loop at {_line()}")
                if not _carriable(value):
                    raise TracingError(f"the variable {names[r]!r} holds a "
                                       f"{type(value).__name__} after a step of the loop, not "
                                       f"an array{where(user_location())}")
                value = _carry_value(value)
                if isinstance(value, Tracer):
                    seen[j] = value.dtype, value.shape
                new.append(_fresh(value))
            seen["out"] = out
            return tuple(new), None
        counted = None
        if count is not None:
            name, k, limit = count
            j = slots.index(("name", k))
            counted = (name, len(tree_leaves(init[:j])), limit)
        try:
            final, _ = loops.indexed_scan(f, init, xs, length, what, checkpoint, count=counted)
            break
        except _MoreBoxes as more:
            for r, v in zip(roots, saved):
                r._irvar = v
            known = _roots(list(boxes))
            if all(any(b is k for k in known) for b in more.boxes):     # no progress
                raise TracingError(f"the {what}{where(user_location())} writes arrays it "
                                   f"does not carry (a symgrad bug: please report it)")
            return _run_loop(step_fn, state, names, inplace, tuple(boxes) + tuple(more.boxes),
                             static, length, what, offset, stride, xs, checkpoint, count)
        except (ShapeError, TypeError) as e:
            # A Python number entering the loop adopts the type the body gives it (0 -> 0.0).
            changed = False
            for j, (kind, r) in enumerate(slots):
                if j in seen and kind == "name" and not isinstance(state[r], Tracer):
                    dt, shape = seen[j]
                    if np.dtype(dt) != np.asarray(state[r]).dtype and shape == ():
                        dtypes[j] = np.promote_types(dt, _carry_value(state[r]).dtype).name
                        changed = True
            for r, v in zip(roots, saved):
                r._irvar = v
            if attempt or not changed:
                if static:          # e.g. an array that grows each step: unrolled, as before
                    raise _Unroll() from e
                raise
        except Exception:
            # A step that cannot run with a traced index (x[:i], layers[i]): unrolled when the
            # trip count is known (the Python loop raises the same error if it is the user's).
            for r, v in zip(roots, saved):
                r._irvar = v
            if static:
                raise _Unroll()
            raise
    for r, v in zip(roots, saved):
        r._irvar = v            # as before the loop, so that the write below logs that value
    out = list(state)
    for (kind, r), v in zip(slots, final):
        if kind == "root":
            r.irvar = v.irvar
        else:
            out[r] = v
    for k, (v, name) in enumerate(zip(state, names)):
        if not _defined(v) and name != "_sg_retval":
            out[k] = Undefined(name, f"is assigned only inside the loop at {_line()}, which "
                                     f"runs as a C loop; assign it before the loop to use it "
                                     f"after")
    return tuple(out)


def _probe(step_fn, state, xs):
    """One step of a loop traced into a scratch graph (nothing of it stays): ``(the state
    after it, the arrays of the enclosing scopes it writes)``, or None when the step cannot
    run on traced values (the loop then raises the error itself, or is unrolled)."""
    roots = _roots(list(state))
    saved = [r.irvar for r in roots]
    written = _Writes()
    scratch = Builder()
    try:
        with building(scratch), written:
            i = Tracer(Var(TensorType((), "int64"), name="i"))
            x = None if xs is None else tree_map(
                lambda a: Tracer(Var(TensorType(a.shape[1:], a.irvar.dtype), name="x")), xs)
            out = step_fn(i, x, list(state))
    except TracingError:
        raise
    except Exception:
        return None
    finally:
        written.undo()
        for r, v in zip(roots, saved):
            r._irvar = v
    inner = {id(n.out) for n in scratch.nodes}
    outer = [box for box, before in written.log.values()
             if id(before) not in inner and not any(box is r for r in roots)]
    return out, outer


def _returned(step_fn, state, names, xs):
    """``state`` with the function's return value (``_sg_retval``, lowered by the conversion)
    made a carry when a step of the loop may ``return``: it starts as zeros of the type a step
    returns (found by tracing one step into a scratch graph) and the steps select it, with the
    return flag ``_sg_ret``, as AutoGraph does; the statements after the loop run under
    ``if not _sg_ret``, so the zeros are never the function's result."""
    if "_sg_retval" not in names:
        return state
    k = names.index("_sg_retval")
    if _defined(state[k]):
        return state
    probe = _probe(step_fn, state, xs)
    if probe is None or not _defined(probe[0][k]):
        return state
    value = probe[0][k]
    if not _carriable(value):
        raise TracingError(
            f"return of a {type(value).__name__} inside a loop over traced values"
            f"{where(user_location())}: only arrays and numbers (or tuples of them) "
            f"can be selected between the steps; assign the results to variables, "
            f"break, and return them after the loop")
    out = list(state)
    out[k] = _zeros(value)
    return tuple(out)


def _zeros(template):
    """Zeros of the types of ``template`` (a value of the scratch graph), in the current
    graph."""
    if type(template) in (tuple, list):
        return type(template)(_zeros(t) for t in template)
    template = _carry_value(template) if not isinstance(template, Tracer) else template
    return snp.zeros(template.shape, dtype=template.dtype)


def _scan_range(body, state, names, inplace, brk, boxes, start, stop, step, static,
                checkpoint=None):
    if isinstance(step, Tracer) or step == 0:
        raise TracingError(f"range() with a traced or zero step{where(user_location())}")
    if step == 1:
        lower = loops.trip_count(start, "for loop")
        upper = loops.trip_count(stop, "for loop")
        length = dims.at_least_zero(dims.normalize(upper - lower))
    elif static:
        length = len(range(start, stop, step))
        lower = start
    else:
        raise TracingError(f"range() with a step other than 1 needs Python int bounds"
                           f"{where(user_location())}")
    if dims.is_static(length) and length == 0:
        return state

    def step_fn(i, x, current):
        return body(i, *current)
    return _run_loop(step_fn, state, names, inplace, boxes, static, length, "for loop",
                     start, step, checkpoint=checkpoint)


def while_stmt(test, body, state, names, inplace=(), boxes=(), max_steps=None, checkpoint=None):
    """``while test(*state): state = body(*state)``. Python while the condition is a Python
    value; from the first traced condition on, one scan whose steps run the body while the
    loop is active and its condition holds and leave the state as it is after (``where``),
    checkpointed as ``symgrad.scan(..., checkpoint=checkpoint)`` is.

    In the function being compiled, the scan's length is the loop's trip count, counted at
    run time (``while_count``) before the scan runs: the tape holds one row per step taken,
    allocated once the count is known, and ``max_steps`` is an optional bound (an error past
    it). In a loop body (a while inside another traced loop) the scan has ``max_steps`` steps
    (default ``MAX_WHILE_STEPS``), a tape of that size, and the steps after the condition
    turns false are passed through."""
    while True:
        c = test(*state)
        if isinstance(c, Undefined):
            c.fail()
        if _traced(c):
            break
        if not c:
            return state
        state = body(*state)
    builder = current_builder()
    # Only the function's own trace can define a size: a loop body is one graph for every
    # step of its loop, so a count inside it would be a size per step.
    counted = hasattr(builder, "inputs")
    steps = max_steps or (None if counted else MAX_WHILE_STEPS)
    k = len(state)
    names2 = tuple(names) + ("_sg_active",)
    state2 = tuple(state) + (_cond(c, "while"),)

    def step_fn(i, x, current):
        active = current[k]
        # The condition of this step: the one computed before the loop for step 0 is the same
        # expression of the same state, so each step evaluates it afresh.
        go = snp.where(active, _as_traced_cond(test(*current[:k])), False)

        def run(*s):
            return tuple(body(*s[:k])) + (s[k],)

        def skip(*s):
            return s
        return if_stmt(go, run, skip, tuple(current[:k]) + (go,), names2, ())
    if counted and checkpoint == "sqrt" and steps is not None:
        # The count is known at run time only: segments of sqrt(bound) steps, as many as the
        # count needs (sqrt of the steps taken would need K at run time, in the loop's graphs).
        checkpoint = math.isqrt(steps - 1) + 1 if steps > 1 else 1
    if counted:
        # One name per loop of the function, in tracing order (the same program, the same C).
        name = f"while{sum(REGISTRY[n.prim].defines is not None for n in builder.nodes)}"
        length, count = dims.count_of(name), (name, k, steps)
    else:
        length, count = steps, None
    out = _run_loop(step_fn, state2, names2, inplace, boxes, False, length, "while loop",
                    checkpoint=checkpoint, count=count)
    # Still running after the last step: past max_steps, or past the fixed tape of a while
    # loop in a loop body (also one traced at the top of a function that jacobian's or
    # hessian's loop then holds, ``loops._bounded``: the guard stays for that case, and its
    # flag is false otherwise), where the result would be wrong.
    overflow = snp.where(out[k], _as_traced_cond(test(*out[:k])), False)
    bound = steps or MAX_WHILE_STEPS
    message = (f"the while loop{where(user_location())} still runs after its {bound} steps, "
               + (f"its max_steps bound" if steps else
                  f"as many as its tape holds in a loop body (a while loop inside another "
                  f"loop, or under jacobian/hessian, has a tape of a fixed size)")
               + ". Raise the bound with a comment on the loop's line: `# symgrad: max_steps=N`")
    guarded = []
    for v in out[:k]:
        if isinstance(v, Tracer):
            v = Tracer(bind("guard", overflow.irvar, v.irvar, message=message))
        guarded.append(v)
    return tuple(guarded)


def _as_traced_cond(v):
    return _cond(v, "while") if _traced(v) else snp.asarray(bool(v))


__all__ = ["ufunc_at", "special_call", "retval", "setitem", "setitem_aug", "iop", "if_stmt",
           "for_stmt", "while_stmt",
           "and_", "or_", "not_", "ifexp", "ld", "Range", "Enumerate", "Zip", "UNSET",
           "Undefined"]
