"""Our TensorRT code against the recorded Python API of real TensorRT releases (10.16 and 11.4).

TensorRT's libraries can't be installed on the test machines, but its Python bindings can be
imported against stand-in libraries: tools/tensorrt_api.py recorded what each release declares, and
tests/trt_api.py checks every name, argument and type our engine builder and runtime use against it.
This proves the calls fit the release's API, not that a real engine comes out right (that is the
tensorrt-marked test in test_gpu_path.py, run where TensorRT and a GPU are present).
"""

import contextlib
import dataclasses
import sys

import numpy as np
import pytest
import torch
from model_cases import network_inputs, out_size
from trt_api import RELEASES, ApiMismatch, TensorRTApi

from streamsr.backends import tensorrt_backend
from streamsr.backends.engine import EngineCache, ShapeProfile, build_engine, network_flags, uses_fp16_flag
from streamsr.backends.export import OUTPUT_NAME
from streamsr.backends.tensorrt_backend import TensorRTBackend, TensorRTConfig, _profile_from_name
from streamsr.errors import ConfigError, ExportError
from streamsr.models import build_model, get_model, weights_path

PROFILE = ShapeProfile.parse("1x3x16x16", "2x3x24x32", "4x3x48x64")
#: for models that take any scale: the output's (height, width) at min, opt, max as well
ANY_PROFILE = dataclasses.replace(PROFILE, out=((16, 16), (60, 80), (192, 256)))
#: fixed-factor models, models whose output size the query tables (rows, cols) give, and the two
#: parts of a model made of parts (named model-part)
MODELS = ["espcn", "udvd", "liif", "lte", "irn-down", "irn-up"]


def _name(model):
    return model.split("-")[0]


def _variant(model):
    spec, part = get_model(_name(model)), (model.split("-") + [None])[1]
    return spec.variant(2 if spec.scales else None, part)


def _profile(model):
    return PROFILE if get_model(_name(model)).scales else ANY_PROFILE


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """Weights for models that ship none yet (any-scale ones): randomly initialised, so the
    backend exports a real ONNX graph."""
    from safetensors.torch import save_file

    folder, paths = tmp_path_factory.mktemp("weights"), {}
    for model in MODELS:
        variant = _variant(model)
        if weights_path(variant.spec, variant.factor) is None:
            torch.manual_seed(0)
            net = build_model(variant.spec.name, variant.factor, pretrained=False)
            paths[model] = str(folder / f"{model}.safetensors")
            save_file({k: v.contiguous() for k, v in net.state_dict().items()}, paths[model])
    return paths


_GRAPHS: dict = {}


@pytest.fixture
def export_once(monkeypatch):
    """Each graph is exported for real once in this module, twice in a row to check the export is
    deterministic (the engine key hashes it: a cached engine is found only so), then reused."""
    real = tensorrt_backend.export_onnx

    def export(variant, **kw):
        key = (variant.name, *sorted(kw.items()))
        if key not in _GRAPHS:
            _GRAPHS[key] = real(variant, **kw)
            assert real(variant, **kw) == _GRAPHS[key], f"{variant.name}: two exports differ"
        return _GRAPHS[key]

    monkeypatch.setattr(tensorrt_backend, "export_onnx", export)


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


@pytest.mark.parametrize("model", MODELS)
def test_build_engine_speaks_the_release_api(trt, tmp_path, model):
    variant, profile = _variant(model), _profile(model)
    cache = tmp_path / "timing.cache"
    data = build_engine(b"onnx bytes", variant.inputs, profile, "fp16", timing_cache=cache)
    assert isinstance(data, bytes) and data
    (flags,), _ = trt.called("Builder.create_network")[0]
    assert flags == 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    assert not trt.called("IBuilderConfig.set_flag")
    assert [a[0] for a, _ in trt.called("OnnxParser.parse")] == [b"onnx bytes"]
    shapes = {a[0]: a[1:] for a, _ in trt.called("IOptimizationProfile.set_shape")}
    # the image and maps on the LR grid: N×C×h×w; query tables: one per output row / column
    lr = ((1, 16, 16), (2, 24, 32), (4, 48, 64))
    expected = {i.name: tuple((n, i.channels, h, w) for n, h, w in lr) for i in variant.inputs if i.grid == "lr"}
    if not get_model(_name(model)).scales:
        expected["rows"] = ((1, 15, 16, 1), (2, 15, 60, 1), (4, 15, 192, 1))
        expected["cols"] = ((1, 15, 1, 16), (2, 15, 1, 80), (4, 15, 1, 256))
    assert shapes == expected and set(expected) == set(variant.input_names)
    assert len(trt.called("IBuilderConfig.add_optimization_profile")) == 1
    assert cache.read_bytes()  # the timing cache is written back for the next build
    build_engine(b"onnx bytes", {i.name: (i.channels, i.grid) for i in variant.inputs}, profile, "fp16",
                 timing_cache=cache)  # name -> (channels, grid) works as well
    assert {a[0]: a[1:] for a, _ in trt.called("IOptimizationProfile.set_shape")[-len(expected):]} == expected
    assert trt.called("IBuilderConfig.create_timing_cache")[-1][0] == (cache.read_bytes(),)


