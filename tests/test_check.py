"""``symgrad.check_grad``: its report, and that it catches a wrong derivative rule or a wrong
backend gradient, printing gradient and reference side by side."""
import dataclasses

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.tools import check
from symgrad.core.primitives import REGISTRY
from symgrad.core import ops

X = np.array([0.1, 0.5, 1.0])


def sin_sum(x):
    return snp.sum(snp.sin(x) * np.array([1.0, 2.0, 3.0]))


@pytest.fixture
def wrong_sin_rule(monkeypatch):
    """Make d sin(x) = sin(x) (it is cos(x)) for the duration of one test."""
    prim = REGISTRY["sin"]
    monkeypatch.setitem(REGISTRY, "sin",
                        dataclasses.replace(prim, vjp=lambda g, out, x: (ops.mul(g, out),)))
    yield                                       # monkeypatch restores the rule afterwards


def test_report_of_a_correct_gradient(backend):
    f = symgrad.compile(sin_sum, backend=backend)
    report = symgrad.check_grad(f, X)
    assert isinstance(report, symgrad.GradCheckReport)
    assert report.ok
    assert report.value == pytest.approx(np.sum(np.sin(X) * [1, 2, 3]), rel=1e-15)
    assert {(c.method, c.argument) for c in report.comparisons} == {
        ("interpreter", "x"), ("central diff", "x"), ("complex step", "x")}
    assert report.errors("interpreter") <= 1e-15
    assert report.errors("central diff") < 1e-8
    assert report.errors("complex step") < 1e-14
    assert (report.rtol, report.atol) == (1e-6, 1e-9)
    text = str(report)
    assert text.splitlines()[0].startswith("gradient check of sin_sum: value")
    assert "(ok;" in text and "MISMATCH" not in text and "FAIL" not in text
    for method in ("interpreter", "central diff", "complex step"):
        assert method in text


def test_compiled_check_method_is_check_grad(backend):
    f = symgrad.compile(lambda x, y: snp.sum(snp.exp(x) * y), argnums=(0, 1), backend=backend)
    report = f.check(X, np.array([2.0, -1.0, 0.5]))
    assert report.ok
    assert {c.argument for c in report.comparisons} == {"x", "y"}
    assert len(report.comparisons) == 6


def test_wrong_rule_raises_with_gradient_and_reference_side_by_side(backend, wrong_sin_rule):
    f = symgrad.compile(sin_sum, backend=backend)
    with pytest.raises(symgrad.GradientCheckError) as info:
        symgrad.check_grad(f, X)
    error = info.value
    assert isinstance(error, AssertionError) and isinstance(error, symgrad.SymgradError)
    report = error.report
    assert not report.ok
    status = {c.method: c.ok for c in report.comparisons}
    # the backend agrees with the interpreter (both run the wrong rule); the references do not
    assert status == {"interpreter": True, "central diff": False, "complex step": False}
    wrong, right = np.sin(X) * [1, 2, 3], np.cos(X) * [1, 2, 3]
    assert report.errors("complex step") == pytest.approx(
        np.max(np.abs(wrong - right)) / np.max(np.abs(right)), rel=1e-9)
    text = str(error)
    assert text == str(report)
    assert "MISMATCH" in text and "FAIL" in text
    assert "complex step vs gradient of x, worst entries:" in text
    header = next(line for line in text.splitlines() if "gradient" in line and "reference" in line)
    assert header.split() == ["index", "gradient", "reference"]
    # each worst entry prints the analytic and the reference value on one line
    for k in range(3):
        assert any(line.split() == [str(k), f"{wrong[k]:.15g}", f"{right[k]:.15g}"]
                   for line in text.splitlines())


