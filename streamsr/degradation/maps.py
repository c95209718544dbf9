"""Degradation record → the per-pixel maps a degradation-aware model (UDVD) takes.

The blur kernel is described by its SRMD code: the projection of the flattened 15×15 kernel onto
the top 15 principal directions of ~10k random training kernels (PCA without centring; computed
by ``tools/make_pca.py`` and shipped as ``srmd_pca.safetensors``). The noise map is σ/255.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..errors import ConfigError, WeightsError
from .kernels import KERNEL_SIZE, isotropic_gaussian

__all__ = [
    "CODE_DIM",
    "PCA_FILE",
    "Degradation",
    "code_map",
    "degradation_maps",
    "kernel_code",
    "load_pca",
    "noise_map",
]

CODE_DIM = 15
PCA_FILE = "srmd_pca.safetensors"


@functools.lru_cache(maxsize=1)
def load_pca() -> np.ndarray:
    """The shipped (225, 15) projection matrix.

    Raises:
        WeightsError: the file is missing (run tools/make_pca.py).
    """
    from safetensors.numpy import load_file

    path = resources.files("streamsr.degradation") / PCA_FILE
    if not path.is_file():
        raise WeightsError(f"{PCA_FILE} is missing from the package; run tools/make_pca.py")
    return load_file(str(path))["pca"].astype(np.float64)


def kernel_code(kernel: np.ndarray) -> np.ndarray:
    """15-dim SRMD code of a 15×15 kernel."""
    if kernel.shape != (KERNEL_SIZE, KERNEL_SIZE):
        raise ConfigError(f"blur kernels must be {KERNEL_SIZE}x{KERNEL_SIZE}, got {kernel.shape}")
    return kernel.reshape(-1) @ load_pca()


@dataclass(frozen=True, kw_only=True)
class Degradation:
    """What happened to the video before it reached us.

    Args:
        blur: isotropic Gaussian kernel width (σ) in HR pixels, SRMD convention; 0 = none.
        noise: Gaussian noise σ on the 0–255 scale.
        kernel: a full 15×15 kernel instead of ``blur`` (for anisotropic blur).
    """

    blur: float = 0.0
    noise: float = 0.0
    kernel: tuple | None = None

    def __post_init__(self) -> None:
        if self.blur < 0 or self.noise < 0:
            raise ConfigError(f"blur and noise must be >= 0, got blur={self.blur}, noise={self.noise}")

    def kernel_array(self) -> np.ndarray:
        """The 15×15 kernel."""
        if self.kernel is not None:
            return np.asarray(self.kernel, dtype=np.float64)
        return isotropic_gaussian(self.blur)

    def code(self) -> np.ndarray:
        """The 15-dim kernel code."""
        return kernel_code(self.kernel_array())


def code_map(code: np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """(n, 15, h, w) float32 kernel-code map from one code (15,) or one per frame (n, 15)."""
    code = np.broadcast_to(np.asarray(code, np.float32).reshape(-1, CODE_DIM), (n, CODE_DIM))
    return np.ascontiguousarray(np.broadcast_to(code[:, :, None, None], (n, CODE_DIM, h, w)))


def noise_map(noise: float | np.ndarray, n: int, h: int, w: int) -> np.ndarray:
    """(n, 1, h, w) float32 noise map (σ/255) from one σ (0–255 scale) or one per frame."""
    sigma = np.broadcast_to(np.asarray(noise, np.float32).reshape(-1), (n,)) / 255.0
    return np.ascontiguousarray(np.broadcast_to(sigma[:, None, None, None], (n, 1, h, w)))


def degradation_maps(code: np.ndarray, noise: float | np.ndarray, n: int, h: int, w: int) -> dict[str, np.ndarray]:
    """Per-pixel maps for a batch.

    Args:
        code: kernel code, shape (15,) (one for the batch) or (n, 15).
        noise: σ on the 0–255 scale: one value, or one per frame (n,).
        n, h, w: batch size and LR size.

    Returns:
        ``{"kernel_code": (n, 15, h, w), "noise_level": (n, 1, h, w)}`` float32.
    """
    return {"kernel_code": code_map(code, n, h, w), "noise_level": noise_map(noise, n, h, w)}
