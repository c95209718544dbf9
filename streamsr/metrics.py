"""Image quality metrics and LR synthesis following the BasicSR/EDSR evaluation protocol.

* :func:`imresize` reproduces MATLAB's ``imresize`` (bicubic, a = -0.5, antialiased when
  shrinking) so low-resolution inputs match the ones published numbers were measured on.
* :func:`psnr_y` and :func:`ssim_y` compare on the Y channel (ITU-R BT.601, studio range) after
  cropping ``border`` pixels from every side, as BasicSR's ``calculate_psnr(test_y_channel=True)``.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["bicubic_taps", "bicubic_upscale", "downscale", "downscale_to", "imresize", "lr_size", "psnr", "psnr_y", "rgb_to_y",
           "ssim_y"]


def _cubic(x: np.ndarray) -> np.ndarray:
    absx = np.abs(x)
    absx2, absx3 = absx**2, absx**3
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
    ) * ((absx > 1) & (absx <= 2))


def _resize_matrix(in_len: int, out_len: int, scale: float, antialias: bool) -> np.ndarray:
    """Dense (out_len, in_len) matrix of MATLAB's bicubic contributions, symmetric borders."""
    kernel_width = 4.0
    if scale < 1 and antialias:
        kernel_width /= scale

        def weight_fn(x: np.ndarray) -> np.ndarray:
            return scale * _cubic(scale * x)

    else:
        weight_fn = _cubic
    x = np.arange(1, out_len + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - kernel_width / 2)
    taps = math.ceil(kernel_width) + 2
    idx = left[:, None] + np.arange(taps)[None, :]  # 1-based like MATLAB
    weights = weight_fn(u[:, None] - idx)
    weights /= weights.sum(axis=1, keepdims=True)
    mirror = np.concatenate([np.arange(in_len), np.arange(in_len - 1, -1, -1)])
    idx0 = mirror[np.mod(idx.astype(np.int64) - 1, 2 * in_len)]
    mat = np.zeros((out_len, in_len), dtype=np.float64)
    rows = np.repeat(np.arange(out_len), taps)
    np.add.at(mat, (rows, idx0.ravel()), weights.ravel())
    return mat


def bicubic_taps(in_len: int, out_len: int) -> tuple[np.ndarray, np.ndarray]:
    """MATLAB's bicubic upscaling of one axis as four taps per output pixel.

    Returns:
        (indices, weights): (4, out_len) int64 and float64; ``out[j] = Σ_k weights[k, j] ·
        in[indices[k, j]]`` is :func:`imresize` to ``out_len`` along that axis (symmetric borders
        folded in; an unused tap has weight 0 and reads the row's main pixel).

    Raises:
        ValueError: ``out_len < in_len`` (shrinking widens the kernel beyond four taps).
    """
    if out_len < in_len:
        raise ValueError(f"bicubic_taps upscales; got {in_len} -> {out_len}")
    mat = _resize_matrix(in_len, out_len, out_len / in_len, True)
    if in_len < 4:  # fewer pixels than taps: pad with unused (zero) columns
        mat = np.pad(mat, ((0, 0), (0, 4 - in_len)))
    order = np.argsort(-np.abs(mat), axis=1, kind="stable")[:, :4]  # the (at most) four taps of a row
    weights = np.take_along_axis(mat, order, axis=1)
    order = np.where(weights == 0, order[:, :1], order)  # an unused tap reads the main one: stays local
    if np.abs(mat).sum(axis=1).round(12).tolist() != np.abs(weights).sum(axis=1).round(12).tolist():
        raise AssertionError("a bicubic row with more than four taps")
    return order.T.copy(), weights.T.copy()


def imresize(img: np.ndarray, scale: float | None = None, antialias: bool = True,
             size: tuple[int, int] | None = None) -> np.ndarray:
    """Resize like MATLAB's ``imresize(img, scale, 'bicubic')`` or ``imresize(img, [h w], 'bicubic')``.

    Args:
        img: H×W or H×W×C array. uint8 input returns uint8 (rounded and clipped, like MATLAB);
            float input returns float64 without clipping.
        scale: size factor, e.g. 0.5 to halve, 2 to double. Output size is ``ceil(size*scale)``.
        antialias: widen the kernel when shrinking (MATLAB's default).
        size: the output (height, width) instead of ``scale`` (each axis its own factor, as MATLAB).

    Returns:
        The resized array.
    """
    is_uint8 = img.dtype == np.uint8
    data = img.astype(np.float64)
    h, w = data.shape[:2]
    if size is not None:
        (out_h, out_w), (sh, sw) = size, (size[0] / h, size[1] / w)
    else:
        out_h, out_w, sh, sw = math.ceil(h * scale), math.ceil(w * scale), scale, scale
    mh = _resize_matrix(h, out_h, sh, antialias)
    mw = _resize_matrix(w, out_w, sw, antialias)
    if data.ndim == 2:
        out = mh @ data @ mw.T
    else:  # two BLAS products: rows, then columns (einsum would not use BLAS here)
        tmp = (mh @ data.reshape(h, -1)).reshape(out_h, w, -1)
        out = np.matmul(mw, tmp)
    if is_uint8:
        return np.clip(np.round(out), 0, 255).astype(np.uint8)
    return out


