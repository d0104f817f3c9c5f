"""Reductions to a scalar in several partial results, so the adds do not wait on each other.

``sum(W * W)`` over 30,730 elements written as one ``acc += w*w`` per element is one chain of
dependent adds: each waits for the one before (4 cycles on the machines measured), whatever the
vector units could do. Without -ffast-math the compiler may not reorder them, so the C says it:
``loop`` runs a fused loop's body for LANES neighbouring elements at a time, each lane reducing
into a partial result of its own, and combines the partial results pairwise after the loop. The
adds are then independent, and gcc vectorises the lanes. The order of the adds changes (as
NumPy's pairwise summation changes it too): the interpreter and the C agree to rounding.

The names it declares start with ``_``, as every name the generated code makes up for itself\n(codegen.c_identifier gives no IR name a leading ``_``); the body's index is the fused loop's ``_i``.
"""
from __future__ import annotations

from symgrad.core import dims

LANES = 8
MIN_SIZE = 4 * LANES          # static loops shorter than this keep one partial result


def splits(reductions, storage, size):
    """Whether a flat fused loop of ``size`` elements ending in ``reductions`` gets lanes:
    every reduction produces a scalar, and the loop is long enough (a run-time size is)."""
    if not reductions or any(storage[r.out].kind != "scalar" for r in reductions):
        return False
    return not (isinstance(size, int) and size < MIN_SIZE)


def loop(size, body, reductions):
    """C lines: the flat loop over ``size`` elements (index ``_i``) running ``body`` and then the
    ``reductions``, each ``((init, update), out CVar, C expression of its operand at _i)``; the
    scalar results (declared before, holding their initial values) are complete after it."""
    n = dims.c_expr(size)
    each = f"for (int64_t _l = 0; _l < {LANES}; ++_l)"
    lines, inner, rest = [], ["const int64_t _i = _blk + _l;", *body], list(body)
    for (init, update), out, operand in reductions:
        partial = f"_lanes_{out.name}"
        lines += [f"{out.ctype} {partial}[{LANES}];",
                  f"{each} {partial}[_l] = {init(out.ctype)};"]
        inner += update(f"{partial}[_l]", operand, out.ctype)
        rest += update(out.name, operand, out.ctype)
    lines += [f"for (int64_t _blk = 0; _blk + {LANES} <= {n}; "
              f"_blk += {LANES}) {{",
              f"    {each} {{", *("        " + x for x in inner), "    }", "}",
              f"for (int64_t _i = {n} - {n} % {LANES}; _i < {n}; ++_i) {{",
              *("    " + x for x in rest), "}"]
    for (_, update), out, _ in reductions:
        partial = f"_lanes_{out.name}"
        width = LANES
        while width > 1:
            width //= 2
            if width == 1:       # no loop of one (the generated C's rule)
                lines += update(f"{partial}[0]", f"{partial}[1]", out.ctype)
                continue
            lines += [f"for (int64_t _l = 0; _l < {width}; ++_l) {{",
                      *("    " + x for x in update(f"{partial}[_l]",
                                                  f"{partial}[_l + {width}]",
                                                  out.ctype)), "}"]
        lines += update(out.name, f"{partial}[0]", out.ctype)
    return lines
