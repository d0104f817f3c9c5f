"""Look inside a compiled function: its IR, its adjoint, its C, what it costs.

``report(fn, *args, argnums=0, values=False)`` traces ``fn`` for ``args`` and returns a
``Report``; ``symgrad inspect FILE.py:FUNC --arg ...`` prints one. A report has four views of
the same data:

- ``text()``: the forward IR; the adjoint statements grouped under the forward statement each one
  differentiates (``Node.grad_of``), written Tangent-style (``b_W += b_o * W``); the generated C;
  a cost summary. With ``values=True`` every statement shows the value it computed (the NumPy
  interpreter's, on ``args``).
- ``dot()``: Graphviz source of the forward and adjoint graph (adjoint edges dashed).
- ``html()``: one self-contained page (``templates/report.html.j2``) with the graph drawn by the
  ``dot`` program when it is installed, scaled to fit the window (forward and backward side by
  side; the mouse wheel zooms, dragging pans, a double click fits it again); clicking a node
  highlights its IR and C lines.
- ``_repr_html_()``: the same page body, for notebooks.

The adjoint shown is the one the derivative rules emit, less its dead statements (those run
nowhere), before the other optimizations, because that is the one that reads like the chain
rule; the C is compiled from the optimized graph, whose node counts the cost summary gives.
Names are the graph's own (``Graph.names``: ``a``, ``b``, adjoints ``b_a``); the forward
statements keep the names the value function's C gives them. The page links a line of C to the
values it names through the C renderer's own naming (``module.program_renderers``), so a
value the C renames (``i`` is ``i_`` there) or a temporary the optimizer renumbered still links
to the right node.
"""
from __future__ import annotations

import html as _html
import inspect
import itertools
import os
import re
import shutil
import statistics
import subprocess
import time
import warnings
from dataclasses import dataclass, field

import numpy as np

from symgrad.frontend import autograph
from symgrad.frontend import tracing
from symgrad import templates
from symgrad.api import CompiledFunction
from symgrad.core import dims
from symgrad.core.autodiff import value_and_grad_graph
from symgrad.core.ir import letter_names, is_scalar_literal
from symgrad.core.passes import dce
from symgrad.errors import CompileError
from symgrad.backends.interp import evaluate
from symgrad.backends.c.module import function_c_name, program_renderers, render_program
from symgrad.core.ir import format_operation, format_statement
from symgrad.core.primitive import memory_lines
from symgrad.core.primitives import REGISTRY

GRAPHVIZ_MISSING = ("symgrad inspect: the graph drawing needs Graphviz's `dot` program, which was "
                    "not found on PATH. Install it with `apt-get install graphviz` (Debian, "
                    "Ubuntu), `brew install graphviz` (macOS) or `conda install graphviz`; the "
                    "page was written with the text views and the Graphviz source only.")

_PAGE_NUMBERS = itertools.count(1)    # element ids of several reports in one notebook differ


@dataclass
class Line:
    """One line of a text view; ``ids`` are the IR names it defines or reads (for the page)."""
    text: str
    kind: str = "stmt"            # "stmt" | "comment" | "frame"
    ids: list = field(default_factory=list)


def report(fn, *args, argnums=0, values=False):
    """Inspect ``fn`` (a Python function or ``symgrad.compile`` object) on ``args``.

    ``argnums``: the arguments to differentiate (an int or a tuple), as in ``symgrad.grad``.
    ``values``: also evaluate every statement (in the NumPy interpreter) and show the results.
    Returns a ``Report``. Raises what tracing raises (``TracingError``, ``ShapeError``, ...);
    a failing C compiler is reported in the summary, not raised.
    """
    py_fn = getattr(fn, "fn", fn)
    cf = CompiledFunction(py_fn, argnums=argnums)
    return Report(cf, args, values=values)


def bind_dims(arg_specs, dim_specs):
    """Replace named dimensions in ``--arg NAME=TYPE`` strings by ``--dim NAME=SIZE`` sizes.

    ``bind_dims(["X=f64[N,3]"], ["N=256"]) == ["X=f64[256,3]"]``; names without a ``--dim``
    stay (the argument builder gives them a default size). Raises ValueError for a malformed
    ``--dim``.
    """
    sizes = {}
    for text in dim_specs:
        name, _, size = text.partition("=")
        if not name.strip().isidentifier() or not size.strip().isdigit():
            raise ValueError(f"--dim {text!r}: expected NAME=SIZE, e.g. N=256")
        sizes[name.strip()] = size.strip()

    def bind(m):
        dims = [sizes.get(d.strip(), d.strip()) for d in m.group(1).split(",")]
        return "[" + ",".join(dims) + "]"
    return [re.sub(r"\[([^\]]*)\]", bind, text) if sizes else text for text in arg_specs]


