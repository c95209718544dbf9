"""Degradations: blur kernels, their PCA codes, per-pixel maps for UDVD, LR synthesis, noise estimation."""

from .kernels import (
    KERNEL_SIZE,
    anisotropic_gaussian,
    isotropic_gaussian,
    random_anisotropic,
)
from .maps import (
    Degradation,
    code_map,
    degradation_maps,
    kernel_code,
    load_pca,
    noise_map,
)
from .noise import NoiseTracker, estimate_noise, estimate_noise_batch
from .synth import degrade

__all__ = [
    "KERNEL_SIZE",
    "Degradation",
    "NoiseTracker",
    "anisotropic_gaussian",
    "code_map",
    "degradation_maps",
    "degrade",
    "estimate_noise",
    "estimate_noise_batch",
    "isotropic_gaussian",
    "kernel_code",
    "load_pca",
    "noise_map",
    "random_anisotropic",
]
