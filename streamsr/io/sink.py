"""Encode and mux with PyAV: video from RGB arrays, audio packets copied (or re-encoded).

A file is written to ``<output>.partial`` and renamed by :meth:`Sink.close` when the run succeeded
or was interrupted (the encoder is always flushed, so the file plays); after an error the partial
file is removed, so a failed run never leaves a file that looks complete.
"""

from __future__ import annotations

import dataclasses
import io
import os
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO, Self

import av
import numpy as np

from ..errors import ConfigError, EncodeError, OutputError
from ..frames import RANGE_FULL, Frame, PassThrough, VideoInfo
from ..urls import is_url, mask_credentials, url_scheme
from .protocols import check_protocol
from .source import SWS_FLAGS, sws_colorspace

__all__ = ["Sink", "SinkConfig", "check_encoder", "container_format"]

_FORMATS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov", ".ts": "mpegts",
    ".m2ts": "mpegts", ".webm": "webm", ".avi": "avi", ".nut": "nut", ".flv": "flv",
}


_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}


_STREAM_FORMATS = {"rtsp": "rtsp", "rtsps": "rtsp", "rtmp": "flv", "rtmps": "flv", "srt": "mpegts",
                   "udp": "mpegts", "tcp": "mpegts", "rtp": "rtp_mpegts"}


def container_format(path: str) -> str:
    """FFmpeg muxer for an output: from a file's extension, a stream URL's scheme, ``.m3u8`` for
    HLS; ``-`` is MPEG-TS on stdout.

    Raises:
        ConfigError: unknown extension or scheme.
    """
    if path == "-":
        return "mpegts"
    scheme = url_scheme(path)
    check_protocol(path, output=True)
    if scheme in _STREAM_FORMATS:
        return _STREAM_FORMATS[scheme]
    ext = Path(path.split("?")[0]).suffix.lower()
    if ext == ".m3u8":
        return "hls"
    if scheme is not None and scheme != "file":
        raise ConfigError(f"cannot write to {scheme}:// outputs; use a file, rtsp, rtmp, srt, udp or .m3u8")
    try:
        return _FORMATS[ext]
    except KeyError:
        raise ConfigError(
            f"cannot tell the container from output {path!r}; use one of: "
            f"{', '.join(sorted(_FORMATS))}, .m3u8, or an rtsp/rtmp/srt/udp URL"
        ) from None


_FRAGMENTED_MP4 = "frag_keyframe+empty_moov+default_base_moof"  # playable even if the process is killed
_STRFTIME = re.compile(r"%[YmdHMSjyb]")
_SEQUENCE = re.compile(r"%0?\d*d")


def segment_naming(path: str, segment_time: float) -> str:
    """How a segmented output names its files: "strftime" or "sequence".

    Raises:
        ConfigError: the path has neither kind of pattern, or a clock-time pattern too coarse for
            the segment length (two files starting within one second, minute... would get the same
            name, and the second would silently overwrite the first).
    """
    if _STRFTIME.search(path):
        resolution = next((r for code, r in (("%S", 1), ("%M", 60), ("%H", 3600)) if code in path), 86400)
        if segment_time < 2 * resolution:
            raise ConfigError(f"segments of {segment_time:g} s would reuse names of {path!r} (it changes every "
                              f"{resolution} s); use --segment-time {2 * resolution} or more, or a finer pattern")
        return "strftime"
    if _SEQUENCE.search(path):
        return "sequence"
    raise ConfigError(f"--segment-time needs a file name pattern in the output, e.g. cam-%Y%m%d-%H%M%S.mkv "
                      f"(clock time) or cam-%03d.mkv (numbered); got {path!r}")


_HW_SUFFIXES = ("_nvenc", "_qsv", "_vaapi", "_amf", "_videotoolbox", "_v4l2m2m")
_SOFTWARE_FOR = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}


def usable_encoder(name: str, width: int, height: int, pix_fmt: str, rate: Fraction) -> tuple[str, str | None]:
    """A hardware encoder (NVENC, QSV, ...) exists in FFmpeg's build whether or not this machine
    has the device: try to open it; if it can't, fall back to the software encoder of the same
    format. Returns (encoder name, notice or None)."""
    if not name.endswith(_HW_SUFFIXES):
        return name, None
    cc = av.CodecContext.create(name, "w")
    cc.width, cc.height, cc.pix_fmt, cc.time_base = width, height, pix_fmt, 1 / rate
    try:
        cc.open()
        return name, None
    except (av.FFmpegError, OSError, ValueError) as exc:
        fallback = _SOFTWARE_FOR.get(name.split("_")[0], "libx264")
        return fallback, f"{name} cannot be used here ({exc}); encoded with {fallback} instead"


