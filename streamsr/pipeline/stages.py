"""The stages of an upscaling run: colour conversion, batched inference, post-processing, encoding.

Two chains share the batching, inference and encoding stages:

- CPU colour (any backend): swscale turns decoded frames into float RGB (:class:`ToTensorStage`),
  the backend upscales numpy batches, and :class:`ToFrameStage` rounds and converts back.
- device colour (``--colour-on device``, backends with ``infer_tensor``): its two stages live in
  :mod:`.device_stages` (PyTorch is imported only by a run that takes that chain).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable

import numpy as np

from ..degradation import NoiseTracker, estimate_noise
from ..frames import Frame, PassThrough
from ..io.sink import Sink
from ..models.inputs import Conditioning, InputAssembler, run_conditioning
from ..swscale import to_planar, to_rgb
from .runner import Stage
from .stats import LatencyStats

__all__ = ["EncodeStage", "InferStage", "Telling", "ToFrameStage", "ToTensorStage"]


@dataclasses.dataclass(frozen=True)
class Telling:
    """What a degradation-aware run tells its model about every frame.

    Args:
        blur: the isotropic blur width in HR pixels.
        noise: the noise σ (0–255), or None to tell each frame's own estimate (``frame.noise``).
    """

    blur: float
    noise: float | None = None

    def conditions(self, sigmas: list[float | None]) -> list[Conditioning]:
        """One :class:`Conditioning` per frame, from each frame's estimated σ (used when the
        run's noise is not fixed)."""
        return [run_conditioning(self.blur, self.noise if self.noise is not None else (s or 0.0)) for s in sigmas]


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
        if self.noise is None:
            return (item.with_image(to_planar(item.image, item.colour)),)
        rgb = to_rgb(item.image, item.colour)  # the noise estimate reads interleaved 8-bit RGB
        chw = np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32)
        chw *= 1.0 / 255.0
        return (dataclasses.replace(item.with_image(chw), noise=self.noise.update(estimate_noise(rgb))),)


class InferStage(Stage):
    """Groups up to ``batch_size`` frames of one size and runs the backend on them.

    Args:
        backend: a loaded backend.
        batch_size: frames per inference call.
        inputs: builds the model's inputs other than the image (None for image-only models).
        telling: what a degradation-aware model is told (with ``inputs``).
        out_of: ``(h, w) -> (H, W)``: the network's output size for an h×w batch (inputs on the
            output grid are built at it).
        max_latency: live mode: frames older than this (seconds since they were decoded) are
            dropped before inference (counted in ``stats.dropped``): they could only be late.
        clock: the clock frame ages are measured on (``time.monotonic``; tests drive their own).
        reuse: a :class:`~streamsr.pipeline.reuse.TileReuse` on ``backend``: frames then run one by
            one, only their changed tiles through the network.
    """

    def __init__(self, backend, batch_size: int = 1, *, inputs: InputAssembler | None = None,
                 telling: Telling | None = None, max_latency: float | None = None, clock=time.monotonic,
                 out_of=None, reuse=None):
        super().__init__("infer")
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        if (inputs is not None and inputs.inputs) and telling is None:
            raise ValueError("a model with extra inputs needs to be told the degradation (telling)")
        self.backend = backend
        self.batch_size = batch_size
        self.inputs = inputs if inputs is not None and inputs.inputs else None
        self.telling = telling
        self.out_of = out_of or (lambda h, w: None)
        self.max_latency = max_latency
        self.clock = clock
        self.reuse = reuse
        self._held: list[Frame] = []

    def _extra(self, frames: list[Frame], h: int, w: int) -> dict[str, np.ndarray]:
        if self.inputs is None:
            return {}
        return self.inputs.arrays(self.telling.conditions([f.noise for f in frames]), h, w, self.out_of(h, w))

    def _run(self) -> list[Frame]:
        frames, self._held = self._held, []
        if not frames:
            return []
        if self.reuse is not None:
            return [f.with_image(self.reuse(f.image, self._extra([f], *f.image.shape[1:]), f.time, f.key))
                    for f in frames]
        batch = np.stack([f.image for f in frames])
        out = self.backend.infer(batch, self._extra(frames, *batch.shape[2:]))
        return [f.with_image(o) for f, o in zip(frames, out, strict=True)]

    def process(self, item: Frame) -> Iterable[Frame]:
        if self.max_latency is not None and self.clock() - item.arrival > self.max_latency:
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
    """C×H×W float output → clamped, rounded uint8 RGB → the encoder's ``av.VideoFrame``;
    4:2:0 planes from the device colour chain go to the encoder's frame as they are."""

    def __init__(self, sink: Sink):
        super().__init__("postprocess")
        self.sink = sink

    def process(self, item: Frame) -> Iterable[Frame]:
        if item.image.ndim == 2:
            return (self.sink.make_frame_planes(item),)
        return (self.sink.make_frame_chw(item),)


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