def downscale(hr: np.ndarray, scale: int) -> np.ndarray:
    """Synthesize the LR image of a uint8 HR image: crop to a multiple of ``scale``, MATLAB bicubic.

    Args:
        hr: H×W×3 uint8 image.
        scale: integer downscale factor.

    Returns:
        (H//scale)×(W//scale)×3 uint8 image.
    """
    h, w = hr.shape[:2]
    hr = hr[: h - h % scale, : w - w % scale]
    return imresize(hr, 1.0 / scale)


def bicubic_upscale(lr: np.ndarray, scale: float, size: tuple[int, int] | None = None) -> np.ndarray:
    """MATLAB-bicubic upscale of a uint8 image (to ``size`` = (height, width) when given), the
    baseline every model is compared with."""
    return imresize(lr, float(scale), size=size)


def lr_size(hr_size: tuple[int, int], scale: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """The LR size for ``scale`` and the HR crop it maps back to exactly, per axis: LR =
    floor(HR / s), HR crop = round(LR · s) (LIIF's arbitrary-scale protocol; for an integer
    scale, BasicSR's crop to a multiple of it)."""
    lr = tuple(max(1, math.floor(v / scale + 1e-9)) for v in hr_size)
    return lr, tuple(round(v * scale) for v in lr)


def downscale_to(hr: np.ndarray, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(LR, cropped HR) of a uint8 HR image at any ``scale``: MATLAB bicubic to :func:`lr_size`."""
    lr_hw, hr_hw = lr_size(hr.shape[:2], scale)
    crop = hr[: hr_hw[0], : hr_hw[1]]
    return imresize(crop, size=lr_hw), crop


def rgb_to_y(img: np.ndarray) -> np.ndarray:
    """Y of BT.601 studio-range YCbCr (16..235) from an RGB uint8 or [0,255] array, as float64."""
    rgb = img.astype(np.float64) / 255.0
    return 16.0 + rgb @ np.array([65.481, 128.553, 24.966])


def _crop(a: np.ndarray, border: int) -> np.ndarray:
    return a[border:-border, border:-border] if border > 0 else a


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR in dB of two arrays of the same shape whose values span ``peak`` (``inf`` if equal)."""
    if np.shape(a) != np.shape(b):
        raise ValueError(f"shapes differ: {np.shape(a)} vs {np.shape(b)}")
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(peak**2 / mse)


def psnr_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """PSNR in dB between the Y channels of two RGB uint8 images.

    Args:
        sr: restored image, H×W×3 uint8.
        hr: reference image of the same size.
        border: pixels cropped from every side first (the scale factor, by convention).

    Returns:
        PSNR in dB (``inf`` for identical images).
    """
    if sr.shape != hr.shape:
        raise ValueError(f"image shapes differ: {sr.shape} vs {hr.shape}")
    return psnr(_crop(rgb_to_y(sr), border), _crop(rgb_to_y(hr), border))


def _gaussian_valid(a: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    n = len(kernel)
    rows = sum(kernel[i] * a[i : a.shape[0] - n + 1 + i] for i in range(n))
    return sum(kernel[i] * rows[:, i : rows.shape[1] - n + 1 + i] for i in range(n))


def ssim_y(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """SSIM between the Y channels of two RGB uint8 images (11×11 Gaussian, σ = 1.5, 'valid').

    Args:
        sr: restored image, H×W×3 uint8.
        hr: reference image of the same size.
        border: pixels cropped from every side first.

    Returns:
        Mean SSIM in [-1, 1].
    """
    if sr.shape != hr.shape:
        raise ValueError(f"image shapes differ: {sr.shape} vs {hr.shape}")
    x = _crop(rgb_to_y(sr), border)
    y = _crop(rgb_to_y(hr), border)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5**2))
    g /= g.sum()
    mu_x, mu_y = _gaussian_valid(x, g), _gaussian_valid(y, g)
    sxx = _gaussian_valid(x * x, g) - mu_x**2
    syy = _gaussian_valid(y * y, g) - mu_y**2
    sxy = _gaussian_valid(x * y, g) - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2)
    )
    return float(ssim_map.mean())
