"""Shapes and movement of issue 16 (symgrad/numpy/shapes.py), boolean-mask indexing and take:
values against NumPy, gradients against central differences and the complex step, forward mode
and second order, float32, both backends, all cases compiled together (tests/breadth.py)."""
import numpy as np
import pytest

# 2-vectors in cross are deprecated by NumPy 2 (a warning) but still computed: keep testing them.
pytestmark = pytest.mark.filterwarnings("ignore:Arrays of 2-dimensional vectors")

import symgrad
import symgrad.numpy as snp
from breadth import Case, check_hvp, check_jvp, standard_tests


def U(*shape, lo=-2.0, hi=2.0):
    return lambda rng: rng.uniform(lo, hi, shape)


def args(*gens):
    return lambda rng: [g(rng) for g in gens]


CASES = [
    Case("atleast", lambda x, s: (snp.atleast_1d(s), snp.atleast_2d(x), snp.atleast_3d(x),
                                  *snp.atleast_3d(s, x[0]), snp.atleast_2d(x[0])),
         args(U(2, 3), U())),
    Case("stacks", lambda x, y: (snp.hstack([x, y]), snp.vstack([x, y]), snp.dstack([x, y]),
                                 snp.column_stack([x[0], y[1], x[1]]), snp.row_stack((x, y)),
                                 snp.hstack([x[0], y[1]]), snp.vstack([x[0], y[0]]),
                                 snp.column_stack([x, y])),
         args(U(2, 3), U(2, 3))),
    Case("append", lambda x, y: (snp.append(x, y), snp.append(x, y, axis=0),
                                 snp.append(x, y[:, :2], axis=1)), args(U(2, 3), U(2, 3))),
    Case("split", lambda x: (*snp.split(x, 2), *snp.split(x, [1, 3], axis=1),
                             *snp.array_split(x, 3, axis=1), *snp.hsplit(x, 2),
                             *snp.vsplit(x, [1]), *snp.dsplit(snp.stack([x, x * x], -1), 2)),
         args(U(4, 4))),
    Case("repeat_tile", lambda x: (snp.repeat(x, 2), snp.repeat(x, 3, axis=1),
                                   snp.repeat(x, [1, 0, 2], axis=0), x.repeat(2, axis=0),
                                   snp.tile(x, 2), snp.tile(x, (2, 1, 2)), snp.tile(x[0], (3, 1))),
         args(U(3, 2))),
    Case("pad", lambda x: tuple(
        [snp.pad(x, 1), snp.pad(x, ((1, 2), (0, 3)), constant_values=((0.5, -1.0), (2.0, 3.0)))]
        + [snp.pad(x, ((2, 1), (3, 5)), mode=m) for m in ("edge", "reflect", "symmetric", "wrap")]
        + [snp.pad(x[0], (4, 2), mode="reflect")]), args(U(3, 4))),
    Case("roll_flip", lambda x: (snp.roll(x, 2), snp.roll(x, -1, axis=1), snp.roll(x, (1, 2),
                                                                                   axis=(0, 1)),
                                 snp.flip(x), snp.flip(x, 1), snp.fliplr(x), snp.flipud(x),
                                 snp.rot90(x), snp.rot90(x, 2), snp.rot90(x, -1),
                                 snp.rot90(x, 1, axes=(1, 0))), args(U(3, 4))),
    Case("axes", lambda x: (snp.moveaxis(x, 0, -1), snp.moveaxis(x, [0, 1], [2, 0]),
                            snp.swapaxes(x, 0, 2), x.swapaxes(1, 2), snp.rollaxis(x, 2),
                            snp.rollaxis(x, 0, 2), snp.ravel(x), snp.ravel(x.T)),
         args(U(2, 3, 4))),
    Case("diagonals", lambda x, v: (snp.diag(v), snp.diag(v, 1), snp.diag(v, -2), snp.diag(x),
                                    snp.diag(x, -1), snp.diagonal(x), snp.diagonal(x, 2),
                                    snp.trace(x), snp.trace(x, -1), x.trace(), x.diagonal(1)),
         args(U(3, 4), U(3))),
    Case("diagonal_3d", lambda x: (snp.diagonal(x, 0, 1, 2), snp.diagonal(x, 1, 0, 2),
                                   snp.trace(x, 0, 0, 1)), args(U(3, 3, 4))),
    Case("triangles", lambda x, y: (snp.tril(x), snp.triu(x), snp.tril(x, -1), snp.triu(x, 2),
                                    snp.tril(y, 1)), args(U(4, 3), U(2, 3, 3))),
    Case("kron_cross", lambda a, b, u, v: (snp.kron(a, b), snp.kron(u, v), snp.kron(a, u),
                                           snp.cross(u, v), snp.cross(a, b[:, :3]),
                                           snp.cross(u[:2], v[:2]), snp.cross(u[:2], v),
                                           snp.cross(a.T, b[:, :3].T, axis=0)),
         args(U(2, 3), U(2, 4), U(3), U(3))),
    Case("diff", lambda x: (snp.diff(x), snp.diff(x, axis=0), snp.diff(x, 2), snp.diff(
        x, prepend=0.5), snp.diff(x, axis=0, append=x[:1])), args(U(3, 5))),
    Case("linspace_meshgrid", lambda a, b, x, y: (
        snp.linspace(a, b, 5), snp.linspace(a, b, 4, endpoint=False), snp.linspace(x, y, 3),
        snp.linspace(x, y, 4, axis=1), *snp.linspace(a, b, 6, retstep=True),
        *snp.meshgrid(x, y), *snp.meshgrid(x, y[:2], indexing="ij"),
        *snp.meshgrid(x, y, sparse=True)), args(U(), U(), U(3), U(3))),
    Case("take_and_masks", lambda x: (
        snp.take(x, [0, 2, 2]), snp.take(x, [[1, 0], [2, 2]], axis=1), snp.take(x, 1, axis=0),
        x.take([3, 0]), x[np.array([True, False, True])], x[:, np.array([False, True, True, True])],
        x[np.arange(12).reshape(3, 4) % 3 == 0], x[..., [True, False, False, True]]),
        args(U(3, 4))),
]
BY_NAME = {c.name: c for c in CASES}


