"""The on-disk cache of compiled libraries, keyed by content.

Layout: ``<cache_dir>/<key>/`` holds ``module.c`` (the source, so compiler messages and debuggers
point at real lines), the library ``module-<build id>.so`` and ``manifest.json`` (key, symgrad
version, compiler, flags, the library's file name and sha256). Each build names its library
afresh: the dynamic loader keeps a library by path, so a rebuilt entry must not reuse the path
of one a process may still have loaded. The key is a sha256 of the C source, the compiler's
identity (which names the BLAS a JIT build links, and its version), the flags (with or without
``-DSYMGRAD_USE_BLAS``) and the symgrad version: change any of them and it is a different entry,
with no version to bump.

Writes are atomic: an entry is built in a temporary directory beside it and renamed into place.
Several processes building the same entry at once all succeed; the first rename wins and the
others use it. An entry whose manifest does not parse, names another key, or whose library does
not match the manifest's checksum (truncated, overwritten) is moved aside and rebuilt.

Where the cache may live. symgrad loads and runs the libraries it finds there, so a directory
someone else can write into is a way to run their code in our process. The cache directory
must therefore be owned by the current user and not writable by group or others; the sticky
bit does not make a shared directory acceptable (others could still create the entry for a key
before we do). A directory that fails this check is never read. We chose to *warn and fall
back* rather than raise: the cache is an optimization, so ``symgrad`` keeps working, building
into a private temporary directory (``mkdtemp``, mode 0700, one per process, removed at exit)
and saying with ``warnings.warn`` which directory was refused and why. The same fallback, with
the same kind of warning naming the OS error, covers a cache directory we cannot write
(read-only, permission denied) and any OS error while writing an entry (a full disk:
``ENOSPC``). A compiler failure is not a cache problem and raises ``CompileError`` as usual.
A safe directory we cannot write is still read: its valid entries are used without a warning.
Only the directory itself is checked, not its parents (a parent writable by others could swap
it; ``~/.cache`` and a ``mkdtemp`` directory are fine).
"""
from __future__ import annotations

import atexit
import errno
import hashlib
import json
import os
import shutil
import stat
import sys
import tempfile
import threading
import time
import uuid
import warnings
from pathlib import Path

from symgrad.errors import CompileError

MANIFEST = "manifest.json"
SOURCE = "module.c"


