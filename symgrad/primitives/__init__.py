"""Every primitive symgrad knows, registered on import. See ``registry`` for the record."""
from . import elementwise, scan, structural  # noqa: F401  (registration side effects)
from .registry import REGISTRY, Primitive, bind

__all__ = ["REGISTRY", "Primitive", "bind"]