(test_values_match_numpy, test_gradient_against_differences,
 test_c_gradients_equal_interpreter) = standard_tests(CASES)


def test_jvp(backend):
    check_jvp(CASES, backend)


def test_second_order(backend):
    check_hvp([BY_NAME[n] for n in ("pad", "kron_cross", "diagonals", "linspace_meshgrid")],
              backend)


def test_traced_boolean_mask_points_at_where():
    f = symgrad.compile(lambda x: snp.sum(x[x > 0]), backend="interp")
    with pytest.raises(IndexError, match=r"snp\.where"):
        f(np.ones(3))


def test_boolean_mask_of_wrong_shape_is_an_error():
    f = symgrad.compile(lambda x: snp.sum(x[np.array([True, False])]), backend="interp")
    with pytest.raises(IndexError, match="does not match"):
        f(np.ones(3))


def test_split_into_unequal_parts_is_an_error():
    with pytest.raises(ValueError, match="equal division"):
        symgrad.compile(lambda x: snp.split(x, 2)[0], backend="interp")(np.ones(3))


def test_rollaxis_and_moveaxis_match_numpy_for_every_axis_and_start():
    x = np.arange(24.0).reshape(2, 3, 4)
    for axis in range(-3, 3):
        for start in range(-3, 4):
            f = symgrad.compile(lambda a: snp.rollaxis(a, axis, start), backend="interp")
            np.testing.assert_array_equal(f(x), np.rollaxis(x, axis, start))
        for dest in range(-3, 3):
            f = symgrad.compile(lambda a: snp.moveaxis(a, axis, dest), backend="interp")
            np.testing.assert_array_equal(f(x), np.moveaxis(x, axis, dest))


@pytest.mark.parametrize("source, destination, which", [([0, 0], [1, 2], "source"),
                                                        ([0, 1], [2, -1], "destination")])
def test_moveaxis_with_a_repeated_axis_is_an_error(source, destination, which):
    with pytest.raises(ValueError,
                       match=f"repeated axis in `{which}`"):
        symgrad.compile(lambda x: snp.moveaxis(x, source, destination),
                        backend="interp")(np.ones((2, 3, 4)))


def test_pad_mode_that_is_not_traced_names_the_supported_ones():
    with pytest.raises(NotImplementedError, match="edge, reflect, symmetric, wrap"):
        symgrad.compile(lambda x: snp.pad(x, 1, mode="maximum"), backend="interp")(np.ones(3))


def test_numpy_functions_on_tracers_dispatch_here(backend):
    x = np.arange(6.0).reshape(2, 3)
    f = symgrad.compile(lambda x: (np.flip(x, 1), np.roll(x, 1), np.tril(x), np.kron(x, x),
                                   np.pad(x, 1, mode="wrap"), np.diff(x), np.repeat(x, 2),
                                   np.hstack([x, x]), np.trace(x)), backend=backend)
    for got, want in zip(f(x), (np.flip(x, 1), np.roll(x, 1), np.tril(x), np.kron(x, x),
                                np.pad(x, 1, mode="wrap"), np.diff(x), np.repeat(x, 2),
                                np.hstack([x, x]), np.trace(x))):
        np.testing.assert_array_equal(got, want)
