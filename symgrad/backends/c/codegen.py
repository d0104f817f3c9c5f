"""Render graphs as C: storage, loop fusion and statement order; layout by Jinja templates.

A graph becomes one C function ``int NAME(inputs..., outputs...)`` returning a status code.

- Scalars (0-d values) are straight-line local variables; scalar constants are literals.
- Elementwise statements over the same shape, one after another, fuse into one loop; a value
  used only inside its loop stays a local there, the others are stored (graph outputs are stored
  straight into the caller's buffers).
- Every other statement is a kernel block from its primitive's ``c_kernel``.
- Each block is commented with the IR statements it computes (``c = sin a``; for an adjoint,
  ``grad of: c = sin a``, the forward statement it differentiates) and the user's lines.

Names: an IR name is its own C name (``a``, ``b_a``, the user's ``x``), unless C forbids it (a
keyword, a libc name, a name outside ``[A-Za-z0-9_]``). Every name the generated code makes up
for itself (loop indices, a kernel's locals, the status, the workspace) starts with ``_``, and an
IR name starting with ``_`` gets a ``v`` in front in C, so the two can never meet.

Templates get only names, signatures and pre-rendered lines (``templates/*.j2``).
"""
from __future__ import annotations

import hashlib
import keyword
import math
import re
from dataclasses import dataclass, field

import numpy as np

from symgrad import templates
from symgrad.backends.c import accumulate, lanes, libc, narrow
from symgrad.core import dims
from symgrad.core.cspell import CTYPES, STATUS, c_literal
from symgrad.core.ir import Graph, format_statement
from symgrad.core.primitive import BROADCAST, PADDING, REINTERPRET, WINDOW
from symgrad.core.primitives import REGISTRY

ALIGN = 64   # bytes: every workspace array starts on a cache line
# A workspace of a size fixed at compile time and at most this many bytes is an array on the
# stack; a larger one, or one sized at run time, is a block kept between calls
# (templates/workspace.c). The stack costs nothing to take and is never out of memory, and a
# module whose workspaces all fit leaves the block's three functions out: ~10 ms of gcc on a
# 3-layer network's first build (benchmarks/startup.py). 64 KB is a small part of any stack
# a caller's thread has (glibc gives 8 MB; 512 KB, macOS's for a thread it starts itself, is
# the least common one).
STACK_WORKSPACE_MAX = 64 * 1024

# A constant array of at least this many elements is kept as data (a binary file the assembler
# includes) where the build allows it, not written as literals: a 300 x 300 float64 constant
# was 3.7 MB of C (in both functions of a module) and 1.8 s of rendering and compiling.
DATA_MIN_ELEMENTS = 1024
# Statements in one fused loop, at most: a longer run of elementwise statements becomes several
# loops, the values crossing from one to the next kept in arrays. One loop body is one basic
# block to gcc, whose scheduling and register allocation grow faster than the block (compile
# time's log-log slope was 1.57 on one loop of 7,217 statements; see benchmarks/scaling.md).
FUSED_MAX = 256

# C's keywords and the names its headers define: IR names that collide get a trailing
# underscore. (The generated code's own locals need no entry: they all start with "_".)
C_KEYWORDS = set("""auto break case char const continue default do double else enum extern float
for goto if inline int long register restrict return short signed sizeof static struct switch
typedef union unsigned void volatile while _Bool _Complex _Imaginary bool true false NAN INFINITY
int64_t int32_t size_t""".split())
# libm and libc names a generated symbol must not take (it would clash at link time), and no
# parameter may shadow in a function that calls them: every libm function also in its float
# form (float32 code calls sinf), and the macros of the headers (offsetof also trips cffi's
# parser of the declarations).
LIBM_NAMES = set("""exp expm1 exp2 log log1p log2 log10 sqrt cbrt pow sin cos tan asin acos atan
atan2 sinh cosh tanh asinh acosh atanh fabs fmax fmin fmod remainder floor ceil round trunc rint
nearbyint erf erfc tgamma lgamma hypot fma copysign nan ldexp frexp modf
cabs carg cexp clog csqrt cpow csin ccos ctan csinh ccosh ctanh creal cimag conj""".split())
# Macros of the headers the generated code includes (and those gcc predefines): a parameter of
# that name would be replaced by the preprocessor.
HEADER_MACROS = set("""errno math_errhandling assert isnan isinf isfinite isnormal signbit
fpclassify offsetof I complex imaginary isgreater isgreaterequal isless islessequal
islessgreater isunordered unix linux""".split())
LIBC_NAMES = LIBM_NAMES | {n + "f" for n in LIBM_NAMES} | {n + "l" for n in LIBM_NAMES} | set(
    """abs labs div malloc calloc realloc free memcpy memset memmove strlen printf main exit
abort""".split()) | HEADER_MACROS
# Prefixes of names the generated code, its runtime and the libraries it links define: its own
# (starting with "_"), symgrad's (symgrad_, symgradrt_), CBLAS, LAPACKE and scipy-openblas32's.
RESERVED_PREFIXES = ("_", "symgrad_", "symgradrt_", "cblas_", "LAPACKE_", "scipy_")
RESERVED = C_KEYWORDS | LIBC_NAMES | set(STATUS) | set(keyword.kwlist)
# The macros of the headers the generated C includes are capitals, and nearly all of them hold an
# underscore (HUGE_VAL, INT64_MAX, M_PI, EXIT_SUCCESS); errno's are E and capitals (EDOM); the
# rest are these. Other capitals (X, W1, H) are the names people give matrices, kept as written.
MACROS = set("NULL EOF NAN INFINITY BUFSIZ CMPLX CMPLXF CMPLXL".split())


