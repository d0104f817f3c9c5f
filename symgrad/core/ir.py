"""The typed SSA graph every part of symgrad speaks.

A ``Graph`` has input ``Var``s, a list of ``Node``s in execution order and output ``Var``s. Each
node applies one primitive (by name, see ``symgrad.core.primitives``) to input vars with attributes and
defines exactly one new var; it remembers the line of user code it came from.

Graphs are built by ``bind`` inside a ``building(builder)`` block, so derivative rules and the
front end share one way of emitting IR. The printer is deterministic and reads like a jaxpr::

    { lambda x:f64[3], y:f64[] .
      a:f64[3] = sin x
      b:f64[3] = mul a y
      c:f64[] = reduce_sum[axes=(0,)] b
      in (c) }
"""
from __future__ import annotations

import hashlib
import linecache
import os
import sys
import threading
from dataclasses import dataclass, field

import numpy as np

from symgrad.core.types import TensorType

# Every primitive by name: a node names its primitive, the record (``symgrad.core.primitive``)
# says everything about it. The dict lives here, below the records, so the printer can ask a
# record how its statements print; ``primitive.register`` fills it and importing
# ``symgrad.core.primitives`` registers every primitive.
class Registry(dict):
    """Primitive name -> record. Remembers the names whose record was replaced after it was
    registered (a test's wrong derivative rule, put in and taken out again), so the compile
    cache can tell such a process's code from the shipped one (``backends/c/keys.py``)."""

    def __init__(self):
        super().__init__()
        self.replaced = set()

    def __setitem__(self, name, record):
        if name in self:
            self.replaced.add(name)
        super().__setitem__(name, record)


REGISTRY = Registry()


@dataclass(frozen=True)
class SourceLoc:
    """A line of user code: ``loss.py:12``; ``text`` is the stripped source line."""
    filename: str
    lineno: int
    function: str = ""

    @property
    def text(self):
        return linecache.getline(self.filename, self.lineno).strip()

    def __str__(self):
        return f"{os.path.basename(self.filename)}:{self.lineno}"


class Var:
    """One SSA value: its type, and an optional name (inputs) or naming hint (adjoints)."""
    __slots__ = ("type", "name", "adjoint_of")

    def __init__(self, type_: TensorType, name: str | None = None, adjoint_of: Var | None = None):
        self.type = type_
        self.name = name
        self.adjoint_of = adjoint_of

    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    @property
    def ndim(self):
        return len(self.type.shape)

    def __repr__(self):
        return f"Var({self.name or hex(id(self))}:{self.type})"


class Literal:
    """A constant array attribute, hashed and compared by value (for CSE and the graph hash)."""
    __slots__ = ("value", "_key")

    def __init__(self, value):
        self.value = np.asarray(value)
        self.value.setflags(write=False)
        self._key = (self.value.dtype.str, self.value.shape, self.value.tobytes())

    def __eq__(self, other):
        return isinstance(other, Literal) and self._key == other._key

    def __hash__(self):
        return hash(self._key)

    def __repr__(self):
        if self.value.ndim == 0:
            return format_scalar(self.value.item())
        return np.array2string(self.value, separator=",", threshold=8).replace("\n", "")


def format_scalar(v):
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return repr(float(v)) if not isinstance(v, complex) else repr(v)


@dataclass(eq=False)
class Node:
    """``out = prim[attrs](*inputs)``, from the user's line ``loc``."""
    prim: str
    inputs: tuple
    attrs: dict
    out: Var
    loc: SourceLoc | None = None
    # For an adjoint node: the forward node whose derivative rule emitted it.
    grad_of: Node | None = field(default=None, repr=False)

    def attr_key(self):
        return tuple(sorted(self.attrs.items()))


