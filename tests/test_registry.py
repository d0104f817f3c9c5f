"""The primitive registry: every primitive is complete (adjoint and tangent rule included), stated derivatives are right, and every
primitive has a row in the test table of ``test_primitives.py``."""
import pytest
import sympy as sp

from symgrad.core.primitives import REGISTRY, Primitive
from symgrad.core.primitives.elementwise import OUT, SYMBOLS
from symgrad.core.primitive import register
from test_elementwise_more import primitives_used as more_primitives_used
from test_primitives import TABLE, primitives_used

NAMES = sorted(REGISTRY)


def test_registry_is_populated():
    # The op set of API.md §1 needs at least these; a broken import would leave REGISTRY short.
    assert {"add", "mul", "exp", "log", "matmul", "reduce_sum", "reduce_max", "gather",
            "scatter_add", "slice", "select", "logistic"} <= set(REGISTRY)


@pytest.mark.parametrize("name", NAMES)
def test_primitive_has_every_field(name):
    prim = REGISTRY[name]
    assert isinstance(prim, Primitive)
    assert prim.name == name
    assert callable(prim.shape_rule)
    assert callable(prim.impl)
    assert callable(prim.vjp)
    assert callable(prim.jvp), "a tangent rule beside the adjoint rule"
    assert (prim.c_expr is None) != (prim.c_kernel is None), "exactly one C rendering"
    assert callable(prim.c_expr if prim.c_expr is not None else prim.c_kernel)
    # Fused elementwise primitives render as C expressions; structured ones as kernels.
    assert (prim.c_expr is not None) == prim.elementwise
    assert isinstance(prim.doc, str) and prim.doc.strip()


def test_register_rejects_duplicates_and_missing_c():
    noop = lambda *a, **k: None   # noqa: E731
    with pytest.raises(ValueError, match="registered twice"):
        register(Primitive("add", noop, noop, noop, c_expr=noop, jvp=noop))
    with pytest.raises(ValueError, match="exactly one of c_expr and c_kernel"):
        register(Primitive("no_c_rule", noop, noop, noop, jvp=noop))
    with pytest.raises(ValueError, match="exactly one of c_expr and c_kernel"):
        register(Primitive("two_c_rules", noop, noop, noop, c_expr=noop, c_kernel=noop,
                           jvp=noop))
    with pytest.raises(ValueError, match="needs a jvp"):
        register(Primitive("no_jvp_rule", noop, noop, noop, c_expr=noop))
    assert not {"no_c_rule", "two_c_rules", "no_jvp_rule"} & set(REGISTRY)


SYMPY_DEFINED = sorted(name for name, p in REGISTRY.items() if p.expr is not None)


def test_sympy_defined_primitives_are_found():
    assert {"exp", "sqrt", "tanh", "logistic", "pow", "sin", "arcsin"} <= set(SYMPY_DEFINED)
    # Some derivatives are stated in terms of out: those are the overrides worth checking.
    overrides = {n for n in SYMPY_DEFINED
                 if any(OUT in sp.sympify(d).free_symbols for d in REGISTRY[n].derivs)}
    assert {"exp", "sqrt", "tanh", "logistic", "pow"} <= overrides


@pytest.mark.parametrize("name", SYMPY_DEFINED)
def test_stated_derivatives_equal_sympy_diff(name):
    prim = REGISTRY[name]
    args = [s for s in SYMBOLS if s in prim.expr.free_symbols]
    assert len(prim.derivs) == len(args)
    for symbol, stated in zip(args, prim.derivs):
        stated = sp.sympify(stated).subs(OUT, prim.expr)
        difference = sp.simplify(stated - sp.diff(prim.expr, symbol))
        if difference != 0:
            # sympy reads cbrt(x) as the principal x**(1/3), so its derivative differs from the
            # real one for x < 0; where both are real and defined they must agree.
            points = [{s: v for s in SYMBOLS} for v in (0.37, 0.81, 1.3)]
            difference = max(abs(complex(difference.subs(p).rewrite(sp.Pow).evalf()))
                             for p in points)
            assert difference < 1e-12, (f"d{name}/d{symbol}: {stated} != "
                                        f"{sp.diff(prim.expr, symbol)}")
        assert difference == 0 or difference < 1e-12


def test_every_primitive_has_a_row_in_the_table():
    missing = set(REGISTRY) - primitives_used() - more_primitives_used()
    assert not missing, (f"primitives {sorted(missing)} are not exercised by any row of "
                         f"tests/test_primitives.py or tests/test_elementwise_more.py; add a row")


def test_table_row_names_are_unique():
    names = [row.name for row in TABLE]
    assert len(names) == len(set(names))
