"""The core: the typed graph and everything that rewrites it.

``types`` and ``dims`` (dtypes, shapes, run-time sizes), ``ir`` (the SSA graph and its printer),
``primitive`` (the record a primitive is, and ``bind``), ``primitives/`` (every record), ``ops``
(typed helpers derivative rules are written in), ``autodiff`` (reverse and forward mode as graph
transforms) and ``passes`` (CSE, DCE, folding). Nothing here imports the front end, a backend or
a tool.
"""
