"""Precisions: each backend declares those it runs; a run asking for one its backend or its CPU
cannot run falls back and says so once; bf16 runs every network on the torch backend and agrees
with fp32; the run reports the precision it ran. No timing here (BENCHMARKS.md has the speed)."""

import logging

import numpy as np
import pytest
import torch
from model_cases import case_id, model_cases, network_inputs

from streamsr import RunConfig, upscale_video
from streamsr.backends import PRECISIONS, create_backend, list_backends, resolve_backend
from streamsr.backends import choice as choice_module
from streamsr.backends.base import get_backend_class
from streamsr.backends.choice import precision_fallback, resolve_precision
from streamsr.backends.torch_backend import TorchBackend, TorchConfig
from streamsr.errors import ConfigError
from streamsr.machine import cpu_flags, cpu_runs_bf16
from streamsr.metrics import psnr
from streamsr.models import get_model
from streamsr.pipeline.memory import run_memory

ESPCN = get_model("espcn").variant(2)


@pytest.fixture(autouse=True)
def fresh_notices():
    choice_module._notice.cache_clear()  # each test sees its own "said once"
    yield
    choice_module._notice.cache_clear()


def test_every_backend_declares_precisions_it_knows():
    for name in list_backends():
        declared = get_backend_class(name).precisions
        assert declared and set(declared) <= {"cpu", "cuda"}, name
        for device, runs in declared.items():
            assert runs and set(runs) <= set(PRECISIONS), (name, device, runs)


def test_a_declared_precision_runs_as_asked():
    assert precision_fallback("torch", "cpu", "bf16", cpu_bf16=True) == ("bf16", None)
    assert precision_fallback("torch", "cpu", "fp32", cpu_bf16=False) == ("fp32", None)
    assert precision_fallback("torch", "cuda", "bf16") == ("bf16", None)  # the GPU is not the CPU
    assert precision_fallback("onnxruntime", "cuda", "fp16") == ("fp16", None)


def test_an_undeclared_precision_falls_back_to_the_backends_first_and_names_who_runs_it():
    runs, why = precision_fallback("onnxruntime", "cpu", "bf16")
    assert runs == "fp32" and "onnxruntime backend runs fp32/int8 on the cpu, not bf16" in why
    assert "--backend openvino or torch" in why
    runs, why = precision_fallback("torch", "cpu", "fp16")
    assert runs == "fp32" and "not fp16" in why
    runs, why = precision_fallback("tensorrt", "cuda", "bf16")
    assert runs == "fp16" and "runs fp16/fp32 on the cuda" in why  # TensorRT's own first


def test_bf16_on_a_cpu_without_bf16_instructions_runs_fp32():
    runs, why = precision_fallback("torch", "cpu", "bf16", cpu_bf16=False)
    assert runs == "fp32" and "no bf16 instructions" in why


def test_the_cpu_flags_are_read_not_assumed():
    flags = cpu_flags()
    assert isinstance(flags, frozenset) and flags, "Linux lists the CPU's flags in /proc/cpuinfo"
    assert cpu_runs_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})


def test_auto_at_bf16_takes_a_backend_that_runs_it():
    # a network ONNX Runtime is the fastest measured for at fp32 on the CPU; it does not run bf16
    names = sorted({r.variant for r in choice_module._speed_rows(choice_module.SPEED_TABLE)})
    net = next(n for n in names if choice_module.measured_speeds(n, "cpu", "fp32")[0].backend == "onnxruntime"
               and choice_module.measured_speeds(n, "cpu", "bf16"))
    assert resolve_backend("auto", "cpu", net, "fp32") == "onnxruntime"
    fastest_bf16 = choice_module.measured_speeds(net, "cpu", "bf16")[0].backend
    assert resolve_backend("auto", "cpu", net, "bf16") == fastest_bf16 != "onnxruntime"
    assert resolve_backend("onnxruntime", "cpu", net, "bf16") == "onnxruntime"  # a named one is kept


def test_a_fallback_is_said_once(caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="streamsr")
    for _ in range(3):  # a multi-camera run loads a network per camera
        backend = create_backend("onnxruntime", ESPCN, device="cpu", precision="bf16")
        assert backend.precision == "fp32"
        backend.close()
    said = [r.getMessage() for r in caplog.records if "--precision bf16" in r.getMessage()]
    assert said == [("--precision bf16: the onnxruntime backend runs fp32/int8 on the cpu, not bf16 "
                     "(bf16 runs on --backend openvino or torch); running fp32")]


def test_a_cpu_without_bf16_falls_back_when_loading(caplog, monkeypatch):
    import streamsr.machine

    monkeypatch.setattr(streamsr.machine, "cpu_flags", lambda: frozenset({"fpu", "avx2"}))
    caplog.set_level(logging.WARNING, logger="streamsr")
    backend = create_backend("torch", ESPCN, device="cpu", precision="bf16")
    assert backend.precision == "fp32" and backend.dtype is torch.float32
    assert any("no bf16 instructions" in r.getMessage() for r in caplog.records)


