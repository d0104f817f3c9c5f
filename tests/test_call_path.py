"""The per-call path (api.py's fast key, native.py's call plans).

A call whose fast key was seen before skips ``_convert`` and goes straight to the call made the
first time. These tests hold that to the full path: the same results, bit for bit and type for
type, for every kind of argument; a new specialization whenever one is due; fresh outputs; right
answers from several threads; and the same errors. No timings here (see
benchmarks/profile_overhead.py).
"""
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

import symgrad
import symgrad.numpy as snp
from symgrad.errors import DTypeError, ShapeError
from symgrad.nn import sigmoid


def w1a(x, y):
    return (x + sigmoid(y)) / (sigmoid(x) + (x + y) ** 2)


def w1a_sum(x, y):
    return snp.sum(w1a(x, y))


def scaled_sum(x, s):
    return snp.sum(x * s) + s


def _forget(cf):
    cf._fast_values.clear()
    cf._fast_grads.clear()


def _same(a, b):
    """Equal bit for bit, and of the same type (and dtype and shape for NumPy values)."""
    if isinstance(a, tuple):
        return type(b) is tuple and len(a) == len(b) and all(map(_same, a, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, (np.ndarray, np.generic)):
        return (a.dtype == b.dtype and np.shape(a) == np.shape(b)
                and np.array_equal(a, b, equal_nan=True))
    return a == b or (a != a and b != b)


def _full_then_fast(cf, method, *args):
    """(result of the full path, result of the fast path) for the same arguments."""
    _forget(cf)
    full = getattr(cf, method)(*args)
    fast = getattr(cf, method)(*args)
    return full, fast


# -- the fast key never serves a wrong specialization ------------------------------------------

@pytest.mark.parametrize("method", ["__call__", "value_and_grad", "grad"])
@pytest.mark.parametrize("x, y", [
    (3.0, -4.0),                                    # Python floats: the scalar buffer path
    (np.float64(3.0), -4.0),
    (np.float32(3.0), np.float32(-4.0)),
    (np.array(3.0), np.array(-4.0)),                # 0-d arrays: the array path
    (np.array(3.0, dtype=np.float32), 2.5),         # a weak float takes the array's float32
    (3, -4.0),                                      # an int where a float is needed
    ([3.0], [-4.0]),                                # lists: converted every time
])
def test_fast_path_gives_what_the_full_path_gives(backend, method, x, y):
    f = symgrad.compile(w1a_sum, argnums=(0, 1), backend=backend)
    if isinstance(x, int):
        with pytest.raises(ValueError, match="Integer arrays are never differentiated"):
            getattr(f, method)(x, y)
        with pytest.raises(ValueError, match="Integer arrays are never differentiated"):
            getattr(f, method)(x, y)
        return
    full, fast = _full_then_fast(f, method, x, y)
    assert _same(full, fast), (full, fast)


def test_ints_are_converted_on_every_call(backend):
    f = symgrad.compile(lambda x, n: x * n, argnums=0, backend=backend)
    for n in (2, 3, 2**40, True):
        full, fast = _full_then_fast(f, "value_and_grad", 1.5, n)
        assert _same(full, fast) and full == (1.5 * n, np.float64(n))
    with pytest.raises(OverflowError):
        f(1.5, np.uint64(2**63))


def test_scalar_results_are_python_floats_and_gradients_numpy_scalars():
    f = symgrad.compile(w1a, argnums=(0, 1))
    for _ in range(3):
        value, (gx, gy) = f.value_and_grad(3.0, -4.0)
        assert type(value) is float and type(f(3.0, -4.0)) is float
        assert type(gx) is np.float64 and type(gy) is np.float64
    g = symgrad.compile(w1a, argnums=0)
    for _ in range(3):
        value, gx = g.value_and_grad(3.0, -4.0)
        assert type(value) is float and type(gx) is np.float64
        assert _same(g.grad(3.0, -4.0), gx)
    h = symgrad.compile(w1a, argnums=(1,))
    for _ in range(3):
        value, grads = h.value_and_grad(3.0, -4.0)
        assert type(grads) is tuple and len(grads) == 1 and _same(grads[0], gy)


def test_what_is_remembered():
    f = symgrad.compile(scaled_sum, argnums=(0, 1))
    x = np.arange(3.0)
    f.value_and_grad(x, 2.0)
    f.value_and_grad(x, np.float16(2.0))        # a float16 is converted every call
    f.value_and_grad(list(x), 2.0)              # so is a list
    f.value_and_grad(x.astype(np.float16), 2.0)  # so is a cast array
    assert list(f._fast_grads) == [((x.dtype, (3,)), float)] and not f._fast_values
    g = symgrad.compile(w1a, argnums=(0, 1))
    g.value_and_grad(3.0, -4.0)
    exe = g.specialize(3.0, -4.0)[0].executable()
    assert g._fast_grads[(float, float)] is exe.scalars_and_grad    # the buffer path


def test_scalar_buffer_path_matches_the_array_path_bit_for_bit():
    f = symgrad.compile(w1a, argnums=(0, 1))
    rng = np.random.default_rng(0)
    for x, y in rng.normal(size=(20, 2)) * 3:
        by_floats = f.value_and_grad(float(x), float(y))
        by_arrays = f.value_and_grad(np.array(x), np.array(y))
        assert _same(by_floats, by_arrays)
        assert f(float(x), float(y)) == f(np.array(x), np.array(y))


def test_alternating_dtypes_and_shapes_get_their_own_specializations(backend):
    f = symgrad.compile(scaled_sum, argnums=(0, 1), backend=backend)
    x64, x32 = np.arange(4.0), np.arange(4.0, dtype=np.float32)
    x6 = np.arange(6.0)
    for _ in range(3):
        v, (gx, gs) = f.value_and_grad(x64, 2.0)
        assert v == 14.0 and gx.dtype == np.float64 and gx.shape == (4,) and gs == 7.0
        v, (gx, gs) = f.value_and_grad(x32, 2.0)        # 2.0 is weak: float32 throughout
        assert gx.dtype == np.float32 and type(gs) is np.float32 and gs == 7.0
        v, (gx, gs) = f.value_and_grad(x6, 0.5)
        assert v == 8.0 and gx.shape == (6,) and gs == 16.0
        v, (gx, gs) = f.value_and_grad(x32, np.float64(2.0))   # not weak: its own dtype
        assert gx.dtype == np.float32 and type(gs) is np.float64
        v, (gx, gs) = f.value_and_grad(x32, np.array(2.0, dtype=np.float32))
        assert type(gs) is np.float32


def test_dtype_option_and_float32_scalars():
    f = symgrad.compile(scaled_sum, argnums=(0, 1), dtype="float32")
    x = np.arange(3.0)
    for _ in range(3):
        v, (gx, gs) = f.value_and_grad(x, 0.1)
        assert gx.dtype == np.float32 and type(gs) is np.float32
        assert v == float(np.float32(3) * np.float32(0.1) + np.float32(0.1))
    g = symgrad.compile(w1a, argnums=(0, 1))
    for _ in range(3):        # float32 scalars compute in float32; Python floats do not
        v32, _ = g.value_and_grad(np.float32(0.1), np.float32(0.2))
        v64, _ = g.value_and_grad(0.1, 0.2)
        assert v32 != v64 and v32 == float(np.float32(v32))


def test_arrays_changing_layout_keep_the_key_and_stay_right(backend):
    f = symgrad.compile(lambda x: snp.sum(x * x), backend=backend)
    base = np.arange(12.0)
    contiguous = base[:6].copy()
    strided = base[::2]                        # same dtype and shape, not contiguous
    readonly = contiguous.copy()
    readonly.flags.writeable = False
    fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    for _ in range(2):
        for x in (contiguous, strided, readonly):
            v, g = f.value_and_grad(x)
            assert v == float(np.sum(x * x)) and np.array_equal(g, 2 * x)
        v, g = f.value_and_grad(fortran)
        assert np.array_equal(g, 2 * fortran)
    big_endian = np.arange(6.0).astype(">f8")
    for _ in range(2):
        v, g = f.value_and_grad(big_endian)
        assert v == 55.0 and np.array_equal(g, 2 * np.arange(6.0)) and g.dtype.isnative


def test_array_subclasses_are_converted_every_call():
    class Tagged(np.ndarray):
        pass
    f = symgrad.compile(lambda x: snp.sum(x * x))
    x = np.arange(3.0).view(Tagged)
    for _ in range(2):
        assert f(x) == 5.0
    assert Tagged not in [k[0] for k in f._fast_values]


def test_run_time_sizes_share_one_specialization_and_still_check_shapes():
    f = symgrad.compile(lambda x, w: snp.sum(x * w) + snp.sum(w), argnums=(0, 1),
                        signature={"x": "f64[N]", "w": "f64[N]"})
    for n in (3, 5, 3, 7, 5):
        x, w = np.arange(float(n)), np.ones(n)
        v, (gx, gw) = f.value_and_grad(x, w)
        assert v == float(np.sum(x) + n) and gx.shape == (n,) and np.array_equal(gw, x + 1)
        assert f(x, w) == v
    assert len(f._specs) == 1
    for _ in range(2):
        with pytest.raises(ShapeError, match="so N = 4, but argument 'x' set N = 3"):
            f.value_and_grad(np.arange(3.0), np.ones(4))
        with pytest.raises(ShapeError, match="signature says f64"):
            f(np.ones((3, 1)), np.ones(3))


def test_signature_casts_are_made_on_every_call():
    # A float weakly typed float32 (the array is float32), then cast to the signature's
    # float64: two steps, so the value is rounded to float32 first, every call alike.
    f = symgrad.compile(lambda x, s: snp.sum(x) * s, signature={"s": "f64[]"})
    x = np.ones(2, dtype=np.float32)
    results = {f(x, 0.1) for _ in range(3)}
    assert results == {float(np.float64(np.float32(0.1)) * 2)}


def test_static_arguments_count_by_type_and_value(backend):
    f = symgrad.compile(lambda x, k: snp.sum(x ** k) * 1.0 if isinstance(k, int) else
                        snp.sum(x) * k, static_argnums=1, backend=backend)
    x = np.array([1.0, 2.0])
    for _ in range(2):
        assert f(x, 2) == 5.0
        assert f(x, 3) == 9.0
        assert f(x, 2.0) == 6.0                 # equal to 2, but a float: its own trace
        assert f(x, True) == 3.0                # True == 1, but a bool
    for _ in range(2):
        with pytest.raises(TypeError, match="static argument 1 of <lambda> must be hashable"):
            f(x, [2])


def test_static_arguments_with_the_scalar_buffer_path():
    f = symgrad.compile(lambda x, k, y: x * k + y, argnums=(0, 2), static_argnums=1)
    for _ in range(2):
        assert f.value_and_grad(2.0, 3, 1.0) == (7.0, (3.0, 1.0))
        assert f.value_and_grad(2.0, 4, 1.0) == (9.0, (4.0, 1.0))


def test_tuple_results(backend):
    f = symgrad.compile(lambda x, y: (x * y, x + y), backend=backend)
    g = symgrad.compile(lambda x, y: (x * y,), backend=backend)
    h = symgrad.compile(lambda x: (snp.sum(x), x * 2.0), backend=backend)
    for _ in range(2):
        assert f(2.0, 3.0) == (6.0, 5.0) and all(type(v) is float for v in f(2.0, 3.0))
        assert g(2.0, 3.0) == (6.0,)
        s, y = h(np.arange(3.0))
        assert s == 3.0 and type(s) is float and np.array_equal(y, [0.0, 2.0, 4.0])


def test_zero_argument_functions_and_non_float_results(backend):
    f = symgrad.compile(lambda: snp.ones(3) * 2.0, argnums=(), backend=backend)
    g = symgrad.compile(lambda x: x > 0.0, argnums=(), backend=backend)
    h = symgrad.compile(lambda x, y: x * y, argnums=(), backend=backend)
    for _ in range(2):
        assert np.array_equal(f(), [2.0, 2.0, 2.0])
        assert g(1.0) == 1.0 and g(-1.0) == 0.0
        assert h.value_and_grad(2.0, 3.0) == (6.0, ())


# -- outputs are fresh --------------------------------------------------------------------------

def test_outputs_are_fresh_on_every_call(backend):
    f = symgrad.compile(lambda x: x * 1.0, backend=backend)
    g = symgrad.compile(lambda x: snp.sum(x * x), backend=backend)
    x = np.arange(3.0)
    y1, y2 = f(x), f(x)
    assert y1 is not y2 and not np.shares_memory(y1, y2) and not np.shares_memory(x, y1)
    y1[0] = 100.0
    assert x[0] == 0.0 and y2[0] == 0.0
    (_, g1), (_, g2) = g.value_and_grad(x), g.value_and_grad(x)
    assert g1 is not g2 and not np.shares_memory(g1, g2) and not np.shares_memory(g1, x)
    h = symgrad.compile(w1a, argnums=(0, 1), backend=backend)
    (_, (a1, _)), (_, (a2, _)) = h.value_and_grad(1.0, 2.0), h.value_and_grad(5.0, 6.0)
    assert a1 != a2 and a1 == h.grad(1.0, 2.0)[0]


# -- threads ---------------------------------------------------------------------------------------

def test_concurrent_calls_from_threads_give_right_answers(backend):
    f = symgrad.compile(w1a, argnums=(0, 1), backend=backend)
    r = symgrad.compile(lambda x: snp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2
                                          + (1.0 - x[:-1]) ** 2), backend=backend)
    rng = np.random.default_rng(1)
    points = [(float(a), float(b)) for a, b in rng.normal(size=(40, 2))]
    arrays = [rng.normal(size=10) for _ in range(40)]
    expected = [f.value_and_grad(*p) for p in points]
    expected_r = [r.value_and_grad(x) for x in arrays]
    start = threading.Barrier(4)

    def work(k):
        start.wait()
        bad = 0
        for _ in range(50):
            for p, e in zip(points[k::4], expected[k::4]):
                bad += not _same(f.value_and_grad(*p), e)
                bad += f(*p) != e[0]
            for x, e in zip(arrays[k::4], expected_r[k::4]):
                v, g = r.value_and_grad(x)
                bad += v != e[0] or not np.array_equal(g, e[1])
        return bad
    with ThreadPoolExecutor(4) as pool:
        assert sum(pool.map(work, range(4))) == 0


