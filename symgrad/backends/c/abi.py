"""cffi's out-of-line ABI module for a library's prototypes: the Python text that makes its FFI.

symgrad calls a library's functions through cffi in ABI mode, with the FFI this text makes
(``native._ffi_of``); the text is kept in the cache entry's manifest, so a warm process parses
no C. Making it with ``ffi.cdef`` parses the prototypes with pycparser, whose import alone
costs 24-36 ms (four fresh interpreters): on every cold build, on the other core while gcc runs, where it slowed gcc by
~17 ms (the first build of benchmarks/startup.py's 3-layer network: 183 -> 159 ms without it,
medians of 30 interleaved).

symgrad's prototypes have one shape (``prototypes.h.j2``): ``int name(P1, P2, ...);``, each
parameter a C type of ``cspell.CTYPES``, or a pointer to one, maybe const and restrict. This
module reads them with a regular expression into cffi's own type model, as ``cdef`` would, and
has cffi's recompiler write the text: the same bytes (``tests/test_abi.py`` checks every type).
Anything else (or a cffi whose recompiler works otherwise) gets None, and the caller parses
with ``cdef``.
"""
from __future__ import annotations

import io
import re
import types

# A prototype, and a parameter: "[const ]T [*[restrict ]]name".
_PROTOTYPE = re.compile(r"int (\w+)\(([^()]*)\);")
_PARAMETER = re.compile(r"(const )?(double _Complex|float _Complex|double|float|int64_t|int32_t"
                        r"|bool) (\*(?:restrict )?)?\w+")
# Our C types by cffi's names for them (cdef reads bool as _Bool, complex as cffi's typedefs).
_CFFI_NAMES = {"double": "double", "float": "float", "int64_t": "int64_t",
               "int32_t": "int32_t", "bool": "_Bool",
               "double _Complex": "_cffi_double_complex_t",
               "float _Complex": "_cffi_float_complex_t"}


def module_text(cdef, module_name):
    """The text ``make_py_source`` writes for an FFI whose ``cdef`` was ``cdef``, or None when
    ``cdef`` is not only prototypes of symgrad's shape."""
    declarations = _declarations(cdef)
    if declarations is None:
        return None
    try:
        from cffi import recompiler
        # What the recompiler reads of an FFI when writing Python: its parser's declarations,
        # and nothing included.
        parser = types.SimpleNamespace(_declarations=declarations,
                                       _included_declarations=set())
        ffi = types.SimpleNamespace(_parser=parser, _included_ffis=[])
        text = io.StringIO()
        recompiler.make_py_source(ffi, module_name, text)
    except (ImportError, AttributeError, TypeError, KeyError):
        return None          # a cffi that reads more of an FFI than these: cdef does it
    return text.getvalue()


def _declarations(cdef):
    """``{"function <name>": (its cffi function pointer type, 0)}``, as cffi's parser declares
    them; None when a line is not a prototype of symgrad's shape."""
    from cffi import model
    found = {}
    for line in cdef.splitlines():
        if not line.strip():
            continue
        prototype = _PROTOTYPE.fullmatch(line.strip())
        if prototype is None:
            return None
        name, text = prototype.groups()
        args = []
        for param in filter(None, (p.strip() for p in text.split(","))):
            parsed = _PARAMETER.fullmatch(param)
            if parsed is None:
                return None
            const, ctype, pointer = parsed.groups()
            tp = model.PrimitiveType(_CFFI_NAMES[ctype])
            if pointer:
                tp = model.PointerType(tp, model.Q_CONST if const else 0)
            elif const:
                return None         # a const value parameter: cdef's business
            args.append(tp)
        if f"function {name}" in found:
            return None
        raw = model.RawFunctionType(tuple(args), model.PrimitiveType("int"), False)
        found[f"function {name}"] = (raw.as_function_pointer(), 0)
    return found or None
