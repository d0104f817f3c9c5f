"""Calling conventions (API.md §6): how a call's arguments, keywords included, become the flat
list of entries a graph is traced with, and the graph's flat outputs the pytree its caller gets.

- ``Binder(fn)`` binds keyword arguments by name: those naming positional parameters go to
  their positions (so ``argnums`` and ``static_argnums`` count them there); keyword-only ones
  stay keywords. Errors are Python's own (``TypeError`` naming the parameter).
- ``flatten_call(args, kw, static)`` flattens every argument that is not static into its
  leaves (``symgrad.tree_util``; a list of plain numbers, ``[3.0, 4.0]``, is one leaf, the
  array it writes, as API.md §2 has always read it) and returns ``(entries, layout)``; ``layout`` is hashable, so it
  is part of a specialization's key. A static argument is one entry, its value as it is.
- ``flat_function(fn, layout, ...)`` is ``fn`` as a function of the entries: it rebuilds the
  arguments, calls ``fn`` and returns the leaves of its result (the leaf itself for an array
  result, so a plain function traces to the graph it always did). The result's structure is
  left on the function as ``out_tree`` once it has been traced.
"""
from __future__ import annotations

import inspect
import re

from symgrad import tree_util
from symgrad.frontend import autograph
from symgrad.tree_util import LEAF, tree_flatten, tree_unflatten

STATIC = "static"       # a layout entry for an argument passed as it is (static)


