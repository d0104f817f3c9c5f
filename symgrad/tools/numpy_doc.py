"""docs/numpy.md, generated from the registry of what traces (``frontend.tracer.IMPLEMENTATIONS``).

Every NumPy and SciPy name a Tracer resolves is listed, with how it differs from NumPy where it
does (``NOTES``). ``tests/test_numpy_doc.py`` fails when docs/numpy.md is not what this renders,
so a new function is documented in the commit that adds it. Regenerate with

    python -m symgrad.tools.numpy_doc > docs/numpy.md
"""
from __future__ import annotations

import sys

import symgrad  # noqa: F401  (imports every module that registers names)
from symgrad import numpy as snp
from symgrad.frontend.tracer import DATA_DEPENDENT, IMPLEMENTATIONS

# How a supported function differs from NumPy's (or SciPy's). A name absent here behaves as
# NumPy's: the same values, broadcasting, axis and dtype rules, and exact gradients.
NOTES = {
    # The subgradient conventions of API.md.
    "abs": "gradient at 0 is 1 (the tie goes to x in max(x, -x)); of a complex z, the modulus, "
           "adjoint g conj(z) / abs(z) ([complex.md](complex.md))",
    "absolute": "as abs",
    "fabs": "as abs",
    "maximum": "on a tie the gradient goes to the first argument",
    "minimum": "on a tie the gradient goes to the first argument",
    "fmax": "NaN loses, as in NumPy; a tie (-0.0 and 0.0 too) goes to the first argument",
    "fmin": "NaN loses, as in NumPy; a tie (-0.0 and 0.0 too) goes to the first argument",
    "clip": "at a bound the gradient goes to the array",
    "max": "the gradient goes to the first maximal element; initial= and where= as NumPy's",
    "min": "the gradient goes to the first minimal element; initial= and where= as NumPy's",
    "amax": "as max",
    "amin": "as min",
    "select": "the first condition that holds wins; the gradient goes to the choice taken",
    "piecewise": "a traced condition applies each function to the whole array and selects "
                 "(NumPy's result for elementwise functions); a condition known while tracing "
                 "passes the selected elements, as NumPy does",
    "isclose": "no gradient",
    "sum": "dtype=, initial= and where= as NumPy's",
    "prod": "dtype=, initial= and where= as NumPy's",
    "mean": "dtype= and where= as NumPy's",
    "where": "three arguments only (where(c) alone, NumPy's nonzero, has a data-dependent "
             "shape); the gradient goes to the branch taken",
    # Complex numbers: docs/complex.md.
    "real": "of a complex z: adjoint g ([complex.md](complex.md))",
    "imag": "of a complex z: adjoint -i g ([complex.md](complex.md))",
    "conj": "of a complex z: adjoint conj(g) ([complex.md](complex.md))",
    "conjugate": "as conj",
    "angle": "of a complex z: arctan2(imag z, real z); of a real z, no gradient",
    # Zero almost everywhere.
    "sign": "no gradient (0 almost everywhere)",
    "floor": "no gradient (0 almost everywhere)",
    "ceil": "no gradient (0 almost everywhere)",
    "trunc": "no gradient (0 almost everywhere)",
    "rint": "no gradient (0 almost everywhere); half to even",
    "round": "no gradient (0 almost everywhere); half to even",
    "around": "as round",
    "floor_divide": "no gradient (0 almost everywhere); integers as NumPy (x // 0 is 0)",
    "remainder": "d/dy is -floor(x / y); integers as NumPy (x % 0 is 0)",
    "mod": "as remainder",
    "fmod": "d/dy is -trunc(x / y)",
    "divmod": "as floor_divide and remainder",
    "heaviside": "the gradient reaches x2 where x1 == 0",
    "nan_to_num": "the gradient flows where x is finite; copy is ignored (results are new)",
    "sinc": "the derivative near 0 (not at it) loses digits to cancellation, as the formula does",
    # Booleans and the bitwise functions.
    "bitwise_and": "bools only (the & of comparisons)",
    "bitwise_or": "bools only (the | of comparisons)",
    "bitwise_xor": "bools only (the ^ of comparisons)",
    "invert": "bools only (the ~ of a comparison)",
    "bitwise_not": "as invert",
    # Statistics and sorting (symgrad/numpy/statistics.py).
    "std": "where the variance is 0 the gradient is 0 (a subgradient), not NaN",
    "var": "where= and mean= are not supported",
    "cumprod": "the gradient is exact where the input has zeros (no division)",
    "sort": "always stable (kind is ignored); the gradient follows the permutation",
    "argsort": "always stable, NaN last: ties keep their order (NumPy's default quicksort may "
               "not)",
    "median": "with NaN in the input it selects as if NaN were the largest value (NumPy: NaN); "
              "the gradient goes to the middle element(s)",
    "quantile": "q must be known while tracing; methods linear, lower, higher, nearest, "
                "midpoint; NaN as in median; weights= is not supported",
    "percentile": "as quantile",
    "nanmax": "an all-NaN slice gives NaN without NumPy's warning",
    "nanmin": "an all-NaN slice gives NaN without NumPy's warning",
    "searchsorted": "a 1-D sorted array; len(a) * len(v) comparisons",
    "nanargmax": "an all-NaN slice fails the call when it runs (RuntimeError), as NumPy raises",
    "nanargmin": "as nanargmax",
    "isin": "len(test_elements) comparisons per element; no gradient",
    "digitize": "traced bins are assumed monotonic (NumPy checks; bins known while tracing "
                "are checked); no gradient",
    "bincount": "x must be known while tracing (the length is max(x) + 1); the weights may be "
                "traced",
    "lexsort": "a stable argsort per key",
    "cumulative_sum": "as cumsum; include_initial starts with 0",
    "cumulative_prod": "as cumprod; include_initial starts with 1",
    "partition": "the whole axis sorted (a valid partition: NumPy leaves the order within each "
                 "part unspecified); kth must be known while tracing",
    "argpartition": "the stable sorting order (see partition)",
    "cov": "traced fweights and aweights are not checked for being whole and non-negative; "
           "traced weights giving degrees of freedom <= 0 divide by 0 without NumPy's warning",
    "corrcoef": "where clipping to [-1, 1] binds (the diagonal) the gradient passes through",
    # Calculus (symgrad/numpy/calculus.py).
    "interp": "len(xp) * len(x) comparisons find the intervals; at a sample point the gradient "
              "in x is the slope to its right (to its left at the last point)",
    "convolve": "one gather of the (n_out, m) windows of the zero-padded longer operand times the "
                "shorter (m): memory n_out * m; a non-finite value in the shorter operand gives "
                "NaN in the partial windows at the ends (NumPy leaves the padding out of the sums)",
    "correlate": "as convolve",
    "gradient": "traced coordinates take the non-uniform formulas (NumPy tests evenly spaced "
                "ones and takes the uniform ones: equal up to rounding)",
    # Shapes and contractions (shapes.py, contractions.py).
    "delete": "the positions must be known while tracing",
    "insert": "the positions must be known while tracing",
    "compress": "the condition must be known while tracing (the size depends on it)",
    "extract": "the condition must be known while tracing (the size depends on it)",
    "choose": "mode 'raise' is checked when the function runs; the gradient goes to the choice",
    "resize": "the size must be known while tracing",
    "unstack": "the axis length must be known while tracing",
    "frexp": "the mantissa's gradient is 2**-exponent",
    "vander": "N must be known while tracing",
    "pad": "modes constant, edge, reflect, symmetric and wrap",
    "take": "mode='raise' only",
    "tril": "arrays of at least 2 dimensions",
    "triu": "arrays of at least 2 dimensions",
    "einsum": "contracts left to right; optimize= is ignored",
    "getitem": "a constant boolean mask indexes; a traced one is an error (use where)",
    # Creation and in-place writes (symgrad/numpy/__init__.py, _inplace.py).
    "empty": "zeros: a compiled function never reads memory it has not written",
    "empty_like": "as empty",
    "copy": "order= is ignored (results are new arrays)",
    "put": "writes the traced array in place, views included; traced indices with mode='raise' "
           "are checked when the function runs",
    "copyto": "writes the traced array in place, views included",
    "fill_diagonal": "writes the traced array in place; its shape must be known while tracing",
    "putmask": "writes the traced array in place, views included",
    "place": "writes the traced array in place, views included",
    # Linear algebra (symgrad/numpy/linalg.py, docs/linalg.md).
    "linalg.solve": "a singular matrix gives inf/NaN instead of LinAlgError",
    "linalg.inv": "a singular matrix gives inf/NaN instead of LinAlgError",
    "linalg.det": "sign * exp(log|det|): no gradient at a singular matrix",
    "linalg.cholesky": "NaN instead of LinAlgError for a matrix that is not positive definite",
    "linalg.eigh": "eigenvectors scaled so the largest entry of each is positive; derivatives "
                   "need distinct eigenvalues",
    "linalg.svd": "full_matrices=True only for square matrices; U's columns scaled so the "
                  "largest entry of each is positive; derivatives need distinct singular values",
    "linalg.qr": "modes reduced, r, and complete for m <= n; the derivative needs m >= n",
    "linalg.pinv": "through the SVD: derivatives need distinct singular values",
    # Index helpers, predicates, dtypes, conversions (symgrad/numpy/indexing.py, arrays.py).
    "diag_indices_from": "reads only the shape (known while tracing): NumPy's index arrays",
    "tril_indices_from": "reads only the shape (known while tracing): NumPy's index arrays",
    "triu_indices_from": "reads only the shape (known while tracing): NumPy's index arrays",
    "indices": "traced constants while tracing (a dimension may be a run-time size)",
    "ix_": "a traced boolean sequence is refused (its length depends on the values)",
    "unravel_index": "an index out of range fails the call when it runs (RuntimeError with "
                     "NumPy's message; NumPy: ValueError)",
    "ravel_multi_index": "with mode='raise', a coordinate out of range fails the call when it "
                         "runs (RuntimeError with NumPy's message; NumPy: ValueError)",
    "allclose": "a traced 0-d bool (NumPy: a Python bool); no gradient",
    "array_equal": "a traced 0-d bool (NumPy: a Python bool); False when the shapes differ",
    "array_equiv": "a traced 0-d bool (NumPy: a Python bool); False when the shapes do not "
                   "broadcast",
    "iterable": "a 0-d traced array is not iterable, as NumPy's 0-d arrays",
    "shares_memory": "TypeError on traced arrays: a compiled function's memory layout is the "
                     "compiler's, not part of what it computes",
    "may_share_memory": "as shares_memory",
    "asanyarray": "the values (layout is not observable); NumPy's own asanyarray converts its "
                  "argument (it does not dispatch): call this one",
    "ascontiguousarray": "the values, at least 1-D; NumPy's own converts its argument: call this "
                         "one",
    "asfortranarray": "as ascontiguousarray",
    "require": "the values with dtype=; NumPy's own converts its argument: call this one",
    "asarray_chkfinite": "a NaN or infinity fails the call when it runs (RuntimeError with "
                         "NumPy's message; NumPy: ValueError); NumPy's own converts its argument: "
                         "call this one",
    "nonzero": "traced: only with size= (and fill_value=), JAX's convention: the first size "
               "indices, padded",
    "flatnonzero": "traced: only with size= (and fill_value=), as nonzero",
    "argwhere": "traced: only with size= (and fill_value=), as nonzero",
    "unique": "traced: only with size= (and fill_value=), JAX's convention: the first size "
              "values padded with fill_value (default the smallest), index padded with the "
              "smallest's, counts with 0; axis=None only",
    "nanmedian": "the gradient goes to the middle number(s) of each lane",
    "nanquantile": "methods linear, lower, higher, midpoint; q known while tracing; with a list q "
                   "float32 gives float64 (NumPy: float32 when its first lane is all NaN)",
    "nanpercentile": "as nanquantile",
    "histogram": "bins: a number (known while tracing) or edges, not a string estimator; a "
                 "non-finite autodetected range or decreasing traced edges fail the call when it "
                 "runs (RuntimeError; NumPy: ValueError); counts have no gradient with respect to "
                 "the data, weighted counts the weights'",
    "histogram_bin_edges": "as histogram",
    "geomspace": "real limits only on traced values; a traced limit of 0 fails the call when it "
                 "runs (RuntimeError; NumPy: ValueError)",
    "unwrap": "the gradient passes through (the corrections are piecewise constant)",
    "apply_along_axis": "func1d is traced once per slice (their number known while tracing)",
    "poly": "real roots only on traced values (NumPy's dtype of complex roots depends on the "
            "values; a matrix needs eigvals)",
    "bartlett": "M known while tracing: NumPy's array",
    "blackman": "M known while tracing: NumPy's array",
    "hamming": "M known while tracing: NumPy's array",
    "hanning": "M known while tracing: NumPy's array",
    "kaiser": "M known while tracing; beta may be traced",
    "i0": "NumPy's Chebyshev series, operation for operation; the gradient is the series' (I1 to "
          "its accuracy)",
    "polyfit": "deg must be known while tracing; full= and cov= are not supported on traced "
               "values (they depend on the rank found in the values); the gradient is lstsq's",
    "linalg.lstsq": "the residuals are returned whenever a is tall (NumPy: at full rank only)",
    "linalg.norm": "the gradient of the 2-norm and the Frobenius norm at 0 is 0, not NaN",
    "linalg.cond": "a singular matrix gives inf or NaN (NumPy turns NaN into inf)",
    "scipy.linalg.cho_factor": "the unused triangle holds zeros (SciPy leaves a's entries)",
    "scipy.linalg.solve": "a is one matrix (batches: numpy.linalg.solve); assume_a 'sym'/'her' "
                          "and 'pos' read one triangle, 'diagonal' and 'tridiagonal' their band, "
                          "as SciPy's solvers do; a singular a gives inf/NaN",
    "scipy.linalg.inv": "assume_a and lower as in solve",
    "scipy.linalg.eigh": "type=1 only; subset_by_index, not subset_by_value; eigenvector signs as "
                         "numpy.linalg.eigh's",
    "scipy.linalg.eigvalsh": "as eigh",
    "scipy.linalg.svd": "as numpy.linalg.svd; lapack_driver is accepted and ignored",
    "scipy.linalg.qr": "modes economic, r, and full for m <= n; not pivoting=True or mode='raw'",
    "scipy.linalg.pinv": "through the SVD: derivatives need distinct singular values",
    "scipy.linalg.expm": "Higham's (2005) [13/13] Pade approximant, at most max_squarings=16 "
                         "squarings (JAX's); a larger finite norm is an error when it runs",
    # SciPy.
    "scipy.special.polygamma": "the order n is a Python int; float32 stays float32 (SciPy's "
                               "returns float64)",
    "scipy.special.gammaln": "gammaln(-inf) is +inf, as libm's lgamma (SciPy's is -inf)",
    "scipy.special.xlogy": "scipy.special.xlogy on a Tracer dispatches here (a ufunc)",
    "scipy.special.log_ndtr": "log1p(-ndtr(-x)) above 0, the asymptotic series below -37 "
                              "(float32: -10), so both tails keep their digits",
    "scipy.special.softmax": "scipy.special.softmax itself converts its arguments: call this one",
    "scipy.special.log_softmax": "scipy.special.log_softmax itself converts its arguments: call "
                                 "this one",
    "scipy.special.logsumexp": "return_sign=True is not supported on traced values; "
                               "scipy.special.logsumexp itself converts its arguments: call "
                               "this one",
}

