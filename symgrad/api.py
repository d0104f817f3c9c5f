"""``symgrad.compile`` and friends: the compiled function users call.

A ``CompiledFunction`` wraps a Python function. Each call looks up the specialization for the
arguments' shapes, dtypes and static values (tracing and compiling it the first time), converts
the arguments and runs the backend: the NumPy interpreter or native C. A call whose argument
types, dtypes and shapes were seen before skips the lookup and conversion (the fast path, see
``CompiledFunction._remember``).

Forward mode and second order (API.md §4) are compiled functions too: ``f.jvp``, ``f.hvp``,
``jacobian`` and ``hessian`` each compile a Python function that, when traced, applies the
transformation (``symgrad.frontend.transforms``) to ``fn``'s trace. Called on traced values (inside a
function being traced) every entry point inlines its transformed graph instead, which is how
``grad(grad(f))`` and forward-over-reverse compose.
"""
from __future__ import annotations

import functools
import os
import threading

import numpy as np

from symgrad import tree_util
from symgrad.core import dims, gcpause
from symgrad.frontend import calls, tracing
from symgrad.frontend import transforms
from symgrad.frontend import vmap as vmapping
from symgrad.core.autodiff import has_one_element, value_and_grad_graph
from symgrad.errors import DTypeError, ShapeError
from symgrad import backends
from symgrad.backends.c.module import render_program
from symgrad.core.ir import current_builder
from symgrad.core.passes import optimize
from symgrad.tools import check
from symgrad.core.types import FLOAT_DTYPES, TensorType, canonical_dtype, parse_type

class Specialization:
    """One traced (and, for the C backend, compiled) version of the function.

    ``types`` has one entry per entry of the call (``calls.flatten_call``): a ``TensorType``
    for a traced leaf, None for a static argument (its value in ``static``). ``layout`` maps
    the entries back to the arguments (None: one array per argument). After tracing,
    ``out_tree`` is the result's structure, ``wrt`` the graph inputs ``argnums`` selects (every
    leaf of those arguments, in order), ``groups`` the structure of each ``argnums`` argument,
    and ``n_aux`` the number of auxiliary outputs (``has_aux``).
    """

    def __init__(self, owner, types, static, layout=None):
        self.owner = owner
        self.types = types                  # TensorType per entry, None for static ones
        self.static = static
        self.layout = layout or calls.Layout.positional(len(types), static)
        self.traced = [i for i, t in enumerate(types) if t is not None]
        self.fn = calls.flat_function(owner.fn, self.layout, owner._parameter_names,
                                      has_aux=owner.has_aux, name=owner.__name__)
        with gcpause.paused():              # linear build time: see core/gcpause.py
            graph = tracing.trace(self.fn, types, static, name=owner.__name__)
            self.graph = optimize(graph)
        self.out_tree = self.fn.out_tree
        spans = self.layout.spans()
        self.wrt = [self.traced.index(k) for i in owner.argnums
                    for k in range(spans[i][1], spans[i][2])]
        self.groups = [self.layout.trees[i] for i in owner.argnums]
        self.n_aux = len(self.graph.outputs) - 1 if owner.has_aux else 0
        self._lock = threading.Lock()
        self._vg = None
        self._executable = None

    def retrace(self, types):
        """The graph of the same call traced with other ``types`` (float64 references)."""
        return optimize(tracing.trace(self.fn, types, self.static, name=self.owner.__name__))

    def value_and_grad_graph(self):
        if self._vg is None:
            with gcpause.paused():
                self._vg = value_and_grad_graph(self.graph, self.wrt,
                                                has_aux=bool(self.owner.has_aux))
        return self._vg

    @functools.cached_property
    def plain(self):
        """Whether arguments and result are arrays or flat tuples of them: the user's result
        is the outputs themselves (no pytree to rebuild), as the scalar call plans give it."""
        tree = self.out_tree
        return self.layout.plain and (tree is tree_util.LEAF or (
            tree.node.type is tuple and all(c is tree_util.LEAF for c in tree.children)))

    @functools.cached_property
    def differentiable(self):
        """Whether the result is one float scalar (with ``has_aux``, the loss), which grad
        needs."""
        out = self.graph.outputs[0]
        single = (not self.graph.tuple_output) or self.owner.has_aux
        return single and has_one_element(out) and out.type.is_float

    def program(self):
        """What a backend runs: this specialization's graphs."""
        return backends.Program(
            self.owner.__name__, _origin(self.owner.fn), self.graph,
            self.value_and_grad_graph if self.differentiable else None,   # made on first use
            tuple(self.wrt), self.n_aux)

    def executable(self):
        executable = self._executable       # built once; later calls take no lock
        if executable is None:
            with self._lock:
                if self._executable is None:
                    with gcpause.paused():
                        self._executable = self.owner._build(self)
                executable = self._executable
        return executable


