"""Backends: what runs a graph. The NumPy interpreter (``interp``) and native C (``c``)."""
