"""SGD, momentum, Nesterov, Adagrad, RMSProp and Adam raced on two problems.

    python examples/optimizers_race.py [--quick] [--figures DIR]

First the Rosenbrock valley f(x, y) = (1 − x)² + 100 (y − x²)², from (−1.2, 1) to its minimum
at (1, 1): a curved, badly scaled valley where plain gradient descent crawls. Then the
two-layer ReLU network of ``two_layer_net.py`` on scikit-learn's digits. Each optimizer has
its own learning rate per problem (the best of a small sweep). Prints the final Rosenbrock
loss and the digits test accuracy of each, and draws the trajectories and both loss curves in
one figure, ``DIR/optimizers_race.png`` (with ``--figures DIR``).
"""
import argparse
import sys
from pathlib import Path

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import symgrad.numpy as snp  # noqa: E402
from symgrad import optim  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from two_layer_net import HIDDEN, accuracy, digits, init, loss  # noqa: E402


# name: (optimizer class and options, learning rate on Rosenbrock, on the network)
RACERS = {
    "SGD": (lambda lr: optim.SGD(lr), 2e-3, 0.3),
    "momentum": (lambda lr: optim.SGD(lr, momentum=0.9), 1e-3, 0.3),
    "Nesterov": (lambda lr: optim.SGD(lr, momentum=0.9, nesterov=True), 1e-3, 0.3),
    "Adagrad": (lambda lr: optim.Adagrad(lr), 1.0, 0.1),
    "RMSProp": (lambda lr: optim.RMSProp(lr), 3e-3, 1e-2),
    "Adam": (lambda lr: optim.Adam(lr), 3e-2, 1e-2),
}


def rosenbrock(xy):
    x, y = xy[0], xy[1]
    return (1.0 - x) ** 2 + 100.0 * (y - x * x) ** 2


def race_rosenbrock(steps):
    """The path and loss curve of every optimizer from (−1.2, 1)."""
    runs = {}
    for name, (make, lr, _) in RACERS.items():
        path = [np.array([-1.2, 1.0])]
        result = optim.minimize(rosenbrock, path[0], make(lr), steps=steps, progress=False,
                                callback=lambda step, xy, value: path.append(xy))
        runs[name] = (np.array(path), result.history)
        print(f"Rosenbrock {name:9s} after {steps} steps: loss {result.history[-1]:.3e}, "
              f"at ({path[-1][0]:.4f}, {path[-1][1]:.4f})")
    return runs


def race_network(epochs, seed):
    """The batch-loss curve and test accuracy of every optimizer on the two-layer net."""
    X_train, X_test, y_train, y_test = digits(seed)
    per_epoch = -(-len(X_train) // 64)
    runs = {}
    for name, (make, _, lr) in RACERS.items():
        params = init(X_train.shape[1], HIDDEN, 10, seed)
        result = optim.minimize(loss, params, make(lr), data=(X_train, y_train), batch_size=64,
                                epochs=epochs, seed=seed, progress=False)
        test = accuracy(result.params, X_test, y_test)
        runs[name] = (result.history, test, per_epoch)
        print(f"two-layer net {name} test accuracy: {test:.4f}  "
              f"(final epoch mean loss {result.history[-per_epoch:].mean():.4f})")
    return runs


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps, for CI")
    parser.add_argument("--figures", type=Path, metavar="DIR",
                        help=f"save the figure as DIR/{Path(__file__).stem}.png "
                        "(without it, no figure is written)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rosen = race_rosenbrock(300 if args.quick else 3000)
    net = race_network(2 if args.quick else 20, args.seed)

    if args.figures is None:
        print("figure not saved (--figures DIR saves it)")
        return
    args.figures.mkdir(parents=True, exist_ok=True)
    fig, (ax_path, ax_rosen, ax_net) = plt.subplots(1, 3, figsize=(15, 4.2))
    x, y = np.meshgrid(np.linspace(-1.7, 1.7, 300), np.linspace(-0.6, 2.4, 300))
    ax_path.contour(x, y, (1 - x) ** 2 + 100 * (y - x * x) ** 2,
                    levels=np.logspace(-1, 3.3, 14), colors="0.8", linewidths=0.7)
    ax_path.plot([1], [1], "k*", ms=12)
    for name, (path, history) in rosen.items():
        line, = ax_path.plot(path[:, 0], path[:, 1], lw=1.2, label=name)
        ax_rosen.plot(np.arange(1, len(history) + 1), history, color=line.get_color(),
                      label=name)
    ax_path.set(xlim=(-1.7, 1.7), ylim=(-0.6, 2.4), xlabel="x", ylabel="y",
                title="Rosenbrock: trajectories from (−1.2, 1)")
    ax_path.legend(fontsize=8, loc="lower right")
    ax_rosen.set(xlabel="step", ylabel="loss", xscale="log", yscale="log",
                 title="Rosenbrock: loss")
    ax_rosen.legend(fontsize=8)
    for name, (history, test, per_epoch) in net.items():
        smooth = np.convolve(history, np.ones(per_epoch) / per_epoch, mode="valid")
        ax_net.plot(np.arange(per_epoch, len(history) + 1) / per_epoch, smooth,
                    label=f"{name} (test {test:.1%})")
    ax_net.set(xlabel="epoch", ylabel="batch loss, mean over an epoch", yscale="log",
               title="two-layer net on digits")
    ax_net.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.figures / "optimizers_race.png", dpi=120)
    print(f"saved {args.figures / 'optimizers_race.png'}")


if __name__ == "__main__":
    main()