class Report:
    """Everything ``symgrad inspect`` shows about one specialization; see the module docstring."""

    def __init__(self, cf, args, *, values=False):
        self.name = cf.__name__
        self.user_fn = getattr(cf, "fn", None)
        self.timings = {}
        t0 = time.perf_counter()
        spec, arrays = cf.specialize(*args)
        self.timings["trace and optimize"] = time.perf_counter() - t0
        self.spec, self.arrays = spec, arrays
        self.forward = spec.graph
        self.traced = tracing.trace(spec.fn, spec.types, spec.static, name=self.name)
        self.gradable = spec.differentiable
        self.wrt = spec.wrt
        if self.gradable:
            # The derivative rules' statements as they emit them, less the dead ones (a pow's
            # derivative with respect to a constant exponent): the statements that run.
            # stop_gradient stays, so the forward statements keep the names the forward
            # graph (and the C of the value function) gives them.
            self.derived = dce(value_and_grad_graph(self.forward, self.wrt, simplify=False,
                                                    strip=False, has_aux=cf.has_aux))
            self.optimized = spec.value_and_grad_graph()
        else:
            self.derived = self.optimized = None
        shown = self.derived or self.forward
        self.names = shown.names()
        forward_vars = {n.out for n in self.forward.nodes}
        self.adjoint_nodes = [n for n in shown.nodes if n.out not in forward_vars]
        self.values = evaluate(shown, arrays, keep=True)[1] if values else {}

        t0 = time.perf_counter()
        renderers = program_renderers(spec.program(), function_c_name(cf.__name__))
        self.c_functions = [r.render(doc=doc) for r, doc in renderers]
        self.c_source = render_program(spec.program(), self.c_functions).source
        self.timings["render C"] = time.perf_counter() - t0
        self.c_names = {r.name: c_names(r) for r, _ in renderers}
        self.compile_error = None
        self.call_time = None
        t0 = time.perf_counter()
        try:
            executable = spec.executable()
            # The function's library is built (or loaded) when first asked for.
            call = executable.value_and_grad if self.gradable else executable.value
        except (CompileError, OSError) as e:     # no or a failing compiler: show the rest
            self.compile_error = f"{type(e).__name__}: {e}".splitlines()[0]
        else:
            self.timings["compile (or load from cache)"] = time.perf_counter() - t0
            samples = []
            try:
                for _ in range(5):
                    t0 = time.perf_counter()
                    call(arrays)
                    samples.append(time.perf_counter() - t0)
            except (IndexError, ValueError) as e:   # e.g. random labels out of range
                self.compile_error = f"compiled, but the call failed: {type(e).__name__}: {e}"
            else:
                self.call_time = statistics.median(samples)

    # -- naming and formatting -----------------------------------------------------------------

    def _graph(self):
        return self.derived or self.forward

    def _inline(self):
        """Scalar constants print as literals, except the adjoint seed ``d y/d y = 1``."""
        seed = self._seed()
        return {n.out: repr(n.attrs["value"]) for n in self._graph().nodes
                if REGISTRY[n.prim].literal and n.out.ndim == 0 and n.out is not seed}

    def _seed(self):
        if not self.gradable:
            return None
        y = self.forward.outputs[0]
        for n in self.adjoint_nodes:
            if REGISTRY[n.prim].literal and n.out.adjoint_of is y:
                return n.out
        return None

    def _value(self, v):
        if v not in self.values:
            return ""
        return "= " + format_value(self.values[v])

    def ir_statement(self, node, ref):
        """``b:f64[] = mul a z``, as the IR printer writes it."""
        return format_statement(node, self.names, ref=ref)

    def infix(self, node, ref):
        """``a * z``: the statement's right-hand side as an expression (its record's infix
        form, else the call form ``prim[attrs](a, z)``)."""
        operands = [ref(v) for v in node.inputs]
        text = REGISTRY[node.prim].format_infix(operands, node.attrs)
        return text if text is not None else f"{format_operation(node)}({', '.join(operands)})"

    def _where(self, node):
        loc = node.loc
        if loc is None:
            return ""
        text = loc.text
        return f"{loc}  {text}" if text else str(loc)

    # -- the text views ------------------------------------------------------------------------

    def forward_lines(self):
        """The forward IR: one statement per line, with its source line (and value)."""
        inline = self._inline()
        ref = lambda v: inline.get(v, self.names.get(v, "?"))       # noqa: E731
        lines = [Line(f"# forward IR of {self.name}: {len(self.forward.nodes)} statements "
                      f"(optimized; {len(self.traced.nodes)} as traced)", "comment")]
        binders = ", ".join(f"{self.names[v]}:{v.type}" for v in self.forward.inputs)
        lines.append(Line("{ lambda " + binders + " .", "frame",
                          [self.names[v] for v in self.forward.inputs]))
        if self.values:
            for v in self.forward.inputs:
                lines.append(Line(f"  # {self.names[v]} {self._value(v)}", "comment",
                                  [self.names[v]]))
        for n in self.forward.nodes:
            if n.out in inline:
                continue
            stmt = "  " + self.ir_statement(n, ref)
            lines.append(Line(_columns(stmt, self._value(n.out), self._where(n)), "stmt",
                              self._ids(n)))
        lines.append(Line("  in (" + ", ".join(ref(v) for v in self.forward.outputs) + ") }",
                          "frame", [ref(v) for v in self.forward.outputs]))
        return lines

    def adjoint_lines(self):
        """The adjoint, grouped under the forward statement each block differentiates.

        Written Tangent-style: a statement adding a contribution to an adjoint reads
        ``b_x += ...`` and a one-use contribution computed just before it is folded into it.
        """
        if not self.gradable:
            out = self.forward.outputs
            return [Line(f"# no adjoint: {self.name} returns "
                         f"{', '.join(str(v.type) for v in out)}, not one scalar float",
                         "comment")]
        inline = self._inline()
        display, accumulate, folded = self._tangent_names(inline)
        seed = self._seed()

        def ref(v):
            if v in inline:
                return inline[v]
            if v in folded:
                return f"({self.infix(folded[v], ref)})" if \
                    REGISTRY[folded[v].prim].infix is not None else self.infix(folded[v], ref)
            return display.get(v, self.names.get(v, "?"))

        def plain(v):
            return inline.get(v, self.names.get(v, "?"))

        wrt = ", ".join(self.names[self.forward.inputs[i]] for i in self.wrt)
        lines = [Line(f"# adjoint IR (reverse mode, d {self.names[self.forward.outputs[0]]} / d "
                      f"{wrt}): {len(self.adjoint_nodes)} statements as the derivative rules "
                      f"emit them, dead ones dropped; "
                      f"{len(self.optimized.nodes) - len(self.forward.nodes)} after "
                      f"optimization", "comment")]
        group = object()
        for n in self.adjoint_nodes:
            if n.out in inline or n.out in folded:
                continue
            if n.out is seed:
                y = self.forward.outputs[0]
                lines.append(Line(_columns(f"  {self.names[n.out]}:{n.out.type} = "
                                           f"{repr(n.attrs['value'])}", self._value(n.out),
                                           f"seed: d {self.names[y]} / d {self.names[y]}"),
                                  "stmt", [self.names[n.out]]))
                continue
            if n.grad_of is not group:
                group = n.grad_of
                lines.append(Line(self._header(group), "comment",
                                  [self.names[group.out]] if group is not None else []))
            target = display.get(n.out, self.names[n.out])
            if n in accumulate:
                rhs = ref(n.inputs[1])
                if rhs.startswith("(") and rhs.endswith(")"):
                    rhs = rhs[1:-1]
                stmt = f"{target} {REGISTRY[n.prim].accumulate} {rhs}"
            else:
                stmt = f"{target}:{n.out.type} = {self.infix(n, ref)}"
            why = ""
            if n.grad_of is not None:
                fwd = n.grad_of
                why = f"{self.names[fwd.out]} = {self.infix(fwd, plain)}"
                why = f"{why}   {fwd.loc}" if fwd.loc is not None else why
            ids = self._ids(n) + [self.names[f.out] for f in folded_chain(n, folded)]
            lines.append(Line(_columns("  " + stmt, self._value(n.out), why), "stmt", ids))
        grads = []
        for k, v in zip(self.wrt, self.derived.outputs[1:]):
            x = self.names[self.forward.inputs[k]]
            grads.append(f"d/d{x} = {display.get(v, ref(v))}"
                         + (f" {self._value(v)}" if self.values else ""))
        lines.append(Line("# gradient: " + "; ".join(grads), "frame",
                          [self.names.get(v, "?") for v in self.derived.outputs[1:]]))
        return lines

    def _header(self, fwd):
        if fwd is None:
            return "# not from a forward statement (zero gradients of unused inputs)"
        inline = self._inline()
        stmt = format_statement(fwd, self.names, types=False,
                                ref=lambda v: inline.get(v, self.names.get(v, "?")))
        return f"# grad of: {stmt}   ({self._where(fwd)})"

    def _tangent_names(self, inline):
        """Which adjoint statements accumulate (``+=``), and under which name.

        An ``add`` (a primitive whose record says how it ``accumulate``s) emitted by a
        derivative rule whose first operand is a partial sum used only there continues that
        sum: the partial takes the sum's name and the add reads ``+=``.
        Its second operand, when computed just before it and used only there, is folded in.
        """
        graph = self.derived
        uses = graph.uses()
        producers = graph.producers()
        outputs = set(graph.outputs)
        adjoint = {n.out for n in self.adjoint_nodes}
        display, accumulate, folded = {}, set(), {}
        order = {n: i for i, n in enumerate(self.adjoint_nodes)}
        for n in reversed(self.adjoint_nodes):
            if REGISTRY[n.prim].accumulate is None or n.grad_of is None:
                continue
            partial, contribution = n.inputs
            if (partial in adjoint and partial not in inline and partial.adjoint_of is None
                    and partial not in outputs and len(uses.get(partial, [])) == 1):
                display[partial] = display.get(n.out, self.names[n.out])
                accumulate.add(n)
                c = producers.get(contribution)
                if (c is not None and contribution in adjoint and contribution not in outputs
                        and contribution.adjoint_of is None and c.grad_of is n.grad_of
                        and len(uses.get(contribution, [])) == 1 and contribution is not partial
                        and order.get(c, -2) == order[n] - 1 and contribution not in inline):
                    folded[contribution] = c
        return display, accumulate, folded

    def _ids(self, node):
        return [self.names[node.out]] + [self.names[v] for v in node.inputs if v in self.names]

    def c_lines(self):
        return [Line(t, "c") for t in self.c_source.rstrip("\n").split("\n")]

    def summary_lines(self):
        fwd, opt = self.forward, self.optimized
        lines = ["# cost summary"]
        counts = f"forward {len(self.traced.nodes)} traced -> {len(fwd.nodes)} optimized"
        if self.gradable:
            counts += (f"; value-and-gradient {len(self.derived.nodes)} derived -> "
                       f"{len(opt.nodes)} optimized")
        lines.append("nodes: " + counts)
        graphs = [("value", fwd)] + ([("value-and-gradient", opt)] if self.gradable else [])
        lines.append("FLOPs (estimate): " + "; ".join(
            f"{label} {_number(sum(flops(n) for n in g.nodes))}" for label, g in graphs))
        lines.append("temporaries (arrays neither input nor output): " + "; ".join(
            f"{label} {_bytes(temporary_bytes(g))}" for label, g in graphs))
        workspace = [fn for fn in self.c_functions if fn.workspace_bytes]
        if workspace:
            lines.append("C workspace per call: " + "; ".join(map(_workspace, workspace)))
        counted = re.findall(r"(_ws_counted\d+)_block = \(char \*\)malloc\((.+)\);$",
                             self.c_source, re.MULTILINE)
        if counted:
            lines.append("C arrays sized by a while loop's count, allocated once it is known: "
                         + "; ".join(f"{b} bytes" for _, b in counted))
        for label, g in graphs:
            tapes = memory_lines(g)
            if tapes:
                lines.append(f"loops ({label}):")
                lines += ["  " + t for t in tapes]
        lines.append("time: " + "; ".join(f"{k} {v * 1e3:.1f} ms" for k, v in self.timings.items()))
        if self.compile_error:
            lines.append(self.compile_error if self.compile_error.startswith("compiled")
                         else f"not compiled: {self.compile_error}")
        elif self.call_time is not None:
            what = "value_and_grad" if self.gradable else "value"
            lines.append(f"call ({what}, native, median of 5): {self.call_time * 1e3:.3f} ms")
        g = opt if self.gradable else fwd
        names = g.names()
        costly = [n for n in g.nodes if flops(n) != 0]
        lines.append(f"FLOPs per statement ({'value-and-gradient' if self.gradable else 'value'}, "
                     f"optimized):")
        for n in costly[:40]:
            lines.append(f"  {names[n.out]:>6} {n.prim:<16} {_number(flops(n)):>12}   "
                         f"{n.loc if n.loc is not None else ''}")
        if len(costly) > 40:
            lines.append(f"  ... {len(costly) - 40} more")
        return [Line(t, "comment") for t in lines]

    def tangent_lines(self):
        """Forward mode: the statements the tangent rules emit (dead ones dropped), grouped under
        the forward statement each differentiates. A value of the forward IR keeps its name
        there; the tangent of a value ``a`` is ``t_a``, as the tangent of an input ``x`` is
        ``t_x``. With ``values``, the tangents are evaluated along t = 1 for every
        differentiated input."""
        from symgrad.core.autodiff import emit_jvp
        from symgrad.core.ir import Builder, Graph, Var, building
        fwd = self.forward
        if any(not fwd.inputs[i].type.is_float for i in self.wrt):
            return [Line("# no tangent IR: an integer argument cannot be perturbed", "comment")]
        tangent_inputs = [Var(fwd.inputs[i].type, name=f"t_{fwd.inputs[i].name}")
                          for i in self.wrt]
        record, builder = {}, Builder()
        with building(builder):
            outs, t_outs = emit_jvp(fwd, fwd.inputs, dict(zip(self.wrt, tangent_inputs)),
                                    record=record)
        graph = dce(Graph(fwd.inputs + tangent_inputs, builder.nodes, outs + t_outs,
                          name=f"jvp_{fwd.name}", tuple_output=True))
        # The copies of the forward statements keep their forward names, a tangent is named
        # after the value it perturbs, and the rules' temporaries take letters no other
        # listing uses.
        names = {v: v.name for v in graph.inputs}
        copies = {}
        for n, (copy, t) in record.items():
            names[copy] = self.names[n.out]
            copies[copy] = n
            if t is not None and t not in names:
                names[t] = f"t_{self.names[n.out]}"
        taken = set(names.values()) | set(self.names.values())
        letters = (x for x in letter_names() if x not in taken)
        for n in graph.nodes:
            if n.out not in names:
                names[n.out] = next(letters)
        values = {}
        if self.values:
            ones = [np.ones(v.shape, dtype=v.dtype) for v in tangent_inputs]
            values = evaluate(graph, list(self.arrays) + ones, keep=True)[1]
        producers = graph.producers()

        def ref(v):
            n = producers.get(v)
            if n is not None and REGISTRY[n.prim].literal and v.ndim == 0:
                return repr(n.attrs["value"])
            return names.get(v, "?")

        live = set(producers)
        body, of = [], None
        for n in builder.nodes:
            if n.out in copies:
                of = copies[n.out]
                continue
            if n.out not in live or is_scalar_literal(n):
                continue
            if of is not None:
                where = f"   ({self._where(of)})" if of.loc is not None else ""
                body.append(Line(f"# tangent of: {self.names[of.out]} = "
                                 f"{self.infix(of, self._plain_ref())}{where}", "comment"))
                of = None
            stmt = f"  {names[n.out]}:{n.out.type} = {self.infix(n, ref)}"
            shown = format_value(values[n.out]) if n.out in values else ""
            # No ids: a line here links to nothing on the page (its tangents are its own).
            body.append(Line(_columns(stmt, f"= {shown}" if shown else "", ""), "stmt"))
        along = ", ".join(names[v] for v in tangent_inputs)
        count = sum(1 for line in body if line.kind == "stmt")
        head = Line(f"# tangent IR (forward mode, along {along}): {count} statements as the "
                    f"tangent rules emit them, dead ones dropped", "comment")
        tail = Line("# tangent of the result: " + ", ".join(
            ref(v) + (f" = {format_value(values[v])}" if v in values else "")
            for v in graph.outputs[len(fwd.outputs):]), "frame")
        return [head, *body, tail]

    def _plain_ref(self):
        inline = self._inline()
        return lambda v: inline.get(v, self.names.get(v, "?"))

    def converted_rows(self):
        """The user's function beside its converted source (docs/python_code.md), when the
        conversion changed its control flow or in-place updates; else []. Rows of (line
        number or None, original line, converted line): each converted line sits beside the
        line of the user's it came from (a loop's body function at the loop's line, the call
        that runs the loop below it)."""
        if not self.user_fn:
            return []
        converted = autograph.converted_lines(self.user_fn)
        if converted is None or not any(f"_sg.{k}(" in text for _, text in converted for k in (
                "if_stmt", "for_stmt", "while_stmt", "setitem", "setitem_aug", "iop",
                "ufunc_at", "ifexp", "and_", "or_", "not_")):
            return []
        original, first = inspect.getsourcelines(self.user_fn)
        original = [t.rstrip("\n") for t in original]
        rows, shown = [], first             # shown: the next original line to show
        for line, text in converted:
            if not text.strip():
                continue                # ast.unparse's blank lines around local functions
            if line is not None and line >= shown:
                while shown < line:
                    rows.append((shown, original[shown - first], ""))
                    shown += 1
                rows.append((line, original[line - first] if line - first < len(original)
                             else "", text))
                shown = line + 1
            else:
                rows.append((None, "", text))
        rows += [(k, original[k - first], "") for k in range(shown, first + len(original))]
        return rows

    def converted_lines(self):
        """The text of ``converted_rows``: the original on the left (with its line numbers),
        the converted code on the right."""
        rows = self.converted_rows()
        if not rows:
            return []
        where_ = f"{os.path.basename(self.user_fn.__code__.co_filename)}:{rows[0][0]}"
        width = max(max(len(left) for _, left, _ in rows), len(f"# original ({where_})"))
        head = f"{'':6}{'# original (' + where_ + ')':<{width}} | # converted (what is traced; " \
               f"_sg is symgrad.frontend.autograph)"
        lines = [Line(head, "comment")]
        for number, left, right in rows:
            lines.append(Line(f"{number if number is not None else '':>4}  {left:<{width}} | "
                              f"{right}".rstrip()))
        return lines

    def sections(self):
        """(title, lines) of each text view, in order."""
        converted = self.converted_lines()
        return ([("converted source", converted)] if converted else []) + [
                ("forward IR", self.forward_lines()), ("adjoint IR", self.adjoint_lines()),
                ("tangent IR", self.tangent_lines()), ("generated C", self.c_lines()),
                ("cost", self.summary_lines())]

    def text(self):
        """The plain-text report ``symgrad inspect`` prints."""
        parts = []
        for title, lines in self.sections():
            body = "\n".join(line.text for line in lines)
            parts.append(f"# ---- generated C ----\n{body}" if title == "generated C" else body)
        return "\n\n".join(parts) + "\n"

    def __str__(self):
        return self.text()

    # -- Graphviz ------------------------------------------------------------------------------

    def dot(self):
        """Graphviz source: the forward graph and the adjoint graph as two clusters side by side
        (each ranked top to bottom, so a long function is two columns, not one tall chain);
        forward edges solid, adjoint ones dashed and orange. An adjoint statement's edge from
        a forward value does not rank it below that value (``constraint=false``): otherwise
        the backward pass would hang below the whole forward one."""
        graph = self._graph()
        inline = self._inline()
        adjoint = {n.out for n in self.adjoint_nodes}
        outputs = set(graph.outputs)
        out = [f'digraph "{_dot_escape(self.name)}" {{',
               '  rankdir=TB; newrank=true; nodesep=0.2; ranksep=0.3; '
               'fontname="Helvetica"; fontsize=11;',
               '  node [shape=box, style="rounded,filled", fillcolor="#eef3fb", '
               'fontname="Helvetica", fontsize=10, margin="0.08,0.03"]; edge [color="#555555"];']
        nodes = {"forward": [], "backward": []}
        edges = []
        for v in graph.inputs:
            label = f"{self.names[v]}\\n{v.type}"
            if v in self.values:
                label += f"\\n{_dot_escape(format_value(self.values[v]))}"
            nodes["forward"].append(f'    "{self.names[v]}" [id="node_{self.names[v]}", '
                                    f'shape=ellipse, fillcolor="#dff0d8", label="{label}"];')
        y = self.names[self.forward.outputs[0]]
        plain = self._plain_ref()
        for n in graph.nodes:
            if n.out in inline:
                continue
            name = self.names[n.out]
            label = f"{_dot_escape(self._label(n, plain))}\\n{n.out.type}"
            if n.out in self.values:
                # An adjoint is the derivative of the result with respect to the value it is
                # the adjoint of; any other statement (forward or adjoint) is just its value.
                what = (f"d{y}/d{self.names[n.out.adjoint_of]} " if self.gradable
                        and n.out.adjoint_of in self.names else "")
                label += f"\\n{_dot_escape(what)}= {_dot_escape(format_value(self.values[n.out]))}"
            style = 'fillcolor="#fdebd0", color="#d9480f"' if n.out in adjoint else ""
            periph = ", peripheries=2" if n.out in outputs else ""
            nodes["backward" if n.out in adjoint else "forward"].append(
                f'    "{name}" [id="node_{name}", label="{label}"'
                f'{", " + style if style else ""}{periph}];')
            for v in n.inputs:
                if v in inline:
                    continue
                if n.out not in adjoint:
                    edge = "style=solid"
                elif v in adjoint:
                    edge = 'style=dashed, color="#d9480f"'
                else:                      # a forward value read by the backward pass
                    edge = 'style=dashed, color="#e8a27c", constraint=false'
                edges.append(f'  "{self.names[v]}" -> "{name}" [{edge}];')
        titles = {"forward": "forward", "backward": "backward (adjoint)"}
        for part, lines in nodes.items():
            if lines:
                out += [f'  subgraph cluster_{part} {{',
                        f'    label="{titles[part]}"; labeljust=l; style="rounded,dashed"; '
                        f'color="#bbbbbb";', *lines, "  }"]
        out += edges
        out.append("}")
        return "\n".join(out) + "\n"

    def _label(self, node, ref, width=32):
        """``b_z = b_a * e``: what a node of the drawing computes, by its listing's name; a long
        expression falls back to the primitive's name and attributes."""
        name = self.names[node.out]
        if node.out is self._seed():
            return f"{name} = {repr(node.attrs['value'])}"
        text = self.infix(node, ref)
        if len(text) > width:
            text = format_operation(node)
            if len(text) > width:
                text = node.prim
        return f"{name} = {text}"

    def svg(self):
        """The graph as SVG text from ``dot -Tsvg``, or None when Graphviz is not installed."""
        exe = shutil.which("dot")
        if exe is None:
            return None
        try:
            done = subprocess.run([exe, "-Tsvg"], input=self.dot(), capture_output=True,
                                  text=True, timeout=60, check=True)
        except (subprocess.SubprocessError, OSError) as e:
            warnings.warn(f"symgrad inspect: `dot -Tsvg` failed ({e}); the page has no drawing",
                          RuntimeWarning, stacklevel=2)
            return None
        svg = done.stdout
        return svg[svg.find("<svg"):] if "<svg" in svg else None

    @staticmethod
    def _scalable(svg):
        """``(svg, width px, height px)``: the drawing without its fixed size, so the page
        scales it to its box (the viewBox keeps the proportions), and its natural size, which
        the box never exceeds (a small graph is not blown up)."""
        m = re.match(r'<svg\s[^>]*?width="([\d.]+)pt"\s+height="([\d.]+)pt"', svg)
        if m is None:
            return svg, None, None
        width, height = (float(x) * 4 / 3 for x in m.groups())      # points to CSS pixels
        head, rest = svg.split(">", 1)
        head = re.sub(r'\s(width|height)="[^"]*"', "", head)
        return f"{head}>{rest}", round(width), round(height)

    # -- HTML ----------------------------------------------------------------------------------

    def html(self, *, standalone=True):
        """One self-contained page (inline CSS and JS, nothing loaded from the network).

        Warns (``RuntimeWarning``, with how to install it) when Graphviz's ``dot`` is missing;
        the page then has the text views and the Graphviz source only.
        """
        svg = self.svg()
        if svg is None and shutil.which("dot") is None:
            warnings.warn(GRAPHVIZ_MISSING, RuntimeWarning, stacklevel=2)
        svg, svg_width, svg_height = self._scalable(svg) if svg else (None, None, None)
        sections = []
        for title, lines in self.sections():
            if title == "converted source":
                rows = [{"number": "" if n is None else n, "left": _html.escape(left),
                         "right": _html.escape(right)} for n, left, right in
                        self.converted_rows()]
                sections.append({"title": title, "columns": rows,
                                 "where": os.path.basename(self.user_fn.__code__.co_filename)})
                continue
            if title == "generated C":
                texts = [line.text for line in lines]
                marked = highlight_c(texts, self._c_links(texts))
            else:
                marked = [(highlight_ir(line.text), line.ids) for line in lines]
            rows = [{"html": markup, "ids": " ".join(dict.fromkeys(ids)), "kind": line.kind}
                    for line, (markup, ids) in zip(lines, marked)]
            sections.append({"title": title, "rows": rows})
        uid = f"symgrad-report-{next(_PAGE_NUMBERS)}"
        return templates.render("report.html.j2",
            standalone=standalone, uid=uid, title=f"symgrad inspect: {self.name}",
            name=self.name, signature=", ".join(f"{self.names[v]}: {v.type}"
                                                 for v in self.forward.inputs),
            svg=svg, svg_width=svg_width, svg_height=svg_height,
            missing=None if svg is not None else GRAPHVIZ_MISSING,
            dot_source=self.dot(), sections=sections)

    def _repr_html_(self):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return self.html(standalone=False)

    def page_id(self, v):
        """The id of value ``v`` on the page: its name in the listings (a value only the
        optimized graph has gets an id of its own)."""
        if v in self.names:
            return self.names[v]
        extra = self.__dict__.setdefault("_extra_ids", {})
        return extra.setdefault(v, f"opt-{len(extra)}")

    def _c_links(self, lines):
        """For each line of the C, {C identifier: page id} of the function it is in: the C
        renderer's own names for the values it declares (variables, parameters, outputs)."""
        links, scope = [], {}
        for text in lines:
            m = re.match(r"int (\w+)\(", text)
            if m:
                scope = {c: self.page_id(v) for c, v in self.c_names.get(m.group(1), {}).items()}
            links.append(scope)
        return links


