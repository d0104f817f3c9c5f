"""Tools built on the pipeline: ``check`` (gradient checks), ``inspect`` (graph, adjoint and C
side by side), ``aot`` (ahead-of-time C libraries), ``cli`` (the ``symgrad`` command), ``demo``."""
