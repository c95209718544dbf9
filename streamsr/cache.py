"""Where streamsr keeps what it builds and can build again: the user's cache folder.

TensorRT engines (and any other cache, such as exported graphs) are written under one root,
never into the installed package:

1. ``$STREAMSR_CACHE_DIR`` when set (a checkout can point it at itself: engines then go to its
   ``engines/`` folder);
2. else ``$XDG_CACHE_HOME/streamsr`` when ``XDG_CACHE_HOME`` is an absolute path (the XDG base
   directory rules ignore a relative one);
3. else ``~/.cache/streamsr``.

The environment is read on every call, not at import time, so a changed variable applies at once.
Nothing is created here; writers make the folder they write into.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_ENV", "cache_dir", "cache_root"]

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
