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

from symgrad.core import dims
from symgrad.frontend import tracing
from symgrad.frontend import transforms
from symgrad.core.autodiff import value_and_grad_graph
from symgrad.errors import DTypeError, ShapeError
from symgrad import backends
from symgrad.backends.c.module import render_program
from symgrad.core.passes import optimize
from symgrad.tools import check
from symgrad.core.types import FLOAT_DTYPES, TensorType, canonical_dtype, parse_type

class Specialization:
    """One traced (and, for the C backend, compiled) version of the function."""

    def __init__(self, owner, types, static):
        self.owner = owner
        self.types = types                  # TensorType per argument, None for static ones
        self.static = static
        self.traced = [i for i, t in enumerate(types) if t is not None]
        graph = tracing.trace(owner.fn, types, static, name=owner.__name__)
        self.graph = optimize(graph)
        self._lock = threading.Lock()
        self._vg = None
        self._executable = None

    def value_and_grad_graph(self):
        if self._vg is None:
            positions = [self.traced.index(i) for i in self.owner.argnums]
            self._vg = value_and_grad_graph(self.graph, positions)
        return self._vg

    @functools.cached_property
    def differentiable(self):
        """Whether the result is one float scalar, which grad needs."""
        out = self.graph.outputs[0]
        return not self.graph.tuple_output and out.shape == () and out.type.is_float

    def program(self):
        """What a backend runs: this specialization's graphs."""
        return backends.Program(
            self.owner.__name__, _origin(self.owner.fn), self.graph,
            self.value_and_grad_graph() if self.differentiable else None,
            tuple(self.traced.index(i) for i in self.owner.argnums))

    def executable(self):
        executable = self._executable       # built once; later calls take no lock
        if executable is None:
            with self._lock:
                if self._executable is None:
                    self._executable = self.owner._build(self)
                executable = self._executable
        return executable