class CompiledFunction:
    """The object ``@symgrad.compile`` returns; see API.md §2."""

    def __init__(self, fn, *, argnums=0, static_argnums=(), static_argnames=(), has_aux=False,
                 signature=None, backend="c", dtype=None, cache_dir=None, cflags=None):
        backend = os.environ.get("SYMGRAD_BACKEND", backend) if backend == "c" else backend
        self._backend = backends.get(backend)       # ValueError for an unknown name
        self.fn = fn
        self.single = isinstance(argnums, int)
        self.argnums = (argnums,) if self.single else tuple(argnums)
        self.has_aux = bool(has_aux)
        # The name, docstring and module, not fn's __dict__: when fn is a CompiledFunction
        # that would overwrite this one's argnums and specializations.
        functools.update_wrapper(self, fn, updated=())
        # Looked up once: the per-call path must not inspect the function again.
        self._parameter_names = tracing.parameter_names(fn)
        self._binder = calls.Binder(fn, self.__name__)
        static = ((static_argnums,) if isinstance(static_argnums, int)
                  else tuple(static_argnums))
        names = (static_argnames,) if isinstance(static_argnames, str) else tuple(static_argnames)
        # As in JAX, a static parameter may be named either way; keyword-only ones by name.
        self.static_kwnames = frozenset(n for n in names if n in self._binder.keyword_only)
        for n in names:
            i = self._binder.position(n)
            if i is None and n not in self.static_kwnames:
                raise ValueError(f"static_argnames names {n!r}, which is not a parameter of "
                                 f"{self.__name__}({', '.join(self._parameter_names)})")
            if i is not None and i not in static:
                static += (i,)
        self.static_argnums = tuple(sorted(set(static)))
        self.static_argnames = tuple(sorted(
            {self._parameter_names[i] for i in self.static_argnums
             if i < len(self._parameter_names)} | self.static_kwnames))
        overlap = set(self.argnums) & set(self.static_argnums)
        if overlap:
            raise ValueError(f"arguments {sorted(overlap)} cannot be both differentiated and static")
        self.signature = _parse_signature(fn, signature)
        self.backend = backend
        self.dtype = canonical_dtype(dtype) if dtype is not None else None
        if self.dtype is not None and self.dtype not in FLOAT_DTYPES:
            raise DTypeError(f"dtype={dtype!r}: choose float32 or float64")
        self.cache_dir = cache_dir
        self.cflags = cflags
        self._specs = {}
        self._lock = threading.Lock()
        self._arity_range = self._arity()
        # The fast path (see _remember): fast key -> the call, for values and for gradients.
        self._fast_values, self._fast_grads = {}, {}
        self._fast_key = (_fast_key if not self.static_argnums else
                          functools.partial(_fast_key_static, frozenset(self.static_argnums)))

    # -- specialization ------------------------------------------------------------------------

    def _convert(self, args, kw=None):
        """The arrays to pass, the specialization key, the static arguments, how each array
        was made, and the call's layout.

        Arguments that are pytrees (and keyword-only arguments) are flattened to their leaves
        first (``calls.flatten_call``); each leaf is one entry, converted and checked as an
        argument of its own. Checks everything the native code relies on before it runs: the
        number of arguments, dtypes (NumPy ``same_kind`` casts are made, anything else raises
        ``DTypeError`` naming the argument and the leaf), and with a ``signature`` each
        entry's rank, fixed sizes and named sizes (one ``N`` must mean one size across
        arguments; ``ShapeError`` otherwise). Without a signature a new shape is simply a new
        specialization.

        How each array was made (one entry per array) decides whether later calls with the
        same fast key may skip all this (``_remember``): ``None`` for an array passed as it
        is, a dtype for a NumPy or Python float scalar converted by ``np.array(a, dtype)`` in
        one step, ``False`` for anything else (and for every call with a pytree argument).
        """
        arity = self._arity_range
        if arity is not None and not arity[0] <= len(args) <= arity[1]:
            fewest, most = arity
            count = f"{most}" if fewest == most else f"from {fewest} to {most}"
            raise TypeError(f"{self.__name__}() takes {count} positional arguments but "
                            f"{len(args)} were given")
        if self.argnums and max(self.argnums) >= len(args):
            raise TypeError(f"argnums includes {max(self.argnums)} but {self.__name__}() got "
                            f"only {len(args)} arguments")
        for i in self.static_argnums:
            if i < len(args):
                try:
                    hash(args[i])
                except TypeError:
                    raise TypeError(f"static argument {i} of {self.__name__} must be hashable, "
                                    f"got {type(args[i]).__name__}") from None
        entries, layout = calls.flatten_call(args, kw, self.static_argnums, self.static_kwnames)
        if layout.plain:
            owners = range(len(args))
            labels = None
        else:
            owners = [i for i, start, stop in layout.spans() for _ in range(start, stop)]
            owners += [None] * (len(entries) - len(owners))        # keyword-only arguments
            labels = layout.labels(self._parameter_names)
        signature = self.signature and _entry_signature(self.signature, layout, self.__name__)
        arrays, key, static, sizes, made = [], [layout], {}, {}, []
        weak_float = self.dtype
        for j, (a, i) in enumerate(zip(entries, owners)):
            if i is not None and layout.trees[i] is calls.STATIC:
                key.append(("static", type(a).__name__, a))
                static[j] = a
                continue
            # The common case first: an array symgrad computes with as it is.
            if type(a) is np.ndarray and a.dtype in _READY and (
                    self.dtype is None or a.dtype.kind != "f"):
                arr = a
            elif type(a) is float:
                if weak_float is None:
                    weak_float = _widest_float(entries, static)
                arr = np.array(a, dtype=weak_float)
            else:
                if weak_float is None:
                    weak_float = _widest_float(entries, static)
                label = labels[j] if labels else self._label(i)
                arr = _to_array(a, label, self.__name__, weak_float, self.dtype)
            how = (None if arr is a and type(a) is np.ndarray else
                   arr.dtype if type(a) in _SCALARS else False)
            entry = signature[j] if signature else None
            if entry is not None:
                checked = _check_signature(entry, arr, self.__name__, sizes)
                if checked is not arr:          # a second cast: not one np.array() step
                    arr, how = checked, False
            if i in self.argnums and arr.dtype.kind not in "fc":
                label = labels[j] if labels else self._label(i)
                raise ValueError(f"cannot differentiate {self.__name__} with respect to "
                                 f"{label}: it is {arr.dtype} data. Integer arrays "
                                 f"are never differentiated; pass floats.")
            arrays.append(arr)
            made.append(how)
            key.append((arr.shape if entry is None else _declared_shape(entry, arr.shape),
                        arr.dtype))
        if not layout.plain:
            made.append(False)              # rebuilt by flattening every call: never remembered
        return arrays, tuple(key), static, made, layout

    def _label(self, i):
        names = self._parameter_names
        return f"argument {i}" + (f" ({names[i]!r})" if i < len(names) else "")

    def _types(self, key):
        """The entry types of a specialization key (None for static arguments)."""
        return [None if k[0] == "static" else TensorType(tuple(k[0]), k[1].name)
                for k in key[1:]]

    def _arity(self):
        """(fewest, most) positional arguments fn takes; None when it takes ``*args``."""
        names = tracing.parameter_names(self.fn)
        import inspect
        try:
            params = inspect.signature(self.fn).parameters.values()
        except (TypeError, ValueError):
            return None
        if any(p.kind == p.VAR_POSITIONAL for p in params):
            return None
        required = sum(1 for p in params if p.name in names and p.default is p.empty)
        return required, len(names)

    def specialize(self, *args, **kwargs):
        """The Specialization for these arguments, and the converted arrays (one per traced
        leaf)."""
        return self._specialize(*self._binder.bind(args, kwargs))[:2]

    def _specialize(self, args, kw=None):
        arrays, key, static, made, layout = self._convert(args, kw)
        spec = self._specs.get(key)
        if spec is None:
            with self._lock:
                spec = self._specs.get(key)
                if spec is None:
                    spec = Specialization(self, self._types(key), static, layout)
                    self._specs[key] = spec
        return spec, arrays, made

    def _build(self, spec):
        executable = self._backend.build(spec.program(), cache_dir=self.cache_dir,
                                         cflags=self.cflags)
        when_faster = getattr(executable, "when_faster", None)
        if when_faster is not None:             # its calls may get faster: forget the old ones
            when_faster(self.forget_calls)
        return executable

    # -- the API -------------------------------------------------------------------------------

    def __call__(self, *args, **kwargs):
        if kwargs:                              # bound by name; then the same as positional
            args, kw = self._binder.bind(args, kwargs)
            if kw:
                return self._call(args, kw)
        # .get, not try/except KeyError: an error on the full path must not be reported as
        # raised "while handling" a KeyError.
        call = self._fast_values.get(self._fast_key(args))
        if call is None:                        # not seen yet, or an unhashable static value
            return self._call(args)
        return call(args)

    def grad(self, *args, **kwargs):
        """The gradient with respect to ``argnums``: the structure of the argument (an array
        for an array), a tuple of them for a tuple ``argnums``; ``(grads, aux)`` with
        ``has_aux``."""
        value, grads = self.value_and_grad(*args, **kwargs)
        return (grads, value[1]) if self.has_aux else grads

    def value_and_grad(self, *args, **kwargs):
        """``(value, grad)``; fits ``scipy.optimize.minimize(..., jac=True)``. With
        ``has_aux``: ``((value, aux), grad)``."""
        if kwargs:
            args, kw = self._binder.bind(args, kwargs)
            if kw:
                return self._grads(args, kw)
        call = self._fast_grads.get(self._fast_key(args))
        if call is None:
            return self._grads(args)
        return call(args)

    def _call(self, args, kw=None):
        if _inside_trace(args, kw):
            return transforms.call(self.fn, args, kw)
        spec, arrays, made = self._specialize(args, kw)
        executable = spec.executable()
        finish = _values_of(spec)
        self._remember(self._fast_values, args, spec, made, executable.value, finish,
                       getattr(executable, "scalars", None) if spec.plain else None)
        return finish(executable.value(arrays))

    def _grads(self, args, kw=None):
        if _inside_trace(args, kw):
            return transforms.value_and_grad(self.fn, self.argnums, self.single, args, kw,
                                             has_aux=self.has_aux)
        spec, arrays, made = self._specialize(args, kw)
        if not spec.differentiable:
            out = spec.graph.outputs[0]
            what = ("a tuple" if spec.graph.tuple_output and not self.has_aux else
                    str(out.type))
            raise ValueError(f"grad needs a scalar float result; {self.__name__} returns "
                             f"{what}. Reduce it (e.g. snp.sum) or use symgrad.jacobian.")
        executable = spec.executable()
        finish = _grads_of(spec, self.single)
        scalar_run = getattr(executable, "scalars_and_grad", None)
        if not spec.plain or spec.n_aux:
            scalar_run = None
        if scalar_run is not None and self.single:
            scalar_run = (getattr(executable, "scalars_and_first_grad", None)
                          or _first_grad(scalar_run))
        self._remember(self._fast_grads, args, spec, made, executable.value_and_grad, finish,
                       scalar_run)
        return finish(executable.value_and_grad(arrays))

    # -- the fast path ---------------------------------------------------------------------------
    # A call whose fast key (each argument's type, and an array's dtype and shape; static
    # arguments by type and value) was seen before goes straight to the call made for that key
    # the first time: the key fixes every decision ``_convert`` makes (arity, casts, weak
    # float dtypes, the signature's checks) and so the specialization. Only calls whose
    # arguments all need no conversion or a one-step one are remembered: arrays passed as they
    # are, and Python and NumPy float scalars, converted by ``np.array(a, dtype)`` or, when the
    # C function takes and returns float64 scalars only, written straight into its buffer.
    # Anything else (lists, ints, casts) takes ``_convert`` every time, as before.

    _FAST_LIMIT = 256      # remembered keys per kind; a run-time size can make many

    def forget_calls(self):
        """Drop the remembered calls (an executable got faster ones: backends/c/pyentry.py)."""
        self._fast_values.clear()
        self._fast_grads.clear()

    def _remember(self, table, args, spec, made, run, finish, scalar_run):
        """Enter the call for ``args``' fast key into ``table`` (see above). ``run`` takes the
        arrays and ``finish`` makes the user's result of its outputs; ``scalar_run``, if not
        None, takes the float64 scalars themselves and gives the user's result."""
        if any(how is False for how in made):
            return
        traced = spec.traced
        if scalar_run is not None and all(how is not None and how == _F64 for how in made):
            call = scalar_run
            if len(traced) != len(args):        # static arguments: pass the others
                call = _picking(call, traced)
        elif len(traced) == len(args) and all(how is None for how in made):
            def call(args):                     # arrays only, passed as they are
                return finish(run(args))
        else:
            plan = list(zip(traced, made))

            def call(args):
                arrays = []
                for i, how in plan:
                    arrays.append(args[i] if how is None else np.array(args[i], dtype=how))
                return finish(run(arrays))
        key = self._fast_key(args)
        if key is None:
            return
        if len(table) >= self._FAST_LIMIT:
            table.clear()
        table[key] = call

    def jvp(self, args, tangents):
        """Forward mode: ``(value, tangent_out)``, the value of ``fn(*args)`` and its directional
        derivative along ``tangents`` (one per ``argnums`` entry, each in the structure of its
        argument; for an int ``argnums`` the tangent itself may be given). Both have the
        structure of ``fn``'s result."""
        args = tuple(args)
        tangents = self._per_argnum(tangents, "tangents", args)
        if _inside_trace(args + tangents):
            return transforms.jvp(self.fn, self.argnums, args, tangents)
        n = len(args)
        cf = self._derived("jvp", n, lambda *xs: transforms.jvp(
            self.fn, self.argnums, xs[:n], xs[n:]))
        return cf(*args, *tangents)

    def hvp(self, args, v):
        """The Hessian-vector product H·v of a scalar ``fn`` with respect to ``argnums``, by
        forward mode over reverse mode (one gradient sweep and its tangent). ``v``: one entry
        per ``argnums`` entry in the structure of its argument (or the entry itself for an int
        ``argnums``); the result has the structure of ``grad``'s."""
        args = tuple(args)
        v = self._per_argnum(v, "v", args)
        if _inside_trace(args + v):
            return _hvp_traced(self.fn, self.argnums, self.single, args, v)
        n = len(args)
        cf = self._derived("hvp", n, lambda *xs: _hvp_traced(
            self.fn, self.argnums, self.single, xs[:n], xs[n:]))
        return cf(*args, *v)

    def _per_argnum(self, values, what, args):
        if self.single:
            i = self.argnums[0]
            if (isinstance(values, tuple) and len(values) == 1 and i < len(args)
                    and tree_util.tree_structure(values) != tree_util.tree_structure(args[i])):
                return values
            return (values,)
        if isinstance(values, (tuple, list)) and len(values) == len(self.argnums):
            return tuple(values)
        raise TypeError(f"{self.__name__}: {what} needs one entry per argnums entry "
                        f"({len(self.argnums)}), as a tuple")

    def _derived(self, kind, nargs, fn):
        """The compiled function ``fn(*args, *per_argnum)`` of kind ``jvp``/``hvp`` for ``nargs``
        positional arguments, with this function's options; made once and kept. The extra
        parameters are named ``t_<name>`` (tangents) or ``v_<name>`` (hvp directions) and take
        their argument's type in a ``signature``."""
        derived = self.__dict__.setdefault("_derived_functions", {})
        key = (kind, nargs)
        if key not in derived:
            names = tracing.parameter_names(self.fn)[:nargs]
            names += [f"arg{i}" for i in range(len(names), nargs)]
            extra = []
            for i in self.argnums:
                name = f"{'t' if kind == 'jvp' else 'v'}_{names[i]}"
                while name in names or name in extra:
                    name += "_"
                extra.append(name)
            signature = None
            if self.signature:
                text = _signature_text(self.signature)
                signature = {i: text[entry.key if isinstance(entry, _TreeType) else entry[0]]
                             for i, entry in self.signature.items()}
                signature.update({nargs + k: signature[i]
                                  for k, i in enumerate(self.argnums) if i in signature})
            fn.__name__ = fn.__qualname__ = f"{kind}_{self.__name__}"
            fn.__signature__ = _parameters(names + extra)
            derived[key] = CompiledFunction(
                fn, argnums=(), static_argnums=self.static_argnums, signature=signature,
                backend=self.backend, dtype=self.dtype, cache_dir=self.cache_dir,
                cflags=self.cflags)
        return derived[key]

    def trace(self, *args, **kwargs):
        """The traced (and optimized) forward Graph for these arguments."""
        return self.specialize(*args, **kwargs)[0].graph

    def source(self, *args, **kwargs):
        """The generated C source for these arguments."""
        return render_program(self.specialize(*args, **kwargs)[0].program()).source

    def check(self, *args, **kwargs):
        """``symgrad.check_grad(self, *args, argnums=self.argnums)``; keyword arguments of
        ``check_grad`` (``rtol``, ``atol``, ...) are taken as such."""
        return check_grad(self, *args, argnums=self.argnums[0] if self.single else self.argnums,
                          **kwargs)

    # -- pickling (Dask workers, multiprocessing) --------------------------------------------
    # A CompiledFunction travels as its Python function and options, never its specializations:
    # the receiving process traces again and finds each library in its own disk cache (or
    # compiles it once). The pair is pickled with cloudpickle when installed (by reference when
    # the function is importable, by value otherwise: lambdas, closures, __main__), else with
    # pickle. Unpickling the same bytes again in one process returns the same object, so its
    # in-memory specializations and loaded libraries are reused: a Dask worker handed the
    # function with every task traces and loads each specialization once. Those objects live
    # as long as the process.

    _unpickled = {}     # sha256 of the pickled (fn, options) -> the CompiledFunction

    def __reduce__(self):
        payload = self.__dict__.get("_pickled")
        if payload is None:
            options = dict(
                argnums=self.argnums[0] if self.single else self.argnums,
                static_argnums=self.static_argnums,
                signature=_signature_text(self.signature),
                has_aux=self.has_aux, static_argnames=self.static_argnames,
                backend=self.backend, dtype=self.dtype, cache_dir=self.cache_dir,
                cflags=self.cflags)
            try:
                import cloudpickle as pickler
            except ImportError:
                import pickle as pickler
            payload = self._pickled = pickler.dumps((self.fn, options))
        return CompiledFunction._unpickle, (payload,)

    @classmethod
    def _unpickle(cls, payload):
        import hashlib
        import pickle
        key = hashlib.sha256(payload).hexdigest()
        cf = cls._unpickled.get(key)
        if cf is None:
            fn, options = pickle.loads(payload)
            cf = cls(fn, **options)
            cf._pickled = payload
            cf = cls._unpickled.setdefault(key, cf)
        return cf

    def __repr__(self):
        return f"<symgrad.compile {self.__name__} backend={self.backend} argnums={self.argnums}>"


