"""guard: a value passed through, the call failing with a message when a flag is set at run time.

A ``while`` loop on a traced condition is counted at run time and its tape sized by the count
(``while_count``), but it may have a bound: ``# symgrad: max_steps=N``, and the fixed bound of a
while loop inside another loop's body, whose tape is sized for it (``symgrad.frontend.pyflow``).
When the condition still holds after the last step the loop may take, the result would be
silently wrong, so the loop's final state goes through ``guard[message](overflow, state)``
instead (for a counted loop without a bound the flag is false): the interpreter raises ``RuntimeError(message)``; the C code returns its index-error
status, upon which the caller reruns the graph in the interpreter, which raises the same error.
"""
from __future__ import annotations

import numpy as np

from symgrad.errors import ShapeError
from symgrad.core import ops
from symgrad.core.primitive import Primitive, bind, register
from symgrad.core.types import TensorType


def _guard_type(flag, x, *, message):
    if flag.shape != () or flag.dtype != "bool":
        raise ShapeError(f"guard's flag must be a bool scalar, got {flag}")
    return TensorType(x.shape, x.dtype)


def _guard_impl(flag, x, *, message):
    if np.any(flag):
        raise RuntimeError(message)
    return x


def _guard_c(k):
    flag, x, out = k.ins[0], k.ins[1], k.out
    idx = k.idx(out.shape)      # x has out's shape; 0 along an axis of size 1 (no loop)
    return [f"if ({k.at(flag, '0')}) {k.fail('SYMGRAD_EINDEX')}",
            *k.loop(out.shape, [f"{k.at(out, k.offset(out, idx))} = "
                                f"{k.at(x, k.offset(x, idx))};"])]


def _guard_batch(size, bdims, flag, x, *, message):
    # vmap: the batch fails when any example's flag is set; x keeps its batch axis.
    if bdims[0] is not None:
        hits = ops.reduce_sum(ops.convert(flag, "int64"), (0,))
        flag = ops.lt(ops.const(0, "int64"), hits)
    return bind("guard", flag, x, message=message), bdims[1]


register(Primitive(
    name="guard", shape_rule=_guard_type, impl=_guard_impl,
    batch=_guard_batch,
    vjp=lambda g, out, flag, x, *, message: (None, g),
    jvp=lambda t, out, flag, x, *, message: t[1],
    c_kernel=_guard_c,
    doc="guard[message](flag, x) = x; the call fails with message when flag is true",
))
