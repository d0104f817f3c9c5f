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


def return_in_loop(x):
    for i in range(x.shape[0]):
        if x[i] > 0:
            return x[i]
    return x[0]


def return_in_nested_loop(x):
    m = x.reshape(2, 2)
    acc = 0.0
    for i in range(2):
        for j in range(2):
            acc = acc + m[i, j] ** 2
            if acc > 1.0:
                return acc * m[i, j]
    return -acc


def return_in_while(x):
    t = 0.0
    y = x[0]
    while t < 1.0:  # symgrad: max_steps=8
        y = y * 1.1 + 0.1 * x[1]
        if y > 1.0:
            return y * t + x[2]
        t = t + 0.25
    return y - x[3]


def _first_above(x, k):
    for i in range(x.shape[0]):
        if x[i] > k:
            return x[i], i
    return x[0], -1


def return_tuple_from_helper(x):
    v, i = _first_above(x, 0.5)
    return v * (i + 2)


def enumerate_rows(x):
    total = 0.0
    for k, row in enumerate(x.reshape(2, 2), 1):
        total += k * np.sum(row * row)
    return total


def zip_arrays(x):
    total = 0.0
    for a, b in zip(x[:3], x[1:]):
        if a > b:
            total += a * b
        else:
            total -= 0.5 * b
    return total


def zip_with_python_values(x):
    total = 0.0
    for c, a, k in zip((1.0, 2.0, 3.0), x, range(10, 20)):    # a Python loop: 3 steps
        total = total + c * a + k * a * a
    return total


def for_else(x):
    acc = 0.0
    for i in range(x.shape[0]):
        acc += x[i] ** 2
        if acc > 1.8:
            break
    else:
        acc = -acc
    return acc


def while_else(x):
    t = 0.0
    y = x[0]
    while t < 1.0:  # symgrad: max_steps=8
        y = y * 1.1 + 0.1 * x[1]
        if y > 1.0:
            break
        t = t + 0.25
    else:
        y = y * 10.0
    return y + x[2]


def closure_while_break(x):
    rate = 0.5

    def settle(v):
        steps = 0.0
        while v > 0.1:  # symgrad: max_steps=20
            v = v * rate
            steps += 1.0
            if steps > 3:
                break
        return v + 0.01 * steps
    return settle(abs(x[0]) + 1.0) + settle(x[1] ** 2)


class Accumulator:
    def __init__(self, n):
        self.n = n

    def run(self, x):
        out = np.zeros(self.n)
        for i in range(self.n):
            if not (x[i] < 0 or x[i] > 1):
                out[i] += x[i] ** 2
            else:
                out[i] -= x[i]
        return out


def method_inplace_boolean(x):
    return np.sum(Accumulator(4).run(x) * np.arange(1.0, 5.0))


def _scale_row(m, i, s):
    m[i] *= s                      # writes the caller's array


def helper_writes_argument(x):
    m = x.reshape(2, 2) * 1.0
    for i in range(2):
        if m[i, 0] > 0:
            _scale_row(m, i, m[i, 1] + 2.0)
    return np.sum(m * m)


def helper_writes_in_branch(x):
    m = x * 1.0
    if x[0] > 0:
        _scale_row(m, 1, 3.0)      # only in this branch: the other must not see it
    return np.sum(m * m)


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


def falls_off_the_end(x):
    for i in range(x.shape[0]):
        if x[i] > 0:
            return x[i]


def return_of_a_string_in_loop(x):
    for i in range(x.shape[0]):
        if x[i] > 0:
            return "positive"
    return "none"


def unknown_directive(x):
    total = 0.0
    for i in range(x.shape[0]):  # symgrad: chekpoint=4
        total += x[i]
    return total


def max_steps_on_a_for(x):
    total = 0.0
    for i in range(x.shape[0]):  # symgrad: max_steps=10
        total += x[i]
    return total


def bad_checkpoint(x):
    total = 0.0
    for i in range(x.shape[0]):  # symgrad: checkpoint=0
        total += x[i]
    return total


def break_over_a_python_list(x):
    total = 0.0
    for v in [x[0], x[1], x[2]]:
        total += v
        if total > 0:
            break
    return total


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


TABLE += [growing_carry, index_as_python_int, zero_argument_super, int_becomes_float,
          return_in_loop, return_in_nested_loop, return_in_while, return_tuple_from_helper,
          enumerate_rows, zip_arrays, zip_with_python_values, for_else, while_else,
          closure_while_break,
          method_inplace_boolean, helper_writes_argument, helper_writes_in_branch]


# --- every function of TABLE in one compiled function (one C module for the C backend) ---------

_WEIGHTS = np.random.default_rng(19).uniform(0.5, 1.5, size=len(TABLE))


def every_function(x):
    return np.stack([fn(x * 1.0) for fn in TABLE])      # x * 1.0: some write their argument


def weighted_sum(x):
    return np.sum(every_function(x) * _WEIGHTS)
