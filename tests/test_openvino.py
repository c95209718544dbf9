"""The OpenVINO backend: the cached ONNX graph compiled by OpenVINO's CPU plugin. Every network
agrees with ONNX Runtime in fp32; in bf16 (on CPUs that compute it) every network but the
any-scale ones, which it runs in fp32 and says so; one compiled model per input shape."""

import logging

import numpy as np
import pytest
import scipy.ndimage
from model_cases import case_id, model_cases, network_inputs, out_size

from streamsr.backends import choice, create_backend, openvino_backend, resolve_backend
from streamsr.backends.openvino_backend import OpenVinoBackend, OpenVinoConfig
from streamsr.errors import BackendUnavailableError
from streamsr.machine import cpu_runs_bf16
from streamsr.metrics import psnr
from streamsr.models import get_model

CASES = model_cases()
LEARNED = model_cases(learned_only=True)


def bf16_runs(variant) -> bool:
    return OpenVinoBackend.computes(variant, "bf16")


def _agreement(a, b) -> float:
    return psnr(np.clip(a, 0, 1), np.clip(b, 0, 1), peak=1.0)


def _picture_like(name, factor, part):
    batch, extra = network_inputs(name, factor, 1, 40, 40, np.random.default_rng(0), maps=0.2, part=part)
    return scipy.ndimage.gaussian_filter(batch, (0, 0, 2, 2)).astype(np.float32), extra


@pytest.mark.parametrize("name,scale,part", CASES, ids=map(case_id, CASES))
def test_every_network_agrees_with_onnx_runtime_in_fp32(name, scale, part):
    variant = get_model(name).variant(scale, part)
    batch, extra = network_inputs(name, scale, 2, 24, 36, np.random.default_rng(0), maps=0.2, part=part)
    outs = {}
    for backend in ("onnxruntime", "openvino"):
        b = create_backend(backend, variant, device="cpu", precision="fp32")
        outs[backend] = b.infer(batch, extra)
        b.close()
    assert outs["openvino"].dtype == np.float32
    assert outs["openvino"].shape == (2, 3, *out_size(name, scale, 24, 36, part))
    np.testing.assert_allclose(outs["openvino"], outs["onnxruntime"], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name,scale,part", LEARNED, ids=map(case_id, LEARNED))
def test_bf16_runs_every_fixed_factor_network_close_to_fp32(name, scale, part, caplog):
    """bf16 keeps 8 bits of mantissa: 51-62 dB from fp32 on picture-like input (measured); 42
    leaves room and still catches a wrong cast. The any-scale networks run in fp32 (their query
    coordinates rounded to bf16 pick wrong feature pixels: 17 dB), said once. A CPU without bf16
    instructions runs fp32 (the run says so, see tests/test_precision.py)."""
    variant = get_model(name).variant(scale, part)
    batch, extra = _picture_like(name, scale, part)
    choice._notice.cache_clear()
    outs, backends = {}, {}
    with caplog.at_level(logging.WARNING):
        for precision in ("fp32", "bf16"):
            backends[precision] = create_backend("openvino", variant, device="cpu", precision=precision)
            outs[precision] = backends[precision].infer(batch, extra)
    agreement = _agreement(outs["bf16"], outs["fp32"])
    if bf16_runs(variant) and cpu_runs_bf16():
        assert backends["bf16"].precision == "bf16"
        assert 42 < agreement < float("inf"), agreement  # close, and really computed in bf16
    else:
        assert backends["bf16"].precision == "fp32" and agreement == float("inf")
    assert (f"runs {variant.name} in fp32" in caplog.text) == (not bf16_runs(variant) and cpu_runs_bf16())


def test_only_the_networks_with_float32_inputs_are_kept_from_bf16():
    kept = {get_model(n).variant(f, p).name for n, f, p in CASES if not bf16_runs(get_model(n).variant(f, p))}
    assert kept == {"liif", "lte"}


def test_each_input_size_compiles_once_and_the_least_recently_used_is_dropped(monkeypatch):
    monkeypatch.setattr(openvino_backend, "_SHAPES_KEPT", 4)
    variant = get_model("espcn").variant(2)
    backend = OpenVinoBackend(variant, OpenVinoConfig(), None)
    compiles = []
    real = backend.core.compile_model
    monkeypatch.setattr(backend.core, "compile_model", lambda *a, **k: compiles.append(1) or real(*a, **k))
    sizes = [(8, 8), (8, 12), (8, 8), (10, 8), (12, 8), (14, 8), (8, 8), (8, 12)]
    for h, w in sizes:
        x = np.random.default_rng(h * w).random((1, 3, h, w), dtype=np.float32)
        y = backend.infer(x)
        assert y.shape == (1, 3, 2 * h, 2 * w)
    # four kept, five sizes: (8, 8) compiled once and kept, being used again; (8, 12), the least
    # recently used when the fifth came, was dropped and compiles again
    assert len(compiles) == 6 and len(backend.compiled) == 4
    # another batch of a kept size compiles nothing (tile reuse batches the tiles that changed)
    x = np.random.default_rng(5).random((5, 3, 8, 8), dtype=np.float32)
    np.testing.assert_allclose(backend.infer(x)[2:3], backend.infer(x[2:3]), rtol=1e-5, atol=1e-5)
    assert len(compiles) == 6


def test_outputs_are_the_callers_to_keep():
    """A request's output buffer is reused by its next call: what infer returns must not change."""
    backend = create_backend("openvino", get_model("espcn").variant(2), device="cpu")
    rng = np.random.default_rng(0)
    a, b = (rng.random((1, 3, 16, 16), dtype=np.float32) for _ in range(2))
    first = backend.infer(a)
    kept = first.copy()
    backend.infer(b)
    np.testing.assert_array_equal(first, kept)


def test_thread_and_pinning_options_reach_openvino():
    backend = create_backend("openvino", get_model("espcn").variant(2), device="cpu",
                             options={"openvino": {"threads": "1", "pinning": "false"}})
    backend.infer(np.zeros((1, 3, 8, 8), np.float32))
    (request,) = backend.compiled.values()
    compiled = request.get_compiled_model()
    assert compiled.get_property("INFERENCE_NUM_THREADS") == 1
    assert compiled.get_property("ENABLE_CPU_PINNING") is False


def test_it_runs_on_the_cpu_only():
    assert OpenVinoBackend.available("cpu") and not OpenVinoBackend.available("cuda")
    assert "--device cpu" in OpenVinoBackend.unavailable_reason("cuda")
    assert resolve_backend("openvino", "cpu") == "openvino"


def test_a_missing_openvino_is_reported_with_the_fix(monkeypatch):
    import builtins

    real = builtins.__import__

    def no_openvino(name, *args, **kwargs):
        if name == "openvino" or name.startswith("openvino."):
            raise ImportError(name)
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_openvino)
    assert not OpenVinoBackend.available("cpu")
    with pytest.raises(BackendUnavailableError, match="pip install openvino"):
        resolve_backend("openvino", "cpu")


