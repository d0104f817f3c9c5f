"""Tracing: run a Python function on ``Tracer``s and record what it does as a ``Graph``.

A ``Tracer`` stands for an array during tracing. Its operators and methods are those of a NumPy
array and go through ``symgrad.numpy``; anything that would need its value (``if x > 0:``,
``float(x)``, ``np.asarray(x)``) raises ``TracingError`` naming the line.
"""
from __future__ import annotations

import inspect

import numpy as np

from symgrad.core import dims
from symgrad.errors import TracingError, where
from symgrad.core.ir import Builder, Graph, Var, building, user_location
from symgrad.core.types import TensorType, canonical_dtype


class Tracer:
    """A traced array. Behaves like an ndarray inside a function being traced."""
    __slots__ = ("var",)
    __array_priority__ = 1000    # ndarray <op> Tracer defers to the Tracer's reflected operator

    def __init__(self, var: Var):
        self.var = var

    # -- what is known at trace time
    shape = property(lambda self: self.var.shape)
    ndim = property(lambda self: self.var.ndim)
    dtype = property(lambda self: np.dtype(self.var.dtype))
    size = property(lambda self: self.var.type.size)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d traced array")
        return self.shape[0]

    def __iter__(self):
        for i in range(len(self)):
            yield self[i]

    def __repr__(self):
        return f"Tracer({self.var.type})"

    # -- what is not known at trace time
    def _no_value(self, what, hint):
        loc = user_location()
        raise TracingError(f"{what} needs the value of a traced array of type {self.var.type}, "
                           f"which is not known while tracing{where(loc)}. {hint}")

    def __bool__(self):
        self._no_value("Python control flow (if/while/and/or/not)",
                       "Use snp.where(cond, a, b) to choose between values, or make the "
                       "argument static (static_argnums).")

    def __float__(self):
        self._no_value("float()", "Keep computing with symgrad.numpy instead.")

    def __int__(self):
        self._no_value("int()", "Sizes are known: use x.shape.")

    def __index__(self):
        self._no_value("Using a traced array as a Python index", "Use integer-array indexing.")

    def __array__(self, dtype=None, copy=None):
        self._no_value("Converting to a NumPy array",
                       "Call symgrad.numpy functions (import symgrad.numpy as snp) instead of "
                       "numpy functions on traced values.")

    def __setitem__(self, key, value):
        raise TracingError(f"in-place assignment to a traced array is not supported"
                           f"{where(user_location())}. Build the new array with snp.where, "
                           f"snp.concatenate or arithmetic instead.")

    def __hash__(self):
        return id(self)

    # NumPy ufuncs called on a Tracer (np.exp(x), ndarray * x) dispatch to symgrad.numpy.
    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        from symgrad import numpy as snp
        fn = getattr(snp, ufunc.__name__, None) if method == "__call__" and not kwargs else None
        if fn is None:
            raise TracingError(f"numpy.{ufunc.__name__} ({method}) is not supported on traced "
                               f"values{where(user_location())}; use symgrad.numpy")
        return fn(*inputs)

    def __array_function__(self, func, types, args, kwargs):
        from symgrad import numpy as snp
        fn = getattr(snp, func.__name__, None)
        if fn is None:
            raise TracingError(f"numpy.{func.__name__} is not supported on traced values"
                               f"{where(user_location())}; use symgrad.numpy")
        return fn(*args, **kwargs)