def _macro_like(ident):
    return bool(re.fullmatch(r"[A-Z][A-Z0-9_]*", ident)) and (
        "_" in ident or ident in MACROS or re.fullmatch(r"E[A-Z0-9]+", ident) is not None)


def c_identifier(name, taken):
    """A C identifier for ``name``, unique among ``taken`` (which it joins): ASCII letters,
    digits and underscores only; never a keyword, a libc/libm name, a macro-like name (all
    capitals, such as NULL or HUGE_VAL), one in the namespaces of symgrad (``symgrad_``, the
    runtime's ``symgradrt_``) or of the BLAS/LAPACK it links (``RESERVED_PREFIXES``), or one
    starting with ``_`` (the generated code's own names, and those C reserves: ``__x``, ``_X``).
    Any other name comes back unchanged: ``X`` and ``W1`` stay ``X`` and ``W1``."""
    ident = re.sub(r"[^0-9A-Za-z_]", "_", name)
    if not ident or ident[0].isdigit() or ident.startswith(RESERVED_PREFIXES):
        ident = "v" + ident
    if _macro_like(ident) or re.match(r"Py[A-Z_]", ident):     # or CPython's namespace
        ident += "_"
    while ident in RESERVED or ident in taken:
        ident += "_"
    taken.add(ident)
    return ident


def c_comment(text):
    """``text`` made safe inside a C comment: one line, and no ``*/`` or ``/*``."""
    return re.sub(r"[\r\n\v\f\x85\u2028\u2029]+", " ", str(text)).replace("*/", "* /").replace(
        "/*", "/ *")


@dataclass
class CVar:
    """How a value is held in C: a pointer to an array, a scalar local, or a literal."""
    name: str
    shape: tuple
    ctype: str
    kind: str                       # "array" | "scalar" | "literal"

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def strides(self):
        out, acc = [], 1
        for d in reversed(self.shape):
            out.append(acc)
            acc *= d
        return tuple(reversed(out))


class KernelContext:
    """What a primitive's ``c_kernel`` sees: its operands and loop helpers (see structural.py)."""

    def __init__(self, node, out, ins, fail, scratch, data=None):
        self.accumulate = False          # the kernel adds its result to its output's contents
        self.node = node
        self._data = data
        self.attrs = node.attrs
        self.out = out
        self.ins = ins
        self._fail = fail
        self._scratch = scratch

    def data_symbol(self, value):
        """The C name of a read-only array holding ``value`` (an ndarray of the output's dtype)
        as data, not literals: a binary file beside the source that the assembler includes
        (see ``render_module``). None where literals are wanted: a small array, or a renderer
        that writes self-contained C (ahead-of-time builds, ``source()``)."""
        if self._data is None or value.size < DATA_MIN_ELEMENTS:
            return None
        raw = np.ascontiguousarray(value, dtype=value.dtype.newbyteorder("=")).tobytes()
        symbol = "symgrad_data_" + hashlib.sha256(raw).hexdigest()[:20]
        self._data[symbol] = (self.out.ctype, raw)
        return symbol

    def scratch(self, nbytes):
        """A ``char *`` (its C name) to ``nbytes`` bytes of the function's workspace, aligned to
        a cache line, for this kernel's own temporaries (contents undefined on entry)."""
        return self._scratch(nbytes)

    @staticmethod
    def idx(shape):
        """The indices of ``loop(shape, ...)``: ``_i0, _i1, ...``, and ``0`` along an axis of
        size 1 (which gets no loop)."""
        return loop_indices(shape)

    @staticmethod
    def offset(var, indices):
        terms = []
        for ix, stride, n in zip(indices, var.strides, var.shape):
            if ix in ("0", 0) or n == 1:
                continue
            ix = str(ix)
            if stride != 1 and not re.fullmatch(r"\w+", ix):
                ix = f"({ix})"
            terms.append(ix if stride == 1 else f"{ix} * {dims.c_expr(stride)}")
        return " + ".join(terms) or "0"

    @staticmethod
    def at(var, offset):
        if var.kind == "array":
            return f"{var.name}[{offset}]"
        return var.name

    @staticmethod
    def ptr(var):
        return var.name

    @staticmethod
    def loop(shape, body):
        return loop_nest(shape, body)

    def fail(self, code):
        self._fail()
        return f"{{ _status = {code}; goto done; }}"

    def inline_graph(self, graph, inputs, outputs, summed=()):
        """The statements of ``graph`` (a loop body) rendered in place, for a kernel's own loop.

        ``inputs``: one C expression per graph input (a pointer for an array, a value for a
        scalar); ``outputs``: one pointer per graph output, written by the statements, except
        the outputs at the positions ``summed``, which are added to their buffers' contents (a
        product adds itself in; another value is added after the statements). Returns
        ``(workspace bytes, lines)``; the lines expect a ``char *_ws`` of that many bytes in
        scope (for instance ``char *_ws = k.scratch(bytes)``).

        The body's values keep their IR names, in a C block of their own (they shadow the
        enclosing function's names, as the body's names are its own in the IR). The operands
        are first bound to ``_in<k>``/``_out<k>``, outside that block, because an expression
        such as ``b + _t * 3`` may name an enclosing value the body also calls ``b``.
        """
        fn = FunctionRenderer(graph, "", [f"_o{k}" for k in range(len(graph.outputs))],
                              nested=True, summed=summed).render()
        if fn.can_fail:
            self._fail()
        # No ``restrict`` on these pointers: a loop's step reads the row the step before wrote
        # through another pointer, and gcc lets restrict pointers declared in a loop body
        # reorder such accesses across iterations.
        outer, inner = [], []
        for k, ((name, ctype, shape), expr) in enumerate(zip(fn.inputs, inputs)):
            if len(shape) == 0:
                outer.append(f"const {ctype} _in{k} = {expr};")
                inner.append(f"const {ctype} {name} = _in{k};")
            else:
                outer.append(f"const {ctype} *_in{k} = {expr};")
                inner.append(f"const {ctype} *{name} = _in{k};")
        for k, ((name, ctype, _), expr) in enumerate(zip(fn.outputs, outputs)):
            outer.append(f"{ctype} *_out{k} = {expr};")
            inner.append(f"{ctype} *{name} = _out{k};")
        inner += fn.prologue
        for block in fn.blocks:
            inner += block.comment_lines() + block.lines
        inner += fn.epilogue
        return fn.workspace_size, outer + ["{", *("    " + line for line in inner), "}"]


