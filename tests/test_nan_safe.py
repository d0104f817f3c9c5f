"""NaN-safe adjoints: the branch a where/maximum/clip/abs did not take contributes exactly 0,
never 0 * inf = NaN (JAX and autograd return NaN for these)."""
import re

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad import nn


def where_sqrt(x):
    return snp.sum(snp.where(x > 0, snp.sqrt(x), 0.0))


def where_log(x):
    return snp.sum(snp.where(x > 0, snp.log(x), 0.0))


def where_reciprocal(x):
    return snp.sum(snp.where(x != 0, 1.0 / x, 1.0))


CASES = [
    (where_sqrt, [0.0, 4.0, -1.0], [0.0, 0.25, 0.0]),
    (where_log, [0.0, 2.0, -3.0], [0.0, 0.5, 0.0]),
    (where_reciprocal, [0.0, 2.0], [0.0, -0.25]),
]


@pytest.mark.parametrize("fn,x,expected", CASES, ids=[c[0].__name__ for c in CASES])
def test_untaken_branch_gives_an_exact_zero(backend, fn, x, expected):
    x = np.array(x)
    with np.errstate(all="ignore"):
        g = symgrad.compile(fn, backend=backend).grad(x)
    assert np.all(np.isfinite(g))
    np.testing.assert_array_equal(g, expected)


def test_forward_mode_and_second_order_stay_finite(backend):
    x = np.array([0.0, 4.0, -1.0])
    f = symgrad.compile(where_sqrt, backend=backend)
    with np.errstate(all="ignore"):
        _, tangent = f.jvp((x,), np.ones(3))
        hv = f.hvp((x,), np.ones(3))
    assert tangent == pytest.approx(0.25)
    np.testing.assert_allclose(hv, [0.0, -1 / 32, 0.0])


def test_a_genuine_infinite_derivative_is_kept(backend):
    # where the branch *is* taken, an infinite slope stays infinite: only a zero adjoint masks
    f = symgrad.compile(lambda x: snp.sum(snp.sqrt(x)), backend=backend)
    with np.errstate(all="ignore"):
        g = f.grad(np.array([0.0, 1.0]))
    assert g[0] == np.inf and g[1] == 0.5


def test_softplus_and_sigmoid_at_the_extremes_have_finite_gradients(backend):
    f = symgrad.compile(lambda x: snp.sum(nn.softplus(x) + nn.sigmoid(x)), backend=backend)
    with np.errstate(all="ignore"):
        g = f.grad(np.array([-1000.0, 0.0, 1000.0]))
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g, [0.0, 0.75, 1.0])


def chain_mul_of(g, d):
    """The strong-zero product itself (what reverse and forward mode multiply by)."""
    from symgrad.core.primitives import bind
    from symgrad.numpy._common import lift, wrap
    gv, dv = lift((g, d), need_float=True)
    return wrap(bind("chain_mul", gv, dv))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_chain_mul_is_zero_where_a_factor_is_zero_even_against_inf_and_nan(dtype):
    # The C is branch-free (bits masked, templates/branch_free.c.j2) so that its loops vectorize:
    # every lane of a vector, and the scalar lanes after the last whole vector, against NumPy.
    inf, nan = np.inf, np.nan
    pairs = [(0.0, inf), (-0.0, nan), (inf, 0.0), (nan, -0.0), (0.0, 0.0), (-0.0, -inf),
             (inf, inf), (-inf, 2.0), (nan, 1.0), (3.0, nan), (1.5, -2.0), (-0.0, 5.0),
             (1e-30, 1e-30), (7.0, 1e30), (-2.5, 0.5), (4.0, -0.0), (0.25, 8.0)]
    g = np.array([p[0] for p in pairs] * 3, dtype=dtype)
    d = np.array([p[1] for p in pairs] * 3, dtype=dtype)[::-1].copy()
    with np.errstate(all="ignore"):
        expected = np.where((g == 0) | (d == 0), np.zeros((), dtype), g * d)
        for backend in ("c", "interp"):
            out = symgrad.compile(chain_mul_of, backend=backend)(g, d)
            assert out.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(out, expected)
            # +0 where a factor is 0, whatever the signs (a plain product gives -0)
            assert not np.signbit(out[expected == 0]).any()
        scalar = symgrad.compile(chain_mul_of)
        for a, b in pairs:
            want = 0.0 if a == 0 or b == 0 else np.multiply(np.array(a, dtype), np.array(b, dtype))
            got = scalar(np.array(a, dtype)[()], np.array(b, dtype)[()])
            np.testing.assert_array_equal(got, want)
            assert not (want == 0 and np.signbit(got))


