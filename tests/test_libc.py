"""The libc declarations a generated module writes itself (symgrad/backends/c/libc.py), checked
against the system's own headers: the compiler rejects a prototype that disagrees with them, and
each macro gives what <math.h>'s gives on every kind of float."""
import ctypes

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.backends.c import compiler, libc
from symgrad.errors import CompileError

HEADERS = "#include <math.h>\n#include <stdlib.h>\n#include <string.h>\n"


def _build(tmp_path, source):
    src = tmp_path / "check.c"
    src.write_text(source)
    lib = tmp_path / "libcheck.so"
    compiler.compile_library(src, lib, cflags=("-O0", "-Werror"), use_blas=False)
    return ctypes.CDLL(str(lib))


def test_every_prototype_agrees_with_the_system_headers(tmp_path):
    prototypes = "".join(f"{p};\n" for p in libc.PROTOTYPES.values())
    _build(tmp_path, HEADERS + prototypes + "int symgrad_check(void) { return 0; }\n")


def test_a_conflicting_prototype_fails_the_check(tmp_path):
    """The test above can fail: a prototype that disagrees is an error."""
    with pytest.raises(CompileError, match="conflicting types"):
        _build(tmp_path, HEADERS + "float tanh(double);\n")


def test_each_macro_gives_what_math_h_gives(tmp_path):
    ours = "".join(f"#define symgrad_{d}\n" for d in libc.MACROS.values())
    values = "0.0, -0.0, 1.0, -2.5, 1e-310, -1e-310, 1e308, INFINITY, -INFINITY, NAN, -NAN"
    checks = []
    for name, definition in libc.MACROS.items():
        if "(x)" in definition:          # a classification: compared on every value
            for t in ("double", "float"):
                checks.append(f"for (int i = 0; i < n; ++i) if (!!symgrad_{name}(({t})v[i]) "
                              f"!= !!{name}(({t})v[i])) return __LINE__;")
        else:                             # a constant: compared bit for bit
            checks.append(f"{{ double a = symgrad_{name}, b = {name}; "
                          f"if (memcmp(&a, &b, sizeof a) != 0) return __LINE__; }}")
    body = "\n    ".join(checks)
    lib = _build(tmp_path, HEADERS + ours + f"""
int symgrad_check(void)
{{
    const double v[] = {{{values}}};
    const int n = (int)(sizeof v / sizeof v[0]);
    {body}
    return 0;
}}
""")
    assert lib.symgrad_check() == 0


def test_declarations_are_those_the_code_uses():
    source = "/* free(x), exp */\ny = tanhf(x) + (isnan(z) ? NAN : sqrt(w)); // sin(y)\n"
    prototypes, macros = libc.declarations(source)
    assert prototypes == ["float tanhf(float)", "double sqrt(double)"]
    assert macros == ['NAN (__builtin_nanf(""))', "isnan(x) __builtin_isnan(x)"]


def test_an_undeclared_call_fails_the_build(tmp_path):
    """What keeps a gap in the table from becoming a wrong number: C99 would otherwise call an
    undeclared tanh as a function returning int."""
    src = tmp_path / "undeclared.c"
    src.write_text("double f(double x) { return tanh(x); }\n")
    with pytest.raises(CompileError, match="implicit declaration|implicitly declaring"):
        compiler.compile_library(src, tmp_path / "libundeclared.so", use_blas=False)


def test_a_module_includes_no_libc_header_and_declares_what_it_calls():
    f = symgrad.compile(lambda x: snp.sum(snp.tanh(snp.where(x > 0, -np.inf, x)) ** 2))
    x = np.array([0.5, -0.25, -1.0])
    src = f.source(x)
    assert "#include <math.h>" not in src and "#include <stdlib.h>" not in src
    assert "double tanh(double);" in src and "#define INFINITY (__builtin_inff())" in src
    np.testing.assert_allclose(f(x), 1.0 + np.tanh(-0.25) ** 2 + np.tanh(-1.0) ** 2, rtol=1e-15)
