"""Backends that run graphs natively: C rendering (codegen), compiling (compiler), the on-disk
cache (cache) and loading/calling through cffi (native)."""
