"""Source conversion: the user's function, rewritten so that its Python works on traced values.

The way TF's AutoGraph and Tangent do it: ``convert(fn)`` parses ``fn``'s source with ``ast``,
rewrites it, and compiles the result with ``fn``'s file name and line numbers (so tracebacks and
symgrad's errors name the user's lines), sharing ``fn``'s globals and closure cells. The rewrite:

- ``if``/``while``/``for`` become calls of ``symgrad.frontend.pyflow`` (``_sg`` in the converted
  code) with the branches and loop bodies as local functions of the variables they assign
  (``_sgf_if_true_12(a, b)`` returns ``(a, b)``), which decide at run time: a Python condition
  runs the statement as Python would, a traced one selects between both branches or compiles
  the loop to a ``scan`` (``docs/python_code.md``);
- ``return``/``break``/``continue`` inside them become flags (``_sg_ret``, ``_sg_brk_3``,
  ``_sg_cont_3``) guarding the statements after them, as Tangent does;
- ``and``/``or``/``not``, chained comparisons and ``a if c else b`` become ``_sg.and_`` ... calls
  (each operand a lambda, to keep Python's short-circuit where the values are Python values);
- every call becomes ``_sg.call(f, ...)``, which maps ``math.exp``, ``max``, ``np.array`` ... on
  traced values to symgrad and converts the user's own functions, methods and closures on the
  way;
- ``a[i] = v``, ``a[i] += v`` and ``a += v`` become ``a = _sg.setitem(a, i, v)`` ... so that a
  NumPy array made in the function becomes a traced one when a traced value is written into it.

What is not converted stays as it was: lambdas (their source is not separable from the line),
generators, functions of symgrad, NumPy and the standard library, and code without source.
"""
from __future__ import annotations

import ast
import inspect
import linecache
import os
import re
import sys
import sysconfig
import textwrap
import types

from symgrad.core.ir import current_builder
from symgrad.errors import TracingError
from symgrad.frontend import pyflow
from symgrad.frontend.pyflow import (UNSET, Enumerate, Range, Zip, and_, for_stmt, if_stmt,
                                     ifexp, iop, ld, not_, or_, retval, setitem, setitem_aug,
                                     ufunc_at, while_stmt)

_SKIP_PACKAGES = {"symgrad", "numpy", "scipy", "sympy", "jax", "torch", "autograd", "pytest",
                  "_pytest", "cffi", "jinja2"}
