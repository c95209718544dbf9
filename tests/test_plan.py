"""The run plan, geometry, input declarations and backend capabilities, as pure functions: no
input is opened and no network loaded, any machine can be planned on."""

import dataclasses
from fractions import Fraction
from types import SimpleNamespace

import numpy as np
import pytest
from media import read_video

from streamsr import RunConfig, SinkConfig, upscale_video
from streamsr.backends import Capabilities, WrappedBackend, backend_option_names, create_backend, resolve_backend
from streamsr.backends.base import coerce_backend_options
from streamsr.backends.tiling import TiledBackend
from streamsr.errors import ConfigError, UnsupportedScaleError
from streamsr.frames import ColourTags, VideoInfo
from streamsr.machine import Machine
from streamsr.metrics import psnr
from streamsr.models import (
    ContinuousRange,
    FixedFactors,
    ModelInput,
    ModelSpec,
    Parts,
    ScaleRequest,
    get_model,
    list_models,
    resolve_geometry,
)
from streamsr.models.inputs import InputAssembler, grid_size, needs_noise, run_conditioning
from streamsr.pipeline.hub import InferenceHub
from streamsr.pipeline.plan import known_variant, plan_run, plan_source

INFO = VideoInfo(width=640, height=360, time_base=Fraction(1, 25), frame_rate=Fraction(25), frame_count=100,
                 codec="h264", pix_fmt="yuv420p", colour=ColourTags(1, 1))
HOST = SimpleNamespace(name="onnxruntime", capabilities=Capabilities())
CUDA = SimpleNamespace(name="torch", capabilities=Capabilities(location="torch", device="cuda", device_tensors=True))
NO_GPU, GPU = Machine(), Machine(cuda=True, hwdevices=("cuda",))


def _spec(geometry, inputs=None):
    return ModelSpec(name="m", paper="-", geometry=geometry, **({"inputs": inputs} if inputs else {}))


def test_fixed_factors_resolve_scales_and_sizes():
    spec = _spec(FixedFactors((2, 3, 4)))
    g = resolve_geometry(spec, ScaleRequest(), 640, 360)
    assert (g.factor, g.net_size, g.out_size, g.resized) == (2, (1280, 720), (1280, 720), False)
    assert resolve_geometry(spec, ScaleRequest(scale=3.0), 640, 360).out_size == (1920, 1080)
    with pytest.raises(UnsupportedScaleError, match="supported: 2, 3, 4"):
        resolve_geometry(spec, ScaleRequest(scale=1.5), 640, 360)
    # 720p camera to a 1080p wall: x1.5 is reached by the smallest factor at least as large, resized down
    g = resolve_geometry(spec, ScaleRequest(size=(1920, 1080)), 1280, 720)
    assert (g.factor, g.net_size, g.out_size, g.resized) == (2, (2560, 1440), (1920, 1080), True)
    assert g.label == "x2 -> 1920x1080"
    g = resolve_geometry(spec, ScaleRequest(size=(3000, 2000)), 640, 360)  # beyond x4: the largest factor
    assert g.factor == 4 and g.out_size == (3000, 2000)


def test_continuous_and_parts_geometry():
    cont = _spec(ContinuousRange(1.0, 4.0, per_axis=True))
    g = resolve_geometry(cont, ScaleRequest(scale=1.5), 1280, 720)
    assert (g.factor, g.out_size, g.resized) == (None, (1920, 1080), False) and g.label == "x1.5"
    g = resolve_geometry(cont, ScaleRequest(size=(1920, 1080)), 640, 480)  # another aspect ratio
    assert g.scale == (3.0, 2.25) and g.label == "x3/2.25"
    with pytest.raises(UnsupportedScaleError, match="1 to 4"):
        resolve_geometry(cont, ScaleRequest(scale=5.0), 100, 100)
    same = _spec(ContinuousRange(1.0, 4.0, per_axis=False))
    with pytest.raises(ConfigError, match="both axes alike"):
        resolve_geometry(same, ScaleRequest(size=(1920, 1080)), 640, 480)
    pair = _spec(Parts((2, 4), (("down", -1), ("up", 1)), default_part="up"))
    assert resolve_geometry(pair, ScaleRequest(scale=2), 640, 360).out_size == (1280, 720)
    g = resolve_geometry(pair, ScaleRequest(scale=4, part="down"), 1920, 1080)
    assert (g.out_size, g.part, g.label) == ((480, 270), "down", "/4 down")
    with pytest.raises(ConfigError, match="divisible by 4"):
        resolve_geometry(pair, ScaleRequest(scale=4, part="down"), 1922, 1080)
    with pytest.raises(ConfigError, match="has parts down, up"):
        resolve_geometry(pair, ScaleRequest(part="sideways"), 64, 64)
    with pytest.raises(ConfigError, match="has no parts"):
        resolve_geometry(_spec(FixedFactors((2,))), ScaleRequest(part="up"), 64, 64)
    with pytest.raises(ConfigError, match="not both"):
        ScaleRequest(scale=2, size=(10, 10))


