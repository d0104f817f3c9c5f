"""Register-blocked kernels for matrix products with a narrow side, and the parallel glue.

A product whose result has few columns (``n <= NARROW_MAX``, known when the C is written), such
as a linear classifier's scores ``X @ W`` (N x 3073 by 3073 x 10) or its gradient ``X^T G``,
does ~n multiply-adds per element of the wide operand. OpenBLAS's gemm first copies ("packs")
that operand into its own layout, which here costs about as much as the arithmetic (measured: 45%
of W3's time in ``dgemm_otcopy``/``dgemm_oncopy``, ~9 GFLOP/s against 37 for a square dgemm).
These kernels read it where it is instead: a block of R rows (or, for ``A^T B``, R columns) of
the result, R x ceil(n / lanes) vectors, stays in registers while one loop streams the operands;
each step loads R elements of the wide operand (broadcast) and one row of the narrow one
(ceil(n / lanes) vectors) and does R x ceil(n / lanes) multiply-adds. The narrow operand is read
in panels small enough to stay in L1 cache.

``matmul``'s C rule (primitives/structural.py) names the kernel it calls,
``symgradrt_mm_<nn|tn>_<d|s><n>_run``; ``kernel_source`` writes the functions behind such names,
and ``narrow.c.j2`` lays them out with the vector helpers and the parallel glue:
``symgradrt_parallel_for`` splits a kernel's rows (or a BLAS gemm's, ``symgradrt_[ds]gemm_par``)
over the thread pool of ``threads.c.j2`` when the build links it (``SYMGRAD_USE_THREADS``), and
runs them in the calling thread otherwise (ahead-of-time libraries).

Helper names start with ``symgradrt_``: a user's function ``f`` becomes ``symgrad_f``, so no
user function can take them. The vectors are GCC/Clang vector extensions (32 bytes: AVX2
registers with -march=native, pairs
of SSE or NEON registers elsewhere); multiply-adds use FMA where the target has it.
"""
from __future__ import annotations

import math
import re

NARROW_MAX = 16                        # result columns up to which these kernels are used
VECTOR_BYTES = 32
SIZEOF = {"double": 8, "float": 4}
LETTER = {"double": "d", "float": "s"}
CTYPE = {v: k for k, v in LETTER.items()}
PANEL_BYTES = 16384                    # of the narrow operand per pass: half of a 32 KB L1
# "tn" (A^T B) reads A in tiles of TN_PANEL rows and TILE_BYTES, each copied while the one after
# next is prefetched (see _kernel). W3's X^T G (256 x 3073), one core, min of 100 (hot: X in L3)
# or 20 calls (cold: X flushed from every cache), load average ~5; rows x bytes -> hot / cold ms:
# float64: 32 x 16 KB 0.468 / 0.790; 16 x 16 KB 0.483 / 0.850; prefetching one tile ahead
# 0.679 / 1.379, three 0.471 / 0.831; prefetcht0 instead of prefetcht1: 0.57 / 1.30.
TN_PANEL = 32
TILE_BYTES = 16384
LINE_BYTES = 64
# Registers: R x nv accumulators, nv for the narrow operand's row and one broadcast must fit in
# the 16 vector registers, with one to spare. With all 16 taken (4 x 3 for 10 columns), gcc
# folded the row's loads into every multiply-add: 16 loads per 12 multiply-adds, 0.47 ms for W3's
# scores where 3 rows (9 accumulators) take 0.3 ms.
VECTOR_REGISTERS = 16
# Rows sharing a last vector (``blocking``), at most. Each group of k rows costs k - 1 blends a
# step. Products 256 x 3073 by 3073 x n on one core, allowing 1 / 2 / 4 rows: float32 n = 12,
# 0.261 / 0.215 / 0.215 ms; n = 10, 0.262 / 0.262 / 0.241; float64 n = 5, 0.265 / 0.265 / 0.247;
# n = 1, 2, 4 (bound by reading X) unchanged. Eight rows (one float column each, 7 blends per 8
# multiply-adds) were not tried.
MAX_SHARE = {"double": 4, "float": 4}

NAME = re.compile(r"\bsymgradrt_mm_(nn|tn|mv|outer)_([ds])(\d+)_run\b")


def kernel_name(kind, ctype, n):
    """The entry point ``matmul``'s C calls: ``symgradrt_mm_<kind>_<d|s><n>_run``."""
    return f"symgradrt_mm_{kind}_{LETTER[ctype]}{n}_run"