def _value(out):
    return float(out) if out.ndim == 0 else out


def _values_of(spec):
    """``finish(outputs)``: the user's result (API.md §2) from the output arrays of ``spec``'s
    value function: a float for a scalar, else the array; a tuple for a tuple result; the
    function's own structure for a pytree result."""
    if not spec.plain:
        tree = spec.out_tree
        return lambda outs: tree_util.tree_unflatten(tree, [_value(v) for v in outs])
    if spec.graph.tuple_output:
        return lambda outs: tuple([_value(v) for v in outs])
    if spec.graph.outputs[0].shape == ():
        return lambda outs: float(outs[0])
    return lambda outs: outs[0]


def _grads_of(spec, single):
    """``finish((value, gradients))``: the user's ``value_and_grad`` result from the arrays of
    ``spec``'s value-and-gradient function: the value a float; each gradient an array, a 0-d
    one indexed to its NumPy scalar, in the structure of its argument; the gradient itself for
    an int ``argnums``, else a tuple. With ``has_aux`` the value is ``(value, aux)``."""
    zero_d = any(spec.graph.inputs[p].shape == () for p in spec.wrt)
    n_aux = spec.n_aux
    # A one-element result of shape (1,) or (1, 1) keeps its shape, as autograd's does.
    as_value = (lambda v: v) if spec.graph.outputs[0].ndim else float
    if spec.plain and not n_aux:
        def finish(outs):
            value, grads = outs
            if zero_d:
                grads = [g[()] if g.ndim == 0 else g for g in grads]
            return as_value(value), (grads[0] if single else tuple(grads))
        return finish
    groups = spec.groups
    aux_tree = spec.out_tree.children[1] if n_aux or spec.owner.has_aux else None

    def finish(outs):
        value, rest = outs
        grads = rest[n_aux:]
        if zero_d:
            grads = [g[()] if g.ndim == 0 else g for g in grads]
        trees, k = [], 0
        for tree in groups:
            trees.append(tree_util.tree_unflatten(tree, grads[k:k + tree.num_leaves]))
            k += tree.num_leaves
        grads = trees[0] if single else tuple(trees)
        value = as_value(value)
        if aux_tree is None:
            return value, grads
        aux = tree_util.tree_unflatten(aux_tree, [_value(v) for v in rest[:n_aux]])
        return (value, aux), grads
    return finish


