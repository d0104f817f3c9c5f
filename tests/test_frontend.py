"""The front end: tracing, its errors, indexing, broadcasting, arguments and specialization, and
``symgrad.numpy`` as plain NumPy outside tracing."""
import inspect
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import symgrad
import symgrad.numpy as snp
from symgrad import nn

HERE = os.path.basename(__file__)


def line_of(fn, text):
    """``test_frontend.py:N`` for the line of ``fn`` containing ``text``."""
    lines, first = inspect.getsourcelines(fn)
    offset = next(i for i, line in enumerate(lines) if text in line)
    return f"{HERE}:{first + offset}"


# --- TracingError -----------------------------------------------------------------------------

def branchy(x):
    if x > 0:
        return x
    return -x


def looping(x):
    while snp.sum(x) > 1.0:
        x = x / 2
    return x


def both_positive(x, y):
    return snp.where(x > 0 and y > 0, x, y)


def test_python_control_flow_on_traced_values_is_converted(backend):
    # API.md section 6: if/while on traced values compile (tests/test_pyconvert.py has the rest).
    assert symgrad.compile(branchy, backend=backend)(-2.0) == 2.0
    np.testing.assert_allclose(symgrad.compile(looping, backend=backend)(np.ones(2) * 3),
                               [0.375, 0.375])


def test_truth_value_of_a_traced_array_names_line():
    with pytest.raises(symgrad.TracingError, match="ambiguous") as info:
        symgrad.compile(both_positive, backend="interp")(np.ones(2), np.ones(2))
    assert line_of(both_positive, "x > 0 and y > 0") in str(info.value)


def to_float(x):
    return float(x) * 2


def to_numpy(x):
    return np.array(x.__array__()) * 2


@pytest.mark.parametrize("fn, needle", [(to_float, "float()"), (to_numpy, "symgrad.numpy")])
def test_value_dependent_python_raises_tracing_error(fn, needle):
    with pytest.raises(symgrad.TracingError) as info:
        symgrad.compile(fn, backend="interp")(np.ones(3))
    assert needle in str(info.value)
    assert f"{HERE}:" in str(info.value)


def test_numpy_ufuncs_on_traced_values_dispatch_to_symgrad(backend):
    f = symgrad.compile(lambda x: np.sum(np.exp(x) * np.ones(3)), backend=backend)
    x = np.array([0.0, 1.0, -1.0])
    value, g = f.value_and_grad(x)
    assert value == pytest.approx(np.sum(np.exp(x)), rel=1e-14)
    np.testing.assert_allclose(g, np.exp(x), rtol=1e-14)


def test_unsupported_numpy_function_raises_tracing_error():
    f = symgrad.compile(lambda x: np.fft.fft(x), backend="interp")
    with pytest.raises(symgrad.TracingError, match="fft.fft"):
        f(np.ones(3))


# --- ShapeError names the shapes and the line -------------------------------------------------

def add_mismatched(x, y):
    return x + y


def test_shape_error_names_both_shapes_and_line(backend):
    f = symgrad.compile(add_mismatched, backend=backend)
    with pytest.raises(symgrad.ShapeError) as info:
        f(np.ones(3), np.ones(4))
    message = str(info.value)
    assert "(3,)" in message and "(4,)" in message
    assert "add" in message
    assert line_of(add_mismatched, "return x + y") in message
    assert "`return x + y`" in message
    assert isinstance(info.value, ValueError)      # ShapeError is also a ValueError


def matmul_mismatched(a, b):
    return a @ b


def reduce_bad_axis(x):
    return snp.sum(x, axis=2)


def reshape_bad(x):
    return x.reshape(4, 2)


def transpose_bad_axis(x):
    return snp.transpose(x, (0, 5))


def expand_dims_bad_axis(x):
    return snp.expand_dims(x, 3)


def concatenate_bad_axis(x):
    return snp.concatenate([x, x], axis=-3)


