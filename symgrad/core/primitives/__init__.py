"""Every primitive symgrad knows, registered on import. See ``registry`` for the record."""
from symgrad.core.primitives import (complex, elementwise, numeric, special,  # noqa: F401
                                     structural)
from symgrad.core.primitive import REGISTRY, Primitive, bind

__all__ = ["REGISTRY", "Primitive", "bind"]
