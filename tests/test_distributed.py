"""symgrad.distributed on a LocalCluster of two worker processes (loopback): distributed value
and gradient against one process, training against ``symgrad.optim.minimize``, a worker killed
mid-step, and the compiler running at most once per worker."""
import os
import pickle
import sys
import tempfile

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="symgrad.distributed needs Dask: "
                                  "pip install 'symgrad[distributed]'")
da = pytest.importorskip("dask.array")

import symgrad                                        # noqa: E402
from symgrad import optim                             # noqa: E402
from symgrad import distributed as sd                 # noqa: E402
from symgrad.backends.c import compiler

sys.path.insert(0, os.path.dirname(__file__))
import distributed_fns as fns                         # noqa: E402

SIZES = (37, 80, 13, 55)      # unequal shards


@pytest.fixture(scope="module")
def client():
    # Worker processes import the test losses by name (they pickle by reference).
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PYTHONPATH", os.pathsep.join(
            [os.path.dirname(__file__), *filter(None, [os.environ.get("PYTHONPATH")])]))
        cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                           host="127.0.0.1", dashboard_address="127.0.0.1:0")
        with cluster, distributed.Client(cluster) as client:
            client.wait_for_workers(2)
            yield client


def test_compiled_function_pickles_as_function_and_options(softmax_data):
    W, X, y = softmax_data
    loss = symgrad.compile(fns.softmax_loss, signature={"X": "f64[N,6]", "y": "i64[N]"},
                           cflags=["-O2"])
    loss.value_and_grad(W, X, y)
    payload = pickle.dumps(loss)
    copy = pickle.loads(payload)
    assert copy is not loss and pickle.loads(payload) is copy   # one object per content
    assert copy.fn is fns.softmax_loss and not copy._specs      # specializations stay behind
    assert (copy.signature, copy.cflags, copy.argnums) == (loss.signature, ["-O2"], (0,))
    assert copy.value_and_grad(W, X, y)[0] == loss.value_and_grad(W, X, y)[0]
    # Not importable: travels by value (cloudpickle, which Dask installs).
    scaled = pickle.loads(pickle.dumps(symgrad.compile(lambda W, X, y: 2 * fns.softmax_loss(
        W, X, y))))
    assert scaled(W, X, y) == pytest.approx(2 * loss(W, X, y), rel=1e-14)


def split(arrays, sizes):
    cuts = np.cumsum(sizes)[:-1]
    return list(zip(*(np.split(a, cuts) for a in arrays)))


@pytest.fixture(scope="module")
def softmax_data():
    X, y = fns.blobs(sum(SIZES), 6, 4, seed=0)
    W = np.random.default_rng(1).normal(size=(6, 4)) * 0.1
    return W, X, y


@pytest.mark.parametrize("form", ["numpy", "futures", "dask"])
def test_softmax_value_and_grad_matches_one_process(client, softmax_data, form):
    W, X, y = softmax_data
    value, grad = symgrad.compile(fns.softmax_loss).value_and_grad(W, X, y)
    if form == "numpy":
        shards = split((X, y), SIZES)
    elif form == "futures":
        shards = sd.put(split((X, y), SIZES), client)
    else:
        shards = (da.from_array(X, chunks=(SIZES, -1)), da.from_array(y, chunks=(SIZES,)))
    d_value, d_grad = sd.value_and_grad(fns.softmax_loss, W, shards, client)
    assert abs(d_value - value) <= 1e-12
    np.testing.assert_allclose(d_grad, grad, rtol=0, atol=1e-12)


def test_sum_adds_the_shards(client, softmax_data):
    W, X, y = softmax_data
    shards = split((X, y), SIZES)
    one = symgrad.compile(fns.softmax_loss)
    parts = [one.value_and_grad(W, *s) for s in shards]
    value, grad = sd.value_and_grad(fns.softmax_loss, W, shards, client, reduce="sum")
    assert abs(value - sum(v for v, _ in parts)) <= 1e-12
    np.testing.assert_allclose(grad, sum(g for _, g in parts), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="reduce"):
        sd.value_and_grad(fns.softmax_loss, W, shards, client, reduce="max")