@pytest.mark.parametrize("fn, args, shapes", [
    (matmul_mismatched, (np.ones((2, 3)), np.ones((4, 5))), ["(2, 3)", "(4, 5)"]),
    (reduce_bad_axis, (np.ones((2, 3)),), ["axis 2"]),
    (reshape_bad, (np.ones((2, 3)),), ["(2, 3)", "(4, 2)"]),
    # out-of-range axes raise as in NumPy, never wrap around
    (transpose_bad_axis, (np.ones((2, 3)),), ["axis 5", "dimension 2"]),
    (expand_dims_bad_axis, (np.ones((2, 3)),), ["axis 3", "dimension 3"]),
    (concatenate_bad_axis, (np.ones((2, 3)),), ["axis -3", "dimension 2"]),
])
def test_other_shape_errors_name_shapes_and_line(fn, args, shapes):
    with pytest.raises(symgrad.ShapeError) as info:
        symgrad.compile(fn, backend="interp")(*args)
    message = str(info.value)
    for s in shapes:
        assert s in message
    assert line_of(fn, "return") in message


# --- arity, grad misuse -----------------------------------------------------------------------

def two_args(x, y):
    return snp.sum(x * y)


def test_wrong_number_of_arguments(backend):
    f = symgrad.compile(two_args, backend=backend)
    with pytest.raises(TypeError, match=r"two_args\(\) takes 2 positional arguments but 1"):
        f(np.ones(2))
    with pytest.raises(TypeError, match="but 3 were given"):
        f(np.ones(2), np.ones(2), np.ones(2))
    with pytest.raises(TypeError, match="but 1"):
        f.grad(np.ones(2))


def test_argnums_beyond_the_arguments():
    f = symgrad.compile(lambda *xs: snp.sum(xs[0]), argnums=2, backend="interp")
    with pytest.raises(TypeError, match="argnums includes 2"):
        f.grad(np.ones(2))


def with_default(x, scale=2.0):
    return snp.sum(x) * scale


def test_default_arguments_may_be_omitted(backend):
    f = symgrad.compile(with_default, backend=backend)
    assert f(np.ones(3)) == 6.0
    assert f(np.ones(3), 3.0) == 9.0
    np.testing.assert_array_equal(f.grad(np.ones(3)), [2.0, 2.0, 2.0])
    with pytest.raises(TypeError, match="from 1 to 2 positional arguments"):
        f()


def test_grad_of_non_scalar_result_is_value_error(backend):
    f = symgrad.compile(lambda x: x * 2, backend=backend)
    np.testing.assert_array_equal(f(np.ones(3)), [2.0, 2.0, 2.0])     # the value is fine
    with pytest.raises(ValueError, match="scalar"):
        f.grad(np.ones(3))
    with pytest.raises(ValueError, match="scalar"):
        f.value_and_grad(np.ones(3))


def test_grad_of_integer_result_is_value_error():
    f = symgrad.compile(lambda x, k: snp.sum(k), backend="interp")
    assert f(np.ones(2), np.array([1, 2])) == 3
    with pytest.raises(ValueError, match="scalar float"):
        f.grad(np.ones(2), np.array([1, 2]))


def test_grad_with_respect_to_int_argument_is_value_error(backend):
    f = symgrad.compile(lambda x, k: snp.sum(x * k), argnums=1, backend=backend)
    with pytest.raises(ValueError, match="argument 1"):
        f.grad(np.ones(3), np.array([1, 2, 3]))
    with pytest.raises(ValueError, match="int64"):
        f.grad(np.ones(3), 2)
    # as data (not in argnums), the same argument is fine
    g = symgrad.compile(lambda x, k: snp.sum(x * k), argnums=0, backend=backend)
    np.testing.assert_array_equal(g.grad(np.ones(3), np.array([1, 2, 3])), [1.0, 2.0, 3.0])


def test_argument_both_static_and_differentiated():
    with pytest.raises(ValueError, match="both differentiated and static"):
        symgrad.compile(two_args, argnums=0, static_argnums=0)


def test_unknown_backend():
    with pytest.raises(ValueError, match="unknown backend"):
        symgrad.compile(two_args, backend="fortran")