def test_corrected_rule_is_not_served_from_a_cache(backend, monkeypatch):
    """Compiled code is cached by content: a changed derivative rule must change the key."""
    weights = np.array([1.0, 2.0, 3.0])
    monkeypatch.setitem(REGISTRY, "sin", dataclasses.replace(
        REGISTRY["sin"], vjp=lambda g, out, x: (ops.mul(g, out),)))
    wrong = symgrad.compile(sin_sum, backend=backend).grad(X)
    np.testing.assert_allclose(wrong, np.sin(X) * weights, rtol=1e-15)
    monkeypatch.undo()
    right = symgrad.compile(sin_sum, backend=backend).grad(X)
    np.testing.assert_allclose(right, np.cos(X) * weights, rtol=1e-15)


def test_wrong_rule_reported_without_raising(backend, wrong_sin_rule):
    f = symgrad.compile(sin_sum, backend=backend)
    report = symgrad.check_grad(f, X, raise_on_error=False)
    assert not report.ok
    assert report.errors("central diff") > 0.1


def test_wrong_rule_caught_on_large_arguments(backend, wrong_sin_rule):
    """Beyond max_coords entries the check samples coordinates plus a random direction."""
    x = np.linspace(0.1, 1.2, 60).reshape(6, 10)
    f = symgrad.compile(lambda x: snp.sum(snp.sin(x)), backend=backend)
    report = symgrad.check_grad(f, x, raise_on_error=False)
    assert not report.ok
    assert {c.method for c in report.comparisons} == {"interpreter", "central diff",
                                                      "complex step", "directional"}
    assert not next(c for c in report.comparisons if c.method == "directional").ok
    sampled = next(c for c in report.comparisons if c.method == "complex step")
    for index, g, ref in sampled.worst:
        assert np.ndim(x) == len(index) if isinstance(index, tuple) else np.ndim(x) == 1
        assert g == pytest.approx(np.sin(x[index]), rel=1e-12)
        assert ref == pytest.approx(np.cos(x[index]), rel=1e-12)


def test_large_arguments_pass_when_right(backend, rng):
    W = rng.standard_normal((30, 4))
    X = rng.standard_normal((5, 30))
    f = symgrad.compile(lambda W, X: snp.sum(snp.tanh(X @ W) ** 2), backend=backend)
    report = symgrad.check_grad(f, W, X)
    assert report.ok
    assert "directional" in {c.method for c in report.comparisons}


def test_backend_disagreeing_with_interpreter_is_caught(backend):
    """A gradient off by 1e-3 in one entry (as a backend bug would be) fails the interpreter leg."""
    f = symgrad.compile(sin_sum, backend=backend)
    honest = f.value_and_grad

    def off_by_a_little(*args):
        value, g = honest(*args)
        g = g.copy()
        g[1] += 1e-3
        return value, g

    f.value_and_grad = off_by_a_little          # an instance attribute: this f only
    with pytest.raises(symgrad.GradientCheckError) as info:
        symgrad.check_grad(f, X)
    comparison = next(c for c in info.value.report.comparisons if c.method == "interpreter")
    assert not comparison.ok
    assert comparison.max_abs == pytest.approx(1e-3, rel=1e-9)
    assert comparison.worst[0][0] == 1


def test_tolerances_are_honoured(backend):
    """A gradient off by 1e-8 relative passes at rtol 1e-6 and fails at 1e-10: the complex step
    (exact to rounding) holds it to rtol; central differences add only their own error."""
    f = symgrad.compile(lambda x: snp.sum(x ** 3), backend=backend)
    x = np.array([1e3, 2e3])
    honest = f.value_and_grad
    f.value_and_grad = lambda *a: (honest(*a)[0], honest(*a)[1] * (1 + 1e-8))
    assert symgrad.check_grad(f, x, rtol=1e-6).ok
    report = symgrad.check_grad(f, x, rtol=1e-10, atol=0.0, raise_on_error=False)
    assert not report.ok
    assert not next(c for c in report.comparisons if c.method == "complex step").ok


def test_float32_uses_float32_tolerance(backend):
    f = symgrad.compile(lambda x: snp.sum(snp.exp(x) * x), backend=backend)
    x = np.array([0.3, -0.2, 1.5], dtype=np.float32)
    report = symgrad.check_grad(f, x)
    assert report.ok
    assert report.rtol == check.F32_RTOL
    # the references ran in float64: their error is float32 rounding, well above float64's
    assert 1e-9 < report.errors("complex step") < check.F32_RTOL


