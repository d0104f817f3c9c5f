"""Numerical gradient estimators for arbitrary Python callables.

Contract
--------
Every estimator takes a callable ``f`` that maps an array ``x`` (any shape) to
a scalar.  "Scalar" means a Python/NumPy number, a 0-d array or a 1-element
array; any other output raises ``ValueError`` naming the output's shape.
``x`` is converted with ``np.asarray(x, dtype=np.float64)`` (so lists and
Python numbers are accepted) and is never mutated: all perturbations are made
on a private copy, and ``f`` receives a fresh array on every call, so even an
``f`` that writes into its argument cannot corrupt ``x`` or later evaluations.

Public functions
----------------
grad(f, x, method="central", h=None)
    Coordinate-wise finite differences ("central", "forward", "backward") or
    the complex-step derivative ("complex").  Returns a float64 array of
    ``x``'s shape (0-d for scalar ``x``).
directional(f, x, s, h=None)
    Central-difference directional derivative of ``f`` at ``x`` along ``s``.
spsa(f, x, samples=1, delta=1e-3, seed=None)
    Simultaneous perturbation stochastic approximation of the gradient.
regression_grad(f, x, samples=None, delta=1e-3, seed=None)
    Gradient from a least-squares fit of random central differences.

Only NumPy and the standard library are used.
"""

import warnings

import numpy as np

__all__ = ["grad", "directional", "spsa", "regression_grad"]

_EPS = np.finfo(np.float64).eps
_TINY = np.finfo(np.float64).tiny
# numpy.exceptions appeared in NumPy 1.25; older versions keep it at top level.
_ComplexWarning = getattr(np, "exceptions", np).ComplexWarning

# Optimal finite-difference steps balance truncation against rounding.  The
# rounding error of a difference quotient is ~ eps*|f|/h.  Forward/backward
# differences truncate at O(h), so minimising h + eps/h gives h ~ sqrt(eps)
# (≈1.5e-8) and an error ~ sqrt(eps).  Central differences cancel the even
# Taylor terms and truncate at O(h^2); minimising h^2 + eps/h gives
# h ~ cbrt(eps) (≈6e-6) and an error ~ eps^(2/3).  Steps are scaled by
# max(1, |x_i|) so they stay relative for large coordinates and absolute
# near zero.
_CENTRAL_STEP = np.cbrt(_EPS)
_ONE_SIDED_STEP = np.sqrt(_EPS)

# The complex step derivative f'(x) ≈ Im f(x + ih) / h involves no
# subtraction of nearly equal numbers, hence no cancellation: the rounding
# error does not grow as h shrinks.  Truncation is O(h^2), so any tiny h works;
# 1e-20 makes it far below eps and the result is exact to working precision.
_COMPLEX_STEP = 1e-20

# (upper, lower) offsets, in units of h, of the two evaluation points.
_FD_OFFSETS = {"central": (1, -1), "forward": (1, 0), "backward": (0, -1)}
_METHODS = (*_FD_OFFSETS, "complex")


def _scalar(value):
    """Return f's output as a 0-d array, or raise ValueError naming its shape."""
    arr = np.asarray(value)
    if arr.size != 1:
        raise ValueError(
            "f must return a scalar (a number, 0-d array or 1-element array); "
            f"got an output of shape {arr.shape}"
        )
    return arr.reshape(())


def _real(value):
    """f's output as a Python float (for finite-difference methods)."""
    return float(_scalar(value).item())


def _eval_at(f, flat, shape, k, value):
    """Evaluate f with coordinate ``k`` of ``flat`` set to ``value``.

    ``flat`` is the caller-private flat copy of x.  The coordinate is restored
    afterwards (even if f raises), and f gets its own copy of the array, so
    neither the caller's x nor later evaluations can be affected.
    """
    old = flat[k]
    flat[k] = value
    try:
        return f(flat.reshape(shape).copy())
    finally:
        flat[k] = old


def _complex_partial(f, cflat, shape, k, h):
    """Complex-step partial derivative Im f(x + i h e_k) / h."""
    not_safe = (
        "f is not complex-step safe: it must accept complex input and "
        "propagate the imaginary part to its output"
    )
    try:
        with warnings.catch_warnings():
            # A silent complex->real cast inside f drops the derivative.
            warnings.simplefilter("error", _ComplexWarning)
            out = _scalar(_eval_at(f, cflat, shape, k, cflat[k] + 1j * h))
    except (TypeError, _ComplexWarning) as exc:
        raise TypeError(f"{not_safe} ({exc})") from exc
    if not np.iscomplexobj(out):
        raise TypeError(f"{not_safe} (output {out!r} has no imaginary part)")
    return float(out.imag) / h


