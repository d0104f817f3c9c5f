"""The probability and information functions of scipy.special that losses call (ndtr, log_ndtr,
entr, rel_entr, kl_div, betaln, softmax, log_softmax): values against SciPy's own (the oracle),
their tails, edges and special values included; gradients against central differences and the
complex step; SciPy's functions called on traced values reach symgrad's, or say which to call."""
import numpy as np
import pytest

import symgrad
import symgrad.scipy.special as ss

sps = pytest.importorskip("scipy.special")

# The interpreter evaluates both sides of each where (log of 0 in the branch not taken).
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

# log_ndtr's three pieces and the joins between them (-37 in float64, -10 in float32; 0).
X = np.array([-80.0, -40.0, -37.5, -37.0, -36.9, -20.0, -10.5, -10.0, -9.9, -5.0, -0.3, 0.0,
              0.3, 3.0, 10.0, 40.0])
# entr's and rel_entr/kl_div's domains: negative, zero, tiny, NaN, inf.
E = np.array([-1.0, 0.0, 1e-300, 0.3, 1.0, 5.0, np.nan, np.inf])
P = np.array([0.0, 0.0, 0.0, 1.0, 2.0, -1.0, np.nan, 1.0, 0.5, 0.0])
Q = np.array([0.0, 1.0, -1.0, 0.0, 3.0, 1.0, 1.0, np.inf, 0.25, np.nan])


def _values(x, e, p, q, a, s):
    return (sps.ndtr(x), sps.log_ndtr(x), sps.entr(e), sps.rel_entr(p, q), sps.kl_div(p, q),
            sps.betaln(a, 2.5), ss.softmax(s), ss.log_softmax(s, axis=1), ss.softmax(s, axis=0))


def _args(dtype):
    rng = np.random.default_rng(7)
    return [a.astype(dtype) for a in (X, E, P, Q, np.linspace(0.1, 30.0, 7),
                                      rng.uniform(-3.0, 3.0, (3, 4)))]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_values_match_scipy(backend, dtype):
    args = _args(dtype)
    got = symgrad.compile(_values, backend=backend, argnums=())(*args)
    # SciPy in float64, rounded to the dtype: in float32, the tail of ndtr is 0 (or subnormal).
    want = [np.asarray(w).astype(dtype) for w in _values(*[a.astype(np.float64) for a in args])]
    rtol, atol = (1e-12, 0.0) if dtype == "float64" else (2e-5, 1e-37)
    for k, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(np.isfinite(g), np.isfinite(w), err_msg=f"output {k}")
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w), err_msg=f"output {k}")
        finite = np.isfinite(w)
        np.testing.assert_array_equal(np.sign(g[~finite & ~np.isnan(w)]),
                                      np.sign(w[~finite & ~np.isnan(w)]), err_msg=f"output {k}")
        np.testing.assert_allclose(g[finite], w[finite], rtol=rtol, atol=atol,
                                   err_msg=f"output {k}")
        assert np.asarray(g).dtype == dtype, k


def test_plain_arrays_match_scipy():
    args = _args("float64")
    for k, (g, w) in enumerate(zip(_values(*args), _plain(*args))):
        np.testing.assert_allclose(g, w, rtol=1e-13, atol=0, equal_nan=True, err_msg=str(k))


def _plain(x, e, p, q, a, s):
    """symgrad.scipy.special's own functions called on NumPy arrays."""
    return (ss.ndtr(x), ss.log_ndtr(x), ss.entr(e), ss.rel_entr(p, q), ss.kl_div(p, q),
            ss.betaln(a, 2.5), ss.softmax(s), ss.log_softmax(s, axis=1), ss.softmax(s, axis=0))


def test_log_ndtr_without_scipy_is_accurate_in_both_tails():
    """The NumPy path used where SciPy is missing: the same pieces as the traced one."""
    from symgrad.scipy.special import _log_ndtr_numpy
    np.testing.assert_allclose(_log_ndtr_numpy(X), sps.log_ndtr(X), rtol=1e-13, atol=0)


def _loss(x, p, q, a, s):
    # Inside each function's smooth domain (p, q > 0 for rel_entr and kl_div).
    return (np.sum(sps.log_ndtr(x) * np.linspace(0.5, 1.5, x.size)) + np.sum(sps.ndtr(x))
            + np.sum(sps.entr(p)) + np.sum(sps.rel_entr(p, q)) + np.sum(sps.kl_div(q, p))
            + np.sum(sps.betaln(a, a[::-1])) + np.sum(ss.log_softmax(s) * s))


def test_gradients_against_differences_and_the_complex_step():
    rng = np.random.default_rng(3)
    x = np.array([-60.0, -37.2, -36.8, -12.0, -1.0, 0.4, 2.0, 9.0])
    p, q = rng.uniform(0.1, 2.0, 5), rng.uniform(0.1, 2.0, 5)
    report = symgrad.check_grad(_loss, x, p, q, rng.uniform(0.5, 9.0, 4),
                                rng.uniform(-2.0, 2.0, (2, 3)), argnums=(0, 1, 2, 3, 4))
    assert {"central diff", "complex step"} <= {c.method for c in report.comparisons}
    assert report.ok, str(report)


def test_log_ndtr_gradient_in_the_far_tail_is_minus_x():
    """d/dx log ndtr(x) -> -x (1 + 1/x^2 + ...) as x -> -inf: finite, where the plain formula's
    erfc has underflowed."""
    x = np.array([-200.0, -1000.0])
    g = symgrad.compile(lambda t: np.sum(sps.log_ndtr(t))).grad(x)
    np.testing.assert_allclose(g, -x * (1 + x ** -2 - 2 * x ** -4 + 10 * x ** -6), rtol=1e-14)


def test_scipy_functions_that_convert_their_arguments_say_what_to_call():
    scipy_linalg = pytest.importorskip("scipy.linalg")
    cases = [(lambda a: sps.logsumexp(a), r"scipy\.special\.logsumexp, which converts its "
                                          r"arguments.*Call symgrad\.scipy\.special\.logsumexp"),
             (lambda a: sps.softmax(a), r"Call symgrad\.scipy\.special\.softmax instead"),
             (lambda a: scipy_linalg.solve_triangular(a, a[0], lower=True),
              r"Call symgrad\.scipy\.linalg\.solve_triangular instead"),
             (lambda a: scipy_linalg.expm(a), r"Call symgrad\.scipy\.linalg\.expm instead"),
             (lambda a: scipy_linalg.logm(a), r"symgrad does not trace scipy\.linalg\.logm yet")]
    for fn, match in cases:
        with pytest.raises(symgrad.TracingError, match=match) as info:
            symgrad.compile(fn, backend="interp")(np.eye(3))
        assert "test_scipy_special_more.py:" in str(info.value)


def test_a_scipy_ufunc_symgrad_lacks_is_named_as_scipy_s():
    from symgrad.errors import UnsupportedError
    with pytest.raises(UnsupportedError, match=r"scipy\.special\.i0e is not supported yet.*"
                                               r"test_scipy_special_more\.py"):
        symgrad.compile(lambda a: sps.i0e(a), backend="interp")(np.ones(3))
