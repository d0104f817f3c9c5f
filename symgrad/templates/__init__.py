"""The Jinja templates of everything symgrad writes (C modules, headers, the AOT loader, the
inspect report), and the one environment that renders them.

jinja2 is imported, and the environment made, on the first render: a process that finds its
compiled code in the disk cache renders nothing.

Templates hold layout only: they get names, signatures and pre-rendered statements, never an
expression to build. Undefined variables are errors (``StrictUndefined``); HTML templates
(``*.html.j2``) are autoescaped, C and Python ones are not.
"""
from __future__ import annotations

from pathlib import Path

import functools

TEMPLATE_DIR = Path(__file__).resolve().parent


def _autoescape(name):
    return name is not None and name.endswith(".html.j2")


@functools.cache
def environment():
    """The one Jinja environment of these templates, made on first use."""
    import jinja2
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
        trim_blocks=True, lstrip_blocks=True, autoescape=_autoescape)


def render(template, /, **context):
    """Render ``template`` (a file name in this folder) with ``context``."""
    return environment().get_template(template).render(**context)