def test_tiles_compile_a_few_shapes_and_agree_with_the_whole_frame():
    variant = get_model("espcn").variant(2)
    x = scipy.ndimage.gaussian_filter(np.random.default_rng(3).random((1, 3, 50, 70), dtype=np.float32), (0, 0, 1, 1))
    whole = create_backend("openvino", variant, device="cpu").infer(x)
    tiled = create_backend("openvino", variant, device="cpu", tile=24, tile_overlap=6)
    np.testing.assert_allclose(tiled.infer(x), whole, rtol=1e-4, atol=1e-4)
    shapes = list(tiled.inner.compiled)
    assert 1 < len(shapes) <= 16  # first, middle, next-to-last and last tiles across and down, any batch
    np.testing.assert_allclose(tiled.infer(x), whole, rtol=1e-4, atol=1e-4)
    assert sorted(tiled.inner.compiled) == sorted(shapes)  # a second frame compiles nothing new


def test_a_run_on_openvino_keeps_every_frame_and_reports_its_precision(small_clip, tmp_path):
    import av

    from streamsr import RunConfig, upscale_video

    stats = upscale_video(small_clip, tmp_path / "ov.mp4", RunConfig(scale=2, backend="openvino", precision="bf16"))
    assert stats.frames_in == stats.frames_out == 12
    assert (stats.extra["backend"], stats.extra["precision"]) == ("openvino", "bf16" if cpu_runs_bf16() else "fp32")
    with av.open(str(tmp_path / "ov.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (2 * 64, 2 * 48)


def test_calls_from_several_threads_each_get_their_own_result():
    """One backend shared by threads (an infer request is not): every call returns its input's
    output, whatever the other threads ask at the same time."""
    from concurrent.futures import ThreadPoolExecutor

    backend = create_backend("openvino", get_model("espcn").variant(2), device="cpu")
    rng = np.random.default_rng(7)
    inputs = [rng.random((1, 3, 8 + 2 * (i % 3), 8), dtype=np.float32) for i in range(24)]
    expected = [backend.infer(x) for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(backend.infer, inputs))
    for e, g in zip(expected, got, strict=True):
        np.testing.assert_array_equal(g, e)


def test_a_cpu_without_bf16_is_the_reason_given_for_the_networks_it_keeps_in_fp32(monkeypatch):
    """The network's reason came first, and named PyTorch as the way to bf16 on a CPU where no
    backend computes it."""
    import streamsr.machine

    liif = get_model("liif").variant(None)
    runs, why = choice.precision_fallback("openvino", "cpu", "bf16", variant=liif, cpu_bf16=True)
    assert runs == "fp32" and "runs liif in fp32: its query coordinates must stay float32" in why
    assert "bf16 runs on --backend torch" in why
    monkeypatch.setattr(streamsr.machine, "cpu_flags", lambda: frozenset({"avx2"}))
    runs, why = choice.precision_fallback("openvino", "cpu", "bf16", variant=liif)
    assert runs == "fp32" and "no bf16 instructions" in why and "--backend" not in why
