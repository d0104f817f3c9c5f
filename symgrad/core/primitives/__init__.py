"""Every primitive symgrad knows, registered on import: importing this package alone gives the
complete registry. See ``symgrad.core.primitive`` for the record."""
from symgrad.core.primitives import (  # noqa: F401  (each module registers its records)
    complex, cumulative, elementwise, guard, linalg, numeric, scan, sorting, special, structural,
    while_count)
from symgrad.core.primitive import REGISTRY, Primitive, bind

__all__ = ["REGISTRY", "Primitive", "bind"]
