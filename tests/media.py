"""Synthesize short test videos with PyAV (no downloads)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from streamsr.swscale import SWS_FLAGS


def moving_pattern(i: int, h: int, w: int) -> np.ndarray:
    """A textured RGB frame that changes with ``i`` (edges, gradients, colour)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 127 + 100 * np.sin((x + 3 * i) / 7.0)
    g = 127 + 100 * np.cos((y - 2 * i) / 5.0)
    b = ((x // 8 + y // 8 + i) % 2) * 200 + 20
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def make_video(
    path: str | Path,
    *,
    frames: int = 12,
    size: tuple[int, int] = (64, 48),
    fps: int = 25,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    container: str | None = None,
    pts: Sequence[int] | None = None,
    time_base: Fraction | None = None,
    audio: str | None = None,
    image: Callable[[int, int, int], np.ndarray] = moving_pattern,
    colorspace: int | None = None,
    color_range: int | None = None,
    options: dict | None = None,
) -> Path:
    """Write a clip. ``pts`` (in ``time_base``) makes a variable-frame-rate clip; ``audio`` is an
    audio encoder name (e.g. "aac", "pcm_s16le") for a 440 Hz tone track."""
    path = Path(path)
    w, h = size
    with av.open(str(path), "w", format=container) as out:
        vs = out.add_stream(codec, rate=fps)
        vs.width, vs.height, vs.pix_fmt = w, h, pix_fmt
        tb = time_base or Fraction(1, fps)
        vs.codec_context.time_base = tb
        vs.time_base = tb
        if options:
            vs.codec_context.options = options
        if colorspace is not None:
            vs.codec_context.colorspace = colorspace
        if color_range is not None:
            vs.codec_context.color_range = color_range
        aus = None
        if audio:
            aus = out.add_stream(audio, rate=48000)
            aus.codec_context.layout = "stereo"
        for i in range(frames):
            vf = av.VideoFrame.from_ndarray(image(i, h, w), format="rgb24")
            kw = {}
            if colorspace is not None:
                kw.update(src_colorspace=colorspace, dst_colorspace=colorspace)
            if color_range is not None:
                kw.update(src_color_range=2, dst_color_range=color_range)
            vf = vf.reformat(format=pix_fmt, interpolation=SWS_FLAGS, **kw)
            if colorspace is not None:
                vf.colorspace = colorspace
            if color_range is not None:
                vf.color_range = color_range
            vf.pts = pts[i] if pts is not None else i
            vf.time_base = tb
            for p in vs.encode(vf):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
        if aus is not None:
            seconds = (frames / fps) if pts is None else float(pts[-1] * tb) + 0.1
            n = int(48000 * seconds)
            t = np.arange(n) / 48000
            tone = (0.3 * np.sin(2 * np.pi * 440 * t) * 32767).astype(np.int16)
            stereo = np.stack([tone, tone]).reshape(1, -1, order="F")
            step = 1024
            for k in range(0, n, step):
                chunk = np.ascontiguousarray(stereo[:, 2 * k : 2 * (k + step)])
                af = av.AudioFrame.from_ndarray(chunk, format="s16", layout="stereo")
                af.sample_rate = 48000
                af.pts = k
                af.time_base = Fraction(1, 48000)
                for p in aus.encode(af):
                    out.mux(p)
            for p in aus.encode(None):
                out.mux(p)
    return path


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