# --- IndexError: at trace time for constants, at call time for index arguments ----------------

def constant_index(x):
    return x[5]


def constant_index_array(x):
    return snp.sum(x[[0, 1, -7]])


def test_constant_index_out_of_range_at_trace_time(backend):
    f = symgrad.compile(constant_index, backend=backend)
    with pytest.raises(IndexError, match="index 5 is out of bounds for axis 0 with size 3") as info:
        f(np.ones(3))
    assert line_of(constant_index, "return x[5]") in str(info.value)
    g = symgrad.compile(constant_index_array, backend=backend)
    with pytest.raises(IndexError, match="index -7 is out of bounds") as info:
        g.grad(np.ones(3))
    assert line_of(constant_index_array, "x[[0, 1, -7]]") in str(info.value)
    # in range (negative indices wrap) traces and runs
    h = symgrad.compile(lambda x: snp.sum(x[[0, -1, -3]]) + x[-1], backend=backend)
    assert h(np.array([1.0, 2.0, 4.0])) == 1.0 + 4.0 + 1.0 + 4.0


def take(x, i):
    return snp.sum(x[i] * np.arange(1.0, 4.0))


def test_index_argument_out_of_range_at_call_time(backend):
    f = symgrad.compile(take, backend=backend)
    x = np.array([1.0, 2.0, 4.0, 8.0])
    assert f(x, np.array([3, 0, -1])) == 8.0 + 2.0 + 24.0
    np.testing.assert_array_equal(f.grad(x, np.array([3, 0, -1])), [2.0, 0.0, 0.0, 4.0])
    for bad in ([0, 4, 1], [0, -5, 1]):
        with pytest.raises(IndexError, match="out of bounds"):
            f(x, np.array(bad))
        with pytest.raises(IndexError, match="out of bounds"):
            f.grad(x, np.array(bad))
    assert f(x, np.array([1, 1, 1])) == 2.0 * 6    # still usable after an error


def test_boolean_mask_indexing_static_and_traced():
    # A constant mask has a size known while tracing: it indexes (issue 16). A traced mask's
    # result size depends on the data: refused, pointing at snp.where.
    f = symgrad.compile(lambda x: snp.sum(x[np.array([True, False, True])]), backend="interp")
    assert f(np.array([1.0, 2.0, 4.0])) == 5.0
    with pytest.raises(IndexError, match="snp.where"):
        symgrad.compile(lambda x: snp.sum(x[x > 0]), backend="interp")(np.ones(2))


def test_too_many_indices():
    with pytest.raises(IndexError, match="too many indices"):
        symgrad.compile(lambda x: x[0, 0], backend="interp")(np.ones(3))


# --- indexing and broadcasting semantics match NumPy ------------------------------------------

INDEXERS = [
    lambda x: x[1],
    lambda x: x[-1, ::-1],
    lambda x: x[:, 1:3],
    lambda x: x[::2, ::-2],
    lambda x: x[..., -1],
    lambda x: x[None, :, None, 0],
    lambda x: x[1:, None],
    lambda x: x[[2, 0, 2]],
    lambda x: x[:, [3, 3, 0]],
    lambda x: x[[0, 1], [3, 2]],
    lambda x: x[np.array([[1, 2], [0, 0]])],
    lambda x: x[np.array([[1], [2]]), np.array([0, 3])],       # index arrays broadcast
    lambda x: x[-2:, [-1, 0]],
    lambda x: x[5:0:-2, 2:100],
    lambda x: x[0, [1, 1, 2]],
]


@pytest.mark.parametrize("index", range(len(INDEXERS)))
def test_indexing_matches_numpy(backend, index):
    fn = INDEXERS[index]
    x = np.arange(12.0).reshape(3, 4) ** 1.5
    f = symgrad.compile(fn, backend=backend)
    np.testing.assert_array_equal(f(x), fn(x))
    # the gradient of sum(w * x[key]) puts w back where the key reads, adding up repeats
    w = np.arange(1.0, 1.0 + np.size(fn(x))).reshape(np.shape(fn(x)))
    expected = np.zeros_like(x)
    np.add.at(expected, np.unravel_index(fn(np.arange(12).reshape(3, 4)), x.shape), w)
    g = symgrad.compile(lambda x: snp.sum(fn(x) * w), backend=backend).grad(x)
    np.testing.assert_array_equal(g, expected)