def loop_indices(shape):
    """Index names of a loop nest over ``shape``: ``_i0, _i1, ...``, and ``0`` along an axis of
    size 1, which gets no loop (see ``loop_nest``)."""
    return ["0" if n == 1 else f"_i{d}" for d, n in enumerate(shape)]


def loop_nest(shape, body, names=None, independent=False):
    """Nested ``for`` loops over ``shape`` around ``body``; an axis of size 1 gets no loop (its
    index in ``names``, default ``loop_indices(shape)``, is ``0``). ``independent``: no
    iteration of the innermost loop reads or writes an element another one writes, which the
    C then promises the compiler (``SYMGRAD_IVDEP``, templates/module.c.j2)."""
    names = names or loop_indices(shape)
    loops = [(n, ix) for n, ix in zip(shape, names) if n != 1]
    lines = []
    for d, (n, ix) in enumerate(loops):
        if independent and d == len(loops) - 1:
            lines.append("    " * d + "SYMGRAD_IVDEP")
        lines.append("    " * d + f"for (int64_t {ix} = 0; {ix} < {dims.c_expr(n)}; ++{ix}) {{")
    lines += ["    " * len(loops) + line for line in body]
    lines += ["    " * d + "}" for d in reversed(range(len(loops)))]
    return lines


@dataclass
class Block:
    """Lines of C, and what they compute: one ``(statement, where)`` per IR statement, such as
    ``("grad of: c = sin a", "loss.py:12: c = snp.sin(a)")``."""
    comments: list
    lines: list
    defines: object = None          # the run-time size its statement binds (while_count)

    def comment_lines(self):
        """The block's comment: one statement a line, its user line beside it (the source text
        once, on the first statement from that line)."""
        if not self.comments:
            return []
        width = max(len(stmt) for stmt, _ in self.comments)
        rows, seen = [], set()
        for stmt, (short, full) in self.comments:
            where = short if short in seen else full
            seen.add(short)
            rows.append(c_comment(f"{stmt:<{width}}   {where}".rstrip()))
        if len(rows) == 1:
            return [f"/* {rows[0]} */"]
        return [f"/* {rows[0]}", *(f" * {r}" for r in rows[1:-1]), f" * {rows[-1]} */"]


@dataclass
class CFunction:
    """Everything the function template needs, already rendered."""
    name: str
    params: list
    doc: list
    prologue: list
    blocks: list
    epilogue: list
    workspace_bytes: str               # a C expression; "" for no workspace
    can_fail: bool
    size_checks: list = field(default_factory=list)
    workspace_size: object = 0         # the same as a dimension (an int or an expression)
    workspace_on_stack: bool = False   # a local array (STACK_WORKSPACE_MAX), not a kept block
    cleanup: list = field(default_factory=list)   # after ``done:``, on every exit path
    inputs: list = field(default_factory=list)    # (c name, ctype, shape) per graph input
    outputs: list = field(default_factory=list)   # (c name, ctype, shape) per graph output


