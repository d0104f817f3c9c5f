"""Backends: what runs a ``Program`` (a function's forward and value-and-gradient graphs).

A backend has a ``name`` and ``build(program, *, cache_dir=None, cflags=None)``, which returns
an executable with ``value(arrays)`` (the function's outputs) and ``value_and_grad(arrays)``
(the value and a tuple of gradients), and ``source`` (its generated code, or None). Two exist:
``interp`` runs the graphs in NumPy (``backends.interp``), ``c`` renders them as C, compiles and
calls them (``backends.c``).
"""
from __future__ import annotations

from symgrad.backends.program import Program

NAMES = ("c", "interp")


def get(name):
    """The backend called ``name``; ValueError naming the choices for any other."""
    if name == "interp":
        from symgrad.backends import interp     # imported on use: the C backend loads cffi
        return interp.BACKEND
    if name == "c":
        from symgrad.backends.c import native
        return native.BACKEND
    raise ValueError(f"unknown backend {name!r}; choose one of {NAMES}")


__all__ = ["NAMES", "Program", "get"]
