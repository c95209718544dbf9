"""Where an output goes: the muxer for a path or URL, segment naming, muxer options, and the
file that is written (``.partial`` first, renamed when the run ends well)."""

from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import ConfigError, OutputError
from ..urls import is_url, url_scheme
from .protocols import check_protocol

__all__ = ["container_format", "format_options", "is_file_output", "partial_path", "segment_naming"]

_FORMATS = {
    ".mp4": "mp4", ".m4v": "mp4", ".mkv": "matroska", ".mov": "mov", ".ts": "mpegts",
    ".m2ts": "mpegts", ".webm": "webm", ".avi": "avi", ".nut": "nut", ".flv": "flv",
}

_STREAM_FORMATS = {"rtsp": "rtsp", "rtsps": "rtsp", "rtmp": "flv", "rtmps": "flv", "srt": "mpegts",
                   "udp": "mpegts", "tcp": "mpegts", "rtp": "rtp_mpegts"}

_FRAGMENTED_MP4 = "frag_keyframe+empty_moov+default_base_moof"  # playable even if the process is killed
_STRFTIME = re.compile(r"%[YmdHMSjyb]")
_SEQUENCE = re.compile(r"%0?\d*d")


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


def is_file_output(text: str | None, format: str) -> bool:
    """Whether an output is a single file (written as ``.partial``, renamed at the end) or a
    pattern of files, as opposed to stdout, a stream URL or an HLS playlist."""
    return bool(text) and text != "-" and not is_url(text) and format != "hls"


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


#: muxers that store a stream starting before zero as it is (FFmpeg would shift them otherwise)
_SIGNED_TIMES = ("matroska", "webm")


def format_options(format: str, *, live: bool, hls_time: float, segments: str | None,
                   segment_time: float | None) -> dict[str, str]:
    """Muxer options: HLS playlist kind, RTSP transport, segmenting, fragmented MP4 and data on disk
    every second when live, times kept as they are (Matroska).

    Args:
        format: the muxer (from :func:`container_format`).
        live: a live recording or stream (fragmented MP4, rolling HLS playlist).
        hls_time: HLS segment length in seconds.
        segments: the naming of a segmented output ("strftime", "sequence") or None.
        segment_time: segment length in seconds (with ``segments``).
    """
    if format == "hls":
        opts = {"hls_time": f"{hls_time:g}", "hls_segment_type": "mpegts"}
        if live:
            opts.update(hls_list_size="10", hls_flags="delete_segments+independent_segments")
        else:
            opts.update(hls_list_size="0", hls_playlist_type="vod")
        return opts
    if format == "rtsp":
        return {"rtsp_transport": "tcp"}
    fragmented = format in ("mp4", "mov") and live
    if segments:
        opts = {"segment_time": f"{segment_time:g}", "segment_format": format, "reset_timestamps": "1"}
        if segments == "strftime":
            opts["strftime"] = "1"
        if fragmented:
            opts["segment_format_options"] = f"movflags={_FRAGMENTED_MP4}"
        return opts
    opts = {}
    if format in _SIGNED_TIMES:
        # FFmpeg shifts a whole Matroska file forward when a stream starts before zero (AAC's
        # priming packet at -21 ms from an MP4): the video would no longer keep the input's
        # times. Matroska blocks take negative offsets, so keep every stream's times as they are.
        opts["avoid_negative_ts"] = "disabled"
    if fragmented:
        opts["movflags"] = _FRAGMENTED_MP4
    if live and format in _SIGNED_TIMES + ("mp4", "mov"):
        # a recording must reach the disk as it goes (a killed process keeps what came before): a
        # Matroska cluster or an MP4 fragment a second, each written out at once; without these a
        # small live .mkv held everything in memory (0 bytes on disk after 16 s) until the end
        opts["flush_packets"] = "1"
        if format in _SIGNED_TIMES:
            opts["cluster_time_limit"] = "1000"
        if fragmented:
            opts["frag_duration"] = "1000000"
    return opts


def partial_path(final: Path) -> Path:
    """Where a single-file output is written until the run ends: ``<final>.partial``, created
    (empty) here, so an output that cannot be written fails before the first frame.

    Raises:
        OutputError: the folder is missing or read-only, the path is a folder, or the file
            cannot be created (named, with the system's reason).
    """
    parent = final.parent
    if not parent.is_dir():
        raise OutputError(f"output folder does not exist: {parent}")
    if final.is_dir():
        raise OutputError(f"output path is a directory: {final}")
    if not os.access(parent, os.W_OK):
        raise OutputError(f"output folder is not writable: {parent}")
    partial = final.with_name(final.name + ".partial")
    try:  # the muxer opens its file at the first packet: find out now, not frames into the run
        partial.open("wb").close()
    except OSError as exc:
        raise OutputError(f"cannot create the output {final}: {exc.strerror or exc}") from exc
    return partial