@pytest.mark.parametrize("name", list_models())
def test_every_model_declares_its_inputs(name):
    spec = get_model(name)
    assert spec.inputs[0].role == "image" and spec.inputs[0].channels == 3
    assert spec.conditioned == any(i.role == "degradation" for i in spec.inputs)
    factor = spec.scales[0] if spec.scales else None
    variant = spec.variant(factor)
    assert variant.name == (f"{name}_x{factor}" if factor else name) and variant.input_names[0] == "image"
    out = (16, 23)  # any output size: inputs on its grids follow it
    arrays = InputAssembler(variant.inputs).arrays([run_conditioning(1.0, 5.0)] * 2, 7, 9, out=out)
    assert set(arrays) == {i.name for i in spec.inputs[1:]}
    for i in spec.inputs[1:]:
        assert arrays[i.name].shape == (2, i.channels, *grid_size(i.grid, (7, 9), out))
        assert arrays[i.name].dtype == np.float32


def test_input_assembler_tells_each_frame_and_reuses_constant_maps():
    udvd = get_model("udvd").variant(2)
    assert needs_noise(udvd.inputs)
    assembler = InputAssembler(udvd.inputs)
    first = assembler.arrays([run_conditioning(1.0, 10.0), run_conditioning(1.0, 20.0)], 4, 4)
    assert np.allclose(first["noise_level"][:, 0, 0, 0], [10 / 255, 20 / 255])
    again = assembler.arrays([run_conditioning(1.0, 30.0), run_conditioning(1.0, 40.0)], 4, 4)
    assert again["kernel_code"] is first["kernel_code"]  # built once for the run's blur and shape
    other = assembler.arrays([run_conditioning(2.0, 30.0)] * 2, 4, 4)
    assert not np.allclose(other["kernel_code"], first["kernel_code"])
    with pytest.raises(ValueError, match="only the image"):
        ModelInput("z", 3, "latent")


def test_plan_of_a_file_and_of_a_camera():
    cfg = RunConfig()
    src = plan_source(cfg, "in.mp4", NO_GPU)
    assert (src.live, src.realtime, src.pace, src.audio, src.hwaccel) == (False, False, False, True, None)
    plan = plan_run(cfg, INFO, "out.mp4", src, HOST)
    assert plan.geometry.out_size == (1280, 720) and plan.variant.name == "espcn_x2"
    assert (plan.queue_size, plan.max_latency, plan.colour_on, plan.telling) == (8, None, "cpu", None)
    assert plan.sink == dataclasses.replace(cfg.sink, codec="libx264") and plan.pix_fmt == "yuv420p"  # the mp4 default

    cam = plan_source(cfg, "rtsp://u:p@cam/s", GPU)
    assert (cam.live, cam.realtime, cam.audio, cam.hwaccel) == (True, True, True, "cuda")
    plan = plan_run(RunConfig(model="udvd", scale=4), INFO, "cam.mkv", cam, CUDA)
    assert (plan.queue_size, plan.max_latency, plan.colour_on) == (2, 0.5, "device")
    assert plan.telling.blur == 2.0 and plan.telling.noise is None and plan.estimate_noise
    assert (plan.sink.live, plan.sink.preset, plan.sink.tune, plan.sink.gop) == (True, "veryfast", "zerolatency", 25)
    told = plan_run(RunConfig(model="udvd", noise=7, blur=1.2), INFO, "cam.mkv", cam, CUDA)
    assert told.telling.noise == 7 and told.telling.blur == 1.2 and not told.estimate_noise
    hls = plan_source(cfg, "https://cdn/live/index.m3u8", NO_GPU)
    assert hls.live and hls.pace  # whole segments arrive at once: paced at their own timestamps


