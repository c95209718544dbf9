import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from streamsr.metrics import (
    bicubic_upscale,
    downscale,
    imresize,
    psnr_y,
    rgb_to_y,
    ssim_y,
)


def _photo():
    from skimage import data

    return data.astronaut()


def test_imresize_shapes_and_constant_image():
    flat = np.full((30, 42, 3), 77, np.uint8)
    assert imresize(flat, 0.5).shape == (15, 21, 3)
    assert imresize(flat, 3.0).shape == (90, 126, 3)
    assert np.all(imresize(flat, 0.5) == 77)
    assert np.all(imresize(flat, 2.0) == 77)


def test_imresize_is_matlab_bicubic_not_torch():
    # MATLAB's kernel (a = -0.5) on a step: the first upsampled sample after the edge is known.
    step = np.zeros((1, 8), np.float64)
    step[:, 4:] = 1.0
    up = imresize(step, 2.0)
    # output x = 8.5 (1-based) maps to input u = 4.5 - 0.25 = 4.25 → taps 3..6 with a = -0.5
    t = 0.25
    w = [-0.5 * (1 + t) ** 3 + 2.5 * (1 + t) ** 2 - 4 * (1 + t) + 2, 1.5 * t**3 - 2.5 * t**2 + 1,
         1.5 * (1 - t) ** 3 - 2.5 * (1 - t) ** 2 + 1, -0.5 * (2 - t) ** 3 + 2.5 * (2 - t) ** 2 - 4 * (2 - t) + 2]
    assert up[0, 7] == pytest.approx(w[2] + w[3], abs=1e-12)


def test_downscale_antialiases():
    stripes = np.zeros((64, 64, 3), np.uint8)
    stripes[:, ::2] = 255  # Nyquist pattern: antialiased shrink → flat grey
    lr = downscale(stripes, 2)[:, 2:-2]  # borders see MATLAB's symmetric padding
    assert lr.min() >= 127 and lr.max() <= 128


def test_psnr_ssim_match_scikit_image():
    hr = _photo()
    sr = bicubic_upscale(downscale(hr, 2), 2)
    y_sr, y_hr = rgb_to_y(sr)[2:-2, 2:-2], rgb_to_y(hr)[2:-2, 2:-2]
    assert psnr_y(sr, hr, 2) == pytest.approx(peak_signal_noise_ratio(y_hr, y_sr, data_range=255), abs=1e-9)
    ref = structural_similarity(y_hr, y_sr, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False, data_range=255)
    assert ssim_y(sr, hr, 2) == pytest.approx(ref, abs=1e-9)


def test_psnr_identical_is_inf_and_shape_mismatch_raises():
    a = _photo()[:32, :32]
    assert psnr_y(a, a) == float("inf")
    with pytest.raises(ValueError):
        psnr_y(a, a[:16])


def test_y_channel_range():
    assert rgb_to_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16)
    assert rgb_to_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235, abs=1e-3)