class Graph:
    """A typed SSA program: ``inputs`` → ``nodes`` (in order) → ``outputs``."""

    def __init__(self, inputs, nodes, outputs, *, name="f", tuple_output=False):
        self.inputs = list(inputs)
        self.nodes = list(nodes)
        self.outputs = list(outputs)
        self.name = name
        self.tuple_output = tuple_output    # the function returned a tuple (of len(outputs))

    def replace(self, *, nodes=None, outputs=None, name=None):
        """A graph with the same inputs and some parts replaced."""
        return Graph(self.inputs, self.nodes if nodes is None else nodes,
                     self.outputs if outputs is None else outputs, name=name or self.name,
                     tuple_output=self.tuple_output)

    def producers(self):
        """Map each var defined by a node to that node."""
        return {n.out: n for n in self.nodes}

    def uses(self):
        """Map each var to the nodes that read it, in order."""
        users = {}
        for n in self.nodes:
            for v in n.inputs:
                users.setdefault(v, []).append(n)
        return users

    def names(self):
        """Deterministic names: inputs keep theirs; values get a, b, ..., z, a1, b1, ...;
        adjoints ``b_<name>`` (a letter name holds no ``_``, so none reads as an adjoint)."""
        names, taken = {}, set()
        for v in self.inputs:
            names[v] = v.name
            taken.add(v.name)
        letters = letter_names()
        # Scalar constants print as literals; they are named last so they take no letter from
        # the values a reader follows.
        ordered = [n for n in self.nodes if not is_scalar_literal(n)]
        ordered += [n for n in self.nodes if is_scalar_literal(n)]
        for n in ordered:
            v = n.out
            if v in names:
                continue
            hint = None
            if v.adjoint_of is not None and v.adjoint_of in names:
                hint = "b_" + names[v.adjoint_of]
            elif v.name:
                hint = v.name
            if hint is None or hint in taken:
                hint = next(x for x in letters if x not in taken)
            names[v] = hint
            taken.add(hint)
        return names

    def format(self, *, lines=False, inline_scalars=True):
        """The readable listing; ``lines=True`` appends each statement's source line."""
        names = self.names()
        inline = {n.out for n in self.nodes if inline_scalars and is_scalar_literal(n)}
        ref = self.operand_names(names) if inline_scalars else (lambda v: names.get(v, "?"))

        out = ["{ lambda " + ", ".join(f"{names[v]}:{v.type}" for v in self.inputs) + " ."]
        for n in self.nodes:
            if n.out in inline:
                continue
            stmt = "  " + format_statement(n, names, ref=ref)
            if lines and n.loc is not None:
                stmt = f"{stmt:<48}  # {n.loc}"
            out.append(stmt)
        out.append("  in (" + ", ".join(ref(v) for v in self.outputs) + ") }")
        return "\n".join(out)

    def operand_names(self, names=None):
        """``ref(var)``: an operand as the printer spells it, its name (``?`` for a value the
        graph does not hold), or for a scalar constant its value."""
        names = self.names() if names is None else names
        constants = {n.out: repr(n.attrs["value"]) for n in self.nodes if is_scalar_literal(n)}

        def ref(v):
            return constants[v] if v in constants else names.get(v, "?")
        return ref

    def __str__(self):
        return self.format()

    def __repr__(self):
        return f"<Graph {self.name}: {len(self.inputs)} inputs, {len(self.nodes)} nodes>"

    def structural_hash(self):
        """A sha256 of the graph's content: its listing with every constant in full."""
        h = hashlib.sha256(self.format(inline_scalars=False).encode())
        for n in self.nodes:
            for v in n.attrs.values():
                if isinstance(v, Literal):
                    h.update(repr(v._key).encode())
        return h.hexdigest()

    def input_index(self):
        return {v: i for i, v in enumerate(self.inputs)}


def is_scalar_literal(node):
    """Whether ``node`` defines a 0-d constant, which printers write as a number."""
    return REGISTRY[node.prim].literal and node.out.ndim == 0