def test_plan_refuses_what_does_not_fit():
    file = plan_source(RunConfig(), "in.mp4", NO_GPU)
    with pytest.raises(ConfigError, match="onnxruntime backend works on host arrays"):
        plan_run(RunConfig(colour_on="device"), INFO, "o.mp4", file, HOST)
    with pytest.raises(ConfigError, match="yuv444p is not 8-bit 4:2:0"):
        plan_run(RunConfig.from_options(colour_on="device", codec="ffv1", pix_fmt="yuv444p"), INFO, "o.mkv", file, CUDA)
    with pytest.raises(ConfigError, match="--noise/--blur need a degradation-aware model"):
        plan_run(RunConfig(noise=5), INFO, "o.mp4", file, HOST)
    with pytest.raises(ConfigError, match="is the input"):
        plan_run(RunConfig(), INFO, "in.mp4", file, HOST)
    assert plan_run(RunConfig(colour_on="auto"), INFO, "o.mp4", file, CUDA).colour_on == "device"
    assert plan_run(RunConfig(colour_on="auto"), INFO, "o.mp4", file, CUDA).reuse is None  # auto: not on the device
    reusing = plan_run(RunConfig(reuse="on"), INFO, "o.mp4", file, CUDA)  # --reuse on wants host arrays
    assert reusing.colour_on == "cpu" and reusing.reuse.overlap == 4 and reusing.reuse.probe == 0  # ESPCN's halo
    with pytest.raises(ConfigError, match="--reuse on: .*colour-on cpu"):
        plan_run(RunConfig(reuse="on", colour_on="device"), INFO, "o.mp4", file, CUDA)
    assert plan_run(RunConfig(size=(1000, 700)), INFO, "o.mp4", file, HOST).out_size == (1000, 700)
    assert plan_run(RunConfig(size="1001x701"), INFO, "o.mp4", file, HOST).out_size == (1000, 700)  # 4:2:0


def test_known_variant_only_when_the_input_size_does_not_matter():
    assert known_variant(RunConfig(model="udvd", scale=4)).name == "udvd_x4"
    assert known_variant(RunConfig(model="srgan")).name == "srgan_x4"  # its only factor
    assert known_variant(RunConfig(size=(1920, 1080))) is None  # the factor depends on the input


def test_backend_options_are_checked_by_name_and_typed():
    assert {"threads", "compile", "channels_last"} <= set(backend_option_names("torch"))
    assert "device" not in backend_option_names("torch")  # the run sets it
    typed = coerce_backend_options({"torch": {"threads": "2", "compile": "true"}, "tensorrt": {"max_batch": "8"}})
    assert typed == {"torch": {"threads": 2, "compile": True}, "tensorrt": {"max_batch": 8}}
    with pytest.raises(ConfigError, match="unknown option 'thread' for the torch backend; it has: .*threads"):
        coerce_backend_options({"torch": {"thread": 2}})
    with pytest.raises(ConfigError, match="unknown backend 'tensorflow'"):
        coerce_backend_options({"tensorflow": {}})
    with pytest.raises(ConfigError, match="cannot read 'lots' as int"):
        coerce_backend_options({"onnxruntime": {"threads": "lots"}})
    profile = coerce_backend_options({"tensorrt": {"profile": "1x3x64x64,1x3x540x960,4x3x1080x1920"}})
    assert str(profile["tensorrt"]["profile"].max) == "4x3x1080x1920"
    # under auto a preset may tune every backend it could get; the chosen one takes its own
    threads = {"torch": 2, "onnxruntime": 1, "openvino": 1}
    backend = create_backend("auto", get_model("espcn").variant(2), device="cpu",
                             options={name: {"threads": n} for name, n in threads.items()})
    assert backend.name == resolve_backend("auto", "cpu", get_model("espcn").variant(2))
    assert backend.config.threads == threads[backend.name]
    with pytest.raises(ConfigError, match="onnxruntime.threads applies to the onnxruntime backend"):
        create_backend("torch", get_model("espcn").variant(2), device="cpu", options={"onnxruntime": {"threads": 1}})