class FunctionRenderer:
    """Turns one Graph into a CFunction."""

    def __init__(self, graph: Graph, name: str, output_names, *, nested=False, data=None,
                 summed=()):
        self.graph = graph
        self.summed = frozenset(summed)     # positions of outputs added into, not written
        self.data = data            # symbol -> (ctype, bytes) of constants kept as data; None: literals
        self.name = name
        self.nested = nested      # a loop body, inlined into an enclosing function
        self.ir_names = graph.names()
        self.ir_ref = graph.operand_names(self.ir_names)    # for comments quoting statements
        self.producers = graph.producers()
        self.uses = graph.uses()
        self.can_fail = False
        # IR names first, so they keep their spelling; the parameters derived from them
        # (out, grad_x, x_ptr) give way where an IR name already has theirs.
        taken = set()
        self.cnames = {}
        for v in graph.inputs:
            self.cnames[v] = c_identifier(self.ir_names[v], taken)
        for n in graph.nodes:
            self.cnames[n.out] = c_identifier(self.ir_names[n.out], taken)
        self.out_params = [n if nested else c_identifier(n, taken) for n in output_names]
        self.pointers = {v: c_identifier(self.cnames[v] + "_ptr", taken)
                         for v in graph.inputs if v.ndim == 0 and not nested}
        self.storage = {}
        self.workspace = []          # (cname, ctype, size)
        self.defined_sizes = set()   # the sizes its statements define (while loops' counts)
        self.prologue, self.epilogue = [], []
        self.aliases = set()
        self.offsets = {}            # slice views: (buffer, element offset into it)
        self.padded = {}             # pad_slice views: (source CVar, start)
        self.views = self._views()
        self.groups = self._group()
        self.internal = set()
        for g in self.groups:
            if len(g) > 1 or REGISTRY[g[0].prim].elementwise:
                self.internal |= self._internal(g)
        # Sums of a product and a term computed before it: all three share the sum's buffer.
        self.accumulated = accumulate.plan(graph, self.groups, self.uses, self.views,
                                           self.internal)
        self.adds_into, self.adding = self._adds_into()

    def _adds_into(self):
        """For the summed outputs (``inline_graph``) computed by a kernel that can add into its
        output (a matrix product, perhaps reshaped): ``({value: output parameter}, {the
        products})``. The product then adds itself into the output's buffer: the loop's
        contributions to a closed-over matrix's adjoint go straight into one sum, no copy."""
        outputs = self.graph.outputs
        inputs = set(self.graph.inputs)
        names, products = {}, set()
        for k in sorted(self.summed):
            v = outputs[k]
            if outputs.count(v) != 1 or v in inputs:
                continue
            chain = [v]
            while True:
                p = self.producers.get(chain[-1])
                view = REGISTRY[p.prim].view_of(p) if p is not None else None
                if view is None or view.kind != REINTERPRET:
                    break
                src = p.inputs[0]
                if src in inputs or src in outputs or len(self.uses.get(src, [])) != 1:
                    break
                chain.append(src)
            p = self.producers.get(chain[-1])
            if (p is None or not REGISTRY[p.prim].c_adds_into or p.out in self.accumulated
                    or p.out in self.views or p.out in self.internal):
                continue
            for u in chain:
                names[u] = self.out_params[k]
            products.add(p.out)
        return names, products

    # -- fusion ---------------------------------------------------------------------------------

    def _views(self):
        """Broadcasts and zero-paddings (``pad_slice``, the adjoint of a slice) read only by
        elementwise statements: those loops read the source, with broadcasting or a bounds
        test, instead of a materialized copy. So is a constant array of one repeated value
        (``_repeated``), read as that value: the folded seed of a summed loss's gradient, which
        was written out as data and copied into the workspace by a loop of its own."""
        outputs = set(self.graph.outputs)
        views = set()
        for n in self.graph.nodes:
            if n.out in outputs or not all(REGISTRY[u.prim].elementwise
                                           for u in self.uses.get(n.out, [])):
                continue
            view = REGISTRY[n.prim].view_of(n)
            if (view is not None and view.kind == BROADCAST) or _repeated(n) is not None:
                views.add(n.out)
            elif (view is not None and view.kind == PADDING
                  and n.inputs[0] not in views and n.inputs[0].ndim > 0):
                views.add(n.out)
        return views

    def _group(self):
        """Split the statements into runs: elementwise ones over one shape fuse into a loop."""
        groups = []
        # Of the last group, kept as it grows (recomputing them per statement made rendering
        # quadratic in the length of a fused loop): its reductions, its elementwise values and
        # the last of those.
        reduced, loop_values, last_loop = set(), set(), None
        for n in self.graph.nodes:
            if (REGISTRY[n.prim].literal and n.out.ndim == 0) or n.out in self.views:
                continue
            elementwise = REGISTRY[n.prim].elementwise
            fusible = elementwise and n.out.ndim > 0
            if (fusible and groups and len(groups[-1]) < FUSED_MAX
                    and self._joins(n, groups[-1], reduced)):
                groups[-1].append(n)
            elif groups and self._folds_into(n, last_loop, loop_values):
                groups[-1].append(n)
            else:
                groups.append([n])
                reduced, loop_values, last_loop = set(), set(), None
            if elementwise:
                loop_values.add(n.out)
                last_loop = n
            else:
                reduced.add(n.out)
        return groups

    def _joins(self, node, group, reduced):
        """Whether elementwise ``node`` can run inside ``group``'s loop: the group is a fused
        loop over the node's shape, and the node reads none of the group's reductions, not even
        through a broadcast or padding view (they are complete only after the loop). So a
        gradient's elementwise statements join the forward loop across the loss's sum, and its
        values never leave registers."""
        first = group[0]
        if not (REGISTRY[first.prim].elementwise and first.out.ndim > 0
                and first.out.shape == node.out.shape):
            return False
        if not reduced:
            return True
        pending = list(node.inputs)
        while pending:
            v = pending.pop()
            if v in reduced:
                return False
            if v in self.views:
                pending.extend(self.producers[v].inputs)
        return True

    @staticmethod
    def _folds_into(node, last_loop, loop_values):
        """Whether reduction ``node`` can run inside the last group's loop: the group is a fused
        elementwise loop (perhaps already ending in reductions) over its operand's shape, and
        computes that operand. ``last_loop``: the group's last elementwise statement (None if it
        has none); ``loop_values``: the values of its elementwise statements."""
        if REGISTRY[node.prim].c_reduce is None or last_loop is None:
            return False
        return (last_loop.out.ndim > 0
                and last_loop.out.shape == node.inputs[0].shape
                and node.inputs[0] in loop_values)

    def _internal(self, nodes):
        """Values of a fused loop that nothing outside it reads: they stay loop locals."""
        produced = {n.out for n in nodes}
        members = set(nodes)        # a set: membership in the list made long loops quadratic
        outputs = set(self.graph.outputs)
        return {v for v in produced if v not in outputs and v.ndim > 0
                and all(u in members for u in self.uses.get(v, []))}

    # -- storage --------------------------------------------------------------------------------

    def _plan_storage(self):
        outputs = self.graph.outputs
        first_output = {}
        for k, v in enumerate(outputs):
            if k not in self.summed:
                first_output.setdefault(v, k)
        params = []
        for v in self.graph.inputs:
            ctype = CTYPES[v.dtype]
            name = self.cnames[v]
            if v.ndim == 0:
                if not self.nested:         # a loop body's scalars are bound by inline_graph
                    params.append(f"const {ctype} *restrict {self.pointers[v]}")
                    self.prologue.append(f"const {ctype} {name} = *{self.pointers[v]};")
                self.storage[v] = CVar(name, (), ctype, "scalar")
            else:
                params.append(f"const {ctype} *restrict {name}")
                self.storage[v] = CVar(name, v.shape, ctype, "array")
        for n in self.graph.nodes:
            v, ctype = n.out, CTYPES[n.out.dtype]
            view = REGISTRY[n.prim].view_of(n)
            kind = view.kind if view is not None else None
            if v in self.adds_into:
                self.storage[v] = CVar(self.adds_into[v], v.shape, ctype, "array")
                if v not in self.adding:
                    self.aliases.add(v)
            elif v in self.accumulated:
                self._accumulated_storage(v, ctype, first_output)
            elif REGISTRY[n.prim].literal and v.ndim == 0:
                self.storage[v] = CVar(c_literal(n.attrs["value"].value.item(), ctype), (), ctype,
                                       "literal")
            elif v in self.views and REGISTRY[n.prim].literal:
                # One value repeated: read as that literal, as a broadcast of it would be.
                self.storage[v] = CVar(c_literal(_repeated(n), ctype), (1,) * v.ndim, ctype,
                                       "literal")
                self.aliases.add(v)
            elif v.ndim == 0 or v in self.internal:
                self.storage[v] = CVar(self.cnames[v], v.shape, ctype, "scalar")
            elif (kind == REINTERPRET and self.storage[n.inputs[0]].kind == "array"
                  and v not in first_output):
                # Row-major reshape moves no data: the same buffer, read with other strides.
                self.storage[v] = CVar(self.storage[n.inputs[0]].name, v.shape, ctype, "array")
                self.aliases.add(v)
                if n.inputs[0] in self.offsets:
                    self.offsets[v] = self.offsets[n.inputs[0]]
            elif v in self.views and kind == PADDING:
                self.storage[v] = CVar(self.storage[n.inputs[0]].name, v.shape, ctype, "padded")
                self.padded[v] = (self.storage[n.inputs[0]], view.start)
                self.aliases.add(v)
            elif v in self.views:
                src = self.storage[n.inputs[0]]
                self.storage[v] = CVar(src.name, view.shape, ctype, src.kind)
                self.aliases.add(v)
            elif (kind == WINDOW and self.storage[n.inputs[0]].kind == "array"
                  and v not in first_output):
                # A block of whole rows is a pointer into the sliced buffer (of a slice of a
                # slice, into the first one's source).
                src = self.storage[n.inputs[0]]
                base, offset = self.offsets.get(n.inputs[0], (src.name, 0))
                offset = dims.normalize(offset + view.offset)
                self.offsets[v] = (base, offset)
                name = base if offset == 0 else f"({base} + {dims.c_expr(offset)})"
                self.storage[v] = CVar(name, v.shape, ctype, "array")
                self.aliases.add(v)
            elif v in first_output and v not in self.graph.inputs:
                name = self.out_params[first_output[v]]
                self.storage[v] = CVar(name, v.shape, ctype, "array")
            else:
                self.storage[v] = CVar(self.cnames[v], v.shape, ctype, "array")
                self.workspace.append((self.cnames[v], ctype, v.type.size))
        for k, v in enumerate(outputs):
            ctype, name = CTYPES[v.dtype], self.out_params[k]
            params.append(f"{ctype} *restrict {name}")
            src = self.storage[v]
            if k in self.summed:
                if src.name != name:
                    at = "" if src.kind != "array" else "[_i]"
                    self.epilogue.append(f"for (int64_t _i = 0; _i < "
                                         f"{dims.c_expr(v.type.size)}; ++_i) "
                                         f"{name}[_i] += {src.name}{at};")
            elif v.ndim == 0:
                self.epilogue.append(f"*{name} = {src.name};")
            elif src.name != name:
                self.epilogue.append(f"memcpy({name}, {src.name}, sizeof({ctype}) * "
                                     f"{dims.c_expr(v.type.size)});")
        return params

    def _accumulated_storage(self, v, ctype, first_output):
        """A sum's term, product or the sum itself (accumulate.py): the sum's buffer, made when
        the first of them comes; the sum's own statement is then left out."""
        s = self.accumulated[v].out
        if s in self.storage:
            self.storage[v] = CVar(self.storage[s].name, v.shape, ctype, "array")
            if v is s:
                self.aliases.add(v)
            return
        if s in first_output:
            name = self.out_params[first_output[s]]
        else:
            name = self.cnames[s]
            self.workspace.append((name, ctype, s.type.size))
        self.storage[s] = CVar(name, s.shape, ctype, "array")
        self.storage[v] = CVar(name, v.shape, ctype, "array")

    # -- statements -----------------------------------------------------------------------------

    def _comments(self, nodes):
        """``(statement, (user line, user line with its text))`` per statement of ``nodes``,
        each said once: forward statements as the IR printer writes them, adjoint ones as
        ``grad of:`` the forward statement their derivative rule came from."""
        seen, out = set(), []
        for n in nodes:
            node, prefix = (n.grad_of, "grad of: ") if n.grad_of is not None else (n, "")
            stmt = prefix + format_statement(node, self.ir_names, ref=self.ir_ref, types=False)
            if stmt in seen:
                continue
            seen.add(stmt)
            loc = node.loc
            short = str(loc) if loc is not None else ""
            full = f"{loc}: {loc.text}" if loc is not None and loc.text else short
            out.append((stmt, (short, full)))
        return out

    def _kernel_block(self, node):
        out = self.storage[node.out]
        ins = [self.storage[v] for v in node.inputs]

        def mark_fail():
            self.can_fail = True

        def scratch(nbytes):
            name = f"_scratch_{out.name}"
            self.workspace.append((name, "char", nbytes))
            return name

        ctx = KernelContext(node, out, ins, mark_fail, scratch, self.data)
        # Add into its output: a sum's product (accumulate.py), a loop's summed output.
        ctx.accumulate = node.out in self.accumulated or node.out in self.adding
        body = REGISTRY[node.prim].c_kernel(ctx)
        lines = [f"{out.ctype} {out.name};"] if out.kind == "scalar" else []
        # A kernel that declares names outside its loops gets a scope of its own, so two
        # kernels' locals (_pa, _base, ...) cannot meet.
        if any(_DECLARATION.match(line) for line in body):
            body = ["{", *("    " + line for line in body), "}"]
        defines = REGISTRY[node.prim].defines
        return Block(self._comments(self._described([node])), lines + body,
                     defines(node) if defines is not None else None)

    def _scalar_block(self, nodes):
        lines = []
        for n in nodes:
            out = self.storage[n.out]
            prim = REGISTRY[n.prim]
            render = prim.c_scalar_expr or prim.c_expr
            expr = render([self.storage[v].name for v in n.inputs], out.ctype)
            lines.append(f"const {out.ctype} {out.name} = {expr};")
        return Block(self._comments(self._described(nodes)), lines)

    def _fused_block(self, nodes):
        """One loop over the common shape computing every statement of ``nodes``; reductions
        at the end of the group accumulate inside the same loop."""
        reductions = [n for n in nodes if not REGISTRY[n.prim].elementwise]
        nodes = [n for n in nodes if REGISTRY[n.prim].elementwise]
        shape = nodes[0].out.shape
        produced = {n.out for n in nodes}
        internal = self.internal
        outside = {v for n in nodes for v in n.inputs if v not in produced
                   and self.storage[v].kind in ("array", "padded")}
        flat = (all(tuple(self.storage[v].shape) == tuple(shape) for v in outside)
                and all(len(r.attrs["axes"]) == len(shape) for r in reductions)
                and all(self.storage[v].kind == "array" or len(shape) == 1 for v in outside))
        loop_shape = (dims.prod(shape),) if flat else shape
        if flat:
            own = "0" if loop_shape[0] == 1 else "_i"
            index_names = [own]

            def ref(v):
                s = self.storage[v]
                if s.kind == "padded":
                    return self._padded_ref(v, [own])
                if v in internal or s.kind != "array":
                    return s.name
                return f"{s.name}[{own}]"
        else:
            index_names = loop_indices(shape)
            own = KernelContext.offset(CVar("", shape, "", "array"), index_names)

            def ref(v):
                s = self.storage[v]
                if s.kind == "padded":
                    lead = len(shape) - s.ndim
                    return self._padded_ref(v, [index_names[lead + d] if s.shape[d] != 1
                                                else "0" for d in range(s.ndim)])
                if v in internal or s.kind != "array":
                    return s.name
                if v in produced:
                    return f"{s.name}[{own}]"
                lead = len(shape) - s.ndim
                idx = ["0" if s.shape[d] == 1 else index_names[lead + d] for d in range(s.ndim)]
                return f"{s.name}[{KernelContext.offset(s, idx)}]"
        body = []
        for n in nodes:
            out = self.storage[n.out]
            expr = REGISTRY[n.prim].c_expr([ref(v) for v in n.inputs], out.ctype)
            if n.out in internal:
                body.append(f"const {out.ctype} {out.name} = {expr};")
            else:
                body.append(f"{out.name}[{own}] = {expr};")
        elementwise = list(body)
        before = []
        for r in reductions:
            init, update = REGISTRY[r.prim].c_reduce
            out = self.storage[r.out]
            if out.kind == "scalar":
                before.append(f"{out.ctype} {out.name} = {init(out.ctype)};")
                acc = out.name
            else:
                ix = loop_indices((out.size,))[0]
                before += loop_nest((out.size,), [f"{out.name}[{ix}] = {init(out.ctype)};"])
                kept = [ix for d, ix in enumerate(index_names) if d not in r.attrs["axes"]]
                acc = f"{out.name}[{KernelContext.offset(out, kept)}]"
            body += update(acc, ref(r.inputs[0]), out.ctype)
        if flat and lanes.splits(reductions, self.storage, loop_shape[0]):
            return Block(self._comments(self._described(nodes + reductions)), before + lanes.loop(
                loop_shape[0], elementwise,
                [(REGISTRY[r.prim].c_reduce, self.storage[r.out], ref(r.inputs[0]))
                 for r in reductions]))
        # Each iteration of the innermost loop writes its own elements, unless a reduction
        # sums over that loop's axis: into one element of an array (the same for all its
        # iterations), or into a scalar (a chain of adds the compiler must not reorder; clang's
        # pragma would let it). Loops too short for a vector go without.
        looped = [d for d, n in enumerate(loop_shape) if n != 1]
        innermost = loop_shape[looped[-1]] if looped else 1
        independent = (bool(looped) and not (isinstance(innermost, int) and innermost < 4)
                       and not any(self.storage[r.out].kind == "scalar" or flat
                                   or looped[-1] in r.attrs["axes"] for r in reductions))
        return Block(self._comments(self._described(nodes + reductions)),
                     before + loop_nest(loop_shape, body, index_names, independent))

    def _padded_ref(self, v, indices):
        """Element ``indices`` of the pad_slice view ``v``: its source's element where the
        index falls inside the slice, else 0."""
        src, start = self.padded[v]
        tests, at = [], []
        for ix, s0, n, full in zip(indices, start, src.shape, v.shape):
            if s0 == 0 and dims.equal(n, full):
                at.append(ix)
                continue
            end = dims.normalize(s0 + n)
            if s0 != 0:
                tests.append(f"{ix} >= {dims.c_expr(s0)}")
            if not dims.equal(end, full):
                tests.append(f"{ix} < {dims.c_expr(end)}")
            at.append(ix if s0 == 0 else f"{ix} - {dims.c_expr(s0)}")
        value = f"{src.name}[{KernelContext.offset(src, at)}]"
        if not tests:
            return value
        zero = "0.0f" if src.ctype == "float" else "0.0" if src.ctype == "double" else "0"
        return f"({' && '.join(tests)} ? {value} : {zero})"

    def _described(self, nodes):
        """``nodes``, each after the views it reads that are not described yet: a reshape,
        slice, broadcast or padding that has no code (its readers read its source) is named
        in the comment of the first block that reads it, so every IR name can be found."""
        out = []

        def add(n):
            for v in n.inputs:
                p = self.producers.get(v)
                if p is not None and (v in self.aliases or v in self.views) \
                        and p not in self.described:
                    self.described.add(p)
                    add(p)
                    out.append(p)
            out.append(n)
        for n in nodes:
            add(n)
        return out

    def _blocks(self):
        blocks = []
        self.described = set()
        for group in self.groups:
            first = group[0]
            if first.out in self.aliases:
                continue
            if not REGISTRY[first.prim].elementwise:
                blocks.append(self._kernel_block(first))
            elif first.out.ndim == 0:
                blocks.append(self._scalar_block(group))
            else:
                blocks.append(self._fused_block(group))
        return _tidy(blocks)

    def _workspace_layout(self):
        """(name, ctype, byte offset) per workspace array, each starting on a cache line:
        static sizes first, arrays with run-time sizes after them."""
        static = [w for w in self.workspace if dims.is_static(w[2])]
        dynamic = [w for w in self.workspace if not dims.is_static(w[2])
                   and not self.defined_sizes & set(dims.count_symbols(w[2]))]
        layout, offset = [], 0
        for cname, ctype, size in static:
            layout.append((cname, ctype, offset))
            offset += dims.align_up(max(size, 1) * _sizeof(ctype), ALIGN)
        for k, (cname, ctype, size) in enumerate(dynamic):
            layout.append((cname, ctype, offset))
            nbytes = _sizeof(ctype) * size
            offset = dims.normalize(offset + (nbytes if k == len(dynamic) - 1 else
                                              dims.align_up(nbytes, ALIGN)))
        return layout, offset

    def _workspace_bytes(self):
        return self._workspace_layout()[1]

    def _workspace_lines(self):
        return [f"{ctype} *restrict {cname} = ({ctype} *)(_ws + {dims.c_expr(offset)});"
                for cname, ctype, offset in self._workspace_layout()[0]]

    def _counted_workspace(self, blocks):
        """The arrays sized by a size a statement defines (a while loop's trip count, the
        loop's tape): allocated right after the last statement defining a size they use, one
        block per set of such sizes, freed after ``done:`` (so on every exit). ``blocks`` gets
        the allocations; returns (declarations at the top, lines after ``done:``)."""
        defined = [b.defines for b in blocks if b.defines is not None]
        if len(set(defined)) != len(defined):
            raise NotImplementedError(
                f"{self.graph.name}: the while loop counted by {defined[0].name} is traced "
                f"twice into one function (a transformed function called inside another); "
                f"give the loop a bound with `# symgrad: max_steps=N`")
        self.defined_sizes = set(defined)
        if not defined:
            # A loop body using a count defined by the enclosing function: its arrays are in
            # the workspace the enclosing kernel asks for, which that function allocates late.
            return [], []
        if self.nested:
            raise NotImplementedError(
                "a while loop counted at run time inside a loop body (a symgrad bug: nested "
                "while loops keep their max_steps bound)")
        groups = {}
        for w in self.workspace:
            found = set(dims.count_symbols(w[2])) & self.defined_sizes
            if found:
                groups.setdefault(frozenset(found), []).append(w)
        top = [f"int64_t {s.name} = 0;" for s in defined]
        cleanup = []
        for k, (syms, arrays) in enumerate(sorted(groups.items(),
                                                  key=lambda kv: sorted(s.name for s in kv[0]))):
            last = max(j for j, b in enumerate(blocks) if b.defines in syms)
            ws = f"_ws_counted{k}"
            lines, offset = [], 0
            for cname, ctype, size in arrays:
                lines.append(f"{ctype} *restrict {cname} = ({ctype} *)({ws} + "
                             f"{dims.c_expr(offset)});")
                offset = dims.normalize(offset + dims.align_up(
                    dims.normalize(dims.at_least_zero(size) * _sizeof(ctype)), ALIGN))
            # Not the per-thread workspace block: that one is in use for the whole call. malloc,
            # aligned by hand to a cache line (C99 has no aligned_alloc).
            alloc = [f"{ws}_block = (char *)malloc((size_t){dims.c_expr(offset)} + {ALIGN});",
                     f"if ({ws}_block == NULL) {{ _status = SYMGRAD_ENOMEM; goto done; }}",
                     f"char *{ws} = {ws}_block + ({ALIGN} - (uintptr_t){ws}_block % {ALIGN});"]
            blocks.insert(last + 1, Block(
                [(f"the arrays sized by {', '.join(sorted(s.name for s in syms))}, known "
                  f"only now", ("", ""))], alloc + lines))
            top.append(f"char *{ws}_block = NULL;")
            cleanup.append(f"free({ws}_block);")
            self.can_fail = True
        return top, cleanup

    def _value_sizes(self):
        """Trip counts given by an int argument's value: defined first, as sizes are."""
        by_name = {v.name: v for v in self.graph.inputs}
        lines = []
        for s in dims.graph_symbols(self.graph):
            name = dims.value_source(s)
            if name is None:
                continue
            if name not in by_name or by_name[name].ndim != 0:
                raise ValueError(f"{self.graph.name}: a loop runs {name} times, but {name} is "
                                 f"not a scalar input of this function")
            lines.append(f"const int64_t {s.name} = (int64_t)*{self.pointers[by_name[name]]};")
        return lines

    def render(self, doc=()):
        sizes = dims.free_symbols([v.shape for v in self.graph.inputs])
        params = [f"int64_t {s.name}" for s in sizes] + self._plan_storage()
        checks = [f"if ({s.name} < 0) return SYMGRAD_ESIZE;" for s in sizes]
        if not self.nested:
            checks += self._value_sizes()
        blocks = self._blocks()
        counted, cleanup = self._counted_workspace(blocks)
        checks += counted
        nbytes = self._workspace_bytes()
        return CFunction(
            name=self.name, params=params, doc=list(doc), size_checks=checks, cleanup=cleanup,
            prologue=self._workspace_lines() + self.prologue,
            blocks=blocks, epilogue=self.epilogue,
            workspace_bytes=dims.c_expr(nbytes) if nbytes != 0 else "",
            workspace_size=nbytes,
            workspace_on_stack=dims.is_static(nbytes) and 0 < nbytes <= STACK_WORKSPACE_MAX,
            can_fail=self.can_fail,
            inputs=[(self.cnames[v], CTYPES[v.dtype], v.shape) for v in self.graph.inputs],
            outputs=[(self.out_params[k], CTYPES[v.dtype], v.shape)
                     for k, v in enumerate(self.graph.outputs)])


