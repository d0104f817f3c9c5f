"""C spellings of symgrad's dtypes and values."""
from __future__ import annotations

import numpy as np

CTYPES = {"float64": "double", "float32": "float", "int64": "int64_t", "int32": "int32_t",
          "bool": "bool"}

# Status codes every generated function returns (documented in the generated header).
STATUS = {"SYMGRAD_OK": 0, "SYMGRAD_ENOMEM": 1, "SYMGRAD_EINDEX": 2, "SYMGRAD_ESIZE": 3}


def c_literal(value, ctype):
    """``value`` as a C literal for a variable of C type ``ctype`` (NAN and INFINITY included).

    A negative literal comes parenthesized, ``(-1.5)``: literals are pasted into expressions
    (``-{x}``, ``{g} - {x}``) where a bare sign would pair with the operator before it into
    ``--`` or ``-=``-like tokens.
    """
    if ctype in ("double", "float"):
        v = float(value)
        if np.isnan(v):
            return "NAN"
        if np.isinf(v):
            return "INFINITY" if v > 0 else "(-INFINITY)"
        text = repr(v) + ("f" if ctype == "float" else "")
    elif ctype == "bool":
        return "1" if value else "0"
    else:
        v = int(value)
        text = f"INT64_C({v})" if abs(v) > 2**31 - 1 else str(v)
    return f"({text})" if text.startswith("-") or v < 0 else text


def literal_value(text):
    """The number a ``c_literal`` float spells (``2.5``, ``(-1.0f)``); None for anything else."""
    text = text[1:-1] if text.startswith("(") and text.endswith(")") else text
    try:
        return float(text[:-1] if text.endswith("f") else text)
    except ValueError:
        return None
