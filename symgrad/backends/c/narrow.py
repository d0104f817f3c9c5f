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
in panels small enough to stay in L1 cache. That broadcast layout pads or shares a row's last
vector when n is not a whole number of vectors, and then has too few independent multiply-add
chains (float32's 10 columns: 5, each step waiting on the FMA's latency); there ``layout``
picks vectors along the contraction for ``A B`` ("dot") and along the wide operand's columns
for ``A^T B`` ("columns"), which waste no lane for any n.

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


GEMM = re.compile(r"\bsymgradrt_([ds])gemm_par\(")


# A gemm whose contraction is this many times its result's longer side, or more, is split
# over k (symgradrt_[ds]gemm_par in narrow.c.j2, which these constants size), in one chunk
# per KSPLIT_CHUNK_K of it (at most 8): a count the shapes fix, not the number of threads, so
# that the numbers are the same on any number of cores (the measurements are in the template).
KSPLIT_RATIO = 4
KSPLIT_CHUNK_K = 768


# Products A^T B with a wide result and a short contraction (chosen from the shapes by
# structural.py's ``_wide_call``: WIDE_MAX_K, WIDE_MIN_M, WIDE_MAX_N) run the kernel of
# templates/wide_tn.c.j2, ``symgradrt_mm_tnw_<d|s>_run(k, m, n, a, b, c, accumulate)``, where
# the sizes may be known only at run time. Its register tile: WIDE_NV vectors of A's columns
# by WIDE_HB columns of the result (12 accumulators, the row's 3 vectors and a broadcast: the
# 16 vector registers); WIDE_KC rows of A's panel (24 KB, in a 32 KB L1) per chunk of the
# contraction.
WIDE_NAME = re.compile(r"\bsymgradrt_mm_tnw_([ds])_run\(")
# ... and products A B, ``symgradrt_mm_nnw_<d|s>_run(m, k, n, a, b, c, accumulate)``: tiles of
# WIDE_NN_TILES (vectors of a row of c, rows), the first for whole panels of WIDE_NV vectors,
# the others for the last columns; last columns that fit in one vector go along the contraction
# instead (``symgradrt_nnw_dot_<d|s>``, the reasons in the template).
WIDE_NN_NAME = re.compile(r"\bsymgradrt_mm_nnw_([ds])_run\(")
WIDE_NN_TILES = ((3, 4), (2, 6))
WIDE_NV = 3
WIDE_HB = 4
WIDE_KC = 256


