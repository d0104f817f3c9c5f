"""CPython entry points for functions of float64 scalars (W1), in the library itself.

Such a function's arithmetic takes tens of nanoseconds; through cffi's ABI mode its call took
1.4 us (benchmarks/profile_w1.md): the foreign call 0.3, filling and reading its buffer 0.3,
the rest symgrad's fast path. ``templates/python_entry.c.j2`` appends CPython functions to the
library's C: each reads the argument values, calls the C function with them in a local array
(inlined: the compiler sees both) and builds the user's result, as ``native._scalar_call``'s
``run`` does. The library is then loaded as usual, and ``entries`` asks it for the functions.

This needs CPython's headers (``Python.h``); where they are missing (or the interpreter is not
CPython), ``available()`` is false and the cffi path serves. Libraries built ahead of time never
contain it. Results: a Python float for a value (a tuple of them for a tuple result), and
NumPy float64 scalars for gradients, as on every other path.
"""
from __future__ import annotations

import ctypes
import functools
import os
import platform
import sysconfig

import numpy as np


@functools.lru_cache(maxsize=None)
def include_dir():
    """The directory of ``Python.h``, or None when symgrad cannot build CPython entry points
    (not CPython, no headers, or a NumPy float64 that is not laid out as a float)."""
    if platform.python_implementation() != "CPython":
        return None
    if not (issubclass(np.float64, float) and np.float64.__basicsize__ == float.__basicsize__):
        return None
    path = sysconfig.get_paths().get("include")
    if not path or not os.path.isfile(os.path.join(path, "Python.h")):
        return None
    return path


def available():
    return include_dir() is not None


def entries(functions, python_name, tuple_output, release_gil):
    """What ``python_entry.c.j2`` needs for ``functions`` (the CFunctions of a specialization
    whose inputs and outputs are all float64 scalars: the value, then value-and-gradient):
    one entry per Python function, in the order ``load`` returns them: the value, and with a
    gradient function, value-and-gradients and value-and-first-gradient."""
    out = []
    value = functions[0]
    n_in = len(value.inputs)
    out.append(_entry(value, "value", python_name, n_in,
                      f"symgradrt_tuple(slots + {n_in}, {len(value.outputs)}, PyFloat_FromDouble)"
                      if tuple_output else f"PyFloat_FromDouble(slots[{n_in}])", release_gil))
    if len(functions) > 1:
        vg = functions[1]
        grads = len(vg.outputs) - 1
        value_expr = f"PyFloat_FromDouble(slots[{n_in}])"
        out.append(_entry(vg, "value_and_grad", python_name, n_in,
                          f"symgradrt_pair({value_expr}, symgradrt_tuple(slots + {n_in + 1}, "
                          f"{grads}, symgradrt_new_float64))", release_gil))
        out.append(_entry(vg, "value_and_first_grad", python_name, n_in,
                          f"symgradrt_pair({value_expr}, symgradrt_new_float64(slots[{n_in + 1}]))",
                          release_gil))
    return out


def _entry(fn, kind, python_name, n_in, result, release_gil):
    total = n_in + len(fn.outputs)
    return {"name": kind, "python": f"{python_name}.{kind}", "c_name": fn.name,
            "doc": f"{kind}: {fn.name} on float64 scalars", "inputs": n_in,
            "outputs": len(fn.outputs), "pointers": [f"&slots[{k}]" for k in range(total)],
            "result": result, "release_gil": release_gil}


def load(library_path, count):
    """The library's entry points as Python functions (a tuple of ``count``)."""
    make = ctypes.PyDLL(str(library_path)).symgrad_python_entries
    make.argtypes = [ctypes.py_object]
    make.restype = ctypes.py_object
    made = make(np.float64)
    if len(made) != count:
        raise RuntimeError(f"{library_path}: {len(made)} Python entry points, expected {count}")
    return made
