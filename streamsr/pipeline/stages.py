"""The stages of an upscaling run: colour conversion, batched inference, post-processing, encoding."""

from __future__ import annotations

import dataclasses
import time
from typing import Iterable

import numpy as np

from ..degradation import NoiseTracker, estimate_noise
from ..frames import Frame, PassThrough
from ..io.sink import Sink
from ..io.source import to_rgb
from .runner import Stage
from .stats import LatencyStats

__all__ = ["ToTensorStage", "InferStage", "ToFrameStage", "EncodeStage"]


class ToTensorStage(Stage):
    """Decoded ``av.VideoFrame`` → C×H×W float32 RGB in [0, 1] (the frame's own matrix and range).

    Args:
        noise: a :class:`NoiseTracker` when the model is told the noise level and it is estimated
            from the frames (``--noise auto``); the smoothed estimate travels on the frame.
    """

    def __init__(self, noise: NoiseTracker | None = None) -> None:
        super().__init__("preprocess")
        self.noise = noise

    def process(self, item: Frame) -> Iterable[Frame]:
        rgb = to_rgb(item.image, item.colour)
        chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
        chw *= 1.0 / 255.0
        out = item.with_image(chw)
        if self.noise is not None:
            out = dataclasses.replace(out, noise=self.noise.update(estimate_noise(rgb)))
        return (out,)


class InferStage(Stage):
    """Groups up to ``batch_size`` frames of one size and runs the backend on them.

    Args:
        backend: a loaded backend.
        batch_size: frames per inference call.
        maps: for degradation-aware models, ``maps(frames, h, w) -> {input name: N×C×h×w}``;
            None for image-only models.
        max_latency: live mode: frames older than this (seconds since they were decoded) are
            dropped before inference (counted in ``stats.dropped``): they could only be late.
    """

    def __init__(self, backend, batch_size: int = 1, maps=None, max_latency: float | None = None):
        super().__init__("infer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.backend = backend
        self.batch_size = batch_size
        self.maps = maps
        self.max_latency = max_latency
        self._held: list[Frame] = []

    def _run(self) -> list[Frame]:
        frames, self._held = self._held, []
        if not frames:
            return []
        batch = np.stack([f.image for f in frames])
        extra = self.maps(frames, batch.shape[2], batch.shape[3]) if self.maps is not None else {}
        out = self.backend.infer(batch, extra)
        return [f.with_image(o) for f, o in zip(frames, out)]

    def process(self, item: Frame) -> Iterable[Frame]:
        if self.max_latency is not None and time.monotonic() - item.arrival > self.max_latency:
            self.stats.add_drop()
            return []
        done: list[Frame] = []
        if self._held and self._held[0].image.shape != item.image.shape:
            done = self._run()  # size changed mid-stream: never mix sizes in one batch
        self._held.append(item)
        if len(self._held) >= self.batch_size:
            done += self._run()
        return done

    def flush(self) -> Iterable[Frame]:
        return self._run()


class ToFrameStage(Stage):
    """C×H×W float output → clamped, rounded uint8 RGB → the encoder's ``av.VideoFrame``."""

    def __init__(self, sink: Sink):
        super().__init__("postprocess")
        self.sink = sink

    def process(self, item: Frame) -> Iterable[Frame]:
        chw = item.image
        hwc = np.empty((chw.shape[1], chw.shape[2], 3), dtype=np.uint8)
        np.clip(chw.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255, out=hwc, casting="unsafe")
        return (self.sink.make_frame(item.with_image(hwc)),)


class EncodeStage(Stage):
    """Encodes frames and muxes audio packets (the last stage); records capture-to-encode latency."""

    handles_passthrough = True

    def __init__(self, sink: Sink, latency: LatencyStats | None = None):
        super().__init__("encode")
        self.sink = sink
        self.latency = latency

    def process(self, item: Frame | PassThrough) -> Iterable[Frame]:
        self.sink.write(item)
        if self.latency is not None and isinstance(item, Frame):
            self.latency.add(time.monotonic() - item.arrival)
        return ()
