import numpy as np
import pytest
import torch

from streamsr.errors import UnknownModelError, UnsupportedScaleError, WeightsError
from streamsr.models import ModelSpec, build_model, get_model, list_models, register_model, weights_path

CASES = [(name, scale) for name in list_models() for scale in get_model(name).scales]


def test_registry_lists_espcn_and_refuses_duplicates():
    assert "espcn" in list_models()
    with pytest.raises(ValueError, match="already registered"):
        register_model(ModelSpec(name="espcn", scales=(2,), paper="-"))(lambda s: None)


def test_unknown_model_lists_available():
    with pytest.raises(UnknownModelError, match="available: .*espcn") as err:
        get_model("espnc")
    assert isinstance(err.value, KeyError)
    assert str(err.value).startswith("unknown model 'espnc'")


def test_unsupported_scale():
    with pytest.raises(UnsupportedScaleError, match="supported: 2, 3, 4") as err:
        get_model("espcn", 5)
    assert isinstance(err.value, ValueError)


@pytest.mark.parametrize("name,scale", CASES)
def test_forward_shape(name, scale):
    model = build_model(name, scale, pretrained=False)
    x = torch.rand(2, 3, 11, 13)
    with torch.no_grad():
        assert model(x).shape == (2, 3, 11 * scale, 13 * scale)


@pytest.mark.parametrize("name,scale", CASES)
def test_shipped_weights_load(name, scale):
    path = weights_path(get_model(name), scale)
    assert path is not None, f"no shipped weights for {name} x{scale}"
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        assert "recipe" in f.metadata()  # weights carry the recipe that produced them
    build_model(name, scale)


def test_bad_weights_file(tmp_path):
    from safetensors.torch import save_file

    bad = tmp_path / "bad.safetensors"
    save_file({"nope": torch.zeros(1)}, str(bad))
    with pytest.raises(WeightsError, match="cannot load weights"):
        build_model("espcn", 2, weights=bad)
    with pytest.raises(WeightsError, match="not found"):
        build_model("espcn", 2, weights=tmp_path / "missing.safetensors")


@pytest.mark.parametrize("name,scale", CASES)
def test_shipped_weights_beat_bicubic_on_validation_frame(name, scale):
    """Frames of the bundled clip (cut from opencv-doc's vtest.avi, a validation clip)."""
    from conftest import SAMPLE
    from media import read_video

    from streamsr.evaluate import score_image

    _, frames, _ = read_video(SAMPLE)
    model = build_model(name, scale)
    gains = [score_image(model, f, scale).gain for f in frames[::10]]
    assert np.mean(gains) > 0.3, gains