def kernels_used(lines):
    """(kind, ctype, n) of every narrow kernel the C ``lines`` call, in a stable order."""
    found = set()
    for line in lines:
        for kind, letter, n in NAME.findall(line):
            found.add((kind, CTYPE[letter], int(n)))
    return sorted(found)


GEMM = re.compile(r"\bsymgradrt_[ds]gemm_par\(")


# A gemm whose contraction is this many times its result's longer side, or more, is split
# over k (symgradrt_[ds]gemm_par in narrow.c.j2, which these constants size), in one chunk
# per KSPLIT_CHUNK_K of it (at most 8): a count the shapes fix, not the number of threads, so
# that the numbers are the same on any number of cores (the measurements are in the template).
KSPLIT_RATIO = 4
KSPLIT_CHUNK_K = 768


def template_parts(lines):
    """What ``narrow.c.j2`` must hold for C ``lines``: ``blas`` (the split gemm calls),
    ``ksplit`` (the split of a long contraction, only where a gemm call may have one: ~100
    lines of C that most modules need not compile) and ``kernels`` (the C of each narrow
    kernel called). None when they call neither."""
    kernels = [kernel_source(*k) for k in kernels_used(lines)]
    calls = [line for line in lines if GEMM.search(line)]
    parts = {"blas": bool(calls), "ksplit": any(map(_may_split_k, calls)), "kernels": kernels,
             "ksplit_ratio": KSPLIT_RATIO, "ksplit_chunk_k": KSPLIT_CHUNK_K}
    return parts if calls or kernels else None


def _may_split_k(call):
    """Whether the gemm ``call`` (a line of C) may split its contraction: its sizes are known
    only at run time, or k > KSPLIT_RATIO * max(m, n) and k holds two chunks."""
    sizes = _GEMM_SIZES.search(call)
    if sizes is None:
        return True
    m, n, k = map(int, sizes.groups())
    return k > KSPLIT_RATIO * max(m, n) and k >= 2 * KSPLIT_CHUNK_K


# The pool splits a call only when its work (multiply-adds) gives each of two threads or more at
# least SYMGRAD_MIN_WORK (threads.c.j2, 65536): a call with less runs in the calling thread
# whatever the number of threads. A library whose every such call is that small is built
# without the pool (``may_split``): the same C, its symgradrt_parallel_for the serial one.
SPLIT_MIN_WORK = 2 * 65536
_GEMM_SIZES = re.compile(r"\bsymgradrt_[ds]gemm_par\(\d+, \d+, (\d+), (\d+), (\d+),")
_POOL_KERNEL = re.compile(r"\bsymgradrt_mm_(?:nn|tn)_[ds](\d+)_run\(")
_POOL_KERNEL_SIZES = re.compile(r"\bsymgradrt_mm_(?:nn|tn)_[ds](\d+)_run\((\d+), (\d+), _pa")


def may_split(lines):
    """Whether a call in the C ``lines`` (function bodies) may give the thread pool work: a
    split gemm or a narrow kernel's ``_run`` (nn, tn: rows x contraction x columns multiply-adds;
    mv and outer never split) with a size known only at run time or with SPLIT_MIN_WORK
    multiply-adds or more, or a parallel loop of its own."""
    for line in lines:
        if "symgradrt_parallel_for(" in line:
            return True
        if GEMM.search(line):
            sizes = _GEMM_SIZES.search(line)
            if sizes is None or math.prod(map(int, sizes.groups())) >= SPLIT_MIN_WORK:
                return True
        if _POOL_KERNEL.search(line):
            sizes = _POOL_KERNEL_SIZES.search(line)
            if sizes is None or math.prod(map(int, sizes.groups())) >= SPLIT_MIN_WORK:
                return True
    return False