def two_layer_problem():
    X, y = fns.blobs(sum(SIZES), 8, 3, seed=2)
    rng = np.random.default_rng(3)
    params = (rng.normal(size=(8, 16)) * 0.5, np.zeros(16), rng.normal(size=(16, 3)) * 0.25,
              np.zeros(3))
    return params, X, y


def test_two_layer_training_matches_one_process(client):
    params, X, y = two_layer_problem()
    steps = 5
    local = optim.minimize(fns.two_layer_loss, params, optim.SGD(0.5, momentum=0.9),
                           data=(X, y), steps=steps, progress=False)
    dist = sd.minimize(fns.two_layer_loss, params, optim.SGD(0.5, momentum=0.9),
                       split((X, y), SIZES), client, steps=steps)
    assert dist.steps == steps and isinstance(dist.params, tuple)
    np.testing.assert_allclose(dist.history, local.history, rtol=0, atol=1e-12)
    for p, q in zip(dist.params, local.params):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-11)
    # The same through optim.minimize's client= hook.
    hooked = optim.minimize(fns.two_layer_loss, params, optim.SGD(0.5, momentum=0.9),
                            data=split((X, y), SIZES), steps=steps, progress=False,
                            client=client)
    np.testing.assert_allclose(hooked.history, local.history, rtol=0, atol=1e-12)
    for p, q in zip(hooked.params, local.params):
        np.testing.assert_allclose(p, q, rtol=0, atol=1e-11)


def test_worker_killed_mid_step_gives_the_same_result(client, tmp_path):
    params, X, y = two_layer_problem()
    expected = symgrad.compile(lambda W1, b1, W2, b2, X, y: fns.two_layer_loss(
        (W1, b1, W2, b2), X, y), argnums=(0, 1, 2, 3)).value_and_grad(*params, X, y)
    marker = str(tmp_path / "killed")
    client.register_plugin(fns.KillOnce(marker))
    try:
        value, grads = sd.value_and_grad(fns.two_layer_loss, params, split((X, y), SIZES),
                                         client)
    finally:
        client.unregister_worker_plugin(fns.KillOnce.name)
    assert os.path.exists(marker), "no worker was killed"
    assert abs(value - expected[0]) <= 1e-12
    for g, e in zip(grads, expected[1]):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-12)
    client.wait_for_workers(2)


def test_compiler_runs_at_most_once_per_worker(client, softmax_data):
    W, X, y = softmax_data
    client.wait_for_workers(2)
    # A cache no process has filled, so the workers must compile (the option travels along).
    loss = symgrad.compile(fns.softmax_loss, cache_dir=tempfile.mkdtemp(prefix="symgrad-dist-"))
    before = client.run(compiler.invocations)
    held_before = client.run(fns.loaded_losses)
    shards = sd.put(split((X, y), (*SIZES, 21, 8)), client)
    for step in range(3):
        sd.value_and_grad(loss, W * (step + 1), shards, client)
    after = client.run(compiler.invocations)
    runs = {w: after[w] - before.get(w, 0) for w in after}
    assert all(n <= 1 for n in runs.values()), runs
    assert sum(runs.values()) >= 1, runs
    # Every task of every step unpickled the loss again, yet each worker holds it once.
    held = client.run(fns.loaded_losses)
    assert all(held[w] - held_before.get(w, 0) <= 1 for w in held), (held_before, held)


def test_dict_of_arrays_model_through_the_same_pytree_module(client):
    """distributed.value_and_grad on a dict model: the gradient is a dict of the same keys and
    matches one process's symgrad.grad on all the data (which takes the dict as it is)."""
    r = np.random.default_rng(5)
    params = {"W2": r.standard_normal((4, 2)), "W1": r.standard_normal((3, 4)),
              "b1": r.standard_normal(4)}
    X, y = r.standard_normal((185, 3)), r.standard_normal((185, 2))
    value, grads = sd.value_and_grad(fns.dict_loss, params, split((X, y), SIZES), client)
    assert isinstance(grads, dict) and sorted(grads) == ["W1", "W2", "b1"]
    v_one, g_one = symgrad.value_and_grad(fns.dict_loss)(params, X, y)
    assert value == pytest.approx(v_one, rel=1e-12)
    for k in params:
        np.testing.assert_allclose(grads[k], g_one[k], rtol=1e-10, atol=1e-13)
