"""Demux and decode with PyAV: video frames out as :class:`Frame`, audio packets as PassThrough.

A corrupt packet does not end the run: its decode error is counted (with FFmpeg's message) and
decoding goes on with the next packet. Errors that make the input unusable raise typed errors.
Each frame's time is FFmpeg's best-effort timestamp (io/timestamps.py); frames a frame-threaded
decoder strands at the end of a damaged input are decoded again (io/drain.py).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Self

import av

from ..errors import DecodeError, InputNotFoundError, MediaError
from ..frames import RANGE_FULL, ColourTags, Frame, PassThrough, VideoInfo
from ..urls import mask_credentials
from .drain import DrainGuard
from .joins import TS_DISCONT, rejoined
from .protocols import check_protocol
from .timestamps import FrameTimes

__all__ = ["Source", "configure_decoder"]

class _DecoderLog(logging.Handler):
    """Counts FFmpeg's error messages from one decoder (they come from its worker threads too:
    FFmpeg conceals most damage and only says so in its log). FFmpeg names the codec, not the
    decoder, so where several sources decode the same codec in one process (cameras) a message
    from a thread that reads one of them is that source's alone; one from a decoder's own worker
    thread (frame threading: files) is counted by every source of that codec."""

    def __init__(self, codec: str):
        super().__init__(logging.ERROR)
        self.logger_name = f"libav.{codec}"
        self.count = 0
        self.last: str | None = None
        self._thread: int | None = None

    def attach(self) -> None:
        """Count from now on; the calling thread is the one that reads this source."""
        self._thread = threading.get_ident()
        _READERS[self._thread] = self
        logging.getLogger("libav").addHandler(self)

    def detach(self) -> None:
        logging.getLogger("libav").removeHandler(self)
        if self._thread is not None and _READERS.get(self._thread) is self:
            del _READERS[self._thread]

    def emit(self, record: logging.LogRecord) -> None:
        if record.name != self.logger_name or _READERS.get(record.thread, self) is not self:
            return  # another codec, or another source's reading thread
        self.count += 1
        self.last = mask_credentials(record.getMessage().strip())


#: the decoder log of the source each thread is reading now (thread ident -> log)
_READERS: dict[int, _DecoderLog] = {}


_FFMPEG_LOG = logging.getLogger("streamsr.ffmpeg")
_FFMPEG_LOG.addHandler(logging.NullHandler())
_ROUTED = threading.Lock()


class _MaskingForwarder(logging.Handler):
    """Re-emits PyAV's "libav.*" records on "streamsr.ffmpeg" with URL credentials masked."""

    def emit(self, record: logging.LogRecord) -> None:
        _FFMPEG_LOG.log(record.levelno, "%s: %s", record.name, mask_credentials(record.getMessage().strip()))


def _forward_ffmpeg_errors() -> None:
    """Route FFmpeg's messages through Python logging (once per process).

    PyAV leaves FFmpeg printing straight to stderr until a level is set. From here on its error
    messages go to the "libav" logger, where sources count them; they do not propagate as they
    are (FFmpeg quotes URLs, passwords included) but are re-emitted, masked, on "streamsr.ffmpeg".
    """
    with _ROUTED:
        libav = logging.getLogger("libav")
        if any(isinstance(h, _MaskingForwarder) for h in libav.handlers):
            return
        if av.logging.get_level() is None:
            av.logging.set_level(av.logging.ERROR)
        libav.addHandler(_MaskingForwarder())
        libav.propagate = False


def configure_decoder(cc, threads: int, low_delay: bool) -> None:
    """Decoder threading. Frame threading (files) decodes several frames at once and so holds
    each frame back by about as many frames as it has threads (with 0 = a thread per core plus
    one, some 8 frames or 320 ms at 25 fps on 8 cores); live inputs use slice threading, which
    adds no delay (and decodes single-slice streams on one core: ample for camera rates)."""
    cc.thread_type = "SLICE" if low_delay else "AUTO"
    cc.thread_count = threads


def _pixel_aspect(sar) -> Fraction | None:
    """A stream's sample aspect ratio, None when square or unknown (FFmpeg's 0/1)."""
    return Fraction(sar) if sar and Fraction(sar) != 1 else None