_LIBRARY_DIRS = tuple(os.path.abspath(p) + os.sep for p in {
    sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib", "purelib", "platlib")})
_NOT_WRAPPED = {"super", "locals", "globals", "vars", "eval", "exec", "isinstance", "len",
                "print", "range", "enumerate", "zip", "type", "hasattr", "getattr", "setattr",
                "iter", "next", "list", "tuple", "dict", "set", "str", "repr", "id", "callable",
                "issubclass", "reversed", "sorted"}
# Directives on a loop's line: ``while t < T:  # symgrad: max_steps=2000, checkpoint=sqrt``.
_DIRECTIVE = re.compile(r"#\s*symgrad:(.*)$")
_DIRECTIVE_ITEM = re.compile(r"\s*([A-Za-z_]\w*)\s*=\s*([A-Za-z0-9_]+)\s*")

_CODE_CACHE: dict = {}


def converted(fn):
    """Mark a function defined inside converted code: it is converted already."""
    fn.__symgrad_converted__ = True
    return fn


def call(f, *args, **kwargs):
    """``f(*args, **kwargs)`` in converted code: symgrad's version of a ``math`` function or
    builtin on traced values, the user's function converted."""
    if current_builder() is not None:
        special = pyflow.special_call(f, args, kwargs)
        if special is not NotImplemented:
            return special
        f = convert(f)
    return f(*args, **kwargs)


def convert(fn):
    """``fn`` with its source converted (see the module docstring), or ``fn`` itself when it
    is not user code or its source is not available. Methods stay bound."""
    if getattr(fn, "__symgrad_converted__", False):
        return fn
    if isinstance(fn, types.MethodType):
        inner = convert(fn.__func__)
        return fn if inner is fn.__func__ else types.MethodType(inner, fn.__self__)
    if not isinstance(fn, types.FunctionType) or not _user_code(fn):
        return fn
    code = _converted_code(fn)
    if code is None:
        return fn
    cells = []
    for name in code.co_freevars:
        if name == "_sg":
            cells.append(types.CellType(sys.modules[__name__]))
        else:
            cells.append(fn.__closure__[fn.__code__.co_freevars.index(name)])
    new = types.FunctionType(code, fn.__globals__, fn.__name__, fn.__defaults__, tuple(cells))
    new.__kwdefaults__ = fn.__kwdefaults__
    new.__dict__.update(fn.__dict__)
    new.__qualname__ = fn.__qualname__
    new.__wrapped__ = fn
    new.__symgrad_converted__ = True
    return new


def converted_source(fn):
    """The converted function's source (for ``symgrad inspect`` and debugging), or None."""
    try:
        tree = _converted_tree(fn)
    except Exception:
        return None
    return None if tree is None else ast.unparse(tree.body[0].body[0])


def converted_lines(fn):
    """The converted source as ``[(line of the user's file it came from or None, text)]``,
    for showing it beside the original (``symgrad inspect``); None when ``fn`` is not
    converted. The lines come from unparsing the converted tree and parsing that text again:
    the two trees have the same shape, so each statement of the text is paired with the
    statement of the tree, which carries the user's line number."""
    try:
        tree = _converted_tree(fn)
    except Exception:
        return None
    if tree is None:
        return None
    fdef = tree.body[0].body[0]
    text = ast.unparse(fdef)
    origin = {}
    for old, new in zip(ast.walk(fdef), ast.walk(ast.parse(text).body[0])):
        if type(old) is not type(new):
            origin = {}
            break
        if isinstance(new, ast.stmt) and getattr(old, "lineno", None) is not None:
            origin.setdefault(new.lineno, old.lineno)
    return [(origin.get(k), line) for k, line in enumerate(text.split("\n"), 1)]


def _user_code(fn):
    module = (getattr(fn, "__module__", None) or "").split(".")[0]
    if module in _SKIP_PACKAGES:
        return False
    if fn.__name__ == "<lambda>" or fn.__code__.co_flags & (inspect.CO_GENERATOR |
                                                            inspect.CO_COROUTINE |
                                                            inspect.CO_ASYNC_GENERATOR):
        return False
    path = os.path.abspath(fn.__code__.co_filename)
    return not path.startswith(_LIBRARY_DIRS) and not fn.__code__.co_filename.startswith("<")


def _converted_code(fn):
    key = fn.__code__
    if key not in _CODE_CACHE:
        try:
            tree = _converted_tree(fn)
        except (OSError, TypeError, SyntaxError, _CannotConvert):
            tree = None
        code = None
        if tree is not None:
            filename = fn.__code__.co_filename
            module = compile(tree, filename, "exec")
            factory = next(c for c in module.co_consts if isinstance(c, types.CodeType))
            code = next(c for c in factory.co_consts
                        if isinstance(c, types.CodeType) and c.co_name == fn.__name__)
        _CODE_CACHE[key] = code
    return _CODE_CACHE[key]


class _CannotConvert(Exception):
    pass


def _converted_tree(fn):
    lines, first = inspect.getsourcelines(fn)
    tree = ast.parse(textwrap.dedent("".join(lines)))
    if not tree.body or not isinstance(tree.body[0], ast.FunctionDef) \
            or tree.body[0].name != fn.__name__:
        raise _CannotConvert()
    fdef = tree.body[0]
    if any(isinstance(n, (ast.Yield, ast.YieldFrom, ast.Await)) for n in ast.walk(fdef)):
        raise _CannotConvert()
    ast.increment_lineno(tree, first - 1)
    fdef.decorator_list = []
    filename = fn.__code__.co_filename
    new = _Function(fdef, filename).run()
    params = ["_sg", *fn.__code__.co_freevars]
    factory = ast.FunctionDef(
        name="_sg_factory",
        args=ast.arguments(posonlyargs=[], args=[ast.arg(p) for p in params], kwonlyargs=[],
                           kw_defaults=[], defaults=[]),
        body=[new, ast.Return(ast.Name(fdef.name, ast.Load()))], decorator_list=[],
        returns=None, type_comment=None)
    _loc(factory, fdef)
    module = ast.Module([factory], [])
    ast.fix_missing_locations(module)
    return module


# --- analysis ---------------------------------------------------------------------------------

def _targets(node, out):
    """Names a target binds."""
    if isinstance(node, ast.Name):
        out.add(node.id)
    elif isinstance(node, (ast.Tuple, ast.List)):
        for e in node.elts:
            _targets(e, out)
    elif isinstance(node, ast.Starred):
        _targets(node.value, out)


def _subscript_base(node):
    """The name ``a`` of a target ``a[...]`` (only a name directly subscripted)."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name):
        return node.value.id
    return None


def _assigned(stmts):
    """(names rebound, names only updated in place) by ``stmts``, nested blocks included and
    nested functions' bodies excluded."""
    rebound, inplace = set(), set()

    def visit(node):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            rebound.add(node.name)
            return
        if isinstance(node, ast.Lambda):
            return
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            for t in (node.targets if isinstance(node, ast.Assign) else [node.target]):
                _targets(t, rebound)
                for sub in ast.walk(t):
                    base = _subscript_base(sub)
                    if base:
                        inplace.add(base)
        elif isinstance(node, ast.AugAssign):
            if isinstance(node.target, ast.Name):
                inplace.add(node.target.id)
            base = _subscript_base(node.target)
            if base:
                inplace.add(base)
        elif isinstance(node, (ast.For, ast.AsyncFor)):
            _targets(node.target, rebound)
        elif isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                if item.optional_vars is not None:
                    _targets(item.optional_vars, rebound)
        elif isinstance(node, ast.NamedExpr):
            _targets(node.target, rebound)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            for a in node.names:
                rebound.add((a.asname or a.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            rebound.add(node.name)
        elif isinstance(node, ast.Expr) and isinstance(node.value, ast.Call):
            pass
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)):
                continue
            visit(child)
    for s in stmts:
        visit(s)
    return rebound, inplace - rebound


def _always_returns(stmts):
    """Whether running ``stmts`` cannot end without ``return`` or ``raise`` (by their shape:
    the last statement returns, or is an if/try whose every branch does)."""
    if not stmts:
        return False
    last = stmts[-1]
    if isinstance(last, (ast.Return, ast.Raise)):
        return True
    if isinstance(last, ast.If):
        return _always_returns(last.body) and _always_returns(last.orelse)
    if isinstance(last, (ast.With, ast.AsyncWith)):
        return _always_returns(last.body)
    if isinstance(last, ast.Try):
        return (_always_returns(last.finalbody) or _always_returns(last.body + last.orelse)
                and all(_always_returns(h.body) for h in last.handlers))
    if isinstance(last, ast.While) and isinstance(last.test, ast.Constant) and last.test.value \
            and not _contains(last.body, ast.Break, False):
        return True
    return False


def _declared(fdef):
    out = set()
    for node in ast.walk(fdef):
        if isinstance(node, (ast.Global, ast.Nonlocal)):
            out.update(node.names)
    return out


def _sets_flag(stmt, flags):
    for node in ast.walk(stmt):
        if isinstance(node, ast.Assign):
            for t in node.targets:
                if isinstance(t, ast.Name) and t.id in flags:
                    return True
    return False


def _contains(stmts, kinds, into_loops):
    for s in stmts:
        for node in _walk_shallow(s, into_loops):
            if isinstance(node, kinds):
                return True
    return False


def _walk_shallow(node, into_loops):
    """ast.walk without entering nested functions (and loops unless ``into_loops``)."""
    todo = [node]
    while todo:
        n = todo.pop()
        yield n
        for child in ast.iter_child_nodes(n):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef,
                                  ast.Lambda)):
                continue
            if not into_loops and isinstance(child, (ast.For, ast.While)):
                continue
            todo.append(child)