def _check_step(name, value):
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")


def grad(f, x, method="central", h=None):
    """Gradient of a scalar function by coordinate-wise perturbation.

    Parameters
    ----------
    f : callable
        Maps an array of x's shape to a scalar (number, 0-d or 1-element
        array).  For ``method="complex"`` it must accept complex arrays and
        be analytic in x (no abs, float(), comparisons on values, ...).
    x : array_like
        Point of evaluation; converted with ``np.asarray(x, dtype=float64)``
        and never mutated.
    method : {"central", "forward", "backward", "complex"}
        Difference scheme.  Central costs 2n evaluations with O(h^2) error,
        forward/backward n+1 with O(h) error, complex n with O(h^2) error and
        no cancellation.
    h : float, optional
        Step size used as is for every coordinate.  Default: central
        ``cbrt(eps) * max(1, |x_i|)``; forward/backward
        ``sqrt(eps) * max(1, |x_i|)``; complex ``1e-20``.

    Returns
    -------
    numpy.ndarray
        float64 array of x's shape (0-d if x is a scalar).

    Raises
    ------
    ValueError
        Unknown method, non-positive/non-finite h, a step h so small that
        x + h and x - h are the same float (the message names the step and
        the coordinate), or f returning a non-scalar (the message names the
        output's shape).
    TypeError
        With ``method="complex"`` if f is not complex-step safe (raises
        TypeError on complex input, discards the imaginary part, or returns
        a value with no imaginary part).
    """
    if method not in _METHODS:
        raise ValueError(
            f"unknown method {method!r}; valid methods are {', '.join(_METHODS)}"
        )
    if h is not None:
        _check_step("h", h)
    x = np.asarray(x, dtype=np.float64)
    shape = x.shape
    flat = x.flatten()  # private copy; perturbed one coordinate at a time
    g = np.empty(flat.size)

    if method == "complex":
        step = _COMPLEX_STEP if h is None else float(h)
        cflat = flat.astype(np.complex128)
        for k in range(flat.size):
            g[k] = _complex_partial(f, cflat, shape, k, step)
        return g.reshape(shape)

    if h is None:
        base = _CENTRAL_STEP if method == "central" else _ONE_SIDED_STEP
        steps = base * np.maximum(1.0, np.abs(flat))
    else:
        steps = np.full(flat.size, float(h))
    up, down = _FD_OFFSETS[method]
    f0 = _real(f(x.copy())) if method != "central" and flat.size else None
    for k in range(flat.size):
        xk = flat[k]
        hi, lo = xk + up * steps[k], xk + down * steps[k]
        if hi == lo:
            # x +- h rounds back to x: the quotient would be 0/0. Say so instead of a NaN.
            where = k if len(shape) <= 1 else tuple(int(i) for i in np.unravel_index(k, shape))
            raise ValueError(
                f"step h={steps[k]:.3g} is below the resolution of x[{where}] = {float(xk)!r} "
                f"(its float spacing is {np.spacing(abs(xk)):.3g}): the two points of the "
                f"{method} difference are the same number. Use a larger h, or h=None for "
                f"the default step"
            )
        f_hi = f0 if up == 0 else _real(_eval_at(f, flat, shape, k, hi))
        f_lo = f0 if down == 0 else _real(_eval_at(f, flat, shape, k, lo))
        # Divide by the step actually taken, (x+h)-(x-h) in floating point,
        # not the nominal one: removes the representation error of x +- h.
        g[k] = (f_hi - f_lo) / (hi - lo)
    return g.reshape(shape)


