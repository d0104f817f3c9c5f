"""``vmap`` on traced values: what ``symgrad.vmap(fn)`` does when it is called inside a function
being traced (and, through ``symgrad.compile``, when it is called on plain arrays).

``fn`` is traced once at the types of *one* example (each mapped argument without its mapped
axis) into a fresh graph, and ``core.batching.emit_batched`` emits that graph into the graph
being built with every statement rewritten by its primitive's batching rule: the enclosing
trace sees ordinary statements, which it may differentiate, batch again or compile. So
``compile(vmap(grad(f)))`` is one native function with no Python loop, and ``grad`` of a
function that calls ``vmap`` differentiates the batched statements.

``in_axes`` and ``out_axes`` follow JAX: an int (negative counts from the end), None (not
mapped: every example reads the same value; for an output, one that must not depend on a
mapped input), or a tuple with one entry per positional argument, each entry a pytree prefix of
its argument (``{'w': None, 'b': 0}``), a list read as a tuple. Keyword arguments are mapped
along axis 0, as in JAX.
"""
from __future__ import annotations

from symgrad import tree_util
from symgrad.core import dims
from symgrad.core.batching import emit_batched, move_axis, to_front, unbatched_type
from symgrad.core.ir import Var
from symgrad.frontend import calls, tracing, transforms
from symgrad.frontend.tracer import Tracer
from symgrad import numpy as snp


def _is_axis_leaf(x):
    return x is None


def check_in_axes(in_axes, args):
    """Raise as JAX does when a tuple ``in_axes`` does not have one entry per positional
    argument; a bad entry type is a TypeError."""
    if isinstance(in_axes, (tuple, list)) and len(in_axes) != len(args):
        raise ValueError(f"vmap in_axes must be an int, None, or a tuple of entries "
                         f"corresponding to the positional arguments passed to the function, "
                         f"but got len(in_axes)={len(in_axes)}, len(args)={len(args)}")
    for ax in tree_util.tree_leaves(in_axes, _is_axis_leaf):
        if ax is not None and not isinstance(ax, int):
            raise TypeError(f"vmap in_axes: an axis is an int or None, got {ax!r}")


def _entry_axes(in_axes, args, layout):
    """The mapped axis (or None) of every entry of the call (``calls.flatten_call``)."""
    axes, spans = [], layout.spans()
    for i, a in enumerate(args):
        n = spans[i][2] - spans[i][1]
        spec = (in_axes[i] if i < len(in_axes) else 0) if isinstance(in_axes, (tuple, list)) \
            else in_axes
        leaves, tree = tree_util.tree_flatten(spec, _is_axis_leaf)
        if tree_util.treedef_is_leaf(tree):
            axes += [leaves[0]] * n
            continue
        try:
            parts = tree_util.flatten_up_to(tree, a, f"vmap in_axes[{i}]: argument {i}")
        except ValueError as e:
            raise ValueError(f"{e}; in_axes[{i}] must be a prefix of the argument's structure "
                             f"({tree_util.tree_structure(a, calls.numeric_list)})") from None
        for ax, part in zip(leaves, parts):
            axes += [ax] * len(tree_util.tree_leaves(part, calls.numeric_list))
    # Keyword arguments: axis 0 (JAX).
    return axes + [0] * (layout.kw_tree.num_leaves if layout.kw_tree is not None else 0)


def call(fn, in_axes, out_axes, axis_size, args, kw=None):
    """``vmap(fn, in_axes, out_axes)(*args, **kw)`` with traced values among the arguments:
    the batched statements emitted into the graph being built, the result as Tracers in the
    structure of ``fn``'s. Raises ValueError for sizes that disagree (naming the arguments),
    an axis out of range, or ``out_axes=None`` for an output that depends on a mapped input."""
    entries, layout = calls.flatten_call(tuple(args), kw)
    axes = _entry_axes(in_axes, tuple(args), layout)
    labels = layout.labels(tracing.parameter_names(fn))
    size, sized_by = axis_size, "axis_size"
    per_example, batched = [], {}
    for k, (a, ax) in enumerate(zip(entries, axes)):
        if ax is None:
            per_example.append(a)
            continue
        t = a if isinstance(a, Tracer) else snp.asarray(a)
        var = t.irvar
        if not -var.ndim <= ax < var.ndim:
            raise ValueError(f"vmap was requested to map {labels[k]} along axis {ax}, which "
                             f"implies that its rank should be at least "
                             f"{ax + 1 if ax >= 0 else -ax}, but is only {var.ndim} (its "
                             f"shape is {tuple(var.shape)})")
        ax %= var.ndim
        n = var.shape[ax]
        if size is None:
            size, sized_by = n, f"{labels[k]} (axis {ax})"
        elif not dims.equal(n, size):
            raise ValueError(f"vmap got inconsistent sizes for the mapped axes: {labels[k]} has "
                             f"size {n} along axis {ax}, but {sized_by} has size {size}")
        one = Var(unbatched_type(var.type, ax))
        batched[one] = (var, ax)
        per_example.append(Tracer(one))
    if size is None:
        raise ValueError("vmap must have at least one non-None value in in_axes or axis_size "
                         "must be specified")
    size = dims.normalize(size)
    args1, kw1 = layout.rebuild(per_example)
    p = transforms.prepare(fn, args1, (), "vmap", kw1)
    inputs = [batched.get(v, (v, None)) for v in p.inputs]
    outs, out_dims = emit_batched(p.graph, [x for x, _ in inputs], [d for _, d in inputs], size)
    placed = [_place(x, d, ax, size, fn, where)
              for x, d, (ax, where) in zip(outs, out_dims, _output_axes(out_axes, p.out_tree))]
    return p.outputs(placed)


def _output_axes(out_axes, out_tree):
    """``(axis, label)`` of every output leaf: ``out_axes`` (an int, None, or a prefix of the
    result's structure) spread over the leaves."""
    n = out_tree.num_leaves
    paths = [tree_util.keystr(p) for p in tree_util.leaf_paths(out_tree)]
    leaves, tree = tree_util.tree_flatten(out_axes, _is_axis_leaf)
    if tree_util.treedef_is_leaf(tree):
        return [(leaves[0], path) for path in paths]
    numbered = tree_util.tree_unflatten(out_tree, list(range(n)))
    try:
        parts = tree_util.flatten_up_to(tree, numbered, "vmap out_axes: the result")
    except ValueError as e:
        raise ValueError(f"{e}; out_axes must be a prefix of the result's structure "
                         f"({out_tree})") from None
    axes = [None] * n
    for ax, part in zip(leaves, parts):
        for j in tree_util.tree_leaves(part):
            axes[j] = ax
    return list(zip(axes, paths))


def _place(x, d, ax, size, fn, where):
    """An output with its batch axis at ``ax`` (broadcast along it when no example changes it),
    or as it is for ``ax`` None."""
    if ax is None:
        if d is not None:
            raise ValueError(f"vmap of {getattr(fn, '__name__', 'the function')}: out_axes is "
                             f"None for the result{where}, but it depends on a mapped input "
                             f"(it differs from example to example)")
        return x
    if not isinstance(ax, int):
        raise TypeError(f"vmap out_axes: an axis is an int or None, got {ax!r}")
    if d is None:
        x, d = to_front(x, None, size), 0
    if not -x.ndim <= ax < x.ndim:
        raise ValueError(f"vmap out_axes={ax} is out of range for the result{where}, which has "
                         f"{x.ndim - 1} axes per example")
    return move_axis(x, d, ax % x.ndim)
