"""``streamsr preview``: a page comparing two renderings of a clip, frame by frame.

:class:`Preview` renders frames on demand (:mod:`streamsr.ui.render`: exactly what ``run``
gives its encoder), keeps them in a bounded cache, and with a reference clip measures both
renderings (Y-PSNR/SSIM, BasicSR protocol: :mod:`streamsr.metrics`). :func:`preview_server`
serves the page and these endpoints, which scripts may use too:

- ``GET /frame/{n}?view=input|bicubic|sr|other|compare`` — PNG at its real size: the input,
  MATLAB bicubic, the model, the rendering it is compared with (``--compare``), or the two side
  by side as the page's wipe shows them (``&at=0..1``, the wipe's place; ``&mode=side``: next to
  each other);
- ``GET /api/info`` — the input, both renderings (model, backend, device, sizes), the reference;
- ``GET /api/metrics/{n}`` — that frame's inference times, the noise told, and with a reference
  the PSNR/SSIM of both renderings.
"""

from __future__ import annotations

import dataclasses
import math
import os
import threading
from typing import Self

import numpy as np

from ..config import RunConfig
from ..errors import ConfigError
from ..machine import Machine
from ..metrics import psnr_y, ssim_y
from ..pipeline.plan import plan_source
from ..swscale import to_rgb
from ..urls import mask_credentials
from .http import PageServer, Response, json_response
from .images import ByteLRU, encode_png
from .reader import FrameReader
from .render import BicubicRendering, Rendering, open_compare

__all__ = ["VIEWS", "Preview", "preview_server"]

#: what ``/frame/{n}?view=`` can show
VIEWS = ("input", "bicubic", "sr", "other", "compare")


