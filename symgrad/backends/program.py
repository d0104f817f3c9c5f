"""What a backend runs: one specialization of a user's function, as graphs."""
from __future__ import annotations

from dataclasses import dataclass

from symgrad.core.ir import Graph


@dataclass(frozen=True)
class Program:
    """A function's forward graph and, when its result is one float scalar, its value-and-gradient
    graph (outputs: the value, ``n_aux`` auxiliary outputs (``has_aux``), then one gradient per
    ``wrt`` input).

    ``name`` is the Python function's name and ``origin`` where it was written (``loss.py:12``),
    for messages and the generated code's comments.
    """
    name: str
    origin: str
    forward: Graph
    value_and_grad: Graph | None = None
    wrt: tuple = ()          # positions in forward.inputs the gradient is taken with respect to
    n_aux: int = 0           # has_aux: outputs passed through between the value and gradients

    @property
    def differentiable(self):
        return self.value_and_grad is not None