_DECLARATION = re.compile(r"(const |static )*(%s)\b" % "|".join(sorted(set(CTYPES.values()))))


def _repeated(node):
    """The one value a constant array statement holds in every element (bit for bit: not
    0.0 beside -0.0), or None (not a constant array, or one of several values)."""
    if not REGISTRY[node.prim].literal or node.out.ndim == 0:
        return None
    value = node.attrs["value"].value
    if value.size == 0 or value.tobytes() != np.full_like(value, value.flat[0]).tobytes():
        return None
    return value.flat[0].item()


def _tidy(blocks):
    """Merge consecutive straight-line blocks from the same user lines: one comment over the
    statements of one line of Python."""
    merged = []
    for b in blocks:
        if merged and _straight(b) and _straight(merged[-1]) and \
                _lines_of(b) == _lines_of(merged[-1]):
            merged[-1].comments += [c for c in b.comments if c not in merged[-1].comments]
            merged[-1].lines.extend(b.lines)
        else:
            merged.append(b)
    return merged


def _straight(block):
    return all(line.startswith("const ") for line in block.lines)


def _lines_of(block):
    return {where for _, (where, _) in block.comments}


def _sizeof(ctype):
    return {"double": 8, "float": 4, "int64_t": 8, "int32_t": 4, "bool": 1, "char": 1,
            "double _Complex": 16, "float _Complex": 8}[ctype]


