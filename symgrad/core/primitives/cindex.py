"""C index arithmetic shared by the structured kernels: dimensions (ints or run-time size
expressions) as C, offsets that leave out the terms that are 0, and ``for`` loops that vanish
when they would run once or never. Kernels import these under short local names
(``dim as _d``), so one kernel line stays one line of source."""
from __future__ import annotations

from symgrad.core import dims


def dim(d):
    """A dimension (int or run-time expression) as C."""
    return dims.c_expr(dims.normalize(d))


def times(ix, n):
    """``ix * n`` in C for an index ``ix`` and a dimension ``n``: ``0`` for the index 0, ``ix``
    for n = 1."""
    n = dims.normalize(n)
    if ix == "0" or n == 0:
        return "0"
    if n == 1:
        return ix
    return f"{ix if ix.isidentifier() else f'({ix})'} * {dim(n)}"


def plus(*terms):
    """``a + b + ...`` in C, leaving out the terms that are 0."""
    kept = [t for t in terms if t != "0"]
    return " + ".join(kept) or "0"


def for_range(ix, n, body, start=0):
    """``for (int64_t ix = start; ix < n; ++ix)`` around ``body(ix)`` (lines of C); just
    ``body("0")`` when it would run once from 0, and nothing when it would never run."""
    n = dims.normalize(n)
    if isinstance(n, int) and n <= start:
        return []
    if n == 1 and start == 0:
        return body("0")
    lines = body(ix)
    head = f"for (int64_t {ix} = {start}; {ix} < {dim(n)}; ++{ix})"
    if len(lines) == 1:
        return [f"{head} {lines[0]}"]
    return [f"{head} {{", *("    " + line for line in lines), "}"]
