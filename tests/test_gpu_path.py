"""The GPU fast path: what can be checked on a CPU runs everywhere; the rest is marked gpu/tensorrt
and skipped at collection where absent."""

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from model_cases import case_id, model_cases, network_inputs, out_size

from streamsr.backends.engine import (
    EngineCache,
    EngineKey,
    Shape,
    ShapeProfile,
    network_flags,
    uses_fp16_flag,
)
from streamsr.backends.tensorrt_backend import _profile_from_name
from streamsr.backends.tiling import TiledBackend, tile_ranges
from streamsr.errors import ConfigError
from streamsr.evaluate import ModuleBackend
from streamsr.metrics import psnr
from streamsr.models import get_model

ENLARGING = [c for c in model_cases() if not get_model(c[0]).variant(c[1], c[2]).shrinks]

PROFILE = ShapeProfile.parse("1x3x64x64", "1x3x540x960", "4x3x1080x1920")


def _psnr(a, b):
    return psnr(np.clip(a, 0, 1), np.clip(b, 0, 1), peak=1.0)


def test_shape_parsing_and_validation():
    assert Shape.parse("4x3x1080x1920") == Shape(4, 3, 1080, 1920)
    for bad in ("1x3x64", "1x4x64x64", "0x3x64x64", "axbxcxd"):
        with pytest.raises(ConfigError):
            Shape.parse(bad)
    with pytest.raises(ConfigError, match="min <= opt <= max"):
        ShapeProfile.parse("1x3x64x64", "1x3x32x960", "4x3x1080x1920")
    assert PROFILE.covers(2, 720, 1280) and not PROFILE.covers(5, 720, 1280) and not PROFILE.covers(1, 1440, 2560)
    assert _profile_from_name(f"espcn_x2-abc-{PROFILE}-fp16-trt10.3.0-h100-sm90.engine") == PROFILE
    assert str(PROFILE) == "1x3x64x64_1x3x540x960_4x3x1080x1920"  # fixed-factor engine names unchanged
    # a model that takes any scale: the output's (height, width) at min, opt, max as well
    anyscale = ShapeProfile.parse("1x3x64x64", "1x3x540x960", "4x3x1080x1920", out=("64x64", "1350x2400", "2160x3840"))
    assert str(anyscale) == "1x3x64x64_1x3x540x960_4x3x1080x1920_out64x64_1350x2400_2160x3840"
    assert ShapeProfile.from_text(str(anyscale)) == anyscale
    assert ShapeProfile.from_text("1x3x64x64,1x3x540x960,4x3x1080x1920,64x64,1350x2400,2160x3840") == anyscale
    for variant in ("liif", "irn_x2-up"):  # a "-" in a variant's name too
        assert _profile_from_name(f"{variant}-abc-{anyscale}-fp16-trt11.4.0-h100-sm90.engine") == anyscale
    assert anyscale.covers(1, 540, 960, (1350, 2400)) and anyscale.covers(4, 64, 64, (64, 64))
    assert not anyscale.covers(1, 540, 960, (2400, 1350)) and not anyscale.covers(1, 540, 960, (32, 2400))
    assert not anyscale.covers(1, 540, 960)  # a batch that does not say its output does not fit
    for bad in ("1x3x64x64,1x3x540x960", "1x3x64x64,1x3x540x960,4x3x1080x1920,64x64,1350x2400",
                "1x3x64x64,1x3x540x960,4x3x1080x1920,64x64,1350x2400,1080x3840", "1x3x8x8,1x3x8x8,1x3x8x8,8,8,8"):
        with pytest.raises(ConfigError):
            ShapeProfile.from_text(bad)
    with pytest.raises(ConfigError, match="not an engine file named by streamsr"):
        _profile_from_name("liif-abc-1x3x8x8_1x3x8x8_out8x8-fp16-trt11.4.0-h100-sm90.engine")


