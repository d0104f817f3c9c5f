"""``check_grad``: a compiled gradient against three independent references.

1. the NumPy interpreter running the same adjoint graph (catches backend bugs),
2. central finite differences of the forward graph (catches derivative-rule bugs), at steps h and
   2h: each entry is compared with the Richardson extrapolate and may differ by that entry's
   estimated truncation and rounding error on top of the tolerance (a steep smooth function
   defeats a fixed tolerance on central differences while its gradient is exact),
3. the complex step on the forward graph (the same, with no cancellation: ~1e-15), held to the
   plain tolerance.

When the C gradient disagrees with the interpreter, the report also names the first statement
of the adjoint graph whose C value differs from the interpreter's (``divergence``): the graph is
compiled once more with every value as an output, and the two are compared statement by
statement.

A function with complex values (complex arguments or intermediates) has a gradient in JAX's
convention, df/dx - i df/dy for each complex entry z = x + iy (docs/complex.md): central
differences then step the real and the imaginary parts separately. The complex step is not defined
for such a function (it would need a second imaginary unit), so it is skipped, and the report
says so in a note.

The references evaluate the forward graph in float64/complex128 even for a float32 function, so
they measure float32's rounding, not their own. Large arguments are checked on a random sample of
coordinates plus one random direction (``max_coords``), which keeps a 3073x10 weight cheap.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from symgrad import numerical
from symgrad.core.ir import Graph, format_statement
from symgrad.errors import GradientCheckError
from symgrad.backends.interp import evaluate
from symgrad.core.primitives import REGISTRY
from symgrad.core.types import TensorType
from symgrad.tree_util import tree_leaves

F32_RTOL = 2e-3   # float32 keeps ~7 digits; sums of thousands of terms lose a few more


@dataclass
class Comparison:
    method: str
    argument: str
    max_abs: float
    max_rel: float
    ok: bool
    worst: list = field(default_factory=list)   # (index, gradient, reference) of the worst entries
    # central differences only: the largest error estimate of the reference itself that an entry
    # was allowed on top of atol + rtol * scale (see _central)
    allowance: float = 0.0
    scale: float = 0.0          # the largest finite |reference|, which rtol is relative to


@dataclass
class GradCheckReport:
    """What ``check_grad`` found: one Comparison per (method, argument)."""
    function: str
    value: float
    comparisons: list
    rtol: float
    atol: float
    divergence: str | None = None     # C vs interpreter: the first statement that differs
    notes: list = field(default_factory=list)   # what the reader needs to read the numbers

    @property
    def ok(self):
        return all(c.ok for c in self.comparisons)

    def errors(self, method):
        """The largest relative error of ``method`` over all arguments."""
        return max(c.max_rel for c in self.comparisons if c.method == method)

    def __str__(self):
        lines = [f"gradient check of {self.function}: value {self.value:.10g}  "
                 f"({'ok' if self.ok else 'MISMATCH'}; rtol {self.rtol:g}, atol {self.atol:g})",
                 f"  {'method':<14} {'argument':<12} {'max abs err':>12} {'max rel err':>12}  "]
        for c in self.comparisons:
            widened = f" (reference error est. {c.allowance:.1e})" if c.allowance else ""
            lines.append(f"  {c.method:<14} {c.argument:<12} {c.max_abs:12.3e} {c.max_rel:12.3e}  "
                         f"{'ok' if c.ok else 'FAIL'}{widened}")
        for c in self.comparisons:
            if not c.ok:
                lines.append(f"  {c.method} vs gradient of {c.argument}, worst entries:")
                lines.append(f"    {'index':<14} {'gradient':>22} {'reference':>22}")
                for idx, a, b in c.worst:
                    lines.append(f"    {str(idx):<14} {_number(a)} {_number(b)}")
        if self.divergence:
            lines.append("  " + self.divergence)
        lines += ["  note: " + note for note in self.notes]
        return "\n".join(lines)

    def _repr_pretty_(self, p, cycle):
        p.text(str(self))


def _compare(method, name, grad, ref, rtol, atol, index=None, shape=None, error=None):
    """One comparison: ok when max|grad - ref| <= atol + rtol * max|ref| entry by entry, where
    an entry may also differ by ``error``, the reference's own estimated error at that entry
    (central differences: see _central)."""
    complex_ = np.iscomplexobj(grad) or np.iscomplexobj(ref)
    kind = np.complex128 if complex_ else np.float64
    grad = np.asarray(grad, dtype=kind).ravel()
    ref = np.asarray(ref, dtype=kind).ravel()
    # NaN where both have NaN, and the same infinity, agree: the entries are the same.
    same = _same_nonfinite(grad, ref) if not complex_ else \
        _same_nonfinite(grad.real, ref.real) & _same_nonfinite(grad.imag, ref.imag)
    with np.errstate(invalid="ignore"):
        diff = np.where(same, 0.0, np.abs(grad - ref))
    scale = float(np.max(np.abs(ref[np.isfinite(ref)]), initial=0.0))
    max_abs = float(np.max(diff, initial=0.0))
    max_rel = max_abs / scale if scale > 0 else max_abs
    error = np.zeros(diff.shape) if error is None else \
        np.nan_to_num(np.broadcast_to(np.asarray(error, dtype=np.float64).ravel(), diff.shape),
                      nan=0.0)
    with np.errstate(invalid="ignore"):
        excess = diff - error             # how far past the reference's own error an entry is
    ok = bool(np.all(same | (np.isfinite(grad) & np.isfinite(ref)))) and \
        bool(np.all(excess <= atol + rtol * scale))
    order = np.argsort(-np.nan_to_num(excess, nan=np.inf))[:5]
    index = np.arange(grad.size) if index is None else index
    def position(flat):       # (i, j) for a matrix; a plain index for a vector
        if shape is None or len(shape) <= 1:
            return int(flat)
        return tuple(int(i) for i in np.unravel_index(flat, shape))
    number = complex if complex_ else float
    worst = [(position(index[k]), number(grad[k]), number(ref[k])) for k in order]
    return Comparison(method, name, max_abs, max_rel, ok, worst,
                      float(np.max(error, initial=0.0)), scale)


def _number(v):
    """A gradient entry for the report: 22 characters for a real one, more for a complex one."""
    return f"{v:22.15g}" if not isinstance(v, complex) else f"{v:.15g}".rjust(44)


def _same_nonfinite(a, b):
    """Where ``a`` and ``b`` are both NaN, or the same infinity."""
    return (np.isnan(a) & np.isnan(b)) | (np.isinf(a) & (a == b))


def _nan_notes(spec, arrays):
    """A sentence per argument holding NaN: the references cannot see past it."""
    notes = []
    for v, a in zip(spec.graph.inputs, arrays):
        if a.dtype.kind not in "fc":
            continue
        bad = np.isnan(a)
        if bad.any():
            first = np.argwhere(bad)[0]
            where = f"index {tuple(int(i) for i in first)}" if a.ndim > 1 else \
                (f"index {int(first[0])}" if a.ndim == 1 else "its only entry")
            notes.append(f"the input {v.name} holds NaN ({int(bad.sum())} of {a.size} "
                         f"entries; first at {where}). Where the value is NaN, so are "
                         f"finite differences and the complex step: they cannot check the "
                         f"gradient there; C and the interpreter are compared NaN for NaN.")
    return notes


def check_compiled(cf, *args, argnums=0, rtol=1e-6, atol=1e-9, max_coords=24, seed=0,
                   raise_on_error=True):
    """Compare the gradient of the compiled function ``cf`` at ``args`` with the interpreter,
    central differences and the complex step.

    ``cf``: a CompiledFunction whose ``argnums`` are ``argnums`` (``symgrad.check_grad`` makes
    one from a plain function). Arguments may be pytrees (a dict of parameters): every leaf of
    the ``argnums`` arguments is checked, named after its key path (``params_w``). Returns a
    GradCheckReport; raises GradientCheckError when a comparison fails (unless
    ``raise_on_error=False``). Comparisons are norm-wise: max|g - ref| <= atol + rtol * max|ref|.
    """
    single = isinstance(argnums, int)
    value, grads = cf.value_and_grad(*args)
    if cf.has_aux:
        value = value[0]
    grads = tree_leaves(grads if not single else (grads,))
    spec, arrays = cf.specialize(*args)
    is_f32 = any(t is not None and t.dtype in ("float32", "complex64") for t in spec.types)
    tol = max(rtol, F32_RTOL) if is_f32 else rtol
    names = [spec.graph.inputs[p].name for p in spec.wrt]
    comparisons = []

    # 1. The interpreter on the same adjoint graph, in the same dtype.
    interp = evaluate(spec.value_and_grad_graph(), arrays)[1 + spec.n_aux:]
    for name, g, ref in zip(names, grads, interp):
        comparisons.append(_compare("interpreter", name, g, ref, max(rtol, 1e-10) if not is_f32
                                    else tol, atol, shape=np.shape(ref)))

    # 2-3. Finite differences and the complex step on the float64 forward graph.
    f64 = _float64_graph(cf, spec, args)
    base = [a.astype(np.float64) if a.dtype.kind == "f" else
            a.astype(np.complex128) if a.dtype.kind == "c" else a for a in arrays]
    # The complex step needs a real function of real values; one with complex values of its
    # own has no complex step (Im f(x + ih) would mix the two imaginary units).
    complex_values = _has_complex_values(f64)
    notes = []
    if complex_values:
        notes.append("the function has complex values, where the complex step is not defined: "
                     "it is skipped; central differences step the real and the imaginary part "
                     "of each complex entry (the gradient is df/dx - i df/dy, docs/complex.md)")
    rng = np.random.default_rng(seed)
    for name, pos, g in zip(names, spec.wrt, grads):
        x0 = base[pos]

        def f(x, pos=pos):
            args_ = list(base)
            args_[pos] = x
            return evaluate(f64, args_)[0]

        complex_arg = np.iscomplexobj(x0)
        g = np.asarray(g, dtype=np.complex128 if complex_arg else np.float64)
        if x0.size <= max_coords:
            fd, fd_err = _central(f, x0)
            comparisons.append(_compare("central diff", name, g, fd, tol, atol, shape=g.shape,
                                        error=fd_err))
            if not complex_values:
                cs = numerical.grad(f, x0, method="complex")
                comparisons.append(_compare("complex step", name, g, cs, tol, atol,
                                            shape=g.shape))
            continue
        coords = np.sort(rng.choice(x0.size, size=max_coords, replace=False))
        fd, fd_err = _central(f, x0, coords)
        comparisons.append(_compare("central diff", name, g.ravel()[coords], fd, tol, atol, coords,
                                    g.shape, error=fd_err))
        if not complex_values:
            comparisons.append(_compare("complex step", name, g.ravel()[coords],
                                        _complex_step(f, x0, coords), tol, atol, coords, g.shape))
        s = rng.standard_normal(x0.shape)
        if complex_arg:        # a complex direction s pairs with the gradient as Re(g * s)
            s = s + 1j * rng.standard_normal(x0.shape)
        d, d_err = _directional(f, x0, s)
        comparisons.append(_compare("directional", name, np.real(np.sum(g * s)), d,
                                    max(tol, 1e-6), atol, error=d_err))
    divergence = None
    # Generated code (the C backend) can disagree with the interpreter; find where.
    if spec.executable().source is not None and not all(c.ok for c in comparisons if c.method == "interpreter"):
        divergence = first_divergence(spec.value_and_grad_graph(), arrays, tol, atol,
                                      cache_dir=cf.cache_dir, cflags=cf.cflags)
    report = GradCheckReport(getattr(cf, "__name__", "f"), float(np.asarray(value).ravel()[0])
                             if np.ndim(value) else float(value), comparisons, tol, atol,
                             divergence, _nan_notes(spec, arrays) + notes)
    if raise_on_error and not report.ok:
        raise GradientCheckError(report)
    return report


def first_divergence(graph, arrays, rtol, atol, *, cache_dir=None, cflags=None):
    """The first statement of ``graph`` whose value differs between the C backend and the
    interpreter, as a sentence naming it, its source line and the difference (None if every
    value agrees)."""
    from symgrad.backends.c.native import evaluate_native   # on use: it loads cffi
    nodes = [n for n in graph.nodes if not REGISTRY[n.prim].literal]
    if not nodes:
        return None
    probe = Graph(graph.inputs, graph.nodes, [n.out for n in nodes], name=graph.name)
    native = evaluate_native(probe, arrays, cache_dir=cache_dir, cflags=cflags)
    _, env = evaluate(graph, arrays, keep=True)
    names = graph.names()
    for n, got in zip(nodes, native):
        want = np.asarray(env[n.out])
        if got.dtype.kind in "fc":
            a, b = got.astype(np.complex128 if got.dtype.kind == "c" else np.float64), \
                want.astype(np.complex128 if want.dtype.kind == "c" else np.float64)
            same = _same_nonfinite(a.real, b.real) if got.dtype.kind == "f" else \
                np.zeros(a.shape, bool)
            with np.errstate(invalid="ignore"):
                diff = np.where(same, 0.0, np.abs(a - b))
            scale = float(np.max(np.abs(b[np.isfinite(b)]), initial=0.0))
            same_finite = bool(np.all(same | (np.isfinite(a) & np.isfinite(b))))
            worst = float(np.max(np.nan_to_num(diff, nan=0.0), initial=0.0))
            if same_finite and worst <= atol + rtol * scale:
                continue
            how = (f"max |C - interpreter| = {worst:.3e} (largest |value| {scale:.3e})"
                   if same_finite else "C and the interpreter differ in where values are "
                                      "finite (NaN or inf)")
        else:
            if np.array_equal(got, want):
                continue
            how = f"{int(np.sum(got != want))} of {got.size} elements differ"
        where_ = f" ({n.loc}: {n.loc.text})" if n.loc is not None and n.loc.text else ""
        adjoint = ""
        if n.grad_of is not None:
            adjoint = f", in the adjoint of {format_statement(n.grad_of, names, types=False)}"
        return (f"first value that differs between C and the interpreter: "
                f"{format_statement(n, names, types=False)}{adjoint}{where_}; {how}")
    return None


def _has_complex_values(graph):
    return any(v.type.is_complex for v in graph.inputs) or \
        any(n.out.type.is_complex for n in graph.nodes)


# Central differences estimate their own error. D(h) = f' + c h^2 + O(h^4) and D(2h) = f' + 4 c h^2
# + O(h^4), so the Richardson extrapolate R = (4 D(h) - D(2h)) / 3 is f' + O(h^4), and |D(h) - D(2h)|
# = 3 |c| h^2 bounds R's truncation error with a wide margin wherever the Taylor series describes f
# (near a kink it does not, and the two quotients then differ by about the jump, so the estimate
# says so). Rounding: each value of f carries about eps * |f|, which R divides by h; 4 eps |f| / h
# covers it with a margin for the few operations of each evaluation. A steep smooth function
# (sin(1.7 v) with v ~ 10^2 has a third derivative of ~10^7) makes D(h) alone miss by more than
# rtol while the gradient is exact (the complex step agrees to 1e-16): a fixed tolerance on D(h)
# would call that a mismatch, and loosening the tolerance everywhere would blunt the check. Each
# entry is compared with R and allowed its own estimate; the complex step, exact to rounding,
# keeps the plain tolerance wherever it applies.
_FD_STEP = np.cbrt(np.finfo(np.float64).eps)
_EPS = np.finfo(np.float64).eps


def _richardson(g, a, h):
    """The derivative of the real scalar function ``g`` at ``a`` by central differences with
    steps h and 2h: (the Richardson extrapolate, an estimate of its error)."""
    quotients, size = [], 0.0
    for step in (h, 2.0 * h):
        hi, lo = a + step, a - step
        g_hi, g_lo = float(np.real(g(hi))), float(np.real(g(lo)))
        # the step actually taken, (a + h) - (a - h) in floating point, not the nominal 2h
        quotients.append((g_hi - g_lo) / (hi - lo))
        size = max(size, abs(g_hi), abs(g_lo))
    d1, d2 = quotients
    return (4.0 * d1 - d2) / 3.0, abs(d1 - d2) + 4.0 * _EPS * size / h


def _partials(f, x0, coords=None):
    """Central differences of the real-valued ``f`` at the real ``x0`` along each coordinate in
    ``coords`` (all by default), steps h = cbrt(eps) * max(1, |x_k|) and 2h: (derivatives,
    error estimates), flat."""
    flat = np.asarray(x0, dtype=np.float64).ravel()
    coords = range(flat.size) if coords is None else coords
    out, err = [], []
    for k in coords:
        def g(v, k=k):
            x = flat.copy()
            x[k] = v
            return f(x.reshape(np.shape(x0)))
        d, e = _richardson(g, flat[k], _FD_STEP * max(1.0, abs(flat[k])))
        out.append(d)
        err.append(e)
    return np.array(out, dtype=np.float64), np.array(err, dtype=np.float64)


def _central(f, x0, coords=None):
    """Central differences of the real-valued f at x0 (flat, at ``coords`` or every entry) and
    their error estimates; for complex x0, df/dx - i df/dy (JAX's convention: docs/complex.md),
    each part stepped on its own, the estimates added."""
    if not np.iscomplexobj(x0):
        return _partials(f, x0, coords)
    re, im = x0.real.copy(), x0.imag.copy()
    d_re, e_re = _partials(lambda x: f(x + 1j * im), re, coords)
    d_im, e_im = _partials(lambda y: f(re + 1j * y), im, coords)
    return d_re - 1j * d_im, e_re + e_im


def _directional(f, x0, s):
    """The derivative of f at x0 along s by central differences (steps h and 2h), and its error
    estimate; a complex x0 moves in the plane of its two parts."""
    if np.iscomplexobj(x0):
        pair, s = np.stack([x0.real, x0.imag]), np.stack([s.real, s.imag])
        return _directional(lambda p: f(p[0] + 1j * p[1]), pair, s)
    h = _FD_STEP * max(1.0, float(np.max(np.abs(x0), initial=0.0))) / \
        max(float(np.max(np.abs(s), initial=0.0)), np.finfo(np.float64).tiny)
    return _richardson(lambda t: f(x0 + t * s), 0.0, h)


def _complex_step(f, x0, coords):
    """The complex step of f along the chosen coordinates only."""
    flat = x0.ravel()
    out = []
    for k in coords:
        def along(t, k=k):
            x = flat.astype(np.result_type(flat, np.asarray(t))).copy()
            x[k] = x[k] + t
            return f(x.reshape(x0.shape))
        out.append(float(numerical.grad(along, 0.0, method="complex")))
    return np.array(out)


def _float64_graph(cf, spec, args):
    """The forward graph traced with float64 in place of float32 (the references' precision)."""
    wider = {"float32": "float64", "complex64": "complex128"}
    if all(t is None or t.dtype not in wider for t in spec.types):
        return spec.graph
    types = [None if t is None else TensorType(t.shape, wider.get(t.dtype, t.dtype))
             for t in spec.types]
    return spec.retrace(types)