# -- errors are unchanged --------------------------------------------------------------------------

def test_errors_after_the_fast_path_has_entries():
    f = symgrad.compile(w1a, argnums=(0, 1))
    f.value_and_grad(3.0, -4.0)
    f(3.0, -4.0)
    for _ in range(2):
        with pytest.raises(TypeError, match=r"takes 2 positional arguments but 3 were given"):
            f.value_and_grad(3.0, -4.0, 1.0)
        with pytest.raises(TypeError, match=r"takes 2 positional arguments but 1 were given"):
            f(3.0)
        # A complex argument is data symgrad computes with (docs/complex.md); the logistic
        # function is not defined for it, which the error names with the user's line.
        with pytest.raises(DTypeError, match=r"logistic\(c128\[\]\): logistic is not defined "
                                             r"for complex values.*test_call_path.py"):
            f(3.0, 1j)
        with pytest.raises(DTypeError, match="argument 0 .'x'. has dtype <U1"):
            f.value_and_grad(np.array("a"), -4.0)
    s = symgrad.compile(lambda x: snp.sum(x))
    for _ in range(2):
        with pytest.raises(ValueError, match="grad needs a scalar float result"):
            symgrad.compile(lambda x: x * 2.0).value_and_grad(np.ones(2))
        assert s(np.ones(2)) == 2.0


