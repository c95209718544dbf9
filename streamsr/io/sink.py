"""Encode and mux with PyAV: video from RGB arrays, audio packets copied (or re-encoded).

A file is written to ``<output>.partial`` and renamed by :meth:`Sink.close` when the run succeeded
or was interrupted (the encoder is always flushed, so the file plays); after an error the partial
file is removed, so a failed run never leaves a file that looks complete.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Self

import av
import numpy as np

from ..errors import ConfigError, EncodeError, OutputError
from ..frames import Frame, PassThrough, VideoInfo
from ..swscale import from_rgb
from ..urls import mask_credentials
from .audio import AudioOut, add_audio
from .encoders import choose_pix_fmt, default_encoder, encoder_options, even_size, usable_encoder
from .outputs import container_format, format_options, is_file_output, partial_path, segment_naming

__all__ = ["Sink", "SinkConfig"]

#: the clock of muxers that keep their own time base, whatever the stream's (others keep ours)
_MUXER_TICK = {"matroska": Fraction(1, 1000), "webm": Fraction(1, 1000), "flv": Fraction(1, 1000),
               "mpegts": Fraction(1, 90000), "hls": Fraction(1, 90000), "rtsp": Fraction(1, 90000)}


@dataclass(frozen=True, kw_only=True)
class SinkConfig:
    """How to encode the output.

    Args:
        codec: FFmpeg encoder name (None: the container's default, libx264, or VP9 for WebM).
        crf: constant rate factor where the encoder has one (None = encoder default, 18 for x264/x265).
        preset: encoder speed preset where it has one.
        pix_fmt: output pixel format (None = the input's when the encoder takes it, else yuv420p).
        threads: encoder threads (0 = FFmpeg chooses).
        tune: encoder tune where it has one (live mode uses x264's "zerolatency").
        gop: keyframe interval in frames (None = encoder default); live outputs want short ones.
        hls_time: segment length in seconds for ``.m3u8`` outputs.
        segment_time: cut a file output into files of about this many seconds (at keyframes),
            named by the output's pattern: strftime codes (``cam-%Y%m%d-%H%M%S.mkv``, the wall
            clock when each file starts) or a number (``cam-%03d.mkv``). Each file is complete and
            playable on its own once the next one starts.
        live: the output is a live recording/stream: fragmented MP4 (playable even if the process
            is killed), rolling HLS playlist.
    """

    codec: str | None = None
    crf: float | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    threads: int = 0
    tune: str | None = None
    gop: int | None = None
    hls_time: float = 2.0
    segment_time: float | None = None
    live: bool = False


class Sink:
    """An encoding, muxing output; a context manager.

    Args:
        dst: output path, ``"-"`` for MPEG-TS on stdout, or a writable binary file object.
        info: the source's :class:`VideoInfo` (timing, colour, pixel format).
        width, height: the output size (frames of another size are resized to it, except one
            pixel more on an odd side, which 4:2:0 crops away).
        config: :class:`SinkConfig`.
        audio_streams: input audio streams whose packets will be passed through.
        format: muxer name (default: from the path's extension).

    Attributes:
        notices: human-readable remarks the caller may show (re-encoded audio, cropped size...).
        frames_written: video frames given to the encoder.
    """

    def __init__(
        self,
        dst: str | os.PathLike | BinaryIO,
        info: VideoInfo,
        width: int,
        height: int,
        config: SinkConfig = SinkConfig(),
        audio_streams: list | None = None,
        format: str | None = None,
    ):
        self.config = config
        self.info = info
        self.notices: list[str] = []
        self.frames_written = 0
        self._audio_in = list(audio_streams or [])
        self._final: Path | None = None
        self._partial: Path | None = None
        text = os.fspath(dst) if isinstance(dst, (str, os.PathLike)) else None
        self.format = format or (container_format(text) if text else "mpegts")
        self._segments = None
        to_file = is_file_output(text, self.format)
        if config.segment_time is not None:
            if not to_file:
                raise ConfigError("--segment-time applies to file outputs (a name pattern), not streams or HLS")
            if config.segment_time <= 0:
                raise ConfigError(f"--segment-time must be positive, got {config.segment_time:g}")
            self._segments = segment_naming(text, config.segment_time)  # many files, each written in place
        elif to_file:
            self._final = Path(text)  # a single file: written as .partial, renamed at the end
        self._dst = dst
        if config.codec is None:
            self.config = config = dataclasses.replace(config, codec=default_encoder(self.format))
        self.pix_fmt = choose_pix_fmt(config.codec, config.pix_fmt, info.pix_fmt)
        self.requested = (width, height)
        self.width, self.height = even_size(width, height, self.pix_fmt)
        encoder, notice = usable_encoder(config.codec, self.width, self.height, self.pix_fmt,
                                         info.frame_rate or Fraction(25))
        if notice:
            self.notices.append(notice)
            self.config = config = dataclasses.replace(config, codec=encoder, preset=None, tune=None)
            self.pix_fmt = choose_pix_fmt(encoder, config.pix_fmt, info.pix_fmt)
        if (self.width, self.height) != (width, height):
            self.notices.append(
                f"{self.pix_fmt} needs even sizes: output cropped from {width}x{height} "
                f"to {self.width}x{self.height}"
            )
        self.colour = info.colour
        self._container = None
        self._video = None
        self._audio: dict[int, AudioOut] = {}
        self._failed = False
        self._last_tick: int | None = None
        self._retimed = 0

    # -- opening -----------------------------------------------------------------------------
    def __enter__(self) -> Self:
        target = self._open_target()
        cfg = self.config
        options = format_options(self.format, live=cfg.live, hls_time=cfg.hls_time, segments=self._segments,
                                 segment_time=cfg.segment_time)
        try:
            muxer = "segment" if self._segments else self.format
            self._container = av.open(target, mode="w", format=muxer, options=options)
        except (av.FFmpegError, OSError) as exc:
            where = mask_credentials(str(self._dst))
            raise OutputError(mask_credentials(f"cannot write output {where}: {exc}")) from exc
        try:
            self._add_video()
            for stream in self._audio_in:
                self._audio[stream.index], notice = add_audio(self._container, stream, self.format)
                if notice:
                    self.notices.append(notice)
        except BaseException:
            self._failed = True
            self.close()
            raise
        return self

    def _open_target(self):
        if self._final is None:
            if self._dst == "-":
                import sys

                return sys.stdout.buffer
            if self.format == "hls" or self._segments:
                folder = Path(os.fspath(self._dst)).parent
                if not folder.is_dir():
                    raise OutputError(f"output folder does not exist: {folder}")
            return os.fspath(self._dst) if isinstance(self._dst, os.PathLike) else self._dst
        self._partial = partial_path(self._final)
        return str(self._partial)

    def _add_video(self) -> None:
        cfg, info = self.config, self.info
        rate = info.frame_rate or Fraction(25)
        try:
            stream = self._container.add_stream(cfg.codec, rate=rate)
        except ValueError as exc:  # FFmpeg's muxer refuses the codec (libx264 into WebM, ...)
            raise ConfigError(f"the {self.format} container does not take {cfg.codec} video; choose another "
                              f"--codec (e.g. {default_encoder(self.format)}) or container") from exc
        cc = stream.codec_context
        cc.width, cc.height, cc.pix_fmt = self.width, self.height, self.pix_fmt
        cc.time_base = info.time_base
        stream.time_base = info.time_base
        cc.thread_count = cfg.threads
        cc.colorspace = self.colour.matrix
        cc.color_range = self.colour.range
        cc.color_primaries = self.colour.primaries
        cc.color_trc = self.colour.transfer
        if info.aspect:  # the picture keeps its shape on screen: its pixels stretch as the frame did
            sar = info.aspect * Fraction(info.width, info.height) / Fraction(*self.requested)
            cc.sample_aspect_ratio = sar.limit_denominator(65535)
        if info.rotation:  # the pixels are stored as they came: players turn them as they did
            stream.set_display_rotation(info.rotation)
        private = {o.name for o in cc.supported_options.private}
        options = encoder_options(cfg.codec, private, cfg.crf, cfg.preset, cfg.tune)
        gop = cfg.gop
        if gop is None and self._segments:  # files are cut at keyframes: one a second
            gop = max(1, round(rate))
        elif gop is None and self.format == "hls":  # so are HLS segments: one per segment, at most a second apart
            gop = max(1, round(rate * min(1.0, cfg.hls_time)))
        if gop:
            cc.gop_size = gop
        cc.options = options
        self._video = stream

    # -- writing -----------------------------------------------------------------------------
    def make_frame(self, frame: Frame) -> Frame:
        """Turn a frame carrying an H×W×3 uint8 RGB array into one carrying the encoder's
        ``av.VideoFrame`` (colour matrix/range of the input), resized to the output size when it
        has another. Thread-safe; runs off the encoder thread.
        """
        rgb: np.ndarray = frame.image
        crop, size = self._fit(rgb.shape[1], rgb.shape[0])
        if crop:
            rgb = np.ascontiguousarray(rgb[: self.height, : self.width])
        return self._stamp(frame, from_rgb(rgb, self.pix_fmt, self.colour, size))

    def _fit(self, width: int, height: int) -> tuple[bool, tuple[int, int] | None]:
        """How a picture of ``width``×``height`` becomes the encoder's: (cropped by the pixel
        4:2:0 cannot take, the size to resize to or None)."""
        if (width, height) == (self.width, self.height):
            return False, None
        if (width, height) == self.requested:  # one pixel more than 4:2:0 takes
            return True, None
        return False, (self.width, self.height)

    def make_frame_chw(self, frame: Frame) -> Frame:
        """Like :meth:`make_frame` for a frame carrying a network's 3×H×W float RGB output in
        [0, 1] (not clamped): clamped and rounded into planar RGB, no interleaved copy."""
        from ..swscale import from_planar

        chw: np.ndarray = frame.image
        crop, size = self._fit(chw.shape[2], chw.shape[1])
        if crop:
            chw = chw[:, : self.height, : self.width]
        return self._stamp(frame, from_planar(chw, self.pix_fmt, self.colour, size))

    @property
    def takes_planes(self) -> bool:
        """Whether :meth:`make_frame_planes` can hand 8-bit 4:2:0 planes to the encoder as they are."""
        return self.pix_fmt in ("yuv420p", "yuvj420p")

    def make_frame_planes(self, frame: Frame) -> Frame:
        """Like :meth:`make_frame` for a frame carrying 8-bit 4:2:0 planes ((3H/2)×W uint8, PyAV's
        yuv420p layout) already in this sink's colour matrix and range (the device colour chain).
        Planes of another size than the encoder's go through swscale and :meth:`make_frame`."""
        from ..swscale import to_rgb

        planes: np.ndarray = frame.image
        fmt = self.pix_fmt if self.takes_planes else "yuv420p"
        vf = av.VideoFrame.from_ndarray(planes, format=fmt)
        if fmt == self.pix_fmt and (vf.width, vf.height) == (self.width, self.height):
            return self._stamp(frame, vf)
        return self.make_frame(frame.with_image(to_rgb(vf, self.colour)))

    def _stamp(self, frame: Frame, out: av.VideoFrame) -> Frame:
        out.colorspace = self.colour.matrix
        out.color_range = self.colour.range
        out.pts = frame.pts
        out.time_base = frame.time_base
        return frame.with_image(out)

    def write(self, item: Frame | PassThrough) -> None:
        """Encode a frame from :meth:`make_frame`, or mux a passed-through audio packet."""
        try:
            if isinstance(item, PassThrough):
                self._write_audio(item)
                return
            item.image.pts = self._increasing(item.image.pts, item.image.time_base)
            for packet in self._video.encode(item.image):
                self._container.mux(packet)
            self.frames_written += 1
        except av.FFmpegError as exc:
            self._failed = True
            index = item.index if isinstance(item, Frame) else None
            raise EncodeError(mask_credentials(f"encoding failed: {exc}"), index) from exc

    def _increasing(self, pts: int, time_base: Fraction) -> int:
        """``pts``, or the first later one that the muxer's own clock tells apart from the frame
        before: two frames 0.4 ms apart (or a damaged file's repeated timestamp) are distinct in
        the input's 1/90000 s but one tick of Matroska's 1/1000 s, and a muxer refuses that."""
        tick = _MUXER_TICK.get(self.format, time_base)
        at = math.floor(pts * time_base / tick)
        if self._last_tick is not None and at <= self._last_tick:
            at = self._last_tick + 1
            pts = math.ceil(at * tick / time_base)
            self._retimed += 1
        self._last_tick = at
        return pts

    def _write_audio(self, item: PassThrough) -> None:
        """Mux (or re-encode) an audio packet. A damaged one FFmpeg refuses (a bitstream filter
        or a decoder failing on it) is left out and counted, never the end of the run: the
        pictures matter more than one packet of sound."""
        out = self._audio.get(item.stream_index)
        if out is None:
            return
        try:
            for packet in out.packets(item.payload):
                self._container.mux(packet)
        except av.FFmpegError as exc:
            out.drop(mask_credentials(str(exc)))

    @property
    def audio_outputs(self) -> list[dict]:
        """Each output audio stream: its codec, and whether the input's packets are copied
        (else decoded and re-encoded)."""
        return [{"codec": out.stream.codec_context.name, "copied": out.copied} for out in self._audio.values()]

    def mark_failed(self) -> None:
        """Record that the run failed: :meth:`close` will remove the partial file."""
        self._failed = True

    def close(self) -> None:
        """Flush every encoder, finalize the container, then rename (success) or remove (failure)."""
        if self._container is None:
            return
        error: BaseException | None = None
        try:
            if self._video is not None and not self._failed:
                for packet in self._video.encode(None):
                    self._container.mux(packet)
                for out in self._audio.values():
                    for packet in out.flush():
                        self._container.mux(packet)
        except av.FFmpegError as exc:
            self._failed = True
            error = EncodeError(mask_credentials(f"flushing the encoder failed: {exc}"))
        finally:
            self.notices += [out.notice for out in self._audio.values() if out.notice]
            if self._retimed:
                self.notices.append(f"{self._retimed} frame(s) moved by less than a frame: their timestamps were "
                                    f"not increasing on the {self.format} container's clock (damaged or dense input)")
            try:
                self._container.close()
            except av.FFmpegError as exc:
                self._failed = True
                error = error or EncodeError(mask_credentials(f"finalizing the output failed: {exc}"))
            self._container = None
            self._finish_file()
        if error is not None:
            raise error

    def _finish_file(self) -> None:
        if self._partial is None or not self._partial.exists():
            return
        if self._failed or self.frames_written == 0:
            self._partial.unlink()
        else:
            os.replace(self._partial, self._final)

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and not issubclass(exc_type, KeyboardInterrupt):
            self._failed = True
        self.close()