ints = st.integers(-3, 2)                 # in range for every axis of CUBE
slices = st.builds(slice, st.sampled_from([None, -5, -2, 0, 1, 3, 7]),
                   st.sampled_from([None, -6, -1, 0, 2, 4, 9]),
                   st.sampled_from([None, 1, 2, 3, -1, -2]))
index_lists = st.lists(ints, min_size=1, max_size=3)


@st.composite
def keys(draw):
    """Keys mixing ints, slices, None, Ellipsis and integer lists for an array of 3 axes."""
    parts = draw(st.lists(st.one_of(ints, slices, st.none(), index_lists), min_size=1,
                          max_size=4))
    if sum(p is not None for p in parts) > 3:
        parts = [p for p in parts if p is not None][:3]
    lists = [p for p in parts if isinstance(p, list)]
    if lists:               # NumPy indexes with arrays of one broadcast shape
        parts = [lists[0] if isinstance(p, list) else p for p in parts]
    elif draw(st.booleans()):
        # An Ellipsis between index arrays changes where NumPy puts their axes (an empty one
        # included); symgrad does not copy that corner, so the Ellipsis goes only with basic keys.
        parts.insert(draw(st.integers(0, len(parts))), Ellipsis)
    return tuple(parts)


CUBE = np.arange(60.0).reshape(3, 4, 5) ** 1.5


@settings(max_examples=100, deadline=None, database=None)
@given(key=keys())
def test_indexing_matches_numpy_for_random_keys(key):
    expected = CUBE[key]
    f = symgrad.compile(lambda x: x[key], backend="interp")
    np.testing.assert_array_equal(f(CUBE), expected)
    if expected.size == 0:
        return
    w = np.arange(1.0, 1.0 + expected.size).reshape(expected.shape)
    grad = np.zeros(CUBE.size)
    np.add.at(grad, np.arange(CUBE.size).reshape(CUBE.shape)[key].ravel(), w.ravel())
    g = symgrad.compile(lambda x: snp.sum(x[key] * w), backend="interp").grad(CUBE)
    np.testing.assert_array_equal(g, grad.reshape(CUBE.shape))


@pytest.mark.parametrize("shapes", [((3, 1), (1, 4)), ((2, 3, 4), (4,)), ((), (2, 3)),
                                    ((2, 1, 3), (4, 1))])
def test_broadcasting_matches_numpy_and_sums_back(backend, shapes, rng):
    x, y = (rng.standard_normal(s) for s in shapes)
    f = symgrad.compile(lambda x, y: x * y - y, argnums=(0, 1), backend=backend)
    np.testing.assert_allclose(f(x, y), x * y - y, rtol=1e-15)
    out_shape = np.broadcast_shapes(*shapes)
    w = rng.standard_normal(out_shape)
    loss = symgrad.compile(lambda x, y: snp.sum((x * y - y) * w), argnums=(0, 1),
                           backend=backend)
    gx, gy = loss.grad(x, y)
    assert np.shape(gx) == x.shape and np.shape(gy) == y.shape
    lead_x = tuple(range(len(out_shape) - x.ndim))
    full_gx = w * np.broadcast_to(y, out_shape)
    full_gy = w * (np.broadcast_to(x, out_shape) - 1)
    sum_x = lead_x + tuple(len(lead_x) + i for i, d in enumerate(x.shape) if d == 1)
    lead_y = tuple(range(len(out_shape) - y.ndim))
    sum_y = lead_y + tuple(len(lead_y) + i for i, d in enumerate(y.shape) if d == 1)
    np.testing.assert_allclose(gx, full_gx.sum(axis=sum_x).reshape(x.shape), rtol=1e-13)
    np.testing.assert_allclose(gy, full_gy.sum(axis=sum_y).reshape(y.shape), rtol=1e-13)


