"""The front end: what turns a user's Python function into a Graph.

``tracer`` (the traced array, ``Tracer``), ``tracing`` (running a function on Tracers), ``loops``
(``fori_loop``/``scan``) and ``transforms`` (derivatives taken inside a trace). The NumPy mirror
users call lives in ``symgrad.numpy`` and ``symgrad.nn``, its public paths.
"""