_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _probe_payload(stream) -> bytes:
    """A packet for the dry-run copy of ``stream``. AAC from MPEG-TS/ADTS sources carries its
    configuration in a 7-byte ADTS header on every packet instead of extradata; muxers that need
    extradata (mp4, mkv) then convert it themselves (FFmpeg's automatic aac_adtstoasc), but only
    for a packet that looks like ADTS -- so the probe sends one, built from the stream's
    parameters, rather than one that would fail where the real packets succeed."""
    cc = stream.codec_context
    if cc.name != "aac" or cc.extradata or cc.sample_rate not in _ADTS_RATES:
        return bytes(256)
    payload = bytes(32)
    length = 7 + len(payload)
    rate, channels = _ADTS_RATES.index(cc.sample_rate), min(cc.channels or 2, 7)
    header = bytes([0xFF, 0xF1, (1 << 6) | (rate << 2) | (channels >> 2),  # AAC LC
                    ((channels & 3) << 6) | (length >> 11), (length >> 3) & 0xFF, ((length & 7) << 5) | 0x1F, 0xFC])
    return header + payload


def check_encoder(name: str) -> av.codec.Codec:
    """Return FFmpeg's encoder ``name`` or raise a ConfigError naming the usual ones."""
    try:
        codec = av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        raise ConfigError(
            f"unknown video encoder {name!r}; try libx264, libx265, ffv1, libvpx-vp9, libsvtav1"
        ) from None
    if codec.type != "video":
        raise ConfigError(f"{name!r} is a {codec.type} encoder, not a video encoder")
    return codec


