"""Every primitive symgrad knows, registered on import: importing this package alone gives the
complete registry. See ``symgrad.core.primitive`` for the record."""
from symgrad.core.primitives import (elementwise, numeric, scan, special,  # noqa: F401
                                     structural)
from symgrad.core.primitives import cumulative, linalg, sorting  # noqa: F401
from symgrad.core.primitive import REGISTRY, Primitive, bind

__all__ = ["REGISTRY", "Primitive", "bind"]