class Source:
    """A demuxing, decoding input; a context manager and an iterable of Frame / PassThrough.

    Args:
        src: file path, URL, ``"-"`` for stdin, or a readable binary file object.
        decode_threads: decoder threads (0 = FFmpeg chooses).
        options: FFmpeg format options (e.g. ``{"rtsp_transport": "tcp"}``).
        audio: forward audio packets for remuxing.
        format: FFmpeg demuxer name when it can't be guessed (``v4l2`` for /dev/video*).
        hwaccel: decode on a device ("cuda" = NVDEC); frames come back in system memory. When the
            device can't be used the input is decoded on the CPU and a notice says why.
        timeout: (open, read) seconds after which a blocking network open or read gives up
            (PyAV's interrupt callback, a watchdog that works for every protocol); None = wait.
        low_delay: decode each frame as soon as its packet is in (live inputs; see
            :func:`configure_decoder`).

    Attributes:
        info: :class:`VideoInfo`, set on ``__enter__``.
        decode_errors: packets that failed to decode plus FFmpeg's decoder error messages
            (damage FFmpeg concealed); decoding goes on after each.
        corrupt_frames: frames FFmpeg flagged as corrupt (still written, timing intact).
        ended_early: FFmpeg's message when reading broke off after some frames (the frames read
            so far are kept); None when the input ended normally.
        last_decode_error: FFmpeg's message for the last error.
    """

    def __init__(
        self,
        src: str | os.PathLike | BinaryIO,
        *,
        decode_threads: int = 0,
        options: dict[str, str] | None = None,
        audio: bool = True,
        timeout: tuple[float, float] | None = None,
        format: str | None = None,
        hwaccel: str | None = None,
        low_delay: bool = False,
    ):
        self.src = src
        self.low_delay = low_delay
        self.decode_threads = decode_threads
        self.options = dict(options or {})
        self.audio = audio
        self.timeout = timeout
        self.format = format
        self.hwaccel = hwaccel
        self.notices: list[str] = []
        self._raised_errors = 0
        self._raised_last: str | None = None
        self._log: _DecoderLog | None = None
        self.corrupt_frames = 0
        self.ended_early: str | None = None
        self.frames_decoded = 0
        self._container: av.container.InputContainer | None = None
        self.info: VideoInfo | None = None
        self.audio_streams: list[av.stream.Stream] = []

    @property
    def name(self) -> str:
        """Printable name of the input (credentials masked)."""
        name = self.src if isinstance(self.src, str) else getattr(self.src, "name", "<stream>")
        return mask_credentials(str(name))

    @property
    def decode_errors(self) -> int:
        """Decode failures: exceptions on packets plus FFmpeg's logged decoder errors."""
        return self._raised_errors + (self._log.count if self._log else 0)

    @property
    def last_decode_error(self) -> str | None:
        """FFmpeg's words for the most recent decode problem."""
        logged = self._log.last if self._log else None
        return self._raised_last or logged

    def _open_target(self):
        if isinstance(self.src, (str, os.PathLike)):
            text = os.fspath(self.src)
            if text == "-":
                import sys

                return sys.stdin.buffer
            check_protocol(text, output=False)
            if "://" not in text:
                path = Path(text)
                if not path.exists():
                    raise InputNotFoundError(f"input file not found: {text}")
                if path.is_dir():
                    raise MediaError(f"input is a directory, not a video: {text}")
                if path.stat().st_size == 0:
                    raise MediaError(f"input file is empty (0 bytes): {text}")
            return text
        return self.src

    def __enter__(self) -> Self:
        target = self._open_target()
        _forward_ffmpeg_errors()
        try:
            self._container = self._open_container(target)
        except av.FFmpegError as exc:
            raise MediaError(mask_credentials(f"cannot open {self.name} as a video: {exc}")) from exc
        try:
            self._setup()
        except BaseException:
            self.close()
            raise
        return self

    def _open_container(self, target):
        kwargs = {"mode": "r", "format": self.format, "options": self.options, "timeout": self.timeout}
        if self.hwaccel and isinstance(target, str):  # a pipe can't be reopened after a failed try
            from av.codec.hwaccel import HWAccel

            try:
                return av.open(target, hwaccel=HWAccel(self.hwaccel, allow_software_fallback=True), **kwargs)
            except (av.FFmpegError, OSError) as exc:
                self.notices.append(f"hardware decoding ({self.hwaccel}) is not available here ({exc}); "
                                    "decoding on the CPU")
        return av.open(target, **kwargs)

    def _setup(self) -> None:
        c = self._container
        if not c.streams.video:
            raise MediaError(f"{self.name} has no video stream (is it a video file?)")
        vs = c.streams.video[0]
        cc = vs.codec_context
        if cc is None:  # FFmpeg could not name the codec (a damaged header, an unknown format)
            raise MediaError(f"{self.name}: the video stream's codec is unknown or its header is damaged; "
                             "nothing can decode it")
        configure_decoder(cc, self.decode_threads, self.low_delay)
        if not cc.width or not cc.height:
            raise MediaError(f"{self.name}: video stream has no frame size (unsupported or corrupt)")
        self._video = vs
        self._log = _DecoderLog(cc.name)
        self.audio_streams = []
        for stream in c.streams.audio if self.audio else []:
            scc = stream.codec_context
            if scc is None or not scc.channels:  # damaged header, or never probed: nothing to copy
                self.notices.append(f"audio stream {stream.index} is left out: its codec or channels are "
                                    "unknown (damaged or unprobed header)")
            else:
                self.audio_streams.append(stream)
        rate = vs.average_rate or vs.guessed_rate
        duration = None
        if vs.duration and vs.time_base:
            duration = float(vs.duration * vs.time_base)
        elif c.duration:
            duration = c.duration / 1_000_000
        count = vs.frames or (round(duration * rate) if duration and rate else None)
        pix_fmt = cc.format.name if cc.format else "yuv420p"
        colour = ColourTags.resolve(
            int(cc.colorspace), int(cc.color_range), int(cc.color_primaries), int(cc.color_trc),
            cc.height, pix_fmt,
        )
        self.info = VideoInfo(
            width=cc.width, height=cc.height, time_base=vs.time_base or Fraction(1, 90000),
            frame_rate=Fraction(rate) if rate else None, frame_count=count or None,
            codec=cc.name, pix_fmt=pix_fmt, colour=colour, duration=duration,
            aspect=_pixel_aspect(vs.sample_aspect_ratio or cc.sample_aspect_ratio),
            rotation=self._rotation(),
        )

    def _rotation(self) -> int:
        """The display rotation of a file's video (phones: -90). FFmpeg gives it with each
        decoded frame, not with the stream, so a local file's first frame is decoded once on the
        side; a stream or pipe, which can't be read twice, is taken as it comes (0)."""
        if self.low_delay or not isinstance(self.src, (str, os.PathLike)) or not Path(self.src).is_file():
            return 0
        try:  # FFmpeg's words on a damaged start are kept here: the run says them, and counts them once
            with av.logging.Capture(), av.open(os.fspath(self.src)) as c:
                for _, packet in zip(range(64), c.demux(video=0)):  # a damaged start: not the whole file
                    for frame in packet.decode():
                        return round(frame.rotation or 0)
        except (av.FFmpegError, ValueError):
            pass
        return 0

    def _frame_colour(self, frame: av.VideoFrame) -> ColourTags:
        base = self.info.colour
        matrix = int(frame.colorspace) if int(frame.colorspace) not in (0, 2) else base.matrix
        range_ = int(frame.color_range) if int(frame.color_range) != 0 else base.range
        if frame.format.name.startswith("yuvj"):
            range_ = RANGE_FULL
        if (matrix, range_) == (base.matrix, base.range):
            return base
        return ColourTags(matrix, range_, base.primaries, base.transfer)

    def __iter__(self) -> Iterator[Frame | PassThrough]:
        if self._container is None:
            raise RuntimeError("Source must be entered (with Source(...) as src) before iterating")
        vs = self._video
        times = FrameTimes.for_rate(self.info.frame_rate, self.info.time_base)
        guard = DrainGuard(vs.codec_context)
        audio_ids = {s.index for s in self.audio_streams}
        self._log.attach()
        try:
            try:
                for packet in self._packets():
                    if packet.stream.index in audio_ids:
                        if packet.dts is not None and packet.size:
                            yield PassThrough(packet, packet.stream.index)
                        continue
                    guard.packet(packet)
                    try:
                        frames = packet.decode()
                    except av.FFmpegError as exc:
                        self._raised_errors += 1
                        self._raised_last = str(exc)
                        continue
                    yield from self._frames(frames, times, guard)
                self._log.detach()  # frames a frame-threaded drain may have left behind:
                yield from self._frames(guard.recover(self._raised_errors > 0), times, guard)
            except av.FFmpegError as exc:
                message = mask_credentials(f"reading {self.name} failed: {exc}")
                if not self.frames_decoded and not times.holding:
                    raise DecodeError(message, 0) from exc
                self.ended_early = message  # a damaged tail: keep what was read
            yield from self._timed(times.flush())
        finally:
            self._log.detach()

    def _packets(self) -> Iterator[av.Packet]:
        """The video's and the copied audio's packets; a file whose format lets timestamps restart
        (MPEG-TS) made continuous across restarts (:mod:`.joins`; a live input's clock is its own)."""
        streams = [self._video, *self.audio_streams]
        packets = self._container.demux(*streams)
        if not self.low_delay and self._container.format.flags & TS_DISCONT:
            packets = rejoined(packets, (st.index for st in streams))
        return packets

    def _frames(self, frames: list[av.VideoFrame], times: FrameTimes, guard: DrainGuard) -> Iterator[Frame]:
        for frame in frames:
            guard.frame(frame)
            self.corrupt_frames += bool(frame.is_corrupt)
            yield from self._timed(times.push(frame.pts, frame.dts, (frame, time.monotonic())))

    def _timed(self, timed: list[tuple[int, tuple[av.VideoFrame, float]]]) -> Iterator[Frame]:
        for pts, (frame, arrival) in timed:
            self.frames_decoded += 1
            yield Frame(self.frames_decoded - 1, pts, self.info.time_base, frame, self._frame_colour(frame), arrival,
                        key=bool(frame.key_frame))

    def close(self) -> None:
        """Close the container (idempotent)."""
        if self._container is not None:
            try:
                self._container.close()
            finally:
                self._container = None

    def __exit__(self, *exc) -> None:
        self.close()