# --- the rewrite ------------------------------------------------------------------------------

def _loc(new, old):
    """``new`` placed at the first line of ``old``: generated code spans one line, so that a
    frame running it reports the line of the statement it came from (Python 3.11 reports a
    method call at the line its attribute ends on)."""
    if not hasattr(old, "lineno"):
        return new
    new.lineno = old.lineno
    new.col_offset = old.col_offset
    new.end_lineno = old.lineno
    new.end_col_offset = old.col_offset
    return new


def _name(id_, ctx=None):
    return ast.Name(id_, ctx or ast.Load())


def _sg(attr):
    return ast.Attribute(_name("_sg"), attr, ast.Load())


def _sgcall(attr, *args):
    return ast.Call(_sg(attr), list(args), [])


def _assign(name, value):
    return ast.Assign([_name(name, ast.Store())], value)


def _const(v):
    return ast.Constant(v)


def _thunk(expr):
    return ast.Lambda(ast.arguments(posonlyargs=[], args=[], kwonlyargs=[], kw_defaults=[],
                                    defaults=[]), expr)


def _params(names):
    return ast.arguments(posonlyargs=[], args=[ast.arg(n) for n in names], kwonlyargs=[],
                         kw_defaults=[], defaults=[])


class _Function:
    """The rewrite of one function definition (nested ones get their own)."""

    def __init__(self, fdef, filename):
        self.fdef, self.filename = fdef, filename
        self.counter = 0
        a = fdef.args
        params = [x.arg for x in a.posonlyargs + a.args + a.kwonlyargs]
        params += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
        rebound, inplace = _assigned(fdef.body)
        self.declared = _declared(fdef)
        self.locals = set(params) | rebound | self.declared
        self.first_param = (a.posonlyargs + a.args)[0].arg if (a.posonlyargs + a.args) else None
        self.lowered_return = False

    def fresh(self, what):
        self.counter += 1
        return f"{what}_{self.fdef.lineno}_{self.counter}"

    def run(self):
        fdef = self.fdef
        body = fdef.body
        nested_return = any(_contains([s], ast.Return, True) for s in body
                            if isinstance(s, (ast.If, ast.For, ast.While, ast.With, ast.Try)))
        if nested_return:
            falls_off = not _always_returns(body)       # before lowering rewrites the returns
            self.lowered_return = True
            self.locals |= {"_sg_ret", "_sg_retval"}
            body = ([_assign("_sg_ret", _const(False)), _assign("_sg_retval", _sg("UNSET"))]
                    + self.lower(body, [], True)
                    + [ast.Return(_sgcall("retval", _name("_sg_retval"), _name("_sg_ret"),
                                          _const(falls_off)))])
        else:
            body = self.lower(body, [], False)
        for s in body:
            _loc(s, fdef) if not hasattr(s, "lineno") else None
        fdef.body = self.block(body) or [ast.Pass()]
        return fdef

    # -- 1. return / break / continue as flags
    def lower(self, stmts, loops, ret):
        """``loops``: the enclosing loops' (break flag, continue flag), innermost last."""
        flags = ({"_sg_ret"} if ret else set()) | (set(loops[-1]) if loops else set())
        out = []
        for k, s in enumerate(stmts):
            if isinstance(s, ast.Return) and ret:
                sets = [_assign("_sg_retval", s.value or _const(None)),
                        _assign("_sg_ret", _const(True))]
                sets += [_assign(brk, _const(True)) for brk, _ in loops]
                out += [_loc(x, s) for x in sets]
                return out
            if isinstance(s, ast.Break) and loops:
                out.append(_loc(_assign(loops[-1][0], _const(True)), s))
                return out
            if isinstance(s, ast.Continue) and loops:
                out.append(_loc(_assign(loops[-1][1], _const(True)), s))
                return out
            if isinstance(s, ast.If):
                s.body = self.lower(s.body, loops, ret)
                s.orelse = self.lower(s.orelse, loops, ret)
            elif isinstance(s, (ast.With, ast.AsyncWith)):
                s.body = self.lower(s.body, loops, ret)
            elif isinstance(s, ast.Try):
                s.body = self.lower(s.body, loops, ret)
                s.orelse = self.lower(s.orelse, loops, ret)
                s.finalbody = self.lower(s.finalbody, loops, ret)
                for h in s.handlers:
                    h.body = self.lower(h.body, loops, ret)
            elif isinstance(s, (ast.For, ast.While)):
                out += self.lower_loop(s, loops, ret)
                if ret and _sets_flag(out[-1], {"_sg_ret"}):
                    rest = self.lower(stmts[k + 1:], loops, ret)
                    if rest:
                        out.append(self.guard(rest, {"_sg_ret"} | (set(loops[-1][:1])
                                                                   if loops else set()), s))
                    return out
                continue
            out.append(s)
            if _sets_flag(s, flags):
                rest = self.lower(stmts[k + 1:], loops, ret)
                if rest:
                    out.append(self.guard(rest, {f for f in flags if _sets_flag(s, {f})}, s))
                return out
        return out

    def guard(self, stmts, flags, where_):
        test = [_name(f) for f in sorted(flags)]
        test = test[0] if len(test) == 1 else ast.BoolOp(ast.Or(), test)
        node = ast.If(ast.UnaryOp(ast.Not(), test), stmts, [])
        return _loc(node, stmts[0] if hasattr(stmts[0], "lineno") else where_)

    def lower_loop(self, s, loops, ret):
        has_break = _contains(s.body, ast.Break, False) or (
            ret and _contains(s.body, ast.Return, True))
        has_continue = _contains(s.body, ast.Continue, False)
        brk, cont = self.fresh("_sg_brk"), self.fresh("_sg_cont")
        self.locals |= {brk, cont}
        body = self.lower(s.body, loops + [(brk, cont)], ret)
        if has_continue:
            body = [_loc(_assign(cont, _const(False)), s)] + body
        out = []
        if has_break:
            out.append(_loc(_assign(brk, _const(False)), s))
            body = [_loc(ast.If(ast.UnaryOp(ast.Not(), _name(brk)), body, []), s)]
            if isinstance(s, ast.While):
                s.test = ast.BoolOp(ast.And(), [ast.UnaryOp(ast.Not(), _name(brk)), s.test])
            s.brk = brk
        s.body = body
        orelse = self.lower(s.orelse, loops, ret)
        s.orelse = []
        out.append(s)
        if orelse:
            out.append(_loc(ast.If(ast.UnaryOp(ast.Not(), _name(brk)), orelse, [])
                                         if has_break else ast.If(_const(True), orelse, []), s))
        return out

    # -- 2. statements
    def block(self, stmts):
        out = []
        for s in stmts:
            out += self.stmt(s)
        return out

    def stmt(self, s):
        if isinstance(s, ast.If):
            return self.if_(s)
        if isinstance(s, ast.For):
            return self.for_(s)
        if isinstance(s, ast.While):
            return self.while_(s)
        if isinstance(s, ast.FunctionDef):
            inner = _Function(s, self.filename).run()
            inner.decorator_list.append(_sg("converted"))
            return [inner]
        if isinstance(s, (ast.AsyncFunctionDef, ast.ClassDef)):
            return [s]
        if isinstance(s, ast.Assign):
            return self.assign(s)
        if isinstance(s, ast.AugAssign):
            return self.augassign(s)
        if (isinstance(s, ast.Expr) and isinstance(s.value, ast.Call)
                and isinstance(s.value.func, ast.Attribute) and s.value.func.attr == "at"
                and s.value.args and isinstance(s.value.args[0], ast.Name)
                and s.value.args[0].id in self.locals and not s.value.keywords):
            # np.add.at(a, idx, v): ``a`` may be a NumPy array that must become traced.
            c = s.value
            call = _sgcall("ufunc_at", self.expr(c.func), *[self.expr(a) for a in c.args])
            return [_loc(_assign(c.args[0].id, call), s)]
        if isinstance(s, (ast.With, ast.AsyncWith)):
            s.items = [self.expr(i) for i in s.items]
            s.body = self.block(s.body)
            return [s]
        if isinstance(s, ast.Try):
            s.body, s.orelse, s.finalbody = (self.block(s.body), self.block(s.orelse),
                                             self.block(s.finalbody))
            for h in s.handlers:
                h.body = self.block(h.body)
            return [s]
        return [self.expr(s)]

    def expr(self, node):
        return _Expressions(self).visit(node)

    def state(self, stmts, extra=()):
        rebound, inplace = _assigned(stmts)
        rebound |= set(extra)
        inplace -= rebound
        state = sorted((rebound | inplace) & self.locals)
        boxes = sorted(inplace - self.locals)
        return state, sorted(inplace & self.locals), boxes

    def loads(self, names):
        return ast.Tuple([_sgcall("ld", _thunk(_name(n)), _const(n)) for n in names], ast.Load())

    def bind(self, s, names, call):
        if not names:
            return _loc(ast.Expr(call), s)
        target = ast.Tuple([_name(n, ast.Store()) for n in names], ast.Store())
        return _loc(ast.Assign([target], call), s)

    def local_fn(self, s, name, params, body):
        fn = ast.FunctionDef(name=name, args=_params(params), body=body or [ast.Pass()],
                             decorator_list=[], returns=None, type_comment=None)
        return _loc(fn, s)

    def ret(self, names):
        return ast.Return(ast.Tuple([_name(n) for n in names], ast.Load()))

    def if_(self, s):
        state, _, boxes = self.state(s.body + s.orelse)
        t, f = self.fresh("_sgf_if_true"), self.fresh("_sgf_if_false")
        tdef = self.local_fn(s, t, state, self.block(s.body) + [self.ret(state)])
        fdef = self.local_fn(s, f, state, self.block(s.orelse) + [self.ret(state)])
        call = _sgcall("if_stmt", self.expr(s.test), _name(t), _name(f), self.loads(state),
                       ast.Tuple([_const(n) for n in state], ast.Load()), self.loads(boxes))
        return [tdef, fdef, self.bind(s, state, call)]

    def for_(self, s):
        target = set()
        _targets(s.target, target)
        state, inplace, boxes = self.state(s.body, target)
        b = self.fresh("_sgf_for_body")
        item = self.fresh("_sg_item")
        head = _loc(ast.Assign([s.target], _name(item)), s)
        bdef = self.local_fn(s, b, [item] + state, [head] + self.block(s.body) + [self.ret(state)])
        it = s.iter
        if (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and not it.keywords and not any(isinstance(a, ast.Starred) for a in it.args)):
            iterable = ast.Call(_sg("Range"), [self.expr(a) for a in it.args], [])
        else:
            iterable = self.iterable(it)        # enumerate, zip (and a range inside them)
        brk = getattr(s, "brk", None)
        call = ast.Call(_sg("for_stmt"), [
            iterable, _name(b), self.loads(state), ast.Tuple([_const(n) for n in state],
                                                              ast.Load())],
            [ast.keyword("inplace", ast.Tuple([_const(n) for n in inplace], ast.Load())),
             ast.keyword("brk", _const(state.index(brk) if brk in state else None)),
             ast.keyword("boxes", self.loads(boxes))])
        checkpoint = self.directives(s, "for")["checkpoint"]
        if checkpoint is not None:
            call.keywords.append(ast.keyword("checkpoint", _const(checkpoint)))
        return [bdef, self.bind(s, state, call)]

    def iterable(self, it):
        """A ``for``'s iterable: ``enumerate(...)`` and ``zip(...)`` (nested) become
        ``_sg.Enumerate``/``_sg.Zip``, which scan the rows of traced arrays as one C loop."""
        if (isinstance(it, ast.Call) and isinstance(it.func, ast.Name)
                and it.func.id in ("enumerate", "zip")
                and not any(isinstance(a, ast.Starred) for a in it.args)
                and all(k.arg in ("start", "strict") for k in it.keywords)):
            return _loc(ast.Call(_sg("Enumerate" if it.func.id == "enumerate" else "Zip"),
                                 [self.iterable(a) for a in it.args],
                                 [ast.keyword(k.arg, self.expr(k.value)) for k in it.keywords]),
                        it)
        if (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and not it.keywords and not any(isinstance(a, ast.Starred) for a in it.args)):
            return _loc(ast.Call(_sg("Range"), [self.expr(a) for a in it.args], []), it)
        return self.expr(it)

    def while_(self, s):
        state, inplace, boxes = self.state(s.body)
        t, b = self.fresh("_sgf_while_test"), self.fresh("_sgf_while_body")
        tdef = self.local_fn(s, t, state, [_loc(ast.Return(self.expr(s.test)), s)])
        bdef = self.local_fn(s, b, state, self.block(s.body) + [self.ret(state)])
        directives = self.directives(s, "while")
        call = ast.Call(_sg("while_stmt"), [
            _name(t), _name(b), self.loads(state), ast.Tuple([_const(n) for n in state],
                                                              ast.Load())],
            [ast.keyword("inplace", ast.Tuple([_const(n) for n in inplace], ast.Load())),
             ast.keyword("boxes", self.loads(boxes)),
             ast.keyword("max_steps", _const(directives["max_steps"]))])
        if directives["checkpoint"] is not None:
            call.keywords.append(ast.keyword("checkpoint", _const(directives["checkpoint"])))
        return [tdef, bdef, self.bind(s, state, call)]

    def directives(self, s, kind):
        """The ``# symgrad: key=value, ...`` comment on the loop's first line, checked:
        ``max_steps=N`` (a ``while`` loop's bound) and ``checkpoint=K`` or ``checkpoint=sqrt``
        (as ``symgrad.scan``'s). A misspelt one is an error here rather than silently
        ignored."""
        out = {"max_steps": None, "checkpoint": None}
        text = linecache.getline(self.filename, s.lineno)
        match = _DIRECTIVE.search(text)
        if match is None:
            return out
        at = f" at {os.path.basename(self.filename)}:{s.lineno}: `{text.strip()}`"
        for item in filter(None, (p.strip() for p in re.split(r"[,;]", match.group(1)))):
            m = _DIRECTIVE_ITEM.fullmatch(item)
            key, value = (m.group(1), m.group(2)) if m else (None, None)
            if key == "max_steps" and kind == "while" and value.isdigit() and int(value) >= 1:
                out[key] = int(value)
            elif key == "checkpoint" and (value == "sqrt" or value.isdigit() and int(value) >= 1):
                out[key] = value if value == "sqrt" else int(value)
            elif key == "max_steps" and kind != "while":
                raise TracingError(f"# symgrad: max_steps= bounds a while loop; a for loop's trip "
                                   f"count is its range's{at}")
            elif key in out:
                raise TracingError(f"# symgrad: {item}: {key} must be "
                                   + ("a positive int" if key == "max_steps" else
                                      "a positive int (steps between stored carries) or sqrt")
                                   + at)
            else:
                raise TracingError(f"# symgrad: {item!r} is not a loop directive (known: "
                                   f"max_steps=N on a while loop, checkpoint=K or "
                                   f"checkpoint=sqrt){at}")
        return out

    def assign(self, s):
        value = self.expr(s.value)
        simple = all(not any(isinstance(n, ast.Subscript) and isinstance(n.value, ast.Name)
                             for n in ast.walk(t)) for t in s.targets)
        if simple:
            s.value = value
            s.targets = [self.expr(t) for t in s.targets]
            return [s]
        # a[k] = v (and a[k] = b = v, a[0], a[1] = x, y): the value once, then each write.
        tmp = self.fresh("_sg_value")
        out = [_loc(_assign(tmp, value), s)]
        for t in s.targets:
            out += self.store(t, _name(tmp), s)
        return out

    def store(self, target, value, s):
        base = _subscript_base(target)
        if base is not None:
            call = _sgcall("setitem", _name(base), self.expr(target.slice), value)
            node = _assign(base, call) if base in self.locals else ast.Expr(call)
            return [_loc(node, s)]
        if isinstance(target, (ast.Tuple, ast.List)) and any(
                _subscript_base(e) for e in ast.walk(target)):
            temps, writes = [], []
            for e in target.elts:
                if isinstance(e, ast.Starred):
                    raise _CannotConvert()
                tmp = self.fresh("_sg_part")
                temps.append(_name(tmp, ast.Store()))
                writes += self.store(e, _name(tmp), s)
            unpack = ast.Assign([ast.Tuple(temps, ast.Store())], value)
            return [_loc(unpack, s)] + writes
        return [_loc(ast.Assign([self.expr(target)], value), s)]

    def augassign(self, s):
        op = _OPS.get(type(s.op))
        value = self.expr(s.value)
        if op is None:
            s.value = value
            return [s]
        if isinstance(s.target, ast.Name):
            call = _sgcall("iop", _const(op), _name(s.target.id), value)
            return [_loc(_assign(s.target.id, call), s)]
        base = _subscript_base(s.target)
        if base is not None:
            call = _sgcall("setitem_aug", _name(base), self.expr(s.target.slice), _const(op),
                           value)
            node = _assign(base, call) if base in self.locals else ast.Expr(call)
            return [_loc(node, s)]
        s.value = value
        s.target = self.expr(s.target)
        return [s]


