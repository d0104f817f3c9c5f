"""Issue 16's elementwise functions and special functions, in one table.

Each row is a function written with NumPy's own names (``np.log2``, ``x % y``: they dispatch to
symgrad on traced values) or ``symgrad.scipy.special``, and generators of its inputs, on shapes
that broadcast. To keep the suite fast the whole table is *one* compiled function per dtype and
backend: it takes every row's arguments and returns every row's result (values), or the sum of
every row's weighted result (gradients; each row's arguments are its own, so a wrong derivative
shows up as a mismatch in that row's arguments and nowhere else).

Checked, for float64 and float32 on both backends:
- values equal NumPy's/SciPy's on the plain arrays;
- ``check_grad``: the gradient agrees with the interpreter, central differences and the complex
  step;
- forward mode: ``jvp`` equals the gradient's dot product with the tangent;
- second order: ``hvp`` equals central differences of the gradient.
Special values (inf, NaN, -0.0, ties, integer operands) and zero gradients have their own tests;
an AOT build of a function using the new primitives ends the file.
"""
from __future__ import annotations

import zlib

import numpy as np
import pytest
import scipy.special as ss

import symgrad
import symgrad.numpy as snp
import symgrad.scipy.special as sps


def U(*shape, lo=-2.0, hi=2.0):
    return lambda rng: rng.uniform(lo, hi, shape)


def Apart(*shape, lo=0.3, hi=2.0):
    """Either sign, |x| >= lo."""
    return lambda rng: rng.choice([-1.0, 1.0], shape) * rng.uniform(lo, hi, shape)


def Offgrid(*shape, lo=-3.0, hi=3.0, step=1.0, gap=0.1):
    """Uniform, at least ``gap`` from the multiples of ``step`` (kinks of floor, round, %)."""
    def gen(rng):
        x = rng.uniform(lo, hi, shape)
        frac = np.abs(x / step - np.round(x / step)) * step
        return np.where(frac < gap, x + 2 * gap, x)
    return gen


