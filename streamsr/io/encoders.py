"""Video encoder choice: checking a name, the pixel format, rate-control options, and falling
back from a hardware encoder the machine lacks to its software twin."""

from __future__ import annotations

from fractions import Fraction

import av

from ..errors import ConfigError

__all__ = ["CRF_RANGES", "DEFAULT_ENCODER", "check_crf", "check_encoder", "choose_pix_fmt", "default_encoder",
           "encoder_options", "even_size", "usable_encoder"]

_HW_SUFFIXES = ("_nvenc", "_qsv", "_vaapi", "_amf", "_videotoolbox", "_v4l2m2m")
_SOFTWARE_FOR = {"h264": "libx264", "hevc": "libx265", "av1": "libsvtav1"}


#: the video encoder of a run that names none, and of containers that cannot hold H.264
DEFAULT_ENCODER = "libx264"
_CONTAINER_ENCODER = {"webm": "libvpx-vp9"}
#: each encoder's own --crf range (x264 and x265 clamp anything above 51 silently)
CRF_RANGES = {"libx264": (0, 51), "libx265": (0, 51), "libvpx-vp9": (0, 63), "libvpx": (4, 63),
              "libaom-av1": (0, 63), "libsvtav1": (1, 63)}


def default_encoder(format: str) -> str:
    """The encoder a run writing the muxer ``format`` uses when it names none (WebM: VP9)."""
    return _CONTAINER_ENCODER.get(format, DEFAULT_ENCODER)


def check_crf(codec: str, crf: float | None) -> None:
    """Refuse a --crf outside the encoder's own range (encoders with none known pass through).

    Raises:
        ConfigError: out of range, naming the range.
    """
    low, high = CRF_RANGES.get(codec, (None, None))
    if crf is not None and low is not None and not low <= crf <= high:
        raise ConfigError(f"--crf {crf:g} is outside {codec}'s range {low}-{high} (lower is better; 18 is "
                          f"visually lossless for x264)")


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


def choose_pix_fmt(codec: str, wanted: str | None, input_pix_fmt: str) -> str:
    """The output pixel format: the one asked for, else the input's when the encoder takes it,
    else yuv420p (or the encoder's first).

    Raises:
        ConfigError: the encoder does not take the one asked for.
    """
    names = [f.name for f in (check_encoder(codec).video_formats or [])]
    if wanted:
        if names and wanted not in names:
            raise ConfigError(f"encoder {codec} does not take pix_fmt {wanted!r}; it takes: {', '.join(names)}")
        return wanted
    src = input_pix_fmt.replace("yuvj", "yuv")
    if not names or src in names:
        return src
    return "yuv420p" if "yuv420p" in names else names[0]


def even_size(width: int, height: int, pix_fmt: str) -> tuple[int, int]:
    """The largest size not above width×height whose chroma planes the format can hold (4:2:0
    needs even sides)."""
    fmt = av.VideoFormat(pix_fmt, width, height)  # plane sizes are only known for a given size
    cw = fmt.components[1].width if len(fmt.components) > 1 else width
    ch = fmt.components[1].height if len(fmt.components) > 1 else height
    w = width - width % 2 if fmt.is_planar and cw < width else width
    h = height - height % 2 if fmt.is_planar and ch < height else height
    return w, h


def encoder_options(codec: str, private: set[str], crf: float | None, preset: str | None,
                    tune: str | None) -> dict[str, str]:
    """The encoder's private options for crf/preset/tune (x264/x265 default to crf 18).

    Args:
        codec: encoder name.
        private: names of the encoder's private options.
        crf, preset, tune: what the run asks for (None = unset).

    Raises:
        ConfigError: an option the encoder does not have.
    """
    options: dict[str, str] = {}
    for key, value, default in (("crf", crf, 18), ("preset", preset, None), ("tune", tune, None)):
        if value is not None and key not in private:
            raise ConfigError(f"encoder {codec} has no {key!r} option; leave --{key} unset")
        if value is None and key in private and default is not None and codec in ("libx264", "libx265"):
            value = default
        if value is not None:
            options[key] = str(value)
    if codec == "libx265":
        options.setdefault("x265-params", "log-level=error")
    return options