class Binder:
    """The parameters of ``fn``, looked up once, and how a call's keywords bind to them."""

    def __init__(self, fn, name):
        self.name = name
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError):
            params = None
        self.known = params is not None
        params = params or []
        self.positional = [p for p in params
                           if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        self.index = {p.name: i for i, p in enumerate(self.positional)
                      if p.kind == p.POSITIONAL_OR_KEYWORD}
        self.keyword_only = {p.name: p for p in params if p.kind == p.KEYWORD_ONLY}
        self.var_keyword = any(p.kind == p.VAR_KEYWORD for p in params)
        self.var_positional = any(p.kind == p.VAR_POSITIONAL for p in params)

    def position(self, name):
        """The position of the positional parameter ``name``, or None."""
        return self.index.get(name)

    def bind(self, args, kwargs):
        """``(args, kw)``: keywords naming positional parameters moved to their positions (a
        gap before one is filled with its parameter's default), the others in ``kw``. Raises
        TypeError as Python would: an unknown keyword, a value given twice, a missing one."""
        if not self.known:
            return tuple(args), dict(kwargs)
        args, kw, placed = list(args), {}, {}
        for key, value in kwargs.items():
            i = self.index.get(key)
            if i is None:
                if key in self.keyword_only or self.var_keyword:
                    kw[key] = value
                    continue
                raise TypeError(f"{self.name}() got an unexpected keyword argument {key!r}")
            if i < len(args):
                raise TypeError(f"{self.name}() got multiple values for argument {key!r}")
            placed[i] = value
        if placed:
            for i in range(len(args), max(placed) + 1):
                if i in placed:
                    args.append(placed[i])
                    continue
                p = self.positional[i]
                if p.default is p.empty:
                    raise TypeError(f"{self.name}() missing required argument {p.name!r} "
                                    f"(given {', '.join(repr(k) for k in kwargs)} by keyword)")
                args.append(p.default)
        for name, p in self.keyword_only.items():
            if name not in kw and p.default is p.empty:
                raise TypeError(f"{self.name}() missing required keyword-only argument "
                                f"{name!r}")
        return tuple(args), kw


class Layout:
    """How a call's entries map back to its arguments: per positional argument the structure
    of its leaves (``STATIC`` for a static one, one entry holding its value), the structure of
    the traced keyword arguments (a dict by name, or None) and the static ones, by name.
    Hashable and compared by value."""
    __slots__ = ("trees", "kw_tree", "static_kw", "plain", "_hash")

    def __init__(self, trees, kw_tree=None, static_kw=()):
        self.trees, self.kw_tree, self.static_kw = tuple(trees), kw_tree, tuple(static_kw)
        self.plain = kw_tree is None and not static_kw and all(
            t is STATIC or t is LEAF for t in self.trees)
        self._hash = hash((self.trees, kw_tree, self.static_kw))

    def __eq__(self, other):
        return (isinstance(other, Layout) and self._hash == other._hash
                and self.trees == other.trees and self.kw_tree == other.kw_tree
                and self.static_kw == other.static_kw)

    def __hash__(self):
        return self._hash

    def __repr__(self):
        return f"Layout({self.trees}, {self.kw_tree}, {self.static_kw})"

    @classmethod
    def positional(cls, n, static=()):
        return cls([STATIC if i in static else LEAF for i in range(n)])

    def spans(self):
        """``(argument position, start, stop)`` of each positional argument's entries."""
        out, k = [], 0
        for i, t in enumerate(self.trees):
            n = 1 if t is STATIC else t.num_leaves
            out.append((i, k, k + n))
            k += n
        return out

    @property
    def num_positional_entries(self):
        return sum(1 if t is STATIC else t.num_leaves for t in self.trees)

    def rebuild(self, entries):
        """``(args, kw)`` from the entries."""
        args, k = [], 0
        for t in self.trees:
            if t is STATIC:
                args.append(entries[k])
                k += 1
            elif t is LEAF:
                args.append(entries[k])
                k += 1
            else:
                n = t.num_leaves
                args.append(tree_unflatten(t, entries[k:k + n]))
                k += n
        kw = dict(self.static_kw)
        if self.kw_tree is not None:
            kw.update(tree_unflatten(self.kw_tree, entries[k:]))
        return args, kw

    def entry_names(self, names):
        """A parameter name for every entry: the argument's own for a leaf or static one;
        ``params_W1``, ``state_0`` (the argument's name joined to its key path) for the leaves of
        a pytree; keyword leaves after the keyword's name. Names are identifiers, unique."""
        out, seen = [], set()

        def add(base, path):
            name = base if not path else "_".join(
                [base, *[_key_text(k) for k in path]])
            name = re.sub(r"\W", "_", name)
            if not name or name[0].isdigit():
                name = "a_" + name
            while name in seen:
                name += "_"
            seen.add(name)
            out.append(name)
        for i, t in enumerate(self.trees):
            base = names[i] if i < len(names) else f"arg{i}"
            if t is STATIC or t is LEAF:
                add(base, ())
            else:
                for path in tree_util.leaf_paths(t):
                    add(base, path)
        if self.kw_tree is not None:
            for path in tree_util.leaf_paths(self.kw_tree):
                add(_key_text(path[0]), path[1:])
        return out

    def labels(self, names):
        """How error messages name each entry: ``argument 0 ('params')['w']``."""
        out = []
        for i, t in enumerate(self.trees):
            base = f"argument {i}" + (f" ({names[i]!r})" if i < len(names) else "")
            if t is STATIC or t is LEAF:
                out.append(base)
            else:
                out.extend(base + tree_util.keystr(p) for p in tree_util.leaf_paths(t))
        if self.kw_tree is not None:
            out.extend(f"keyword argument {path[0].key!r}" + tree_util.keystr(path[1:])
                       for path in tree_util.leaf_paths(self.kw_tree))
        return out


def _key_text(key):
    return str(getattr(key, "key", key))


_NUMBERS = (int, float, bool, complex)


def numeric_list(x):
    """Whether ``x`` is a (nested) list or tuple of Python or NumPy numbers only, such as
    ``[3.0, 4.0]`` or ``[[1, 2], [3, 4]]``: an array written as a list (API.md §2), one leaf,
    not a pytree of scalars. Named tuples and empty lists stay pytrees."""
    if type(x) not in (list, tuple) or not x:
        return False
    return all(isinstance(e, _NUMBERS) or (type(e).__module__ == "numpy" and
                                            getattr(e, "ndim", None) == 0)
               or numeric_list(e) for e in x)


def flatten_call(args, kw, static=(), static_kw=frozenset()):
    """``(entries, layout)`` of a call: each positional argument not in ``static`` (positions)
    flattened to its leaves, each static one as it is; the keyword arguments not named in
    ``static_kw`` flattened (as a dict by name) after them, the static ones kept in the layout.
    Raises TypeError for a static keyword argument that is not hashable."""
    entries, trees = [], []
    for i, a in enumerate(args):
        if i in static:
            entries.append(a)
            trees.append(STATIC)
            continue
        leaves, t = tree_flatten(a, numeric_list)
        entries.extend(leaves)
        trees.append(t)
    kw_tree, fixed = None, []
    if kw:
        traced = {k: v for k, v in kw.items() if k not in static_kw}
        fixed = sorted((k, v) for k, v in kw.items() if k in static_kw)
        for k, v in fixed:
            try:
                hash(v)
            except TypeError:
                raise TypeError(f"static argument {k!r} must be hashable, got "
                                f"{type(v).__name__}") from None
        if traced:
            leaves, kw_tree = tree_flatten(traced, numeric_list)
            entries.extend(leaves)
    return entries, Layout(trees, kw_tree, fixed)


def flat_function(fn, layout, names, *, has_aux=False, name=None):
    """``fn`` as a function of a call's entries (see the module docstring); its parameters are
    named after the entries (``layout.entry_names``) so traces and generated C read like the
    user's code. After a trace, ``.out_tree`` is the result's structure."""
    label = name or getattr(fn, "__name__", "f")
    plain = layout.plain
    user_fn = fn

    def flat(*entries):
        # The user's source converted (plain Python control flow and in-place updates on
        # traced values, docs/python_code.md); the function itself when it has no source.
        fn = autograph.convert(user_fn)
        if plain:
            result = fn(*entries)
        else:
            args, kw = layout.rebuild(entries)
            result = fn(*args, **kw)
        if has_aux:
            check_aux(result, label)
        leaves, tree = tree_flatten(result)
        flat.out_tree = tree
        if tree is LEAF:
            return leaves[0]
        if has_aux and tree.children[0] is not LEAF:
            raise TypeError(f"{label}: with has_aux=True the function returns (loss, aux) with "
                            f"loss one array; its loss is {tree.children[0]}")
        return tuple(leaves)
    flat.__name__ = flat.__qualname__ = label
    flat.out_tree = None
    kind = inspect.Parameter.POSITIONAL_ONLY
    flat.__signature__ = inspect.Signature(
        [inspect.Parameter(n, kind) for n in layout.entry_names(names)])
    return flat


def check_aux(result, name):
    """``has_aux=True``: the function must return a pair ``(output, aux)``, as in JAX."""
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        what = (f"a {type(result).__name__} of length {len(result)}"
                if isinstance(result, (tuple, list)) else type(result).__name__)
        raise TypeError(f"{name}: with has_aux=True the function must return a pair "
                        f"(output, aux); it returned {what}")
