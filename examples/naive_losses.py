"""The code people already wrote, compiled unchanged: loops, ``if``, ``+=`` and ``max``.

    python examples/naive_losses.py [--quick]

The cs231n assignment's naive multiclass SVM and softmax losses (a double loop over examples and
classes, ``if j == y[i]: continue``, ``if margin > 0:``, ``loss += ...``; the hand-written
gradient removed), a Rosenbrock function written with scalar code in a ``for`` loop, and a
pendulum simulated with ``while t < T:``. Each is written with ``import numpy as np`` and is
ordinary Python: called directly it runs in NumPy. ``symgrad.compile`` converts its source (its
loops become C loops with a tape for reverse mode, its ``if``s selections) and its gradient
matches the vectorized version's to rounding. Prints both, and the largest difference.
"""
import argparse
import math

import numpy as np

import symgrad


# --- cs231n, as written (with the gradient code removed) ---------------------------------------

def svm_loss_naive(W, X, y, reg):
    """Structured SVM loss, naive implementation (with loops)."""
    num_classes = W.shape[1]
    num_train = X.shape[0]
    loss = 0.0
    for i in range(num_train):
        scores = X[i].dot(W)
        correct_class_score = scores[y[i]]
        for j in range(num_classes):
            if j == y[i]:
                continue
            margin = scores[j] - correct_class_score + 1  # note delta = 1
            if margin > 0:
                loss += margin
    # Right now the loss is a sum over all training examples, but we want it
    # to be an average instead so we divide by num_train.
    loss /= num_train
    # Add regularization to the loss.
    loss += reg * np.sum(W * W)
    return loss


def softmax_loss_naive(W, X, y, reg):
    """Softmax loss, naive implementation (with loops)."""
    loss = 0.0
    num_train = X.shape[0]
    num_classes = W.shape[1]
    for i in range(num_train):
        scores = X[i].dot(W)
        scores -= np.max(scores)          # numeric stability
        sum_exp = 0.0
        for j in range(num_classes):
            sum_exp += math.exp(scores[j])
        loss += -scores[y[i]] + math.log(sum_exp)
    loss /= num_train
    loss += reg * np.sum(W * W)
    return loss


def svm_loss_vectorized(W, X, y, reg):
    num_train = X.shape[0]
    scores = X.dot(W)
    correct = scores[np.arange(num_train), y][:, None]
    margins = np.maximum(0, scores - correct + 1)
    margins[np.arange(num_train), y] = 0
    return np.sum(margins) / num_train + reg * np.sum(W * W)


def softmax_loss_vectorized(W, X, y, reg):
    num_train = X.shape[0]
    scores = X.dot(W)
    scores = scores - np.max(scores, axis=1, keepdims=True)
    logp = scores - np.log(np.sum(np.exp(scores), axis=1, keepdims=True))
    return -np.sum(logp[np.arange(num_train), y]) / num_train + reg * np.sum(W * W)


# --- a test function written with scalar code ----------------------------------------------------

def rosenbrock_loop(x):
    total = 0.0
    for i in range(len(x) - 1):
        a = 1.0 - x[i]
        b = x[i + 1] - x[i] * x[i]
        total += a * a + 100.0 * b * b
    return total


def rosenbrock_vectorized(x):
    return np.sum((1.0 - x[:-1]) ** 2 + 100.0 * (x[1:] - x[:-1] ** 2) ** 2)


# --- a simulation with a while loop --------------------------------------------------------------

def pendulum(params, T):
    """Damped pendulum by explicit Euler until t reaches T (an argument, so the number of steps
    is known only at run time); the energy left at the end."""
    damping, length = params[0], params[1]
    theta, omega = 1.0, 0.0
    t, dt = 0.0, 0.01
    while t < T:
        theta, omega = (theta + dt * omega,
                        omega + dt * (-9.81 / length * math.sin(theta) - damping * omega))
        t += dt
    return theta ** 2 + 0.5 * omega ** 2


def pendulum_fixed_steps(params, steps):
    damping, length = params[0], params[1]
    theta, omega = 1.0, 0.0
    dt = 0.01
    for _ in range(steps):
        theta, omega = (theta + dt * omega,
                        omega + dt * (-9.81 / length * np.sin(theta) - damping * omega))
    return theta ** 2 + 0.5 * omega ** 2


def pendulum_steps(T):
    """How many steps the while loop takes (Python's floats decide, as they do when compiled)."""
    t, n = 0.0, 0
    while t < T:
        t += 0.01
        n += 1
    return n


def cifar_like(N, D=3073, C=10, seed=0):
    rng = np.random.default_rng(seed)
    W = rng.standard_normal((D, C)) * 1e-4
    X = rng.standard_normal((N, D))
    y = rng.integers(0, C, N)
    return W, X, y


def main(quick=False):
    N = 16 if quick else 256
    W, X, y = cifar_like(N, D=65 if quick else 3073)
    reg = 5e-6
    report = []
    for naive, vectorized in [(svm_loss_naive, svm_loss_vectorized),
                              (softmax_loss_naive, softmax_loss_vectorized)]:
        f, g = symgrad.compile(naive), symgrad.compile(vectorized)
        (v1, g1), (v2, g2) = f.value_and_grad(W, X, y, reg), g.value_and_grad(W, X, y, reg)
        assert abs(v1 - naive(W, X, y, reg)) <= 1e-12 * abs(v1)
        report.append((naive.__name__, v1, v2, np.max(np.abs(g1 - g2))))
    x = np.linspace(-1.2, 1.5, 7)
    f, g = symgrad.compile(rosenbrock_loop), symgrad.compile(rosenbrock_vectorized)
    report.append(("rosenbrock_loop", f(x), g(x), np.max(np.abs(f.grad(x) - g.grad(x)))))
    p = np.array([0.3, 1.5])
    f = symgrad.compile(pendulum)
    g = symgrad.compile(pendulum_fixed_steps, static_argnums=(1,))
    for T in (2.5, 5.0):            # one compiled function for every horizon
        steps = pendulum_steps(T)
        report.append((f"pendulum T={T}", f(p, T), g(p, steps),
                       np.max(np.abs(f.grad(p, T) - g.grad(p, steps)))))
    for name, naive_value, vectorized_value, grad_diff in report:
        print(f"{name:20s} value {naive_value:.15g} (vectorized {vectorized_value:.15g}); "
              f"largest gradient difference {grad_diff:.2e}")
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small shapes (a smoke test)")
    main(parser.parse_args().quick)