def test_the_default_precision_says_nothing(caplog):
    caplog.set_level(logging.WARNING, logger="streamsr")
    assert resolve_precision("onnxruntime", "cpu", None) == "fp32"
    assert resolve_precision("tensorrt", "cuda", None) == "fp16"
    assert not caplog.records


@pytest.mark.parametrize("bad", ["int4", "FP32", "half"])
def test_unknown_precisions_are_refused(bad):
    with pytest.raises(ConfigError, match="fp32, fp16, bf16, int8"):
        RunConfig(precision=bad)
    with pytest.raises(ConfigError, match="fp32, fp16, bf16, int8"):
        create_backend("torch", ESPCN, device="cpu", precision=bad)


@pytest.mark.parametrize("case", model_cases(learned_only=True), ids=case_id)
def test_every_network_runs_in_bf16_and_agrees_with_fp32(case):
    """bf16 keeps 8 bits of mantissa: outputs agree to about 53-62 dB on smooth input (measured);
    45 leaves room and still catches a wrong cast (an fp16-only path, a table cut to bf16)."""
    import scipy.ndimage

    name, factor, part = case
    variant = get_model(name).variant(factor, part)
    batch, extra = network_inputs(name, factor, 1, 40, 40, np.random.default_rng(0), part=part)
    batch = scipy.ndimage.gaussian_filter(batch, (0, 0, 2, 2)).astype(np.float32)  # picture-like, not white noise
    outs = {}
    for precision in ("fp32", "bf16"):
        backend = TorchBackend(variant, TorchConfig(device="cpu", precision=precision), None)
        assert {p.dtype for p in backend.model.parameters()} == {backend.dtype}
        outs[precision] = backend.infer(batch, extra)
    assert outs["bf16"].dtype == np.float32 and outs["bf16"].shape == outs["fp32"].shape
    agreement = psnr(np.clip(outs["bf16"], 0, 1), np.clip(outs["fp32"], 0, 1))
    assert 45 < agreement < float("inf"), agreement  # close, and really computed in bf16


def test_bf16_plans_half_the_network_memory():
    args = {"batch": 1, "queue_size": 4, "tile": None, "overlap": 0}
    fp32, bf16, fp16 = (run_memory(ESPCN, (640, 360), (1280, 720), **args, precision=p) for p in ("fp32", "bf16", "fp16"))
    assert bf16 == fp16 and bf16.network == fp32.network / 2 and bf16.queues == fp32.queues


def test_a_run_reports_the_precision_it_ran(small_clip, tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="streamsr")
    stats = upscale_video(small_clip, tmp_path / "bf16.mp4", RunConfig(scale=2, precision="bf16"))
    assert stats.frames_in == stats.frames_out == 12
    assert stats.extra["backend"] == resolve_backend("auto", "cpu", ESPCN, "bf16")  # auto: the fastest that runs bf16
    assert stats.extra["backend"] in ("torch", "openvino")
    assert stats.extra["precision"] == ("bf16" if cpu_runs_bf16() else "fp32")
    stats = upscale_video(small_clip, tmp_path / "ort.mp4", RunConfig(scale=2, precision="bf16", backend="onnxruntime"))
    assert (stats.extra["backend"], stats.extra["precision"]) == ("onnxruntime", "fp32")
    assert any("running fp32" in r.getMessage() for r in caplog.records)


# --precision auto: the fastest measured precision within AUTO_MAX_LOSS of fp32 for the network


def _tables(tmp_path, monkeypatch, speeds, losses, cpu_bf16=True):
    """Point the choice at a speed table and a quality table written here, on a CPU with or
    without bf16."""
    import json

    import streamsr.machine

    speed = tmp_path / "speed.json"
    speed.write_text(json.dumps({"rows": [
        {"variant": "espcn_x2", "device": "cpu", "precision": p, "backend": b, "options": {}, "fps": fps}
        for (b, p), fps in speeds.items()]}))
    quality = tmp_path / "quality.json"
    quality.write_text(json.dumps({"rows": [
        {"model": "espcn", "scale": 2.0, "fp32": 34.0,
         **{k: {"mean_change": -loss, "precision": k.split("@")[0]} for k, loss in losses.items()}}]}))
    monkeypatch.setattr(choice_module, "SPEED_TABLE", speed)
    monkeypatch.setattr(choice_module, "QUALITY_TABLE", quality)
    flags = {"avx512f", "avx512_bf16", "amx_bf16"} if cpu_bf16 else {"avx512f"}
    monkeypatch.setattr(streamsr.machine, "cpu_flags", lambda: frozenset(flags))