def test_build_engine_reports_parser_errors(trt):
    trt.returns["OnnxParser.parse"] = False
    trt.returns["OnnxParser.num_errors"] = 2
    trt.returns["OnnxParser.get_error"] = lambda i: f"node {i} unsupported"
    with pytest.raises(ExportError, match="node 0 unsupported; node 1 unsupported"):
        build_engine(b"bad", {"image": (3, "lr")}, PROFILE, "fp32")
    trt.returns.pop("OnnxParser.parse")
    trt.returns["Builder.build_serialized_network"] = None
    with pytest.raises(ExportError, match="failed to build"):
        build_engine(b"good", {"image": (3, "lr")}, PROFILE, "fp32")


def test_build_engine_needs_output_sizes_for_inputs_on_output_grids(trt):
    with pytest.raises(ConfigError, match="input 'rows' lives on the rows grid.*output's sizes"):
        build_engine(b"onnx", _variant("liif").inputs, PROFILE, "fp16")
    assert not trt.called("Builder.__init__")  # refused before TensorRT is asked anything


class _Stream:
    cuda_stream = 1234


@pytest.fixture
def no_gpu_needed(monkeypatch):
    """Let the backend's CUDA bookkeeping run on the CPU (the TensorRT calls are what is checked)."""
    monkeypatch.setattr(torch.cuda, "Stream", _Stream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a: "NVIDIA H100 80GB HBM3")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *a: (9, 0))


@pytest.mark.parametrize("model", MODELS)
def test_runtime_builds_caches_loads_and_executes(trt, no_gpu_needed, export_once, tmp_path, random_weights, model):
    variant, weights = _variant(model), random_weights.get(model)
    backend = TensorRTBackend(variant, TensorRTConfig(precision="fp16", engine_dir=str(tmp_path)), weights=weights)
    backend.device = torch.device("cpu")
    n, h, w = 2, 24, 32
    # 48x64 at x2; 60x80 at x2.5 for any-scale models; 12x16 for a down part
    big_h, big_w = out_size(variant.spec.name, variant.factor, h, w, variant.part)
    trt.returns["IExecutionContext.get_tensor_shape"] = lambda name: (n, 3, big_h, big_w)
    batch, extra = network_inputs(variant.spec.name, variant.factor, n, h, w, np.random.default_rng(0),
                                  part=variant.part)
    tensors = {variant.input_names[0]: torch.from_numpy(batch), **{k: torch.from_numpy(v) for k, v in extra.items()}}
    assert set(tensors) == set(variant.input_names)
    out = backend._execute(tensors)
    assert tuple(out.shape) == (n, 3, big_h, big_w)
    assert len(trt.called("Builder.build_serialized_network")) == 1
    engines = EngineCache(tmp_path).list()
    assert len(engines) == 1 and f"trt{trt.__version__.rsplit('.', 1)[0]}" in engines[0].name
    set_shapes = {a[0]: a[1] for a, _ in trt.called("IExecutionContext.set_input_shape")}
    assert set_shapes == {name: tuple(t.shape) for name, t in tensors.items()}
    built = {a[0]: a[1:] for a, _ in trt.called("IOptimizationProfile.set_shape")}
    if variant.factor is None:
        # the lazy profile covers this output and any smaller one (a tile's); the name records it
        assert set_shapes["rows"] == (n, 15, big_h, 1) and set_shapes["cols"] == (n, 15, 1, big_w)
        assert built["rows"] == ((1, 15, 1, 1), (n, 15, big_h, 1), (4, 15, big_h, 1))
        assert built["cols"] == ((1, 15, 1, 1), (n, 15, 1, big_w), (4, 15, 1, big_w))
        assert backend.profile.out == ((1, 1), (big_h, big_w), (big_h, big_w))
        assert f"_out1x1_{big_h}x{big_w}_{big_h}x{big_w}-" in engines[0].name
    else:
        assert backend.profile.out is None and "_out" not in engines[0].name
    # min 16x16 (or the frame): smaller tiles of the same frames fit (tile reuse's windows)
    assert built[variant.input_names[0]] == ((1, 3, 16, 16), (n, 3, h, w), (4, 3, h, w))
    assert backend.capabilities.max_batch == 4  # what tile reuse batches tiles by
    assert _profile_from_name(str(engines[0])) == backend.profile  # the file name reads back
    addresses = dict(a for a, _ in trt.called("IExecutionContext.set_tensor_address"))
    assert set(addresses) == {*variant.input_names, OUTPUT_NAME} and addresses[OUTPUT_NAME] == out.data_ptr()
    assert trt.called("IExecutionContext.execute_async_v3") == [((_Stream.cuda_stream,), {})]

    # a second backend finds the cached engine: no build, one deserialize; so does one given the file
    for config in (TensorRTConfig(precision="fp16", engine_dir=str(tmp_path)),
                   TensorRTConfig(precision="fp16", engine=str(engines[0]))):
        trt.calls.clear()
        again = TensorRTBackend(variant, config, weights=weights)
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


