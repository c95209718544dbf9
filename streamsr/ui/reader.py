"""Random access to the frames of a video file, numbered as a run numbers them.

A run numbers frames in the order its :class:`~streamsr.io.source.Source` delivers them (display
order, after FFmpeg's best-effort timestamps). The reader keeps one Source open and decodes
forward; recent frames are kept, so stepping back a few frames costs nothing, and a jump further
back decodes again from the start (simple and exact, where seeking to a keyframe would have to
reproduce the Source's timestamp rules; preview clips are short).
"""

from __future__ import annotations

import os
import threading
from typing import Self

import av

from ..errors import MediaError
from ..frames import Frame, VideoInfo
from ..io.source import Source
from .images import ByteLRU

__all__ = ["FrameReader"]


class FrameReader:
    """Frame ``n`` of a file on demand; thread-safe (but a frame it returns must not be converted
    by two threads at once: see :func:`~streamsr.ui.images.detached`).

    Args:
        path: the video file.
        decode_threads: decoder threads (0 = FFmpeg chooses), as the run's.
        hwaccel: the hardware device type a run would decode on (None: the CPU).
        keep: how many recent decoded frames are kept.

    Attributes:
        info: the video stream's :class:`VideoInfo`.
        count: the number of frames (the video packets in the file; corrected when decoding
            reaches the end).

    Raises:
        StreamSRError subclasses: the file is missing, empty or not a video.
    """

    def __init__(self, path: str | os.PathLike, *, decode_threads: int = 0, hwaccel: str | None = None,
                 keep: int = 16):
        self.path = os.fspath(path)
        self._options = {"decode_threads": decode_threads, "hwaccel": hwaccel, "audio": False}
        self._lock = threading.Lock()
        self._kept = ByteLRU(keep, size_of=lambda _: 1)
        self._source: Source | None = None
        self._frames = None
        self._next = 0
        with Source(self.path, **self._options) as source:
            self.info: VideoInfo = source.info
        self.count = self._count_packets()
        if self.count == 0:
            raise MediaError(f"{self.path} has no video frame")

    def _count_packets(self) -> int:
        try:
            with av.open(self.path) as container:
                stream = container.streams.video[0]
                return sum(1 for p in container.demux(stream) if p.size)
        except av.FFmpegError as exc:
            raise MediaError(f"cannot read {self.path}: {exc}") from exc

    def get(self, n: int) -> Frame:
        """Frame ``n`` (from 0), as the run's Source delivers it.

        Args:
            n: the frame's number.

        Raises:
            IndexError: there is no frame ``n``.
        """
        if n < 0 or n >= self.count:
            raise IndexError(f"no frame {n}: the video has {self.count} frames (0 to {self.count - 1})")
        with self._lock:
            kept = self._kept.get(n)
            if kept is not None:
                return kept
            if self._frames is None or n < self._next:
                self._reopen()
            frame = None
            while self._next <= n:
                try:
                    frame = next(self._frames)
                except StopIteration:
                    self.count = self._next
                    raise IndexError(f"no frame {n}: the video ends after {self._next} frames") from None
                self._kept.put(self._next, frame)
                self._next += 1
            return frame

    def _reopen(self) -> None:
        self._close()
        self._source = Source(self.path, **self._options).__enter__()
        self._frames = iter(self._source)
        self._next = 0

    def _close(self) -> None:
        if self._frames is not None:
            self._frames.close()
            self._frames = None
        if self._source is not None:
            self._source.close()
            self._source = None

    def close(self) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            self._close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