@dataclass(frozen=True, kw_only=True)
class SinkConfig:
    """How to encode the output.

    Args:
        codec: FFmpeg encoder name.
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

    codec: str = "libx264"
    crf: float | None = None
    preset: str | None = None
    pix_fmt: str | None = None
    threads: int = 0
    tune: str | None = None
    gop: int | None = None
    hls_time: float = 2.0
    segment_time: float | None = None
    live: bool = False


def _even_size(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    fmt = av.VideoFormat(pix_fmt, width, height)  # plane sizes are only known for a given size
    cw = fmt.components[1].width if len(fmt.components) > 1 else width
    ch = fmt.components[1].height if len(fmt.components) > 1 else height
    w = width - width % 2 if fmt.is_planar and cw < width else width
    h = height - height % 2 if fmt.is_planar and ch < height else height
    return w, h


class Sink:
    """An encoding, muxing output; a context manager.

    Args:
        dst: output path, ``"-"`` for MPEG-TS on stdout, or a writable binary file object.
        info: the source's :class:`VideoInfo` (timing, colour, pixel format).
        width, height: size of the frames that will be written.
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
        to_file = bool(text) and text != "-" and not is_url(text) and self.format != "hls"
        if config.segment_time is not None:
            if not to_file:
                raise ConfigError("--segment-time applies to file outputs (a name pattern), not streams or HLS")
            if config.segment_time <= 0:
                raise ConfigError(f"--segment-time must be positive, got {config.segment_time:g}")
            self._segments = segment_naming(text, config.segment_time)  # many files, each written in place
        elif to_file:
            self._final = Path(text)  # a single file: written as .partial, renamed at the end
        self._dst = dst
        self._codec = check_encoder(config.codec)
        self.pix_fmt = self._choose_pix_fmt()
        self.width, self.height = _even_size(width, height, self.pix_fmt)
        encoder, notice = usable_encoder(config.codec, self.width, self.height, self.pix_fmt,
                                         info.frame_rate or Fraction(25))
        if notice:
            self.notices.append(notice)
            self.config = config = dataclasses.replace(config, codec=encoder, preset=None, tune=None)
            self._codec = check_encoder(encoder)
            self.pix_fmt = self._choose_pix_fmt()
        if (self.width, self.height) != (width, height):
            self.notices.append(
                f"{self.pix_fmt} needs even sizes: output cropped from {width}x{height} "
                f"to {self.width}x{self.height}"
            )
        self.colour = info.colour
        self._container = None
        self._video = None
        self._audio_map: dict[int, tuple] = {}
        self._failed = False

    def _choose_pix_fmt(self) -> str:
        names = [f.name for f in (self._codec.video_formats or [])]
        want = self.config.pix_fmt
        if want:
            if names and want not in names:
                raise ConfigError(
                    f"encoder {self.config.codec} does not take pix_fmt {want!r}; it takes: {', '.join(names)}"
                )
            return want
        src = self.info.pix_fmt.replace("yuvj", "yuv")
        if not names or src in names:
            return src
        return "yuv420p" if "yuv420p" in names else names[0]

    # -- opening -----------------------------------------------------------------------------
    def _format_options(self) -> dict[str, str]:
        cfg = self.config
        if self.format == "hls":
            opts = {"hls_time": f"{cfg.hls_time:g}", "hls_segment_type": "mpegts"}
            if cfg.live:
                opts.update(hls_list_size="10", hls_flags="delete_segments+independent_segments")
            else:
                opts.update(hls_list_size="0", hls_playlist_type="vod")
            return opts
        if self.format == "rtsp":
            return {"rtsp_transport": "tcp"}
        fragmented = self.format in ("mp4", "mov") and cfg.live
        if self._segments:
            opts = {"segment_time": f"{cfg.segment_time:g}", "segment_format": self.format, "reset_timestamps": "1"}
            if self._segments == "strftime":
                opts["strftime"] = "1"
            if fragmented:
                opts["segment_format_options"] = f"movflags={_FRAGMENTED_MP4}"
            return opts
        return {"movflags": _FRAGMENTED_MP4} if fragmented else {}

    def __enter__(self) -> Self:
        target = self._open_target()
        try:
            muxer = "segment" if self._segments else self.format
            self._container = av.open(target, mode="w", format=muxer, options=self._format_options())
        except (av.FFmpegError, OSError) as exc:
            where = mask_credentials(str(self._dst))
            raise OutputError(mask_credentials(f"cannot write output {where}: {exc}")) from exc
        try:
            self._add_video()
            for stream in self._audio_in:
                self._add_audio(stream)
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
        parent = self._final.parent
        if not parent.is_dir():
            raise OutputError(f"output folder does not exist: {parent}")
        if self._final.is_dir():
            raise OutputError(f"output path is a directory: {self._final}")
        if not os.access(parent, os.W_OK):
            raise OutputError(f"output folder is not writable: {parent}")
        self._partial = self._final.with_name(self._final.name + ".partial")
        return str(self._partial)

    def _add_video(self) -> None:
        cfg, info = self.config, self.info
        rate = info.frame_rate or Fraction(25)
        stream = self._container.add_stream(cfg.codec, rate=rate)
        cc = stream.codec_context
        cc.width, cc.height, cc.pix_fmt = self.width, self.height, self.pix_fmt
        cc.time_base = info.time_base
        stream.time_base = info.time_base
        cc.thread_count = cfg.threads
        cc.colorspace = self.colour.matrix
        cc.color_range = self.colour.range
        cc.color_primaries = self.colour.primaries
        cc.color_trc = self.colour.transfer
        private = {o.name for o in cc.supported_options.private}
        options: dict[str, str] = {}
        for key, value, default in (("crf", cfg.crf, 18), ("preset", cfg.preset, None), ("tune", cfg.tune, None)):
            if value is not None and key not in private:
                raise ConfigError(f"encoder {cfg.codec} has no {key!r} option; leave --{key} unset")
            if value is None and key in private and default is not None and cfg.codec in ("libx264", "libx265"):
                value = default
            if value is not None:
                options[key] = str(value)
        if cfg.codec == "libx265":
            options.setdefault("x265-params", "log-level=error")
        gop = cfg.gop
        if gop is None and self._segments:  # files are cut at keyframes: one a second
            gop = max(1, round(rate))
        if gop:
            cc.gop_size = gop
        cc.options = options
        self._video = stream

    def _audio_copy_ok(self, stream) -> bool:
        """Dry-run a copy of ``stream`` into an in-memory container of our format: header, one
        packet and trailer, because muxers (mp4's) check some codecs only when writing samples."""
        probe = av.open(io.BytesIO(), mode="w", format=self.format)
        try:
            out = probe.add_stream_from_template(stream)
            probe.start_encoding()
            packet = av.Packet(_probe_payload(stream))
            packet.pts = packet.dts = 0
            packet.time_base = stream.time_base
            packet.stream = out
            probe.mux(packet)
            probe.close()
            return True
        except (av.FFmpegError, ValueError, NotImplementedError):
            return False

    def _add_audio(self, stream) -> None:
        if self._audio_copy_ok(stream):
            self._audio_map[stream.index] = (self._container.add_stream_from_template(stream), None, None)
            return
        codec = "libopus" if self.format == "webm" else "aac"
        rate = stream.codec_context.sample_rate or 48000
        if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
            rate = 48000
        out = self._container.add_stream(codec, rate=rate)
        # the default layout for the channel count: an unordered "2 channels" isn't muxable in mp4
        channels = stream.codec_context.channels
        out.codec_context.layout = _DEFAULT_LAYOUTS.get(channels, stream.codec_context.layout)
        decoder = av.CodecContext.create(stream.codec_context.name, "r")
        decoder.extradata = stream.codec_context.extradata
        decoder.sample_rate = stream.codec_context.sample_rate
        decoder.layout = stream.codec_context.layout
        resampler = av.AudioResampler(format=out.codec_context.codec.audio_formats[0].name,
                                      layout=out.codec_context.layout, rate=rate)
        self._audio_map[stream.index] = (out, decoder, resampler)
        self.notices.append(
            f"audio stream {stream.index} ({stream.codec_context.name}) cannot be copied into "
            f"{self.format}; re-encoded as {codec}"
        )

    # -- writing -----------------------------------------------------------------------------
    def make_frame(self, frame: Frame) -> Frame:
        """Turn a frame carrying an H×W×3 uint8 RGB array into one carrying the encoder's
        ``av.VideoFrame`` (colour matrix/range of the input). Thread-safe; runs off the encoder thread.
        """
        rgb: np.ndarray = frame.image
        if rgb.shape[0] != self.height or rgb.shape[1] != self.width:
            rgb = np.ascontiguousarray(rgb[: self.height, : self.width])
        vf = av.VideoFrame.from_ndarray(rgb, format="rgb24")
        cs = sws_colorspace(self.colour.matrix)
        out = vf.reformat(
            format=self.pix_fmt, src_colorspace=cs, dst_colorspace=cs,
            src_color_range=RANGE_FULL, dst_color_range=self.colour.range, interpolation=SWS_FLAGS,
        )
        return self._stamp(frame, out)

    @property
    def takes_planes(self) -> bool:
        """Whether :meth:`make_frame_planes` can hand 8-bit 4:2:0 planes to the encoder as they are."""
        return self.pix_fmt in ("yuv420p", "yuvj420p")

    def make_frame_planes(self, frame: Frame) -> Frame:
        """Like :meth:`make_frame` for a frame carrying 8-bit 4:2:0 planes ((3H/2)×W uint8, PyAV's
        yuv420p layout) already in this sink's colour matrix and range (the device colour chain).
        Planes of another size than the encoder's go through swscale and :meth:`make_frame`."""
        planes: np.ndarray = frame.image
        fmt = self.pix_fmt if self.takes_planes else "yuv420p"
        vf = av.VideoFrame.from_ndarray(planes, format=fmt)
        if fmt == self.pix_fmt and (vf.width, vf.height) == (self.width, self.height):
            return self._stamp(frame, vf)
        cs = sws_colorspace(self.colour.matrix)
        rgb = vf.reformat(format="rgb24", src_colorspace=cs, dst_colorspace=cs, src_color_range=self.colour.range,
                          dst_color_range=RANGE_FULL, interpolation=SWS_FLAGS)
        return self.make_frame(frame.with_image(rgb.to_ndarray()))

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
            for packet in self._video.encode(item.image):
                self._container.mux(packet)
            self.frames_written += 1
        except av.FFmpegError as exc:
            self._failed = True
            index = item.index if isinstance(item, Frame) else None
            raise EncodeError(mask_credentials(f"encoding failed: {exc}"), index) from exc

    def _write_audio(self, item: PassThrough) -> None:
        entry = self._audio_map.get(item.stream_index)
        if entry is None:
            return
        out, decoder, resampler = entry
        packet = item.payload
        if decoder is None:
            packet.stream = out
            self._container.mux(packet)
            return
        for frame in decoder.decode(packet):
            for rf in resampler.resample(frame):
                for p in out.encode(rf):
                    self._container.mux(p)

    @property
    def audio_outputs(self) -> list[dict]:
        """Each output audio stream: its codec, and whether the input's packets are copied
        (else decoded and re-encoded)."""
        return [{"codec": out.codec_context.name, "copied": decoder is None}
                for out, decoder, _ in self._audio_map.values()]

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
                for out, decoder, resampler in self._audio_map.values():
                    if decoder is not None:
                        for rf in resampler.resample(None):
                            for p in out.encode(rf):
                                self._container.mux(p)
                        for p in out.encode(None):
                            self._container.mux(p)
        except av.FFmpegError as exc:
            self._failed = True
            error = EncodeError(mask_credentials(f"flushing the encoder failed: {exc}"))
        finally:
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
