"""Degradations: blur kernels, their PCA codes, per-pixel maps for UDVD, LR synthesis, noise estimation."""

from .kernels import KERNEL_SIZE, anisotropic_gaussian, isotropic_gaussian, random_anisotropic
from .maps import Degradation, code_map, degradation_maps, kernel_code, load_pca, noise_map
from .noise import NoiseTracker, estimate_noise
from .synth import degrade

__all__ = [
    "KERNEL_SIZE",
    "Degradation",
    "code_map",
    "noise_map",
    "NoiseTracker",
    "anisotropic_gaussian",
    "degradation_maps",
    "degrade",
    "estimate_noise",
    "isotropic_gaussian",
    "kernel_code",
    "load_pca",
    "random_anisotropic",
]