@pytest.fixture
def fake_export(monkeypatch):
    """The engine key hashes whatever the exporter gives; these tests need no real graph."""
    monkeypatch.setattr(tensorrt_backend, "export_onnx", lambda variant, **kw: f"{variant.name} graph".encode())


@pytest.mark.parametrize("model", ["liif", "lte"])
def test_runtime_refuses_outputs_outside_the_profile(trt, no_gpu_needed, fake_export, tmp_path, model):
    variant = _variant(model)
    backend = TensorRTBackend(variant, TensorRTConfig(precision="fp16", engine_dir=str(tmp_path), profile=ANY_PROFILE))
    backend.device = torch.device("cpu")
    assert "_out16x16_60x80_192x256-" in EngineCache(tmp_path).list()[0].name

    def batch(h, w, big_h, big_w):  # TensorRT reads no values here: zero tables of the output's size
        return {"image": torch.zeros(1, 3, h, w), "rows": torch.zeros(1, 15, big_h, 1),
                "cols": torch.zeros(1, 15, 1, big_w)}

    trt.returns["IExecutionContext.get_tensor_shape"] = lambda name: (1, 3, 60, 80)
    backend._execute(batch(24, 32, 60, 80))  # inside: runs
    assert len(trt.called("IExecutionContext.execute_async_v3")) == 1
    with pytest.raises(ConfigError, match=r"1 frames of 32x24 to 320x200 is outside the engine's profile .*_out16x16_"
                                          r"60x80_192x256; use --tile.*--out-shape"):
        backend._execute(batch(24, 32, 200, 320))  # the output is larger than the profile's 192x256
    with pytest.raises(ConfigError, match="outside the engine's profile"):
        backend._execute(batch(24, 32, 8, 80))  # smaller than its 16x16
    with pytest.raises(ConfigError, match="outside the engine's profile"):
        backend._execute(batch(100, 32, 60, 80))  # the LR image is too tall (max 48x64)
    assert len(trt.called("IExecutionContext.execute_async_v3")) == 1


def test_profiles_that_do_not_fit_the_model_are_refused(trt, no_gpu_needed, fake_export, tmp_path):
    with pytest.raises(ConfigError, match="liif takes any output size.*needs the output's sizes"):
        TensorRTBackend(_variant("liif"), TensorRTConfig(engine_dir=str(tmp_path), profile=PROFILE))
    with pytest.raises(ConfigError, match="espcn_x2's output size follows from its input's.*takes no output sizes"):
        TensorRTBackend(_variant("espcn"), TensorRTConfig(engine_dir=str(tmp_path), profile=ANY_PROFILE))
    assert not trt.called("Builder.build_serialized_network")


def test_build_engine_command_gives_any_scale_models_output_sizes():
    from click.testing import CliRunner

    from streamsr.cli import main
    from streamsr.cli.modelcmds import _engine_profile
    from streamsr.errors import UnsupportedScaleError

    shapes = ("1x3x64x64", "1x3x540x960", "4x3x1080x1920")
    liif, espcn = _variant("liif"), _variant("espcn")
    assert _engine_profile(liif, 2.5, None, shapes, None).out == ((160, 160), (1350, 2400), (2700, 4800))
    assert _engine_profile(liif, None, "1920x1080", ("1x3x360x640", "1x3x540x960", "2x3x720x1280"), None).out == \
        ((1080, 1920),) * 3
    assert _engine_profile(liif, None, None, shapes, "out128x128,1080x1920,2160x3840") == \
        ShapeProfile.parse(*shapes, out=("128x128", "1080x1920", "2160x3840"))
    assert _engine_profile(espcn, 2, None, shapes, None) == ShapeProfile.parse(*shapes)  # unchanged
    with pytest.raises(ConfigError, match="espcn_x2's output size follows from its input's"):
        _engine_profile(espcn, None, None, shapes, "128x128,1080x1920,2160x3840")
    with pytest.raises(UnsupportedScaleError, match="64x64 -> 3840x2160"):
        _engine_profile(liif, None, "3840x2160", shapes, None)  # x60 at the smallest LR shape
    r = CliRunner().invoke(main, ["build-engine", "--model", "lte"])
    assert r.exit_code == 1 and "Traceback" not in r.output
    assert r.stderr.strip().splitlines() == [("streamsr: error: model 'lte' takes any scale: say which outputs the "
                                               "engine is for with --scale, --size WxH or --out-shape MIN,OPT,MAX "
                                               "(HxW each)")]
