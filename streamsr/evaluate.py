"""Evaluate a model with the BasicSR protocol: LR by MATLAB bicubic (after an optional blur and
before optional noise), output rounded to uint8, Y-PSNR/SSIM with ``scale`` border pixels cropped.

Works with any backend (``infer(batch, extra)``) or a plain PyTorch module (:class:`ModuleBackend`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .backends.base import BackendBase
from .degradation import Degradation, degrade, estimate_noise
from .errors import InputNotFoundError
from .metrics import bicubic_upscale, downscale, psnr_y, ssim_y
from .models.geometry import FixedFactors
from .models.inputs import Conditioning, InputAssembler
from .models.registry import ModelSpec, ModelVariant

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageScore",
    "ModuleBackend",
    "Upscaler",
    "iter_items",
    "load_rgb",
    "score_image",
    "score_items",
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
        self.code = self.degradation.code() if self.inputs.inputs else None
        self.last_noise: float | None = None

    def __call__(self, lr: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(lr.transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        extra = {}
        if self.code is not None:
            sigma = estimate_noise(lr) if self.noise_auto else self.degradation.noise
            self.last_noise = sigma
            extra = self.inputs.arrays([Conditioning(self.code, sigma)], lr.shape[0], lr.shape[1])
        y = self.backend.infer(x, extra)[0]
        return np.clip(y.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)


_IMAGE_ONLY = ModelSpec(name="image-only", geometry=FixedFactors((1,)), paper="-").variant(1)


def upscale_array(model: nn.Module, lr: np.ndarray) -> np.ndarray:
    """Run a plain (image-only) PyTorch model on one uint8 RGB image."""
    return Upscaler(ModuleBackend(model, _IMAGE_ONLY))(lr)


def score_image(upscale: Callable[[np.ndarray], np.ndarray] | nn.Module, hr: np.ndarray, scale: int,
                name: str = "", degradation: Degradation | None = None, seed: int = 0) -> ImageScore:
    """Synthesize LR from ``hr``, upscale it with the model and with bicubic, score both.

    Args:
        upscale: an :class:`Upscaler` (or a plain image-only PyTorch module).
        hr: ground-truth uint8 RGB image; cropped to a multiple of ``scale``.
        scale: upscale factor; also the border cropped before measuring.
        name: label for the result.
        degradation: blur and noise applied before/after downscaling (None: clean bicubic).
        seed: noise seed, so every model sees the same noisy input.
    """
    if isinstance(upscale, nn.Module):
        module = upscale
        upscale = lambda lr: upscale_array(module, lr)
    h, w = hr.shape[:2]
    hr = hr[: h - h % scale, : w - w % scale]
    if degradation is None:
        lr = downscale(hr, scale)
    else:
        lr = degrade(hr, scale, degradation.kernel_array(), degradation.noise, np.random.default_rng(seed))
    sr = upscale(lr)
    bic = bicubic_upscale(lr, scale)
    return ImageScore(name=name, psnr=psnr_y(sr, hr, scale), ssim=ssim_y(sr, hr, scale),
                      psnr_bicubic=psnr_y(bic, hr, scale), ssim_bicubic=ssim_y(bic, hr, scale),
                      noise_used=getattr(upscale, "last_noise", None))


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


def score_items(upscale: Upscaler, path: str | Path, scale: int, degradation: Degradation | None = None,
                ) -> list[ImageScore]:
    """Score every item of a folder or video (see :func:`iter_items`)."""
    return [score_image(upscale, hr, scale, name, degradation, seed=i)
            for i, (name, hr) in enumerate(iter_items(path))]