def test_engine_key_changes_with_everything_that_invalidates_it():
    base = {"variant": "udvd_x2", "onnx": b"graph", "profile": PROFILE, "precision": "fp16",
            "trt_version": "10.3.0.26", "gpu": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)}
    name = EngineKey.make(**base).filename
    assert name == f"udvd_x2-{EngineKey.make(**base).onnx_sha}-{PROFILE}-fp16-trt10.3.0-nvidiah10080gbhbm3-sm90.engine"
    changes = {"onnx": b"graph2", "profile": ShapeProfile.parse("1x3x64x64", "1x3x720x1280", "4x3x1080x1920"),
               "precision": "fp32", "trt_version": "11.0.1", "gpu": "NVIDIA A10", "compute_capability": (8, 6)}
    for key, value in changes.items():
        assert EngineKey.make(**{**base, key: value}).filename != name, key


def test_engine_cache_list_stale_clean(tmp_path):
    cache = EngineCache(tmp_path)
    key = EngineKey.make("espcn_x2", b"g", PROFILE, "fp16", "10.3.0", "H100", (9, 0))
    old = EngineKey.make("espcn_x2", b"old graph", PROFILE, "fp16", "10.3.0", "H100", (9, 0))
    other = EngineKey.make("udvd_x2", b"g", PROFILE, "fp16", "10.3.0", "H100", (9, 0))
    for k in (key, old, other):
        cache.path(k).write_bytes(b"x")
    cache.timing_cache.write_bytes(b"t")
    assert [p.name for p in cache.stale(key)] == [old.filename]
    assert len(cache.list()) == 3
    assert cache.clean(only_stale_for=key) == [cache.path(old)]
    assert len(cache.clean()) == 3  # two engines and the timing cache
    assert cache.list() == []


def test_tensorrt_version_guards():
    flags = SimpleNamespace
    trt10_old = SimpleNamespace(NetworkDefinitionCreationFlag=flags(EXPLICIT_BATCH=0), BuilderFlag=flags(FP16=0))
    trt10_new = SimpleNamespace(NetworkDefinitionCreationFlag=flags(EXPLICIT_BATCH=0, STRONGLY_TYPED=1),
                                BuilderFlag=flags(FP16=0))
    trt11 = SimpleNamespace(NetworkDefinitionCreationFlag=flags(STRONGLY_TYPED=1), BuilderFlag=flags())
    assert network_flags(trt10_old) == 0 and uses_fp16_flag(trt10_old, "fp16")
    assert network_flags(trt10_new) == 2 and not uses_fp16_flag(trt10_new, "fp16")
    assert network_flags(trt11) == 2 and not uses_fp16_flag(trt11, "fp16")
    assert not uses_fp16_flag(trt10_old, "fp32")


def test_tile_ranges_cover_exactly():
    for size, tile, overlap in ((100, 40, 8), (64, 64, 16), (33, 20, 4)):
        ranges = tile_ranges(size, tile, overlap)
        kept = [i for _, _, a, b in ranges for i in range(a, b)]
        assert kept == list(range(size))
        assert all(r1 - r0 <= tile and r0 <= a and b <= r1 for r0, r1, a, b in ranges)
    with pytest.raises(ConfigError):
        tile_ranges(100, 32, 16)


@pytest.mark.slow
@pytest.mark.parametrize("name,scale,part", ENLARGING, ids=map(case_id, ENLARGING))
def test_tiled_and_whole_frame_agree(name, scale, part):
    variant = get_model(name).variant(scale, part)
    model = variant.build(pretrained=False)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a non-trivial network: untrained heads of UDVD start at zero
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)
    batch, extra = network_inputs(name, scale, 1, 70, 90, np.random.default_rng(0), part=part)
    whole = ModuleBackend(model, variant).infer(batch, extra)
    tiled = TiledBackend(ModuleBackend(model, variant), tile=48, overlap=16).infer(batch, extra)
    assert tiled.shape == whole.shape == (1, 3, *out_size(name, scale, 70, 90, part))
    assert _psnr(tiled, whole) > 50


def test_a_network_that_shrinks_is_not_tiled():
    variant = get_model("irn").variant(2, "down")
    with pytest.raises(ConfigError, match="irn_x2-down shrinks"):
        TiledBackend(ModuleBackend(variant.build(pretrained=False), variant), tile=48, overlap=8)


