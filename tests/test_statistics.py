"""Reductions and statistics of issue 16 (symgrad/numpy/statistics.py): values against NumPy on
every axis form, gradients against central differences and the complex step, forward mode and
second order, float32, both backends. The cases compile together (tests/breadth.py)."""
import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from breadth import Case, case_args, check_hvp, check_jvp, standard_tests


def U(*shape, lo=-2.0, hi=2.0):
    return lambda rng: rng.uniform(lo, hi, shape)


def distinct(*shape):
    """Entries at least 0.2 apart in random order: sorting and selection have no ties."""
    def gen(rng):
        n = int(np.prod(shape))
        return rng.permutation((np.arange(n) - n / 2) * 0.3 + rng.uniform(-0.05, 0.05, n)) \
            .reshape(shape)
    return gen


NAN_MASK = np.array([[1.0, np.nan, 1.0], [1.0, 1.0, 1.0], [np.nan, 1.0, 1.0], [1.0, 1.0, 1.0]])


def args(*gens):
    return lambda rng: [g(rng) for g in gens]


CASES = [
    Case("var", lambda x: (snp.var(x), snp.var(x, axis=0), snp.var(x, axis=-1, ddof=1),
                           snp.var(x, axis=(0, 2), keepdims=True), x.var(1)),
         args(U(3, 4, 2))),
    Case("std", lambda x: (snp.std(x), snp.std(x, axis=1, ddof=1, keepdims=True), x.std(0)),
         args(U(4, 3))),
    Case("average", lambda x, w: (snp.average(x), snp.average(x, axis=1, weights=w),
                                  *snp.average(x, axis=1, weights=w, returned=True),
                                  snp.average(x, weights=x * x + 1),
                                  snp.average(x, axis=0, keepdims=True)),
         args(U(4, 3), U(3, lo=0.5, hi=2))),
    Case("cumsum", lambda x: (snp.cumsum(x), snp.cumsum(x, axis=0), snp.cumsum(x, axis=-1),
                              x.cumsum(1)), args(U(3, 4, 2))),
    Case("cumprod", lambda x: (snp.cumprod(x), snp.cumprod(x, axis=1), x.cumprod(0)),
         args(U(3, 4, lo=0.5, hi=1.5))),
    Case("cumprod_zeros", lambda x: snp.cumprod(x * np.array([1.0, 0.0, 1.0, 1.0, 0.0]), 0),
         args(U(5))),
    Case("ptp", lambda x: (snp.ptp(x), snp.ptp(x, axis=1), snp.ptp(x, axis=0, keepdims=True)),
         args(distinct(3, 4))),
    Case("arg_and_truth", lambda x: (
        snp.argmax(x), snp.argmin(x), snp.argmax(x, axis=0), snp.argmin(x, axis=-1),
        snp.argmax(x, axis=1, keepdims=True), x.argmax(0), x.argmin(),
        snp.any(x > 1.5), snp.all(x > -3), snp.any(x > 0, axis=0), snp.all(x > 0, axis=1),
        snp.count_nonzero(x > 0), snp.count_nonzero(x > 0, axis=1), x.any(), x.all(axis=0),
        snp.any(x > 0, axis=1, keepdims=True)), args(distinct(3, 4)), grad=False),
    Case("sort", lambda x: (snp.sort(x), snp.sort(x, axis=0), snp.sort(x, axis=None),
                            snp.argsort(x), snp.argsort(x, axis=0)), args(distinct(3, 4))),
    Case("take_along_axis", lambda x: (
        snp.take_along_axis(x, np.array([[2, 0, 0, 1], [1, 1, 2, -1]]), 0),
        snp.take_along_axis(x, snp.argsort(x, axis=1), 1)), args(distinct(3, 4))),
    Case("median", lambda x: (snp.median(x), snp.median(x, axis=0), snp.median(x, axis=1),
                              snp.median(x, axis=1, keepdims=True), snp.median(x[:, :3], 1)),
         args(distinct(5, 4))),
    Case("quantile", lambda x: (
        snp.quantile(x, 0.3), snp.quantile(x, [0.0, 0.25, 0.5, 0.9, 1.0], axis=0),
        snp.quantile(x, 0.75, axis=1, keepdims=True),
        snp.quantile(x, 0.4, axis=0, method="lower"), snp.quantile(x, 0.4, axis=0,
                                                                    method="higher"),
        snp.quantile(x, 0.45, axis=1, method="nearest"),
        snp.quantile(x, 0.45, axis=1, method="midpoint")), args(distinct(5, 4))),
    Case("percentile", lambda x: (snp.percentile(x, 30), snp.percentile(x, [10, 95], axis=1)),
         args(distinct(4, 5))),
    Case("nan_reductions", lambda x: (
        snp.nansum(x * np.array([1.0, np.nan, 1.0])), snp.nanmean(
            x * np.array([1.0, np.nan, 1.0]), axis=1),
        snp.nanmax(x * np.array([np.nan, 1.0, 1.0]), axis=1),
        snp.nanmin(x * NAN_MASK, axis=0), snp.nanmax(x * NAN_MASK)), args(distinct(4, 3))),
    Case("nan_all_nan_slices", lambda x: (
        snp.nanmin(x * np.array([1.0, 1.0, np.nan]), axis=0),
        snp.nanmax(x * np.array([np.nan, 1.0, 1.0]), axis=0),
        snp.nanmean(x * np.array([[np.nan], [1.0], [1.0], [1.0]]), axis=1)), args(distinct(4, 3)),
        grad=False),
    Case("searchsorted", lambda a, v: (snp.searchsorted(a, v), snp.searchsorted(a, v, "right")),
         lambda rng: [np.array([-1.0, 0.0, 0.0, 2.0, 3.5]),
                      np.array([-2.0, 0.0, 1.0, 3.5, 9.0])], grad=False),
]
BY_NAME = {c.name: c for c in CASES}