def test_out_of_range_indices_are_caught_on_every_call(backend):
    f = symgrad.compile(lambda x, i: snp.sum(x[i]), backend=backend)
    x = np.arange(4.0)
    for _ in range(3):
        assert f(x, np.array([0, 3])) == 3.0
        assert f.value_and_grad(x, np.array([1, 1]))[0] == 2.0
        with pytest.raises(IndexError, match="index 4 .* out of bounds for axis 0 with size 4"):
            f(x, np.array([0, 4]))
        with pytest.raises(IndexError, match="out of bounds"):
            f.value_and_grad(x, np.array([-5, 0]))


def test_remembered_keys_are_bounded():
    f = symgrad.compile(lambda x: snp.sum(x), signature={"x": "f64[N]"})
    for n in range(1, 2 * f._FAST_LIMIT):
        assert f(np.ones(n)) == n
    assert 0 < len(f._fast_values) <= f._FAST_LIMIT


def test_compiling_a_compiled_function_keeps_its_own_argnums():
    """update_wrapper once copied the inner function's attributes (argnums, specializations)
    over the outer one's, so the gradient came for the wrong argument."""
    inner = symgrad.compile(lambda x, y: x * x * y, argnums=0)
    outer = symgrad.compile(inner, argnums=1)
    assert outer.grad(3.0, 2.0) == 9.0          # d/dy (x^2 y) = x^2
    assert inner.grad(3.0, 2.0) == 12.0         # d/dx = 2xy
    assert outer.__name__ == inner.__name__


def test_errors_on_the_full_path_are_not_chained_to_the_fast_lookup():
    """A user's error must not read 'During handling of the above exception (KeyError) ...'."""
    f = symgrad.compile(lambda x: snp.sum(x * snp.no_such_function(x)))
    with pytest.raises(AttributeError) as info:
        f.value_and_grad(np.ones(3))
    assert not isinstance(info.value.__context__, KeyError)
    with pytest.raises(AttributeError) as info:
        f(np.ones(3))
    assert not isinstance(info.value.__context__, KeyError)
