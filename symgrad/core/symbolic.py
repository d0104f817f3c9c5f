"""sympy, imported on first use.

sympy takes longer to import than the rest of symgrad together (about two thirds of
``import symgrad`` when it was imported eagerly), and most calls never need it: shapes of plain
ints, a trace of a function whose derivative graph is already in the disk cache. Modules reach
it through ``sympy()``; ``is_symbolic`` answers "is this a sympy object?" without importing it
(nothing can be one before sympy is loaded).
"""
from __future__ import annotations

import sys

_module = None


def sympy():
    """The sympy module, imported on the first call."""
    global _module
    if _module is None:
        import sympy as sp
        _module = sp
    return _module


def is_symbolic(x):
    """Whether ``x`` is a sympy object (a run-time size, an expression of them)."""
    sp = _module or sys.modules.get("sympy")
    return sp is not None and isinstance(x, sp.Basic)