def blocking(ctype, n, kind="nn"):
    """(lanes, vectors per result row, result rows per block, rows sharing the last vector).

    The last vector of a result row holds ``w = n - (nv - 1) * lanes`` columns. When ``w`` is
    at most half a vector and divides it, ``share = lanes // w`` rows keep their last columns
    in one vector (for 10 doubles: rows r and r + 1 as [r:8, r:9, r+1:8, r+1:9]), which one
    multiply-add updates with the broadcasts of those rows blended together; otherwise
    (``share`` 1) each row pads its last vector with unused lanes. Measured on W3's products
    (256 x 3073 by 3073 x 10, one core, the wide operand hot in cache): float64 scores 0.352 ->
    0.337 ms (12 multiply-adds a step for 40 useful products -> 10 and 2 blends); float32 0.263
    -> 0.241 ms. Run between the adjoint products, as in a gradient, where X comes from L3
    cache, float64 gains less: 0.398 -> 0.381 ms. ``A^T B`` ("tn") shares too since it reads the
    wide operand from a contiguous tile (``_kernel``): float32's X^T G 0.400 -> 0.288 ms (X in
    L3 cache; 0.56 -> 0.47 cold), where reading X in place, 6 rows unshared beat 4 shared.
    ``kind`` is kept for callers; both kinds block alike."""
    lanes = VECTOR_BYTES // SIZEOF[ctype]
    nv = math.ceil(n / lanes)
    w = n - (nv - 1) * lanes
    plain = max(1, min(8, (VECTOR_REGISTERS - 1 - nv) // nv))
    share = lanes // w if (lanes % w == 0 and 2 * w <= lanes and lanes // w <= MAX_SHARE[ctype]) \
        else 1
    if share > 1:
        # Registers: the accumulators, the narrow row (nv), the group's broadcasts and their
        # blend, within the 16 vector registers.
        fits = [r for r in range(share, 9, share)
                if r * (nv - 1) + r // share + nv + share + 1 <= VECTOR_REGISTERS]
        if fits:
            return lanes, nv, max(fits), share
    return lanes, nv, plain, 1


def tn_tile(ctype, n):
    """(rows, columns) of the tiles in which the "tn" kernel for ``n`` result columns copies the
    wide operand: TN_PANEL rows, as many whole blocks of columns as fit TILE_BYTES."""
    rows = blocking(ctype, n, "tn")[2]
    return TN_PANEL, max(rows, TILE_BYTES // (TN_PANEL * SIZEOF[ctype]) // rows * rows)


def kernel_source(kind, ctype, n):
    """The C of one kernel (``kind`` "nn": C = A B; "tn": C = A^T B; "mv": one row of C, a
    vector times B) for ``n`` result columns: the kernel over a range of result rows, a task for
    the thread pool, and ``..._run`` (for "mv", ``_run`` alone)."""
    return {"nn": _nn, "tn": _tn, "mv": _mv, "outer": _outer}[kind](ctype, n)


def _outer(ctype, n):
    """``c = a b`` (``+ c``) for vectors ``a[m]`` and ``b[n]``: a product whose contraction has
    length 1, such as a loop step's contribution ``x[i]^T g`` to the adjoint of ``W``. One pass
    over ``c``, which is contiguous: ``group`` rows of it are whole vectors, each the
    multiply-add of a vector of ``a``'s elements (one per row, repeated along it) and one of
    ``b`` repeated ``group`` times. (gcc's cheap vectorizer leaves the plain loops scalar: a row
    of 10 is not a whole number of vectors.)"""
    s = LETTER[ctype]
    S = s.upper()
    t = ctype
    lanes = VECTOR_BYTES // SIZEOF[ctype]
    group = lanes // math.gcd(n, lanes)            # rows whose elements fill whole vectors
    nvec = group * n // lanes
    name = f"symgradrt_mm_outer_{s}{n}_run"
    lines = [
        f"/* c[i, :] = a[i] b (+ c[i, :] when accumulating) for i < m; c is m x {n}, "
        f"row-major, {group} rows",
        f" * ({nvec} vectors) at a time. */",
        f"static void {name}(int64_t m, const {t} *restrict a, const {t} *restrict b, "
        f"{t} *restrict c,",
        f"{' ' * (len(name) + 13)}int accumulate)",
        "{",
    ]
    for v in range(nvec):
        elems = ", ".join(f"b[{(v * lanes + l) % n}]" for l in range(lanes))
        lines.append(f"    const symgradrt_v{s} b{v} = {{{elems}}};")
    lines += ["    int64_t i = 0;", f"    for (; i + {group} <= m; i += {group}) {{",
              f"        {t} *restrict row = c + i * {n};"]
    for v in range(nvec):
        elems = ", ".join(f"a[i + {(v * lanes + l) // n}]" for l in range(lanes))
        lines.append(f"        const symgradrt_v{s} a{v} = {{{elems}}};")
        lines.append(f"        symgradrt_v{s} c{v} = accumulate ? symgradrt_load_{s}(row + "
                     f"{v * lanes}) : symgradrt_splat_{s}(0);")
        lines.append(f"        c{v} = SYMGRADRT_MADD_{S}(a{v}, b{v}, c{v});")
        lines.append(f"        memcpy(row + {v * lanes}, &c{v}, sizeof c{v});")
    lines += ["    }", "    for (; i < m; ++i)",
              f"        for (int64_t j = 0; j < {n}; ++j)",
              f"            c[i * {n} + j] = (accumulate ? c[i * {n} + j] : 0) + a[i] * b[j];",
              "}"]
    return "\n".join(lines)


def _mv(ctype, n):
    """``c = a b`` (``+ c`` when accumulating) for a vector ``a[k]`` and ``b[k, n]``: a loop
    step's ``x[i] @ W``. The nn kernel would copy all of ``b`` into its panels (and clear them)
    for one row of result, each call: that copy cost as much as the product (0.45 of the naive
    SVM's time with the ``tn`` outer product). Here ``b`` is read where it is, ``unroll`` rows a
    step, each row into accumulators of its own (independent chains of multiply-adds). A row's
    last, partial vector is loaded whole: its extra lanes read the next row (never past
    ``b``'s end, the last rows take the tail loop) and go into lanes that are never stored."""
    s = LETTER[ctype]
    S = s.upper()
    t = ctype
    lanes = VECTOR_BYTES // SIZEOF[ctype]
    nv = math.ceil(n / lanes)
    widths = [min(lanes, n - v * lanes) for v in range(nv)]
    ahead = math.ceil((nv * lanes - n) / n)      # rows after a row its whole loads touch
    unroll = max(1, min(4, (VECTOR_REGISTERS - 4) // nv))
    name = f"symgradrt_mm_mv_{s}{n}_run"
    acc = [[f"s{r}_{v}" for v in range(nv)] for r in range(unroll)]
    lines = [
        f"/* c[:] = a[:] b (+ c[:] when accumulating); a has k elements, b is k x {n}, "
        f"row-major, read in",
        f" * place, {unroll} rows a step into {unroll} x {nv} accumulators. */",
        f"static void {name}(int64_t k, const {t} *restrict a, const {t} *restrict b, "
        f"{t} *restrict c,",
        f"{' ' * (len(name) + 13)}int accumulate)",
        "{",
        f"    symgradrt_v{s} x, " + ", ".join(f"{a} = symgradrt_splat_{s}(0)"
                                             for row in acc for a in row) + ";",
        "    int64_t q = 0;",
        f"    for (; q + {unroll - 1 + ahead} < k; q += {unroll}) {{",
    ]
    for r in range(unroll):
        lines.append(f"        x = symgradrt_splat_{s}(a[q + {r}]);")
        for v in range(nv):
            lines.append(f"        {acc[r][v]} = SYMGRADRT_MADD_{S}(x, symgradrt_load_{s}(b + "
                         f"(q + {r}) * {n} + {v * lanes}), {acc[r][v]});")
    lines += ["    }", "    for (; q < k; ++q) {", f"        x = symgradrt_splat_{s}(a[q]);"]
    for v, w in enumerate(widths):
        load = (f"symgradrt_load_{s}(b + q * {n} + {v * lanes})" if w == lanes else
                f"symgradrt_loadn_{s}(b + q * {n} + {v * lanes}, {w})")
        lines.append(f"        {acc[0][v]} = SYMGRADRT_MADD_{S}(x, {load}, {acc[0][v]});")
    lines.append("    }")
    for v, w in enumerate(widths):
        total = " + ".join(acc[r][v] for r in range(unroll))
        lines.append(f"    {acc[0][v]} = {total};" if unroll > 1 else "")
        lines.append(f"    if (accumulate) {acc[0][v]} += symgradrt_loadn_{s}(c + {v * lanes}, "
                     f"{w});")
        lines.append(f"    symgradrt_storen_{s}(c + {v * lanes}, {acc[0][v]}, {w});")
    lines.append("}")
    return "\n".join(line for line in lines if line)


def _step(s, rows, nv, a_elem, row, share=1):
    """One step of the inner loop: the narrow operand's packed ``row`` into ``nv`` registers,
    then for each of ``rows`` result rows one broadcast element of the wide operand
    (``a_elem(r)``) times them. With ``share`` > 1, the last vector is shared by groups of
    ``share`` rows (``blocking``): their broadcasts blended into one vector, times the packed
    row's last vector (the last columns repeated ``share`` times), into accumulator ``s<g>``."""
    S = s.upper()
    lines = []
    for v in range(nv):
        lines.append(f"symgradrt_v{s} b{v} = symgradrt_load_{s}({row} + {v} * "
                     f"SYMGRADRT_LANES_{S});")
    # Kept in registers: gcc otherwise folds the loads into every multiply-add, reading the row
    # once per result row (load-bound: 0.61 ms instead of 0.3 for W3's scores).
    lines.append(" ".join(f"SYMGRADRT_IN_REGISTER(b{v});" for v in range(nv)))
    if share == 1:
        for r in range(rows):
            lines.append(f"x = symgradrt_splat_{s}({a_elem(r)});")
            for v in range(nv):
                lines.append(f"c{r}_{v} = SYMGRADRT_MADD_{S}(x, b{v}, c{r}_{v});")
        return lines
    lanes = VECTOR_BYTES // SIZEOF[CTYPE[s]]
    w = lanes // share
    for g in range(rows // share):
        group = []
        for j in range(share):
            r = g * share + j
            group.append(f"symgradrt_v{s} x{j} = symgradrt_splat_{s}({a_elem(r)});")
            for v in range(nv - 1):
                group.append(f"c{r}_{v} = SYMGRADRT_MADD_{S}(x{j}, b{v}, c{r}_{v});")
        group += _blend(s, share, w, lanes)
        group.append(f"s{g} = SYMGRADRT_MADD_{S}(x, b{nv - 1}, s{g});")
        lines += ["{"] + _indent(group) + ["}"]
    return lines


def _blend(s, share, w, lanes):
    """``x`` = lanes [j * w, (j + 1) * w) of ``x<j>`` for j < ``share`` (broadcasts, so any lane
    of ``x<j>`` will do): a tree of blends (lanes in place from one of two vectors)."""
    def combine(lo, hi):
        if hi - lo == 1:
            return f"x{lo}", []
        mid = (lo + hi) // 2
        left, a = combine(lo, mid)
        right, b = combine(mid, hi)
        name = "x" if (lo, hi) == (0, share) else f"y{lo}_{hi}"
        idx = ", ".join(str(l if l < mid * w else lanes + l) for l in range(lanes))
        imm = sum(1 << l for l in range(mid * w, lanes))
        decl = "" if name == "x" else f"symgradrt_v{s} "
        return name, a + b + [f"{decl}{name} = SYMGRADRT_BLEND_{s.upper()}({left}, {right}, "
                              f"{imm:#x}, {idx});"]
    return combine(0, share)[1]


def _block(s, rows, nv, widths, c_row, loop, a_elem, row, share=1):
    """``rows`` rows of the result: accumulators loaded (or zeroed), ``loop`` over a panel of
    the contraction, the result stored. With ``share`` > 1 the last ``widths[-1]`` columns of
    each group of ``share`` rows live in one accumulator ``s<g>`` (``blocking``)."""
    S = s.upper()
    t = CTYPE[s]
    own = nv if share == 1 else nv - 1          # vectors each row keeps to itself
    lines = [f"symgradrt_v{s} x;"]
    for r in range(rows):
        lines.append(f"{t} *restrict c{r} = {c_row(r)};")
    names = [f"c{r}_{v}" for r in range(rows) for v in range(own)]
    names += [f"s{g}" for g in range(rows // share)] if share > 1 else []
    lines.append(f"symgradrt_v{s} " + ", ".join(names) + ";")
    w, tail = widths[-1], (nv - 1) * (VECTOR_BYTES // SIZEOF[t])
    lines.append("if (load) {")
    for r in range(rows):
        for v in range(own):
            lines.append(f"    c{r}_{v} = symgradrt_loadn_{s}(c{r} + {v} * "
                         f"SYMGRADRT_LANES_{S}, {widths[v]});")
    for g in range(rows // share if share > 1 else 0):
        # Element by element (gcc joins the pairs with one shuffle), not through a copy on the
        # stack that a vector load reads back before the stores have retired.
        elems = ", ".join(f"c{g * share + j}[{tail + e}]" for j in range(share) for e in range(w))
        lines.append(f"    s{g} = (symgradrt_v{s}){{{elems}}};")
    lines.append("} else {")
    lines.append("    " + " ".join(f"{x} = symgradrt_splat_{s}(0);" for x in names))
    lines.append("}")
    lines.append(loop + " {")
    lines += _indent(_step(s, rows, nv, a_elem, row, share))
    lines.append("}")
    for r in range(rows):
        for v in range(own):
            lines.append(f"symgradrt_storen_{s}(c{r} + {v} * SYMGRADRT_LANES_{S}, c{r}_{v}, "
                         f"{widths[v]});")
    for g in range(rows // share if share > 1 else 0):
        lines.append(" ".join(f"c{g * share + j}[{tail + e}] = s{g}[{j * w + e}];"
                              for j in range(share) for e in range(w)))
    return lines


def _indent(lines, k=1):
    return ["    " * k + x for x in lines]


def _kernel(kind, ctype, n):
    """The kernel over a range of result rows (see ``kernel_source``)."""
    s = LETTER[ctype]
    lanes = VECTOR_BYTES // SIZEOF[ctype]
    _, nv, rows, share = blocking(ctype, n, kind)
    widths = [min(lanes, n - v * lanes) for v in range(nv)]
    tail = (nv - 1) * lanes                # where a row's last vector starts
    regs = f"{rows} x {nv}" if share == 1 else f"{rows} x {nv - 1} + {rows // share}"
    width = nv * lanes                     # a packed row of the narrow operand
    name = f"symgradrt_mm_{kind}_{s}{n}"
    t = ctype
    if kind == "nn":
        panel = max(16, PANEL_BYTES // (width * SIZEOF[ctype]))
        doc = ["/* c[i, :] = a[i, :] b (+ c[i, :] when accumulating) for rows i0 <= i < i1; a "
               "is (rows) x k,",
               f" * b k x {n}, c (rows) x {n}, all row-major. {rows} rows of c at a time stay in "
               f"{regs} vector",
               f" * registers while the loop reads {rows} rows of a in place; b is copied in "
               f"panels of {panel} rows",
               " * padded to whole vectors, which stay in L1 cache. The rows of the block after "
               "next are prefetched. */"]
        params = f"int64_t i0, int64_t i1, int64_t k, const {t} *restrict a"
        lo, hi, contraction, each = "i0", "i1", "k", "i"
        c_row = (lambda r: f"c + (i + {r}) * {n}")
        a_elem = (lambda r: f"a{r}[q]")
        # The rows of the block after next, this panel's part, prefetched (into L2) while
        # this block runs: W3's X W (256 x 3073 by 3073 x 10, one core, load average ~4.7,
        # X flushed from every cache) 0.80 -> 0.54 ms in float64, 0.50 -> 0.31 in float32;
        # with X in L3 unchanged (0.37, 0.24); the next block's rows 0.55 / 0.30.
        setup = lambda rb: [f"const {t} *restrict a{r} = a + (i + {r}) * k;" for r in range(rb)] + ([
            f"for (int64_t r = i + {2 * rows}; r < i + {3 * rows} && r < i1; ++r)",
            f"    for (int64_t q = q0; q < q1; q += {LINE_BYTES // SIZEOF[ctype]})",
            "        SYMGRADRT_PREFETCH(a + r * k + q);"] if rb > 1 else [])
    else:
        panel, cols = tn_tile(ctype, n)
        doc = ["/* c[p, :] = the sum over i of a[i, p] b[i, :] (+ c[p, :] when accumulating) "
               "for p0 <= p < p1;",
               f" * a is m x lda, b m x {n}, c lda x {n}, all row-major. {rows} rows of c at a "
               f"time stay in {regs}",
               f" * vector registers while the loop reads {rows} columns of a tile of a: {panel} "
               f"rows by {cols} columns",
               " * copied row by row (each row of a read contiguously) into blocks of "
               f"{rows} columns, each block's",
               " * elements in the order the loop reads them. b is copied in panels of "
               f"{panel} rows padded to",
               " * whole vectors. Both copies stay in L1 cache. */"]
        params = f"int64_t p0, int64_t p1, int64_t m, int64_t lda, const {t} *restrict a"
        lo, hi, contraction, each = "p0", "p1", "m", "p"
        c_row = (lambda r: f"c + (p + {r}) * {n}")
        setup = lambda rb: []
    if share > 1:
        doc[-1] = doc[-1][:-3]
        doc.append(f" * The last {widths[-1]} columns of {share} rows share one vector (one "
                   "multiply-add of the rows' blended")
        doc.append(" * elements by those columns, repeated), not one padded vector each. */")
    out = doc + [
        f"static void {name}({params},",
        f"{' ' * (len(name) + 13)}const {t} *restrict b, {t} *restrict c, int accumulate)",
        "{",
        f"    {t} packed[{panel} * {width}] __attribute__((aligned(64)));",
    ] + ([
        f"    {t} tile[{panel} * {cols}] __attribute__((aligned(64)));",
    ] if kind == "tn" else []) + [
        "    memset(packed, 0, sizeof packed);",
        f"    if ({contraction} == 0 && !accumulate)",
        f"        memset(c + {lo} * {n}, 0, sizeof(*c) * {n} * (size_t)({hi} - {lo}));",
        f"    for (int64_t q0 = 0; q0 < {contraction}; q0 += {panel}) {{",
        f"        const int64_t q1 = q0 + {panel} < {contraction} ? q0 + {panel} : {contraction};",
        "        for (int64_t q = q0; q < q1; ++q)",
        f"            memcpy(packed + (q - q0) * {width}, b + q * {n}, sizeof(*b) * {n});",
    ] + ([
        "        /* the last columns once for each row sharing the last vector */",
        "        for (int64_t q = q0; q < q1; ++q)",
        f"            for (int g = 1; g < {share}; ++g)",
        f"                memcpy(packed + (q - q0) * {width} + {tail} + g * {widths[-1]}, "
        f"b + q * {n} + {tail}, sizeof(*b) * {widths[-1]});",
    ] if share > 1 else []) + [
        "        const int load = accumulate || q0 > 0;",
    ]
    loop = "for (int64_t q = q0; q < q1; ++q)"
    row = f"packed + (q - q0) * {width}"
    if kind == "nn":
        # The remainder rows, one at a time, keep a whole last vector each: lanes past the
        # row's own columns (the shared copies) are computed and never stored.
        out.append(f"        int64_t {each} = {lo};")
        for rb, sh, head in ((rows, share, f"for (; {each} + {rows} <= {hi}; {each} += {rows})"),
                             (1, 1, f"for (; {each} < {hi}; ++{each})")):
            body = setup(rb) + _block(s, rb, nv, widths, c_row, loop, a_elem, row, sh)
            out += _indent([head + " {"] + _indent(body) + ["}"], 2)
        out += ["    }", "}"]
        return out, rows
    # "tn": a's columns p are rows of c, so the rows of a block are neighbouring columns of a,
    # which in place are a row length (lda) apart: read that way, each step's loads fall on
    # different pages and (lda * size a multiple of 4 KB, or nearly: W3's 3073 doubles are 8
    # bytes past six pages) in a few sets of the L1 cache, and the prefetchers see no stream.
    # So a tile of a is copied first, each of its rows read contiguously, into blocks laid out
    # in the order the loop reads them, and the tile after next is prefetched meanwhile (into
    # L2: prefetcht0 evicted the tile and panel in use). W3's X^T G (256 x 3073 by 256 x 10,
    # one core, load average ~4.5; X in L3 cache / X flushed from every cache): float64 in
    # place 2.66 / 3.96 ms, tiled 0.76 / 1.56, with the prefetch 0.47 / 0.78 (X W: 0.38 /
    # 0.81); float32 0.72 / 1.89 -> 0.29 / 0.47 (sharing, see ``blocking``). That was while
    # the shared machine ran slow for everyone (main's whole W3 float64 took 10 ms, 0.96 ms an
    # hour earlier). When it does not, reading in place looked the faster with X in L3 (0.40
    # ms against 0.46 tiled; W3 end to end 1.02 against 1.29 ms; benchmarks/results_issue20.md)
    # and was still the slower with X flushed (1.06-1.18 against 0.57-0.60). That gap was not
    # the copy but the accumulators' reload, once per block and 32-row panel: gcc moved each
    # whole-vector symgradrt_loadn through the stack in 16-byte halves and read it back as one
    # vector (a store-forwarding stall, 35% of the kernel's samples). Loaded directly (and
    # partial vectors by a masked load), float64, one core, min of 100 (or 20, X flushed),
    # load ~1.5-2.4, 00:45-01:00 UTC: tiled 0.709 -> 0.467 ms with X in L3, 0.87 -> 0.59-0.66
    # flushed, in place 0.452 / 1.12-1.21; float32 0.437 -> 0.291 (in place 0.292). Panels of
    # 64, 128 or 256 rows then measured no better (0.475, 0.505, 0.58 ms with 256 x 3073), nor
    # a second tile copied a share of rows per block (0.48) or a row-major tile (0.45 in L3,
    # 0.61-0.66 flushed). The copy is what remains: the same kernel without it takes 0.325 ms.
    # W5's h^T G (200 x 100 by 200 x 10, operands in L1): 18.5 -> 11.4 us (in place 10.7).
    body = _block(s, rows, nv, widths, c_row, loop,
                  lambda r: f"at[(q - q0) * {rows} + {r}]", row, share)
    rest = _block(s, 1, nv, widths, c_row, loop, lambda r: f"a[q * lda + {each} + {r}]", row)
    out += _indent([
        f"for (int64_t t0 = {lo}; t0 < {hi}; t0 += {cols}) {{",
        f"    const int64_t t1 = t0 + {cols} < {hi} ? t0 + {cols} : {hi};",
        f"    const int64_t whole = t0 + (t1 - t0) / {rows} * {rows};",
        f"    /* the block of columns from p holds a[q, p + r] at tile[(p - t0) * {panel} + "
        f"(q - q0) * {rows} + r] */",
        "    for (int64_t q = q0; q < q1; ++q) {",
        f"        const {t} *restrict src = a + q * lda;",
        f"        {t} *restrict dst = tile + (q - q0) * {rows};",
        f"        for (int64_t p = t0; p < whole; p += {rows})",
        f"            memcpy(dst + (p - t0) * {panel}, src + p, sizeof(*a) * {rows});",
        f"        for (int64_t p = t1 + {cols}; p < t1 + {2 * cols} && p < {hi}; "
        f"p += {LINE_BYTES // SIZEOF[ctype]})",
        "            SYMGRADRT_PREFETCH(src + p);    /* the tile after next */",
        "    }",
        f"    int64_t {each} = t0;",
        f"    for (; {each} < whole; {each} += {rows}) {{",
        f"        const {t} *restrict at = tile + ({each} - t0) * {panel};",
    ] + _indent(body, 2) + [
        "    }",
        "    /* the last columns, fewer than a block, one at a time, in place */",
        f"    for (; {each} < t1; ++{each}) {{",
    ] + _indent(rest, 2) + ["    }", "}"], 2)
    out += ["    }", "}"]
    return out, rows


def _nn(ctype, n):
    lines, rows = _kernel("nn", ctype, n)
    return _finish(lines, "nn", LETTER[ctype], n, rows)


def _tn(ctype, n):
    lines, rows = _kernel("tn", ctype, n)
    return _finish(lines, "tn", LETTER[ctype], n, rows)


def _finish(lines, kind, s, n, rows):
    """The kernel's pool task and its ``_run`` entry point, after the kernel itself."""
    name = f"symgradrt_mm_{kind}_{s}{n}"
    if kind == "nn":
        task_call = f"{name}(lo, hi, j->k, (const {CTYPE[s]} *)j->a, (const {CTYPE[s]} *)j->b, " \
                    f"({CTYPE[s]} *)j->c, j->accumulate);"
        run_params = f"int64_t m, int64_t k, const {CTYPE[s]} *a, const {CTYPE[s]} *b, " \
                     f"{CTYPE[s]} *c, " \
                     f"int accumulate"
        job = "{m, k, 0, a, b, c, accumulate}"
        split = "m"
    else:
        task_call = f"{name}(lo, hi, j->m, j->lda, (const {CTYPE[s]} *)j->a, " \
                    f"(const {CTYPE[s]} *)j->b, ({CTYPE[s]} *)j->c, j->accumulate);"
        run_params = f"int64_t m, int64_t lda, const {CTYPE[s]} *a, const {CTYPE[s]} *b, " \
                     f"{CTYPE[s]} *c, " \
                     f"int accumulate"
        job = "{m, 0, lda, a, b, c, accumulate}"
        split = "lda"
    work = f"(double){split} * (double){'k' if kind == 'nn' else 'm'} * {n}"
    lines += [
        "",
        f"static void {name}_task(void *job, int64_t lo, int64_t hi)",
        "{",
        "    const symgradrt_mm_job *j = (const symgradrt_mm_job *)job;",
        f"    {task_call}",
        "}",
        "",
        "/* The whole product; its rows split over the thread pool when it pays. */",
        f"static void {name}_run({run_params})",
        "{",
        f"    symgradrt_mm_job job = {job};",
        f"    symgradrt_parallel_for({split}, {rows}, {work}, {name}_task, &job);",
        "}",
    ]
    return "\n".join(lines)
