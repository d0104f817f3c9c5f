"""Running the user's own Python files (``symgrad build SPEC.py``, ``symgrad inspect FILE.py``)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def import_file(path, module_name=None):
    """Execute the Python file ``path`` as a fresh module and return it. Its folder is on
    ``sys.path`` while it runs, so it can import its neighbours."""
    path = Path(path)
    spec = importlib.util.spec_from_file_location(module_name or path.stem, path)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, str(path.parent.resolve()))
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path.pop(0)
    return module