# name, function, argument generators (every argument is differentiated)
TABLE = [
    ("log2", np.log2, [U(3, 4, lo=0.3, hi=3)]),
    ("log10", np.log10, [U(3, 1, lo=0.3, hi=3)]),
    ("exp2", np.exp2, [U(4)]),
    ("cbrt", np.cbrt, [Apart(3, 4)]),
    ("reciprocal", np.reciprocal, [Apart(2, 3)]),
    ("logaddexp", np.logaddexp, [U(3, 4), U(4)]),
    ("logaddexp2", np.logaddexp2, [U(3, 1), U(1, 4)]),
    ("hypot", np.hypot, [Apart(2, 3), U(3)]),
    ("arctan2", np.arctan2, [U(3, 4), Apart(3, 1)]),
    ("arcsinh", np.arcsinh, [U(5, lo=-3, hi=3)]),
    ("arccosh", np.arccosh, [U(2, 3, lo=1.2, hi=4)]),
    ("arctanh", np.arctanh, [U(4, lo=-0.9, hi=0.9)]),
    ("deg2rad_radians", lambda x: np.deg2rad(x) + np.radians(x) * x, [U(4, lo=-180, hi=180)]),
    ("rad2deg_degrees", lambda x: np.rad2deg(x) - np.degrees(x ** 2), [U(3)]),
    ("sinc", np.sinc, [Apart(3, 4, lo=0.1, hi=2.5)]),
    ("fabs", lambda x: np.fabs(x) * x, [Apart(4)]),
    ("fmax_fmin", lambda x, y: np.fmax(x, y) * np.fmin(y, x), [Apart(3, 4), U(4, lo=3, hi=4)]),
    ("rounding", lambda x: (np.floor(x) + np.ceil(x) + np.round(x) + np.around(x) + np.rint(x)
                            + np.trunc(x)) * x, [Offgrid(3, 4, step=0.5)]),
    ("round_decimals", lambda x: np.round(x, 1) * x + x.round(2), [Offgrid(5, step=0.05,
                                                                           gap=0.01)]),
    ("remainder_mod", lambda x, y: np.remainder(x, y) + x % y + np.mod(x, 1.5),
     [Offgrid(3, 4, step=0.5), lambda rng: np.array([0.5, -0.5, 0.5, -0.5])]),
    ("fmod", lambda x, y: np.fmod(x, y), [Offgrid(3, 4, step=0.5),
                                          lambda rng: np.array([0.5, -0.5, 0.5, -0.5])]),
    ("floor_divide", lambda x, y: (x // y + np.floor_divide(x, 0.5)) * x + y,
     [Offgrid(3, 4, step=0.5), lambda rng: np.array([0.5, -0.5, 0.5, -0.5])]),
    ("power_float_power", lambda x, y: np.power(x, y) + np.float_power(x, y),
     [U(3, 4, lo=0.5, hi=2), U(4)]),
    ("copysign", np.copysign, [Apart(3, 4), Apart(4)]),
    ("heaviside", lambda x, h: np.heaviside(x, h) * x + np.heaviside(x * 0, h),
     [Apart(3, 4), U(4)]),
    ("positive", lambda x: np.positive(x) * x, [U(3)]),
    ("nan_to_num", lambda x: np.nan_to_num(x) * np.nan_to_num(x / 2, nan=1.0), [U(2, 3)]),
    ("predicates", lambda x, y: np.where(np.isfinite(x) & ~np.isnan(y) | np.isinf(x), x, y)
     + np.where(np.signbit(x) ^ np.logical_xor(x > 0, y < 0), 2 * x, y)
     + np.where(np.logical_and(x > 0, np.logical_or(y > 0, np.logical_not(x < 1))), x, 0.0),
     [Apart(3, 4), Apart(4)]),
    ("where_broadcast_all", lambda c, x, y: np.where(c > 0, x, y) * c + np.where(c > 0, 1.0, y),
     [Apart(3, 1), U(1, 4), U(2, 1, 1)]),
    ("real_imag_conj_angle", lambda x: np.real(x) * x.real + np.imag(x) + np.conj(x)
     + x.conj() * np.angle(x) + x.conjugate(), [Apart(3, 4)]),
    # symgrad.scipy.special; scipy's own ufuncs dispatch to it
    ("erf_erfc", lambda x: ss.erf(x) * ss.erfc(x) + sps.erf(x), [U(3, 4)]),
    ("erfinv", ss.erfinv, [U(3, 4, lo=-0.95, hi=0.95)]),
    ("gammaln", ss.gammaln, [U(3, 4, lo=0.2, hi=8)]),
    ("digamma", lambda x: ss.digamma(x) + ss.psi(x) * sps.digamma(x), [U(3, 4, lo=0.3, hi=8)]),
    ("polygamma", lambda x: sps.polygamma(1, x) + sps.polygamma(2, x) * sps.polygamma(0, x),
     [U(3, lo=0.5, hi=5)]),
    ("xlogy_xlog1py", lambda x, y: ss.xlogy(x, y) + ss.xlog1py(x, y), [U(3, 4), U(4, lo=0.2)]),
    ("expit_logit", lambda x, p: ss.expit(x) + ss.logit(p), [U(3, 4, lo=-5, hi=5),
                                                           U(4, lo=0.05, hi=0.95)]),
    ("logsumexp", lambda x, b: sps.logsumexp(x, axis=1, keepdims=True) + sps.logsumexp(x, axis=0, b=b),
     [U(3, 4), U(4, lo=0.5, hi=2)]),
]

DTYPES = ["float64", "float32"]
VALUE_RTOL = {"float64": 1e-12, "float32": 2e-6}


def _seed(*parts):
    return zlib.crc32("/".join(map(str, parts)).encode())


def row_args(name, gens, dtype):
    rng = np.random.default_rng(_seed(name))
    return [g(rng).astype(dtype) for g in gens]


def all_args(dtype):
    return [a for name, _, gens in TABLE for a in row_args(name, gens, dtype)]


def _split(args):
    out, i = [], 0
    for _, fn, gens in TABLE:
        out.append((fn, args[i:i + len(gens)]))
        i += len(gens)
    return out


def values(*args):
    """Every row's result, as one tuple (one compiled function for the whole table)."""
    return tuple(fn(*a) for fn, a in _split(args))


def _weights(dtype):
    rng = np.random.default_rng(7)
    return [rng.uniform(0.5, 1.5, np.shape(fn(*a))).astype(dtype)
            for fn, a in _split(all_args("float64"))]


def loss_of(dtype):
    weights = _weights(dtype)

    def loss(*args):
        return sum(snp.sum(fn(*a) * w) for (fn, a), w in zip(_split(args), weights))
    return loss


ARGNUMS = tuple(range(sum(len(gens) for _, _, gens in TABLE)))
_COMPILED = {}


def compiled(kind, dtype, backend):
    """One compiled function per kind, dtype and backend, shared by the tests below."""
    key = (kind, dtype, backend)
    if key not in _COMPILED:
        fn = values if kind == "values" else loss_of(dtype)
        _COMPILED[key] = symgrad.compile(fn, backend=backend,
                                         argnums=() if kind == "values" else ARGNUMS)
    return _COMPILED[key]


@pytest.mark.parametrize("dtype", DTYPES)
def test_values_match_numpy_and_scipy(dtype, backend):
    args = all_args(dtype)
    with np.errstate(all="ignore"):
        expected = values(*args)
    actual = compiled("values", dtype, backend)(*args)
    for (name, _, _), e, a in zip(TABLE, expected, actual):
        e = np.asarray(e)
        assert np.shape(a) == e.shape, name
        # SciPy's polygamma (a Python function, not a ufunc) returns float64 for float32.
        expected_dtype = np.dtype(dtype) if name == "polygamma" else e.dtype
        assert np.asarray(a).dtype == expected_dtype, (name, np.asarray(a).dtype, e.dtype)
        tol = VALUE_RTOL[dtype] * max(1.0, float(np.max(np.abs(e))))
        np.testing.assert_allclose(a, e, rtol=VALUE_RTOL[dtype], atol=tol, err_msg=name)


def _argument_rows():
    return {f"arg{i}": _row_of_argument(i) for i in ARGNUMS}


def _row_of_argument(i):
    for name, _, gens in TABLE:
        if i < len(gens):
            return name
        i -= len(gens)


@pytest.mark.parametrize("dtype", DTYPES)
def test_gradients_check(dtype, backend):
    args = all_args(dtype)
    f = compiled("loss", dtype, backend)
    try:
        report = symgrad.check_grad(f, *args, argnums=ARGNUMS)
    except symgrad.GradientCheckError as e:
        raise AssertionError(f"{e}\n(arguments by row: {_argument_rows()})") from None
    assert report.ok
    assert {"interpreter", "central diff", "complex step"} <= {c.method for c in
                                                               report.comparisons}


def test_jvp_equals_gradient_dot_tangent(backend):
    args = all_args("float64")
    f = compiled("loss", "float64", backend)
    rng = np.random.default_rng(3)
    tangents = [rng.standard_normal(np.shape(a)) for a in args]
    value, tangent_out = f.jvp(args, tangents)
    grads = f.grad(*args)
    expected = sum(float(np.sum(g * t)) for g, t in zip(grads, tangents))
    assert tangent_out == pytest.approx(expected, rel=1e-10)
    assert value == pytest.approx(f(*args), rel=1e-14)


def test_second_order_hvp_matches_differences_of_the_gradient(backend):
    args = all_args("float64")
    f = compiled("loss", "float64", backend)
    rng = np.random.default_rng(4)
    v = [rng.standard_normal(np.shape(a)) for a in args]
    hv = f.hvp(args, v)
    h = 1e-5
    plus = f.grad(*[a + h * d for a, d in zip(args, v)])
    minus = f.grad(*[a - h * d for a, d in zip(args, v)])
    for i, (got, p, m) in enumerate(zip(hv, plus, minus)):
        np.testing.assert_allclose(got, (p - m) / (2 * h), rtol=1e-5, atol=1e-5,
                                   err_msg=_row_of_argument(i))


def primitives_used():
    """The primitives this table's forward and adjoint graphs use (for test_registry)."""
    args = all_args("float64")
    f = symgrad.compile(loss_of("float64"), argnums=ARGNUMS, backend="interp")
    spec, _ = f.specialize(*args)
    return {n.prim for g in (spec.graph, spec.value_and_grad_graph()) for n in g.nodes}


# --- special values: NumPy's exact semantics ------------------------------------------------

SPECIAL = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, -0.0, 0.0, 7.0, -7.0, np.inf, -np.inf,
                    np.nan, 1e300, -3.0])