def test_python_scalars_take_the_array_dtype():
    f = symgrad.compile(lambda x: x * 2 + 0.5, backend="interp")
    assert f(np.ones(2, np.float32)).dtype == np.float32
    k = symgrad.compile(lambda k: k * 2 + 1, argnums=(), backend="interp")(np.array([1, 2]))
    assert k.dtype == np.int64
    np.testing.assert_array_equal(k, [3, 5])
    h = symgrad.compile(lambda k: k * 0.5, argnums=(), backend="interp")(np.array([1, 2]))
    assert h.dtype == np.float64      # a float scalar with int data promotes, as in NumPy
    np.testing.assert_array_equal(h, [0.5, 1.0])


# --- symgrad.numpy outside tracing is NumPy -----------------------------------------------------

PLAIN = [
    ("exp", lambda a: snp.exp(a), lambda a: np.exp(a)),
    ("add", lambda a: snp.add(a, 1.5), lambda a: a + 1.5),
    ("power", lambda a: snp.power(np.abs(a), 1.5), lambda a: np.abs(a) ** 1.5),
    ("sum", lambda a: snp.sum(a, axis=0, keepdims=True), lambda a: np.sum(a, 0, keepdims=True)),
    ("max", lambda a: snp.max(a, axis=1), lambda a: np.max(a, 1)),
    ("mean", lambda a: snp.mean(a), lambda a: np.mean(a)),
    ("where", lambda a: snp.where(a > 0, a, 0.0), lambda a: np.where(a > 0, a, 0.0)),
    ("clip", lambda a: snp.clip(a, -0.5, 0.5), lambda a: np.clip(a, -0.5, 0.5)),
    ("maximum", lambda a: snp.maximum(a, a.T[0]), lambda a: np.maximum(a, a.T[0])),
    ("matmul", lambda a: snp.matmul(a, a.T), lambda a: a @ a.T),
    ("dot", lambda a: snp.dot(a[0], a[1]), lambda a: np.dot(a[0], a[1])),
    ("outer", lambda a: snp.outer(a[0], a[1]), lambda a: np.outer(a[0], a[1])),
    ("concatenate", lambda a: snp.concatenate([a, a], axis=1),
     lambda a: np.concatenate([a, a], axis=1)),
    ("stack", lambda a: snp.stack([a, a], axis=-1), lambda a: np.stack([a, a], axis=-1)),
    ("reshape", lambda a: snp.reshape(a, (-1,)), lambda a: a.reshape(-1)),
    ("expand_dims", lambda a: snp.expand_dims(a, 1), lambda a: a[:, None]),
    ("getitem", lambda a: snp.getitem(a, (slice(None), [0, 0])), lambda a: a[:, [0, 0]]),
    ("arange", lambda a: snp.arange(3) * a[0, :3], lambda a: np.arange(3) * a[0, :3]),
    ("eye", lambda a: snp.eye(3) @ a, lambda a: np.eye(3) @ a),
    ("zeros_like", lambda a: snp.zeros_like(a) + snp.ones(a.shape),
     lambda a: np.zeros_like(a) + np.ones(a.shape)),
    ("sigmoid", lambda a: nn.sigmoid(a), lambda a: 1 / (1 + np.exp(-a))),
    ("softmax", lambda a: nn.softmax(a), lambda a: np.exp(a) / np.exp(a).sum(-1, keepdims=True)),
    ("logsumexp", lambda a: nn.logsumexp(a, axis=0), lambda a: np.log(np.exp(a).sum(0))),
    ("softplus", lambda a: nn.softplus(a), lambda a: np.log1p(np.exp(a))),
    ("relu", lambda a: nn.relu(a), lambda a: np.maximum(a, 0.0)),
]


