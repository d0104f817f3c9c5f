"""The Jinja templates of everything symgrad writes (C modules, headers, the AOT loader, the
inspect report), and the one environment that renders them.

jinja2 is imported, and the environment made, on the first render: a process that finds its
compiled code in the disk cache renders nothing. Jinja compiles each template to Python code the
first time a process loads it (~10 ms for a module's templates, on every cold build); that code is
kept beside the templates in ``__pycache__``, as Python keeps the bytecode of the package's
modules, and checked against the template's source when loaded (``_PackageBytecodeCache``).

Templates hold layout only: they get names, signatures and pre-rendered statements, never an
expression to build. Undefined variables are errors (``StrictUndefined``); HTML templates
(``*.html.j2``) are autoescaped, C and Python ones are not.
"""
from __future__ import annotations

import functools
import os
from pathlib import Path

TEMPLATE_DIR = Path(__file__).resolve().parent


def _autoescape(name):
    return name is not None and name.endswith(".html.j2")


BYTECODE_DIR = TEMPLATE_DIR / "__pycache__"


@functools.cache
def _bytecode_cache(directory=BYTECODE_DIR):
    """Jinja's compiled templates, kept in ``directory``: the package's own folder, trusted
    as its ``.py`` files are (whoever can write there can change symgrad's code already), never
    a shared or temporary one, since loading a cached template runs its code. Jinja checks each
    entry against the template's source and its own version. A folder that cannot be read or
    written makes no difference but the time: the template is compiled in memory, as without a
    cache."""
    import jinja2

    class _PackageBytecodeCache(jinja2.FileSystemBytecodeCache):
        def load_bytecode(self, bucket):
            try:
                super().load_bytecode(bucket)
            except OSError:
                bucket.reset()

        def dump_bytecode(self, bucket):
            try:
                os.makedirs(self.directory, exist_ok=True)
                super().dump_bytecode(bucket)
            except OSError:
                pass

    return _PackageBytecodeCache(str(directory), "jinja2-%s.cache")


@functools.cache
def environment():
    """The one Jinja environment of these templates, made on first use."""
    import jinja2
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True, autoescape=_autoescape,
        bytecode_cache=_bytecode_cache())


def render(template, /, **context):
    """Render ``template`` (a file name in this folder) with ``context``."""
    return environment().get_template(template).render(**context)