@pytest.mark.gpu
def test_torch_cuda_fp16_matches_cpu():
    from streamsr.backends import create_backend

    spec = get_model("espcn", 2)
    batch = np.random.default_rng(0).random((2, 3, 64, 96), dtype=np.float32)
    cpu = create_backend("torch", spec.variant(2), device="cpu").infer(batch)
    gpu = create_backend("torch", spec.variant(2), device="cuda", precision="fp16").infer(batch)
    assert _psnr(cpu, gpu) > 40


@pytest.mark.gpu
@pytest.mark.parametrize("model", ["espcn", "udvd"])
def test_cuda_device_colour_chain_matches_cpu_chain(tmp_path, model):
    """--colour-on auto on CUDA converts colour on the GPU (pinned upload on a side stream); its
    output matches the swscale chain on the CPU."""
    from media import make_video
    from test_colour import assert_same_pictures

    from streamsr import RunConfig, upscale_video

    src = make_video(tmp_path / "in.mp4", frames=9, size=(96, 64))
    gpu = upscale_video(src, tmp_path / "gpu.mkv", RunConfig.from_options(
        model=model, device="cuda", backend="torch", precision="fp32", codec="ffv1", batch_size=4))
    cpu = upscale_video(src, tmp_path / "cpu.mkv", RunConfig.from_options(
        model=model, device="cpu", backend="torch", colour_on="cpu", codec="ffv1"))
    assert gpu.frames_out == cpu.frames_out == 9
    assert gpu.extra.get("colour_on") == "device" and cpu.extra.get("colour_on") == "cpu"
    assert_same_pictures(tmp_path / "cpu.mkv", tmp_path / "gpu.mkv", 128)


@pytest.mark.tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_torch(tmp_path, precision):
    from streamsr.backends import create_backend

    spec = get_model("espcn", 2)
    batch = np.random.default_rng(0).random((2, 3, 64, 96), dtype=np.float32)
    ref = create_backend("torch", spec.variant(2), device="cpu").infer(batch)
    trt = create_backend("tensorrt", spec.variant(2), device="cuda", precision=precision,
                         options={"tensorrt": {"engine_dir": str(tmp_path)}})
    out = trt.infer(batch)
    assert _psnr(ref, out) > (40 if precision == "fp16" else 60)
    assert len(EngineCache(tmp_path).list()) == 1  # built once, cached


def _cuda_in_ffmpeg():
    from av.codec.hwaccel import hwdevices_available

    return "cuda" in hwdevices_available()


def test_hardware_decoding_falls_back_to_the_cpu(small_clip):
    if not _cuda_in_ffmpeg():
        pytest.skip("this FFmpeg build has no CUDA support")
    from streamsr.frames import Frame
    from streamsr.io import Source

    with Source(small_clip, hwaccel="cuda") as src:
        frames = [f for f in src if isinstance(f, Frame)]
        notices = src.notices
    assert len(frames) == 12
    if not torch.cuda.is_available():
        assert notices and "decoding on the CPU" in notices[0]


def test_missing_hardware_encoder_falls_back_to_software(small_clip, tmp_path):
    import av

    from streamsr import RunConfig, SinkConfig, upscale_video

    try:
        av.codec.Codec("h264_nvenc", "w")
    except av.codec.codec.UnknownCodecError:
        pytest.skip("this FFmpeg build has no NVENC encoder")
    stats = upscale_video(small_clip, tmp_path / "o.mp4", RunConfig(scale=2, sink=SinkConfig(codec="h264_nvenc")))
    with av.open(str(tmp_path / "o.mp4")) as c:
        assert c.streams.video[0].codec_context.name == "h264"
        assert sum(1 for _ in c.decode(video=0)) == 12
    if not torch.cuda.is_available():
        assert stats.extra["output"]["codec"] == "libx264"
        assert any("h264_nvenc cannot be used here" in n for n in stats.notices)