@pytest.mark.parametrize("name, fn, reference", PLAIN, ids=[p[0] for p in PLAIN])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_symgrad_numpy_on_plain_arrays_is_numpy(name, fn, reference, dtype, rng):
    a = rng.standard_normal((3, 3)).astype(dtype)
    out = fn(a)
    expected = reference(a)
    assert type(out) is type(expected)
    assert np.asarray(out).dtype == np.asarray(expected).dtype
    np.testing.assert_allclose(out, expected, rtol=1e-6 if dtype == "float32" else 1e-14)


def test_plain_arrays_never_build_graphs():
    a = np.arange(4.0)
    assert isinstance(snp.asarray([1.0, 2.0]), np.ndarray)
    assert isinstance(snp.sin(a), np.ndarray)
    assert snp.sum(a) == 6.0
    assert snp.shape(a) == (4,) and snp.ndim(a) == 1


# --- loops, arguments, dtypes -----------------------------------------------------------------

def doubling(x):
    for _ in range(3):
        x = x * 2.0
    return snp.sum(x)


def test_loops_over_traced_values_stay_loops(backend):
    # API.md section 6: a loop that traced values flow through is one scan, whatever its count.
    f = symgrad.compile(doubling, backend=backend)
    x = np.array([1.0, -2.0])
    graph = f.trace(x)
    assert [n.prim for n in graph.nodes].count("scan") == 1
    assert [n.prim for n in graph.nodes].count("mul") == 0
    assert f(x) == -8.0
    np.testing.assert_array_equal(f.grad(x), [8.0, 8.0])


def sum_of_row_norms(x):
    total = 0.0
    for row in x:                                   # iterates over the known first axis
        total = total + snp.sqrt(snp.sum(row ** 2))
    return total


def test_iterating_over_a_traced_array(backend):
    x = np.array([[3.0, 4.0], [6.0, 8.0], [0.0, 1.0]])
    f = symgrad.compile(sum_of_row_norms, backend=backend)
    value, g = f.value_and_grad(x)
    assert value == pytest.approx(16.0, rel=1e-15)
    np.testing.assert_allclose(g, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-15)
    assert len(f.trace(x).inputs) == 1


def power_loop(x, n):
    out = x
    for _ in range(n - 1):
        out = out * x
    return snp.sum(out)


def test_static_arguments_drive_python_control_flow(backend):
    f = symgrad.compile(power_loop, static_argnums=1, backend=backend)
    x = np.array([1.5, -2.0])
    assert f(x, 3) == pytest.approx(np.sum(x ** 3), rel=1e-15)
    np.testing.assert_allclose(f.grad(x, 3), 3 * x ** 2, rtol=1e-15)
    np.testing.assert_allclose(f.grad(x, 2), 2 * x, rtol=1e-15)
    assert len(f._specs) == 2                       # one specialization per static value
    with pytest.raises(TypeError, match="hashable"):
        f(x, [3])


def test_python_scalars_and_lists_as_arguments(backend):
    f = symgrad.compile(lambda x, y: snp.sum(x * y), argnums=(0, 1), backend=backend)
    value, (gx, gy) = f.value_and_grad([1.0, 2.0, 3.0], 2.0)
    assert value == 12.0
    assert isinstance(gx, np.ndarray) and gx.dtype == np.float64
    np.testing.assert_array_equal(gx, [2.0, 2.0, 2.0])
    assert float(gy) == 6.0 and np.ndim(gy) == 0
    assert f([[1.0], [2.0]], [3.0, 4.0]) == 1 * 3 + 1 * 4 + 2 * 3 + 2 * 4
    # a list of ints is integer data
    k = symgrad.compile(lambda x, k: snp.sum(x[k]), backend=backend)
    assert k(np.array([1.0, 10.0, 100.0]), [2, 2, 0]) == 201.0
    with pytest.raises(TypeError, match="ragged|could not be read"):
        f([[1.0], [2.0, 3.0]], 1.0)


def test_python_float_result_is_a_float(backend):
    f = symgrad.compile(lambda x: snp.sum(x), backend=backend)
    value = f(np.ones(3))
    assert type(value) is float and value == 3.0


