"""C spellings of symgrad's dtypes and values."""
from __future__ import annotations

import numpy as np

CTYPES = {"float64": "double", "float32": "float", "int64": "int64_t", "int32": "int32_t",
          "bool": "bool"}

# Status codes every generated function returns (documented in the generated header).
STATUS = {"SYMGRAD_OK": 0, "SYMGRAD_ENOMEM": 1, "SYMGRAD_EINDEX": 2, "SYMGRAD_ESIZE": 3}


def c_literal(value, ctype):
    """``value`` as a C literal for a variable of C type ``ctype`` (NAN and INFINITY included)."""
    if ctype in ("double", "float"):
        v = float(value)
        if np.isnan(v):
            return "NAN"
        if np.isinf(v):
            return "INFINITY" if v > 0 else "-INFINITY"
        text = repr(v)
        return text + ("f" if ctype == "float" else "")
    if ctype == "bool":
        return "1" if value else "0"
    v = int(value)
    return f"INT64_C({v})" if abs(v) > 2**31 - 1 else str(v)
