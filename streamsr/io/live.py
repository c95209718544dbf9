"""Live inputs that survive drops: read watchdog, reconnect with exponential backoff, timestamps
that stay monotonic and follow capture time across gaps.

Output timestamps are in 1/90000 s from the first frame of the run. Within one connection they
follow the stream's own pts (the camera's capture clock) anchored to the local clock at the
connection's first frame, the anchor following the camera clock's drift from this one; after a reconnect the new anchor is the local clock, so a 10-second
outage shows as a 10-second gap in the recording, never as a jump back.

Audio (a camera's microphone) is passed through as packets retimed onto the same clock with the
same anchor as the video of their connection, so picture and sound stay in step across
reconnects; packets that arrive before a connection's first video frame (no anchor yet) are
skipped. The output's audio streams are those of the first connection.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import Self

from ..errors import ConfigError, MediaError
from ..frames import Frame, PassThrough, VideoInfo
from ..urls import mask_credentials, url_scheme
from .source import Source

__all__ = ["LIVE_TIME_BASE", "WARN_EVERY", "LiveConfig", "LiveSource"]

log = logging.getLogger("streamsr")

LIVE_TIME_BASE = Fraction(1, 90000)
# A frame whose stream time puts it this far *behind* the local clock is a discontinuity (a stall
# the stream clock did not count, a reset): re-anchor, so the outage shows as a gap. Frames
# *ahead* of it are normal for inputs delivered in bursts (HLS hands over whole segments, often
# 6-10 s): only a jump further ahead than _AHEAD_S is a discontinuity.
_REANCHOR_S = 5.0
#: seconds between two warnings about a camera that cannot be reached
WARN_EVERY = 10.0
_AHEAD_S = 30.0


#: a camera's clock drifts from this machine's (cheap crystals: tens to hundreds of ppm), so the
#: offset between the two, fixed at a connection's first frame, would grow by seconds a day until
#: it passed a limit above and made a fake gap or a jump back. The anchor follows the drift: every
#: _DRIFT_WINDOW_S of stream time it takes the least delay its frames arrived with (bursts and
#: jitter only ever add delay), and moves toward where that went at most _SLEW seconds per
#: second of stream time (twice the worst drift of a camera clock), so frames stay their own
#: interval apart within 0.2 %.
_DRIFT_WINDOW_S = 30.0
_SLEW = 0.002


class _Anchor:
    """A connection's stream time on this machine's clock: from its first frame (stream
    ``stream_t`` arrived at ``now``), then following the stream clock's drift (:data:`_SLEW`)."""

    def __init__(self, stream_t: float, now: float):
        self.offset = self._target = now - stream_t  # local seconds minus stream seconds
        self._base = self.offset
        self._reference: float | None = None  # least delay of the first window
        self._window = (stream_t, math.inf)  # (start, least delay so far)
        self._last = stream_t

    def local(self, stream_t: float) -> float:
        """Local-clock seconds of stream time ``stream_t``."""
        return stream_t + self.offset

    def follow(self, stream_t: float, now: float) -> None:
        """Take one more frame's arrival into the drift estimate and slew toward it."""
        start, least = self._window
        least = min(least, now - stream_t)
        if stream_t - start >= _DRIFT_WINDOW_S:
            if self._reference is None:
                self._reference = least
            self._target = self._base + (least - self._reference)
            start, least = stream_t, math.inf
        self._window = (start, least)
        room = _SLEW * max(stream_t - self._last, 0.0)
        self.offset += min(max(self._target - self.offset, -room), room)
        self._last = stream_t


@dataclass(frozen=True, kw_only=True)
class LiveConfig:
    """How a live input is read.

    Args:
        reconnect: reopen the stream when it drops or stalls.
        reconnect_max_wait: give up when the stream stays away this many seconds (0 = never).
        backoff_initial, backoff_max: first and largest pause between reconnect attempts (doubling).
        open_timeout: seconds a connection attempt may take.
        read_timeout: watchdog: no data for this long counts as a dropped stream.
        rtsp_transport: "tcp" or "udp" for rtsp:// inputs.
    """

    reconnect: bool = True
    reconnect_max_wait: float = 300.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    rtsp_transport: str = "tcp"

    def __post_init__(self) -> None:
        if self.rtsp_transport not in ("tcp", "udp"):
            raise ConfigError(f"--rtsp-transport must be tcp or udp, got {self.rtsp_transport!r}")
        if self.read_timeout <= 0 or self.open_timeout <= 0:
            raise ConfigError("timeouts must be positive")