@pytest.mark.parametrize("fn", [lambda x: snp.sum(snp.exp(x) * 2.0 + 1),
                                lambda x: snp.mean(nn.softmax(x) * x)])
def test_float32_arguments_give_float32_results(backend, fn):
    x32 = np.array([0.5, -1.0, 2.0], dtype=np.float32)
    f = symgrad.compile(fn, backend=backend)
    g = f.grad(x32)
    assert g.dtype == np.float32
    spec, _ = f.specialize(x32)
    assert spec.graph.outputs[0].dtype == "float32"
    assert all(n.out.dtype in ("float32", "bool", "int64") for n in spec.graph.nodes)
    vector = symgrad.compile(lambda x: snp.exp(x) * 2.0, backend=backend)(x32)
    assert vector.dtype == np.float32
    np.testing.assert_allclose(vector, np.exp(x32) * np.float32(2.0), rtol=1e-6)
    np.testing.assert_allclose(g, f.grad(x32.astype(np.float64)), rtol=1e-5)


def test_compile_dtype_option_casts_float_arguments():
    f = symgrad.compile(lambda x: snp.sum(x * x), dtype="float32", backend="interp")
    g = f.grad(np.array([1.0, 2.0]))
    assert g.dtype == np.float32
    with pytest.raises(symgrad.DTypeError):
        symgrad.compile(lambda x: x, dtype="int64")


def test_outputs_are_fresh_arrays(backend):
    x = np.arange(3.0)
    out = symgrad.compile(lambda x: x, backend=backend)(x)
    assert not np.shares_memory(out, x)
    out[0] = 100.0
    assert x[0] == 0.0


def test_non_contiguous_arguments(backend):
    base = np.arange(24.0).reshape(4, 6)
    x = base[::2, ::-3]                             # a strided, reversed view
    f = symgrad.compile(lambda x: snp.sum(x * np.arange(1.0, 5.0).reshape(2, 2)), backend=backend)
    assert f(x) == pytest.approx(np.sum(x * np.arange(1.0, 5.0).reshape(2, 2)))
    np.testing.assert_array_equal(f.grad(x), [[1.0, 2.0], [3.0, 4.0]])
    np.testing.assert_array_equal(f.grad(np.asfortranarray(x)), [[1.0, 2.0], [3.0, 4.0]])


# --- specialization ---------------------------------------------------------------------------

def test_new_shape_retraces_same_shape_does_not(backend):
    calls = []

    def fn(x):
        calls.append(x.shape)
        return snp.sum(x ** 2)

    f = symgrad.compile(fn, backend=backend)
    f(np.ones(3))
    f.grad(np.ones(3))
    f(np.zeros(3))
    assert len(f._specs) == 1 and len(calls) == 1
    f(np.ones(4))
    assert len(f._specs) == 2 and len(calls) == 2
    f(np.ones((2, 2)))
    f(np.ones(3, dtype=np.float32))                 # a new dtype is a new specialization too
    assert len(f._specs) == 4 and len(calls) == 4
    np.testing.assert_array_equal(f.grad(np.ones(4)), 2 * np.ones(4))
    assert len(f._specs) == 4 and len(calls) == 4


def test_trace_and_jax_style_entry_points(backend):
    graph = symgrad.trace(lambda x: snp.sin(x) * 2.0, np.ones(3))
    assert isinstance(graph, symgrad.Graph)
    assert [n.prim for n in graph.nodes if n.prim != "const"] == ["sin", "mul"]
    assert str(graph.inputs[0].type) == "f64[3]"
    x, y = np.array([1.0, 2.0]), np.array([3.0, -1.0])
    dy = symgrad.grad(lambda x, y: snp.sum(x * y ** 2), argnums=1, backend=backend)(x, y)
    np.testing.assert_array_equal(dy, 2 * x * y)
    value, (gx, gy) = symgrad.value_and_grad(lambda x, y: snp.sum(x * y), argnums=(0, 1),
                                             backend=backend)(x, y)
    assert value == 1.0
    np.testing.assert_array_equal(gx, y)
    np.testing.assert_array_equal(gy, x)
