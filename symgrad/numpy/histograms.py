"""Histograms: NumPy's ``histogram`` and ``histogram_bin_edges`` with a number of bins or
explicit edges, whose results have a shape known while tracing.

The edges are NumPy's: ``linspace(first, last, bins + 1)`` in the dtype NumPy picks, from
``range=`` or from the traced min and max (widened by 0.5 each way when they are equal), or the
edges given. Each count is the number of elements with edges[i] <= x < edges[i + 1] (the last
bin closed), compared against those same edges, which is the bin NumPy's index arithmetic and
its corrections find; the (bins, n) comparisons are counted, or select the weights summed. So the
counts have no gradient with respect to the data (they are piecewise constant), the weighted
counts have the weights' gradient, and the edges that of the min and max.

What NumPy rejects from the values (a non-finite autodetected range, range= with max < min,
traced edges that do not increase) fails the call when it runs, through a guard; bins given as
a string (NumPy's estimators: 'auto', 'fd', ...) choose the number of bins from the values and
are refused.
"""
from __future__ import annotations

import numpy as np

from symgrad.errors import ShapeError
from symgrad.frontend.tracer import Tracer
from symgrad.numpy._common import at, guard, snp, static_ints, traced

__all__ = ["histogram", "histogram_bin_edges"]


def _flat_length(a, name):
    n = a.shape[0]
    if not isinstance(n, (int, np.integer)):
        raise ShapeError(f"{name}: the array must have a size known while tracing, got {n}{at()}")
    return int(n)


def _edges(a, bins, range_, name):
    """NumPy's _get_bin_edges on traced values: (edges, whether they are uniform)."""
    if isinstance(bins, str):
        raise TypeError(f"{name}(bins={bins!r}) chooses the number of bins from the values, which "
                        f"is not known while tracing{at()}; pass a number of bins or the edges")
    if isinstance(bins, Tracer) or np.ndim(bins) == 1:
        edges = snp.asarray(bins)
        if edges.ndim != 1 or _flat_length(edges, name) < 2:
            raise ValueError(f"{name}: bins must be a 1-D array of at least two edges{at()}")
        if isinstance(bins, Tracer):
            edges = guard(snp.less(edges[1:], edges[:-1]), edges,
                           f"{name}: `bins` must increase monotonically, when an array")
        elif np.any(np.diff(np.asarray(bins)) < 0):
            raise ValueError(f"{name}: `bins` must increase monotonically, when an array{at()}")
        return edges, False
    if np.ndim(bins) != 0:
        raise ValueError(f"{name}: `bins` must be 1d, when an array{at()}")
    bins = static_ints(bins, f"{name}'s bins")
    if isinstance(bins, (bool, np.bool_)) or int(bins) != bins:
        raise TypeError(f"{name}: `bins` must be an integer, a string, or an array{at()}")
    if bins < 1:
        raise ValueError(f"{name}: `bins` must be positive, when an integer{at()}")
    if range_ is not None:
        first, last = range_
        if not traced(first, last):
            if first > last:
                raise ValueError(f"{name}: max must be larger than min in range parameter.{at()}")
            if not (np.isfinite(first) and np.isfinite(last)):
                raise ValueError(f"{name}: supplied range of [{first}, {last}] is not finite"
                                 f"{at()}")
    elif a.shape[0] == 0:
        first, last = 0, 1
    else:
        first, last = snp.min(a), snp.max(a)
    # NumPy: the edges' dtype is that of (first, last, a), float64 for integers.
    bin_type = snp.result_type(first, last, a)
    if np.issubdtype(bin_type, np.integer) or bin_type == np.bool_:
        bin_type = np.result_type(bin_type, float)
    first, last = snp.asarray(first, bin_type), snp.asarray(last, bin_type)
    if traced(range_) or range_ is None:
        bad = snp.logical_not(snp.logical_and(snp.isfinite(first), snp.isfinite(last)))
        if range_ is not None:
            bad = snp.logical_or(bad, snp.greater(first, last))
        what = "range" if range_ is not None else "autodetected range"
        first = guard(bad, first, f"{name}: {what} is not finite or not increasing (NumPy: "
                                   f"ValueError)")
    same = snp.equal(first, last)
    first = snp.where(same, snp.subtract(first, 0.5), first)
    last = snp.where(same, snp.add(last, 0.5), last)
    return snp.linspace(first, last, int(bins) + 1, dtype=bin_type), True


def _prepare(a, weights, name):
    a = snp.ravel(snp.asarray(a))
    n = _flat_length(a, name)
    if weights is not None:
        weights = snp.ravel(snp.asarray(weights))
        if weights.shape[0] != n:
            raise ValueError(f"{name}: weights should have the same shape as a{at()}")
    return a, weights


def histogram_bin_edges(a, bins=10, range=None, weights=None):
    """The edges ``histogram`` would use (weights only checked)."""
    if not traced(a, bins, range, weights):
        return np.histogram_bin_edges(a, bins, range, weights)
    a, weights = _prepare(a, weights, "histogram_bin_edges")
    return _edges(a, bins, range, "histogram_bin_edges")[0]


def histogram(a, bins=10, range=None, density=None, weights=None):
    """(counts, edges): the number of elements (or the sum of their weights) in each bin,
    edges[i] <= x < edges[i + 1], the last bin closed; elements outside and NaN are not
    counted. ``density`` divides by the total and the bin widths (float64)."""
    if not traced(a, bins, range, weights):
        return np.histogram(a, bins, range, density, weights)
    a, weights = _prepare(a, weights, "histogram")
    edges, _ = _edges(a, bins, range, "histogram")
    n_bins, n = edges.shape[0] - 1, a.shape[0]
    # The comparisons promote a and the edges as NumPy's do (to the edges' dtype for a number
    # of bins, which NumPy chose to hold a's).
    lo = snp.reshape(edges[:-1], (n_bins, 1))
    hi = snp.reshape(edges[1:], (n_bins, 1))
    xs = snp.reshape(a, (1, n))
    last = snp.reshape(snp.equal(snp.arange(n_bins), n_bins - 1), (n_bins, 1))
    inside = snp.logical_and(snp.less_equal(lo, xs),
                             snp.where(last, snp.less_equal(xs, hi), snp.less(xs, hi)))
    if weights is None:
        counts = snp.sum(inside, axis=1)                 # int64, as NumPy's intp counts
    else:
        counts = snp.sum(snp.where(inside, snp.reshape(weights, (1, n)), 0), axis=1)
    if density:
        widths = snp.astype(snp.subtract(edges[1:], edges[:-1]), "float64")
        counts = snp.divide(snp.divide(counts, widths), snp.sum(counts))
    return counts, edges
