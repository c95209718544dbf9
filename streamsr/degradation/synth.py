"""LR synthesis with a known degradation: blur → MATLAB bicubic ↓s → quantize → Gaussian noise."""

from __future__ import annotations

import numpy as np

from ..metrics import imresize

__all__ = ["degrade", "blur"]


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve an H×W×C float image with a (small, odd) kernel, reflecting at the borders."""
    r = kernel.shape[0] // 2
    padded = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect")
    out = np.zeros_like(img, dtype=np.float64)
    h, w = img.shape[:2]
    for dy in range(kernel.shape[0]):
        for dx in range(kernel.shape[1]):
            wgt = kernel[dy, dx]
            if wgt > 1e-8:
                out += wgt * padded[dy : dy + h, dx : dx + w]
    return out


def degrade(hr: np.ndarray, scale: int, kernel: np.ndarray | None = None, noise: float = 0.0,
            rng: np.random.Generator | None = None) -> np.ndarray:
    """Synthesize the LR image of a uint8 RGB HR image (SRMD/UDVD recipe).

    Args:
        hr: H×W×3 uint8, cropped here to a multiple of ``scale``.
        scale: downscale factor.
        kernel: blur kernel (None: no blur, plain bicubic).
        noise: Gaussian noise σ on the 0–255 scale, added after quantization.
        rng: random generator for the noise (seeded for reproducible evaluation).

    Returns:
        LR image, uint8.
    """
    h, w = hr.shape[:2]
    x = hr[: h - h % scale, : w - w % scale].astype(np.float64)
    if kernel is not None:
        x = blur(x, kernel)
    lr = np.clip(np.round(imresize(x, 1.0 / scale)), 0, 255)
    if noise > 0:
        rng = rng or np.random.default_rng(0)
        lr = lr + rng.normal(0.0, noise, lr.shape)
    return np.clip(np.round(lr), 0, 255).astype(np.uint8)