def _fast_key(args):
    """The fast key of arguments, none static: the type of each, and for an array its dtype
    and shape (an array subclass is keyed by its type, so it is never remembered)."""
    types = tuple(map(type, args))      # in C: all a call of scalars needs (W1: 0.27 -> 0.1 us)
    if np.ndarray not in types:
        return types
    key = []
    for a in args:              # a plain loop: a comprehension is a function call on 3.11
        key.append((a.dtype, a.shape) if type(a) is np.ndarray else type(a))
    return tuple(key)


def _fast_key_static(static, args):
    """``_fast_key`` when the positions in ``static`` are static arguments, which count by type
    and value; None (never remembered) when one of them is unhashable."""
    key = tuple([(type(a), a) if i in static else
                 (a.dtype, a.shape) if type(a) is np.ndarray else type(a)
                 for i, a in enumerate(args)])
    try:
        hash(key)
    except TypeError:
        return None
    return key


def _picking(run, positions):
    """``run`` given only the arguments at ``positions``."""
    return lambda args: run([args[i] for i in positions])


def _first_grad(run):
    """``run`` returning (value, the only gradient) instead of (value, (gradient,))."""
    def call(args):
        value, grads = run(args)
        return value, grads[0]
    return call


# dtypes passed to native code as they are (native byte order).
_READY = frozenset(np.dtype(t) for t in ("float64", "float32", "int64", "int32", "bool"))
_F32, _F64 = np.dtype("float32"), np.dtype("float64")
# Scalars converted in one np.array(a, dtype) step; remembered by the fast path. (An int
# becomes int64 whatever its value; one that does not fit raises OverflowError either way.)
_SCALARS = (float, np.float64, np.float32, int, np.int64)


