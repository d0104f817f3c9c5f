"""What a backend runs: one specialization of a user's function, as graphs."""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable

from symgrad.core.ir import Graph

# The functions a Program may have: its value, and (when differentiable) its value and gradient.
VALUE, VALUE_AND_GRAD = "value", "value_and_grad"
BOTH = (VALUE, VALUE_AND_GRAD)


@dataclass(frozen=True)
class Program:
    """A function's forward graph and, when its result is one float scalar, its value-and-gradient
    graph (outputs: the value, ``n_aux`` auxiliary outputs (``has_aux``), then one gradient per
    ``wrt`` input).

    ``name`` is the Python function's name and ``origin`` where it was written (``loss.py:12``),
    for messages and the generated code's comments.

    ``value_and_grad`` may be given as a Graph or as a function making it (``derive``): then it
    is made on first access. A backend that finds its compiled code in a cache by the forward
    graph alone (``backends.c.keys``) never needs it, and the derivative is not built.
    """
    name: str
    origin: str
    forward: Graph
    derive: Graph | Callable | None = None
    wrt: tuple = ()          # positions in forward.inputs the gradient is taken with respect to
    n_aux: int = 0           # has_aux: outputs passed through between the value and gradients

    @property
    def differentiable(self):
        return self.derive is not None

    @functools.cached_property
    def value_and_grad(self):
        """The value-and-gradient graph (None when not differentiable), made on first use."""
        return self.derive() if callable(self.derive) else self.derive

    def value_and_grad_outputs(self):
        """The values ``value_and_grad`` returns, typed, without building it: the value, the
        auxiliary outputs, then one gradient per ``wrt`` input (of that input's type)."""
        f = self.forward
        return [f.outputs[0], *f.outputs[1:1 + self.n_aux], *[f.inputs[i] for i in self.wrt]]
