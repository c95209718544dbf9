"""Presentation timestamps for decoded frames: FFmpeg's best-effort rule, then strictly increasing.

A decoder hands back each frame with two candidate times: ``frame.pts`` (the packet pts the
decoder reordered along with the pictures) and ``frame.dts`` (the dts of the packet that made the
decoder return it). Usually the two agree, or pts is right and dts lags it. Some streams get
pts wrong: MPEG-4 Part 2 in AVI with DivX "packed B-frames" (a P and a B VOP in one chunk, then a
"not coded" N-VOP chunk) gives pts 1, 2, 3, 5, 4, 6, 8, 7 ... while dts runs 1, 2, 3, 4, 5 ... in
display order. FFmpeg's answer is ``best_effort_timestamp`` (libavcodec/decode.c,
``guess_correct_pts``), which PyAV does not expose: count the frames whose pts, resp. dts, fails
to increase, and take pts unless it is missing or has more such faults than dts.

That rule only learns of a bad pts one frame late: the first out-of-order pair (5, 4) charges the
fault to the second frame, after the first has already gone out with 5 (FFmpeg's own rule gives
Megamind.avi 1, 2, 3, 5, 5, 6 ...). So a frame whose pts and dts disagree is held back until the
next frame has been counted: one frame of delay for such frames only, none where pts == dts or
one is missing (an RTSP camera's H.264, most files). Last resort, for streams where neither can
be trusted: a timestamp that does not increase becomes ``last + 1`` (encoders refuse it) and a
frame with neither becomes ``last + step`` (one frame duration), 0 for the first.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Generic, TypeVar

__all__ = ["FrameTimes"]

T = TypeVar("T")


class FrameTimes(Generic[T]):
    """Chooses each frame's presentation timestamp; frames go in and come out in decode order.

    ``push(pts, dts, item)`` returns the ``(timestamp, item)`` pairs now decided (none, one, or
    the held frame and this one); ``flush()`` returns the held one at the end of the stream.

    Args:
        step: one frame duration in time-base units, for frames with neither pts nor dts.
    """

    def __init__(self, step: int = 1):
        self.step = step
        self.faulty_pts = 0  # FFmpeg's pts_correction_num_faulty_pts
        self.faulty_dts = 0
        self._last_pts: int | None = None  # pts_correction_last_pts (None: INT64_MIN)
        self._last_dts: int | None = None
        self._held: tuple[int | None, int | None, T] | None = None
        self.last: int | None = None  # the last timestamp handed out

    @classmethod
    def for_rate(cls, frame_rate: Fraction | None, time_base: Fraction) -> FrameTimes:
        """A chooser whose step is one frame duration at ``frame_rate`` (1 when unknown)."""
        return cls(max(1, round(1 / (frame_rate * time_base))) if frame_rate else 1)

    @property
    def holding(self) -> bool:
        """A decoded frame is held back, waiting for the next one (or :meth:`flush`)."""
        return self._held is not None

    def _count(self, pts: int | None, dts: int | None) -> None:
        """guess_correct_pts's bookkeeping, line for line."""
        if dts is not None:
            self.faulty_dts += self._last_dts is not None and dts <= self._last_dts
            self._last_dts = dts
        elif pts is not None:
            self._last_dts = pts
        if pts is not None:
            self.faulty_pts += self._last_pts is not None and pts <= self._last_pts
            self._last_pts = pts
        elif dts is not None:
            self._last_pts = dts

    def _decide(self, pts: int | None, dts: int | None, item: T) -> tuple[int, T]:
        if pts is not None and (dts is None or self.faulty_pts <= self.faulty_dts):
            ts = pts
        else:
            ts = dts
        if ts is None:
            ts = 0 if self.last is None else self.last + self.step
        elif self.last is not None and ts <= self.last:
            ts = self.last + 1
        self.last = ts
        return ts, item

    def push(self, pts: int | None, dts: int | None, item: T) -> list[tuple[int, T]]:
        """Count one decoded frame; return the frames whose timestamp is now decided."""
        self._count(pts, dts)
        out = []
        if self._held is not None:  # decided with the faults of the frame after it counted
            out.append(self._decide(*self._held))
            self._held = None
        if pts is not None and dts is not None and pts != dts:
            self._held = (pts, dts, item)
        else:  # both rules give the same time: no need to wait
            out.append(self._decide(pts, dts, item))
        return out

    def flush(self) -> list[tuple[int, T]]:
        """The end of the stream: the held frame, if any."""
        if self._held is None:
            return []
        held, self._held = self._held, None
        return [self._decide(*held)]