def _widest_float(args, static_argnums):
    """Python floats take the float dtype of the array arguments (float64 when they differ)."""
    found = {a.dtype for i, a in enumerate(args)
             if i not in static_argnums and isinstance(a, np.ndarray) and a.dtype.kind == "f"}
    return _F32 if found == {_F32} else _F64


def _to_array(a, label, name, weak_float, dtype):
    """``a`` as an array in a dtype symgrad computes with, in native byte order.

    Python floats (and lists holding one) take ``weak_float``; float arrays take ``dtype`` when
    it is set. Other dtypes are cast when NumPy's ``same_kind`` rule allows it (unsigned and
    small ints to int64, float16 and longdouble to float64); complex, object, string, datetime
    and structured data raise ``DTypeError`` naming ``label`` (e.g. "argument 1 ('y')").
    Raises OverflowError for unsigned integers too big for int64 rather than wrapping them.
    """
    if isinstance(a, tracing.Tracer):
        raise TypeError(f"{name}: {label} is a traced value; calling a compiled function "
                        f"inside a traced function is not supported")
    if (isinstance(a, float) and not isinstance(a, np.generic)) or (
            isinstance(a, (list, tuple)) and _has_float(a)):
        try:
            arr = np.asarray(a, dtype=weak_float)
        except (TypeError, ValueError) as e:
            raise TypeError(f"{name}: {label} could not be read as a numeric array "
                            f"(ragged list or non-numeric values)") from e
    else:
        try:
            arr = np.asarray(a)
        except Exception as e:
            raise TypeError(f"{name}: {label} ({type(a).__name__}) could not be read as a "
                            f"numeric array (ragged list or non-numeric values)") from e
    kind = arr.dtype.kind
    if kind == "O":
        raise TypeError(f"{name}: {label} could not be read as a numeric array "
                        f"(ragged list or non-numeric values, got {type(a).__name__})")
    if kind == "c":
        raise DTypeError(f"{name}: {label} is complex ({arr.dtype}); symgrad differentiates "
                         f"real functions")
    if kind not in "biuf":
        raise DTypeError(f"{name}: {label} has dtype {arr.dtype}, which symgrad cannot compute "
                         f"with; pass float32, float64, int32, int64 or bool data")
    if kind == "u" and arr.dtype.itemsize == 8 and arr.size and arr.max() > np.iinfo(np.int64).max:
        raise OverflowError(f"{name}: {label} holds {arr.max()} ({arr.dtype}), which does not "
                            f"fit the int64 symgrad computes with")
    target = dtype if dtype is not None and kind == "f" else canonical_dtype(arr.dtype)
    if arr.dtype.name != target or not arr.dtype.isnative:
        arr = arr.astype(target)          # astype to a plain dtype also fixes byte order
    return arr