def c_names(renderer):
    """``{C identifier: value}`` of one rendered C function (``FunctionRenderer`` after
    ``render``): the variable, parameter or output parameter that holds each value, as the
    renderer named it. A view's buffer is named once, for the value that owns it."""
    out = {}
    for v, c in renderer.storage.items():
        if c.kind != "literal" and v not in renderer.aliases and re.fullmatch(r"\w+", c.name):
            out.setdefault(c.name, v)
    return out


def folded_chain(node, folded):
    """The contributions folded into ``node``'s ``+=`` line (their names link to it too)."""
    return [folded[v] for v in node.inputs if v in folded]


# --- cost model ---------------------------------------------------------------------------------

def _number(n):
    """A count with thousands separators, or the expression of run-time sizes it is (a while
    loop's count, known only when the function runs)."""
    return f"{n:,}" if isinstance(n, int) else str(n)


def flops(node):
    """Floating-point operations of one statement (an estimate, the usual conventions).

    Elementwise: one per output element; matmul: 2*M*N*K per batch; reductions: one per input
    element; data movement (reshape, gather, ...): none. Each record states its own
    (``Primitive.flops``).
    """
    return REGISTRY[node.prim].flops(node)


def temporary_bytes(graph):
    """Bytes of the arrays a graph computes that are neither its inputs nor its outputs."""
    ends = set(graph.inputs) | set(graph.outputs)
    return sum(n.out.type.size * np.dtype(n.out.dtype).itemsize for n in graph.nodes
               if n.out.ndim > 0 and n.out not in ends)


