"""Softmax and multiclass SVM linear classifiers on scikit-learn's digits, by mini-batch SGD.

    python examples/linear_classifiers.py [--quick] [--figures DIR]

Both losses carry L2 regularisation and are trained with SGD plus momentum through
``symgrad.optim.minimize``. Prints each classifier's test accuracy and saves both loss curves
to ``DIR/linear_classifiers.png`` (with ``--figures DIR``).
"""
import argparse
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402

import symgrad.numpy as snp  # noqa: E402
from symgrad import nn, optim  # noqa: E402

REG = 1e-3


def digits(seed=0):
    """Train and test splits of the 8×8 digits, pixels scaled to [0, 1] and centred."""
    X, y = load_digits(return_X_y=True)
    X_train, X_test, y_train, y_test = train_test_split(X / 16.0, y, test_size=0.25,
                                                        stratify=y, random_state=seed)
    mean = X_train.mean(axis=0)
    return X_train - mean, X_test - mean, y_train, y_test


def softmax_loss(params, X, y):
    W, b = params
    logp = nn.log_softmax(X @ W + b, axis=1)
    n = X.shape[0]
    return -snp.mean(logp[snp.arange(n), y]) + REG * snp.sum(W * W)


def svm_loss(params, X, y):
    """Multiclass hinge loss (Weston–Watkins): Σ_{j≠y} max(0, s_j − s_y + 1), averaged.

    The sum over every class j includes j = y, whose term is max(0, 1) = 1 exactly; subtracting
    that 1 leaves the sum over j ≠ y without a mask.
    """
    W, b = params
    s = X @ W + b
    n = X.shape[0]
    correct = snp.expand_dims(s[snp.arange(n), y], 1)
    margins = nn.relu(s - correct + 1.0)
    return snp.sum(margins) / n - 1.0 + REG * snp.sum(W * W)


def accuracy(params, X, y):
    W, b = params
    return float(np.mean(np.argmax(X @ W + b, axis=1) == y))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a few epochs, for CI")
    parser.add_argument("--figures", type=Path, metavar="DIR",
                        help=f"save the figure as DIR/{Path(__file__).stem}.png "
                        "(without it, no figure is written)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    epochs, batch_size = (5 if args.quick else 50), 64

    X_train, X_test, y_train, y_test = digits(args.seed)
    rng = np.random.default_rng(args.seed)
    results = {}
    for name, loss, lr in [("softmax", softmax_loss, 0.1), ("svm", svm_loss, 0.02)]:
        params = (0.01 * rng.normal(size=(X_train.shape[1], 10)), np.zeros(10))
        result = optim.minimize(loss, params, optim.SGD(lr, momentum=0.9),
                                data=(X_train, y_train), batch_size=batch_size, epochs=epochs,
                                seed=args.seed, progress=not args.quick)
        results[name] = result
        print(f"{name} ({epochs} epochs, {result.wall_time:.2f} s): train accuracy "
              f"{accuracy(result.params, X_train, y_train):.4f}")
        print(f"{name} test accuracy: {accuracy(result.params, X_test, y_test):.4f}")

    if args.figures is None:
        print("figure not saved (--figures DIR saves it)")
        return
    args.figures.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 3.8))
    per_epoch = -(-len(X_train) // batch_size)
    for name, result in results.items():
        steps = np.arange(1, len(result.history) + 1) / per_epoch
        smooth = np.convolve(result.history, np.ones(per_epoch) / per_epoch, mode="valid")
        line, = ax.plot(steps, result.history, lw=0.5, alpha=0.3)
        ax.plot(steps[per_epoch - 1:], smooth, color=line.get_color(),
                label=f"{name} (test {accuracy(result.params, X_test, y_test):.1%})")
    ax.set(xlabel="epoch", ylabel="loss (batch, and mean over an epoch)", yscale="log",
           title="linear classifiers on digits, SGD + momentum")
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.figures / "linear_classifiers.png", dpi=120)
    print(f"saved {args.figures / 'linear_classifiers.png'}")


if __name__ == "__main__":
    main()
