"""SRMD blur kernels (Zhang et al., CVPR 2018): 15×15 Gaussians, isotropic or anisotropic."""

from __future__ import annotations

import numpy as np

__all__ = ["KERNEL_SIZE", "anisotropic_gaussian", "isotropic_gaussian", "random_anisotropic"]

KERNEL_SIZE = 15


def _grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    r = (size - 1) / 2
    y, x = np.mgrid[-r : r + 1, -r : r + 1]
    return x, y


def isotropic_gaussian(width: float, size: int = KERNEL_SIZE) -> np.ndarray:
    """Normalized isotropic Gaussian kernel.

    Args:
        width: standard deviation in HR pixels (the SRMD "kernel width"); 0 means no blur.
        size: kernel side (odd).
    """
    k = np.zeros((size, size))
    if width <= 0:
        k[size // 2, size // 2] = 1.0
        return k
    x, y = _grid(size)
    k = np.exp(-(x**2 + y**2) / (2 * width**2))
    return k / k.sum()


def anisotropic_gaussian(var_x: float, var_y: float, angle: float, size: int = KERNEL_SIZE) -> np.ndarray:
    """Normalized anisotropic Gaussian kernel with variances ``var_x``, ``var_y`` along axes rotated
    by ``angle`` radians."""
    c, s = np.cos(angle), np.sin(angle)
    rot = np.array([[c, -s], [s, c]])
    cov = rot @ np.diag([var_x, var_y]) @ rot.T
    inv = np.linalg.inv(cov)
    x, y = _grid(size)
    pts = np.stack([x, y], axis=-1)
    k = np.exp(-0.5 * np.einsum("...i,ij,...j->...", pts, inv, pts))
    return k / k.sum()


def random_anisotropic(rng: np.random.Generator, var_range: tuple[float, float] = (0.1, 10.0),
                       size: int = KERNEL_SIZE) -> np.ndarray:
    """A random training kernel: SRMD's anisotropic Gaussians, angle in [0, π), variances in range."""
    vx, vy = rng.uniform(*var_range, size=2)
    return anisotropic_gaussian(vx, vy, rng.uniform(0, np.pi), size)
