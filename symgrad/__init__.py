"""symgrad: trace NumPy-style Python into a typed graph, differentiate it in reverse mode, and
run value and gradient as native C (or in the NumPy interpreter).

    import symgrad, symgrad.numpy as snp

    @symgrad.compile
    def loss(w, x):
        return snp.sum(snp.tanh(x @ w) ** 2)

    value, dw = loss.value_and_grad(w, x)

The API reference, every public entry point with what it takes, returns and raises, is
``docs/api.md`` in the repository (linked from its README); ``help(symgrad.compile)`` and the
other docstrings say the same for one function.
"""
from symgrad._version import __version__

from symgrad import distributed, nn, numerical, optim  # distributed imports Dask lazily
from symgrad.tools import inspect
from symgrad import numpy  # noqa: F401  (symgrad.numpy)
from symgrad import tree_util
from symgrad.scipy import special as _special  # noqa: F401  (registers scipy.special names)
from symgrad.scipy import linalg as _scipy_linalg  # noqa: F401  (registers scipy.linalg names)
from symgrad.tools.aot import export
from symgrad.api import (CompiledFunction, check_grad, compile, grad, hessian, jacobian, trace,
                         value_and_grad, vmap)
from symgrad.tools.check import GradCheckReport
from symgrad.errors import (CompileError, DTypeError, GradientCheckError, ShapeError, SymgradError,
                     TracingError)
from symgrad.core.ir import Graph
from symgrad.frontend.loops import fori_loop, scan


__all__ = ["CompiledFunction", "compile", "export", "grad", "value_and_grad",
           "jacobian", "hessian", "vmap", "trace", "check_grad",
           "GradCheckReport", "Graph", "TracingError", "ShapeError", "DTypeError", "CompileError",
           "GradientCheckError", "SymgradError", "fori_loop", "scan", "distributed", "inspect",
           "nn", "numerical", "numpy", "optim", "tree_util"]