# --- templates ---------------------------------------------------------------------------------

# Runtime C the modules paste in as it is: no template logic, so plain C files beside the
# templates.
RUNTIME_FILES = ("blas.h", "workspace.c")


def runtime_sources():
    """``{file name: its text}`` of the runtime C files."""
    return {name: (templates.TEMPLATE_DIR / name).read_text().rstrip("\n")
            for name in RUNTIME_FILES}


def render_module(functions, *, title, version, data=None):
    """The C source of a module holding ``functions`` (CFunctions). ``data``: the constants
    its functions keep as data (symbol -> (ctype, bytes), see ``KernelContext.data_symbol``),
    each included from the file ``<symbol>.bin`` by the assembler (ELF: Linux, the BSDs)."""
    for fn in functions:
        fn.doc = [c_comment(line) for line in fn.doc]
    # <complex.h> and symgrad_cmplx (templates/complex.c.j2) where a value is complex.
    uses_complex = any("_Complex" in line for fn in functions
                       for line in (*fn.params, *fn.prologue, *fn.epilogue,
                                    *(text for block in fn.blocks for text in block.lines)))
    lines = [line for fn in functions for block in fn.blocks for line in block.lines]
    parallel = narrow.template_parts(lines)
    body = templates.render("module_body.c.j2",
        functions=functions, runtime=runtime_sources(), align=ALIGN,
        data=[(symbol, ctype) for symbol, (ctype, _) in sorted((data or {}).items())],
        uses_workspace=any(fn.workspace_bytes and not fn.workspace_on_stack
                           for fn in functions),
        uses_blas=bool(parallel and parallel["blas"]) or any(
            "SYMGRAD_DGEMM" in line or "SYMGRAD_SGEMM" in line or "SYMGRAD_LAPACKE" in line
            for line in lines),
        parallel=parallel,
        # symgrad's math runtime (templates/math.c.j2): the functions libm lacks.
        uses_math=any("symgrad_math_" in line for line in lines),
        # chain_mul's and select's branch-free helpers (templates/branch_free.c.j2)
        uses_branch_free=any("symgradrt_chain_mul" in line or "symgradrt_select" in line
                             for line in lines),
        uses_complex=uses_complex)
    prototypes, macros = libc.declarations(body)
    return templates.render("module.c.j2", title=c_comment(title), version=version,
                            status=STATUS, uses_complex=uses_complex, prototypes=prototypes,
                            macros=macros, body=body,
                            uses_ivdep=any(line.strip() == "SYMGRAD_IVDEP" for line in lines))


def render_prototypes(functions):
    """The C declarations of ``functions`` (for cffi's cdef and for headers)."""
    return templates.render("prototypes.h.j2", functions=functions)
