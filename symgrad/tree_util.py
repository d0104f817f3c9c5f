"""Pytrees: nested containers of arrays, flattened to a list of leaves and a structure, as in
``jax.tree_util``. The one implementation symgrad has; compile, the loops, the optimizers,
``distributed``, ``check_grad`` and ``export`` all flatten with it.

Contract:

- Containers: tuples, lists, dicts (leaves in *sorted* key order, as JAX; a dict is rebuilt
  with its keys sorted), ``collections.OrderedDict`` (insertion order), ``defaultdict``
  (sorted, its default factory kept), named tuples, and ``None``, an empty subtree (no
  leaves). Classes registered with ``register_pytree_node`` or ``register_dataclass`` are
  containers too. Everything else (arrays, scalars, ``Tracer``s, strings) is a leaf.
- ``tree_flatten(tree, is_leaf=None) -> (leaves, treedef)``; ``tree_unflatten(treedef, leaves)``
  rebuilds; ``tree_leaves``, ``tree_structure``, ``tree_map(f, tree, *rest)`` (each of
  ``rest`` has ``tree``'s structure or has it as a prefix), ``tree_flatten_with_path`` and
  ``keystr`` (``['params']['w']``, ``[0]``, ``.field``) for messages.
- A ``PyTreeDef`` is immutable and hashable (compiled functions key their specializations by
  it); two are equal when they describe the same structure. ``repr`` is JAX's:
  ``PyTreeDef({'a': *, 'b': (*, None)})``.
"""
from __future__ import annotations

import collections
import dataclasses

__all__ = ["register_pytree_node", "register_dataclass", "tree_flatten", "tree_unflatten",
           "tree_leaves", "tree_structure", "tree_map", "tree_flatten_with_path", "keystr",
           "PyTreeDef", "all_leaves", "treedef_is_leaf"]


class _Node:
    """How one container type flattens: ``flatten(x) -> (children, aux, keys)`` and
    ``unflatten(aux, children) -> x``; ``keys`` (or None) name the children for key paths."""
    __slots__ = ("type", "flatten", "unflatten", "name")

    def __init__(self, type_, flatten, unflatten, name):
        self.type, self.flatten, self.unflatten, self.name = type_, flatten, unflatten, name

    def __reduce__(self):
        # By its type: a structure pickled to another process (a Dask worker) finds the node
        # registered there, and compares equal to that process's own structures.
        return _node_for_type, (self.type,)


def _node_for_type(t):
    if t is type(None):
        return _NONE
    node = _REGISTRY.get(t)
    if node is None and issubclass(t, tuple) and hasattr(t, "_fields"):
        node = _node_of(t.__new__(t, *[None] * len(t._fields)))
    if node is None:
        raise ValueError(f"{t.__name__} is not registered as a pytree node in this process")
    return node


_REGISTRY: dict[type, _Node] = {}


def register_pytree_node(nodetype, flatten_func, unflatten_func):
    """Make ``nodetype`` a container: ``flatten_func(x) -> (children, aux_data)`` (children an
    iterable of subtrees, ``aux_data`` hashable and compared with ``==``) and
    ``unflatten_func(aux_data, children) -> x``. Raises ValueError if it is registered already.
    """
    if nodetype in _REGISTRY:
        raise ValueError(f"{nodetype.__name__} is already registered as a pytree node")

    def flatten(x):
        children, aux = flatten_func(x)
        return tuple(children), aux, None
    _REGISTRY[nodetype] = _Node(nodetype, flatten,
                                lambda aux, children: unflatten_func(aux, children),
                                nodetype.__name__)
    return nodetype


def register_dataclass(nodetype=None, data_fields=None, meta_fields=None):
    """Register a dataclass as a container in one call (also a class decorator).

    ``data_fields`` are the children (arrays); ``meta_fields`` are static and part of the
    structure (hashable). Given neither, every field is a data field except those declared
    with ``dataclasses.field(metadata={"static": True})``, as in JAX.
    Raises TypeError for a class that is not a dataclass, ValueError when the fields given do
    not match the class's.
    """
    if nodetype is None:
        return lambda cls: register_dataclass(cls, data_fields, meta_fields)
    if not dataclasses.is_dataclass(nodetype):
        raise TypeError(f"register_dataclass: {nodetype.__name__} is not a dataclass")
    fields = [f for f in dataclasses.fields(nodetype) if f.init]
    if data_fields is None and meta_fields is None:
        meta_fields = [f.name for f in fields if f.metadata.get("static", False)]
        data_fields = [f.name for f in fields if f.name not in meta_fields]
    data_fields, meta_fields = list(data_fields or ()), list(meta_fields or ())
    if sorted(data_fields + meta_fields) != sorted(f.name for f in fields):
        raise ValueError(f"register_dataclass: data_fields {data_fields} and meta_fields "
                         f"{meta_fields} must together name the fields of "
                         f"{nodetype.__name__}: {[f.name for f in fields]}")
    if nodetype in _REGISTRY:
        raise ValueError(f"{nodetype.__name__} is already registered as a pytree node")
    keys = tuple(_AttrKey(n) for n in data_fields)

    def flatten(x):
        return (tuple(getattr(x, n) for n in data_fields),
                tuple(getattr(x, n) for n in meta_fields), keys)

    def unflatten(aux, children):
        return nodetype(**dict(zip(data_fields, children)), **dict(zip(meta_fields, aux)))
    _REGISTRY[nodetype] = _Node(nodetype, flatten, unflatten, nodetype.__name__)
    return nodetype


