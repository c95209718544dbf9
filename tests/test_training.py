"""`streamsr train` runs a few steps, writes weights with their recipe, and resumes."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from safetensors import safe_open

from streamsr.cli import main
from streamsr.errors import ConfigError
from streamsr.training import load_train_config, train


@pytest.fixture(scope="module")
def image_dirs(tmp_path_factory):
    from media import save_png
    from skimage import data

    root = tmp_path_factory.mktemp("imgs")
    (root / "train").mkdir()
    (root / "val").mkdir()
    save_png(data.astronaut()[:200, :200], root / "train" / "a.png")
    save_png(data.coffee()[:200, :240], root / "train" / "b.png")
    save_png(data.chelsea()[:96, :96], root / "val" / "c.png")
    return root


def _config(tmp_path, image_dirs, model, extra=""):
    path = tmp_path / "cfg.toml"
    path.write_text(f'''
model = "{model}"
scale = 2
train_dir = "{image_dirs / 'train'}"
val_dir = "{image_dirs / 'val'}"
out_dir = "{tmp_path / 'run'}"
lr_patch = 12
batch = 2
iterations = 4
checkpoint_every = 2
val_every = 1000
threads = 1
{extra}''')
    return path


@pytest.mark.parametrize("model,extra", [("espcn", ""), ("udvd", "[degradation]\nenabled = true\n")])
def test_train_writes_weights_and_resumes(tmp_path, image_dirs, model, extra):
    cfg = load_train_config(_config(tmp_path, image_dirs, model, extra))
    result = train(cfg)
    assert result["step"] == 4 and np.isfinite(result["psnr_clean"])
    weights = Path(result["weights"])
    with safe_open(str(weights), "pt") as f:
        recipe = json.loads(f.metadata()["recipe"])
    assert recipe["iterations"] == 4 and recipe["model"] == model
    if model == "udvd":
        assert "psnr_degraded" in result
    more = load_train_config(_config(tmp_path, image_dirs, model, extra), iterations=6)
    resumed = train(more, resume=True)
    assert resumed["step"] == 6  # continued from step 4, not from 0


def test_train_cli_and_bad_config(tmp_path, image_dirs):
    r = CliRunner().invoke(main, ["train", str(_config(tmp_path, image_dirs, "srcnn")), "--no-ship", "-q"])
    assert r.exit_code == 0, r.stderr
    assert json.loads(r.stdout)["step"] == 4
    bad = tmp_path / "bad.toml"
    bad.write_text('model = "srcnn"\nscale = 2\nlearning_rate = 1\n')
    r = CliRunner().invoke(main, ["train", str(bad)])
    assert r.exit_code == 1 and "unknown key(s) learning_rate" in r.stderr
    with pytest.raises(ConfigError, match="nothing to resume"):
        train(load_train_config(_config(tmp_path / "x", image_dirs, "srcnn") if (tmp_path / "x").mkdir() is None
                                else None), resume=True)


def test_gan_mode_runs(tmp_path, image_dirs):
    from safetensors.torch import save_file

    from streamsr.models import build_model

    init = tmp_path / "g.safetensors"
    g = build_model("srgan", 4, pretrained=False)
    save_file({k: v.contiguous() for k, v in g.state_dict().items()}, str(init))
    path = _config(tmp_path, image_dirs, "srgan", f'loss = "gan"\n[gan]\ninit = "{init}"\n').read_text()
    path = path.replace("scale = 2", "scale = 4")
    (tmp_path / "gan.toml").write_text(path)
    result = train(load_train_config(tmp_path / "gan.toml", iterations=2))
    assert result["step"] == 2 and np.isfinite(result["psnr_clean"])


def test_finetune_starts_from_init_and_records_its_recipe(tmp_path, image_dirs):
    first = train(load_train_config(_config(tmp_path / "a", image_dirs, "espcn") if (tmp_path / "a").mkdir() is None
                                    else None))
    cfg = _config(tmp_path, image_dirs, "espcn", f'init = "{first["weights"]}"\nlr = 1e-9\n')
    second = train(load_train_config(cfg, iterations=1))
    # a near-zero learning rate for one step: the fine-tuned network is the one it started from
    assert abs(second["psnr_clean"] - first["psnr_clean"]) < 1e-3
    with safe_open(second["weights"], "pt") as f:
        recipe = json.loads(f.metadata()["recipe"])
    assert recipe["init"] == first["weights"] and recipe["init_recipe"]["iterations"] == 4
    with pytest.raises(ConfigError, match="starts from \\[gan\\] init"):
        load_train_config(cfg, loss="gan")


def _fake_package(root: Path, project: str | None) -> Path:
    """A streamsr package folder under ``root`` with an (optional) pyproject.toml naming ``project``."""
    package = root / "streamsr"
    (package / "models" / "weights").mkdir(parents=True)
    if project is not None:
        (root / "pyproject.toml").write_text(f'[project]\nname = "{project}"\n')
    return package


def test_source_tree_is_a_checkout_of_streamsr_only(tmp_path):
    from streamsr.training.loop import source_tree

    assert source_tree(_fake_package(tmp_path / "checkout", "streamsr")) == tmp_path / "checkout"
    assert source_tree(_fake_package(tmp_path / "site-packages", None)) is None
    assert source_tree(_fake_package(tmp_path / "other", "not-streamsr")) is None
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "pyproject.toml").write_text("[project\n")
    assert source_tree(tmp_path / "broken" / "streamsr") is None


@pytest.mark.parametrize("checkout", [True, False], ids=["source-tree", "installed"])
def test_ship_writes_into_a_checkout_only(tmp_path, image_dirs, monkeypatch, caplog, checkout):
    from streamsr.models import get_model, weights_path
    from streamsr.training import loop

    real = weights_path(get_model("espcn"), 2)
    before = real.read_bytes()
    package = _fake_package(tmp_path / "pkg", "streamsr" if checkout else None)
    monkeypatch.setattr(loop, "_PACKAGE_DIR", package)
    result = train(load_train_config(_config(tmp_path, image_dirs, "espcn", "ship = true\n")))
    assert real.read_bytes() == before  # the running package's own weights are never touched here
    in_package = package / "models" / "weights" / "espcn_x2.safetensors"
    if checkout:
        assert result["shipped"] == str(in_package) and in_package.is_file()
        assert json.loads(in_package.with_suffix(".json").read_text())["iterations"] == 4
    else:
        assert not in_package.exists()
        assert result["shipped"] == result["weights"] == str(tmp_path / "run" / "espcn_x2.safetensors")
        assert "not a source checkout" in caplog.text and str(tmp_path / "run") in caplog.text


def test_any_scale_model_trains_on_a_range_and_validates_each_scale(tmp_path, image_dirs):
    """LIIF: one factor per batch from scale_range (HR side round(p s)), the model's own loss,
    validation at every val_scale (fractional included), recipe with the range, one weights file."""
    path = tmp_path / "cfg.toml"
    path.write_text(_config(tmp_path, image_dirs, "liif").read_text().replace("scale = 2\n", "")
                    + 'scale_range = [1.2, 3.5]\nval_scales = [2, 2.5]\n')
    cfg = load_train_config(path)
    assert cfg.scale is None and cfg.scale_range == (1.2, 3.5)
    result = train(cfg)
    assert result["step"] == 4
    assert {"psnr_clean_x2", "psnr_clean_x2.5", "psnr_clean_x2.5_bicubic"} <= set(result)
    assert all(np.isfinite(v) for k, v in result.items() if k.startswith("psnr"))
    weights = Path(result["weights"])
    assert weights.name == "liif.safetensors"
    with safe_open(str(weights), "pt") as f:
        recipe = json.loads(f.metadata()["recipe"])
    assert recipe["scale"] is None and recipe["scale_range"] == [1.2, 3.5]


def test_patch_sampler_draws_one_scale_per_batch_within_the_range(image_dirs):
    from streamsr.training.config import DegradationSampling
    from streamsr.training.data import PatchSampler

    sampler = PatchSampler(image_dirs / "train", (1.5, 4.0), 12, DegradationSampling(), seed=3)
    sides = set()
    for _ in range(20):
        lr, hr, _ = sampler.batch(3)
        assert lr.shape == (3, 3, 12, 12) and hr.shape[2] == hr.shape[3]
        assert 18 <= hr.shape[2] <= 48  # round(12 s), s in [1.5, 4]
        sides.add(hr.shape[2])
    assert len(sides) > 5
    with pytest.raises(ConfigError, match="scale range trains on clean LR"):
        PatchSampler(image_dirs / "train", (1.5, 4.0), 12, DegradationSampling(enabled=True))


def test_fixed_factor_model_without_a_scale_is_refused(tmp_path, image_dirs):
    path = tmp_path / "cfg.toml"
    path.write_text(_config(tmp_path, image_dirs, "espcn").read_text().replace("scale = 2\n", ""))
    with pytest.raises(ConfigError, match="set scale = 2 | 3 | 4"):
        train(load_train_config(path))