def test_check_grad_with_other_argnums(backend):
    def fn(x, k, y):
        return snp.sum(x[k] * y ** 2)
    f = symgrad.compile(fn, argnums=0, backend=backend)
    report = symgrad.check_grad(f, X, np.array([2, 0, 2]), np.array([1.0, -2.0, 0.5]),
                                argnums=2)
    assert report.ok
    assert {c.argument for c in report.comparisons} == {"y"}
    with pytest.raises(ValueError, match="argument 1"):
        symgrad.check_grad(f, X, np.array([2, 0, 2]), np.array([1.0, -2.0, 0.5]), argnums=1)


def test_a_c_backend_bug_is_traced_to_the_first_statement_that_differs(monkeypatch):
    """A deliberately wrong C rendering of sin (cos): check_grad says which statement's C
    value first leaves the interpreter's, with its source line."""
    import dataclasses

    from symgrad.core.primitives import REGISTRY
    wrong = dataclasses.replace(REGISTRY["sin"], c_expr=lambda ops, ctype: f"cos({ops[0]})")
    monkeypatch.setitem(REGISTRY, "sin", wrong)

    def f(x):
        y = x * 2.0
        return snp.sum(snp.sin(y) * x)
    with pytest.raises(symgrad.GradientCheckError) as info:
        symgrad.check_grad(f, np.array([0.3, 0.7, 1.1]))
    report = info.value.report
    assert report.divergence is not None
    assert "= sin " in report.divergence and "test_check.py" in report.divergence
    assert "return snp.sum(snp.sin(y) * x)" in report.divergence
    assert report.divergence in str(report)


def test_no_divergence_reported_when_c_agrees():
    report = symgrad.check_grad(lambda x: snp.sum(snp.sin(x) * x), np.array([0.3, 0.7]))
    assert report.ok and report.divergence is None


def test_a_nan_input_compares_nan_for_nan_and_the_report_says_so():
    """At x = [1, NaN, 2] C and the interpreter both give NaN at index 1: that agrees (it was
    reported as a MISMATCH with "max |C - interpreter| = 0"); the finite references are NaN
    everywhere (the value is), and the report says the input holds NaN."""
    f = symgrad.compile(lambda x: snp.sum(snp.sin(x) * x))
    x = np.array([1.0, np.nan, 2.0])
    with np.errstate(invalid="ignore"):
        report = symgrad.check_grad(f, x, raise_on_error=False)
    interp = next(c for c in report.comparisons if c.method == "interpreter")
    assert interp.ok and interp.max_abs == 0.0
    assert report.divergence is None
    text = str(report)
    assert "note: the input x holds NaN (1 of 3 entries; first at index 1)" in text
    assert "max |C - interpreter|" not in text


def test_nan_against_a_number_is_still_a_mismatch():
    ok = check._compare("m", "x", [np.nan, 1.0], [np.nan, 1.0], 1e-6, 1e-9)
    assert ok.ok and ok.max_abs == 0.0
    for grad, ref in (([np.nan, 1.0], [0.0, 1.0]), ([np.inf, 1.0], [-np.inf, 1.0]),
                      ([2.0, 1.0], [np.nan, 1.0])):
        assert not check._compare("m", "x", grad, ref, 1e-6, 1e-9).ok
    assert check._compare("m", "x", [np.inf, 1.0], [np.inf, 1.0], 1e-6, 1e-9).ok


def test_first_divergence_treats_nan_in_both_as_equal():
    g = symgrad.trace(lambda x: snp.sum(snp.log(x)), np.ones(3))
    with np.errstate(invalid="ignore"):
        assert check.first_divergence(g, [np.array([1.0, -1.0, np.nan])], 1e-6, 1e-9) is None


# --- central differences with their own error estimate (issue 21) -------------------------------

