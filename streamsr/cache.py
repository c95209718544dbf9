"""Where streamsr keeps what it builds and can build again: the user's cache folder.

TensorRT engines (and any other cache, such as exported graphs) are written under one root,
never into the installed package:

1. ``$STREAMSR_CACHE_DIR`` when set (a checkout can point it at itself: engines then go to its
   ``engines/`` folder);
2. else ``$XDG_CACHE_HOME/streamsr`` when ``XDG_CACHE_HOME`` is an absolute path (the XDG base
   directory rules ignore a relative one);
3. else ``~/.cache/streamsr``.

The environment is read on every call, not at import time, so a changed variable applies at once.
Nothing is created here; writers make the folder they write into, through :func:`write_atomic`, so
a reader (another run started at the same moment) sees the old file or the new one, never half a
file.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir", "cache_root", "write_atomic"]

#: the environment variable that moves the whole cache
CACHE_ENV = "STREAMSR_CACHE_DIR"


def cache_root() -> Path:
    """The folder every streamsr cache lives under (see the module docstring for the order)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "streamsr"
    return Path.home() / ".cache" / "streamsr"


def cache_dir(kind: str) -> Path:
    """One cache's folder under the root.

    Args:
        kind: the cache's name, e.g. ``"engines"`` (TensorRT engines and the timing cache).
    """
    return cache_root() / kind


def write_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that no reader ever sees a partial file: into a temporary file
    in the same folder (created if missing), flushed to disk, then renamed over ``path``
    (``os.replace`` is atomic on one file system). Concurrent writers of the same bytes are
    harmless: the last rename wins.

    Args:
        path: the file to (re)place.
        data: its new content.

    Raises:
        OSError: the folder cannot be created or written (the temporary file is removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # a unique name opened exclusively (not mkstemp, whose 0600 would ignore the user's umask)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    try:
        with open(tmp, "xb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
