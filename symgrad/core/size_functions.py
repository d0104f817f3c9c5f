"""The sympy functions run-time sizes use beyond arithmetic; imported (with sympy) by ``dims``
only when a size is an expression, so plain-int shapes never load sympy."""
from __future__ import annotations

import sympy as sp


class CeilDiv(sp.Function):
    """``ceil(a / b)`` of non-negative integers, printed as C integer division."""
    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, a, b):
        if a.is_Integer and b.is_Integer:
            return -(-a // b)

    def _ccode(self, printer):
        a, b = self.args
        return f"(({printer._print(a)} + {int(b) - 1}) / {printer._print(b)})"


class AtLeastZero(sp.Function):
    """``max(a, 0)`` of an integer, printed as a C conditional (a trip count ``upper - lower``
    is 0 when ``upper < lower``)."""
    is_integer = True
    is_nonnegative = True

    @classmethod
    def eval(cls, a):
        if a.is_Integer:
            return max(a, sp.Integer(0))
        if a.is_nonnegative:
            return a

    def _ccode(self, printer):
        a = printer._print(self.args[0])
        return f"(({a}) > 0 ? ({a}) : 0)"