class Preview:
    """A clip, the model's rendering and the one it is compared with, frame by frame; thread-safe
    (one frame renders at a time: a backend is not shared between threads).

    Args:
        path: the input video file.
        config: the run's settings (as ``streamsr run`` takes them; None: its defaults).
        compare: ``bicubic``, ``MODEL`` or ``MODEL:SCALE``.
        reference: a video of the ground truth at the output size, frame for frame, or None.
        machine: this machine (None: probed).
        cache_bytes: the most memory rendered frames are kept in.

    Raises:
        StreamSRError subclasses: a live input, a bad file, model, scale or reference.
    """

    def __init__(self, path: str | os.PathLike, config: RunConfig | None = None, *, compare: str | None = None,
                 reference: str | os.PathLike | None = None, machine: Machine | None = None,
                 cache_bytes: int = 384 << 20):
        machine = machine or Machine.probe()
        config = dataclasses.replace(config or RunConfig(), realtime=False)
        source = plan_source(config, path, machine)
        if source.live or source.name in (None, "-"):
            raise ConfigError(f"preview needs a video file, not a stream: {mask_credentials(str(path))}")
        self.name = mask_credentials(os.fspath(path))
        self._closing: list = []
        try:
            self.reader = self._keep(FrameReader(path, decode_threads=config.decode_threads, hwaccel=source.hwaccel))
            info = self.reader.info
            self.sr = self._keep(Rendering(config, info, source, machine))
            self.other = self._keep(open_compare(compare, self.sr, config, info, source, machine))
            self.bicubic = self.other if isinstance(self.other, BicubicRendering) else BicubicRendering(self.sr)
            self.reference = self._keep(FrameReader(reference)) if reference is not None else None
            self.reference_name = mask_credentials(os.fspath(reference)) if reference is not None else None
            if self.reference is not None:
                self._check_reference()
        except BaseException:
            self.close()
            raise
        self._images = ByteLRU(cache_bytes)
        self._pngs = ByteLRU(cache_bytes // 4)
        self._facts: dict[int, dict] = {}  # per frame: inference times, noise, metrics (a few numbers)
        self._lock = threading.Lock()

    def _keep(self, thing):
        self._closing.append(thing)
        return thing

    def _check_reference(self) -> None:
        w, h = self.sr.out_size
        ref = self.reference.info
        if not (0 <= ref.width - w <= 1 and 0 <= ref.height - h <= 1):  # one more pixel: an odd HR 4:2:0 crops
            raise ConfigError(f"--reference {self.reference_name} is {ref.width}x{ref.height}; the output is "
                              f"{w}x{h}: give the ground truth at the output size")

    @property
    def count(self) -> int:
        """Frames in the clip."""
        return self.reader.count

    @property
    def border(self) -> int:
        """Pixels cropped from every side before measuring (BasicSR: the scale, rounded up)."""
        return max(1, math.ceil(max(self.sr.plan.geometry.scale)))

    def info(self) -> dict:
        """What ``/api/info`` answers."""
        i = self.reader.info
        rate = float(i.frame_rate) if i.frame_rate else None
        return {"input": {"name": self.name, "width": i.width, "height": i.height, "fps": rate, "frames": self.count,
                          "codec": i.codec, "pix_fmt": i.pix_fmt},
                "sr": self.sr.describe(), "other": self.other.describe(), "views": list(VIEWS),
                "reference": self.reference_name, "border": self.border,
                "noise_note": "each frame is told its own noise estimate (a run smooths it over the frames before)"
                if self.sr.plan.estimate_noise else None}

    def image(self, n: int, view: str) -> np.ndarray:
        """Frame ``n`` of a view (input, bicubic, sr, other) as H×W×3 uint8 RGB.

        Args:
            n: the frame's number, from 0.
            view: one of :data:`VIEWS` but compare.

        Raises:
            IndexError: no frame ``n``.
            ConfigError: an unknown view.
        """
        rendering = {"sr": self.sr, "other": self.other, "bicubic": self.bicubic}.get(view)
        if rendering is None and view != "input":
            raise ConfigError(f"unknown view {view!r}; views: {', '.join(VIEWS)}")
        key = (n, "other" if rendering is self.other else view)
        cached = self._images.get(key)
        if cached is not None:
            return cached
        with self._lock:
            cached = self._images.get(key)
            if cached is not None:
                return cached
            frame = self.reader.get(n)
            if rendering is None:
                return self._images.put(key, to_rgb(frame.image, frame.colour))
            rgb, seconds = rendering(frame)
            facts = self._facts.setdefault(n, {})
            facts[f"{key[1]}_ms"] = round(seconds * 1000, 2)
            if rendering is self.sr and rendering.last_noise is not None:
                facts["noise"] = round(float(rendering.last_noise), 2)
            return self._images.put(key, rgb)

    def composite(self, n: int, at: float = 0.5, side: bool = False) -> np.ndarray:
        """What the page shows: the compared rendering left of the wipe, the model right of it.

        Args:
            n: the frame's number.
            at: the wipe's place, a fraction of the width.
            side: both whole renderings next to each other instead.
        """
        left, right = self.image(n, "other"), self.image(n, "sr")
        if side:
            return np.concatenate([left, right], axis=1)
        cut = round(min(max(at, 0.0), 1.0) * right.shape[1])
        return np.concatenate([left[:, :cut], right[:, cut:]], axis=1)

    def png(self, n: int, view: str, at: float = 0.5, side: bool = False) -> bytes:
        """:meth:`image` (or :meth:`composite` for ``compare``) as a PNG file, kept in a bounded cache.

        Args:
            n: the frame's number.
            view: one of :data:`VIEWS`.
            at, side: the composite's wipe place and side-by-side layout (``compare`` only).
        """
        key = (n, view, round(at, 4), side) if view == "compare" else (n, view)
        cached = self._pngs.get(key)
        if cached is None:
            rgb = self.composite(n, at, side) if view == "compare" else self.image(n, view)
            cached = self._pngs.put(key, encode_png(rgb))
        return cached

    def metrics(self, n: int) -> dict:
        """Frame ``n``'s facts: inference milliseconds of both renderings, the noise told, and with a
        reference PSNR/SSIM (Y, BasicSR protocol) of both (rendered if they were not).

        Args:
            n: the frame's number.

        Raises:
            IndexError: no frame ``n`` (in the input, or in the reference).
        """
        sr, other = self.image(n, "sr"), self.image(n, "other")
        with self._lock:  # frames are converted by one thread at a time (see images.detached)
            facts = self._facts.setdefault(n, {})
            if self.reference is not None and "psnr" not in facts:
                ref = self.reference.get(n)
                hr = to_rgb(ref.image, ref.colour)[: sr.shape[0], : sr.shape[1]]
                b = self.border
                facts["psnr"] = {"sr": psnr_y(sr, hr, b), "other": psnr_y(other, hr, b)}
                facts["ssim"] = {"sr": ssim_y(sr, hr, b), "other": ssim_y(other, hr, b)}
            return {"frame": n, "time": round(self.reader.get(n).time, 6), **dict(facts)}

    def close(self) -> None:
        """Release the networks and files (idempotent)."""
        while self._closing:
            self._closing.pop().close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def preview_server(preview: Preview, host: str = "127.0.0.1", port: int = 8765) -> PageServer:
    """The page and endpoints of ``preview`` (see the module's docstring); enter it to serve.

    Args:
        preview: what to show.
        host, port: where to listen (127.0.0.1 unless a host is given; port 0 picks a free one).

    Raises:
        ConfigError: the address cannot be listened on.
    """

    def frame(m, q) -> Response:
        view = q.get("view", "sr")
        if view not in VIEWS:
            raise ConfigError(f"unknown view {view!r}; views: {', '.join(VIEWS)}")
        try:
            at = float(q.get("at", 0.5))
        except ValueError:
            at = math.nan
        if not 0.0 <= at <= 1.0:
            raise ConfigError(f"at is the wipe's place, between 0 and 1; got {q.get('at')!r}")
        return Response(preview.png(int(m.group(1)), view, at, q.get("mode") == "side"), "image/png")

    routes = [
        (r"/frame/(\d{1,9})", frame),
        (r"/api/info", lambda m, q: json_response(preview.info())),
        (r"/api/metrics/(\d{1,9})", lambda m, q: json_response(preview.metrics(int(m.group(1))))),
    ]
    return PageServer(host, port, routes, index="preview.html", option="--port")
