"""The primitive registry: every primitive is complete (adjoint and tangent rule included), stated derivatives are right, and every
primitive has a row in the test table of ``test_primitives.py``. The record is the single source
of truth: no module outside ``symgrad/core/primitives/`` tests a primitive by its name, importing
that package alone registers every primitive, and the facts records state (identities, views,
folding, costs) agree with the primitives' own NumPy evaluation."""
import ast
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import sympy as sp

import symgrad
from symgrad.core.ir import Node, Var
from symgrad.core.primitive import BROADCAST, PADDING, REINTERPRET, WINDOW
from symgrad.core.primitives import REGISTRY, Primitive
from symgrad.core.types import TensorType
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
        stated = sp.piecewise_fold(sp.sympify(stated).subs(OUT, prim.expr))
        # A guarded derivative (pow's) must equal sympy's on its default branch; its guards
        # only pick a value on an equation (a set of measure zero), where sympy's is 0 * inf.
        branches = stated.args if isinstance(stated, sp.Piecewise) else [(stated, sp.true)]
        assert branches[-1][1] == sp.true, f"d{name}/d{symbol} has no default branch"
        for value, cond in branches[:-1]:
            assert isinstance(cond, sp.Eq), f"d{name}/d{symbol}: guard {cond} is not an Eq"
        stated = branches[-1][0]
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


# --- the record is the single source of truth ------------------------------------------------

SYMGRAD = Path(symgrad.__file__).parent
PRIMITIVE_NAMES = frozenset(REGISTRY)


def _literal_names(node):
    """The primitive names a literal spells: a string, or a tuple/list/set of strings."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value} & PRIMITIVE_NAMES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return set().union(set(), *(_literal_names(e) for e in node.elts))
    if isinstance(node, ast.Dict):
        return set().union(set(), *(_literal_names(k) for k in node.keys if k is not None))
    return set()


def _about_primitive(node):
    """Whether an expression reads a primitive's name: ``n.prim``, ``prim``, ``node.prim in``..."""
    return any((isinstance(n, ast.Attribute) and "prim" in n.attr)
               or (isinstance(n, ast.Name) and "prim" in n.id) for n in ast.walk(node))


def name_tests(tree):
    """(line, names) of every place ``tree`` tests a primitive by its name: a comparison
    (==, !=, in, not in) of a primitive's name with a string literal or a literal collection of
    them, named or not (``n.prim in DATA_MOVEMENT``), a lookup keyed by a primitive's name in a
    literal table (``INFIX[n.prim]``, ``.get(n.prim)``), a ``case "add":`` pattern, and a
    comparison of anything with a literal collection of several primitive names
    (``kind in ("reshape", "slice")``)."""
    tables = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
            names = _literal_names(node.value)
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and names:
                    tables[t.id] = names

    def spelled(node):
        if isinstance(node, ast.Name) and node.id in tables:
            return tables[node.id]
        return _literal_names(node)

    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            operands = [node.left, *node.comparators]
            for a, b in zip(operands, operands[1:]):
                for side, other in ((a, b), (b, a)):
                    names = spelled(side)
                    if names and (_about_primitive(other) or len(_literal_names(side)) > 1):
                        found.append((node.lineno, sorted(names)))
        elif isinstance(node, ast.Subscript) and _about_primitive(node.slice):
            names = spelled(node.value)
            if names:
                found.append((node.lineno, sorted(names)))
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "get" and node.args and _about_primitive(node.args[0])):
            names = spelled(node.func.value)
            if names:
                found.append((node.lineno, sorted(names)))
        elif isinstance(node, ast.MatchValue):
            names = _literal_names(node.value)
            if names:
                found.append((node.lineno, sorted(names)))
    return found


def test_the_name_test_finder_finds_name_tests():
    """The checker below must see each form of a name test (else it passes for nothing)."""
    source = '''
DATA_MOVEMENT = {"reshape", "transpose"}
INFIX = {"add": "{0} + {1}"}
def f(n, node, kind, prim):
    a = n.prim == "const"
    b = "bitcast" != node.prim
    c = n.prim in ("gather", "scatter_add")
    d = prim in DATA_MOVEMENT
    e = INFIX[node.prim]
    g = INFIX.get(n.prim)
    h = kind not in ["reshape", "slice"]
    match n.prim:
        case "neg":
            pass
'''
    lines = sorted(line for line, _ in name_tests(ast.parse(source)))
    assert lines == [5, 6, 7, 8, 9, 10, 11, 13]
    clean = '''
OPTIONS = {"sqrt": 1}
def f(n, checkpoint, dtype, names):
    a = checkpoint == "sqrt"          # a user's option that happens to spell a primitive
    b = dtype == "bool"
    c = REGISTRY[n.prim].literal      # the record, not the name
    d = {"exp": 1, "log": 2}[names]   # a table keyed by NumPy's names
'''
    assert name_tests(ast.parse(clean)) == []


