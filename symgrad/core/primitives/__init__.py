"""Every primitive symgrad knows, registered on import. See ``registry`` for the record."""
from symgrad.core.primitives import elementwise, structural  # noqa: F401  (registration side effects)
from symgrad.core.primitive import REGISTRY, Primitive, bind

__all__ = ["REGISTRY", "Primitive", "bind"]