class _Echo:
    """A backend double that records its calls (host arrays and device tensors)."""

    name = "echo"

    def __init__(self, variant, tensors=False):
        self.variant, self.calls, self.closed = variant, [], False
        self.capabilities = Capabilities(location="torch" if tensors else "host", device_tensors=tensors)

    def infer(self, batch, extra=None):
        self.calls.append(("arrays", batch.shape))
        return np.repeat(np.repeat(batch, 2, axis=2), 2, axis=3)

    def infer_tensor(self, x, extra=None):
        self.calls.append(("tensors", tuple(x.shape)))
        return x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)

    def close(self):
        self.closed = True


def test_wrappers_forward_capabilities_and_device_tensors():
    import torch

    inner = _Echo(get_model("espcn").variant(2), tensors=True)
    tiled = TiledBackend(inner, tile=8, overlap=2)
    assert tiled.capabilities.device_tensors and tiled.name == "echo" and tiled.variant.factor == 2
    x = torch.rand(1, 3, 20, 12)
    assert torch.equal(tiled.infer_tensor(x), x.repeat_interleave(2, 2).repeat_interleave(2, 3))
    assert all(kind == "tensors" for kind, _ in inner.calls) and len(inner.calls) > 1  # tile by tile
    host = WrappedBackend(_Echo(inner.variant))
    assert not host.capabilities.device_tensors and host.variant == inner.variant


def test_hub_loads_one_network_per_variant_and_batches_by_kind():
    import torch

    loaded = {}

    def load(variant):
        loaded[variant.name] = _Echo(variant, tensors=True)
        return loaded[variant.name]

    hub = InferenceHub(load, max_batch=4)
    try:
        a = hub.client(get_model("espcn").variant(2))
        b = hub.client(get_model("espcn").variant(2))
        c = hub.client(get_model("espcn").variant(3))
        assert sorted(loaded) == ["espcn_x2", "espcn_x3"] and a.name == "echo"
        assert a.capabilities.device_tensors  # the loaded backend's, not a generic client's
        assert a.infer(np.ones((1, 3, 4, 4), np.float32)).shape == (1, 3, 8, 8)
        assert b.infer_tensor(torch.ones(1, 3, 4, 4)).shape == (1, 3, 8, 8)
        assert c.infer(np.ones((1, 3, 4, 4), np.float32)).shape == (1, 3, 8, 8)
        assert [k for k, _ in loaded["espcn_x2"].calls] == ["arrays", "tensors"]
        assert len(loaded["espcn_x3"].calls) == 1
    finally:
        hub.close()
    assert all(b.closed for b in loaded.values())


BIG = VideoInfo(width=4000, height=4000, time_base=Fraction(1, 25), frame_rate=Fraction(25), frame_count=3,
                codec="h264", pix_fmt="yuv420p", colour=ColourTags(1, 1))


def test_memory_bound_tiles_large_frames_and_refuses_what_cannot_fit():
    from streamsr.pipeline.memory import parse_bytes

    assert parse_bytes("8G") == 8 << 30 and parse_bytes("512M") == 512 << 20 and parse_bytes(1000) == 1000
    assert parse_bytes("1.5GiB") == int(1.5 * 2**30)
    assert parse_bytes(".5G") == 1 << 29 and parse_bytes("2.G") == 2 << 30
    for bad in ("lots", "1.2.3G", ".", "1..5M"):  # a number float() refuses was a traceback
        with pytest.raises(ConfigError, match="like 8G"):
            parse_bytes(bad)
    file = plan_source(RunConfig(), "in.mp4", NO_GPU)
    machine = Machine(memory=24 << 30)  # half of it is the automatic bound
    small = plan_run(RunConfig(model="udvd"), INFO, "o.mp4", file, HOST, machine)
    assert (small.tile, small.queue_size, small.notices) == (None, 8, ())
    big = plan_run(RunConfig(model="udvd", scale=4), BIG, "o.mkv", file, HOST, machine)
    assert big.tile is not None and big.queue_size == 1 and big.memory.total <= 12 << 30
    assert "tiles" in big.notices[0] and "udvd_x4" in big.notices[0]
    unknown = plan_run(RunConfig(model="udvd", scale=4), BIG, "o.mkv", file, HOST)  # nothing known: no bound
    assert unknown.tile is None
    with pytest.raises(ConfigError, match="even tiled .*--max-memory"):
        plan_run(RunConfig(model="udvd", scale=4, max_memory="1G"), BIG, "o.mkv", file, HOST, machine)
    # on a GPU the network is bounded by the GPU's memory, the queues by the host's
    gpu = Machine(cuda=True, memory=24 << 30, cuda_memory=1 << 30)
    on_gpu = plan_run(RunConfig(model="udvd"), INFO, "o.mp4", file, CUDA, gpu)
    assert on_gpu.tile is not None and on_gpu.memory.network <= 1 << 29


