"""symgrad.optim: each update rule against a NumPy transcription of its published formula, the
structures ``step`` accepts, ``minimize`` on a convex problem, and the scipy path."""
import math

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad import optim

SHAPE = (4, 3)      # one parameter shape throughout, so each rule compiles once
STEPS = 6


# -- NumPy references, one per published formula --------------------------------------------

def ref_sgd(lr, momentum=0.0, nesterov=False, weight_decay=0.0):
    def run(p, grads):
        v = np.zeros_like(p)
        for t, g in enumerate(grads):
            g = g + weight_decay * p
            if momentum:
                v = momentum * v + g
                g = g + momentum * v if nesterov else v
            p = p - lr(t) * g
        return p
    return run


def ref_adagrad(lr, eps=1e-8):
    def run(p, grads):
        s = np.zeros_like(p)
        for t, g in enumerate(grads):
            s = s + g ** 2
            p = p - lr(t) * g / (np.sqrt(s) + eps)
        return p
    return run


def ref_rmsprop(lr, decay=0.99, eps=1e-8):
    def run(p, grads):
        s = np.zeros_like(p)
        for t, g in enumerate(grads):
            s = decay * s + (1 - decay) * g ** 2
            p = p - lr(t) * g / (np.sqrt(s) + eps)
        return p
    return run


def ref_adam(lr, betas=(0.9, 0.999), eps=1e-8):
    def run(p, grads):
        b1, b2 = betas
        m, v = np.zeros_like(p), np.zeros_like(p)
        for t, g in enumerate(grads, start=1):
            m = b1 * m + (1 - b1) * g
            v = b2 * v + (1 - b2) * g ** 2
            m_hat, v_hat = m / (1 - b1 ** t), v / (1 - b2 ** t)
            p = p - lr(t - 1) * m_hat / (np.sqrt(v_hat) + eps)
        return p
    return run


def constant(lr):
    return lambda t: lr


