"""Noise level estimation from the frames themselves.

Estimator: Donoho & Johnstone's robust median estimator on the finest diagonal wavelet subband
(σ = median(|HH|) / 0.6745, Haar), computed on each colour channel and averaged. Image structure
lives mostly in the coarser subbands and the median ignores the edges that leak into HH, so it is
robust; on textured content it slightly overestimates. :class:`NoiseTracker` smooths the per-frame
estimates over time with a median of recent frames followed by an exponential average.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = ["NoiseTracker", "estimate_noise", "estimate_noise_batch"]


def estimate_noise(img: np.ndarray) -> float:
    """σ of additive white Gaussian noise on the 0–255 scale.

    Args:
        img: H×W×C or H×W image, uint8 or float in 0–255.
    """
    x = np.asarray(img, dtype=np.float64)
    x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
    hh = np.abs(_haar_hh(x)).reshape(x.shape[0], -1)
    k = (hh.shape[1] - 1) // 2  # the lower middle value, as torch.median takes it
    return float((np.partition(hh, k, axis=1)[:, k] / 0.6745).mean())


def _haar_hh(x):
    """The finest diagonal Haar subband of ``...×H×W`` (numpy array or tensor; odd sides cropped)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    x = x[..., :h, :w]
    return (x[..., 0::2, 0::2] - x[..., 0::2, 1::2] - x[..., 1::2, 0::2] + x[..., 1::2, 1::2]) / 2.0


def estimate_noise_batch(x: torch.Tensor) -> torch.Tensor:
    """:func:`estimate_noise` for a batch on any device: N×C×H×W on the 0–255 scale → N σ values."""
    n, c = x.shape[:2]
    return (_haar_hh(x).abs().reshape(n, c, -1).median(dim=2).values / 0.6745).mean(dim=1)


class NoiseTracker:
    """Temporal smoothing of per-frame noise estimates (median of a window, then EMA).

    Args:
        window: frames in the median window.
        alpha: weight of a new median in the exponential average.
    """

    def __init__(self, window: int = 9, alpha: float = 0.2):
        self._recent: deque[float] = deque(maxlen=window)
        self.alpha = alpha
        self.value: float | None = None

    def update(self, sigma: float) -> float:
        """Add one frame's estimate; return the smoothed level."""
        self._recent.append(sigma)
        med = float(np.median(self._recent))
        self.value = med if self.value is None else (1 - self.alpha) * self.value + self.alpha * med
        return self.value