DIVISORS = np.array([2.0, -2.0, 0.7, -0.7, np.inf, -np.inf, 0.0, -0.0, 3.0, -3.0, 1.0, 1.0,
                     1.0, 1e-300, 1.5])


def _same(actual, expected, name, zero_sign=True):
    actual, expected = np.asarray(actual), np.asarray(expected)
    assert actual.dtype == expected.dtype, name
    both_nan = np.isnan(actual) & np.isnan(expected) if actual.dtype.kind == "f" else False
    assert np.all((actual == expected) | both_nan), f"{name}: {actual} != {expected}"
    if actual.dtype.kind == "f" and zero_sign:       # -0.0 stays -0.0
        same_sign = np.signbit(actual) == np.signbit(expected)
        assert np.all(same_sign | both_nan), f"{name}: signs of zeros differ"


SPECIAL_FUNCTIONS = {
    "remainder": lambda x, y: x % y, "floor_divide": lambda x, y: x // y,
    "fmod": np.fmod, "copysign": np.copysign, "logaddexp": np.logaddexp,
    "logaddexp2": np.logaddexp2, "fmax": np.fmax, "fmin": np.fmin, "heaviside": np.heaviside,
    "rint": lambda x, y: np.rint(x), "round": lambda x, y: np.round(x),
    "floor": lambda x, y: np.floor(x), "trunc": lambda x, y: np.trunc(x),
    "ceil": lambda x, y: np.ceil(x), "signbit": lambda x, y: np.signbit(x),
    "nan_to_num": lambda x, y: np.nan_to_num(x), "isfinite": lambda x, y: np.isfinite(x),
    "isnan": lambda x, y: np.isnan(x), "isinf": lambda x, y: np.isinf(x),
    "sinc": lambda x, y: np.sinc(x), "angle": lambda x, y: np.angle(x),
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_special_values_are_numpys(dtype, backend):
    names = list(SPECIAL_FUNCTIONS)
    f = symgrad.compile(lambda x, y: tuple(SPECIAL_FUNCTIONS[n](x, y) for n in names),
                        backend=backend, argnums=())
    x, y = SPECIAL.astype(dtype), DIVISORS.astype(dtype)
    with np.errstate(all="ignore"):
        expected = [SPECIAL_FUNCTIONS[n](x, y) for n in names]
        actual = f(x, y)
    for name, a, e in zip(names, actual, expected):
        if name in ("sinc", "logaddexp", "logaddexp2") and dtype == "float32":
            np.testing.assert_allclose(a, e, rtol=2e-6, err_msg=name)   # libm's float math
            continue
        # fmax(-0.0, 0.0): the tie goes to the first argument (API.md), whichever zero it is.
        _same(a, e, name, zero_sign=name not in ("fmax", "fmin"))


def test_integer_remainder_and_floor_division(backend):
    x = np.array([-7, 7, -7, 7, 0, 5, -9223372036854775807 - 1, 3])
    y = np.array([2, -2, -2, 2, 3, 0, -1, -1])
    f = symgrad.compile(lambda x, y: (x % y, x // y, np.fmod(x, y), np.floor(x)),
                        backend=backend, argnums=())
    with np.errstate(all="ignore"):
        expected = (x % y, x // y, np.fmod(x, y), np.floor(x))
    for a, e in zip(f(x, y), expected):
        _same(a, e, "int")
    tens = np.array([5, 15, 25, -5, -15, 14, 16, 1234567])
    rounded = symgrad.compile(lambda t: (np.round(t, -1), np.round(t, -2), np.round(t)),
                              backend=backend, argnums=())(tens)
    for a, d in zip(rounded, (-1, -2, 0)):
        _same(a, np.round(tens, d), f"round(int, {d})")
    for dtype in ("int32",):
        xi, yi = x[:6].astype(dtype), y[:6].astype(dtype)
        with np.errstate(all="ignore"):
            for a, e in zip(symgrad.compile(lambda x, y: (x % y, x // y), backend=backend,
                                            argnums=())(xi, yi), (xi % yi, xi // yi)):
                _same(a, e, dtype)


def test_round_half_to_even(backend):
    x = np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.125, 0.375])
    f = symgrad.compile(lambda x: (np.round(x), round(x[0]), np.round(x, 2)), backend=backend,
                        argnums=())
    r, r0, r2 = f(x)
    _same(r, np.round(x), "round")
    _same(r2, np.round(x, 2), "round2")
    assert r0 == 0.0


def test_zero_almost_everywhere_gives_zero_gradients(backend):
    x = np.array([-1.5, -0.2, 0.0, 0.7, 2.0])
    f = symgrad.compile(lambda x: np.sum(np.floor(x) + np.ceil(x) + np.round(x) + np.rint(x)
                                         + np.trunc(x) + np.sign(x) + x // 0.3
                                         + (x > 0.1) + np.signbit(x)), backend=backend)
    np.testing.assert_array_equal(f.grad(x), np.zeros(5))


def test_where_broadcasts_every_argument_and_routes_the_gradient(backend):
    c = np.array([[True], [False]])                  # (2, 1)
    x = np.array([1.0, 2.0, 3.0])                    # (3,)
    y = np.array([[[10.0]], [[20.0]]])               # (2, 1, 1)
    f = symgrad.compile(lambda x, y: np.where(c, x, y), backend=backend, argnums=())
    np.testing.assert_array_equal(f(x, y), np.where(c, x, y))
    g = symgrad.compile(lambda x, y: np.sum(np.where(c, x, y)), backend=backend,
                        argnums=(0, 1))
    gx, gy = g.grad(x, y)
    np.testing.assert_array_equal(gx, [2.0, 2.0, 2.0])       # row 0 of both y-blocks
    np.testing.assert_array_equal(gy, [[[3.0]], [[3.0]]])    # row 1, three columns


def test_special_function_dispatch_names():
    from symgrad.frontend.tracer import IMPLEMENTATIONS
    for name in ("erf", "erfc", "erfinv", "gammaln", "psi", "xlogy", "xlog1py", "expit",
                 "logit"):
        assert IMPLEMENTATIONS[name] is IMPLEMENTATIONS[f"scipy.special.{name}"]
        assert getattr(ss, "digamma" if name == "psi" else name).__name__ == name


# --- item 8: what surrounds the call -----------------------------------------------------------

@pytest.mark.parametrize("shape", [(1,), (1, 1)])
def test_grad_of_a_one_element_result(shape, backend):
    f = symgrad.compile(lambda x: np.reshape(np.sum(x ** 3), shape), backend=backend)
    x = np.array([1.0, 2.0])
    value, g = f.value_and_grad(x)
    assert np.shape(value) == shape and float(np.ravel(value)[0]) == 9.0      # as autograd
    np.testing.assert_array_equal(g, 3 * x ** 2)
    np.testing.assert_array_equal(symgrad.grad(lambda x: (x @ x)[None])(x), 2 * x)


def test_numpy_scalar_types_point_at_astype():
    for convert in (np.float64, np.int64, float, int):
        f = symgrad.compile(lambda x: convert(x), backend="interp")
        with pytest.raises(symgrad.TracingError, match=r"astype\(np\.(float|int)64\)"):
            f(np.array(1.5))
    fn = lambda x: x.astype(np.int64) * 2 + snp.astype(x, "float32").sum()   # noqa: E731
    x = np.array([1.5, 2.5])
    assert symgrad.compile(fn, backend="interp", argnums=())(x).tolist() == fn(x).tolist() \
        == [6.0, 8.0]


# --- AOT: a library using the new primitives, its C runtime included ----------------------------

AOT_SPEC = '''
import numpy as np
import scipy.special as ss
import symgrad
import symgrad.scipy.special as sps


def special_loss(x, y):
    return np.sum(x % y + np.logaddexp(x, y) * ss.erfinv(x / 4) + sps.digamma(y * y + 1)
                  + np.floor(x) * x + np.hypot(x, y) + ss.gammaln(y * y + 0.5))


symgrad.export(special_loss, "f64[N]", "f64[N]", argnums=(0, 1))
'''


def test_aot_build_with_new_primitives(tmp_path):
    from symgrad.tools.cli import main
    spec = tmp_path / "special_spec.py"
    spec.write_text(AOT_SPEC)
    out = tmp_path / "build"
    assert main(["build", str(spec), "-o", str(out), "--quiet"]) == 0
    source = (out / "special_spec.c").read_text()
    assert "symgrad_math_polygamma" in source and "symgrad_math_erfinv" in source
    import importlib.util
    module_spec = importlib.util.spec_from_file_location("special_spec_loader",
                                                         out / "special_spec.py")
    loader = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(loader)
    namespace = {}
    exec(AOT_SPEC.replace("symgrad.export(", "(lambda *a, **k: None)("), namespace)
    x, y = np.array([0.3, -1.7, 2.2]), np.array([0.8, -0.6, 1.9])
    value, (gx, gy) = loader.special_loss_value_and_grad(x, y)
    jit = symgrad.compile(namespace["special_loss"], argnums=(0, 1))
    v_jit, (gx_jit, gy_jit) = jit.value_and_grad(x, y)
    assert value == pytest.approx(namespace["special_loss"](x, y), rel=1e-13)
    assert value == pytest.approx(v_jit, rel=1e-14)
    np.testing.assert_allclose(gx, gx_jit, rtol=1e-13)
    np.testing.assert_allclose(gy, gy_jit, rtol=1e-13)
