"""Colour conversion and resizing on the CPU with FFmpeg's swscale (through PyAV).

The counterpart of :mod:`streamsr.colour` (the same conversions in PyTorch, on the inference
device). Every conversion uses the frame's own matrix and range, accurate rounding and full
chroma resolution.
"""

from __future__ import annotations

import av
import numpy as np

from .frames import RANGE_FULL, ColourTags

__all__ = [
    "RESIZE_FLAGS",
    "SWS_FLAGS",
    "from_planar",
    "from_rgb",
    "resize_rgb",
    "sws_colorspace",
    "to_planar",
    "to_rgb",
    "to_yuv420p",
]

_I = av.video.reformatter.Interpolation
#: swscale flags for every RGB<->YUV conversion: accurate rounding and full chroma resolution;
#: the defaults drift by 1-2 code values per round trip (measured on saturated flat colours).
SWS_FLAGS = _I.BICUBIC | _I.ACCURATE_RND | _I.FULL_CHR_H_INT | _I.FULL_CHR_H_INP
#: the same for a conversion that also resizes (a network's output to the exact size asked for):
#: Lanczos, whose taps swscale widens when shrinking (antialiased)
RESIZE_FLAGS = _I.LANCZOS | _I.ACCURATE_RND | _I.FULL_CHR_H_INT | _I.FULL_CHR_H_INP

# AVColorSpace -> swscale's SWS_CS_* table index (BT.601 where swscale has nothing better).
_SWS_CS = {1: 1, 4: 4, 5: 5, 6: 5, 7: 7, 9: 9, 10: 9}


def sws_colorspace(matrix: int) -> int:
    """swscale colorspace constant for an AVColorSpace value."""
    return _SWS_CS.get(matrix, 5)


def to_rgb(frame: av.VideoFrame, colour: ColourTags) -> np.ndarray:
    """Convert a decoded frame to H×W×3 uint8 full-range RGB with its own matrix and range.

    Args:
        frame: the decoded frame, any pixel format swscale reads.
        colour: resolved colour tags of the frame.
    """
    return _to_full_range(frame, colour, "rgb24").to_ndarray()


def _to_full_range(frame: av.VideoFrame, colour: ColourTags, fmt: str) -> av.VideoFrame:
    """``frame`` as full-range RGB in ``fmt`` (rgb24, planar gbrp), with its own matrix and range."""
    cs = sws_colorspace(colour.matrix)
    return frame.reformat(format=fmt, src_colorspace=cs, dst_colorspace=cs, src_color_range=colour.range,
                          dst_color_range=RANGE_FULL, interpolation=SWS_FLAGS)


def _from_full_range(rgb: av.VideoFrame, pix_fmt: str, colour: ColourTags, size: tuple[int, int] | None) -> av.VideoFrame:
    """A full-range RGB frame (rgb24 or gbrp) in ``pix_fmt`` with ``colour``'s matrix and range,
    resized (Lanczos) to ``size`` = (width, height) when given."""
    cs = sws_colorspace(colour.matrix)
    width, height = size or (None, None)
    flags = SWS_FLAGS if size is None or size == (rgb.width, rgb.height) else RESIZE_FLAGS
    return rgb.reformat(width=width, height=height, format=pix_fmt, src_colorspace=cs, dst_colorspace=cs,
                        src_color_range=RANGE_FULL, dst_color_range=colour.range, interpolation=flags)


#: values a band of rows of :func:`from_planar` holds (512 KiB of float32): its four passes over a
#: band stay in the core's cache instead of streaming a whole 720p plane through memory four times
#: (1.15 against 2.05 ms a 1280x720 frame, measured alone; more under load, where memory is shared)
_BAND = 1 << 17

#: the RGB channel each plane of swscale's planar ``gbrp`` holds (G, B, R)
_GBR = (1, 2, 0)


def _rows(plane, height: int, width: int) -> np.ndarray:
    """A plane's pixels as an H×W uint8 view (without the padding at the end of each line)."""
    return np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[:height, :width]


def to_planar(frame: av.VideoFrame, colour: ColourTags) -> np.ndarray:
    """Like :func:`to_rgb`, as the network takes it: 3×H×W float32 RGB in [0, 1]. swscale writes
    planar RGB, so no interleaved copy is transposed (the same values as :func:`to_rgb` / 255)."""
    gbr = _to_full_range(frame, colour, "gbrp")
    h, w = gbr.height, gbr.width
    chw = np.empty((3, h, w), np.float32)
    for channel, plane in zip(_GBR, gbr.planes, strict=True):
        np.multiply(_rows(plane, h, w), np.float32(1.0 / 255.0), out=chw[channel])
    return chw


def from_planar(chw: np.ndarray, pix_fmt: str, colour: ColourTags, size: tuple[int, int] | None = None) -> av.VideoFrame:
    """Like :func:`from_rgb` for a network's output: 3×H×W float RGB in [0, 1] (not clamped),
    clamped and rounded to 8 bits straight into a planar frame (the same pixels as clamping into
    an interleaved array and :func:`from_rgb`, without its transposed copy)."""
    _, h, w = chw.shape
    gbr = av.VideoFrame(w, h, "gbrp")
    rows = max(1, _BAND // w)
    band = np.empty((min(rows, h), w), np.result_type(chw.dtype, np.float32))  # float64 stays float64
    scale, half = band.dtype.type(255.0), band.dtype.type(0.5)  # float16 computes in float32, float64 in float64
    for channel, plane in zip(_GBR, gbr.planes, strict=True):
        dst = _rows(plane, h, w)
        for y in range(0, h, rows):
            b = band[: min(rows, h - y)]
            np.multiply(chw[channel, y : y + rows], scale, out=b)
            b += half
            np.clip(b, 0, 255, out=b)
            np.copyto(dst[y : y + rows], b, casting="unsafe")
    return _from_full_range(gbr, pix_fmt, colour, size)


def from_rgb(rgb: np.ndarray, pix_fmt: str, colour: ColourTags, size: tuple[int, int] | None = None) -> av.VideoFrame:
    """H×W×3 uint8 full-range RGB → a frame in ``pix_fmt`` with ``colour``'s matrix and range,
    resized (Lanczos) to ``size`` = (width, height) when given.
    """
    return _from_full_range(av.VideoFrame.from_ndarray(rgb, format="rgb24"), pix_fmt, colour, size)


def resize_rgb(rgb: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """H×W×3 uint8 RGB resized to ``size`` = (width, height) exactly as a run resizes a network's
    output (swscale, Lanczos, accurate rounding)."""
    if (rgb.shape[1], rgb.shape[0]) == tuple(size):
        return rgb
    vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    return vf.reformat(width=size[0], height=size[1], interpolation=RESIZE_FLAGS).to_ndarray()


def to_yuv420p(frame: av.VideoFrame, colour: ColourTags) -> av.VideoFrame:
    """Repack any YUV frame (4:2:2, 10-bit, NV12 from a hardware decoder) as 8-bit yuv420p in the
    same matrix and range."""
    cs = sws_colorspace(colour.matrix)
    return frame.reformat(format="yuv420p", src_colorspace=cs, dst_colorspace=cs, src_color_range=colour.range,
                          dst_color_range=colour.range, interpolation=SWS_FLAGS)
