"""The on-disk cache of compiled libraries, keyed by content.

Layout: ``<cache_dir>/<key>/`` holds ``module.c`` (the source, so compiler messages and debuggers
point at real lines), the library ``module-<build id>.so`` and ``manifest.json`` (key, symgrad
version, compiler, flags, the library's file name and sha256). Each build names its library
afresh: the dynamic loader keeps a library by path, so a rebuilt entry must not reuse the path
of one a process may still have loaded. The key is a sha256 of the C source, the compiler's identity, the flags and
the symgrad version: change any of them and it is a different entry, with no version to bump.

Writes are atomic: an entry is built in a temporary directory beside it and renamed into place.
Several processes building the same entry at once all succeed; the first rename wins and the
others use it. An entry whose library does not match its manifest's checksum is rebuilt.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from ..errors import CompileError

MANIFEST = "manifest.json"
SOURCE = "module.c"


def default_cache_dir():
    """$SYMGRAD_CACHE_DIR, else $XDG_CACHE_HOME/symgrad, else ~/.cache/symgrad."""
    if os.environ.get("SYMGRAD_CACHE_DIR"):
        return Path(os.environ["SYMGRAD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symgrad"


def cache_key(source, compiler, flags, version):
    h = hashlib.sha256()
    for part in (source, compiler, " ".join(flags), version):
        h.update(part.encode())
        h.update(b"\0")
    return h.hexdigest()


def _sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Cache:
    def __init__(self, root=None):
        self.root = Path(root) if root is not None else default_cache_dir()

    def entry(self, key):
        return self.root / key[:40]

    def lookup(self, key):
        """The library path of a valid entry for ``key``, or None."""
        d = self.entry(key)
        try:
            manifest = json.loads((d / MANIFEST).read_text())
            lib = d / os.path.basename(manifest["library"])
            if manifest.get("key") == key and manifest.get("library_sha256") == _sha256(lib):
                return lib
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return None

    def build(self, key, source, compile_fn, info):
        """Build the entry for ``key`` with ``compile_fn(src_path, lib_path)``; return lib path."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".build-", dir=self.root))
        try:
            src, lib = tmp / SOURCE, tmp / f"module-{uuid.uuid4().hex[:12]}.so"
            src.write_text(source)
            try:
                compile_fn(src, lib)
            except CompileError as e:
                # Keep the failing source where the error message says it is.
                failed = self.root / f"failed-{key[:16]}"
                shutil.rmtree(failed, ignore_errors=True)
                os.rename(tmp, failed)
                raise CompileError(str(e).splitlines()[0], command=e.command, stderr=e.stderr,
                                   source_path=str(failed / SOURCE)) from None
            manifest = dict(info, key=key, library=lib.name, library_sha256=_sha256(lib),
                            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            final = self.entry(key)
            if final.exists() and self.lookup(key) is None:
                shutil.rmtree(final, ignore_errors=True)     # a broken entry: replace it
            try:
                os.rename(tmp, final)
            except OSError:
                if self.lookup(key) is None:                 # lost the race to a broken entry
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return self.lookup(key)