def _has_float(seq):
    return any(isinstance(x, float) or (isinstance(x, (list, tuple)) and _has_float(x))
               for x in seq)


def _parse_signature(fn, signature):
    """``{position: parsed}`` of a ``signature`` keyed by parameter name or position; a
    parsed entry is ``(key, text, dtype, dims)`` for a type string and ``_TreeType`` for a
    pytree of them (the argument then has that structure)."""
    if signature is None:
        return None
    names = tracing.parameter_names(fn)
    parsed = {}
    for key, text in signature.items():
        index = key if isinstance(key, int) else (names.index(key) if key in names else None)
        if index is None:
            raise ValueError(f"signature names {key!r}, which is not a parameter of "
                             f"{fn.__name__}({', '.join(names)})")
        if isinstance(text, str):
            parsed[index] = (key, text, *parse_type(text))
            continue
        pairs, tree = tree_util.tree_flatten_with_path(text)
        leaves = []
        for path, leaf in pairs:
            if not isinstance(leaf, str):
                raise TypeError(f"signature for {key!r}{tree_util.keystr(path)}: expected a "
                                f"type string such as 'f64[N,3]', got {leaf!r}")
            leaves.append((f"{key}{tree_util.keystr(path)}", leaf, *parse_type(leaf)))
        parsed[index] = _TreeType(key, tree, leaves)
    return parsed


def _signature_text(signature):
    """A parsed signature as the user wrote it (by name or position)."""
    if not signature:
        return None
    return {v.key if isinstance(v, _TreeType) else v[0]:
            v.text if isinstance(v, _TreeType) else v[1] for v in signature.values()}


class _TreeType:
    """A signature entry for a pytree argument: its structure and a parsed type per leaf."""

    def __init__(self, key, tree, leaves):
        self.key, self.tree, self.leaves = key, tree, leaves

    @property
    def text(self):
        return tree_util.tree_unflatten(self.tree, [leaf[1] for leaf in self.leaves])


def _entry_signature(signature, layout, name):
    """The signature's parsed type for each entry of a call (None where it says nothing).
    Raises TypeError when a pytree argument is structured differently from its signature."""
    out = []
    for i, start, stop in layout.spans():
        declared = signature.get(i)
        tree = layout.trees[i]
        if isinstance(declared, _TreeType):
            if tree != declared.tree:
                raise TypeError(f"{name}: argument {declared.key!r} is structured as "
                                f"{tree if tree is not calls.STATIC else 'a static value'}, but "
                                f"the signature says {declared.tree}")
            out.extend(declared.leaves)
        elif declared is not None and tree is not tree_util.LEAF:
            raise TypeError(f"{name}: argument {declared[0]!r} is a pytree ({tree}), but the "
                            f"signature gives it one type, {declared[1]}; give a pytree of "
                            f"type strings")
        else:
            out.extend([declared] * (stop - start))
    return out + [None] * (layout.kw_tree.num_leaves if layout.kw_tree is not None else 0)