def relu_adjoint(x, g):
    """where(x >= 0, g, 0): the adjoint of a ReLU, a select whose chosen operand is read."""
    return snp.where(x >= 0, g, 0.0)


@pytest.mark.parametrize("fn,helper", [(chain_mul_of, "symgradrt_chain_mul"),
                                       (relu_adjoint, "symgradrt_select")])
def test_branch_free_loops_are_vectorized_by_gcc(fn, helper, tmp_path):
    """The reason for the helpers of templates/branch_free.c.j2: gcc vectorizes a loop of them
    with symgrad's own flags (written with a float compare, or an array read, in a branch,
    gcc 12 kept it scalar: chain_mul 0.50 -> 0.06 ms on 307,200 elements)."""
    import shlex
    import subprocess
    from symgrad.backends.c import compiler
    # The compiler without the flags $CC may carry (the sanitized run's -fsanitize=... keeps
    # gcc from vectorizing anything): the claim is about symgrad's own flags.
    cc = [word for word in shlex.split(compiler.find_compiler()) if not word.startswith("-")]
    version = subprocess.run([*cc, "--version"], capture_output=True, text=True).stdout
    if "Free Software Foundation" not in version or "clang" in version.lower():
        pytest.skip("-fopt-info is gcc's")
    for dtype in ("float64", "float32"):
        x = np.ones(1024, dtype)
        source = symgrad.compile(fn).source(x, x)
        path = tmp_path / f"{fn.__name__}_{dtype}.c"
        path.write_text(source)
        line = next(n for n, text in enumerate(source.splitlines(), 1)
                    if helper in text and "static" not in text)
        flags = [f for f in compiler.DEFAULT_CFLAGS + compiler.REQUIRED_CFLAGS if f != "-shared"]
        report = subprocess.run([*cc, *flags, "-fopt-info-vec-optimized", "-c", str(path), "-o",
                                 str(tmp_path / "out.o")], capture_output=True, text=True)
        assert report.returncode == 0, report.stderr
        vectorized = {int(m) for m in re.findall(rf"{re.escape(path.name)}:(\d+):\d+: optimized: loop vectorized",
                                                 report.stderr)}
        # the loop around the call: its header is a few lines above
        assert vectorized & set(range(line - 3, line + 1)), (line, report.stderr)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_select_evaluates_both_operands_and_keeps_the_chosen_one(dtype):
    # inf and NaN in the operand not chosen stay out of the result (NumPy's where)
    r = np.random.default_rng(3)
    x = r.standard_normal(203).astype(dtype)
    g = r.standard_normal(203).astype(dtype)
    x[::7], g[::5], g[1::9] = np.nan, np.inf, np.nan
    with np.errstate(all="ignore"):
        for backend in ("c", "interp"):
            out = symgrad.compile(relu_adjoint, backend=backend)(x, g)
            assert out.dtype == np.dtype(dtype)
            np.testing.assert_array_equal(out, np.where(x >= 0, g, np.zeros((), dtype)))


def test_scalar_statements_keep_the_branches():
    """Outside loops chain_mul and select keep their branches (Primitive.c_scalar_expr): a
    predictable branch costs less than masking there (W6, 200 unrolled steps: 5.10 us with
    branches, 5.45 branch-free)."""
    def f(x, y):
        return snp.where(x > 0, snp.sqrt(x) * y, 0.0)
    source = symgrad.compile(f, argnums=(0, 1)).source(2.0, 3.0)
    assert "symgradrt_chain_mul" not in source and "symgradrt_select" not in source
    assert "== 0 ||" in source and " ? " in source
    with np.errstate(all="ignore"):
        g = symgrad.compile(f, argnums=(0, 1)).grad(0.0, 3.0)
    assert g == (0.0, 0.0)
