"""Pictures for the pages: PNG and JPEG encoding with PyAV (FFmpeg's own encoders, so no imaging
library is needed), RGB views of decoded or encoder-ready frames, and a byte-bounded cache."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import av
import numpy as np

from ..frames import ColourTags
from ..swscale import RESIZE_FLAGS, SWS_FLAGS, to_rgb

__all__ = ["ByteLRU", "detached", "encode_jpeg", "encode_png", "frame_rgb"]


def _encode(codec: str, frame: av.VideoFrame, options: dict[str, str] | None = None) -> bytes:
    cc = av.CodecContext.create(codec, "w")
    cc.width, cc.height, cc.pix_fmt = frame.width, frame.height, frame.format.name
    cc.time_base = Fraction(1, 25)
    if options:
        cc.options = options
    packets = list(cc.encode(frame)) + list(cc.encode(None))
    return b"".join(bytes(p) for p in packets)


def encode_png(rgb: np.ndarray) -> bytes:
    """A lossless PNG file of an H×W×3 uint8 RGB image.

    Args:
        rgb: the image.
    """
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype=np.uint8), format="rgb24")
    return _encode("png", frame)


def encode_jpeg(rgb: np.ndarray, max_width: int | None = None, quality: int = 4) -> bytes:
    """A JPEG file of an H×W×3 uint8 RGB image (a dashboard snapshot).

    Args:
        rgb: the image.
        max_width: shrink (Lanczos) to at most this width, keeping the aspect ratio.
        quality: FFmpeg's MJPEG quantiser scale, 2 (best) to 31.
    """
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb, dtype=np.uint8), format="rgb24")
    width, height = frame.width, frame.height
    if max_width is not None and width > max_width:
        width, height = max_width, max(2, round(height * max_width / width))
    width, height = width + width % 2, height + height % 2  # 4:2:0
    flags = SWS_FLAGS if (width, height) == (frame.width, frame.height) else RESIZE_FLAGS
    yuv = frame.reformat(width=width, height=height, format="yuvj420p", interpolation=flags)
    return _encode("mjpeg", yuv, {"qmin": str(quality), "qmax": str(quality)})


def frame_rgb(frame: av.VideoFrame, colour: ColourTags | None = None) -> np.ndarray:
    """H×W×3 uint8 RGB of a frame, converted as a player converts it: with the frame's matrix and
    range (``colour``; None: the tags the frame carries, unspecified ones guessed as a run does).

    Args:
        frame: a decoded frame or one made for the encoder.
        colour: its colour tags.
    """
    if frame.format.name == "rgb24":
        return frame.to_ndarray()
    if colour is None:
        colour = ColourTags.resolve(int(frame.colorspace), int(frame.color_range), 2, 2, frame.height,
                                    frame.format.name)
    return to_rgb(frame, colour)


def detached(frame: av.VideoFrame) -> av.VideoFrame:
    """A copy of ``frame`` with pixels of its own, safe to convert while other threads use the
    original: PyAV's ``reformat`` keeps one swscale context per frame and, while it converts
    (without the GIL), changes the source frame's colour tags for a moment; so a frame a pipeline
    thread may be converting is only ever read (its planes copied), never converted, here.

    Args:
        frame: a decoded frame, or one made for the encoder (software formats).

    Raises:
        ValueError: a pixel format PyAV cannot copy through numpy.
    """
    copy = av.VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    copy.pts = None
    return copy


class ByteLRU:
    """A thread-safe least-recently-used cache bounded by the bytes its values hold.

    Args:
        max_bytes: the bound; the oldest entries are evicted past it (one value larger than the
            bound is returned but not kept).
        size_of: the bytes of a value (``len`` for bytes, ``nbytes`` for arrays).
    """

    def __init__(self, max_bytes: int, size_of: Callable[[Any], int] | None = None):
        self.max_bytes = max_bytes
        self.size_of = size_of or (lambda v: v.nbytes if hasattr(v, "nbytes") else len(v))
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any | None:
        """The value of ``key`` (now the most recently used), or None.

        Args:
            key: what it was kept under.
        """
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Any, value: Any) -> Any:
        """Keep ``value`` under ``key``, evicting the least recently used past the bound; returns it.

        Args:
            key: a hashable name.
            value: bytes or an array.
        """
        size = self.size_of(value)
        with self._lock:
            if key in self._items:
                self._bytes -= self.size_of(self._items.pop(key))
            if size <= self.max_bytes:
                self._items[key] = value
                self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= self.size_of(old)
        return value

    @property
    def nbytes(self) -> int:
        """Bytes held now."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)