def test_any_scale_models_are_tiled_where_their_decoder_would_not_fit():
    """960x540 -> 3840x2160 with LIIF on a 24 GiB machine: an exported graph (ONNX Runtime) decodes
    the frame at once (~12 GiB) and is tiled; PyTorch decodes a band of rows at a time and is not."""
    file = plan_source(RunConfig(), "in.mp4", NO_GPU)
    machine = Machine(memory=24 << 30)
    info = dataclasses.replace(INFO, width=960, height=540)
    config = RunConfig(model="liif", size=(3840, 2160))
    exported = plan_run(config, info, "o.mkv", file, HOST, machine)
    assert exported.tile is not None and "liif" in exported.notices[0]
    banded = SimpleNamespace(name="torch", capabilities=Capabilities(location="torch", device_tensors=True,
                                                                     banded=True))
    eager = plan_run(config, info, "o.mkv", file, banded, machine)
    assert eager.tile is None and eager.memory.network < exported.memory.network / 4


def test_a_remote_backends_network_is_not_counted_on_the_client():
    """UDVD x2 at 1080p: its network needs ~10 GB, more than a small client's bound, where it runs
    here (tiled); through a remote backend only the frames queued here count (nothing tiled)."""
    file = plan_source(RunConfig(), "in.mp4", NO_GPU)
    machine = Machine(memory=8 << 30)
    info = dataclasses.replace(INFO, width=1920, height=1080)
    remote = SimpleNamespace(name="triton", capabilities=Capabilities(location="remote", device="gpubox:8001"))
    config = RunConfig(model="udvd", scale=2)
    local = plan_run(config, info, "o.mkv", file, HOST, machine)
    assert local.tile is not None and local.memory.network > 0
    far = plan_run(config, info, "o.mkv", file, remote, machine)
    assert (far.tile, far.queue_size, far.notices) == (None, 8, ())
    assert far.memory.network == 0 and 0 < far.memory.total <= 4 << 30
    with pytest.raises(ConfigError, match="one frame queued between stages"):  # the frames alone do not fit
        plan_run(dataclasses.replace(config, max_memory="100M"), info, "o.mkv", file, remote, machine)


def test_a_run_over_its_memory_bound_is_tiled_and_writes_the_same_pictures(tmp_path, caplog):
    from streamsr.synth import write_clip

    src = write_clip(tmp_path / "in.mkv", frames=3, size=(320, 240), codec="ffv1", pix_fmt="yuv444p")
    whole = upscale_video(src, tmp_path / "whole.mkv", RunConfig(sink=SinkConfig(codec="ffv1")))
    tiled = upscale_video(src, tmp_path / "tiled.mkv", RunConfig(sink=SinkConfig(codec="ffv1"), max_memory="60M"))
    assert whole.frames_out == tiled.frames_out == 3
    assert "espcn_x2" in caplog.text and "-pixel tiles" in caplog.text  # said once, before the first frame
    a, b = read_video(tmp_path / "whole.mkv")[1], read_video(tmp_path / "tiled.mkv")[1]
    assert all(psnr(x, y) > 50 for x, y in zip(a, b, strict=True))


def test_an_abort_acts_between_tiles():
    """A second Ctrl-C must not wait for a huge frame: tiling checks between tiles."""
    from streamsr.pipeline.runner import Aborted

    inner = _Echo(get_model("espcn").variant(2))
    tiled = TiledBackend(inner, tile=8, overlap=2, cancelled=lambda: len(inner.calls) >= 2)
    with pytest.raises(Aborted):
        tiled.infer(np.zeros((1, 3, 40, 40), np.float32))
    assert len(inner.calls) == 2  # 2 of 49 tiles ran


def _output_coords(inp, grid):
    """A table on the output grid: each output pixel's own (row, column)."""
    h, w = grid.of(inp)
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.broadcast_to(np.stack([rows, cols])[None], (grid.n, 2, h, w))


