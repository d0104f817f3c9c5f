"""Calling an ahead-of-time built library from Python, with numpy and cffi only.

``symgrad build`` ships this file's code inside the loader it writes beside the library
(``<spec>.py``, rendered by ``symgrad/templates/loader.py.j2``, which adds only the docstring
listing the exports); it must therefore import nothing from symgrad, nor need sympy.
Everything about the exports comes from the build's manifest, ``<spec>.json``: argument
names, dtypes and shapes, the pytree structure of the arguments, result and gradients
(tuples, lists, dicts, named tuples and None, as JSON), the run-time sizes in the order the C
functions take them, each C function's outputs, the cffi declarations and the status codes. An output dimension is a polynomial of the sizes
with integer coefficients, stored as data (``[[coefficient, {"N": power}], ...]``), so nothing
is evaluated from text.

``load(loader_path)`` returns the exports as functions. Everything they use is bound inside
``load``, in their closure, so an export named like a module or builtin the code needs (``np``,
``len``, ``tuple``, ...) can be installed in the loader's namespace without shadowing it.
"""


def load(loader_path):
    """The exports of the build whose loader is ``loader_path`` (``<dir>/<spec>.py``, next to
    ``<spec>.json`` and the library): ``{name: function}``, with ``name_value_and_grad`` for
    each export that has a gradient."""
    import builtins
    import json
    import os
    from collections import namedtuple

    import cffi
    import numpy as np

    len, tuple, float, int, getattr, zip, isinstance, open = (
        builtins.len, builtins.tuple, builtins.float, builtins.int, builtins.getattr,
        builtins.zip, builtins.isinstance, builtins.open)
    dict, list, sorted, iter, next, repr, enumerate = (
        builtins.dict, builtins.list, builtins.sorted, builtins.iter, builtins.next,
        builtins.repr, builtins.enumerate)
    TypeError, ValueError, IndexError, MemoryError, RuntimeError = (
        builtins.TypeError, builtins.ValueError, builtins.IndexError, builtins.MemoryError,
        builtins.RuntimeError)

    here = os.path.dirname(os.path.abspath(loader_path))
    stem = os.path.splitext(os.path.basename(loader_path))[0]
    with open(os.path.join(here, stem + ".json"), encoding="utf-8") as f:
        manifest = json.load(f)
    status_codes = manifest["status_codes"]
    ffi = cffi.FFI()
    ffi.cdef(manifest["cdef"])
    lib = ffi.dlopen(os.path.join(here, manifest["library"]))
    exports = {e["name"]: e for e in manifest["exports"]}

    def dimension(dim, sizes):
        """A dimension of the build at the bound sizes: an int, or a polynomial of sizes."""
        if isinstance(dim, int):
            return dim
        total = 0
        for coefficient, powers in dim:
            term = coefficient
            for name, power in powers.items():
                term *= sizes[name] ** power
            total += term
        return total

    def argument(value, arg, sizes, export):
        """``value`` as the C-contiguous array the library takes for ``arg``, binding the
        run-time sizes its shape gives (``sizes``); TypeError or ValueError naming it."""
        arr = np.asarray(value)
        if arr.dtype.kind not in "biufc" or not np.can_cast(arr.dtype, arg["dtype"], "same_kind"):
            raise TypeError(f"{export}: argument {arg['path']!r} has dtype {arr.dtype}; "
                            f"expected {arg['type']}")
        arr = np.asarray(arr, dtype=arg["dtype"], order="C")   # keeps 0-d arrays 0-d
        if arr.ndim != len(arg["shape"]):
            raise ValueError(f"{export}: argument {arg['path']!r} has shape {arr.shape}; "
                             f"expected {arg['type']}")
        for want, got in zip(arg["shape"], arr.shape):
            if isinstance(want, int):
                if want != got:
                    raise ValueError(f"{export}: argument {arg['path']!r} has shape "
                                     f"{arr.shape}; expected {arg['type']}")
            elif sizes.setdefault(want, got) != got:
                raise ValueError(f"{export}: argument {arg['path']!r} has shape {arr.shape}, so "
                                 f"{want} = {got}, but an earlier argument set {want} = "
                                 f"{sizes[want]}")
        return arr

    def flatten(tree, value, where, export, leaves):
        """The leaves of ``value``, which must have the structure ``tree`` (JSON)."""
        kind = tree["kind"]
        if kind == "leaf":
            leaves.append(value)
        elif kind == "none":
            if value is not None:
                raise TypeError(f"{export}: {where} must be None")
        elif kind == "dict":
            if not isinstance(value, dict) or sorted(value, key=repr) != sorted(tree["keys"],
                                                                                 key=repr):
                raise TypeError(f"{export}: {where} must be a dict with keys {tree['keys']}")
            for key, child in zip(tree["keys"], tree["children"]):
                flatten(child, value[key], f"{where}[{key!r}]", export, leaves)
        else:
            if not isinstance(value, (tuple, list)) or len(value) != len(tree["children"]):
                raise TypeError(f"{export}: {where} must be a {kind} of "
                                f"{len(tree['children'])}")
            for k, child in enumerate(tree["children"]):
                flatten(child, value[k], f"{where}[{k}]", export, leaves)
        return leaves

    def unflatten(tree, values):
        """The structure ``tree`` (JSON) rebuilt around the iterator ``values``."""
        kind = tree["kind"]
        if kind == "leaf":
            return next(values)
        if kind == "none":
            return None
        children = [unflatten(child, values) for child in tree["children"]]
        if kind == "dict":
            return dict(zip(tree["keys"], children))
        if kind == "namedtuple":
            return namedtuple(tree["name"], tree["fields"])(*children)
        return list(children) if kind == "list" else tuple(children)

    def leaves_of(export, args):
        """The arrays (or numbers) the C function takes, from the export's arguments."""
        e = exports[export]
        if len(args) != len(e["parameters"]):
            raise TypeError(f"{export}() takes {len(e['parameters'])} arguments "
                            f"({', '.join(e['parameters'])}), got {len(args)}")
        leaves = []
        for tree, value, name in zip(e["structure"]["args"], args, e["parameters"]):
            flatten(tree, value, name, export, leaves)
        return leaves

    def call(export, function, args):
        """Call ``function`` ("value" or "value_and_grad") of ``export`` on the leaves
        ``args``; its outputs, a 0-d one as a float."""
        e = exports[export]
        sizes = {}
        arrays = [argument(v, a, sizes, export) for v, a in zip(args, e["arguments"])]
        c = e["calls"][function]
        outputs = [np.empty(tuple(dimension(d, sizes) for d in o["shape"]), dtype=o["dtype"])
                   for o in c["outputs"]]
        status = getattr(lib, c["c_name"])(
            *[sizes[name] for name in e["sizes"]],
            *[ffi.from_buffer(a["ctype"] + "[]", x) for a, x in zip(e["arguments"], arrays)],
            *[ffi.from_buffer(o["ctype"] + "[]", x, require_writable=True)
              for o, x in zip(c["outputs"], outputs)])
        if status == status_codes["SYMGRAD_EINDEX"]:
            raise IndexError(f"{export}: an integer index argument is out of range")
        if status == status_codes["SYMGRAD_ESIZE"]:
            raise ValueError(f"{export}: a run-time size is negative")
        if status == status_codes["SYMGRAD_ENOMEM"]:
            raise MemoryError(f"{export}: the workspace could not be allocated")
        if status != status_codes["SYMGRAD_OK"]:
            raise RuntimeError(f"{export}: status {status}")
        return [(complex(o) if o.dtype.kind == "c" else float(o)) if o.ndim == 0 else o
                for o in outputs]

    def value_function(name, doc):
        result = exports[name]["structure"]["result"]

        def value(*args):
            out = call(name, "value", leaves_of(name, args))
            return unflatten(result, iter(out))
        value.__name__ = value.__qualname__ = name
        value.__doc__ = doc
        return value

    def value_and_grad_function(name, doc, single):
        grad_trees = exports[name]["structure"]["grads"]

        def value_and_grad(*args):
            value, *grads = call(name, "value_and_grad", leaves_of(name, args))
            grads = iter(grads)
            grads = [unflatten(tree, grads) for tree in grad_trees]
            return value, (grads[0] if single else tuple(grads))
        value_and_grad.__name__ = value_and_grad.__qualname__ = name + "_value_and_grad"
        value_and_grad.__doc__ = doc
        return value_and_grad

    functions = {}
    for name, e in exports.items():
        signature = ", ".join(f"{a['path']}: {a['type']}" for a in e["arguments"])
        functions[name] = value_function(name, f"{e['function']}({signature}): the value.")
        if "value_and_grad" in e["calls"]:
            functions[name + "_value_and_grad"] = value_and_grad_function(
                name, f"The value of {e['function']} and its gradient with respect to "
                f"{', '.join(e['gradient_of'])}.", len(e["gradient_of"]) == 1)
    return functions