class LiveSource:
    """A reconnecting live input; iterate it like :class:`Source` (video frames only).

    Args:
        url: stream URL or device.
        config: :class:`LiveConfig`.
        stop: event that ends waiting and reading (set by the runner's stop).
        decode_threads: decoder threads.
        hwaccel: decode on this device type (see :class:`~streamsr.io.source.Source`).
        audio: pass audio packets through (retimed; see the module notes).

    Attributes:
        info: :class:`VideoInfo` of the first connection (time base 1/90000).
        reconnects: successful reconnections so far.
        connect_failures: connection attempts that failed so far (each retry is also logged,
            at most one warning every WARN_EVERY seconds).
        state: "connecting" (not reached yet), "running", or "reconnecting".
        last_error: why the stream last dropped (credentials masked).
        ended_early: why the run had to give up on the stream (it stayed away longer than
            ``reconnect_max_wait``, or dropped with reconnection off); None otherwise.
    """

    def __init__(self, url: str, config: LiveConfig = LiveConfig(), *, stop: threading.Event | None = None,
                 decode_threads: int = 0, hwaccel: str | None = None, audio: bool = False):
        self.url = url
        self.config = config
        self.stop_event = stop or threading.Event()
        self.decode_threads = decode_threads
        self.hwaccel = hwaccel
        self.audio = audio
        self._audio_last: dict[int, int] = {}
        self._audio_ids: set[int] = set()
        self.notices: list[str] = []
        self.reconnects = 0
        self.connect_failures = 0
        self._warned_at: float | None = None
        self.state = "connecting"
        self.last_error: str | None = None
        self.ended_early: str | None = None
        self.frames_decoded = 0
        self.resized_frames = 0
        self._errors_before = 0
        self._corrupt_before = 0
        self._decode_error_before: str | None = None  # FFmpeg's last words on an earlier connection
        self._session: Source | None = None
        self.info: VideoInfo | None = None
        self.audio_streams: list = []
        self._t0: float | None = None
        self._last_pts = -1

    @property
    def name(self) -> str:
        """The URL with credentials masked."""
        return mask_credentials(self.url)

    @property
    def decode_errors(self) -> int:
        """Decode errors over every connection."""
        return self._errors_before + (self._session.decode_errors if self._session else 0)

    @property
    def corrupt_frames(self) -> int:
        """Frames flagged corrupt over every connection."""
        return self._corrupt_before + (self._session.corrupt_frames if self._session else 0)

    @property
    def last_decode_error(self) -> str | None:
        """FFmpeg's words for the latest decode problem."""
        return (self._session.last_decode_error if self._session else None) or self._decode_error_before

    def _options(self) -> dict[str, str]:
        options = {"fflags": "nobuffer"}  # don't hold packets back while probing: lower latency
        if url_scheme(self.url) in ("rtsp", "rtsps"):
            options["rtsp_transport"] = self.config.rtsp_transport
        return options

    def _open(self) -> Source:
        src = Source(self.url, decode_threads=self.decode_threads, options=self._options(), audio=self.audio,
                     timeout=(self.config.open_timeout, self.config.read_timeout),
                     format="v4l2" if self.url.startswith("/dev/video") else None, hwaccel=self.hwaccel,
                     low_delay=True)
        src.__enter__()
        for notice in src.notices:  # once, not once per reconnection
            if notice not in self.notices:
                self.notices.append(notice)
        return src

    def _connect(self) -> Source | None:
        """Open, retrying with backoff until it works, the wait limit passes, or a stop."""
        started = time.monotonic()
        pause = self.config.backoff_initial
        while True:
            try:
                session = self._open()
                self.state = "running"
                return session
            except MediaError as exc:
                self.last_error = str(exc)
                self.connect_failures += 1
                if not self.config.reconnect:
                    raise
            limit = self.config.reconnect_max_wait
            waited = time.monotonic() - started
            if limit and waited >= limit:
                raise MediaError(
                    f"{self.name}: no stream for {waited:.0f}s (limit --reconnect-max-wait {limit:g}s); "
                    f"last error: {self.last_error}"
                )
            if limit:  # the last try comes at the limit, not a backoff pause before it
                pause = min(pause, limit - waited)
            self._warn_retry(pause)
            if self.stop_event.wait(pause):
                return None
            pause = min(pause * 2, self.config.backoff_max)

    def _warn_retry(self, pause: float) -> None:
        """One warning per retry, at most one every :data:`WARN_EVERY` seconds: an unreachable
        camera is said, not retried in silence (messages are masked: they come from MediaError)."""
        now = time.monotonic()
        if self._warned_at is not None and now - self._warned_at < WARN_EVERY:
            return
        self._warned_at = now
        log.warning("%s %s (attempt %d: %s); trying again in %.3g s", self.name,
                    "cannot be reached" if self.frames_decoded == 0 else "is away",
                    self.connect_failures, self.last_error, pause)

    def __enter__(self) -> Self:
        self._session = self._connect()
        if self._session is None:
            raise MediaError(f"{self.name}: stopped before the stream opened")
        i = self._session.info
        self.info = VideoInfo(width=i.width, height=i.height, time_base=LIVE_TIME_BASE, frame_rate=i.frame_rate,
                              frame_count=None, codec=i.codec, pix_fmt=i.pix_fmt, colour=i.colour, duration=None,
                              aspect=i.aspect)
        self.audio_streams = list(self._session.audio_streams)  # for the Sink's set-up only
        self._audio_ids = {st.index for st in self.audio_streams}  # kept: streams die with their connection
        return self

    def _retire(self) -> None:
        if self._session is not None:
            self._errors_before += self._session.decode_errors
            self._corrupt_before += self._session.corrupt_frames
            self._decode_error_before = self._session.last_decode_error or self._decode_error_before
            self._session.close()
            self._session = None

    def close(self) -> None:
        """Close the current connection."""
        self._retire()

    def __exit__(self, *exc) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame | PassThrough]:
        while not self.stop_event.is_set():
            session = self._session
            anchor: _Anchor | None = None
            failure: str | None = None
            try:
                for item in session:
                    if not isinstance(item, Frame):
                        packet = self._retime_audio(item, anchor)
                        if packet is not None:
                            yield packet
                        continue
                    frame, anchor = self._retime(item, anchor)
                    yield frame
                    if self.stop_event.is_set():
                        return
                failure = session.ended_early
            except MediaError as exc:
                failure = str(exc)
            self.last_error = failure or "the stream ended"
            if self.stop_event.is_set():
                return
            if not self.config.reconnect:  # a stream that ends is the end; one that breaks is an error
                self.ended_early = failure
                return
            self._retire()
            self.state = "reconnecting"
            try:
                self._session = self._connect()
            except MediaError as exc:  # gone for good: end the run, keep what was recorded
                self.ended_early = str(exc)
                return
            if self._session is None:
                return
            self.reconnects += 1

    def _retime_audio(self, item: PassThrough, anchor) -> PassThrough | None:
        """Put an audio packet on the run's clock (its connection's anchor); None = skip it."""
        packet = item.payload
        if anchor is None or self._t0 is None or packet.pts is None or not packet.time_base:
            return None
        if item.stream_index not in self._audio_ids:
            return None  # a stream the first connection did not have: the output has no place for it
        tb = packet.time_base
        pts = round((anchor.local(float(packet.pts * tb)) - self._t0) / tb)
        if pts < 0:
            return None
        last = self._audio_last.get(item.stream_index)
        if last is not None and pts <= last:
            pts = last + 1
        self._audio_last[item.stream_index] = pts
        packet.pts = packet.dts = pts
        return item

    def _retime(self, item: Frame, anchor):
        now = item.arrival
        stream_t = float(item.pts * item.time_base)
        if anchor is None or not -_REANCHOR_S <= anchor.local(stream_t) - now <= _AHEAD_S:
            anchor = _Anchor(stream_t, now)
        else:
            anchor.follow(stream_t, now)
        t = anchor.local(stream_t)
        if self._t0 is None:
            self._t0 = t
        pts = max(round((t - self._t0) * 90000), self._last_pts + 1)
        self._last_pts = pts
        image = item.image
        if (image.width, image.height) != (self.info.width, self.info.height):
            # the camera came back at another size: keep the output's size
            image = image.reformat(self.info.width, self.info.height)
            self.resized_frames += 1
        self.frames_decoded += 1
        return Frame(self.frames_decoded - 1, pts, LIVE_TIME_BASE, image, item.colour, item.arrival, key=item.key), anchor