def wide_params(ctypes, nn_ctypes=()):
    """What templates/wide_tn.c.j2 renders the wide kernels from: A^T B for ``ctypes``, A B for
    ``nn_ctypes``."""
    def types(which):
        return [(LETTER[t], t, VECTOR_BYTES // SIZEOF[t]) for t in ("double", "float")
                if t in which]
    return {"types": types(ctypes), "nn_types": types(nn_ctypes), "nv": WIDE_NV,
            "hb": WIDE_HB, "kc": WIDE_KC, "nn_tiles": WIDE_NN_TILES,
            "nn_rows": WIDE_NN_TILES[0][1], "lane_sum": _lane_sum,
            "panel": " / ".join(f"{WIDE_NV * lanes} {t}s" for _, t, lanes in types(ctypes))}


def _lane_sum(lanes, name="lane"):
    """C that sums ``name[0]`` .. ``name[lanes - 1]`` in pairs of halves, a tree of depth
    log2(lanes): ``(lane[0] + lane[2]) + (lane[1] + lane[3])`` for 4."""
    terms = [f"{name}[{l}]" for l in range(lanes)]
    while len(terms) > 1:
        half = len(terms) // 2
        terms = [f"({a} + {b})" for a, b in zip(terms[:half], terms[half:])]
    return terms[0][1:-1] if lanes > 1 else terms[0]


def wide_source(ctypes, nn_ctypes=()):
    """The C of the wide kernels (templates/wide_tn.c.j2): A^T B for ``ctypes``, A B for
    ``nn_ctypes``."""
    from symgrad import templates
    return templates.render("wide_tn.c.j2", **wide_params(ctypes, nn_ctypes))


def template_parts(lines):
    """What ``narrow.c.j2`` must hold for C ``lines``: ``blas`` (``(letter, C type)`` of each
    gemm called), ``split`` (whether a call may give the pool work, ``may_split``: else each
    gemm is one BLAS call, and the split's C, which costs gcc ~10 ms, is left out), ``ksplit``
    (the split of a long contraction, only where a gemm call may have one: ~100 lines of C that
    most modules need not compile) and ``kernels`` (the C of each narrow kernel called). None
    when they call neither."""
    kernels = [kernel_source(*k, short=_short_k(k, lines)) for k in kernels_used(lines)]
    wide = sorted({CTYPE[x] for line in lines for x in WIDE_NAME.findall(line)})
    wide_nn = sorted({CTYPE[x] for line in lines for x in WIDE_NN_NAME.findall(line)})
    if wide or wide_nn:
        kernels.append(wide_source(wide, wide_nn))
    calls = [line for line in lines if GEMM.search(line)]
    letters = {letter for line in calls for letter in GEMM.findall(line)}
    parts = {"blas": [(s, CTYPE[s]) for s in "ds" if s in letters],
             "split": may_split(lines), "ksplit": any(map(_may_split_k, calls)),
             "kernels": kernels, "ksplit_ratio": KSPLIT_RATIO, "ksplit_chunk_k": KSPLIT_CHUNK_K}
    return parts if calls or kernels else None


_NN_K = re.compile(r"\bsymgradrt_mm_nn_([ds])(\d+)_run\([^,]+, ([^,]+),")


def _short_k(kernel, lines):
    """For an "nn" kernel in the dot layout, which contractions its calls in ``lines`` have:
    "yes" (all literal and shorter than DOT_MIN_K lanes), "no" (all literal, not shorter) or
    "maybe" (one known only at run time, or both kinds). None for other kernels."""
    kind, ctype, n = kernel
    if kind != "nn" or layout(kind, ctype, n) != "dot":
        return None
    lanes = VECTOR_BYTES // SIZEOF[ctype]
    found = set()
    for line in lines:
        for letter, width, k in _NN_K.findall(line):
            if (CTYPE[letter], int(width)) == (ctype, n):
                found.add("maybe" if not k.strip().isdigit() else
                          "yes" if int(k) < DOT_MIN_K * lanes else "no")
    return found.pop() if len(found) == 1 else "maybe"


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
_WIDE_SIZES = re.compile(r"\bsymgradrt_mm_[nt]nw_[ds]_run\((\d+), (\d+), (\d+), _pa")


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
        if WIDE_NAME.search(line) or WIDE_NN_NAME.search(line):
            sizes = _WIDE_SIZES.search(line)
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


def kernel_source(kind, ctype, n, short="maybe"):
    """The C of one kernel (``kind`` "nn": C = A B; "tn": C = A^T B; "mv": one row of C, a
    vector times B) for ``n`` result columns: the kernel over a range of result rows, a task for
    the thread pool, and ``..._run`` (for "mv", ``_run`` alone). ``short``, for "nn" in the dot
    layout: whether the contraction is shorter than DOT_MIN_K vectors ("yes", "no", or
    "maybe": both kernels, chosen at run time)."""
    if kind == "nn":
        return _nn(ctype, n, short)
    return {"tn": _tn, "mv": _mv, "outer": _outer}[kind](ctype, n)


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


# The dot layout sums each row's accumulators across lanes once per panel: with a contraction
# of a few vectors that dominates. 100000 x k by k x 10, one core, load ~4.5, broadcast -> dot:
# k = 3: float32 0.122 -> 0.411 ms, float64 0.159 -> 0.384; k = 20: 0.55 -> 0.56, 0.90 ->
# 0.96; k = 3073 (m = 256): dot faster (``layout``). Shorter than DOT_MIN_K vectors, the
# broadcast kernel runs.
DOT_MIN_K = 4


def _nn(ctype, n, short="maybe"):
    s = LETTER[ctype]
    if layout("nn", ctype, n) != "dot" or short == "yes":
        lines, rows = _kernel("nn", ctype, n)
        return _finish(lines, "nn", s, n, rows)
    lines, rows = _nn_dot(ctype, n)
    if short == "maybe":
        name = f"symgradrt_mm_nn_{s}{n}"
        lanes = VECTOR_BYTES // SIZEOF[ctype]
        fallback, _ = _kernel("nn", ctype, n)
        lines = [line.replace(name + "(", name + "_short(") for line in fallback] + [""] + lines
        return _finish(lines, "nn", s, n, rows, short_below=DOT_MIN_K * lanes)
    return _finish(lines, "nn", s, n, rows)


def _tn(ctype, n):
    if layout("tn", ctype, n) == "columns":
        lines, rows = _tn_columns(ctype, n)
    else:
        lines, rows = _kernel("tn", ctype, n)
    return _finish(lines, "tn", LETTER[ctype], n, rows)


# Accumulators for the "dot" and "columns" layouts, at most: with one register for each row of
# the wide operand (R of them) and one for the narrow operand's element, within the 16.
LAYOUT_REGISTERS = 14
# Independent multiply-add chains needed to keep both FMA units busy: a multiply-add's latency
# (4 cycles) times two a cycle. The broadcast layout of ``blocking`` has 5 for float32's 10
# columns (4 rows + 1 shared vector): each step waits for the last (0.24 ms for W3's X W where
# the FMA floor is 0.15).
CHAINS = 8


def layout(kind, ctype, n):
    """How a kernel for ``n`` result columns lays its sums in vectors.

    "nn" -> "dot": each vector runs along the contraction (a row of a, read in place, times a
    column of b, copied transposed into a panel); R rows x n columns of accumulators, each
    summed across its lanes once per panel. No lane is wasted whatever n, and each step is one
    load of a per row and n multiply-adds with the panel as their memory operand.
    "tn" -> "columns": each vector holds neighbouring columns p of a (a row of a read in place,
    lanes = result rows p), times a broadcast b[i, j]: n x V accumulators, the contraction in
    panels (COLUMNS_PANEL), the sums kept in L1 between panels and added to c transposed after
    the last; no copy of a.
    Both where n x R (or n x V) accumulators fit LAYOUT_REGISTERS and n is not a whole number
    of vectors; otherwise the broadcast layout (``blocking``, ``_kernel``), which then wastes
    no lane and loads less per multiply-add. Measured with m = 256, k = 3073, one core, the
    wide operand in L3, median ms, load ~1.5-2.3 (03:03 UTC), broadcast -> dot / columns:
    float32 n = 10: nn 0.239 -> 0.187, tn 0.297 -> 0.227; n = 1: 0.171 -> 0.041, 0.243 ->
    0.086; n = 3: 0.168 -> 0.106, 0.212 -> 0.155; n = 5: 0.400 -> 0.109, 0.214 -> 0.119;
    n = 12: 0.214 -> 0.215, 0.281 -> 0.262. float64 n = 10: nn 0.364 -> 0.365, tn 0.469 ->
    0.437; n = 1: 0.261 -> 0.084, 0.248 -> 0.150; n = 3: 0.415 -> 0.165, 0.279 -> 0.266;
    n = 5: 0.261 -> 0.211, 0.360 -> 0.210. Whole vectors, where broadcast stays: float64
    n = 4: nn 0.185 against 0.255, tn 0.255 against 0.339; n = 8: 0.264 / 0.430, 0.377 /
    0.385; n = 12: 0.360 / 0.418, 0.489 / 0.549; float32 n = 8: 0.168 / 0.158, 0.194 /
    0.201."""
    lanes = VECTOR_BYTES // SIZEOF[ctype]
    if _layout_rows(n) > 0 and n % lanes:
        return "dot" if kind == "nn" else "columns"
    return "broadcast"


def _layout_rows(n):
    """R (or V) for the "dot" / "columns" layouts: enough rows for CHAINS accumulators, within
    LAYOUT_REGISTERS with one register per row and one more; 0 where n columns do not fit."""
    return min(math.ceil(CHAINS / n), LAYOUT_REGISTERS // (n + 1))


def _shuffle(s, x, y, idx):
    return f"SYMGRADRT_SHUFFLE_{s.upper()}({x}, {y}, {', '.join(map(str, idx))})"


def _lane_sums(s, names, out):
    """Lines setting vectors ``out<v>`` to the sums across lanes of ``names`` (accumulators, in
    order): lane l of ``out<v>`` is the sum of the lanes of ``names[v * lanes + l]`` (0 past
    the last). Pairs of vectors are added by halves (lanes 2i and 2i + 1 of a, then of b,
    within each 128-bit half, as vhaddps does) until each half holds one sum per vector, then
    the halves are added: for 8 vectors of 8 floats, 7 such steps of two shuffles and an add,
    not 56 scalar adds."""
    lanes = VECTOR_BYTES // SIZEOF[CTYPE[s]]
    half = lanes // 2
    lines, results = [], []
    lo = list(range(half)) + [lanes + l for l in range(half)]
    hi = [half + l for l in range(half)] + [lanes + half + l for l in range(half)]
    for v in range(0, len(names), lanes):
        cur = list(names[v:v + lanes])
        if len(cur) < lanes:
            lines.append(f"const symgradrt_v{s} {out}z = symgradrt_splat_{s}(0);")
            cur += [f"{out}z"] * (lanes - len(cur))
        level = 0
        while len(cur) > 2:                    # within halves, pairs of lanes
            nxt = []
            for a, b in zip(cur[0::2], cur[1::2]):
                name = f"{out}{v // lanes}_{level}_{len(nxt)}"
                lines.append(f"const symgradrt_v{s} {name} = "
                             f"{_shuffle(s, a, b, _pair_index(lanes, 0))} + "
                             f"{_shuffle(s, a, b, _pair_index(lanes, 1))};")
                nxt.append(name)
            cur, level = nxt, level + 1
        name = f"{out}{v // lanes}"
        lines.append(f"symgradrt_v{s} {name} = {_shuffle(s, cur[0], cur[1], lo)} + "
                     f"{_shuffle(s, cur[0], cur[1], hi)};")
        results.append(name)
    return lines, results


def _pair_index(lanes, odd):
    """Shuffle indices taking lanes 2i + odd of a then of b, within each 128-bit half."""
    half = lanes // 2
    idx = []
    for h in (0, half):
        block = [h + l + odd for l in range(0, half, 2)]
        idx += block + [lanes + x for x in block]
    return idx


# The "dot" nn kernel reads a's rows panel by panel: a row's part of a panel (16 KB / n, 1.6 KB
# for 10 doubles), then the same part of the next row, k elements on. The hardware prefetcher
# does not follow those jumps, so each row's part is prefetched this many blocks of rows ahead,
# a line at a time. W3's X W (500 x 3073 by 3073 x 10, float64, one core, medians of 41
# interleaved calls, load ~3.5): X in L3 0.81-0.87 -> 0.72-0.79 ms; X flushed before each call
# 1.75-1.96 -> 0.87-1.15 ms (1, 2, 3, 4, 6 rows ahead: 1.26-1.35, 0.96-0.98, 0.93-0.98,
# 0.91-1.15, 0.87-0.93); 256 x 3073 in L2/L3 0.370 -> 0.353 ms.
DOT_PREFETCH_BLOCKS = 2


def _nn_dot(ctype, n):
    """C = A B by the "dot" layout (``layout``): rows i0 <= i < i1 of c."""
    s = LETTER[ctype]
    S = s.upper()
    t = ctype
    lanes = VECTOR_BYTES // SIZEOF[ctype]
    rows = _layout_rows(n)
    panel = max(lanes, PANEL_BYTES // (n * SIZEOF[ctype]) // lanes * lanes)
    name = f"symgradrt_mm_nn_{s}{n}"
    out = [
        "/* c[i, :] = a[i, :] b (+ c[i, :] when accumulating) for rows i0 <= i < i1; a is "
        f"(rows) x k, b k x {n},",
        f" * c (rows) x {n}, all row-major. b is copied transposed in panels of {panel} rows "
        f"(bt[j * {panel} + q]: a",
        " * column of b is contiguous, zero past the panel's end), which stay in L1 cache. "
        f"{rows} row(s) of a at a",
        f" * time, read in place, one vector of the contraction a step, times each of b's {n} "
        "columns, into",
        f" * {rows} x {n} accumulators summed across their lanes at the panel's end. Each row's "
        "part of the",
        f" * panel is prefetched {DOT_PREFETCH_BLOCKS * rows} row(s) ahead (the prefetcher does "
        "not follow the jump). */",
        f"static void {name}(int64_t i0, int64_t i1, int64_t k, const {t} *restrict a,",
        f"{' ' * (len(name) + 13)}const {t} *restrict b, {t} *restrict c, int accumulate)",
        "{",
        f"    {t} bt[{n} * {panel}] __attribute__((aligned(64)));",
        "    if (k == 0 && !accumulate)",
        f"        memset(c + i0 * {n}, 0, sizeof(*c) * {n} * (size_t)(i1 - i0));",
        f"    for (int64_t q0 = 0; q0 < k; q0 += {panel}) {{",
        f"        const int64_t len = q0 + {panel} < k ? {panel} : k - q0;",
        f"        for (int64_t q = 0; q < len; ++q)",
        f"            for (int j = 0; j < {n}; ++j)",
        f"                bt[j * {panel} + q] = b[(q0 + q) * {n} + j];",
        f"        for (int64_t q = len; q < (len + {lanes - 1}) / {lanes} * {lanes}; ++q)",
        f"            for (int j = 0; j < {n}; ++j)",
        f"                bt[j * {panel} + q] = 0;",
        "        const int load = accumulate || q0 > 0;",
        "        int64_t i = i0;",
    ]

    def block(rb):
        acc = [[f"s{r}_{j}" for j in range(n)] for r in range(rb)]
        body = [f"const {t} *restrict a{r} = a + (i + {r}) * k + q0;" for r in range(rb)]
        ahead = DOT_PREFETCH_BLOCKS * rb
        body.append(f"const int64_t pf = i + {ahead + rb - 1} < i1 ? {ahead} * k : 0;"
                    "    /* rows ahead, while in range */")
        body.append(f"symgradrt_v{s} " + ", ".join(f"{x} = symgradrt_splat_{s}(0)"
                                                  for row in acc for x in row) + ";")
        body.append("int64_t q = 0;")

        def step(load, prefetch=False):
            lines = [f"const symgradrt_v{s} x{r} = {load(r)};" for r in range(rb)]
            if prefetch:    # once a cache line: a line holds two vectors
                lines.append(f"if (!(q & {2 * lanes - 1})) {{")
                lines += [f"    SYMGRADRT_PREFETCH(a{r} + pf + q);" for r in range(rb)]
                lines.append("}")
            for j in range(n):
                for r in range(rb):
                    lines.append(f"{acc[r][j]} = SYMGRADRT_MADD_{S}(x{r}, symgradrt_load_{s}("
                                 f"bt + {j * panel} + q), {acc[r][j]});")
            return lines
        body.append(f"for (; q + {lanes} <= len; q += {lanes}) {{")
        body += _indent(step(lambda r: f"symgradrt_load_{s}(a{r} + q)", prefetch=True))
        body.append("}")
        body.append("if (q < len) {    /* the panel's last, partial vector: zeros past it */")
        body += _indent(step(lambda r: f"symgradrt_loadn_{s}(a{r} + q, (int)(len - q))"))
        body.append("}")
        widths = [min(lanes, n - v * lanes) for v in range(math.ceil(n / lanes))]
        for r in range(rb):
            sums, names = _lane_sums(s, acc[r], f"r{r}_")
            body.append("{")
            body += _indent(sums)
            body.append(f"    {t} *restrict c{r} = c + (i + {r}) * {n};")
            for v, (nm, w) in enumerate(zip(names, widths)):
                body.append(f"    if (load) {nm} += symgradrt_loadn_{s}(c{r} + {v * lanes}, {w});")
                body.append(f"    symgradrt_storen_{s}(c{r} + {v * lanes}, {nm}, {w});")
            body.append("}")
        return body

    heads = [(rows, f"for (; i + {rows} <= i1; i += {rows})")]
    if rows > 1:
        heads.append((1, "for (; i < i1; ++i)"))
    for rb, head in heads:
        out += _indent([head + " {"] + _indent(block(rb)) + ["}"], 2)
    out += ["    }", "}"]
    return out, rows


# The "columns" tn kernel prefetches each row's part of a this many bytes ahead of the vector
# it reads (W3's X^T G, float32, one core: 0.246 -> 0.233 ms; 128 to 1024 bytes alike).
COLUMNS_PREFETCH = 256
# It runs the contraction in panels of this many rows of a, and a's columns in tiles whose
# sums (n x tile) take COLUMNS_SUM_BYTES, kept in L1 between panels. Over the whole
# contraction at once, a tall a (100000 x 64 by 100000 x 10, float32) ran 2.5x slower than
# the broadcast layout's tiles (22 against 9 ms): the two vectors of a cache line are read by
# neighbouring blocks, and m rows apart the line had left every cache.
COLUMNS_PANEL = 64
COLUMNS_SUM_BYTES = 8192


def columns_tile(ctype, n):
    """(columns of a per tile, columns per block) of the "columns" tn kernel for n columns."""
    block = _layout_rows(n) * (VECTOR_BYTES // SIZEOF[ctype])
    return max(block, COLUMNS_SUM_BYTES // (n * SIZEOF[ctype]) // block * block), block


def _tn_columns(ctype, n):
    """C = A^T B by the "columns" layout (``layout``): rows p0 <= p < p1 of c."""
    s = LETTER[ctype]
    S = s.upper()
    t = ctype
    lanes = VECTOR_BYTES // SIZEOF[ctype]
    nvec = _layout_rows(n)
    block = nvec * lanes
    tile = columns_tile(ctype, n)[0]
    ahead = COLUMNS_PREFETCH // SIZEOF[ctype]
    rows = COLUMNS_PANEL
    name = f"symgradrt_mm_tn_{s}{n}"
    out = [
        "/* c[p, :] = the sum over i of a[i, p] b[i, :] (+ c[p, :] when accumulating) for "
        "p0 <= p < p1;",
        f" * a is m x lda, b m x {n}, c lda x {n}, all row-major. {block} columns p of a at a "
        f"time, {nvec} vector(s)",
        " * of each row of a read in place, times each element of b's row (broadcast), into "
        f"{n} x {nvec}",
        " * accumulators: lane l of accumulator j sums c[p + l, j]. The columns go in tiles of "
        f"{tile}, the",
        f" * contraction in panels of {rows} rows (the two halves of a line of a read while it "
        "is in cache),",
        " * h apart (symgradrt_row_step: rows i, i + h, ..., for each class i mod h in turn);",
        " * between panels the sums wait in st (st[j * tile + p - t0]), which is added to c "
        "transposed",
        f" * after the last. Each row's part of a is prefetched {COLUMNS_PREFETCH} bytes ahead. */",
        f"static void {name}(int64_t p0, int64_t p1, int64_t m, int64_t lda, "
        f"const {t} *restrict a,",
        f"{' ' * (len(name) + 13)}const {t} *restrict b, {t} *restrict c, int accumulate)",
        "{",
        f"    {t} st[{n} * {tile}] __attribute__((aligned(64)));",
        f"    const int64_t h = symgradrt_row_step(lda, sizeof(*a), m, {rows});",
        f"    for (int64_t t0 = p0; t0 < p1; t0 += {tile}) {{",
        f"        const int64_t t1 = t0 + {tile} < p1 ? t0 + {tile} : p1;",
        "        int64_t cls = 0, i0 = 0;    /* the class of rows i mod h, the panel's first */",
        "        do {    /* once at least: m == 0 leaves sums of 0 */",
        f"            const int64_t i1 = i0 + h * {rows} < m ? i0 + h * {rows} : m;",
        "            int64_t p = t0;",
    ]

    def part(nv, loads):
        acc = [[f"s{j}_{v}" for v in range(nv)] for j in range(n)]
        body = [f"symgradrt_v{s} " + ", ".join(x for row in acc for x in row) + ";",
                f"{t} *restrict sp = st + (p - t0);",
                "if (i0 == 0) {",
                "    " + " ".join(f"{x} = symgradrt_splat_{s}(0);" for row in acc for x in row),
                "} else {"]
        for j in range(n):
            for v in range(nv):
                body.append(f"    {acc[j][v]} = symgradrt_load_{s}(sp + {j * tile + v * lanes});")
        body += ["}", f"const {t} *restrict x = a + p;"]
        if loads is None:
            body.append(f"const int64_t ahead = p + {ahead} < p1 ? {ahead} : 0;")
        body.append("for (int64_t i = i0; i < i1; i += h) {")
        inner = []
        for v in range(nv):
            load = (f"symgradrt_load_{s}(x + i * lda + {v * lanes})" if loads is None
                    else loads)
            inner.append(f"const symgradrt_v{s} x{v} = {load};")
        if loads is None:
            inner.append("SYMGRADRT_PREFETCH(x + i * lda + ahead);")
        inner.append(f"const {t} *restrict g = b + i * {n};")
        for j in range(n):
            inner.append("{")
            inner.append(f"    const symgradrt_v{s} y = symgradrt_splat_{s}(g[{j}]);")
            for v in range(nv):
                inner.append(f"    {acc[j][v]} = SYMGRADRT_MADD_{S}(x{v}, y, {acc[j][v]});")
            inner.append("}")
        body += _indent(inner) + ["}"]
        # whole vectors into st (its tile has room for a last partial one)
        for j in range(n):
            for v in range(nv):
                body.append(f"memcpy(sp + {j * tile + v * lanes}, &{acc[j][v]}, "
                            f"sizeof {acc[j][v]});")
        return body

    out += _indent([f"for (; p + {block} <= t1; p += {block}) {{"] +
                   _indent(part(nvec, None)) + ["}"], 3)
    out += _indent(["/* the last columns, fewer than a block: a vector at a time, masked */",
                    f"for (; p < t1; p += {lanes}) {{",
                    f"    const int cols = t1 - p < {lanes} ? (int)(t1 - p) : {lanes};"] +
                   _indent(part(1, f"symgradrt_loadn_{s}(x + i * lda, cols)")) + ["}"], 3)
    out += [
        f"            i0 += h * {rows};",
        "            if (i0 >= m)    /* the next class of rows */",
        "                i0 = ++cls;",
        "        } while (i0 < m && cls < h);",
        "        for (int64_t p = t0; p < t1; ++p) {",
        f"            {t} *restrict row = c + p * {n};",
        f"            for (int j = 0; j < {n}; ++j)",
        f"                row[j] = (accumulate ? row[j] : 0) + st[j * {tile} + p - t0];",
        "        }",
        "    }",
        "}",
    ]
    return out, block


def _finish(lines, kind, s, n, rows, short_below=None):
    """The kernel's pool task and its ``_run`` entry point, after the kernel itself. With
    ``short_below``, the task calls ``<kernel>_short`` for contractions shorter than that."""
    name = f"symgradrt_mm_{kind}_{s}{n}"
    if kind == "nn":
        callee = name if short_below is None else \
            f"(j->k < {short_below} ? {name}_short : {name})"
        task_call = f"{callee}(lo, hi, j->k, (const {CTYPE[s]} *)j->a, " \
                    f"(const {CTYPE[s]} *)j->b, ({CTYPE[s]} *)j->c, j->accumulate);"
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
