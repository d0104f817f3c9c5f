"""The traced array: what a function being compiled holds where NumPy code would hold an ndarray.

A ``Tracer`` stands for one IR value (``.irvar``). Its operators and methods are those of an
ndarray, and so is NumPy's own API called on it (``np.exp(x)``, ``np.sum(x, axis=0)``, through the
``__array_ufunc__``/``__array_function__`` protocols of NEP 13 and NEP 18): each one runs the
implementation that ``symgrad.numpy`` registered under the NumPy name (``implements``). That
table is the one place the front end's names resolve, so a name symgrad lacks fails the same way
whichever spelling reached it, naming the function and the closest supported names.

Anything that needs the array's *value* (``if x > 0:``, ``float(x)``, ``np.asarray(x)``) raises
``TracingError`` naming the user's line.
"""
from __future__ import annotations

import difflib
import inspect
import sys

import numpy as np

from symgrad.core.ir import Var, user_location
from symgrad.errors import TracingError, UnsupportedError, where

# NumPy name ("sum", "linalg.solve") -> the symgrad.numpy function that traces it.
IMPLEMENTATIONS: dict = {}


def implements(name, fn):
    """Register ``fn`` as what the NumPy function ``name`` does on traced values."""
    if name in IMPLEMENTATIONS and IMPLEMENTATIONS[name] is not fn:
        raise ValueError(f"two implementations of numpy.{name}")
    IMPLEMENTATIONS[name] = fn
    return fn


def closest(name, names, n=4):
    """The supported names closest to ``name`` (by spelling), best first."""
    return difflib.get_close_matches(name, names, n=n, cutoff=0.6)


# NumPy names whose result's shape depends on the values (which a compiled function must know
# while tracing), with what to use instead: ``unsupported`` gives that reason, not "yet".
DATA_DEPENDENT: dict = {}


def data_dependent(name, instead):
    """Record that numpy.``name`` cannot be traced because its output's shape depends on the
    values, and what a user should write instead."""
    DATA_DEPENDENT[name] = instead


def shape_depends_on_values(name, where_from="numpy"):
    """The error for ``name`` (in DATA_DEPENDENT): why it cannot be compiled, and the way out."""
    return UnsupportedError(f"{where_from}.{name}: the shape of its result depends on the "
                            f"values, which are not known while tracing{where(user_location())}. "
                            f"{DATA_DEPENDENT[name]}")


def unsupported(name, where_from="numpy", names=None):
    """The error for a name symgrad does not trace: what it is, and what is close. ``names``
    (default: every registered NumPy name) are the candidates for "closest"."""
    if name in DATA_DEPENDENT:
        return shape_depends_on_values(name, where_from)
    close = closest(name, IMPLEMENTATIONS if names is None else names)
    hint = f" Closest supported: {', '.join(close)}." if close else ""
    how = "on traced values " if where_from == "numpy" else ""
    return UnsupportedError(f"{where_from}.{name} is not supported {how}yet"
                            f"{where(user_location())}.{hint} docs/numpy.md lists what symgrad "
                            f"supports.")


def implementation(name):
    """The registered implementation of ``name``, or the TracingError that names it."""
    fn = IMPLEMENTATIONS.get(name)
    if fn is None:
        raise unsupported(name)
    return fn


def _call(name, *args, **kwargs):
    return implementation(name)(*args, **kwargs)


def _numpy_name(func):
    """"sum" for numpy.sum, "linalg.solve" for numpy.linalg.solve."""
    module = getattr(func, "__module__", None) or "numpy"
    prefix = module[len("numpy."):] + "." if module.startswith("numpy.") else ""
    return prefix + func.__name__


def _ufunc_name(ufunc):
    """Where a ufunc is registered: "erf" for NumPy's and SciPy's ufuncs alike (SciPy's reach
    ``__array_ufunc__`` under their own names), and the namespace an error should name."""
    name = ufunc.__name__
    if getattr(np, name, None) is ufunc:
        return name, "numpy"
    special = sys.modules.get("scipy.special")
    if special is not None and getattr(special, name, None) is ufunc:
        return name, "scipy.special"
    return name, "ufunc"


