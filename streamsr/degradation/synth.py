"""LR synthesis with a known degradation: blur → MATLAB bicubic ↓s → quantize → Gaussian noise."""

from __future__ import annotations

import numpy as np

from ..metrics import imresize

__all__ = ["blur", "degrade"]


def blur(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Filter an H×W×C image with a (small, odd, point-symmetric) kernel, reflecting at the
    borders; FFT-based, so a 15×15 kernel costs the same as a 3×3 one."""
    r = kernel.shape[0] // 2
    padded = np.pad(np.asarray(img, dtype=np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
    ph, pw = padded.shape[:2]
    spectrum = np.fft.rfft2(padded, axes=(0, 1)) * np.fft.rfft2(kernel[::-1, ::-1], s=(ph, pw))[..., None]
    full = np.fft.irfft2(spectrum, s=(ph, pw), axes=(0, 1))
    h, w = img.shape[:2]
    return full[2 * r : 2 * r + h, 2 * r : 2 * r + w]


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
