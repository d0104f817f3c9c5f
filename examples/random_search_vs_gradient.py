"""Random search against following the gradient, for a linear softmax classifier on digits.

    python examples/random_search_vs_gradient.py [--quick] [--figures DIR]

The comparison from the course notes symgrad grew out of (there on CIFAR-10, here on
scikit-learn's bundled 8×8 digits): (1) try random weight matrices and keep the best,
(2) random local search — perturb the best one and keep improvements, (3) step along the
negative gradient, which symgrad computes exactly. Each strategy gets the same number of
iterations; prints the test accuracy of each and saves the loss curves to
``DIR/random_search_vs_gradient.png`` (with ``--figures DIR``). The random scale (0.3) and the
local step (0.1) are the best of a small sweep (0.01 to 1), so the searches are not handicapped.
"""
import argparse
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import symgrad  # noqa: E402
import symgrad.numpy as snp  # noqa: E402
from symgrad import nn, optim  # noqa: E402



def digits(seed=0):
    """Train and test splits of the 8×8 digits with a constant 1 column (the bias trick)."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25,
                                                        stratify=y, random_state=seed)
    mean = X_train.mean(axis=0)
    bias = lambda A: np.c_[A - mean, np.ones(len(A))]  # noqa: E731
    return bias(X_train), bias(X_test), y_train, y_test


@symgrad.compile
def softmax_loss(W, X, y):
    logp = nn.log_softmax(X @ W, axis=1)
    n = X.shape[0]
    return -snp.mean(logp[snp.arange(n), y])


def accuracy(W, X, y):
    return float(np.mean(np.argmax(X @ W, axis=1) == y))


def random_search(X, y, iterations, rng, scale=0.3):
    best_W, best, curve = None, np.inf, []
    for _ in range(iterations):
        W = scale * rng.normal(size=(X.shape[1], 10))
        value = softmax_loss(W, X, y)
        if value < best:
            best_W, best = W, value
        curve.append(best)
    return best_W, curve


def random_local_search(X, y, iterations, rng, step=0.1):
    W = 1e-3 * rng.normal(size=(X.shape[1], 10))
    best, curve = softmax_loss(W, X, y), []
    for _ in range(iterations):
        candidate = W + step * rng.normal(size=W.shape)
        value = softmax_loss(candidate, X, y)
        if value < best:
            W, best = candidate, value
        curve.append(best)
    return W, curve


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer iterations, for CI")
    parser.add_argument("--figures", type=Path, metavar="DIR",
                        help=f"save the figure as DIR/{Path(__file__).stem}.png "
                        "(without it, no figure is written)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    iterations = 100 if args.quick else 1000
    X_train, X_test, y_train, y_test = digits(args.seed)
    rng = np.random.default_rng(args.seed)

    W_random, random_curve = random_search(X_train, y_train, iterations, rng)
    W_local, local_curve = random_local_search(X_train, y_train, iterations, rng)
    # Full-batch gradient descent: one step per iteration, over the whole training set.
    W0 = 1e-3 * rng.normal(size=(X_train.shape[1], 10))
    result = optim.minimize(softmax_loss, W0, optim.SGD(1.0), data=(X_train, y_train),
                            steps=iterations, progress=False)
    print(f"{iterations} iterations each, loss on the training set after the last:")
    for name, W, curve in [("random search", W_random, random_curve),
                           ("random local search", W_local, local_curve),
                           ("gradient descent", result.params, result.history)]:
        print(f"{name} test accuracy: {accuracy(W, X_test, y_test):.4f}  "
              f"(training loss {curve[-1]:.4f})")

    if args.figures is None:
        print("figure not saved (--figures DIR saves it)")
        return
    args.figures.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    steps = np.arange(1, iterations + 1)
    ax.plot(steps, random_curve, label="random search (best so far)")
    ax.plot(steps, local_curve, label="random local search")
    ax.plot(steps, result.history, label="gradient descent")
    ax.set(xlabel="iteration (one loss evaluation; for gradient descent, with its gradient)",
           ylabel="training loss", xscale="log", title="softmax classifier on digits")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.figures / "random_search_vs_gradient.png", dpi=120)
    print(f"saved {args.figures / 'random_search_vs_gradient.png'}")


if __name__ == "__main__":
    main()