_HEADER = """\
# What `symgrad.numpy` supports

Generated by `python -m symgrad.tools.numpy_doc > docs/numpy.md` from the registry a Tracer
resolves NumPy names in; `tests/test_numpy_doc.py` checks that this page is current.

Each name below works three ways inside a compiled function: as `symgrad.numpy.NAME` (`snp`),
as NumPy's own `numpy.NAME` called on a traced value (NumPy hands it to symgrad through
`__array_ufunc__`/`__array_function__`), and, where ndarray has it, as a method of the traced
array. On plain arrays `snp.NAME` is NumPy's. Values, broadcasting, `axis`/`keepdims` and dtype
rules are NumPy's, and gradients are exact, except where the notes say otherwise.

Complex values (`complex128`, `complex64`; type strings `c128`, `c64`) are supported by the
operations [complex.md](complex.md) lists, whose gradients follow JAX's convention; any other
operation on a complex value raises `symgrad.DTypeError` naming it.

A name not listed raises `symgrad.errors.UnsupportedError` (a `TracingError` and an
`AttributeError`) naming it and the closest supported names.
"""


# NumPy names autograd's numpy module differentiates that symgrad does not trace yet, and why
# (issue 16 asks that each be traced or listed here).
NOT_YET = {
    "fft, ifft, fft2, ifft2, fftn, ifftn, rfft, irfft, rfft2, irfft2, rfftn, irfftn, fftshift, "
    "ifftshift": "numpy.fft: no FFT primitive yet (it needs a C kernel of its own)",
    "linalg.eig, linalg.eigvals": "the general (non-symmetric) eigenproblem has complex results "
                                  "and no LAPACK-free C routine here yet; `linalg.eigh` covers "
                                  "symmetric matrices",
    "real_if_close": "its result's dtype depends on the values, which a trace does not know",
}