def _public(module):
    """scipy.special._logsumexp -> scipy.special: the namespace a user imports."""
    return ".".join(p for p in module.split(".") if not p.startswith("_"))


def _exported(module, name):
    return getattr(sys.modules.get(_public(module)), name, None) is not None


def _converting_library():
    """``("scipy.special", "logsumexp")`` when the array conversion under way happens inside a
    library function the user called (which converts its arguments to NumPy arrays, so it can
    never see traced values), else None: the outermost library frame below the user's whose
    function its package exports, or the exported function a wrapper there holds (SciPy's
    decorators convert before calling ``scipy.linalg.solve_triangular`` itself)."""
    frame, found = sys._getframe(2), None
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        top = module.split(".")[0]
        if top in ("scipy", "numpy"):
            if _exported(module, frame.f_code.co_name):
                found = (_public(module), frame.f_code.co_name)
            else:
                for value in frame.f_locals.values():
                    inner = getattr(value, "__module__", None) or ""
                    if callable(value) and inner.split(".")[0] == top and \
                            _exported(inner, getattr(value, "__name__", "")):
                        found = (_public(inner), value.__name__)
                        break
        elif top != "symgrad":
            break
        frame = frame.f_back
    return found


def _counterpart(namespace, name):
    """symgrad's own version of ``namespace.name`` ("symgrad.scipy.special.logsumexp"), if any:
    registry keys are NumPy's names ("sum", "linalg.solve") and SciPy's dotted ones."""
    if namespace == "numpy" or namespace.startswith("numpy."):
        key = namespace[len("numpy."):] + "." + name if "." in namespace else name
    else:
        key = f"{namespace}.{name}"
    return f"symgrad.{namespace}.{name}" if key in IMPLEMENTATIONS else None


def _takes_keywords(fn, kwargs):
    """Whether ``fn`` has a parameter of each name in ``kwargs``."""
    if fn is None:
        return False
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return all(k in params and params[k].kind in (inspect.Parameter.KEYWORD_ONLY,
                                                  inspect.Parameter.POSITIONAL_OR_KEYWORD)
               for k in kwargs)


def _basic(key):
    """Whether NumPy's ``a[key]`` is a view of ``a`` (basic indexing: ints, slices, None, ...)."""
    keys = key if isinstance(key, tuple) else (key,)
    return all(k is None or k is Ellipsis or isinstance(k, slice) or
               (isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_)))
               for k in keys)


def _into(out, result, what):
    """``what(..., out=out)``: the result written into ``out`` when ``out`` is a traced array
    (a box whose value is replaced); a foreign buffer cannot receive a traced value."""
    outs = out if isinstance(out, tuple) else (out,)
    if len(outs) != 1 or not isinstance(outs[0], Tracer):
        raise TracingError(f"{what}(..., out=) into a {type(outs[0]).__name__} on traced values "
                           f"is not supported{where(user_location())}: the array would not see "
                           f"the traced result. Assign the result instead (a[...] = {what}(...)).")
    outs[0][...] = result
    return outs[0]


# The boxes written while converted code runs a branch or a loop body (pyflow._Writes): each
# innermost log maps id(box) -> (box, its value before the first write), so that a write made
# through a name the branch does not assign (a helper writing its argument, ``m[i] *= s``) is
# undone before the other branch runs and selected or carried like the others.
WRITES: list = []