def format_statement(node, names, *, ref=None, types=True):
    """One statement as the IR printer writes it: ``c:f64[3] = reduce_sum[axes=(1,)] b``.

    The one spelling of a statement, shared by the printer, the comments of the generated C,
    ``check`` and ``inspect``. ``names`` maps vars to names (``Graph.names()``); ``ref(var)``
    spells an operand (default: its name, ``?`` for a value the graph no longer holds);
    ``types=False`` leaves out the result's type (``c = sin a``). A result missing from
    ``names`` (a forward statement the optimizer folded away) is called ``(folded)``.
    """
    if ref is None:
        def ref(v):
            return names.get(v, "?")
    target = names.get(node.out, "(folded)")
    if types:
        target = f"{target}:{node.out.type}"
    stmt = f"{target} = {format_operation(node)}"
    if node.inputs:
        stmt += " " + " ".join(ref(v) for v in node.inputs)
    return stmt


def format_operation(node):
    """``reduce_sum[axes=(1,)]``: a statement's primitive and its attributes (those not
    False)."""
    attrs = ", ".join(f"{k}={_fmt_attr(v)}" for k, v in sorted(node.attrs.items())
                      if v is not False)
    return f"{node.prim}[{attrs}]" if attrs else node.prim


def _fmt_attr(v):
    if isinstance(v, str):
        return v
    return repr(v)


def letter_names():
    """a, b, ..., z, then a1, b1, ..., z1, a2, ...: never two letters, so no value is called
    ``ba`` beside the adjoint ``b_a``."""
    k = 0
    while True:
        round_, letter = divmod(k, 26)
        yield chr(ord("a") + letter) + (str(round_) if round_ else "")
        k += 1


# --- building graphs ----------------------------------------------------------------------------

class Builder:
    """Collects nodes while a function is traced or a derivative is built."""

    def __init__(self):
        self.nodes = []
        self.loc = None          # when set, new nodes take this location (derivative rules)
        self.grad_of = None      # when set, new nodes are marked as the adjoint of this node
        # While reverse mode is built: the values whose adjoints are needed (a derivative rule
        # may skip the others, as scan's does for the values its body closed over).
        self.active = None

    def add(self, prim, inputs, attrs, out_type, loc=None):
        out = Var(out_type)
        self.nodes.append(Node(prim, tuple(inputs), dict(attrs), out,
                               loc or self.loc or user_location(), self.grad_of))
        return out


_state = threading.local()


def current_builder():
    stack = getattr(_state, "stack", None)
    if not stack:
        return None
    return stack[-1]


def tracing_input(var):
    """Whether ``var`` is an input of a function being traced (``tracing.trace`` records its
    inputs on its builder)."""
    return any(var in getattr(b, "inputs", ()) for b in getattr(_state, "stack", ()))


class building:
    """Context manager: nodes bound inside go to ``builder``."""

    def __init__(self, builder):
        self.builder = builder

    def __enter__(self):
        if not hasattr(_state, "stack"):
            _state.stack = []
        _state.stack.append(self.builder)
        return self.builder

    def __exit__(self, *exc):
        _state.stack.pop()


_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
# NumPy's and SciPy's own Python code run on a traced value (np.full(shape, x) converts x itself)
# is not the user's line either: the error or the statement belongs to the line that called them.
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__)) + os.sep
# A symgrad module that holds functions written *for* tracing (optimizer update rules, the demo's
# losses) sets ``TRACED_AS_USER_CODE = True``: its lines are the user's lines, so the C (and its
# cache key) does not depend on who called them first.
_internal = {}


def _is_internal(frame):
    filename = frame.f_code.co_filename
    known = _internal.get(filename)
    if known is None:
        path = os.path.abspath(filename)
        known = _internal[filename] = (
            (path.startswith(_PACKAGE_DIR) and not frame.f_globals.get("TRACED_AS_USER_CODE"))
            or path.startswith(_NUMPY_DIR) or filename.startswith("<frozen")
            or frame.f_globals.get("__name__", "").split(".")[0] == "scipy")
    return known


def user_location():
    """The innermost frame outside symgrad's machinery: the user's line being traced."""
    frame = sys._getframe(1)
    while frame is not None:
        if not _is_internal(frame):
            return SourceLoc(frame.f_code.co_filename, frame.f_lineno, frame.f_code.co_name)
        frame = frame.f_back
    return None