CASES = {
    "sgd": (lambda: optim.SGD(0.1), ref_sgd(constant(0.1))),
    "sgd-weight-decay": (lambda: optim.SGD(0.1, weight_decay=0.01),
                         ref_sgd(constant(0.1), weight_decay=0.01)),
    "momentum": (lambda: optim.SGD(0.05, momentum=0.9), ref_sgd(constant(0.05), 0.9)),
    "nesterov": (lambda: optim.SGD(0.05, momentum=0.9, nesterov=True),
                 ref_sgd(constant(0.05), 0.9, nesterov=True)),
    "adagrad": (lambda: optim.Adagrad(0.3, eps=1e-6), ref_adagrad(constant(0.3), 1e-6)),
    "rmsprop": (lambda: optim.RMSProp(0.01, decay=0.9), ref_rmsprop(constant(0.01), 0.9)),
    "adam": (lambda: optim.Adam(0.01), ref_adam(constant(0.01))),
    "adam-betas": (lambda: optim.Adam(0.02, betas=(0.8, 0.99), eps=1e-6),
                   ref_adam(constant(0.02), (0.8, 0.99), 1e-6)),
    "adam-cosine": (lambda: optim.Adam(optim.cosine_decay(0.01, 4)),
                    ref_adam(lambda t: 0.005 * (1 + math.cos(math.pi * min(t, 4) / 4)))),
    "momentum-step-decay": (lambda: optim.SGD(optim.step_decay(0.1, 2, 0.5), momentum=0.5),
                            ref_sgd(lambda t: 0.1 * 0.5 ** (t // 2), 0.5)),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_update_matches_published_formula(name, rng):
    make, reference = CASES[name]
    p0 = rng.normal(size=SHAPE)
    grads = [rng.normal(size=SHAPE) for _ in range(STEPS)]
    opt, p = make(), p0
    for g in grads:
        p = opt.step(p, g)
    assert opt.t == STEPS
    np.testing.assert_allclose(p, reference(p0, grads), rtol=1e-12, atol=1e-14)


def test_step_keeps_the_structure_and_state_per_leaf(rng):
    a, b, c = (rng.normal(size=SHAPE) for _ in range(3))
    ga, gb, gc = (rng.normal(size=SHAPE) for _ in range(3))
    params = {"w": a, "pair": (b, [c])}
    opt = optim.Adam(0.01)
    for _ in range(3):
        params = opt.step(params, {"w": ga, "pair": (gb, [gc])})
    # symgrad.tree_util, as jax.tree_util: a dict comes back with its keys sorted
    assert isinstance(params, dict) and list(params) == ["pair", "w"]
    assert isinstance(params["pair"], tuple) and isinstance(params["pair"][1], list)
    reference = ref_adam(constant(0.01))
    for p0, g, p in [(a, ga, params["w"]), (b, gb, params["pair"][0]),
                     (c, gc, params["pair"][1][0])]:
        np.testing.assert_allclose(p, reference(p0, [g] * 3), rtol=1e-12)


def test_step_leaves_inputs_alone_and_returns_fresh_arrays(rng):
    p, g = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    p_copy = p.copy()
    out = optim.SGD(0.1, momentum=0.9).step(p, g)
    np.testing.assert_array_equal(p, p_copy)
    assert not np.shares_memory(out, p)


def test_mixed_dtypes_update_per_dtype_and_keep_their_dtype(rng):
    p32 = rng.normal(size=SHAPE).astype(np.float32)
    p64, g64 = rng.normal(size=SHAPE), rng.normal(size=SHAPE)
    g32 = rng.normal(size=SHAPE).astype(np.float32)
    opt = optim.Adam(0.01)
    out32, out64 = opt.step((p32, p64), (g32, g64))
    assert out32.dtype == np.float32 and out64.dtype == np.float64
    reference = ref_adam(constant(0.01))
    np.testing.assert_allclose(out32, reference(p32.astype(np.float64), [g32]), rtol=1e-5)
    np.testing.assert_allclose(out64, reference(p64, [g64]), rtol=1e-12)
    m, v = opt.leaf_state(1)
    np.testing.assert_allclose(m, 0.1 * g64, rtol=1e-12)
    np.testing.assert_allclose(v, 0.001 * g64 ** 2, rtol=1e-12)
    assert opt.leaf_state(0)[0].dtype == np.float32


def test_step_rejects_mismatched_shapes(rng):
    opt = optim.SGD(0.1, momentum=0.9)
    with pytest.raises(ValueError, match="grads do not match"):
        opt.step(np.zeros(SHAPE), np.zeros((3, 4)))
    opt.step(np.zeros(SHAPE), np.zeros(SHAPE))
    with pytest.raises(ValueError, match="use a new optimizer"):
        opt.step(np.zeros((2, 2)), np.zeros((2, 2)))


@pytest.mark.parametrize("bad", [0, -1.0])
def test_learning_rate_must_be_positive(bad):
    with pytest.raises(ValueError, match="lr must be"):
        optim.SGD(bad)


def test_schedules():
    assert [optim.step_decay(1.0, 2, 0.5)(t) for t in range(5)] == [1, 1, 0.5, 0.5, 0.25]
    assert optim.exponential_decay(2.0, 0.5)(3) == 0.25
    cosine = optim.cosine_decay(1.0, 10, lr_min=0.1)
    assert cosine(0) == 1.0 and cosine(10) == pytest.approx(0.1) and cosine(50) == cosine(10)
    assert cosine(5) == pytest.approx(0.55)


# -- minimize --------------------------------------------------------------------------------

def least_squares(params, A, b):
    w, c = params
    r = A @ w + c - b
    return snp.mean(r * r)


@pytest.fixture
def regression(rng):
    A = rng.normal(size=(50, 3))
    b = A @ np.array([1.0, -2.0, 0.5]) + 0.3 + 0.1 * rng.normal(size=50)
    solution = np.linalg.lstsq(np.c_[A, np.ones(50)], b, rcond=None)[0]
    return A, b, solution


def test_minimize_full_batch_reaches_the_least_squares_solution(regression):
    A, b, solution = regression
    result = optim.minimize(least_squares, (np.zeros(3), np.zeros(())),
                            optim.SGD(0.2, momentum=0.9), data=(A, b), steps=400,
                            progress=False)
    w, c = result.params
    assert isinstance(result.params, tuple) and result.steps == 400
    np.testing.assert_allclose(np.r_[w, c], solution, atol=1e-10)
    assert len(result.history) == 400 and result.history[-1] <= result.history[0]
    assert result.best_loss == result.history.min() and result.message == "done"
    best = least_squares_np(result.best_params, A, b)
    assert best == pytest.approx(result.best_loss, rel=1e-12)


def least_squares_np(params, A, b):
    w, c = params
    return float(np.mean((A @ w + c - b) ** 2))


@pytest.mark.filterwarnings("ignore:overflow:RuntimeWarning")    # the interpreter's NumPy
def test_minimize_stops_when_the_loss_is_not_finite():
    def bowl(x):
        return snp.sum((x - 3.0) ** 2)

    result = optim.minimize(bowl, np.zeros(SHAPE), optim.SGD(1e200), steps=50, progress=False)
    assert "stopped: the loss is" in result.message and result.steps < 50
    assert not np.isfinite(result.history[-1])
    np.testing.assert_array_equal(result.best_params, 0.0)     # the start had the lowest loss


def test_minimize_mini_batches_are_seeded_and_include_the_last_partial_batch(regression):
    A, b, solution = regression
    runs = [optim.minimize(least_squares, (np.zeros(3), np.zeros(())),
                           optim.Adam(optim.cosine_decay(0.1, 300)), data=(A, b),
                           batch_size=16, epochs=75, seed=7, progress=False) for _ in range(2)]
    np.testing.assert_array_equal(runs[0].history, runs[1].history)
    assert runs[0].steps == 75 * 4                      # 50 rows = 16 + 16 + 16 + 2
    w, c = runs[0].params
    np.testing.assert_allclose(np.r_[w, c], solution, atol=2e-2)


@pytest.fixture
def compiled(monkeypatch):
    """The CompiledFunctions minimize creates, in order."""
    made = []

    def recording_compile(fn, **options):
        made.append(symgrad.compile(fn, **options))
        return made[-1]

    monkeypatch.setattr(optim, "compile", recording_compile)
    return made


def test_the_last_partial_batch_runs_the_same_native_function(regression, compiled):
    A, b, _ = regression
    optim.minimize(least_squares, (np.zeros(3), np.zeros(())), optim.SGD(0.1), data=(A, b),
                   batch_size=16, epochs=2, progress=False)
    assert len(compiled[0]._specs) == 1                     # batches of 16 and of 2 rows


def test_a_loss_that_needs_concrete_batch_sizes_still_trains(regression, compiled):
    A, b, _ = regression

    def needs_rows(params, A, b):
        w, c = params
        weights = np.full(A.shape[0], 1.0 / A.shape[0])     # NumPy needs an int row count
        r = A @ w + c - b
        return snp.sum(weights * r * r)

    result = optim.minimize(needs_rows, (np.zeros(3), np.zeros(())), optim.SGD(0.1),
                            data=(A, b), batch_size=16, epochs=2, seed=0, progress=False)
    reference = optim.minimize(least_squares, (np.zeros(3), np.zeros(())), optim.SGD(0.1),
                               data=(A, b), batch_size=16, epochs=2, seed=0, progress=False)
    np.testing.assert_allclose(result.history, reference.history, rtol=1e-12)
    tried, used = compiled[:2]                              # run-time N failed to trace
    assert not tried._specs and len(used._specs) == 2       # a specialization per batch size


def test_minimize_stops_cleanly_on_keyboard_interrupt_and_callback(regression):
    A, b, _ = regression
    seen = []

    def interrupt(step, params, loss):
        seen.append(loss)
        if step == 5:
            raise KeyboardInterrupt

    result = optim.minimize(least_squares, (np.zeros(3), np.zeros(())), optim.SGD(0.1),
                            data=(A, b), steps=100, callback=interrupt, progress=False)
    assert result.steps == 5 and "interrupted" in result.message
    assert len(result.history) == 5 and isinstance(result.params, tuple)
    stop = optim.minimize(least_squares, (np.zeros(3), np.zeros(())), optim.SGD(0.1),
                          data=(A, b), steps=100, callback=lambda s, p, l: s == 3,
                          progress=False)
    assert stop.steps == 3 and "callback" in stop.message


@pytest.mark.parametrize("tqdm", [True, False], ids=["tqdm", "plain"])
def test_minimize_without_data_shows_progress(tqdm, capsys, monkeypatch):
    def bowl(x):
        return snp.sum((x - 3.0) ** 2)

    if tqdm:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)   # import fails
    result = optim.minimize(bowl, np.zeros(SHAPE), optim.SGD(0.5), epochs=3)
    np.testing.assert_allclose(result.params, 3.0)
    assert result.steps == 3
    err = capsys.readouterr().err
    assert ("3/3" in err) and (("step/s" in err) if tqdm else ("steps/s" in err))
    with pytest.raises(ValueError, match="epochs or steps"):
        optim.minimize(bowl, np.zeros(SHAPE), optim.SGD(0.25))


# -- scipy -----------------------------------------------------------------------------------

def rosenbrock(x):
    return snp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_scipy_lbfgsb_reaches_the_rosenbrock_minimum():
    scipy_optimize = pytest.importorskip("scipy.optimize")
    f = symgrad.compile(rosenbrock)
    result = scipy_optimize.minimize(f.value_and_grad, np.array([-1.2, 1.0]), jac=True,
                                     method="L-BFGS-B", options={"gtol": 1e-10})
    assert result.success
    np.testing.assert_allclose(result.x, [1.0, 1.0], atol=1e-5)


def test_flatten_round_trip_feeds_scipy(rng):
    scipy_optimize = pytest.importorskip("scipy.optimize")
    params = {"w": rng.normal(size=(2, 3)), "b": (np.zeros(3), np.float64(1.5))}
    x, unflatten = optim.flatten(params)
    assert x.shape == (10,)
    back = unflatten(x)
    np.testing.assert_array_equal(back["w"], params["w"])
    assert back["b"][1].shape == ()
    with pytest.raises(ValueError, match="1-D array of 10"):
        unflatten(np.zeros(9))

    A = rng.normal(size=(30, 3))
    b = A @ np.array([1.0, -2.0, 0.5]) + 0.3
    loss = symgrad.compile(lambda w, c, A, b: snp.mean((A @ w + c - b) ** 2), argnums=(0, 1))
    x0, unflatten = optim.flatten((np.zeros(3), np.zeros(())))

    def fun(x):
        value, grads = loss.value_and_grad(*unflatten(x), A, b)
        return value, optim.flatten(grads)[0]

    result = scipy_optimize.minimize(fun, x0, jac=True, method="L-BFGS-B")
    np.testing.assert_allclose(result.x, [1.0, -2.0, 0.5, 0.3], atol=1e-5)


@pytest.mark.parametrize("tqdm", [True, False], ids=["tqdm", "plain"])
@pytest.mark.parametrize("steps", [200, 7])
def test_progress_ends_on_the_last_loss(tqdm, capsys, monkeypatch, steps):
    """The bar's loss was a running average refreshed at most every 0.2 s: it ended on 2.31
    while the loss was 0.35. The last step shows its own loss; so does a run stopped early."""
    def bowl(x):
        return snp.sum((x - 3.0) ** 2)

    if tqdm:
        pytest.importorskip("tqdm")
    else:
        monkeypatch.setitem(__import__("sys").modules, "tqdm.auto", None)
    stop = steps // 2 if steps == 7 else None
    result = optim.minimize(bowl, np.zeros(SHAPE), optim.SGD(0.3), steps=steps,
                            callback=(lambda s, p, v: s == stop) if stop else None)
    err = capsys.readouterr().err
    final = f"{result.history[-1]:.4g}"
    assert result.history[0] > 10 * result.history[-1]
    last_line = err.replace("\r", "\n").strip().splitlines()[-1]
    assert (f"loss={final}" if tqdm else f"loss {final}") in last_line, last_line
    assert f"{result.steps}/{steps}" in last_line
