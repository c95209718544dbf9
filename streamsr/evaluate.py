"""Evaluate a model with the BasicSR protocol: LR by MATLAB bicubic (after an optional blur and
before optional noise), output rounded to uint8, Y-PSNR/SSIM with ``scale`` border pixels cropped.

Any scale: at a fractional scale ``s`` the LR is floor(HR / s) per axis and the HR is cropped to
round(LR · s), the output size the model must reach (LIIF's arbitrary-scale protocol); the border
cropped is ceil(s). A fixed-factor model reaches it the way a run does: its smallest factor that
is large enough, then swscale's Lanczos to the exact size.

Works with any backend (``infer(batch, extra)``) or a plain PyTorch module (:class:`ModuleBackend`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backends.base import BackendBase
from .degradation import Degradation, degrade, estimate_noise
from .errors import ConfigError, InputNotFoundError
from .metrics import bicubic_upscale, downscale, downscale_to, psnr_y, ssim_y
from .models.geometry import FixedFactors, ScaleRequest, resolve_geometry
from .models.inputs import Conditioning, InputAssembler
from .models.registry import ModelSpec, ModelVariant
from .swscale import resize_rgb

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageScore",
    "ModuleBackend",
    "RoundTripScore",
    "Upscaler",
    "iter_items",
    "load_rgb",
    "score_image",
    "score_items",
    "score_round_trip",
    "upscale_array",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class ImageScore:
    """Scores of one image: the model's and plain bicubic's (and the noise level it was given)."""

    name: str
    psnr: float
    ssim: float
    psnr_bicubic: float
    ssim_bicubic: float
    noise_used: float | None = None

    @property
    def gain(self) -> float:
        """PSNR gain of the model over bicubic in dB."""
        return self.psnr - self.psnr_bicubic


class ModuleBackend(BackendBase):
    """A PyTorch module seen as a backend (host arrays, float32), for training-time validation.

    Args:
        model: the network.
        variant: which network it is (its inputs; its factor for tiling).
    """

    name = "module"

    def __init__(self, model: nn.Module, variant: ModelVariant):
        self.model, self.variant = model, variant

    @torch.no_grad()
    def infer(self, batch: np.ndarray, extra: dict | None = None) -> np.ndarray:
        device = next(self.model.parameters()).device
        args = [torch.from_numpy(batch).to(device)]
        args += [torch.from_numpy(extra[k]).to(device) for k in self.variant.input_names[1:]]
        return self.model(*args).float().cpu().numpy()


class Upscaler:
    """uint8 LR image → uint8 SR image through a backend, with degradation maps when the model
    takes them.

    Args:
        backend: a loaded backend (its ``variant`` says what the network takes).
        degradation: blur/noise to tell a degradation-aware model (None: clean).
        noise_auto: estimate the noise level from the LR image instead of using the given one.
    """

    def __init__(self, backend, degradation: Degradation | None = None, noise_auto: bool = False):
        self.backend = backend
        self.degradation = degradation or Degradation()
        self.noise_auto = noise_auto
        self.inputs = InputAssembler(backend.variant.inputs)
        self.code = self.degradation.code() if backend.variant.spec.conditioned else None
        self.last_noise: float | None = None

    def __call__(self, lr: np.ndarray, size: tuple[int, int] | None = None) -> np.ndarray:
        """Run one H×W×3 uint8 image through the network; resized to ``size`` = (height, width)
        when given and the network puts out another (required for a continuous model)."""
        h, w = lr.shape[:2]
        variant = self.backend.variant
        if size is None and variant.factor is None:
            raise ConfigError(f"{variant.name} takes any scale: give the output size")
        x = np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        cond = None
        if self.code is not None:
            sigma = estimate_noise(lr) if self.noise_auto else self.degradation.noise
            self.last_noise = sigma
            cond = Conditioning(self.code, sigma)
        extra = {}
        if self.inputs.inputs:  # inputs on grids of the output need its size: the network's own
            net = tuple(size) if variant.factor is None else None
            if net is None:
                g = resolve_geometry(variant.spec, ScaleRequest(scale=variant.factor, part=variant.part), w, h)
                net = (g.net_size[1], g.net_size[0])
            extra = self.inputs.arrays([cond], h, w, out=net)
        y = self.backend.infer(x, extra)[0]
        out = np.clip(y.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)
        return out if size is None else resize_rgb(out, (size[1], size[0]))


_IMAGE_ONLY = ModelSpec(name="image-only", geometry=FixedFactors((1,)), paper="-").variant(1)


def upscale_array(model: nn.Module, lr: np.ndarray) -> np.ndarray:
    """Run a plain (image-only) PyTorch model on one uint8 RGB image."""
    return Upscaler(ModuleBackend(model, _IMAGE_ONLY))(lr)


def score_image(upscale: Callable[..., np.ndarray] | nn.Module, hr: np.ndarray, scale: float,
                name: str = "", degradation: Degradation | None = None, seed: int = 0) -> ImageScore:
    """Synthesize LR from ``hr``, upscale it with the model and with bicubic, score both.

    Args:
        upscale: an :class:`Upscaler` (or a plain image-only PyTorch module).
        hr: ground-truth uint8 RGB image; cropped to what ``scale`` maps back to exactly.
        scale: upscale factor, any (see the module's docstring); its ceiling is the border
            cropped before measuring.
        name: label for the result.
        degradation: blur and noise applied before/after downscaling (None: clean bicubic);
            integer scales only.
        seed: noise seed, so every model sees the same noisy input.

    Raises:
        ConfigError: a degradation at a fractional scale.
    """
    if isinstance(upscale, nn.Module):
        module = upscale
        upscale = lambda lr, size=None: upscale_array(module, lr)
    if float(scale).is_integer():
        scale = int(scale)
        h, w = hr.shape[:2]
        hr = hr[: h - h % scale, : w - w % scale]
        if degradation is None:
            lr = downscale(hr, scale)
        else:
            lr = degrade(hr, scale, degradation.kernel_array(), degradation.noise, np.random.default_rng(seed))
    elif degradation is not None:
        raise ConfigError(f"degraded evaluation synthesizes LR at integer scales only; got x{scale:g}")
    else:
        lr, hr = downscale_to(hr, scale)
    sr = upscale(lr, hr.shape[:2])
    bic = bicubic_upscale(lr, scale, size=hr.shape[:2])
    border = math.ceil(scale)
    return ImageScore(name=name, psnr=psnr_y(sr, hr, border), ssim=ssim_y(sr, hr, border),
                      psnr_bicubic=psnr_y(bic, hr, border), ssim_bicubic=ssim_y(bic, hr, border),
                      noise_used=getattr(upscale, "last_noise", None))


@dataclass(frozen=True)
class RoundTripScore:
    """A down/up pair (IRN) on one image: the HR restored from the pair's own LR against the HR
    restored by bicubic from a bicubic LR, and how close the pair's LR is to the bicubic one."""

    name: str
    psnr: float
    ssim: float
    psnr_bicubic: float
    ssim_bicubic: float
    psnr_lr: float

    @property
    def gain(self) -> float:
        """PSNR gain of the round trip over bicubic down and up, in dB."""
        return self.psnr - self.psnr_bicubic


def score_round_trip(down: Callable[..., np.ndarray], up: Callable[..., np.ndarray], hr: np.ndarray, scale: int,
                     name: str = "", through: Callable[[np.ndarray], np.ndarray] | None = None) -> RoundTripScore:
    """Send ``hr`` through a down/up pair (each an :class:`Upscaler` of its part), the LR stored
    as 8-bit frames store it, and score it against bicubic down and up (BasicSR protocol).

    Args:
        down, up: the two parts.
        hr: uint8 RGB image; cropped to a multiple of ``scale``.
        scale: the factor; also the border cropped before measuring.
        name: label for the result.
        through: what happens to the LR on the way (a codec's round trip); None: nothing.
    """
    h, w = hr.shape[:2]
    hr = hr[: h - h % scale, : w - w % scale]
    lr = down(hr)
    lr_bicubic = downscale(hr, scale)
    sent = through(lr) if through is not None else lr
    sr = up(sent, hr.shape[:2])
    bic = bicubic_upscale(through(lr_bicubic) if through is not None else lr_bicubic, scale)
    return RoundTripScore(name=name, psnr=psnr_y(sr, hr, scale), ssim=ssim_y(sr, hr, scale),
                          psnr_bicubic=psnr_y(bic, hr, scale), ssim_bicubic=ssim_y(bic, hr, scale),
                          psnr_lr=psnr_y(lr, lr_bicubic))


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as H×W×3 uint8 RGB with PyAV (no extra imaging dependency)."""
    import av

    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


def iter_items(path: str | Path, every: int = 10, limit: int = 30) -> Iterator[tuple[str, np.ndarray]]:
    """(name, HR image) pairs: every image of a folder (sorted), or frames of a video
    (one in ``every``, at most ``limit``).

    Raises:
        InputNotFoundError: the path does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise InputNotFoundError(f"evaluation input not found: {path}")
    if path.is_dir():
        for p in sorted(q for q in path.iterdir() if q.suffix.lower() in IMAGE_SUFFIXES):
            yield p.stem, load_rgb(p)
        return
    if path.suffix.lower() in IMAGE_SUFFIXES:
        yield path.stem, load_rgb(path)
        return
    from .frames import Frame
    from .io.source import Source
    from .swscale import to_rgb

    taken = 0
    with Source(path, audio=False) as src:
        for item in src:
            if isinstance(item, Frame) and item.index % every == 0:
                yield f"frame{item.index:05d}", to_rgb(item.image, item.colour)
                taken += 1
                if taken >= limit:
                    return


def score_items(upscale: Upscaler, path: str | Path, scale: float, degradation: Degradation | None = None,
                ) -> list[ImageScore]:
    """Score every item of a folder or video (see :func:`iter_items`)."""
    return [score_image(upscale, hr, scale, name, degradation, seed=i)
            for i, (name, hr) in enumerate(iter_items(path))]
