import numpy as np
import pytest

from streamsr.degradation import (
    Degradation,
    NoiseTracker,
    degradation_maps,
    degrade,
    estimate_noise,
    isotropic_gaussian,
    kernel_code,
    load_pca,
    random_anisotropic,
)
from streamsr.errors import ConfigError
from streamsr.metrics import downscale


def test_kernels_are_normalized_and_shaped():
    rng = np.random.default_rng(0)
    for k in (isotropic_gaussian(1.6), isotropic_gaussian(0), random_anisotropic(rng)):
        assert k.shape == (15, 15) and k.sum() == pytest.approx(1.0) and k.min() >= 0
    wide, narrow = isotropic_gaussian(3.0), isotropic_gaussian(0.5)
    assert wide[7, 7] < narrow[7, 7]


def test_pca_and_codes():
    pca = load_pca()
    assert pca.shape == (225, 15)
    assert np.allclose(pca.T @ pca, np.eye(15), atol=1e-5)  # orthonormal directions
    code = kernel_code(isotropic_gaussian(2.0))
    assert code.shape == (15,)
    rebuilt = (code @ pca.T).reshape(15, 15)  # a smooth kernel is well described by its code
    assert np.abs(rebuilt - isotropic_gaussian(2.0)).max() < 0.01
    assert np.linalg.norm(kernel_code(isotropic_gaussian(1.0)) - kernel_code(isotropic_gaussian(2.0))) > 0.01


def test_maps_shapes_and_values():
    code = Degradation(blur=1.6).code()
    maps = degradation_maps(code, np.array([10.0, 25.5]), 2, 7, 9)
    assert maps["kernel_code"].shape == (2, 15, 7, 9) and maps["noise_level"].shape == (2, 1, 7, 9)
    assert maps["kernel_code"].dtype == np.float32
    assert np.allclose(maps["kernel_code"][1, :, 3, 4], code, atol=1e-6)
    assert np.allclose(maps["noise_level"][0], 10 / 255) and np.allclose(maps["noise_level"][1], 0.1)


def test_degradation_record_validates():
    with pytest.raises(ConfigError):
        Degradation(blur=-1)


def test_degrade_without_blur_or_noise_is_bicubic():
    from skimage import data

    hr = data.astronaut()
    assert np.array_equal(degrade(hr, 2), downscale(hr, 2))
    blurred = degrade(hr, 2, isotropic_gaussian(1.6))
    noisy = degrade(hr, 2, None, noise=10, rng=np.random.default_rng(0))
    assert blurred.std() < downscale(hr, 2).std()
    assert estimate_noise(noisy) > estimate_noise(downscale(hr, 2)) + 5


@pytest.mark.parametrize("sigma", [5, 10, 25, 50])
def test_noise_estimator_recovers_known_sigma(sigma):
    from skimage import data

    rng = np.random.default_rng(sigma)
    clean = data.chelsea().astype(np.float64)  # a real photo: fur, eyes, background
    noisy = clean + rng.normal(0, sigma, clean.shape)  # not clipped: the model's noise model
    assert estimate_noise(noisy) == pytest.approx(sigma, rel=0.2)


def test_noise_tracker_smooths_outliers():
    tracker = NoiseTracker(window=5)
    values = [tracker.update(v) for v in (10, 10, 40, 10, 10, 10)]
    assert values[-1] == pytest.approx(10, abs=1.0) and max(values) < 20