def steep(x):
    """The program the long fuzz run stopped at: smooth, exact gradient, third derivative ~1e7."""
    v0 = x + x
    v1 = snp.dot(v0, v0)
    v2 = snp.dot(v0, v1)
    return snp.sum(snp.sin(1.7 * v2) + 0.25 * v2)


X_STEEP = np.random.default_rng(0).uniform(-2, 2, 4)


def _perturbed(f, entry, rel):
    """``f`` whose gradient is off by ``rel`` (relative) at ``entry``, as a wrong rule would be."""
    honest = f.value_and_grad

    def wrong(*args):
        value, g = honest(*args)
        g = np.array(g, copy=True)
        g.flat[entry] *= 1 + rel
        return value, g
    f.value_and_grad = wrong                    # an instance attribute: this f only
    return f


def test_a_steep_smooth_function_passes_by_the_estimate_of_central_differences(backend):
    f = symgrad.compile(steep, backend=backend)
    g = f.grad(X_STEEP)
    # plain central differences miss this exact gradient by more than rtol 1e-6 ...
    plain = symgrad.numerical.grad(lambda x: float(steep(x)), X_STEEP)
    assert np.max(np.abs(plain - g)) > 1e-6 * np.max(np.abs(g))
    # ... while the complex step agrees to rounding; the check passes with each central entry
    # allowed its own error estimate, which is what plain differences missed by, within 10x
    report = symgrad.check_grad(f, X_STEEP)
    assert report.ok, report
    assert report.errors("complex step") < 1e-13
    central = next(c for c in report.comparisons if c.method == "central diff")
    assert np.max(np.abs(plain - g)) < central.allowance < 10 * np.max(np.abs(plain - g))
    assert "reference error est." in str(report)


@pytest.mark.parametrize("rel, failing", [(3e-6, {"complex step", "interpreter"}),
                                          (1e-5, {"complex step", "interpreter",
                                                  "central diff"})])
def test_a_wrong_gradient_of_a_steep_function_is_still_caught(backend, rel, failing):
    """The estimate widens central differences only by their own error (3.8e-6 relative here,
    while their Richardson value is off by 7e-12): the complex step still catches 3e-6, and
    central differences 1e-5."""
    f = symgrad.compile(steep, backend=backend)
    entry = int(np.argmax(np.abs(f.grad(X_STEEP))))
    report = symgrad.check_grad(_perturbed(f, entry, rel), X_STEEP, raise_on_error=False)
    assert not report.ok
    assert {c.method for c in report.comparisons if not c.ok} == failing
    worst = next(c for c in report.comparisons if c.method == "complex step").worst
    assert worst[0][0] == entry


def test_central_differences_alone_catch_a_small_error_where_the_complex_step_does_not_apply():
    """A complex function has no complex step: central differences are its only reference, and
    their error estimate is small where the function is tame."""
    def f(z):
        return snp.sum(snp.abs(snp.exp(z) - z ** 2) ** 2)
    z = np.array([0.3 + 0.2j, -0.5 + 1.1j, 1.2 - 0.4j])
    cf = symgrad.compile(f)
    assert symgrad.check_grad(cf, z).ok
    report = symgrad.check_grad(_perturbed(cf, 1, 1e-5), z, raise_on_error=False)
    assert {c.method for c in report.comparisons} == {"interpreter", "central diff"}
    central = next(c for c in report.comparisons if c.method == "central diff")
    assert not central.ok and central.allowance < 1e-7 * central.scale


def test_a_kink_between_the_two_steps_widens_the_estimate_not_the_mismatch():
    """abs(x - 0.3) at 0.3 + 1.5h: D(h) is right and D(2h) straddles the kink; the estimate says
    so, and the Richardson value (wrong there) is not held against a right gradient."""
    h = np.cbrt(np.finfo(float).eps)
    ref, err = check._partials(lambda x: float(np.sum(np.abs(x - 0.3))), np.array([0.3 + 1.5 * h]))
    assert abs(ref[0] - 1.0) <= err[0] and err[0] > 0.1