def default_cache_dir():
    """$SYMGRAD_CACHE_DIR, else $XDG_CACHE_HOME/symgrad, else ~/.cache/symgrad."""
    if os.environ.get("SYMGRAD_CACHE_DIR"):
        return Path(os.environ["SYMGRAD_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "symgrad"


def _entries(root):
    """The directories of ``root`` that symgrad made: entries (named by 40 hex digits of their
    key), builds in progress or abandoned, failed builds and broken entries moved aside. Nothing
    else in ``root`` counts as the cache's."""
    try:
        children = list(Path(root).iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    ours = []
    for child in children:
        name = child.name
        key_like = len(name) == 40 and all(c in "0123456789abcdef" for c in name)
        if child.is_dir() and not child.is_symlink() and (
                key_like or name.startswith((".build-", "failed-", ".broken-"))):
            ours.append(child)
    return sorted(ours)


def usage(root=None):
    """``(path, entries, bytes)`` of the cache at ``root`` (default: ``default_cache_dir()``):
    how many compiled entries it holds and the bytes of everything symgrad wrote there."""
    root = Path(root) if root is not None else default_cache_dir()
    entries, total = 0, 0
    for d in _entries(root):
        entries += len(d.name) == 40
        for dirpath, _, files in os.walk(d):
            for f in files:
                try:
                    total += os.lstat(os.path.join(dirpath, f)).st_size
                except OSError:
                    pass
    return root, entries, total


def clear(root=None):
    """Delete what symgrad wrote into the cache at ``root`` (default: ``default_cache_dir()``);
    return ``(path, entries removed, bytes freed)``. Only symgrad's own directories are
    removed (see ``_entries``), so a cache directory set to a folder holding other files keeps
    them. A process that has a library of the cache loaded keeps it (the file stays mapped);
    its next new specialization compiles afresh."""
    root, entries, total = usage(root)
    for d in _entries(root):
        shutil.rmtree(d, ignore_errors=True)
    return root, entries, total


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


_private = None
_private_lock = threading.Lock()


def private_cache_dir():
    """This process's fallback cache: a fresh 0700 temporary directory, removed at exit."""
    global _private
    with _private_lock:
        if _private is None:
            _private = Path(tempfile.mkdtemp(prefix="symgrad-cache-"))
            atexit.register(shutil.rmtree, _private, ignore_errors=True)
        return _private


def insecure_reason(path):
    """Why ``path`` must not hold a cache we load code from, or None if it may.

    A missing directory is fine (we create it, mode 0700). Otherwise it must be a directory
    owned by us and not writable by group or others.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"cannot stat it ({e.strerror or e})"
    if not stat.S_ISDIR(st.st_mode):
        return "it is not a directory"
    if hasattr(os, "geteuid") and st.st_uid != os.geteuid():
        return f"it is owned by uid {st.st_uid}, not by this user (uid {os.geteuid()})"
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (f"it is writable by group or others (mode {stat.S_IMODE(st.st_mode):#o}), so "
                f"anyone could plant a library symgrad would load")
    return None


def _user_stacklevel():
    """The ``stacklevel`` that makes a warning from our caller point at the user's code."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(package + os.sep):
        frame, level = frame.f_back, level + 1
    return level


class Cache:
    """One cache directory. ``root`` may change to the private fallback (see the module doc)."""

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self._check_root()

    def _check_root(self):
        """Switch to the private fallback if the cache directory is unsafe to load from.

        Run again before every read and after creating the directory: it may have been created
        or changed by someone else since."""
        reason = insecure_reason(self.root)
        if reason is not None:
            self._fall_back(f"refusing cache directory {self.root}: {reason}")

    def _fall_back(self, problem):
        private = private_cache_dir()
        warnings.warn(f"symgrad: {problem}; compiling into the private temporary directory "
                      f"{private} instead (set SYMGRAD_CACHE_DIR or cache_dir= to a directory "
                      f"only you can write)", RuntimeWarning, stacklevel=_user_stacklevel())
        self.root = private

    def entry(self, key):
        return self.root / key[:40]

    def discard(self, key):
        """Remove the entry for ``key`` (moved aside atomically first, as ``_publish`` does with
        a broken one), so that the next ``build`` makes it anew."""
        self._move_aside(self.entry(key))

    def _move_aside(self, final):
        """Delete the entry directory ``final``, first renamed atomically out of the way (so no
        reader ever sees it half deleted); nothing when it is already gone."""
        trash = self.root / f".broken-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(final, trash)
        except FileNotFoundError:
            return
        shutil.rmtree(trash, ignore_errors=True)

    def lookup(self, key):
        """The library path of a valid entry for ``key``, or None."""
        found = self.read(key)
        return None if found is None else found[0]

    def read(self, key):
        """``(library path, manifest)`` of a valid entry for ``key``, or None."""
        self._check_root()
        d = self.entry(key)
        try:
            manifest = json.loads((d / MANIFEST).read_text())
            lib = d / os.path.basename(manifest["library"])
            if manifest.get("key") == key and manifest.get("library_sha256") == _sha256(lib):
                return lib, manifest
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            pass
        return None

    def build(self, key, source, compile_fn, info):
        """Build the entry for ``key`` with ``compile_fn(src_path, lib_path)``; return lib path.
        ``info``: the manifest's fields, or a function returning them, called once the compile
        is done (work that can run meanwhile).

        Falls back to the private cache (with a warning) when the cache directory cannot be
        written. Raises CompileError when the compiler fails, OSError when even the private
        directory cannot be written.
        """
        if self.root != _private:
            try:
                self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
                self._check_root()                  # someone else may have created it
                if self.root != _private and not os.access(self.root, os.W_OK | os.X_OK):
                    raise PermissionError(errno.EACCES, "no write permission")
                return self._build(key, source, compile_fn, info)
            except CompileError:
                raise
            except OSError as e:
                self._fall_back(f"cannot write the cache directory {self.root} "
                                f"({e.strerror or e})")
        return self._build(key, source, compile_fn, info)

    def _build(self, key, source, compile_fn, info):
        # Another process may publish, or move aside as broken, the entry while we build ours;
        # a few rounds settle every interleaving (see _publish).
        for _ in range(3):
            lib = self._build_once(key, source, compile_fn, info)
            if lib is not None:
                return lib
        raise OSError(f"could not publish cache entry {self.entry(key)}: other processes keep "
                      f"replacing it")

    def _build_once(self, key, source, compile_fn, info):
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
            manifest = dict(info() if callable(info) else info, key=key, library=lib.name,
                            library_sha256=_sha256(lib),
                            created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
            return self._publish(key, tmp)
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def _publish(self, key, tmp):
        """Rename the built directory ``tmp`` into place; the valid entry's library, or None."""
        final = self.entry(key)
        for _ in range(5):
            lib = self.lookup(key)
            if lib is not None:
                return lib                  # ours, or another process won the race
            if final.exists():              # broken: move it aside atomically, then delete
                self._move_aside(final)
            if not tmp.exists():
                return None                 # ours was published, then moved aside: rebuild
            try:
                os.rename(tmp, final)
            except OSError:
                pass                        # someone published first; check it next round
        return self.lookup(key)
