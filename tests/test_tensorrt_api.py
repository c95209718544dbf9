"""Our TensorRT code against the recorded Python API of real TensorRT releases (10.16 and 11.4).

TensorRT's libraries can't be installed on the test machines, but its Python bindings can be
imported against stand-in libraries: tools/tensorrt_api.py recorded what each release declares, and
tests/trt_api.py checks every name, argument and type our engine builder and runtime use against it.
This proves the calls fit the release's API, not that a real engine comes out right (that is the
tensorrt-marked test in test_gpu_path.py, run where TensorRT and a GPU are present).
"""

import contextlib
import sys

import pytest
import torch
from trt_api import RELEASES, ApiMismatch, TensorRTApi

from streamsr.backends.engine import EngineCache, ShapeProfile, build_engine, network_flags, uses_fp16_flag
from streamsr.backends.export import OUTPUT_NAME
from streamsr.backends.tensorrt_backend import TensorRTBackend, TensorRTConfig
from streamsr.errors import ExportError
from streamsr.models import get_model

PROFILE = ShapeProfile.parse("1x3x16x16", "2x3x24x32", "4x3x48x64")


def test_releases_recorded():
    assert {r.split(".")[0] for r in RELEASES} >= {"10", "11"}


@pytest.fixture(params=RELEASES)
def trt(request, monkeypatch):
    api = TensorRTApi(request.param)
    monkeypatch.setitem(sys.modules, "tensorrt", api)
    return api


def test_stand_in_refuses_what_the_release_refuses():
    """The checker can fail: names, arities, keywords and types the real bindings would refuse."""
    trt10, trt11 = TensorRTApi("10.16.1.11"), TensorRTApi("11.4.0.106")
    assert int(trt10.BuilderFlag.FP16) >= 0
    with pytest.raises(ApiMismatch, match="no member 'FP16'"):
        trt11.BuilderFlag.FP16  # noqa: B018  (TensorRT 11 dropped the flag: networks are strongly typed)
    builder = trt11.Builder(trt11.Logger(trt11.Logger.WARNING))
    with pytest.raises(ApiMismatch, match="has no attribute 'platform_has_fast_fp16'"):
        builder.platform_has_fast_fp16  # noqa: B018
    assert trt10.Builder(trt10.Logger()).platform_has_fast_fp16 is True
    with pytest.raises(ApiMismatch, match="expects ILogger"):
        trt11.Builder("logger")
    config = builder.create_builder_config()
    with pytest.raises(ApiMismatch, match="expects MemoryPoolType"):
        config.set_memory_pool_limit(0, 1 << 30)  # a plain int is not the enum
    with pytest.raises(ApiMismatch, match="no parameter named 'ignore'"):
        config.set_timing_cache(config.create_timing_cache(b""), ignore=False)
    with pytest.raises(ApiMismatch, match="missing argument 'ignore_mismatch'"):
        config.set_timing_cache(config.create_timing_cache(b""))
    with pytest.raises(ApiMismatch, match="cannot be called"):
        trt11.ICudaEngine()  # no constructor: engines come from a Runtime


def test_version_guards_on_real_releases():
    trt10, trt11 = TensorRTApi("10.16.1.11"), TensorRTApi("11.4.0.106")
    for api in (trt10, trt11):
        assert network_flags(api) == 1 << int(api.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
        assert not uses_fp16_flag(api, "fp16")  # both are strongly typed: precision comes from the ONNX


@pytest.mark.parametrize("model", ["espcn", "udvd"])
def test_build_engine_speaks_the_release_api(trt, tmp_path, model):
    spec = get_model(model, 2)
    inputs = {i.name: i.channels for i in spec.inputs}
    cache = tmp_path / "timing.cache"
    data = build_engine(b"onnx bytes", inputs, PROFILE, "fp16", timing_cache=cache)
    assert isinstance(data, bytes) and data
    (flags,), _ = trt.called("Builder.create_network")[0]
    assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert not trt.called("IBuilderConfig.set_flag")
    assert [a[0] for a, _ in trt.called("OnnxParser.parse")] == [b"onnx bytes"]
    shapes = {a[0]: a[1:] for a, _ in trt.called("IOptimizationProfile.set_shape")}
    assert shapes == {name: (PROFILE.min.as_tuple(c), PROFILE.opt.as_tuple(c), PROFILE.max.as_tuple(c))
                      for name, c in inputs.items()}
    assert len(trt.called("IBuilderConfig.add_optimization_profile")) == 1
    assert cache.read_bytes()  # the timing cache is written back for the next build
    build_engine(b"onnx bytes", inputs, PROFILE, "fp16", timing_cache=cache)
    assert trt.called("IBuilderConfig.create_timing_cache")[-1][0] == (cache.read_bytes(),)


def test_build_engine_reports_parser_errors(trt):
    trt.returns["OnnxParser.parse"] = False
    trt.returns["OnnxParser.num_errors"] = 2
    trt.returns["OnnxParser.get_error"] = lambda i: f"node {i} unsupported"
    with pytest.raises(ExportError, match="node 0 unsupported; node 1 unsupported"):
        build_engine(b"bad", {"lr": 3}, PROFILE, "fp32")
    trt.returns.pop("OnnxParser.parse")
    trt.returns["Builder.build_serialized_network"] = None
    with pytest.raises(ExportError, match="failed to build"):
        build_engine(b"good", {"lr": 3}, PROFILE, "fp32")


class _Stream:
    cuda_stream = 1234


@pytest.fixture
def no_gpu_needed(monkeypatch):
    """Let the backend's CUDA bookkeeping run on the CPU (the TensorRT calls are what is checked)."""
    monkeypatch.setattr(torch.cuda, "Stream", _Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))


