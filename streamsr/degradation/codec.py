"""A real video codec as a degradation: RGB frames through YUV 4:2:0, an encoder and its decoder,
and back (what a frame goes through between a sender and a receiver). For compression-aware
training (IRN's LR on the wire) and for rate-distortion measurements.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

from ..frames import RANGE_FULL, RANGE_LIMITED
from ..swscale import SWS_FLAGS

__all__ = ["CodecResult", "codec_round_trip"]


class CodecResult:
    """Frames after a codec's round trip and what they cost.

    Args:
        frames: the decoded RGB frames (uint8, as given).
        bits: the encoded size in bits.
    """

    def __init__(self, frames: np.ndarray, bits: int):
        self.frames, self.bits = frames, bits


def codec_round_trip(frames: np.ndarray, *, codec: str = "libx264", crf: float = 23, preset: str = "veryfast",
                     intra: bool = False, fps: int = 25) -> CodecResult:
    """Encode N×H×W×3 uint8 RGB frames as one clip (BT.709 limited range, yuv420p) and decode
    them again.

    Args:
        frames: the frames; H and W even.
        codec: the encoder (x264 and x265 take ``crf`` and ``preset``).
        crf: constant rate factor.
        preset: encoder speed preset.
        intra: every frame a keyframe (unrelated images, such as a batch of training patches).
        fps: frame rate (the rate control's idea of time).

    Returns:
        :class:`CodecResult` with the decoded frames and the bits the encoder spent.
    """
    n, h, w, _ = frames.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs even sides, got {w}x{h}")
    ctx = av.CodecContext.create(codec, "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
    ctx.time_base = Fraction(1, fps)
    ctx.framerate = Fraction(fps)
    ctx.colorspace, ctx.color_range = 1, RANGE_LIMITED
    options = {"crf": f"{crf:g}", "preset": preset}
    if codec == "libx265":
        options["x265-params"] = "log-level=error" + (":keyint=1" if intra else "")
    elif intra:
        options["x264-params"] = "keyint=1"
    ctx.options = options
    packets = []
    for i, rgb in enumerate(frames):
        vf = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        yuv = vf.reformat(format="yuv420p", src_colorspace=1, dst_colorspace=1, dst_color_range=RANGE_LIMITED,
                          interpolation=SWS_FLAGS)
        yuv.pts = i
        packets += ctx.encode(yuv)
    packets += ctx.encode(None)
    dec = av.CodecContext.create(_decoder(codec), "r")
    dec.extradata = ctx.extradata
    out = []
    for packet in [*packets, None]:
        for frame in dec.decode(packet):
            out.append(frame.reformat(format="rgb24", src_colorspace=1, dst_colorspace=1, src_color_range=RANGE_LIMITED,
                                      dst_color_range=RANGE_FULL, interpolation=SWS_FLAGS).to_ndarray())
    if len(out) != n:
        raise RuntimeError(f"{codec} returned {len(out)} of {n} frames")
    return CodecResult(np.stack(out), sum(p.size for p in packets) * 8)


def _decoder(codec: str) -> str:
    """The decoder of an encoder's bitstream."""
    return {"libx264": "h264", "libx265": "hevc", "libvpx-vp9": "vp9", "libaom-av1": "av1",
            "libsvtav1": "av1"}.get(codec, codec)