def test_table_inputs_on_the_output_grid_are_built_once_and_tiled_by_the_factor():
    import torch

    from streamsr.models.inputs import IMAGE, register_table_provider

    register_table_provider("test_output_coords")(_output_coords)
    coords = ModelInput("coords", 2, "query", "output", provider="test_output_coords")
    variant = _spec(FixedFactors((2,)), inputs=(IMAGE, coords)).variant(2)
    assembler = InputAssembler(variant.inputs)
    first = assembler.arrays([run_conditioning(0, 0)], 4, 6, out=(8, 12))
    assert first["coords"].shape == (1, 2, 8, 12) and first["coords"][0, 1, 0, 11] == 11
    assert assembler.arrays([run_conditioning(0, 0)], 4, 6, out=(8, 12))["coords"] is first["coords"]
    on_device = assembler.tensors([run_conditioning(0, 0)], 4, 6, "cpu", out=(8, 12))
    assert torch.equal(on_device["coords"], torch.from_numpy(first["coords"]))
    assert assembler.tensors([run_conditioning(0, 0)], 4, 6, "cpu", out=(8, 12))["coords"] is on_device["coords"]

    seen = []

    class Record(_Echo):
        def infer(self, batch, extra=None):
            seen.append((batch.shape[2:], extra["coords"][0, :, 0, 0].tolist(), extra["coords"].shape[2:]))
            return super().infer(batch, extra)

    tiled = TiledBackend(Record(variant), tile=8, overlap=2)
    big = assembler.arrays([run_conditioning(0, 0)], 20, 20, out=(40, 40))
    tiled.infer(np.zeros((1, 3, 20, 20), np.float32), big)
    for lr_shape, corner, coords_shape in seen:  # each tile's coordinates start at twice its LR corner
        assert coords_shape == (2 * lr_shape[0], 2 * lr_shape[1]) and all(v % 2 == 0 for v in corner)
    from streamsr.backends.tiling import tile_ranges

    starts = [2 * r[0] for r in tile_ranges(20, 8, 2)]
    assert sorted({tuple(c) for _, c, _ in seen}) == sorted((float(y), float(x)) for y in starts for x in starts)


def test_a_live_run_too_slow_for_its_input_is_said_with_numbers():
    from streamsr.pipeline.stats import too_slow_notice

    said = too_slow_notice(0.3, 25.0, "udvd_x2 on torch (cpu)")
    assert "udvd_x2 on torch (cpu) runs at 0.3 fps here, the input at 25 fps: about 99% of the frames" in said
    assert "a lighter model (espcn)" in said
    assert "lighter model" not in too_slow_notice(9.0, 25.0, "espcn_x2 on onnxruntime (cpu)")  # already it
    assert too_slow_notice(24.0, 25.0, "espcn") is None  # keeps up (within the margin)
    assert too_slow_notice(None, 25.0, "x") is None and too_slow_notice(5.0, None, "x") is None


def test_the_memory_plan_measures_a_network_once_per_code(tmp_path, monkeypatch):
    """The meta-device measurement (0.7 s and PyTorch's compiler stack per run) is kept in the user
    cache: a later run of the same network and code reads it; a damaged file is measured again."""
    from streamsr.pipeline import memory

    monkeypatch.setenv("STREAMSR_CACHE_DIR", str(tmp_path))
    variant = get_model("espcn").variant(2)
    measured = []
    real = memory._measure_bytes_per_pixel
    monkeypatch.setattr(memory, "_measure_bytes_per_pixel", lambda v, s: measured.append(v.name) or real(v, s))
    memory.network_bytes_per_pixel.cache_clear()
    first = memory.network_bytes_per_pixel(variant)
    memory.network_bytes_per_pixel.cache_clear()  # as a new process would start
    assert memory.network_bytes_per_pixel(variant) == first and measured == ["espcn_x2"]
    (tmp_path / "plan" / memory.MEASURED_FILE).write_text("{ damaged")
    memory.network_bytes_per_pixel.cache_clear()
    assert memory.network_bytes_per_pixel(variant) == first and measured == ["espcn_x2"] * 2
    monkeypatch.setattr("streamsr.backends.export.code_version", lambda v: "another-version")
    memory.network_bytes_per_pixel.cache_clear()
    memory.network_bytes_per_pixel(variant)
    assert measured == ["espcn_x2"] * 3  # changed code: measured anew
    memory.network_bytes_per_pixel.cache_clear()