def directional(f, x, s, h=None):
    """Central-difference directional derivative (f(x+hs) - f(x-hs)) / 2h.

    Parameters
    ----------
    f : callable
        Maps an array of x's shape to a scalar.
    x, s : array_like
        Point and direction, of identical shape (converted to float64; not
        mutated).  s need not be normalised: the result approximates grad·s.
    h : float, optional
        Step along s, used as is.  Default
        ``cbrt(eps) * max(1, ||x||_inf) / max(||s||_inf, tiny)`` so that the
        largest coordinate perturbation is the usual central-difference step.

    Returns
    -------
    float

    Raises
    ------
    ValueError
        If x and s have different shapes (both are named), h is not a
        positive finite number or too small to move x, or f returns a
        non-scalar.
    """
    x = np.asarray(x, dtype=np.float64)
    s = np.asarray(s, dtype=np.float64)
    if x.shape != s.shape:
        raise ValueError(
            f"x and s must have the same shape; got x {x.shape} and s {s.shape}"
        )
    if h is None:
        x_inf = np.max(np.abs(x), initial=0.0)
        s_inf = np.max(np.abs(s), initial=0.0)
        h = _CENTRAL_STEP * max(1.0, x_inf) / max(s_inf, _TINY)
    else:
        _check_step("h", h)
        h = float(h)
    hi, lo = x + h * s, x - h * s
    if np.any(s != 0) and np.array_equal(hi, lo):
        raise ValueError(
            f"step h={h:.3g} along s is below the resolution of x: x + h*s and x - h*s are "
            f"the same array. Use a larger h, or h=None for the default step"
        )
    return (_real(f(hi)) - _real(f(lo))) / (2.0 * h)


def _check_samples(samples):
    if int(samples) != samples or samples < 1:
        raise ValueError(f"samples must be a positive integer, got {samples!r}")
    return int(samples)


def spsa(f, x, samples=1, delta=1e-3, seed=None):
    """Simultaneous perturbation stochastic approximation (SPSA) gradient.

    Each draw uses a Rademacher direction D (independent ±1 per coordinate)
    and costs two evaluations regardless of x.size:
    ``g_hat = (f(x + delta*D) - f(x - delta*D)) / (2*delta) / D``.
    The estimate is the mean over ``samples`` draws; it is unbiased up to
    O(delta^2) and its variance decreases like 1/samples.

    Parameters
    ----------
    f : callable
        Maps an array of x's shape to a scalar.
    x : array_like
        Point of evaluation (converted to float64; not mutated).
    samples : int
        Number of random directions (>= 1).
    delta : float
        Perturbation size (> 0).
    seed : None, int or numpy.random.Generator
        Passed to ``np.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        float64 array of x's shape.

    Raises
    ------
    ValueError
        Bad samples or delta, or f returning a non-scalar.
    """
    samples = _check_samples(samples)
    _check_step("delta", delta)
    x = np.asarray(x, dtype=np.float64)
    rng = np.random.default_rng(seed)
    total = np.zeros(x.shape)
    for _ in range(samples):
        d = rng.choice(np.array([-1.0, 1.0]), size=x.shape)
        slope = (_real(f(x + delta * d)) - _real(f(x - delta * d))) / (2.0 * delta)
        total += slope / d
    return total / samples


def regression_grad(f, x, samples=None, delta=1e-3, seed=None):
    """Gradient by least-squares regression of random central differences.

    Draws ``samples`` standard normal directions u_j, measures
    ``y_j = f(x + delta*u_j) - f(x - delta*u_j)`` and solves
    ``min_g sum_j (y_j - 2*delta*u_j·g)^2`` with ``np.linalg.lstsq``.  For
    ``samples < x.size`` the system is underdetermined and the minimum-norm
    solution is returned.

    Parameters
    ----------
    f : callable
        Maps an array of x's shape to a scalar.
    x : array_like
        Point of evaluation (converted to float64; not mutated).
    samples : int, optional
        Number of directions (>= 1); default ``2*n + 10`` with n = x.size.
    delta : float
        Perturbation size (> 0).
    seed : None, int or numpy.random.Generator
        Passed to ``np.random.default_rng``.

    Returns
    -------
    numpy.ndarray
        float64 array of x's shape.

    Raises
    ------
    ValueError
        Bad samples or delta, or f returning a non-scalar.
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.size
    samples = _check_samples(2 * n + 10 if samples is None else samples)
    _check_step("delta", delta)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((samples, n))
    y = np.array(
        [
            _real(f(x + delta * uj.reshape(x.shape)))
            - _real(f(x - delta * uj.reshape(x.shape)))
            for uj in u
        ]
    )
    g, *_ = np.linalg.lstsq(2.0 * delta * u, y, rcond=None)
    return g.reshape(x.shape)