def _workspace(fn):
    """A C function's workspace, as the cost summary says it: its size and where it lives."""
    size = (_bytes(fn.workspace_size) if dims.is_static(fn.workspace_size)
            else f"{fn.workspace_bytes} bytes")
    where = "on the stack" if fn.workspace_on_stack else "a block kept between calls"
    return f"{fn.name} {size} ({where})"


def _bytes(n):
    if not isinstance(n, (int, float, np.integer)):
        return f"{n} bytes"         # of run-time sizes (a while loop's count)
    for unit in ("B", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


# --- formatting helpers -------------------------------------------------------------------------

def format_value(a, width=40):
    """A value for a listing: ``-12`` for a scalar, a shortened array otherwise."""
    a = np.asarray(a)
    if a.ndim == 0:
        v = a.item()
        if isinstance(v, (bool, np.bool_)):
            return "true" if v else "false"
        return f"{v:.6g}" if isinstance(v, float) else str(v)
    text = np.array2string(a, precision=4, threshold=6, edgeitems=2, separator=", ",
                           max_line_width=10**6)
    text = re.sub(r"\s+", " ", text)
    return text if len(text) <= width else text[:width - 3] + "..."


def _columns(stmt, value, comment):
    """``stmt  = value  # comment`` with aligned columns."""
    line = f"{stmt:<44}"
    if value:
        line += f"  {value:<14}"
    if comment:
        line += f"  # {comment}"
    return line.rstrip()


def _dot_escape(s):
    return str(s).replace("\\", "\\\\").replace('"', '\\"')


# --- syntax highlighting (a few regexes, no dependency) -----------------------------------------

_IR_TOKENS = re.compile(r"(?P<comment>#.*$)|(?P<type>\b(?:f64|f32|i64|i32|bool|c128|c64)\[[^\]]*\])"
                        r"|(?P<num>(?<![\w.])-?\d+(?:\.\d*)?(?:e[-+]?\d+)?)|(?P<ident>[A-Za-z_]\w*)"
                        r"|(?P<other>.)", re.S)
_C_TOKENS = re.compile(r"(?P<comment>/\*.*?(?:\*/|$)|//.*$)|(?P<pre>^\s*#\s*\w+)"
                       r"|(?P<num>\b\d+(?:\.\d*)?(?:[eE][-+]?\d+)?\b)|(?P<ident>[A-Za-z_]\w*)"
                       r"|(?P<other>.)", re.S)
_C_KEYWORDS = set("""auto break case char const continue default do double else enum extern float
for goto if inline int long register restrict return short signed sizeof static struct switch
typedef union unsigned void volatile while bool int64_t int32_t size_t""".split())


def _span(cls, text):
    return f'<span class="{cls}">{_html.escape(text)}</span>'


def highlight_ir(text):
    """HTML of one IR line: comments, types, numbers and primitive names marked."""
    out = []
    for m in _IR_TOKENS.finditer(text):
        kind, tok = m.lastgroup, m.group()
        if kind in ("comment", "type", "num"):
            out.append(_span({"comment": "cm", "type": "ty", "num": "nu"}[kind], tok))
        elif (kind == "ident" and tok in REGISTRY
              and (text[:m.start()].rstrip().endswith("=") or text[m.end():m.end() + 1] in "[(")):
            out.append(_span("kw", tok))
        else:
            out.append(_html.escape(tok))
    return "".join(out)


def highlight_c(lines, linkable):
    """HTML of C lines, each with the page ids of the values it mentions outside comments.

    ``linkable``: the C identifiers that name values, as a set (each its own id), a dict
    ``{identifier: id}``, or a list of such dicts, one per line (each C function names its
    values its own way). Block comments may span lines."""
    if not isinstance(linkable, list):
        linkable = [linkable] * len(lines)
    linkable = [links if isinstance(links, dict) else {t: t for t in links}
                for links in linkable]
    rendered, in_comment = [], False
    for text, links in zip(lines, linkable):
        ids, out, rest = [], [], text
        if in_comment:
            end = rest.find("*/")
            if end < 0:
                rendered.append((_span("cm", rest), ids))
                continue
            out.append(_span("cm", rest[:end + 2]))
            rest, in_comment = rest[end + 2:], False
        for m in _C_TOKENS.finditer(rest):
            kind, tok = m.lastgroup, m.group()
            if kind == "comment":
                out.append(_span("cm", tok))
                in_comment = tok.startswith("/*") and not tok.endswith("*/")
            elif kind in ("pre", "num"):
                out.append(_span("kw" if kind == "pre" else "nu", tok))
            elif kind == "ident" and tok in _C_KEYWORDS:
                out.append(_span("kw", tok))
            elif kind == "ident" and tok in links:
                ids.append(links[tok])
                out.append(_span("id", tok))
            else:
                out.append(_html.escape(tok))
        rendered.append(("".join(out), ids))
    return rendered