def test_no_module_outside_primitives_tests_a_primitive_by_name():
    """Every fact a pass, renderer, printer or tool needs is a field of the primitive's record;
    only the records themselves (``symgrad/core/primitives/``) may spell primitive names in a
    test. (Emitting a statement, ``bind("slice", ...)``, names a primitive without testing one.)"""
    offenders = []
    for path in sorted(SYMGRAD.rglob("*.py")):
        if (SYMGRAD / "core" / "primitives") in path.parents:
            continue
        for line, names in name_tests(ast.parse(path.read_text(), str(path))):
            offenders.append(f"{path.relative_to(SYMGRAD.parent)}:{line} tests {names}")
    assert not offenders, "primitives tested by name:\n" + "\n".join(offenders)


def test_importing_the_primitives_package_alone_gives_the_complete_registry():
    """In a fresh interpreter, ``symgrad.core.primitives`` -- without the package ``__init__``
    (which imports everything, front end included) -- registers every primitive, scan too, and
    imports nothing of the front end, the backends or the tools."""
    code = textwrap.dedent(f'''
        import json, sys, types
        package = types.ModuleType("symgrad")       # the package without its __init__
        package.__path__ = [{str(SYMGRAD)!r}]
        sys.modules["symgrad"] = package
        from symgrad.core.primitives import REGISTRY
        print(json.dumps({{"names": sorted(REGISTRY),
                           "modules": sorted(m for m in sys.modules if m.startswith("symgrad"))}}))
    ''')
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, check=True)
    alone = json.loads(done.stdout)
    assert "scan" in alone["names"]
    assert alone["names"] == sorted(REGISTRY)      # all of symgrad imported here: nothing more
    outside = [m for m in alone["modules"] if m != "symgrad" and not m.startswith(
        ("symgrad.core", "symgrad.errors"))]
    assert outside == []


def test_a_record_without_the_optional_fields_is_complete():
    noop = lambda *a, **k: None   # noqa: E731
    prim = Primitive("plain", noop, noop, noop, c_expr=noop, jvp=noop, elementwise=True)
    x = Var(TensorType((2, 3), "float64"))
    node = Node("plain", (x,), {}, Var(TensorType((2, 3), "float64")))
    assert not prim.literal and prim.foldable(node) and prim.view_of(node) is None
    assert prim.identities == () and not prim.involution and prim.simplify is None
    assert prim.flops(node) == 6                  # elementwise: one per element
    assert prim.format_infix(["a"], {}) is None and prim.index_bounds is None
    assert prim.batch is None and prim.memory is None and not prim.gradient_barrier


def test_only_const_is_a_literal():
    assert [name for name in NAMES if REGISTRY[name].literal] == ["const"]


def _eval(name, *arrays, **attrs):
    return np.asarray(REGISTRY[name].impl(*arrays, **attrs))


SPECIAL = np.array([-2.5, -0.0, 0.0, 1.0, 3.0, np.inf, -np.inf, np.nan])


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n].identities])
def test_identities_hold_for_every_float(name):
    """Each stated unit (x + 0 = x, x * 1 = x, ...) holds in NumPy, for inf and NaN too."""
    for k, unit in REGISTRY[name].identities:
        operands = [SPECIAL, SPECIAL]
        operands[k] = np.full_like(SPECIAL, unit)
        np.testing.assert_array_equal(_eval(name, *operands), SPECIAL)


@pytest.mark.parametrize("name", [n for n in NAMES if REGISTRY[n].involution])
def test_involutions_undo_themselves(name):
    np.testing.assert_array_equal(_eval(name, _eval(name, SPECIAL)), SPECIAL)


def _node(name, in_types, attrs):
    ins = [Var(TensorType(shape, dtype)) for shape, dtype in in_types]
    out = REGISTRY[name].shape_rule(*[v.type for v in ins], **attrs)
    return Node(name, tuple(ins), attrs, Var(out))


