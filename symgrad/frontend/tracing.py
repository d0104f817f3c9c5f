"""Tracing: run a Python function on ``Tracer``s and record what it does as a ``Graph``."""
from __future__ import annotations

import inspect

import numpy as np

from symgrad.core import dims
from symgrad.errors import TracingError
from symgrad.core.ir import Builder, Graph, Var, building
from symgrad.core.types import TensorType, canonical_dtype
from symgrad.frontend.tracer import Tracer
from symgrad.frontend import autograph
from symgrad import numpy as snp


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
        result = autograph.convert(fn)(*args)
        several = isinstance(result, (tuple, list))
        outs = [_as_output(r, fn) for r in result] if several else [_as_output(result, fn)]
    if several and not outs:
        raise TracingError(f"{getattr(fn, '__name__', 'the function')} returned an empty "
                           f"{type(result).__name__}")
    for v in outs:
        by_value = dims.value_symbols([v.shape])
        if dims.count_symbols([v.shape]):
            raise TracingError(
                f"{getattr(fn, '__name__', 'the function')} returns an array of shape "
                f"{tuple(v.shape)}, whose size is a while loop's trip count; return something "
                f"of a fixed size instead")
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
    if isinstance(result, (tuple, list, dict)):
        raise TracingError(f"{getattr(fn, '__name__', 'the function')} returned a nested "
                           f"{type(result).__name__}; symgrad functions return an array, a "
                           f"scalar, or a flat tuple of them")
    if isinstance(result, Tracer):
        return result.irvar
    try:
        return snp.asarray(np.asarray(result, dtype=canonical_dtype(np.asarray(result).dtype))).irvar
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