# -- key paths -----------------------------------------------------------------------------------

class _Key:
    __slots__ = ("key",)

    def __init__(self, key):
        self.key = key

    def __reduce__(self):
        return type(self), (self.key,)

    def __eq__(self, other):
        return type(self) is type(other) and self.key == other.key

    def __hash__(self):
        return hash((type(self), self.key))

    def __repr__(self):
        return f"{type(self).__name__.strip('_')}({self.key!r})"


class _DictKey(_Key):
    def __str__(self):
        return f"[{self.key!r}]"


class _IndexKey(_Key):
    def __str__(self):
        return f"[{self.key}]"


class _AttrKey(_Key):
    def __str__(self):
        return f".{self.key}"


def keystr(path):
    """A key path as text: ``['params']['w']``, ``[0].pos``; empty for the root."""
    return "".join(str(k) for k in path)


# -- the built-in containers ---------------------------------------------------------------------

def _sorted_keys(d):
    try:
        return sorted(d)
    except TypeError:
        raise TypeError(f"a dict in a pytree needs sortable keys (they are flattened in sorted "
                        f"order, as in JAX); got keys {list(d)!r}") from None


def _flatten_dict(d):
    keys = _sorted_keys(d)
    return tuple(d[k] for k in keys), tuple(keys), tuple(_DictKey(k) for k in keys)


def _flatten_defaultdict(d):
    keys = _sorted_keys(d)
    return (tuple(d[k] for k in keys), (d.default_factory, tuple(keys)),
            tuple(_DictKey(k) for k in keys))


def _flatten_ordered(d):
    keys = tuple(d)
    return tuple(d[k] for k in keys), keys, tuple(_DictKey(k) for k in keys)


def _index_keys(n, cache={}):
    keys = cache.get(n)
    if keys is None:
        keys = cache[n] = tuple(_IndexKey(i) for i in range(n))
    return keys


_REGISTRY[tuple] = _Node(tuple, lambda x: (x, None, None), lambda aux, c: tuple(c), "tuple")
_REGISTRY[list] = _Node(list, lambda x: (tuple(x), None, None), lambda aux, c: list(c), "list")
_REGISTRY[dict] = _Node(dict, _flatten_dict, lambda keys, c: dict(zip(keys, c)), "dict")
_REGISTRY[collections.OrderedDict] = _Node(
    collections.OrderedDict, _flatten_ordered,
    lambda keys, c: collections.OrderedDict(zip(keys, c)), "OrderedDict")
_REGISTRY[collections.defaultdict] = _Node(
    collections.defaultdict, _flatten_defaultdict,
    lambda aux, c: collections.defaultdict(aux[0], zip(aux[1], c)), "defaultdict")
_NONE = _Node(type(None), lambda x: ((), None, ()), lambda aux, c: None, "None")


def _namedtuple_node(cls):
    fields = tuple(_AttrKey(f) for f in cls._fields)
    return _Node(cls, lambda x: (tuple(x), None, fields), lambda aux, c: cls(*c),
                 f"namedtuple[{cls.__name__}]")


_NAMEDTUPLES: dict[type, _Node] = {}


def _node_of(x):
    """The container node of ``x``, or None for a leaf."""
    t = type(x)
    node = _REGISTRY.get(t)
    if node is not None:
        return node
    if x is None:
        return _NONE
    if issubclass(t, tuple) and hasattr(t, "_fields"):
        node = _NAMEDTUPLES.get(t)
        if node is None:
            node = _NAMEDTUPLES[t] = _namedtuple_node(t)
        return node
    return None


# -- the structure -------------------------------------------------------------------------------

class PyTreeDef:
    """The structure of a pytree: a container node and its children's structures, or a leaf
    (``*``). Immutable, hashable, compared by structure."""
    __slots__ = ("node", "aux", "children", "keys", "num_leaves", "num_nodes", "_hash")

    def __init__(self, node, aux, children, keys=None):
        # ``keys`` name the children for key paths; not part of the structure's identity.
        self.node, self.aux, self.children, self.keys = node, aux, children, keys
        self.num_leaves = 1 if node is None else sum(c.num_leaves for c in children)
        self.num_nodes = 1 + sum(c.num_nodes for c in children)
        self._hash = hash((None if node is None else node.type, _hashable(aux),
                           children))

    def __eq__(self, other):
        if self is other:
            return True
        return (isinstance(other, PyTreeDef) and self._hash == other._hash
                and self.node is other.node and self.aux == other.aux
                and self.children == other.children)

    def __hash__(self):
        return self._hash

    def unflatten(self, leaves):
        return tree_unflatten(self, leaves)

    def __reduce__(self):
        return PyTreeDef, (self.node, self.aux, self.children, self.keys)

    def __repr__(self):
        return f"PyTreeDef({self._text()})"

    def _text(self):
        node = self.node
        if node is None:
            return "*"
        inner = [c._text() for c in self.children]
        if node is _NONE:
            return "None"
        if node.type is tuple:
            return "(" + ", ".join(inner) + ("," if len(inner) == 1 else "") + ")"
        if node.type is list:
            return "[" + ", ".join(inner) + "]"
        if node.type is dict:
            return "{" + ", ".join(f"{k!r}: {c}" for k, c in zip(self.aux, inner)) + "}"
        aux = "" if node.name.startswith("namedtuple") else f"[{self.aux!r}]"
        return f"CustomNode({node.name}{aux}, [{', '.join(inner)}])"