@pytest.mark.parametrize("model", ["espcn", "udvd"])
def test_runtime_builds_caches_loads_and_executes(trt, no_gpu_needed, tmp_path, model):
    spec = get_model(model, 2)
    backend = TensorRTBackend(spec.variant(2), TensorRTConfig(precision="fp16", engine_dir=str(tmp_path)))
    backend.device = torch.device("cpu")
    n, h, w = 2, 24, 32
    trt.returns["IExecutionContext.get_tensor_shape"] = lambda name: (n, 3, 2 * h, 2 * w)
    tensors = {i.name: torch.zeros(n, i.channels, h, w) for i in spec.inputs}
    out = backend._execute(tensors)
    assert tuple(out.shape) == (n, 3, 2 * h, 2 * w)
    assert len(trt.called("Builder.build_serialized_network")) == 1
    engines = EngineCache(tmp_path).list()
    assert len(engines) == 1 and f"trt{trt.__version__.rsplit('.', 1)[0]}" in engines[0].name
    assert {a[0]: a[1] for a, _ in trt.called("IExecutionContext.set_input_shape")} == \
        {name: tuple(t.shape) for name, t in tensors.items()}
    addresses = dict(a for a, _ in trt.called("IExecutionContext.set_tensor_address"))
    assert set(addresses) == {*(i.name for i in spec.inputs), OUTPUT_NAME} and addresses[OUTPUT_NAME] == out.data_ptr()
    assert trt.called("IExecutionContext.execute_async_v3") == [((_Stream.cuda_stream,), {})]

    # a second backend finds the cached engine: no build, one deserialize
    trt.calls.clear()
    again = TensorRTBackend(spec.variant(2), TensorRTConfig(precision="fp16", engine_dir=str(tmp_path)))
    again.device = torch.device("cpu")
    again._execute(tensors)
    assert not trt.called("Builder.build_serialized_network")
    assert len(trt.called("Runtime.deserialize_cuda_engine")) == 1


def test_runtime_reports_a_failed_execution(trt, no_gpu_needed, tmp_path):
    spec = get_model("espcn", 2)
    backend = TensorRTBackend(spec.variant(2), TensorRTConfig(precision="fp32", engine_dir=str(tmp_path)))
    backend.device = torch.device("cpu")
    trt.returns["IExecutionContext.get_tensor_shape"] = lambda name: (1, 3, 32, 32)
    trt.returns["IExecutionContext.execute_async_v3"] = False
    with pytest.raises(RuntimeError, match="TensorRT execution failed"):
        backend._execute({"image": torch.zeros(1, 3, 16, 16)})


def test_runtime_refuses_frames_outside_the_profile_and_foreign_engines(trt, no_gpu_needed, tmp_path):
    from streamsr.errors import ConfigError

    spec = get_model("espcn", 2)
    backend = TensorRTBackend(spec.variant(2), TensorRTConfig(precision="fp16", engine_dir=str(tmp_path), profile=PROFILE))
    backend.device = torch.device("cpu")
    trt.returns["IExecutionContext.get_tensor_shape"] = lambda name: (1, 3, 200, 200)
    with pytest.raises(ConfigError, match="outside the engine's profile.*--tile"):
        backend._execute({"image": torch.zeros(1, 3, 100, 100)})  # max is 48x64
    with pytest.raises(ConfigError, match="outside the engine's profile"):
        backend._execute({"image": torch.zeros(5, 3, 24, 32)})  # max batch is 4
    assert not trt.called("IExecutionContext.execute_async_v3")
    built = EngineCache(tmp_path).list()[0]
    other = tmp_path / built.name.replace("espcn_x2", "udvd_x2")
    other.write_bytes(built.read_bytes())
    with pytest.raises(ConfigError, match="does not match"):
        TensorRTBackend(spec.variant(2), TensorRTConfig(precision="fp16", engine=str(other)))