def _declared_shape(entry, shape):
    """The shape an entry is traced with: named dimensions of its signature type become
    run-time sizes (one native function for every size), the others are the actual ones."""
    return tuple(dims.symbol(d) if isinstance(d, str) else s for d, s in zip(entry[3], shape))


def _check_signature(entry, arr, name, sizes):
    """``arr`` checked against (and cast to) the signature's type ``entry``.

    ``sizes`` maps the named dimensions seen so far to their sizes; the first argument using
    a name binds it. Raises ShapeError (rank, a fixed size, or a named size that differs from
    an earlier argument's) or DTypeError (a cast NumPy's ``same_kind`` rule refuses).
    """
    key, text, dtype, dims = entry
    if len(dims) != arr.ndim or any(isinstance(d, int) and d != s for d, s in zip(dims, arr.shape)):
        raise ShapeError(f"{name}: argument {key!r} has shape {arr.shape}, but the signature "
                         f"says {text}")
    for d, s in zip(dims, arr.shape):
        if isinstance(d, str):
            bound = sizes.setdefault(d, (s, key))
            if bound[0] != s:
                raise ShapeError(f"{name}: argument {key!r} has shape {arr.shape}, so {d} = {s}, "
                                 f"but argument {bound[1]!r} set {d} = {bound[0]} (signature "
                                 f"says {text})")
    if arr.dtype.name != dtype:
        if not np.can_cast(arr.dtype, dtype, "same_kind"):
            raise DTypeError(f"{name}: argument {key!r} has dtype {arr.dtype}, but the signature "
                             f"says {text}; NumPy's same_kind rule does not cast one to the other")
        arr = arr.astype(dtype)
    return arr


def compile(fn=None, *, argnums=0, static_argnums=(), signature=None, backend="c", dtype=None,
            cache_dir=None, cflags=None, static_argnames=(), has_aux=False):
    """Compile ``fn``; usable as ``@compile`` or ``@compile(argnums=..., ...)``. See API.md §2
    and §6 (pytrees, keywords, ``static_argnames``, ``has_aux``)."""
    options = dict(argnums=argnums, static_argnums=static_argnums,
                   static_argnames=static_argnames, has_aux=has_aux, signature=signature,
                   backend=backend, dtype=dtype, cache_dir=cache_dir, cflags=cflags)
    if fn is None:
        return lambda f: CompiledFunction(f, **options)
    return CompiledFunction(fn, **options)


def trace(fn, *args, **kwargs):
    """The traced Graph of ``fn`` for these arguments (every non-static argument traced)."""
    cf = fn if isinstance(fn, CompiledFunction) else CompiledFunction(fn, backend="interp")
    return cf.trace(*args, **kwargs)


def grad(fn, argnums=0, has_aux=False, **options):
    """A callable returning the gradient of ``fn`` (compiled), JAX style: in the structure of
    the argument(s) ``argnums`` selects; ``(grads, aux)`` with ``has_aux``. Called inside a
    traced function it inlines the gradient, so it composes: ``grad(grad(f))``."""
    cf = _compiled(fn, argnums, has_aux, options)
    return _entry_point(cf, cf.grad, "grad")


def value_and_grad(fn, argnums=0, has_aux=False, **options):
    """A callable returning ``(value, gradient)`` of ``fn`` (compiled), JAX style;
    ``((value, aux), gradient)`` with ``has_aux``."""
    cf = _compiled(fn, argnums, has_aux, options)
    return _entry_point(cf, cf.value_and_grad, "value_and_grad")


def _compiled(fn, argnums, has_aux, options):
    """``fn`` compiled; a compiled ``fn`` is used as it is (its own ``argnums``), unless
    ``has_aux`` asks for what it was not compiled with."""
    if isinstance(fn, CompiledFunction) and fn.has_aux == bool(has_aux):
        return fn
    if isinstance(fn, CompiledFunction):
        base = dict(static_argnums=fn.static_argnums, static_argnames=fn.static_argnames,
                    signature=_signature_text(fn.signature), backend=fn.backend,
                    dtype=fn.dtype, cache_dir=fn.cache_dir, cflags=fn.cflags)
        base.update(options)
        options, argnums, fn = base, fn.argnums[0] if fn.single else fn.argnums, fn.fn
    return CompiledFunction(fn, argnums=argnums, has_aux=has_aux, **options)


def vmap(fn, in_axes=0, out_axes=0, *, axis_size=None, **options):
    """``fn`` mapped over an axis of its arguments, JAX style (API.md §6): a batch of examples
    in one call, computed without a Python loop.

    ``in_axes``: the axis of every argument that runs over the examples: an int (negative
    counts from the end), None (shared by every example), or a tuple (or list) with one entry
    per positional argument, each an int, None or a pytree of them matching (a prefix of) its
    argument. Keyword arguments are mapped along axis 0. ``out_axes``: where the examples' axis
    goes in each result leaf, likewise (None: a result that must not depend on a mapped input).
    ``axis_size``: the number of examples when no argument is mapped.

    Called on plain arrays the batched function is compiled (``options`` go to
    ``symgrad.compile``: ``backend=``, ``dtype=``, ``signature=`` -- a named dimension there
    makes the batch size a run-time size, one native function for every batch); called inside
    a traced function (``compile``, ``grad``, ``jacobian``, another ``vmap``) it emits the
    batched statements into that trace, so ``compile(vmap(grad(f)))`` is one native function.
    Raises ValueError naming the arguments whose mapped sizes differ.
    """
    if not (in_axes is None or isinstance(in_axes, (int, tuple, list))):
        raise TypeError(f"vmap in_axes must be an int, None, or a tuple of entries "
                        f"corresponding to the positional arguments passed to the function, "
                        f"but got {in_axes!r}")
    if isinstance(in_axes, list):
        in_axes = tuple(in_axes)

    def batched(*args, **kwargs):
        vmapping.check_in_axes(in_axes, args)
        if transforms.any_traced(args, kwargs):
            return vmapping.call(fn, in_axes, out_axes, axis_size, args, kwargs)
        return batched.compiled(*args, **kwargs)
    batched = _named(batched, fn, "vmap")
    if isinstance(fn, CompiledFunction):        # its static arguments stay static
        options = dict(dict(static_argnums=fn.static_argnums,
                            static_argnames=fn.static_argnames), **options)
    # Made after _named: it reads the parameters batched now has (fn's).
    batched.compiled = CompiledFunction(batched, argnums=(), **options)
    return batched