def _install_operators():
    from symgrad import numpy as snp
    binary = {"add": snp.add, "sub": snp.subtract, "mul": snp.multiply, "truediv": snp.divide,
              "pow": snp.power, "matmul": snp.matmul}
    for name, fn in binary.items():
        setattr(Tracer, f"__{name}__", lambda self, other, fn=fn: fn(self, other))
        setattr(Tracer, f"__r{name}__", lambda self, other, fn=fn: fn(other, self))
    for name, fn in {"lt": snp.less, "le": snp.less_equal, "gt": snp.greater,
                     "ge": snp.greater_equal, "eq": snp.equal, "ne": snp.not_equal}.items():
        setattr(Tracer, f"__{name}__", lambda self, other, fn=fn: fn(self, other))
    Tracer.__neg__ = lambda self: snp.negative(self)
    Tracer.__pos__ = lambda self: self
    Tracer.__abs__ = lambda self: snp.abs(self)
    Tracer.__getitem__ = lambda self, key: snp.getitem(self, key)
    Tracer.T = property(lambda self: snp.transpose(self))
    for name in ("sum", "mean", "max", "min", "prod"):
        setattr(Tracer, name, lambda self, axis=None, keepdims=False, _f=getattr(snp, name):
                _f(self, axis=axis, keepdims=keepdims))
    Tracer.reshape = lambda self, *shape: snp.reshape(
        self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)
    Tracer.transpose = lambda self, *axes: snp.transpose(self, axes or None)
    Tracer.astype = lambda self, dtype: snp.astype(self, dtype)
    Tracer.dot = lambda self, other: snp.dot(self, other)
    Tracer.squeeze = lambda self, axis=None: snp.squeeze(self, axis)
    Tracer.ravel = lambda self: snp.reshape(self, (-1,))
    Tracer.flatten = Tracer.ravel
    Tracer.clip = lambda self, a_min=None, a_max=None: snp.clip(self, a_min, a_max)


def parameter_names(fn):
    """The names of ``fn``'s positional parameters (``*args`` gets arg0, arg1, ...)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return []
    return [p.name for p in params
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def trace(fn, arg_types, static=None, *, name=None):
    """Trace ``fn`` into a Graph.

    ``arg_types``: one ``TensorType`` per traced positional argument, in order, or None for a
    static argument whose Python value is ``static[i]``. Returns a Graph with one input per traced
    argument (named after fn's parameters) and one output. Raises TracingError when fn does
    something that needs a traced value, ShapeError on mismatched shapes.
    """
    static = static or {}
    names = parameter_names(fn)
    builder = Builder()
    inputs, args = [], []
    for i, t in enumerate(arg_types):
        if t is None:
            args.append(static[i])
            continue
        label = names[i] if i < len(names) else f"arg{i}"
        var = Var(t, name=label)
        inputs.append(var)
        args.append(Tracer(var))
    builder.inputs = inputs
    with building(builder):
        result = fn(*args)
        several = isinstance(result, (tuple, list))
        outs = [_as_output(r, fn) for r in result] if several else [_as_output(result, fn)]
    if several and not outs:
        raise TracingError(f"{getattr(fn, '__name__', 'the function')} returned an empty "
                           f"{type(result).__name__}")
    for v in outs:
        by_value = dims.value_symbols([v.shape])
        if by_value:
            raise TracingError(
                f"{getattr(fn, '__name__', 'the function')} returns an array of shape "
                f"{tuple(v.shape)}, whose size depends on the value of the argument "
                f"{', '.join(dims.value_source(s) for s in by_value)} (a loop's trip count). "
                f"Return something of a fixed size instead, such as the final carry or a sum "
                f"of the per-step outputs, or make the trip count a Python int")
    return Graph(inputs, builder.nodes, outs, name=name or getattr(fn, "__name__", "f"),
                 tuple_output=several)


def _as_output(result, fn):
    from symgrad import numpy as snp
    if isinstance(result, (tuple, list, dict)):
        raise TracingError(f"{getattr(fn, '__name__', 'the function')} returned a nested "
                           f"{type(result).__name__}; symgrad functions return an array, a "
                           f"scalar, or a flat tuple of them")
    if isinstance(result, Tracer):
        return result.var
    try:
        return snp.asarray(np.asarray(result, dtype=canonical_dtype(np.asarray(result).dtype))).var
    except Exception as e:
        raise TracingError(f"{getattr(fn, '__name__', 'the function')} returned "
                           f"{type(result).__name__}, not an array") from e


def type_of(value):
    """The TensorType a Python or NumPy argument is traced as."""
    arr = value if isinstance(value, np.ndarray) else np.asarray(value)
    if isinstance(value, bool):
        dtype = "bool"
    elif isinstance(value, int):
        dtype = "int64"
    elif isinstance(value, float):
        dtype = "float64"
    else:
        dtype = canonical_dtype(arr.dtype)
    return TensorType(tuple(arr.shape), dtype)
