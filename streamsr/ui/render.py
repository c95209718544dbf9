"""Frames rendered as ``streamsr run`` writes them, one frame at a time, for the compare page.

A :class:`Rendering` plans a run of its model on the input (:func:`~streamsr.pipeline.plan.plan_run`,
to an output that is never opened), loads the network with the run's backend, and pushes a frame
through the very stages a run builds (:func:`~streamsr.pipeline.job.build_stages`: colour
conversion on the CPU or the device, the network with its extra inputs, tiles when the plan tiles,
rounding, the resize to an exact ``--size``, conversion to the encoder's pixel format). What comes
out is the frame the encoder would be given; it is shown as a player shows it, converted back to
RGB with the output's matrix and range. Only the encoder's own (lossy) compression is left out.

:class:`BicubicRendering` is the baseline: MATLAB bicubic (the project's evaluation protocol) to
the same output size, through the same conversion to the encoder's format.

One difference from a run, said in the page: with ``--noise auto`` a run smooths the noise
estimate over the frames before; a frame rendered on its own is told its own estimate.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
import time

import numpy as np

from ..backends.choice import load_backend
from ..backends.tiling import TiledBackend
from ..config import RunConfig
from ..degradation import NoiseTracker
from ..errors import ConfigError, UnsupportedScaleError
from ..frames import Frame, VideoInfo
from ..io.sink import Sink
from ..machine import Machine
from ..metrics import bicubic_upscale
from ..models.registry import get_model
from ..pipeline.job import build_stages
from ..pipeline.plan import SourcePlan, plan_run, plan_variant
from ..swscale import to_rgb
from .images import frame_rgb

__all__ = ["PREVIEW_DESTINATION", "BicubicRendering", "Rendering", "open_compare", "parse_compare"]

#: the output a preview plans for (Matroska takes every encoder); never opened or written
PREVIEW_DESTINATION = os.path.join(tempfile.gettempdir(), "streamsr-preview-never-written.mkv")


class _OwnNoise(NoiseTracker):
    """Tells each frame its own noise estimate (a frame rendered alone has no frames before it)."""

    def update(self, sigma: float) -> float:
        self.value = float(sigma)
        return self.value


class Rendering:
    """One model's frames as a run of ``config`` hands them to its encoder, as RGB.

    Args:
        config: the run's settings (model, scale or size, backend, device, encoder, pixel format).
        info: the input's video stream.
        source: how a run reads the input (:func:`~streamsr.pipeline.plan.plan_source`).
        machine: this machine (the run's memory bound decides its tiles).

    Attributes:
        plan: the run's :class:`~streamsr.pipeline.plan.RunPlan`.
        label: what the page calls it ("espcn x2").
        last_noise: the noise σ the model was told for the last frame (degradation-aware models).
    """

    def __init__(self, config: RunConfig, info: VideoInfo, source: SourcePlan, machine: Machine):
        # a frame on its own, in any order: tile reuse would show tiles of whichever frame came before
        config = dataclasses.replace(config, reuse="off")
        backend = load_backend(config, plan_variant(config, info))
        try:
            plan = plan_run(config, info, PREVIEW_DESTINATION, source, backend, machine)
            if plan.tile:
                backend = TiledBackend(backend, plan.tile, plan.tile_overlap)
            self.sink = Sink(PREVIEW_DESTINATION, info, *plan.geometry.out_size, plan.sink)
            tracker = _OwnNoise() if plan.estimate_noise else None
            self._stages = build_stages(plan, backend, self.sink, tracker=tracker)[:-1]  # all but the encoder
        except BaseException:
            backend.close()
            raise
        self.plan, self.backend = plan, backend
        self.label = f"{plan.spec.name} {plan.geometry.label}"
        self.last_noise: float | None = None

    @property
    def out_size(self) -> tuple[int, int]:
        """(width, height) of the frames written."""
        return self.sink.width, self.sink.height

    def describe(self) -> dict:
        """What the page shows about it: model, backend, device, sizes, where colour is converted."""
        p, caps = self.plan, self.backend.capabilities
        return {"label": self.label, "model": p.spec.name, "backend": self.backend.name, "device": caps.device,
                "geometry": p.geometry.label, "scale": [round(s, 4) for s in p.geometry.scale],
                "out_size": list(self.out_size), "colour_on": p.colour_on, "pix_fmt": self.sink.pix_fmt,
                "codec": self.sink.config.codec, "tile": p.tile, "noise_estimated": p.estimate_noise}

    def __call__(self, frame: Frame) -> tuple[np.ndarray, float]:
        """The frame as the run writes it: (H×W×3 uint8 RGB, seconds the network took).

        Args:
            frame: a decoded frame from the run's Source (or a :class:`~streamsr.ui.reader.FrameReader`).
        """
        item, seconds = frame, 0.0
        for stage in self._stages:
            t0 = time.perf_counter()
            out = list(stage.process(item)) + list(stage.flush())  # batches of one
            if stage.name == "infer":
                seconds = time.perf_counter() - t0
            (item,) = out
        self.last_noise = item.noise
        return frame_rgb(item.image, self.sink.colour), seconds

    def close(self) -> None:
        """Release the network."""
        self.backend.close()


class BicubicRendering:
    """MATLAB-bicubic (a = −0.5) enlargement to a rendering's output size, converted to the
    encoder's pixel format as that rendering's frames are.

    Args:
        like: the :class:`Rendering` whose output size and encoder format it matches.
    """

    label = "bicubic"

    def __init__(self, like: Rendering):
        self.sink = like.sink
        self.size = like.plan.geometry.out_size
        self.last_noise = None

    def describe(self) -> dict:
        """What the page shows about it."""
        return {"label": self.label, "model": "bicubic", "backend": "numpy", "device": "cpu",
                "geometry": f"MATLAB bicubic to {self.size[0]}x{self.size[1]}", "out_size": [self.sink.width,
                                                                                           self.sink.height]}

    def __call__(self, frame: Frame) -> tuple[np.ndarray, float]:
        """(H×W×3 uint8 RGB, seconds the resize took).

        Args:
            frame: a decoded frame.
        """
        rgb = to_rgb(frame.image, frame.colour)
        t0 = time.perf_counter()
        up = bicubic_upscale(rgb, self.size[0] / rgb.shape[1], size=(self.size[1], self.size[0]))
        seconds = time.perf_counter() - t0
        out = self.sink.make_frame(frame.with_image(up))
        return frame_rgb(out.image, self.sink.colour), seconds

    def close(self) -> None:
        """Nothing to release."""


def parse_compare(text: str | None) -> tuple[str, float | None]:
    """``--compare``'s grammar: ``bicubic``, ``MODEL`` or ``MODEL:SCALE`` → (name, scale or None).

    Args:
        text: the option's value (None: bicubic).

    Raises:
        ConfigError: a scale that is not a number.
    """
    name, _, scale = (text or "bicubic").partition(":")
    if not scale:
        return name, None
    try:
        return name, float(scale)
    except ValueError:
        raise ConfigError(f"--compare wants bicubic, MODEL or MODEL:SCALE; got {text!r}") from None


def open_compare(text: str | None, main: Rendering, config: RunConfig, info: VideoInfo, source: SourcePlan,
                 machine: Machine):
    """The rendering the page compares ``main`` with, at ``main``'s output size.

    A model without a scale runs at the main run's scale, or, where it has no such scale, asked
    for the main output size exactly (``--size``: what ``run --model NAME --size WxH`` writes).

    Args:
        text: ``--compare``'s value.
        main: the model's rendering.
        config, info, source, machine: as for :class:`Rendering` (the same run, another model).

    Raises:
        ConfigError: a compare scale whose output size is not the main one.
    """
    name, scale = parse_compare(text)
    if name == "bicubic":
        return BicubicRendering(main)
    want = main.plan.geometry.out_size
    config = dataclasses.replace(config, weights=None, part=None)  # the main model's own
    if name != "auto" and not get_model(name).conditioned:
        config = dataclasses.replace(config, noise=None, blur=None)
    tries = [dataclasses.replace(config, model=name, scale=scale, size=None)] if scale is not None else [
        dataclasses.replace(config, model=name), dataclasses.replace(config, model=name, scale=None, size=want)]
    for k, candidate in enumerate(tries):
        try:
            other = Rendering(candidate, info, source, machine)
        except UnsupportedScaleError:
            if k + 1 < len(tries):
                continue
            raise
        if other.plan.geometry.out_size == want:
            return other
        other.close()
    got = other.plan.geometry.out_size
    raise ConfigError(f"--compare {text} writes {got[0]}x{got[1]}, the preview's output is {want[0]}x{want[1]}; "
                      f"give a scale that matches, or leave it out (--compare {name})")
