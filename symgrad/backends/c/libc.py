"""The C library functions and macros a generated module uses, declared by the module itself.

A module includes only the freestanding headers (``<stdbool.h>``, ``<stddef.h>``,
``<stdint.h>``) and declares each libc function it calls, as C99 allows (7.1.4: a library
function that needs no type from its header may be declared without it). ``<math.h>``,
``<stdlib.h>`` and ``<string.h>`` are not included: with ``-march=native`` they cost gcc about
10 ms a build (``<math.h>`` alone 6-9 ms), a tenth of the first build of a 3-layer network. The
few macros of ``<math.h>`` the code uses are defined as GCC's and Clang's builtins, as glibc
defines them (generated modules already need those compilers: vector extensions, attributes).

``declarations(source)`` picks the entries whose names the source uses. A name it misses would
be an implicit declaration, which every build makes an error (``compiler.REQUIRED_CFLAGS``), so a
gap shows up as a failed build, never as a wrong number; ``tests/test_libc.py`` compiles the
whole table beside the system's own headers, which reject any prototype that disagrees.
"""
from __future__ import annotations

import re

# <math.h> (C99 7.12) by signature; each has a float twin named with an "f" (sinf, ...).
_MATH = {
    "double {}(double)": """acos asin atan cos sin tan acosh asinh atanh cosh sinh tanh exp exp2
        expm1 log log10 log1p log2 logb cbrt fabs sqrt erf erfc lgamma tgamma ceil floor
        nearbyint rint round trunc""",
    "double {}(double, double)": """atan2 pow hypot fmod remainder copysign nextafter fdim fmax
        fmin""",
    "double {}(double, double, double)": "fma",
    "double {}(double, int)": "ldexp scalbn",
    "double {}(double, long)": "scalbln",
    "double {}(double, int *)": "frexp",
    "double {}(double, double *)": "modf",
    "double {}(double, double, int *)": "remquo",
    "double {}(double, long double)": "nexttoward",
    "double {}(const char *)": "nan",
    "int {}(double)": "ilogb",
    "long {}(double)": "lrint lround",
    "long long {}(double)": "llrint llround",
}

_OTHER = {
    # <stdlib.h>
    "malloc": "void *malloc(size_t)",
    "calloc": "void *calloc(size_t, size_t)",
    "realloc": "void *realloc(void *, size_t)",
    "free": "void free(void *)",
    "abort": "void abort(void)",
    "abs": "int abs(int)",
    "labs": "long labs(long)",
    "llabs": "long long llabs(long long)",
    # <string.h>
    "memcpy": "void *memcpy(void *restrict, const void *restrict, size_t)",
    "memmove": "void *memmove(void *, const void *, size_t)",
    "memset": "void *memset(void *, int, size_t)",
    "memcmp": "int memcmp(const void *, const void *, size_t)",
}


def _prototypes():
    table = {}
    for signature, names in _MATH.items():
        for name in names.split():
            table[name] = signature.format(name)
            single = signature.replace("long double", "@").replace("double", "float")
            table[name + "f"] = single.replace("@", "long double").format(name + "f")
    return table | _OTHER


PROTOTYPES = _prototypes()

# The <math.h> macros, each a #define's text, as GCC's and Clang's builtins (glibc's own
# definitions with those compilers).
MACROS = {
    "NAN": 'NAN (__builtin_nanf(""))',
    "INFINITY": "INFINITY (__builtin_inff())",
    "HUGE_VAL": "HUGE_VAL (__builtin_huge_val())",
    "HUGE_VALF": "HUGE_VALF (__builtin_huge_valf())",
    "isnan": "isnan(x) __builtin_isnan(x)",
    "isinf": "isinf(x) __builtin_isinf_sign(x)",
    "isfinite": "isfinite(x) __builtin_isfinite(x)",
    "isnormal": "isnormal(x) __builtin_isnormal(x)",
    "signbit": "signbit(x) __builtin_signbit(x)",
}

_COMMENT = re.compile(r"/\*.*?\*/|//[^\n]*", re.S)
_NAME = re.compile(r"[A-Za-z_]\w*")


def declarations(source):
    """``(prototypes, macros)`` the C ``source`` needs, in the table's order, for the names its
    code (not its comments) uses: ``["double tanh(double)", ...]`` and the macros' #define
    texts, ``['NAN (__builtin_nanf(""))', ...]``."""
    used = set(_NAME.findall(_COMMENT.sub(" ", source)))
    return ([text for name, text in PROTOTYPES.items() if name in used],
            [text for name, text in MACROS.items() if name in used])
