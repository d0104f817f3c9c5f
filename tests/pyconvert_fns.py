"""Plain Python/NumPy functions for tests/test_pyconvert.py: each is run as it is (the oracle) and
compiled by symgrad (its source converted). Written the way people write NumPy, not for symgrad."""
import math

import numpy as np


def if_else(x):
    s = np.sum(x)
    if s > 0:
        y = s * 2.0
    else:
        y = -s ** 2
    return y


def elif_chain(x):
    s = x[0] - x[1]
    if s > 1.0:
        y = np.sin(s)
    elif s > -1.0:
        y = s ** 3
    else:
        y = np.exp(s)
    return y + x[2]


def early_return(x):
    s = x[0] * x[1]
    if s > 0:
        return s
    if x[2] > 0:
        return x[2] * s
    return -s


def conditional_expression(x):
    s = np.sum(x * x)
    t = s if x[0] > x[1] else 2.0 * s
    return t + (x[2] if not x[2] < 0 else -x[2])


def boolean_operators(x):
    y = 0.0
    if x[0] > 0 and x[1] > 0 or not x[2] < 0.5:
        y = x[0] * x[1]
    if 0 < x[1] < 1:
        y = y + x[1]
    return y + x[2]


def math_and_builtins(x):
    s = np.sum(x)
    return (math.exp(s / 4) + math.log(1 + s * s) + math.sqrt(1 + x[0] ** 2) + max(0, s)
            + min(x[1], 0.25) + abs(x[2]) + sum(x) + max(x) + math.tanh(x[0]))


def numpy_spellings(x):
    a = np.array([x[0], x[1] * 2.0, 3.0])
    b = np.maximum(0, x[:3]) + np.where(x[1:] > 0, x[1:], 0.0)
    return np.sum(a * b) + x.max() + np.mean(x) + float(x[0])


def setitem_created_arrays(x):
    a = np.zeros(4)
    a[1] = x[0]
    a[2:] = x[1:3] * 3.0
    b = np.empty_like(x)
    b[:] = 1.0
    b[0] = a[2]
    return np.sum(a * a) + np.sum(b * x)


def repeated_indices(x):
    a = x * 1.0
    a[[0, 0, 2]] = x[1:4]          # the last write to 0 wins
    a[[1, 1]] += 10.0 * x[3]       # added once, as in NumPy
    b = np.zeros(3)
    np.add.at(b, [0, 0, 2], x[:3])     # accumulates
    return np.sum(a * a) + np.sum(b * b)


def views(x):
    a = x * 1.0
    v = a[1:]
    w = a[:3]
    v[0] = x[0] * 5.0              # visible in a and in w
    v += 1.0
    a[0] *= 2.0
    return np.sum(w * w) + np.sum(a) + v[0] * x[2]


def inplace_argument(x):
    y = x
    y += 2.0 * x                   # x is updated through y (NumPy: same array)
    y *= x
    return np.sum(x * x)


def loop_with_branches(x):
    total = 0.0
    for i in range(x.shape[0]):
        if x[i] > 0:
            total += x[i] ** 2
        else:
            total -= 0.5 * x[i]
    return total


def nested_loops_continue(x):
    loss = 0.0
    n = x.shape[0]
    for i in range(n):
        for j in range(n):
            if j == i:
                continue
            margin = x[j] - x[i] + 1.0
            if margin > 0:
                loss += margin
    return loss / n


def loop_break(x):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i] * x[i]
        if acc > 2.0:
            break
    return acc


def while_traced(x):
    t = 0.0
    y = x[0]
    while t < 1.0:
        y = y + 0.1 * np.sin(y) * x[1]
        t = t + 0.1 + 0.01 * x[2] ** 2
    return y


def fill_in_loop(x):
    out = np.zeros((x.shape[0], 2))
    for i in range(x.shape[0]):
        out[i, 0] = x[i] ** 2
        out[i, 1] += x[i] * x[0]
    return np.sum(out[:, 0] * out[:, 1]) + out[1, 1]


def over_rows(x):
    total = 0.0
    for row in x.reshape(2, 2):
        total = total + np.sqrt(np.sum(row ** 2))
    return total


def _helper(v, k):
    if v > k:
        return v - k
    return 0.0


def calls_helper(x):
    total = 0.0
    for i in range(x.shape[0]):
        total += _helper(x[i], 0.5)
    return total


def closure(x):
    scale = 3.0

    def inner(v):
        return scale * v if v > 0 else v / scale
    return inner(x[0]) + inner(x[1]) + sum(inner(v) for v in x)


class Model:
    def __init__(self, k):
        self.k = k

    def loss(self, x):
        s = 0.0
        for i in range(x.shape[0]):
            if x[i] > self.k:
                s += (x[i] - self.k) ** 2
        return s


def method(x):
    return Model(0.1).loss(x)


def python_loop_stays_python(x):
    sizes = []
    for k in range(3):
        sizes.append(k + 1)
    return np.sum(x[:sizes[-1]])


def nested_helper_loop(x):
    def row_loss(i):
        r = 0.0
        for j in range(x.shape[0]):
            if j != i:
                r += np.maximum(0.0, x[j] - x[i] + 0.5)
        return r
    total = 0.0
    for i in range(x.shape[0]):
        total += row_loss(i)
    return total


TABLE = [if_else, elif_chain, early_return, conditional_expression, boolean_operators,
         math_and_builtins, numpy_spellings, setitem_created_arrays, repeated_indices, views,
         inplace_argument, loop_with_branches, nested_loops_continue, loop_break, while_traced,
         fill_in_loop, over_rows, calls_helper, closure, method, python_loop_stays_python,
         nested_helper_loop]


# --- error cases ------------------------------------------------------------------------------

def one_branch_only(x):
    if x[0] > 0:
        y = x[1]
    return y * 2.0


def shapes_differ(x):
    if x[0] > 0:
        y = x[:2]
    else:
        y = x
    return np.sum(y)


def flat_write(x):
    a = x * 1.0
    a.flat[0] = 1.0
    return np.sum(a)


def out_to_numpy(x):
    buf = np.zeros(4)
    np.add(x, 1.0, out=buf)
    return np.sum(buf)


def return_in_loop(x):
    for i in range(x.shape[0]):
        if x[i] > 0:
            return x[i]
    return x[0]


def array_truth(x):
    if x > 0:
        return x
    return -x


def only_inside_loop(x):
    total = 0.0
    for i in range(x.shape[0]):
        last = x[i] * 2.0
        total += last
    return total + last


def growing_carry(x):
    h = x[:1]
    for i in range(1, 4):
        h = np.concatenate([h, h[-1:] * x[i]])     # a different shape each step: unrolled
    return np.sum(h * h)


def index_as_python_int(x):
    total = 0.0
    for i in range(1, 4):
        total += np.sum(x[:i]) * x[i]            # x[:i] needs i as a Python int: unrolled
    return total


class _Base:
    def loss(self, x):
        return np.sum(x * x)


class _Child(_Base):
    def loss(self, x):
        s = super().loss(x)
        if s > 1:
            s = s * 2
        return s


def zero_argument_super(x):
    return _Child().loss(x)


def int_becomes_float(x):
    count = 0
    for i in range(x.shape[0]):
        if x[i] > 0:
            count += x[i]
    return count


TABLE += [growing_carry, index_as_python_int, zero_argument_super, int_becomes_float]
