"""Synthesize short test videos with PyAV (no downloads)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamsr.synth import moving_pattern, write_clip

make_video = write_clip  # the tests' name for it
__all__ = ["audio_packets", "audio_summary", "make_video", "moving_pattern", "read_video", "save_png"]


def read_video(path: str | Path) -> tuple[list[int], list[np.ndarray], Fraction]:
    """Decode every frame: (pts list, RGB arrays, time_base)."""
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        pts, imgs = [], []
        for f in c.decode(s):
            pts.append(f.pts)
            imgs.append(f.to_ndarray(format="rgb24"))
        return pts, imgs, s.time_base


def audio_packets(path: str | Path) -> list[bytes]:
    """Payloads of every audio packet, in order."""
    with av.open(str(path)) as c:
        if not c.streams.audio:
            return []
        return [bytes(p) for p in c.demux(c.streams.audio[0]) if p.size]


def save_png(img: np.ndarray, path: str | Path) -> Path:
    """Write an H×W×3 uint8 RGB image as PNG with PyAV."""
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
    with av.open(str(path), "w") as out:
        s = out.add_stream("png")
        s.width, s.height, s.pix_fmt = img.shape[1], img.shape[0], "rgb24"
        for p in s.encode(frame):
            out.mux(p)
        for p in s.encode(None):
            out.mux(p)
    return Path(path)


def audio_summary(path):
    """(seconds of decoded audio, packet start times, the loudest frequency in Hz)."""
    with av.open(str(path)) as c:
        stream = c.streams.audio[0]
        starts = [float(p.pts * p.time_base) for p in c.demux(stream) if p.pts is not None]
    with av.open(str(path)) as c:
        rate = c.streams.audio[0].sample_rate
        pcm = np.concatenate([f.to_ndarray().reshape(-1).astype(np.float64) for f in c.decode(audio=0)])
    spectrum = np.abs(np.fft.rfft(pcm[:rate]))
    return len(pcm) / rate, starts, float(np.argmax(spectrum) * rate / min(len(pcm), rate))

