"""Which URL schemes the FFmpeg inside PyAV can read and write.

PyAV's wheels bundle their own FFmpeg, whose protocol list differs from a system FFmpeg's (the
PyPI wheels have rtmp, udp, tcp and http but no srt, for one). Asking FFmpeg up front turns a
missing protocol into one clear error before the model loads, instead of an "encoding failed" at
the first frame or, for a live input, endless reconnection attempts.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import glob
import os

from ..errors import ConfigError
from ..urls import url_scheme

__all__ = ["check_protocol", "ffmpeg_protocols"]

# schemes FFmpeg handles as formats (demuxer/muxer), not as protocols
_FORMAT_SCHEMES = {"rtsp", "rtsps", "file"}


def _libavformat() -> ctypes.CDLL | None:
    """The libavformat PyAV has loaded (found in this process's memory map), else a system one."""
    import av  # loads the libavformat found below

    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "libavformat" in line and "/" in line}
    except OSError:  # not Linux
        paths = set()
    paths |= set(glob.glob(os.path.join(os.path.dirname(av.__file__), os.pardir, "av.libs", "libavformat*")))
    system = ctypes.util.find_library("avformat")
    for path in sorted(paths) + ([system] if system else []):
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


@functools.cache
def ffmpeg_protocols(output: bool) -> frozenset[str] | None:
    """FFmpeg's input (or output) protocols, or None where its library can't be asked."""
    lib = _libavformat()
    if lib is None or not hasattr(lib, "avio_enum_protocols"):
        return None
    enum = lib.avio_enum_protocols
    enum.restype = ctypes.c_char_p
    enum.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
    opaque, names = ctypes.c_void_p(), set()
    while (name := enum(ctypes.byref(opaque), int(output))) is not None:
        names.add(name.decode())
    return frozenset(names)


def check_protocol(target: str, output: bool) -> None:
    """Refuse a URL whose scheme this FFmpeg can't read (or write).

    Raises:
        ConfigError: naming the scheme and what to do instead.
    """
    scheme = url_scheme(target)
    if scheme is not None and not target.startswith(f"{scheme}://"):  # FFmpeg knows protocols by their lower-case names
        raise ConfigError(f"write the URL's scheme in lower case: {scheme}://, not {target.split('://', 1)[0]}://")
    if scheme is None or scheme in _FORMAT_SCHEMES:
        return
    known = ffmpeg_protocols(output)
    if known is None or scheme in known:
        return
    hint = (" (PyAV's wheels are built without libsrt; use a PyAV built against an FFmpeg with SRT, "
            "`pip install av --no-binary av`, or rtsp/rtmp/udp instead)") if scheme == "srt" else ""
    raise ConfigError(f"the FFmpeg inside PyAV cannot {'write' if output else 'read'} {scheme}:// URLs{hint}")