def _groups():
    """(title, [(name, note)]) per namespace, names sorted; a ufunc's methods (``add.at``) sit
    with NumPy's own names."""
    numpy_names = set(snp.__all__) & set(IMPLEMENTATIONS)
    methods = {k for k in IMPLEMENTATIONS if "." in k and k.split(".")[0] in numpy_names}
    groups = {"`symgrad.numpy` (NumPy's `numpy`)": sorted(numpy_names | methods)}
    dotted = sorted(k for k in IMPLEMENTATIONS if "." in k and k not in methods)
    for prefix in sorted({k.rsplit(".", 1)[0] for k in dotted}):
        module = ("symgrad." + prefix) if prefix.startswith("scipy") else "symgrad.numpy." + prefix
        original = prefix if prefix.startswith("scipy") else "numpy." + prefix
        names = [k for k in dotted if k.rsplit(".", 1)[0] == prefix]
        groups[f"`{module}` (`{original}`)"] = names
    return [(title, [(name if name in methods else name.rsplit(".", 1)[-1],
                      NOTES.get(name, "")) for name in names])
            for title, names in groups.items()]


def render():
    """The text of docs/numpy.md."""
    lines = [_HEADER]
    total = 0
    for title, rows in _groups():
        total += len(rows)
        lines.append(f"## {title}: {len(rows)} names\n")
        lines.append("| name | differences from NumPy |")
        lines.append("|---|---|")
        lines += [f"| `{name}` | {note} |" for name, note in rows]
        lines.append("")
    lines.append(f"In all: {total} names.\n")
    lines.append("## Not traced yet\n")
    lines.append("NumPy names autograd differentiates that symgrad does not trace yet, and why:\n")
    lines.append("| names | why |")
    lines.append("|---|---|")
    lines += [f"| {', '.join(f'`{n}`' for n in names.split(', '))} | {why} |"
              for names, why in NOT_YET.items()]
    lines.append("")
    lines.append("## Not traceable: the result's shape depends on the values\n")
    lines.append("On a traced value these raise `UnsupportedError` saying so, with what to use "
                 "instead (also in the error):\n")
    lines.append("| name | instead |")
    lines.append("|---|---|")
    lines += [f"| `{name}` | {instead} |" for name, instead in sorted(DATA_DEPENDENT.items())
              if name not in IMPLEMENTATIONS]
    lines.append("")
    lines.append("Without `size=`, " + ", ".join(f"`{name}`" for name in sorted(DATA_DEPENDENT)
                                              if name in IMPLEMENTATIONS)
                 + " raise the same error on a traced value.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
