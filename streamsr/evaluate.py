"""Evaluate a model on images with the BasicSR protocol (LR by MATLAB bicubic, Y-PSNR/SSIM).

Args conventions: images are H×W×3 uint8 RGB arrays; the model is a PyTorch module taking
N×3×H×W float in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .metrics import bicubic_upscale, downscale, psnr_y, ssim_y

__all__ = ["ImageScore", "upscale_array", "score_image", "load_rgb", "score_folder"]


@dataclass(frozen=True)
class ImageScore:
    """Scores of one image: the model's and plain bicubic's."""

    name: str
    psnr: float
    ssim: float
    psnr_bicubic: float
    ssim_bicubic: float

    @property
    def gain(self) -> float:
        """PSNR gain of the model over bicubic in dB."""
        return self.psnr - self.psnr_bicubic


@torch.no_grad()
def upscale_array(model: nn.Module, lr: np.ndarray) -> np.ndarray:
    """Run ``model`` on one uint8 RGB image; returns the clamped, rounded uint8 result."""
    x = torch.from_numpy(lr).permute(2, 0, 1)[None].float().div_(255)
    y = model(x)[0].clamp_(0, 1).mul_(255).round_().byte()
    return y.permute(1, 2, 0).numpy()


def score_image(model: nn.Module, hr: np.ndarray, scale: int, name: str = "") -> ImageScore:
    """Downscale ``hr``, upscale with the model and with bicubic, and score both against ``hr``.

    Args:
        model: the SR network (eval mode).
        hr: ground-truth uint8 RGB image; cropped to a multiple of ``scale``.
        scale: upscale factor; also the border cropped before measuring.
        name: label for the result.
    """
    h, w = hr.shape[:2]
    hr = hr[: h - h % scale, : w - w % scale]
    lr = downscale(hr, scale)
    sr = upscale_array(model, lr)
    bic = bicubic_upscale(lr, scale)
    return ImageScore(
        name=name,
        psnr=psnr_y(sr, hr, scale),
        ssim=ssim_y(sr, hr, scale),
        psnr_bicubic=psnr_y(bic, hr, scale),
        ssim_bicubic=ssim_y(bic, hr, scale),
    )


def load_rgb(path: str | Path) -> np.ndarray:
    """Read an image file as H×W×3 uint8 RGB with PyAV (no extra imaging dependency)."""
    import av

    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return frame.to_ndarray(format="rgb24")


def score_folder(model: nn.Module, folder: str | Path, scale: int) -> list[ImageScore]:
    """Score every .png/.jpg in ``folder`` (sorted by name)."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg", ".bmp"))
    return [score_image(model, load_rgb(p), scale, p.stem) for p in files]
