"""A two-layer ReLU network with a softmax loss on scikit-learn's digits, trained with Adam.

    python examples/two_layer_net.py [--quick] [--figures DIR]

The loss is written once in NumPy style; symgrad compiles its value and gradient to C and
``symgrad.optim.minimize`` trains it in shuffled mini-batches. Prints the test accuracy, saves
loss and accuracy curves to ``DIR/two_layer_net.png`` (with ``--figures DIR``), and times a
training step against the same network trained with hand-derived NumPy gradients.
"""
import argparse
import time
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import symgrad.numpy as snp  # noqa: E402
from symgrad import nn, optim  # noqa: E402

HIDDEN = 100
REG = 1e-4


def digits(seed=0):
    """Train and test splits of the 8×8 digits, pixels scaled to [0, 1] and centred."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25,
                                                        stratify=y, random_state=seed)
    mean = X_train.mean(axis=0)
    return X_train - mean, X_test - mean, y_train, y_test


def init(n_in, n_hidden, n_out, seed=0):
    """He-initialised weights, zero biases."""
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n_in, n_hidden)) * np.sqrt(2.0 / n_in), np.zeros(n_hidden),
            rng.normal(size=(n_hidden, n_out)) * np.sqrt(2.0 / n_hidden), np.zeros(n_out))


def scores(params, X):
    W1, b1, W2, b2 = params
    return nn.relu(X @ W1 + b1) @ W2 + b2


def loss(params, X, y):
    """Mean cross-entropy plus L2 on the weights."""
    W1, _, W2, _ = params
    logp = nn.log_softmax(scores(params, X), axis=1)
    n = X.shape[0]
    return -snp.mean(logp[snp.arange(n), y]) + REG * (snp.sum(W1 * W1) + snp.sum(W2 * W2))


def accuracy(params, X, y):
    # symgrad.numpy on plain arrays is NumPy, so the same scores() predicts.
    return float(np.mean(np.argmax(scores(params, X), axis=1) == y))


# -- the same model with hand-derived gradients, for the timing comparison --------------------

def numpy_loss_and_grad(params, X, y):
    W1, b1, W2, b2 = params
    n = len(X)
    z = X @ W1 + b1
    h = np.maximum(z, 0)
    s = h @ W2 + b2
    s = s - s.max(axis=1, keepdims=True)
    logp = s - np.log(np.exp(s).sum(axis=1, keepdims=True))
    value = -logp[np.arange(n), y].mean() + REG * (np.sum(W1 * W1) + np.sum(W2 * W2))
    ds = np.exp(logp)
    ds[np.arange(n), y] -= 1
    ds /= n
    dh = ds @ W2.T
    dz = dh * (z > 0)
    return value, (X.T @ dz + 2 * REG * W1, dz.sum(axis=0), h.T @ ds + 2 * REG * W2,
                   ds.sum(axis=0))


def numpy_train(params, X, y, lr, epochs, batch_size, seed):
    """Adam over the same seeded mini-batches as ``optim.minimize``; returns (params, steps)."""
    rng = np.random.default_rng(seed)
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    b1, b2, eps, t = 0.9, 0.999, 1e-8, 0
    for _ in range(epochs):
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch_size):
            idx = order[start:start + batch_size]
            _, grads = numpy_loss_and_grad(params, X[idx], y[idx])
            t += 1
            new = []
            for i, (p, g) in enumerate(zip(params, grads)):
                m[i] = b1 * m[i] + (1 - b1) * g
                v[i] = b2 * v[i] + (1 - b2) * g * g
                new.append(p - lr * (m[i] / (1 - b1 ** t)) / (np.sqrt(v[i] / (1 - b2 ** t)) + eps))
            params = tuple(new)
    return params, t


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs, for CI")
    parser.add_argument("--figures", type=Path, metavar="DIR",
                        help=f"save the figure as DIR/{Path(__file__).stem}.png "
                        "(without it, no figure is written)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    epochs, batch_size, lr = (8 if args.quick else 40), 64, 1e-2

    X_train, X_test, y_train, y_test = digits(args.seed)
    params = init(X_train.shape[1], HIDDEN, 10, args.seed)
    per_epoch = -(-len(X_train) // batch_size)
    curves = {"epoch": [], "train": [], "test": []}

    def record(step, params, value):
        if step % per_epoch == 0:
            curves["epoch"].append(step / per_epoch)
            curves["train"].append(accuracy(params, X_train, y_train))
            curves["test"].append(accuracy(params, X_test, y_test))

    start = time.perf_counter()
    result = optim.minimize(loss, params, optim.Adam(optim.cosine_decay(lr, epochs * per_epoch)),
                            data=(X_train, y_train), batch_size=batch_size, epochs=epochs,
                            callback=record, seed=args.seed, progress=not args.quick)
    wall = time.perf_counter() - start
    test_acc = accuracy(result.params, X_test, y_test)
    print(f"two-layer net ({HIDDEN} hidden, Adam, {epochs} epochs): "
          f"train accuracy {accuracy(result.params, X_train, y_train):.4f}")
    print(f"two-layer net test accuracy: {test_acc:.4f}")
    print(f"training wall time (compiling included): {wall:.2f} s, {result.steps} steps")

    # The hand-derived NumPy gradient must agree with symgrad's before timing anything.
    import symgrad
    flat = symgrad.compile(lambda W1, b1, W2, b2, X, y: loss((W1, b1, W2, b2), X, y),
                           argnums=(0, 1, 2, 3))
    value, grads = flat.value_and_grad(*params, X_train[:batch_size], y_train[:batch_size])
    value_np, grads_np = numpy_loss_and_grad(params, X_train[:batch_size], y_train[:batch_size])
    assert abs(value - value_np) < 1e-12 and all(
        np.allclose(g, gn, rtol=1e-10, atol=1e-12) for g, gn in zip(grads, grads_np))

    # Time steady-state steps (after the first epoch, which compiles), same batches for both.
    bench_epochs = 3 if args.quick else 10
    stamps = []
    optim.minimize(loss, params, optim.Adam(lr), data=(X_train, y_train), batch_size=batch_size,
                   epochs=bench_epochs, seed=1, progress=False,
                   callback=lambda step, p, value: stamps.append(time.perf_counter()))
    symgrad_step = (stamps[-1] - stamps[per_epoch - 1]) / (len(stamps) - per_epoch)
    start = time.perf_counter()
    _, steps = numpy_train(params, X_train, y_train, lr, bench_epochs, batch_size, seed=1)
    numpy_step = (time.perf_counter() - start) / steps
    print(f"time per training step (batch {batch_size}, forward + gradient + Adam): "
          f"symgrad {symgrad_step * 1e3:.3f} ms, hand-derived NumPy {numpy_step * 1e3:.3f} ms")

    if args.figures is None:
        print("figure not saved (--figures DIR saves it)")
        return
    args.figures.mkdir(parents=True, exist_ok=True)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    steps = np.arange(1, len(result.history) + 1) / per_epoch
    ax_loss.plot(steps, result.history, lw=0.5, alpha=0.4, label="batch loss")
    window = per_epoch
    smooth = np.convolve(result.history, np.ones(window) / window, mode="valid")
    ax_loss.plot(steps[window - 1:], smooth, label="running mean over an epoch")
    ax_loss.set(xlabel="epoch", ylabel="loss", yscale="log", title="training loss")
    ax_loss.legend()
    ax_acc.plot(curves["epoch"], curves["train"], label="train")
    ax_acc.plot(curves["epoch"], curves["test"], label="test")
    ax_acc.set(xlabel="epoch", ylabel="accuracy", ylim=(0.8, 1.0),
               title=f"accuracy (test {test_acc:.1%})")
    ax_acc.legend()
    fig.tight_layout()
    fig.savefig(args.figures / "two_layer_net.png", dpi=120)
    print(f"saved {args.figures / 'two_layer_net.png'}")


if __name__ == "__main__":
    main()
