"""Every primitive symgrad knows, registered on import. See ``registry`` for the record."""
from symgrad.core.primitives import elementwise, numeric, special, structural  # noqa: F401
from symgrad.core.primitive import REGISTRY, Primitive, bind

__all__ = ["REGISTRY", "Primitive", "bind"]
