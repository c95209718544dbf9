"""Synthetic test clips and tones, written with PyAV: what the benchmarks measure on and the
tests check against (no downloads). Not on any run's path."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .swscale import SWS_FLAGS

__all__ = ["StaticScene", "encode_tone", "moving_pattern", "texture_pattern", "write_clip"]


def moving_pattern(i: int, h: int, w: int) -> np.ndarray:
    """A textured RGB frame that changes with ``i`` (edges, gradients, colour)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 127 + 100 * np.sin((x + 3 * i) / 7.0)
    g = 127 + 100 * np.cos((y - 2 * i) / 5.0)
    b = ((x // 8 + y // 8 + i) % 2) * 200 + 20
    return np.clip(np.stack([r, g, b], axis=-1), 0, 255).astype(np.uint8)


def write_clip(
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
            encode_tone(out, aus, seconds, amplitude=0.3, layout="stereo")
    return path


def texture_pattern(i: int, h: int, w: int) -> np.ndarray:
    """A sliding 8×8-block random texture (edges, flat areas; the same on every call): a harder
    picture for encoders and networks than :func:`moving_pattern`."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    big = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
    return np.ascontiguousarray(big[i % 8 : i % 8 + h, i % 16 : i % 16 + w])


def encode_tone(container, stream, seconds: float, *, amplitude: float = 0.3, layout: str = "stereo",
                hz: float = 440.0) -> None:
    """Encode ``seconds`` of a sine tone into audio ``stream`` of ``container`` (and flush it)."""
    rate = stream.codec_context.sample_rate
    channels = len(av.AudioLayout(layout).channels)
    n = int(rate * seconds)
    tone = (amplitude * np.sin(2 * np.pi * hz * np.arange(n) / rate) * 32767).astype(np.int16)
    interleaved = np.repeat(tone, channels).reshape(1, -1)
    step = 1024
    for k in range(0, n, step):
        chunk = np.ascontiguousarray(interleaved[:, channels * k : channels * (k + step)])
        af = av.AudioFrame.from_ndarray(chunk, format="s16", layout=layout)
        af.sample_rate, af.pts, af.time_base = rate, k, Fraction(1, rate)
        for p in stream.encode(af):
            container.mux(p)
    for p in stream.encode(None):
        container.mux(p)


class StaticScene:
    """A static camera: a fixed background, ``objects`` textured boxes crossing it at constant
    speeds, and fresh sensor noise on every LR frame (what tile reuse is measured on).

    Args:
        background: the HR scene, H×W×3 uint8 (H and W multiples of ``scale``).
        scale: HR pixels per LR pixel: the LR frame is the HR one MATLAB-bicubic downscaled.
        objects: how many boxes cross it.
        noise: σ of the Gaussian sensor noise added to the LR frame (0-255 scale).
        speed: HR pixels a box moves per frame.
        seed: makes the boxes, their paths and the noise.
    """

    def __init__(self, background: np.ndarray, *, scale: int = 2, objects: int = 2, noise: float = 5.0,
                 speed: float = 6.0, seed: int = 0):
        h, w = background.shape[:2]
        if h % scale or w % scale:
            raise ValueError(f"the background's sides ({w}x{h}) must be multiples of the scale {scale}")
        self.background, self.scale, self.noise, self.seed = background, scale, noise, seed
        rng = np.random.default_rng(seed)
        self.boxes = []
        for _ in range(objects):
            bh, bw = int(rng.integers(h // 8, h // 4)), int(rng.integers(w // 10, w // 5))
            texture = np.kron(rng.integers(0, 255, (bh // 4 + 1, bw // 4 + 1, 3)), np.ones((4, 4, 1)))[:bh, :bw]
            y = int(rng.integers(0, h - bh))
            direction = 1 if rng.random() < 0.5 else -1
            self.boxes.append((texture.astype(np.uint8), y, direction * speed * rng.uniform(0.7, 1.3)))

    def _left(self, i: int, box: int) -> int:
        """The left edge of a box in frame ``i``: it enters on one side, leaves on the other, again."""
        texture, _, v = self.boxes[box]
        period = self.background.shape[1] + texture.shape[1]
        return round(i * v) % period - texture.shape[1]

    def box_spans(self, i: int) -> list[tuple[int, int, int, int]]:
        """Where the boxes are in HR frame ``i``: (y0, y1, x0, x1) each, clipped to the frame."""
        w = self.background.shape[1]
        out = []
        for k, (texture, y, _) in enumerate(self.boxes):
            x = self._left(i, k)
            out.append((y, y + texture.shape[0], max(0, x), min(w, x + texture.shape[1])))
        return out

    def hr(self, i: int) -> np.ndarray:
        """HR frame ``i``, the ground truth (H×W×3 uint8)."""
        frame = self.background.copy()
        for k, (y0, y1, x0, x1) in enumerate(self.box_spans(i)):
            if x1 > x0:
                x = self._left(i, k)
                frame[y0:y1, x0:x1] = self.boxes[k][0][:, x0 - x : x1 - x]
        return frame

    def lr(self, i: int) -> np.ndarray:
        """LR frame ``i``: the HR frame bicubic-downscaled, with frame ``i``'s own noise."""
        from .metrics import downscale

        small = downscale(self.hr(i), self.scale).astype(np.float32)
        rng = np.random.default_rng((self.seed, i))
        return np.clip(np.round(small + rng.normal(0.0, self.noise, small.shape)), 0, 255).astype(np.uint8)