class Tracer:
    """A traced array. Behaves like an ndarray inside a function being traced."""
    __slots__ = ("_irvar",)
    __array_priority__ = 1000    # ndarray <op> Tracer defers to the Tracer's reflected operator

    def __init__(self, irvar: Var):
        self._irvar = irvar

    @property
    def irvar(self):
        return self._irvar

    @irvar.setter
    def irvar(self, value):
        """An in-place write: the box holds a new IR value (logged when a branch runs)."""
        if WRITES:
            WRITES[-1].setdefault(id(self), (self, self._irvar))
        self._irvar = value

    # -- what is known at trace time
    shape = property(lambda self: self.irvar.shape)
    ndim = property(lambda self: self.irvar.ndim)
    dtype = property(lambda self: np.dtype(self.irvar.dtype))
    size = property(lambda self: self.irvar.type.size)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        if not isinstance(self.shape[0], int):
            raise TracingError(f"len() of a traced array of type {self.irvar.type}: its first "
                               f"axis has the run-time size {self.shape[0]}, which is not an "
                               f"int while tracing{where(user_location())}. Use x.shape[0] "
                               f"(a size that computes) or whole-array operations")
        return self.shape[0]

    def __iter__(self):
        # Not a generator: a 0-d array fails at iter() itself, as NumPy's does (np.iterable).
        if not self.shape:
            raise TypeError("iteration over a 0-d traced array")
        return (self[i] for i in range(len(self)))

    def __repr__(self):
        return f"Tracer({self.irvar.type})"

    def __hash__(self):
        return id(self)

    # -- what is not known at trace time
    def _no_value(self, what, hint):
        raise TracingError(f"{what} needs the value of a traced array of type {self.irvar.type}, "
                           f"which is not known while tracing{where(user_location())}. {hint}")

    def __bool__(self):
        # A function symgrad converts never gets here (pyflow selects or loops instead,
        # API.md section 6); this is code it runs as it is.
        self._no_value("Python control flow (if/while/and/or/not)",
                       "symgrad converts if/while/for/and/or/not on traced values in functions "
                       "whose source it can read (docs/python_code.md), but this line is in code "
                       "it runs unconverted (a lambda, a generator, a library's code, code "
                       "without source). Move it into a def, or use snp.where(cond, a, b) to "
                       "choose between values, or make the argument static (static_argnums).")

    def __float__(self):
        self._no_value("float()", "Keep computing with symgrad.numpy instead; to change the "
                       "dtype, use x.astype(np.float64).")

    def __int__(self):
        self._no_value("int()", "Sizes are known: use x.shape; to change the dtype, use "
                       "x.astype(np.int64).")

    def __index__(self):
        self._no_value("Using a traced array as a Python index", "Use integer-array indexing.")

    def __array__(self, dtype=None, copy=None):
        # np.float64(x), np.int64(x) and np.asarray(x) land here; NumPy's scalar types must
        # return a NumPy value, never a Tracer, so the dtype change is astype's.
        library = _converting_library()
        if library is not None and library[0] != "numpy":
            namespace, name = library
            ours = _counterpart(namespace, name)
            self._no_value(f"{namespace}.{name}, which converts its arguments to NumPy arrays,",
                           f"Call {ours} instead: it traces." if ours else
                           f"symgrad does not trace {namespace}.{name} yet; docs/numpy.md lists "
                           f"what it supports.")
        self._no_value("Converting to a NumPy array or scalar (np.asarray(x), np.float64(x), "
                       "np.int64(x))",
                       "To change the dtype use x.astype(np.float64) (or snp.astype(x, dtype)); "
                       "otherwise call NumPy functions on it (they trace) or symgrad.numpy's "
                       "instead of converting it.")

    # -- in-place updates, functionalized: the Tracer is a box whose IR value is replaced, so
    # every Python name bound to it (and every View of it) sees the write, as with an ndarray.
    def __setitem__(self, key, value):
        self.irvar = _call("setitem", self, key, value).irvar

    def _inplace(self, name, other):
        result = _call(name, self, other)
        if result.dtype != self.dtype:
            if result.dtype.kind == "f" and self.dtype.kind in "iub" or \
                    result.dtype.kind == "c" and self.dtype.kind != "c":
                raise TypeError(f"numpy.{name} in place: cannot cast the {result.dtype} result "
                                f"to the {self.dtype} array it is written into"
                                f"{where(user_location())}")
            result = _call("astype", result, self.dtype)
        self.irvar = result.irvar
        return self

    def __iadd__(self, other): return self._inplace("add", other)
    def __isub__(self, other): return self._inplace("subtract", other)
    def __imul__(self, other): return self._inplace("multiply", other)
    def __itruediv__(self, other): return self._inplace("divide", other)
    def __ipow__(self, other): return self._inplace("power", other)
    def __imatmul__(self, other): return self._inplace("matmul", other)
    def __ifloordiv__(self, other): return self._inplace("floor_divide", other)
    def __imod__(self, other): return self._inplace("remainder", other)
    def __iand__(self, other): return self._inplace("bitwise_and", other)
    def __ior__(self, other): return self._inplace("bitwise_or", other)
    def __ixor__(self, other): return self._inplace("bitwise_xor", other)

    @property
    def flat(self):
        raise TracingError(f"x.flat on a traced array is not supported{where(user_location())}: "
                           f"a write through it cannot be made faithful. Index x.reshape(-1) "
                           f"(reading) or assign through x[np.unravel_index(i, x.shape)] instead.")

    # -- NumPy's own functions on Tracers (NEP 13, NEP 18)
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method == "at" and ufunc.__name__ in ("add", "subtract") and not kwargs:
            return _call(f"{ufunc.__name__}.at", *inputs)
        out = kwargs.pop("out", None)
        if method == "__call__" and out is not None and not kwargs:
            return _into(out, _call(ufunc.__name__, *inputs), f"numpy.{ufunc.__name__}")
        name, namespace = _ufunc_name(ufunc)
        if method == "__call__" and kwargs and _takes_keywords(IMPLEMENTATIONS.get(name), kwargs):
            return _call(name, *inputs, **kwargs)       # a gufunc's own: vecdot(..., axis=0)
        if method != "__call__" or kwargs:
            how = f"{namespace}.{name}.{method}" if method != "__call__" else \
                f"{namespace}.{name} with {', '.join(sorted(kwargs))}="
            raise TracingError(f"{how} is not supported on traced values"
                               f"{where(user_location())}")
        if name not in IMPLEMENTATIONS and namespace != "numpy":
            prefix = namespace + "."
            raise unsupported(name, namespace, [k[len(prefix):] for k in IMPLEMENTATIONS
                                                if k.startswith(prefix)])
        return _call(name, *inputs)

    def __array_function__(self, func, types, args, kwargs):
        return _call(_numpy_name(func), *args, **kwargs)

    # -- arithmetic and comparisons
    def __add__(self, other): return _call("add", self, other)
    def __radd__(self, other): return _call("add", other, self)
    def __sub__(self, other): return _call("subtract", self, other)
    def __rsub__(self, other): return _call("subtract", other, self)
    def __mul__(self, other): return _call("multiply", self, other)
    def __rmul__(self, other): return _call("multiply", other, self)
    def __truediv__(self, other): return _call("divide", self, other)
    def __rtruediv__(self, other): return _call("divide", other, self)
    def __floordiv__(self, other): return _call("floor_divide", self, other)
    def __rfloordiv__(self, other): return _call("floor_divide", other, self)
    def __mod__(self, other): return _call("remainder", self, other)
    def __rmod__(self, other): return _call("remainder", other, self)
    def __divmod__(self, other): return _call("divmod", self, other)
    def __rdivmod__(self, other): return _call("divmod", other, self)
    def __pow__(self, other): return _call("power", self, other)
    def __rpow__(self, other): return _call("power", other, self)
    def __matmul__(self, other): return _call("matmul", self, other)
    def __rmatmul__(self, other): return _call("matmul", other, self)
    def __lt__(self, other): return _call("less", self, other)
    def __le__(self, other): return _call("less_equal", self, other)
    def __gt__(self, other): return _call("greater", self, other)
    def __ge__(self, other): return _call("greater_equal", self, other)
    def __eq__(self, other): return _call("equal", self, other)
    def __ne__(self, other): return _call("not_equal", self, other)
    def __and__(self, other): return _call("bitwise_and", self, other)
    def __rand__(self, other): return _call("bitwise_and", other, self)
    def __or__(self, other): return _call("bitwise_or", self, other)
    def __ror__(self, other): return _call("bitwise_or", other, self)
    def __xor__(self, other): return _call("bitwise_xor", self, other)
    def __rxor__(self, other): return _call("bitwise_xor", other, self)
    def __invert__(self): return _call("invert", self)
    def __neg__(self): return _call("negative", self)
    def __pos__(self): return self
    def __abs__(self): return _call("abs", self)
    def __getitem__(self, key):
        out = _call("getitem", self, key)
        return View(self, key, out) if out.ndim and _basic(key) else out

    # -- ndarray's attributes and methods
    T = property(lambda self: _call("transpose", self))
    mT = property(lambda self: _call("swapaxes", self, -1, -2))
    real = property(lambda self: _call("real", self))
    imag = property(lambda self: _call("imag", self))

    # ndarray's reductions take NumPy's function's arguments in the same order, after the array.
    def sum(self, *args, **kwargs): return _call("sum", self, *args, **kwargs)
    def mean(self, *args, **kwargs): return _call("mean", self, *args, **kwargs)
    def max(self, *args, **kwargs): return _call("max", self, *args, **kwargs)
    def min(self, *args, **kwargs): return _call("min", self, *args, **kwargs)
    def prod(self, *args, **kwargs): return _call("prod", self, *args, **kwargs)
    def all(self, axis=None, keepdims=False): return _call("all", self, axis, keepdims=keepdims)
    def any(self, axis=None, keepdims=False): return _call("any", self, axis, keepdims=keepdims)
    def ptp(self, axis=None, keepdims=False): return _call("ptp", self, axis, keepdims=keepdims)

    def var(self, axis=None, ddof=0, keepdims=False):
        return _call("var", self, axis, ddof=ddof, keepdims=keepdims)

    def std(self, axis=None, ddof=0, keepdims=False):
        return _call("std", self, axis, ddof=ddof, keepdims=keepdims)

    def argmax(self, axis=None, keepdims=False):
        return _call("argmax", self, axis, keepdims=keepdims)

    def argmin(self, axis=None, keepdims=False):
        return _call("argmin", self, axis, keepdims=keepdims)

    def cumsum(self, axis=None): return _call("cumsum", self, axis)
    def cumprod(self, axis=None): return _call("cumprod", self, axis)

    def reshape(self, *shape):
        single = len(shape) == 1 and not isinstance(shape[0], int)
        return _call("reshape", self, shape[0] if single else shape)

    def transpose(self, *axes):
        single = len(axes) == 1 and not isinstance(axes[0], int)
        return _call("transpose", self, (axes[0] if single else axes) or None)

    def swapaxes(self, axis1, axis2): return _call("swapaxes", self, axis1, axis2)
    def squeeze(self, axis=None): return _call("squeeze", self, axis)
    def ravel(self): return _call("ravel", self)
    def flatten(self): return _call("ravel", self)
    def astype(self, dtype): return _call("astype", self, dtype)
    def dot(self, other): return _call("dot", self, other)
    def clip(self, min=None, max=None): return _call("clip", self, min, max)
    def round(self, decimals=0): return _call("round", self, decimals)
    def conj(self): return _call("conj", self)
    def conjugate(self): return _call("conj", self)
    def trace(self, offset=0, axis1=0, axis2=1): return _call("trace", self, offset, axis1, axis2)

    def diagonal(self, offset=0, axis1=0, axis2=1):
        return _call("diagonal", self, offset, axis1, axis2)

    def repeat(self, repeats, axis=None): return _call("repeat", self, repeats, axis)
    def take(self, indices, axis=None): return _call("take", self, indices, axis)
    def sort(self, axis=-1):
        """Sorts in place and returns None, as ndarray.sort does."""
        self.irvar = _call("sort", self, axis).irvar

    def __round__(self, ndigits=None): return _call("round", self, ndigits or 0)
    def argsort(self, axis=-1): return _call("argsort", self, axis)
    def nonzero(self): return _call("nonzero", self)
    def compress(self, condition, axis=None): return _call("compress", condition, self, axis)
    def choose(self, choices, mode="raise"): return _call("choose", self, choices, mode=mode)
    def put(self, indices, values, mode="raise"): return _call("put", self, indices, values, mode)

    def searchsorted(self, v, side="left", sorter=None):
        return _call("searchsorted", self, v, side=side, sorter=sorter)

    def partition(self, kth, axis=-1):
        """Partitions in place and returns None, as ndarray.partition does."""
        self.irvar = _call("partition", self, kth, axis).irvar

    def argpartition(self, kth, axis=-1): return _call("argpartition", self, kth, axis)

    def copy(self, order="K"):
        """A new array with the same values: writes to it do not reach this one."""
        return _call("copy", self)

    # copy.copy and copy.deepcopy of an array (in a pytree of parameters, say) copy its values;
    # the IR value behind it is shared, never copied (a copied Var would be in no graph).
    def __copy__(self): return self.copy()
    def __deepcopy__(self, memo): return self.copy()

    def fill(self, value):
        """Sets every element to ``value`` in place (views see it), as ndarray.fill does."""
        self[...] = value

    def view(self, dtype=None, type=None):
        """``x.view()``: a view of the whole array (writes through it reach ``x``). A view as
        another dtype reinterprets the bytes, which a traced array does not have."""
        if dtype is not None or type is not None:
            raise TracingError(f"x.view(dtype) reinterprets an array's bytes, which a traced "
                               f"array does not have{where(user_location())}. To convert the "
                               f"values, use x.astype(dtype).")
        return self[...]

    itemsize = property(lambda self: self.dtype.itemsize)
    nbytes = property(lambda self: self.size * self.dtype.itemsize)

    def item(self, *args):
        self._no_value("x.item()", "It returns a Python number, which exists only when the "
                       "compiled function runs. Keep the element as an array (x[i], or x[()] "
                       "for a 0-d one) and compute with it.")

    def tolist(self):
        self._no_value("x.tolist()", "It returns Python numbers, which exist only when the "
                       "compiled function runs. list(x) splits an array along its first axis "
                       "into traced arrays.")

    def __getattr__(self, name):
        # Reached only for names the class lacks: an ndarray method symgrad does not trace yet
        # gets the same error as np.foo(x) would, naming the closest supported methods.
        if not name.startswith("_") and hasattr(np.ndarray, name):
            close = closest(name, [n for n in dir(Tracer) if not n.startswith("_")])
            hint = f" Closest supported: {', '.join(close)}." if close else ""
            raise UnsupportedError(f"ndarray.{name} is not supported on traced arrays yet"
                                   f"{where(user_location())}.{hint} docs/numpy.md lists what "
                                   f"symgrad supports.")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")


class View(Tracer):
    """``base[key]`` for basic indexing, as NumPy's view: reading it sees every write to the
    base (its value is taken again when the base's changed), and writing it (``v[i] = x``,
    ``v += x``) writes the base, so the base and all its other views see the write too."""
    __slots__ = ("base", "key", "_seen", "_value")

    def __init__(self, base, key, value):
        self.base, self.key = base, key
        self._seen, self._value = base.irvar, value.irvar

    @property
    def irvar(self):
        current = self.base.irvar
        if current is not self._seen:
            self._value = _call("getitem", Tracer(current), self.key).irvar
            self._seen = current
        return self._value

    @irvar.setter
    def irvar(self, value):
        self.base.irvar = _call("setitem", Tracer(self.base.irvar), self.key, Tracer(value)).irvar
        self._seen = None       # read back from the base: the value as stored (its dtype)

    def __repr__(self):
        return f"View({self.irvar.type})"
