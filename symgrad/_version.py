"""symgrad's version, in a module of its own so that code below the package (the C cache key, AOT
manifests) can read it without importing the package."""
__version__ = "0.1.0"