def test_auto_takes_bf16_where_it_measured_faster_and_close_enough(tmp_path, monkeypatch):
    _tables(tmp_path, monkeypatch, {("onnxruntime", "fp32"): 10.0, ("torch", "bf16"): 20.0}, {"bf16": 0.05})
    assert choice_module.auto_precision("auto", "cpu", ESPCN) == "bf16"
    assert resolve_backend("auto", "cpu", ESPCN, "bf16") == "torch"
    assert choice_module.auto_precision("onnxruntime", "cpu", ESPCN) == "fp32"  # a named backend without bf16
    assert choice_module.auto_precision("auto", "cuda", ESPCN) == "fp16"  # the GPU's default


def test_auto_at_bf16_takes_the_fastest_backend_that_runs_it(tmp_path, monkeypatch):
    _tables(tmp_path, monkeypatch, {("onnxruntime", "fp32"): 10.0, ("torch", "bf16"): 20.0, ("openvino", "bf16"): 30.0},
            {"bf16": 0.05, "bf16@openvino": 0.04})
    assert choice_module.auto_precision("auto", "cpu", ESPCN) == "bf16"
    assert resolve_backend("auto", "cpu", ESPCN, "bf16") == "openvino"
    assert choice_module.auto_precision("torch", "cpu", ESPCN) == "bf16"  # the named backend's own rows


@pytest.mark.parametrize(("speeds", "losses", "cpu_bf16"), [
    ({("onnxruntime", "fp32"): 10.0, ("torch", "bf16"): 9.0}, {"bf16": 0.05}, True),   # slower
    ({("onnxruntime", "fp32"): 10.0, ("torch", "bf16"): 20.0}, {"bf16": 0.2}, True),   # loses too much
    ({("onnxruntime", "fp32"): 10.0, ("torch", "bf16"): 20.0}, {}, True),              # quality not measured
    ({("onnxruntime", "fp32"): 10.0, ("torch", "bf16"): 20.0}, {"bf16": 0.05}, False),  # the CPU would emulate it
    ({}, {"bf16": 0.05}, True),                                                         # speed not measured
    ({("onnxruntime", "fp32"): 10.0, ("openvino", "bf16"): 30.0}, {"bf16": 0.05, "bf16@openvino": 0.2}, True),
    # one backend's bf16 loses too much: auto takes no backend's
])
def test_auto_keeps_fp32_otherwise(tmp_path, monkeypatch, speeds, losses, cpu_bf16):
    _tables(tmp_path, monkeypatch, speeds, losses, cpu_bf16)
    assert choice_module.auto_precision("auto", "cpu", ESPCN) == "fp32"


def test_auto_follows_the_shipped_tables():
    """Against the shipped numbers: never more than the limit lost, never slower than fp32."""
    from streamsr.backends.choice import AUTO_MAX_LOSS, measured_speeds, precision_loss

    networks = sorted({r.variant for r in choice_module._speed_rows(choice_module.SPEED_TABLE)})
    chosen = {}
    for name in networks:
        precision = choice_module.auto_precision("auto", "cpu", name)
        chosen[name] = precision
        assert precision_loss(name, precision) <= AUTO_MAX_LOSS, name
        fastest = {p: max([r.fps for r in measured_speeds(name, "cpu", p)], default=0.0) for p in ("fp32", precision)}
        assert fastest[precision] >= fastest["fp32"], name
    assert chosen["irn_x2-up"] == chosen["irn_x2-down"] == "fp32"  # 0.2 dB lost in bf16 (MODELS.md)
    if cpu_runs_bf16():
        assert chosen["srresnet_x2"] == "bf16"  # 4-5x faster, 0.02 dB


def test_a_run_at_auto_runs_what_auto_picks(small_clip, tmp_path):
    stats = upscale_video(small_clip, tmp_path / "auto.mp4", RunConfig(scale=2, precision="auto"))
    assert stats.frames_in == stats.frames_out == 12
    assert stats.extra["precision"] == choice_module.auto_precision("auto", "cpu", ESPCN)


def test_the_quality_tool_keeps_the_networks_it_did_not_measure_again():
    """tools/eval_precision.py --models udvd --merge wrote a table of UDVD alone: every other
    network's row was lost."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "tools" / "eval_precision.py"
    spec = importlib.util.spec_from_file_location("eval_precision_tool", path)
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    earlier = {("espcn", 2.0): {"model": "espcn", "scale": 2.0, "fp32": 34.0},
               ("udvd", 2.0): {"model": "udvd", "scale": 2.0, "fp32": 33.0}}
    rows = [{"model": "udvd", "scale": 2.0, "fp32": 33.5}, {"model": "srcnn", "scale": 2.0, "fp32": 32.0}]
    assert tool.merged(earlier, rows) == [earlier["espcn", 2.0], rows[0], rows[1]]
    assert tool.merged({}, rows) == rows