VIEW_CASES = [
    ("reshape", [((2, 3), "float64")], {"shape": (3, 2)}),
    ("reshape", [((4,), "float64")], {"shape": (1, 4, 1)}),
    ("broadcast_in_dim", [((3,), "float64")], {"shape": (2, 3), "dims": (1,)}),
    ("broadcast_in_dim", [((2, 1), "float64")], {"shape": (2, 4, 5), "dims": (0, 1)}),
    ("slice", [((4, 3), "float64")], {"start": (1, 0), "step": (1, 1), "shape": (2, 3)}),
    ("slice", [((1, 5, 2), "float64")], {"start": (0, 2, 0), "step": (1, 1, 1),
                                          "shape": (1, 3, 2)}),
    ("pad_slice", [((2, 2), "float64")], {"start": (1, 0), "step": (1, 1), "shape": (4, 3)}),
]
NOT_VIEWS = [
    ("slice", [((4, 3), "float64")], {"start": (1, 1), "step": (1, 1), "shape": (2, 2)}),
    ("slice", [((6,), "float64")], {"start": (1,), "step": (2,), "shape": (3,)}),
    ("pad_slice", [((2,), "float64")], {"start": (0,), "step": (2,), "shape": (4,)}),
    ("transpose", [((2, 3), "float64")], {"perm": (1, 0)}),
]


@pytest.mark.parametrize("name, in_types, attrs", VIEW_CASES)
def test_views_describe_what_the_primitive_computes(name, in_types, attrs):
    """A record's view says where its result's elements are in its operand's memory: checked
    against the primitive's own NumPy evaluation."""
    node = _node(name, in_types, attrs)
    x = np.arange(1, 1 + node.inputs[0].type.size, dtype=np.float64).reshape(in_types[0][0])
    out = _eval(name, x, **attrs)
    view = REGISTRY[name].view_of(node)
    if view.kind == REINTERPRET:
        np.testing.assert_array_equal(out.ravel(), x.ravel())
    elif view.kind == WINDOW:
        np.testing.assert_array_equal(out.ravel(), x.ravel()[view.offset:view.offset + out.size])
    elif view.kind == BROADCAST:
        np.testing.assert_array_equal(out, np.broadcast_to(x.reshape(view.shape), out.shape))
    else:
        assert view.kind == PADDING
        inside = tuple(slice(s, s + n) for s, n in zip(view.start, x.shape))
        np.testing.assert_array_equal(out[inside], x)
        assert out.sum() == x.sum()          # zero elsewhere (x is positive)


@pytest.mark.parametrize("name, in_types, attrs", NOT_VIEWS)
def test_strided_and_scattered_results_are_no_views(name, in_types, attrs):
    assert REGISTRY[name].view_of(_node(name, in_types, attrs)) is None


def test_folding_policy_keeps_int_to_float_bitcasts():
    to_float = _node("bitcast", [((), "int64")], {"dtype": "float64"})
    to_int = _node("bitcast", [((), "float64")], {"dtype": "int64"})
    assert not REGISTRY["bitcast"].foldable(to_float)
    assert REGISTRY["bitcast"].foldable(to_int)
    assert REGISTRY["add"].foldable(_node("add", [((), "float64")] * 2, {}))


def test_costs_printing_and_index_operands():
    a, b = ((2, 3), "float64"), ((3, 4), "float64")
    mm = _node("matmul", [a, b], {"transpose_a": False, "transpose_b": False})
    assert REGISTRY["matmul"].flops(mm) == 2 * 3 * 2 * 4
    assert REGISTRY["matmul"].format_infix(["x", "y"], {"transpose_a": True,
                                                         "transpose_b": False}) == "x.T @ y"
    assert REGISTRY["sub"].format_infix(["x", "y"], {}) == "x - y"
    assert REGISTRY["le"].format_infix(["x", "y"], {}) == "x <= y"
    assert REGISTRY["reshape"].flops(_node("reshape", [a], {"shape": (6,)})) == 0
    assert REGISTRY["reduce_sum"].flops(_node("reduce_sum", [a], {"axes": (0, 1)})) == 6
    gather = _node("gather", [((5, 3), "float64"), ((4,), "int64")], {})
    assert REGISTRY["gather"].index_bounds(gather) == ((1, 0, 5),)
    scatter = _node("scatter_add", [((4, 3), "float64"), ((4,), "int64")], {"shape": (7, 3)})
    assert REGISTRY["scatter_add"].index_bounds(scatter) == ((1, 0, 7),)