(test_values_match_numpy, test_gradient_against_differences,
 test_c_gradients_equal_interpreter) = standard_tests(CASES)
test_values_match_numpy = pytest.mark.filterwarnings(
    "ignore:All-NaN slice", "ignore:Mean of empty slice",
    "ignore:invalid value encountered")(test_values_match_numpy)


def test_jvp(backend):
    check_jvp(CASES, backend)


def test_second_order(backend):
    check_hvp([c for c in CASES if c.name in ("var", "std", "average", "cumprod", "quantile",
                                               "cumsum")], backend)


# --- exact derivatives where the math allows --------------------------------------------------

def test_cumprod_gradient_is_exact_at_zeros(backend):
    x = np.array([2.0, 0.0, 3.0, 0.0, 5.0])
    g = symgrad.compile(lambda x: snp.sum(snp.cumprod(x)), backend=backend).grad(x)
    # d/dx_j sum_i prod_{k<=i} x_k = sum_{i>=j} prod_{k<=i, k!=j} x_k: 1, 2 + 2*3, then every
    # term holds x_1 = 0. A rule dividing by x would give NaN here.
    np.testing.assert_array_equal(g, [1.0, 8.0, 0.0, 0.0, 0.0])
    f = symgrad.compile(lambda x: snp.cumprod(x)[-2], backend=backend)
    np.testing.assert_array_equal(f.grad(x), [0.0, 0.0, 0.0, 0.0, 0.0])
    np.testing.assert_array_equal(f.grad(np.array([2.0, 0.0, 3.0, 4.0, 5.0])),
                                  [0.0, 24.0, 0.0, 0.0, 0.0])


def test_std_gradient_of_constant_data_is_zero(backend):
    f = symgrad.compile(lambda x: snp.std(x), backend=backend)
    np.testing.assert_array_equal(f.grad(np.full(4, 1.5)), np.zeros(4))


def test_sort_gradient_follows_the_permutation(backend):
    x = np.array([3.0, -1.0, 2.0, 0.5])
    w = np.array([1.0, 10.0, 100.0, 1000.0])
    g = symgrad.compile(lambda x: snp.sum(snp.sort(x) * w), backend=backend).grad(x)
    np.testing.assert_array_equal(g, [1000.0, 1.0, 100.0, 10.0])


def test_sort_ties_and_nan_order_match_numpy(backend):
    x = np.array([[2.0, np.nan, 1.0, 2.0, -np.inf, 1.0, np.nan, 0.0]])
    f = symgrad.compile(lambda x: (snp.sort(x, axis=1), snp.argsort(x, axis=1)), backend=backend)
    s, i = f(x)
    np.testing.assert_array_equal(s, np.sort(x, axis=1))
    np.testing.assert_array_equal(i, np.argsort(x, axis=1, kind="stable"))


def test_median_gradient_splits_between_middle_elements(backend):
    x = np.array([4.0, 1.0, 3.0, 2.0])
    g = symgrad.compile(lambda x: snp.median(x), backend=backend).grad(x)
    np.testing.assert_array_equal(g, [0.0, 0.0, 0.5, 0.5])


def test_quantile_needs_static_q():
    with pytest.raises(TypeError, match="q must be known while tracing"):
        symgrad.compile(lambda x, q: snp.quantile(x, q), backend="interp")(np.ones(3), 0.5)


def test_sort_of_larger_arrays(backend):
    x = np.random.default_rng(5).standard_normal((3, 257))
    s, i = symgrad.compile(lambda x: (snp.sort(x), snp.argsort(x, axis=0)), backend=backend)(x)
    np.testing.assert_array_equal(s, np.sort(x))
    np.testing.assert_array_equal(i, np.argsort(x, axis=0, kind="stable"))


def test_methods_trace_like_functions():
    x = case_args(BY_NAME["var"])[0]
    f = symgrad.compile(lambda x: (x.var(axis=1, ddof=1), x.std(), x.cumsum(0), x.argmax(1),
                                   x.ptp(0)), backend="interp")
    for got, want in zip(f(x), (x.var(axis=1, ddof=1), x.std(), x.cumsum(0), x.argmax(1),
                                np.ptp(x, 0))):
        np.testing.assert_allclose(got, want, rtol=1e-13)


def test_cumprod_derivatives_with_a_run_time_size(backend):
    # The recurrence and shift kernels take run-time sizes, so cumprod's gradient and its
    # second order need no slice of a run-time axis.
    x, v = np.array([2.0, 0.0, 3.0, -1.5, 5.0]), np.array([1.0, -2.0, 0.5, 1.0, 3.0])
    fixed = symgrad.compile(lambda x: snp.sum(snp.cumprod(x) ** 2), backend=backend)
    sized = symgrad.compile(lambda x: snp.sum(snp.cumprod(x) ** 2), signature={"x": "f64[N]"},
                            backend=backend)
    np.testing.assert_array_equal(sized.grad(x), fixed.grad(x))
    np.testing.assert_array_equal(sized.hvp((x,), (v,)), fixed.hvp((x,), (v,)))
    # c = cumprod(x) = [2, 0, 0, 0, 0]: d/dx_0 sum c_i^2 = 2 c_0 = 4 (every later term holds
    # x_1 = 0), and d/dx_j for j >= 1 is a sum of 2 c_i (c_i / x_j) terms with c_i = 0.
    np.testing.assert_array_equal(fixed.grad(x), [4.0, 0.0, 0.0, 0.0, 0.0])
    assert sized(x[:3]) == pytest.approx(4.0)