def _argnums_tuple(argnums):
    return (argnums,) if isinstance(argnums, int) else tuple(argnums)


def jacobian(fn, argnums=0, mode="auto", has_aux=False, **options):
    """The compiled Jacobian of ``fn`` with respect to ``argnums``: ``out.shape + in.shape``.

    ``mode``: ``"forward"`` (one jvp per input coordinate), ``"reverse"`` (one vjp per output
    coordinate) or ``"auto"``: forward when the differentiated inputs have fewer elements than
    the result, reverse otherwise. As in JAX, the result has the structure of ``fn``'s result,
    each leaf holding the structure of the argument (a tuple of them for a tuple ``argnums``);
    ``has_aux``: ``fn`` returns ``(out, aux)`` and the call ``(jacobian, aux)``. ``options``
    go to ``symgrad.compile`` (``backend=``, ``dtype=``, ...). Raises ValueError for an
    unknown mode, integer results or run-time sizes.
    """
    transforms.choose_mode(mode, 0, 0)
    target, single, nums, options = _target(fn, argnums, options)

    def jac(*args, **kwargs):
        return transforms.jacobian(target, nums, single, mode, args, kwargs, has_aux=has_aux)
    return CompiledFunction(_named(jac, target, "jacobian"), argnums=nums, **options)


def hessian(fn, argnums=0, **options):
    """The compiled Hessian of a scalar ``fn``: the forward-mode Jacobian of its reverse-mode
    gradient (``in.shape + in.shape``; nested structures for a pytree or tuple ``argnums``,
    as in JAX)."""
    target, single, nums, options = _target(fn, argnums, options)

    def gradient(*args, **kwargs):
        return transforms.value_and_grad(target, nums, single, args, kwargs)[1]

    def hess(*args, **kwargs):
        return transforms.jacobian(_named(gradient, target, "grad"), nums, single, "forward",
                                   args, kwargs)
    return CompiledFunction(_named(hess, target, "hessian"), argnums=nums, **options)


def _target(fn, argnums, options):
    """The function to transform (a compiled one's own, with its static arguments kept in
    ``options``), whether ``argnums`` is an int, argnums as a tuple, and the options."""
    if isinstance(fn, CompiledFunction):
        options = dict(dict(static_argnums=fn.static_argnums,
                            static_argnames=fn.static_argnames), **options)
        fn = fn.fn
    single = isinstance(argnums, int)
    return fn, single, _argnums_tuple(argnums), options


def _named(wrapper, fn, kind):
    """``wrapper`` with ``fn``'s parameters (for argument names) and the name kind_<fn>."""
    functools.update_wrapper(wrapper, fn)
    wrapper.__name__ = wrapper.__qualname__ = f"{kind}_{getattr(fn, '__name__', 'f')}"
    return wrapper


def _entry_point(cf, method, kind):
    def entry(*args, **kwargs):
        return method(*args, **kwargs)
    entry = _named(entry, cf.fn, kind)
    entry.compiled = cf
    return entry


def _inside_trace(args, kw=None):
    """Whether a call must be inlined into the trace being built rather than run: it has a
    traced argument, or it is made while tracing at all -- the function may close over traced
    values (``x * grad(lambda y: x * y)(2.0)``), which only the enclosing graph can compute. As
    under ``jax.jit``, a call made while tracing gives traced values."""
    return transforms.any_traced(args, kw) or current_builder() is not None


def _hvp_traced(fn, argnums, single, args, v):
    def gradient(*xs):
        return transforms.value_and_grad(fn, argnums, False, xs)[1]
    _, hv = transforms.jvp(_named(gradient, fn, "grad"), argnums, args, v)
    return hv[0] if single else hv


def _parameters(names):
    import inspect
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature([inspect.Parameter(n, kind) for n in names])


def check_grad(fn, *args, argnums=0, **options):
    """``symgrad.check_grad``: check the gradient of ``fn`` (a CompiledFunction or a plain
    function, compiled with the C backend) at ``args``; see ``tools.check.check_compiled``."""
    argnums_t = (argnums,) if isinstance(argnums, int) else tuple(argnums)
    cf = fn if isinstance(fn, CompiledFunction) else CompiledFunction(fn, argnums=argnums)
    if cf.argnums != argnums_t:
        cf = CompiledFunction(cf.fn, argnums=argnums_t, static_argnums=cf.static_argnums,
                              static_argnames=cf.static_argnames, has_aux=cf.has_aux,
                              backend=cf.backend, dtype=cf.dtype, cache_dir=cf.cache_dir,
                              cflags=cf.cflags)
    return check.check_compiled(cf, *args, argnums=argnums, **options)


def _origin(fn):
    """Where ``fn`` was written, ``loss.py:12``, for the generated code's title."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return "Python"
    return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"