_OPS = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//",
        ast.Mod: "%", ast.Pow: "**", ast.MatMult: "@"}


class _Expressions(ast.NodeTransformer):
    """Calls, boolean operators, conditional expressions and chained comparisons."""

    def __init__(self, function):
        self.function = function

    def visit_Lambda(self, node):
        node.body = self.visit(node.body)
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        f = node.func
        if isinstance(f, ast.Name) and f.id == "super" and not node.args \
                and self.function.first_param:
            node.args = [_name("__class__"), _name(self.function.first_param)]
            return node
        if isinstance(f, ast.Name) and f.id in _NOT_WRAPPED:
            return node
        if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) and f.value.id == "_sg":
            return node
        return _loc(ast.Call(_sg("call"), [f] + node.args, node.keywords), node)

    def visit_BoolOp(self, node):
        self.generic_visit(node)
        fn = "and_" if isinstance(node.op, ast.And) else "or_"
        return _loc(_sgcall(fn, *[_thunk(v) for v in node.values]), node)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.Not):
            return _loc(_sgcall("not_", node.operand), node)
        return node

    def visit_IfExp(self, node):
        self.generic_visit(node)
        return _loc(_sgcall("ifexp", node.test, _thunk(node.body),
                                         _thunk(node.orelse)), node)

    def visit_Compare(self, node):
        self.generic_visit(node)
        if len(node.ops) == 1:
            return node
        parts, left = [], node.left
        for op, right in zip(node.ops, node.comparators):
            parts.append(_thunk(ast.Compare(left, [op], [right])))
            left = right
        return _loc(_sgcall("and_", *parts), node)


__all__ = ["convert", "converted_source", "converted", "call",
           # what converted code calls as _sg.<name>, from pyflow:
           "UNSET", "Enumerate", "Range", "Zip", "and_", "for_stmt", "if_stmt", "ifexp", "iop",
           "ld", "not_", "or_",
           "retval", "setitem", "setitem_aug", "ufunc_at", "while_stmt"]