def _hashable(aux):
    try:
        hash(aux)
        return aux
    except TypeError:
        return repr(aux)


LEAF = PyTreeDef(None, None, ())


def treedef_is_leaf(treedef):
    """Whether ``treedef`` is a single leaf (``*``)."""
    return treedef.node is None


def tree_flatten(tree, is_leaf=None):
    """``(leaves, treedef)``: the leaves of ``tree`` in order (dicts by sorted key) and its
    structure. ``is_leaf(x)`` returning True stops the descent at ``x``."""
    leaves = []
    return leaves, _flatten(tree, leaves, is_leaf)


def _flatten(x, leaves, is_leaf):
    node = None if is_leaf is not None and is_leaf(x) else _node_of(x)
    if node is None:
        leaves.append(x)
        return LEAF
    children, aux, keys = node.flatten(x)
    return PyTreeDef(node, aux, tuple([_flatten(c, leaves, is_leaf) for c in children]), keys)


def tree_unflatten(treedef, leaves):
    """The pytree of structure ``treedef`` with ``leaves`` as its leaves. Raises ValueError
    when their number differs from the structure's."""
    leaves = list(leaves)
    if len(leaves) != treedef.num_leaves:
        raise ValueError(f"{treedef} holds {treedef.num_leaves} leaves; got {len(leaves)}")
    return _build(treedef, iter(leaves))


def _build(treedef, it):
    node = treedef.node
    if node is None:
        return next(it)
    return node.unflatten(treedef.aux, [_build(c, it) for c in treedef.children])


def tree_leaves(tree, is_leaf=None):
    """The leaves of ``tree``, in ``tree_flatten`` order."""
    return tree_flatten(tree, is_leaf)[0]


def tree_structure(tree, is_leaf=None):
    """The ``PyTreeDef`` of ``tree``."""
    return tree_flatten(tree, is_leaf)[1]


def all_leaves(iterable):
    """Whether every element of ``iterable`` is a leaf."""
    return all(_node_of(x) is None for x in iterable)


def flatten_up_to(treedef, tree, what="tree"):
    """The subtrees of ``tree`` that sit where ``treedef`` has leaves (``treedef`` must be a
    prefix of ``tree``'s structure). Raises ValueError naming where they differ."""
    out = []
    _up_to(treedef, tree, out, (), what)
    return out


def _up_to(treedef, x, out, path, what):
    node = treedef.node
    if node is None:
        out.append(x)
        return
    mine = _node_of(x)
    if mine is None or mine.type is not node.type:
        raise ValueError(f"{what}{keystr(path) or ''} is {_kind(x)} where {treedef} "
                         f"expects {node.name}")
    children, aux, keys = mine.flatten(x)
    if aux != treedef.aux or len(children) != len(treedef.children):
        raise ValueError(f"{what}{keystr(path)}: {tree_structure(x)} does not match "
                         f"{treedef}")
    keys = keys or _index_keys(len(children))
    for c, k, sub in zip(children, keys, treedef.children):
        _up_to(sub, c, out, path + (k,), what)


def _kind(x):
    node = _node_of(x)
    return "a leaf" if node is None else f"a {node.name}"


def tree_map(f, tree, *rest, is_leaf=None):
    """``f`` applied leaf by leaf: ``f(leaf, *matching leaves of rest)`` in ``tree``'s
    structure. Each of ``rest`` has ``tree``'s structure or has it as a prefix (then ``f`` gets
    the subtree there)."""
    leaves, treedef = tree_flatten(tree, is_leaf)
    others = [flatten_up_to(treedef, r, "tree_map argument") for r in rest]
    return tree_unflatten(treedef, [f(*xs) for xs in zip(leaves, *others)])


def tree_flatten_with_path(tree, is_leaf=None):
    """``([(key path, leaf), ...], treedef)``; a key path is a tuple of keys, ``keystr`` turns
    it into text."""
    leaves, treedef = tree_flatten(tree, is_leaf)
    return list(zip(leaf_paths(treedef), leaves)), treedef


def leaf_paths(treedef):
    """The key path of every leaf of ``treedef``, in leaf order."""
    out = []

    def walk(t, path):
        if t.node is None:
            out.append(path)
            return
        if t.node is _NONE:
            return
        for c, k in zip(t.children, t.keys or _index_keys(len(t.children))):
            walk(c, path + (k,))
    walk(treedef, ())
    return out