class CompiledFunction:
    """The object ``@symgrad.compile`` returns; see API.md §2."""

    def __init__(self, fn, *, argnums=0, static_argnums=(), signature=None, backend="c",
                 dtype=None, cache_dir=None, cflags=None):
        backend = os.environ.get("SYMGRAD_BACKEND", backend) if backend == "c" else backend
        self._backend = backends.get(backend)       # ValueError for an unknown name
        self.fn = fn
        self.single = isinstance(argnums, int)
        self.argnums = (argnums,) if self.single else tuple(argnums)
        self.static_argnums = ((static_argnums,) if isinstance(static_argnums, int)
                               else tuple(static_argnums))
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
        # The name, docstring and module, not fn's __dict__: when fn is a CompiledFunction
        # that would overwrite this one's argnums and specializations.
        functools.update_wrapper(self, fn, updated=())
        # Looked up once: the per-call path must not inspect the function again.
        self._parameter_names = tracing.parameter_names(fn)
        self._arity_range = self._arity()
        # The fast path (see _remember): fast key -> the call, for values and for gradients.
        self._fast_values, self._fast_grads = {}, {}
        self._fast_key = (_fast_key if not self.static_argnums else
                          functools.partial(_fast_key_static, frozenset(self.static_argnums)))

    # -- specialization ------------------------------------------------------------------------

    def _convert(self, args):
        """The arrays to pass, the specialization key, the static arguments and how each array
        was made.

        Checks everything the native code relies on before it runs: the number of arguments,
        dtypes (NumPy ``same_kind`` casts are made, anything else raises ``DTypeError`` naming
        the argument), and with a ``signature`` each argument's rank, fixed sizes and named
        sizes (one ``N`` must mean one size across arguments; ``ShapeError`` otherwise).
        Without a signature a new shape is simply a new specialization.

        How each array was made (one entry per array) decides whether later calls with the
        same fast key may skip all this (``_remember``): ``None`` for an array passed as it
        is, a dtype for a NumPy or Python float scalar converted by ``np.array(a, dtype)`` in
        one step, ``False`` for anything else.
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
        arrays, key, static, sizes, made = [], [], {}, {}, []
        weak_float = self.dtype
        for i, a in enumerate(args):
            if i in self.static_argnums:
                try:
                    hash(a)
                except TypeError:
                    raise TypeError(f"static argument {i} of {self.__name__} must be hashable, "
                                    f"got {type(a).__name__}") from None
                key.append(("static", type(a).__name__, a))
                static[i] = a
                continue
            # The common case first: an array symgrad computes with as it is.
            if type(a) is np.ndarray and a.dtype in _READY and (
                    self.dtype is None or a.dtype.kind != "f"):
                arr = a
            elif type(a) is float:
                if weak_float is None:
                    weak_float = _widest_float(args, self.static_argnums)
                arr = np.array(a, dtype=weak_float)
            else:
                if weak_float is None:
                    weak_float = _widest_float(args, self.static_argnums)
                arr = _to_array(a, self._label(i), self.__name__, weak_float, self.dtype)
            how = (None if arr is a and type(a) is np.ndarray else
                   arr.dtype if type(a) in _SCALARS else False)
            if self.signature:
                checked = _check_signature(self.signature, i, arr, self.__name__, sizes)
                if checked is not arr:          # a second cast: not one np.array() step
                    arr, how = checked, False
            if i in self.argnums and arr.dtype.kind not in "fc":
                raise ValueError(f"cannot differentiate {self.__name__} with respect to "
                                 f"{self._label(i)}: it is {arr.dtype} data. Integer arrays "
                                 f"are never differentiated; pass floats.")
            arrays.append(arr)
            made.append(how)
            key.append((arr.shape if not self.signature else
                        _declared_shape(self.signature, i, arr.shape), arr.dtype))
        return arrays, tuple(key), static, made

    def _label(self, i):
        names = self._parameter_names
        return f"argument {i}" + (f" ({names[i]!r})" if i < len(names) else "")

    def _types(self, key):
        """The argument types of a specialization key (None for static arguments)."""
        return [None if k[0] == "static" else TensorType(tuple(k[0]), k[1].name) for k in key]

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

    def specialize(self, *args):
        """The Specialization for these arguments, and the converted arrays."""
        return self._specialize(args)[:2]

    def _specialize(self, args):
        arrays, key, static, made = self._convert(args)
        spec = self._specs.get(key)
        if spec is None:
            with self._lock:
                spec = self._specs.get(key)
                if spec is None:
                    spec = Specialization(self, self._types(key), static)
                    self._specs[key] = spec
        return spec, arrays, made

    def _build(self, spec):
        return self._backend.build(spec.program(), cache_dir=self.cache_dir, cflags=self.cflags)

    # -- the API -------------------------------------------------------------------------------

    def __call__(self, *args):
        # .get, not try/except KeyError: an error on the full path must not be reported as
        # raised "while handling" a KeyError.
        call = self._fast_values.get(self._fast_key(args))
        if call is None:                        # not seen yet, or an unhashable static value
            return self._call(args)
        return call(args)

    def grad(self, *args):
        """The gradient with respect to ``argnums``: an array, or a tuple for a tuple."""
        return self.value_and_grad(*args)[1]

    def value_and_grad(self, *args):
        """``(value, grad)``; fits ``scipy.optimize.minimize(..., jac=True)``."""
        call = self._fast_grads.get(self._fast_key(args))
        if call is None:
            return self._grads(args)
        return call(args)

    def _call(self, args):
        if transforms.any_traced(args):
            return transforms.call(self.fn, args)
        spec, arrays, made = self._specialize(args)
        executable = spec.executable()
        finish = _values_of(spec)
        self._remember(self._fast_values, args, spec, made, executable.value, finish,
                       getattr(executable, "scalars", None))
        return finish(executable.value(arrays))

    def _grads(self, args):
        if transforms.any_traced(args):
            return transforms.value_and_grad(self.fn, self.argnums, self.single, args)
        spec, arrays, made = self._specialize(args)
        if not spec.differentiable:
            what = ("a tuple" if spec.graph.tuple_output else str(spec.graph.outputs[0].type))
            raise ValueError(f"grad needs a scalar float result; {self.__name__} returns "
                             f"{what}. Reduce it (e.g. snp.sum) or use symgrad.jacobian.")
        executable = spec.executable()
        finish = _grads_of(spec, self.single)
        scalar_run = getattr(executable, "scalars_and_grad", None)
        if scalar_run is not None and self.single:
            scalar_run = _first_grad(scalar_run)
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
        derivative along ``tangents`` (one per ``argnums`` entry; for an int ``argnums`` the
        tangent itself may be given). Both have the structure of ``fn``'s result."""
        args, tangents = tuple(args), self._per_argnum(tangents, "tangents")
        if transforms.any_traced(args + tangents):
            return transforms.jvp(self.fn, self.argnums, args, tangents)
        n = len(args)
        cf = self._derived("jvp", n, lambda *xs: _flatten(
            transforms.jvp(self.fn, self.argnums, xs[:n], xs[n:])))
        flat = cf(*args, *tangents)
        if not self.specialize(*args)[0].graph.tuple_output:
            return flat[0], flat[1]
        half = len(flat) // 2
        return tuple(flat[:half]), tuple(flat[half:])

    def hvp(self, args, v):
        """The Hessian-vector product H·v of a scalar ``fn`` with respect to ``argnums``, by
        forward mode over reverse mode (one gradient sweep and its tangent). ``v``: one array
        per ``argnums`` entry (or the array itself for an int ``argnums``); the result has the
        structure of ``grad``'s."""
        args, v = tuple(args), self._per_argnum(v, "v")
        if transforms.any_traced(args + v):
            return _hvp_traced(self.fn, self.argnums, self.single, args, v)
        n = len(args)
        cf = self._derived("hvp", n, lambda *xs: tuple(_hvp_traced(
            self.fn, self.argnums, False, xs[:n], xs[n:])))
        out = cf(*args, *v)
        return out[0] if self.single else tuple(out)

    def _per_argnum(self, values, what):
        if self.single:
            return values if isinstance(values, tuple) and len(values) == 1 else (values,)
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
                signature = {i: entry[1] for i, entry in self.signature.items()}
                signature.update({nargs + k: self.signature[i][1]
                                  for k, i in enumerate(self.argnums) if i in self.signature})
            fn.__name__ = fn.__qualname__ = f"{kind}_{self.__name__}"
            fn.__signature__ = _parameters(names + extra)
            derived[key] = CompiledFunction(
                fn, argnums=(), static_argnums=self.static_argnums, signature=signature,
                backend=self.backend, dtype=self.dtype, cache_dir=self.cache_dir,
                cflags=self.cflags)
        return derived[key]

    def trace(self, *args):
        """The traced (and optimized) forward Graph for these arguments."""
        return self.specialize(*args)[0].graph

    def source(self, *args):
        """The generated C source for these arguments."""
        return render_program(self.specialize(*args)[0].program()).source

    def check(self, *args, **kwargs):
        """``symgrad.check_grad(self, *args, argnums=self.argnums)``."""
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
                signature=({key: text for key, text, *_ in self.signature.values()}
                           if self.signature else None),
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
    value function: a float for a scalar, else the array; a tuple for a tuple result."""
    if spec.graph.tuple_output:
        return lambda outs: tuple([_value(v) for v in outs])
    if spec.graph.outputs[0].shape == ():
        return lambda outs: float(outs[0])
    return lambda outs: outs[0]


def _grads_of(spec, single):
    """``finish((value, gradients))``: the user's ``value_and_grad`` result from the arrays of
    ``spec``'s value-and-gradient function: the value a float; each gradient an array, a 0-d
    one indexed to its NumPy scalar; the gradient itself for an int ``argnums``, else a
    tuple."""
    zero_d = any(spec.types[i].shape == () for i in spec.owner.argnums)

    def finish(outs):
        value, grads = outs
        if zero_d:
            grads = [g[()] if g.ndim == 0 else g for g in grads]
        return float(value), (grads[0] if single else tuple(grads))
    return finish


def _fast_key(args):
    """The fast key of arguments, none static: the type of each, and for an array its dtype
    and shape (an array subclass is keyed by its type, so it is never remembered)."""
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
    if signature is None:
        return None
    names = tracing.parameter_names(fn)
    parsed = {}
    for key, text in signature.items():
        index = key if isinstance(key, int) else (names.index(key) if key in names else None)
        if index is None:
            raise ValueError(f"signature names {key!r}, which is not a parameter of "
                             f"{fn.__name__}({', '.join(names)})")
        parsed[index] = (key, text, *parse_type(text))
    return parsed


def _declared_shape(signature, i, shape):
    """The shape argument ``i`` is traced with: named dimensions of the signature become
    run-time sizes (one native function for every size), the others are the actual ones."""
    if not signature or i not in signature:
        return tuple(shape)
    return tuple(dims.symbol(d) if isinstance(d, str) else s
                 for d, s in zip(signature[i][3], shape))


def _check_signature(signature, i, arr, name, sizes):
    """``arr`` checked against (and cast to) the signature's type for argument ``i``.

    ``sizes`` maps the named dimensions seen so far to their sizes; the first argument using
    a name binds it. Raises ShapeError (rank, a fixed size, or a named size that differs from
    an earlier argument's) or DTypeError (a cast NumPy's ``same_kind`` rule refuses).
    """
    if i not in signature:
        return arr
    key, text, dtype, dims = signature[i]
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
            cache_dir=None, cflags=None):
    """Compile ``fn``; usable as ``@compile`` or ``@compile(argnums=..., ...)``. See API.md §2."""
    options = dict(argnums=argnums, static_argnums=static_argnums, signature=signature,
                   backend=backend, dtype=dtype, cache_dir=cache_dir, cflags=cflags)
    if fn is None:
        return lambda f: CompiledFunction(f, **options)
    return CompiledFunction(fn, **options)


def trace(fn, *args):
    """The traced Graph of ``fn`` for these arguments (every non-static argument traced)."""
    cf = fn if isinstance(fn, CompiledFunction) else CompiledFunction(fn, backend="interp")
    return cf.trace(*args)


def grad(fn, argnums=0, **options):
    """A callable returning the gradient of ``fn`` (compiled), JAX style. Called inside a traced
    function it inlines the gradient, so it composes: ``grad(grad(f))``."""
    cf = fn if isinstance(fn, CompiledFunction) else CompiledFunction(fn, argnums=argnums, **options)
    return _entry_point(cf, cf.grad, "grad")


def value_and_grad(fn, argnums=0, **options):
    """A callable returning ``(value, gradient)`` of ``fn`` (compiled), JAX style."""
    cf = fn if isinstance(fn, CompiledFunction) else CompiledFunction(fn, argnums=argnums, **options)
    return _entry_point(cf, cf.value_and_grad, "value_and_grad")


def jacobian(fn, argnums=0, mode="auto", **options):
    """The compiled Jacobian of ``fn`` with respect to ``argnums``: ``out.shape + in.shape``.

    ``mode``: ``"forward"`` (one jvp per input coordinate), ``"reverse"`` (one vjp per output
    coordinate) or ``"auto"``: forward when the differentiated inputs have fewer elements than
    the result, reverse otherwise. A tuple ``argnums`` gives a tuple of Jacobians; a function
    returning a tuple gives one entry per result. ``options`` go to ``symgrad.compile``
    (``backend=``, ``dtype=``, ...). Raises ValueError for an unknown mode, integer results
    or run-time sizes.
    """
    transforms.choose_mode(mode, 0, 0)
    target, single, nums = _target(fn, argnums)

    def jac(*args):
        return transforms.jacobian(target, nums, single, mode, args)
    return CompiledFunction(_named(jac, target, "jacobian"), argnums=nums, **options)


def hessian(fn, argnums=0, **options):
    """The compiled Hessian of a scalar ``fn``: the forward-mode Jacobian of its reverse-mode
    gradient (``in.shape + in.shape``; nested tuples for a tuple ``argnums``)."""
    target, single, nums = _target(fn, argnums)

    def gradient(*args):
        return transforms.value_and_grad(target, nums, single, args)[1]

    def hess(*args):
        return transforms.jacobian(_named(gradient, target, "grad"), nums, single, "forward",
                                   args)
    return CompiledFunction(_named(hess, target, "hessian"), argnums=nums, **options)


def _target(fn, argnums):
    target = fn.fn if isinstance(fn, CompiledFunction) else fn
    single = isinstance(argnums, int)
    return target, single, ((argnums,) if single else tuple(argnums))


def _named(wrapper, fn, kind):
    """``wrapper`` with ``fn``'s parameters (for argument names) and the name kind_<fn>."""
    functools.update_wrapper(wrapper, fn)
    wrapper.__name__ = wrapper.__qualname__ = f"{kind}_{getattr(fn, '__name__', 'f')}"
    return wrapper


def _entry_point(cf, method, kind):
    def entry(*args):
        return method(*args)
    entry = _named(entry, cf.fn, kind)
    entry.compiled = cf
    return entry


def _hvp_traced(fn, argnums, single, args, v):
    def gradient(*xs):
        return transforms.value_and_grad(fn, argnums, False, xs)[1]
    _, hv = transforms.jvp(_named(gradient, fn, "grad"), argnums, args, v)
    return hv[0] if single else hv


def _flatten(pair):
    """(outputs, tangents), each a value or a tuple, as one flat tuple."""
    flat = []
    for part in pair:
        flat.extend(part if isinstance(part, tuple) else (part,))
    return tuple(flat)


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
                              backend=cf.backend, dtype=cf.dtype, cache_dir=cf.cache_dir,
                              cflags=cf.cflags)
    return check.check_compiled(cf, *args, argnums=argnums, **options)


def _origin(fn):
    """Where ``fn`` was written, ``loss.py:12``, for the generated code's title."""
    code = getattr(fn, "__code__", None)
    if code is None:
        return "Python"
    return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}"
