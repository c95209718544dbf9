"""Training patches: random aligned LR/HR crops from an image folder, clean or degraded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..degradation import (
    degrade,
    isotropic_gaussian,
    kernel_code,
    random_anisotropic,
)
from ..errors import ConfigError
from ..evaluate import IMAGE_SUFFIXES, load_rgb
from ..metrics import downscale, imresize
from ..models.inputs import Conditioning
from .config import DegradationSampling

__all__ = ["PatchSampler"]


class PatchSampler:
    """Random training batches.

    Args:
        folder: HR images (png/jpg/bmp).
        scale: upscale factor, or a (low, high) range for a model that takes any scale: each
            batch then draws its factor s uniformly from it, crops HR patches of side
            round(lr_patch · s) and MATLAB-bicubic resizes them to ``lr_patch`` (clean LR only).
        lr_patch: LR patch side.
        degradation: random blur/noise sampling (disabled: MATLAB-bicubic LR of the whole image).
        seed: random seed.
    """

    def __init__(self, folder: str | Path, scale: int | tuple[float, float], lr_patch: int,
                 degradation: DegradationSampling, seed: int = 0):
        files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
            if Path(folder).is_dir() else []
        if not files:
            raise ConfigError(f"no training images in {folder} (run tools/prepare_data.py)")
        self.range = tuple(scale) if isinstance(scale, (tuple, list)) else None
        if self.range is not None and degradation.enabled:
            raise ConfigError("random degradations are drawn at an integer scale; a scale range trains on clean LR")
        self.scale, self.patch, self.deg = scale, lr_patch, degradation
        self.rng = np.random.default_rng(seed)
        self.images = []
        for p in files:
            hr = load_rgb(p)
            h, w = hr.shape[:2]
            if self.range is not None:
                if min(h, w) >= round(lr_patch * self.range[1]):
                    self.images.append((hr, None))
                continue
            hr = hr[: h - h % scale, : w - w % scale]
            if min(hr.shape[:2]) < (lr_patch + 8) * scale:
                continue
            self.images.append((hr, None if degradation.enabled else downscale(hr, scale)))
        if not self.images:
            raise ConfigError(f"every image in {folder} is smaller than one training patch")
        areas = np.array([hr.shape[0] * hr.shape[1] for hr, _ in self.images], dtype=np.float64)
        self.prob = areas / areas.sum()

    def _clean(self, hr, lr):
        s, p = self.scale, self.patch
        y = self.rng.integers(0, lr.shape[0] - p + 1)
        x = self.rng.integers(0, lr.shape[1] - p + 1)
        return lr[y : y + p, x : x + p], hr[y * s : (y + p) * s, x * s : (x + p) * s], None, 0.0

    def _degraded(self, hr):
        s, p, d = self.scale, self.patch, self.deg
        m = 4  # LR margin: covers the blur kernel and the bicubic support at the crop's edges
        size = (p + 2 * m) * s
        y = self.rng.integers(0, hr.shape[0] - size + 1)
        x = self.rng.integers(0, hr.shape[1] - size + 1)
        crop = hr[y : y + size, x : x + size]
        u = self.rng.random()
        if u < d.clean_fraction:
            kernel, noise = isotropic_gaussian(0.0), 0.0
        else:
            if self.rng.random() < d.anisotropic:
                kernel = random_anisotropic(self.rng)
            else:
                kernel = isotropic_gaussian(self.rng.uniform(0.2, d.blur_max))
            noise = float(self.rng.uniform(0, d.noise_max)) if self.rng.random() < 0.8 else 0.0
        lr = degrade(crop, s, kernel, noise, self.rng)[m : m + p, m : m + p]
        return lr, hr[y + m * s : y + (m + p) * s, x + m * s : x + (m + p) * s], kernel, noise

    def _any_scale(self, hr, side: int):
        """An HR crop of ``side`` pixels and its MATLAB-bicubic LR of ``lr_patch`` pixels."""
        y = self.rng.integers(0, hr.shape[0] - side + 1)
        x = self.rng.integers(0, hr.shape[1] - side + 1)
        crop = hr[y : y + side, x : x + side]
        return imresize(crop, size=(self.patch, self.patch)), crop, None, 0.0

    def batch(self, n: int):
        """(lr, hr, conds): N×3×p×p and N×3×sp×sp float tensors in [0, 1], and each patch's
        :class:`Conditioning` (its blur kernel's code and noise level: what a degradation-aware
        model is told). With a scale range, one factor s for the whole batch: the HR side is
        round(p · s)."""
        lrs, hrs, codes, noises = [], [], [], []
        side = round(self.patch * self.rng.uniform(*self.range)) if self.range is not None else None
        for k in self.rng.choice(len(self.images), size=n, p=self.prob):
            hr, lr_full = self.images[k]
            if side is not None:
                a, b, kernel, noise = self._any_scale(hr, side)
            else:
                a, b, kernel, noise = self._clean(hr, lr_full) if lr_full is not None else self._degraded(hr)
            rot, flip = int(self.rng.integers(4)), self.rng.random() < 0.5
            a, b = np.rot90(a, rot), np.rot90(b, rot)
            if flip:
                a, b = a[:, ::-1], b[:, ::-1]
            if kernel is not None:  # an anisotropic kernel turns and flips with its patch
                kernel = np.rot90(kernel, rot)
                kernel = kernel[:, ::-1] if flip else kernel
            lrs.append(np.ascontiguousarray(a))
            hrs.append(np.ascontiguousarray(b))
            codes.append(kernel_code(kernel if kernel is not None else isotropic_gaussian(0.0)))
            noises.append(noise)
        to_t = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float().div_(255)
        return to_t(lrs), to_t(hrs), [Conditioning(c, s) for c, s in zip(codes, noises, strict=True)]
