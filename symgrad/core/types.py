"""Tensor types: a shape and a dtype, the type strings of the API (``"f64[N,3]"``), promotion.

A ``TensorType`` is what a graph value is known to be at trace time. Dimensions are ints, or
sympy expressions of named run-time sizes (see ``dims``): a type string may name a dimension
(``f64[N,3]``), which becomes a size the compiled code takes at run time.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from symgrad.core import dims
from symgrad.errors import DTypeError

# Short names of the type strings, and the dtypes symgrad computes with.
SHORT_NAMES = {"f64": "float64", "f32": "float32", "i64": "int64", "i32": "int32", "bool": "bool",
               "c128": "complex128"}
LONG_TO_SHORT = {v: k for k, v in SHORT_NAMES.items()}
FLOAT_DTYPES = ("float32", "float64", "complex128")
INT_DTYPES = ("int32", "int64")


@dataclass(frozen=True)
class TensorType:
    shape: tuple
    dtype: str

    def __post_init__(self):
        if self.dtype not in LONG_TO_SHORT:
            raise DTypeError(f"unsupported dtype {self.dtype!r}; symgrad computes with "
                             + ", ".join(SHORT_NAMES.values()))

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        """The number of elements: an int, or an expression of run-time sizes."""
        return dims.prod(self.shape)

    @property
    def is_float(self):
        return self.dtype in FLOAT_DTYPES

    def __str__(self):
        return f"{LONG_TO_SHORT[self.dtype]}[{','.join(str(d) for d in self.shape)}]"


_TYPE_RE = re.compile(r"^\s*(f64|f32|i64|i32|bool|c128)\s*\[\s*([^\]]*)\]\s*$")


def parse_type(text):
    """Parse ``"f64[3073,10]"`` or ``"f64[N,3073]"`` into (dtype, dims); dims are ints or names.

    Raises ValueError with the accepted forms when the string does not parse.
    """
    m = _TYPE_RE.match(text)
    if not m:
        raise ValueError(f"cannot read type string {text!r}: expected DTYPE[DIMS] with DTYPE one "
                         f"of f64, f32, i64, i32, bool and DIMS like '3,4', 'N,3' or '' "
                         f"(a scalar), e.g. 'f64[N,3]'")
    dims = []
    for part in filter(None, (p.strip() for p in m.group(2).split(","))):
        if part.isdigit():
            dims.append(int(part))
        elif part.isidentifier():
            dims.append(part)
        else:
            raise ValueError(f"bad dimension {part!r} in type string {text!r}: a dimension is a "
                             f"non-negative integer or a name such as N")
    return SHORT_NAMES[m.group(1)], tuple(dims)


def canonical_dtype(dtype):
    """Map any NumPy dtype-like to the name of the dtype symgrad computes with, or raise."""
    name = np.dtype(dtype).name
    if name in LONG_TO_SHORT:
        return name
    kind = np.dtype(dtype).kind
    if kind in "ui":
        return "int64"
    if kind == "f":          # float16, longdouble: compute in float64
        return "float64"
    raise DTypeError(f"dtype {name} is not supported; use float32, float64, int32, int64 or bool")


def promote(*dtypes):
    """NumPy's promotion of array dtypes, restricted to the dtypes symgrad computes with."""
    return canonical_dtype(np.result_type(*[np.dtype(d) for d in dtypes]))


def broadcast_shapes(*shapes):
    """NumPy broadcasting of shapes; raises ValueError (the caller adds the location)."""
    return dims.broadcast(*shapes)
