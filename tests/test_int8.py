"""int8 on the CPU: the fp32 graph quantized with shipped activation ranges (convolution inputs
only), cached once, run by ONNX Runtime and OpenVINO; networks or weights without calibration,
and backends without int8, run fp32 and say why."""

import json
import logging

import numpy as np
import onnx
import pytest
import scipy.ndimage
from model_cases import network_inputs
from onnx import numpy_helper

from streamsr.backends import choice, create_backend, int8
from streamsr.backends.export import GraphCache, GraphKey, cached_onnx
from streamsr.errors import ConfigError, ExportError
from streamsr.metrics import psnr
from streamsr.models import get_model, list_models, weights_path

TABLE = json.loads(int8.RANGES_TABLE.read_text())["variants"]
CALIBRATED = sorted(TABLE)


def _variant(name):
    model, factor = name.rsplit("_x", 1)
    return get_model(model).variant(int(factor))


def _picture_like(variant, h=40, w=40):
    model = variant.spec.name
    batch, extra = network_inputs(model, variant.factor, 1, h, w, np.random.default_rng(0), maps=0.2)
    return scipy.ndimage.gaussian_filter(batch, (0, 0, 2, 2)).astype(np.float32), extra


def test_the_calibrated_networks_are_every_eligible_one_with_shipped_weights():
    expected = {spec.variant(f, p).name for spec in map(get_model, list_models()) for f in spec.scales
                for p in spec.parts if int8.eligible(spec.variant(f, p)) and weights_path(spec, f) is not None}
    assert set(CALIBRATED) == expected
    assert {"espcn_x2", "srresnet_x2", "udvd_x2"} <= expected and not {"irn_x2-down", "liif"} & expected


@pytest.mark.parametrize("name", CALIBRATED)
def test_shipped_ranges_fit_the_network_as_it_is_exported_now(name):
    """A retrained network or a changed export makes the calibration stale: caught here, not by a
    user's run (quantize refuses a graph whose tensors the ranges do not name)."""
    variant = _variant(name)
    graph = onnx.load_from_string(cached_onnx(variant)[0])
    entry = TABLE[name]
    assert set(entry["tensors"]) == set(int8.quantized_tensors(graph))
    assert entry["weights"] == GraphKey.make(variant).weights
    # the image, where a convolution reads it (not SRCNN's, which reads it resized): [0, 1], so 8-bit
    # frames are quantized exactly
    assert entry["tensors"].get(variant.input_names[0], [0.0, 1.0]) == [0.0, 1.0]
    assert all(lo < hi for lo, hi in entry["tensors"].values())


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("name", CALIBRATED)
def test_every_calibrated_network_runs_in_int8_close_to_fp32(name, backend):
    """8-bit convolution inputs: 51-59 dB from fp32 on picture-like input (measured, both
    backends); above 40, and not equal to fp32 (really quantized)."""
    variant = _variant(name)
    batch, extra = _picture_like(variant)
    outs = {}
    for precision in ("fp32", "int8"):
        b = create_backend(backend, variant, device="cpu", precision=precision)
        assert b.precision == precision
        outs[precision] = b.infer(batch, extra)
        b.close()
    agreement = psnr(np.clip(outs["int8"], 0, 1), np.clip(outs["fp32"], 0, 1), peak=1.0)
    assert 40 < agreement < float("inf"), agreement


def test_only_convolution_inputs_are_quantized_and_the_image_exactly():
    variant = _variant("espcn_x2")
    graph = onnx.load_from_string(cached_onnx(variant, precision="int8")[0]).graph
    made_by = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    assert len(convs) == 3
    for conv in convs:  # data and weights through DequantizeLinear, the output left float
        assert made_by[conv.input[0]].op_type == made_by[conv.input[1]].op_type == "DequantizeLinear"
        assert not any(n.op_type == "QuantizeLinear" and conv.output[0] in n.input for n in graph.node)
    quantizes = [n for n in graph.node if n.op_type == "QuantizeLinear"]
    assert len(quantizes) == 3 and quantizes[0].input[0] == "image"
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    scale, zero = values[quantizes[0].input[1]], values[quantizes[0].input[2]]
    assert np.isclose(scale, 1 / 255) and zero == 0 and zero.dtype == np.uint8
    weights = [values[made_by[c.input[1]].input[0]] for c in convs]
    assert all(w.dtype == np.int8 for w in weights)


def test_a_convolution_reading_degradation_maps_beside_the_image_stays_float():
    """One scale for pixels and UDVD's kernel codes and noise levels, and conditions clipped to
    the calibrated ones, lost UDVD x2 3.2 dB: that convolution stays float, the rest are int8."""
    variant = _variant("udvd_x2")
    graph = onnx.load_from_string(cached_onnx(variant, precision="int8")[0]).graph
    made_by = {o: n for n in graph.node for o in n.output}
    convs = [n for n in graph.node if n.op_type == "Conv"]
    head = [c for c in convs if made_by[c.input[0]].op_type == "Concat"
            and {"image", "kernel_code", "noise_level"} <= set(made_by[c.input[0]].input)]
    assert len(head) == 1 and head[0].input[1] not in made_by  # its float weights, read directly
    rest = [c for c in convs if c is not head[0] and c.name != head[0].name]
    assert len(rest) > 10
    assert all(made_by[c.input[0]].op_type == made_by[c.input[1]].op_type == "DequantizeLinear" for c in rest)
    # what each reads, before its QuantizeLinear: the calibrated tensors, all of them
    sources = {made_by[made_by[c.input[0]].input[0]].input[0] for c in rest}
    assert sources == set(TABLE["udvd_x2"]["tensors"])


def test_the_int8_graph_is_quantized_once_and_cached_beside_the_fp32_one(tmp_path, monkeypatch, caplog):
    variant = _variant("espcn_x2")
    cache = GraphCache(tmp_path)
    calls = []
    real = int8.quantize
    monkeypatch.setattr(int8, "quantize", lambda *a, **k: calls.append(1) or real(*a, **k))
    with caplog.at_level(logging.INFO):
        first, cached = cached_onnx(variant, precision="int8", cache=cache)
    assert not cached and len(calls) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # the quantizer's advice kept out
    again, cached = cached_onnx(variant, precision="int8", cache=cache)
    assert cached and again == first and len(calls) == 1
    assert sorted(p.name.split("-")[1] for p in cache.list()) == ["fp32", "int8"]


def test_new_ranges_make_a_new_graph(monkeypatch):
    variant = _variant("espcn_x2")
    before = GraphKey.make(variant, "int8").filename
    changed = json.loads(json.dumps(TABLE))
    changed["espcn_x2"]["tensors"]["/body/body.1/Tanh_output_0"][0] = -0.5
    monkeypatch.setattr(int8, "_table", lambda path: changed)
    assert GraphKey.make(variant, "int8").filename != before
    assert GraphKey.make(variant, "fp32").filename == GraphKey.make(variant).filename


def test_ranges_that_miss_a_tensor_of_the_graph_are_refused():
    variant = _variant("espcn_x2")
    ranges = dict(TABLE["espcn_x2"]["tensors"])
    ranges.pop("/body/body.3/Tanh_output_0")
    with pytest.raises(ExportError, match="calibrate it again"):
        int8.quantize(cached_onnx(variant)[0], variant, ranges)


def test_calibration_collects_each_tensors_min_and_max():
    variant = _variant("espcn_x2")
    feeds = [{"image": np.full((1, 3, 6, 6), v, np.float32)} for v in (0.2, 0.7)]
    ranges = int8.collect_ranges(cached_onnx(variant)[0], feeds)
    assert list(ranges) == ["image", "/body/body.1/Tanh_output_0", "/body/body.3/Tanh_output_0"]
    assert ranges["image"] == pytest.approx([0.2, 0.7])
    assert all(-1 <= lo <= hi <= 1 for lo, hi in list(ranges.values())[1:])  # tanh outputs
    with pytest.raises(ValueError, match="no calibration input"):
        int8.collect_ranges(cached_onnx(variant)[0], [])


@pytest.mark.parametrize("model,part", [("irn", "down"), ("liif", None)])
def test_a_network_without_calibration_runs_fp32_and_says_so(model, part, caplog):
    spec = get_model(model)
    variant = spec.variant(spec.scales[0] if spec.scales else None, part)
    choice._notice.cache_clear()
    with caplog.at_level(logging.WARNING):
        backend = create_backend("openvino", variant, device="cpu", precision="int8")
    assert backend.precision == "fp32"
    assert f"{variant.name} has no int8 calibration" in caplog.text and "running fp32" in caplog.text
    with pytest.raises(ConfigError, match="no int8 calibration"):
        cached_onnx(variant, precision="int8")


def _other_weights(variant, folder):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(weights_path(variant.spec, variant.factor)))
    name = min(tensors)
    tensors[name] = tensors[name] * 1.01
    mine = folder / "mine.safetensors"
    save_file(tensors, str(mine))
    return mine


def test_weights_other_than_the_calibrated_ones_run_fp32_and_say_so(tmp_path, caplog):
    variant = _variant("espcn_x2")
    mine = _other_weights(variant, tmp_path)
    choice._notice.cache_clear()
    with caplog.at_level(logging.WARNING):
        backend = create_backend("onnxruntime", variant, device="cpu", precision="int8", weights=str(mine))
    assert backend.precision == "fp32" and "is for its shipped weights, not these" in caplog.text


def test_a_backend_without_int8_runs_its_own_and_names_those_with_it(caplog):
    choice._notice.cache_clear()
    with caplog.at_level(logging.WARNING):
        backend = create_backend("torch", _variant("espcn_x2"), device="cpu", precision="int8")
    assert backend.precision == "fp32"
    assert "int8 runs on --backend onnxruntime or openvino" in caplog.text


def test_auto_never_picks_int8_on_a_cpu_without_int8_instructions(monkeypatch):
    from streamsr import machine

    variant = _variant("espcn_x2")
    monkeypatch.setattr(choice, "precision_loss", lambda v, p: 0.0)  # every precision measured lossless
    monkeypatch.setattr(choice, "measured_speeds", lambda v, d, p, backend=None: [
        choice.MeasuredSpeed(v.name, d, p, "openvino", {}, {"fp32": 10.0, "bf16": 20.0, "int8": 30.0}.get(p, 0.0))])
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512_vnni", "avx512_bf16"}))
    assert choice.auto_precision("auto", "cpu", variant) == "int8"
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    assert choice.auto_precision("auto", "cpu", variant) == "bf16"
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset())
    assert choice.auto_precision("auto", "cpu", variant) == "fp32"


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_a_run_in_int8_keeps_every_frame_and_reports_its_precision(backend, small_clip, tmp_path):
    import av

    from streamsr import RunConfig, upscale_video

    stats = upscale_video(small_clip, tmp_path / "q.mp4", RunConfig(scale=2, backend=backend, precision="int8"))
    assert stats.frames_in == stats.frames_out == 12
    assert (stats.extra["backend"], stats.extra["precision"]) == (backend, "int8")
    with av.open(str(tmp_path / "q.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 12 and (frames[0].width, frames[0].height) == (2 * 64, 2 * 48)


def test_auto_with_weights_of_ones_own_never_picks_int8(tmp_path, monkeypatch):
    """auto chose int8 without knowing the weights, then the run fell back to fp32 (and said so
    for a precision nobody asked for) where bf16 was allowed and faster."""
    from streamsr import machine

    variant = _variant("espcn_x2")
    mine = _other_weights(variant, tmp_path)
    monkeypatch.setattr(choice, "precision_loss", lambda v, p: 0.0)
    monkeypatch.setattr(choice, "measured_speeds", lambda v, d, p, backend=None: [
        choice.MeasuredSpeed(v.name, d, p, "openvino", {}, {"fp32": 10.0, "bf16": 20.0, "int8": 30.0}.get(p, 0.0))])
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset({"avx512_vnni", "avx512_bf16"}))
    assert choice.auto_precision("auto", "cpu", variant) == "int8"
    assert choice.auto_precision("auto", "cpu", variant, str(mine)) == "bf16"
    assert choice.auto_precision("auto", "cpu", variant, str(weights_path(variant.spec, 2))) == "int8"


def test_a_damaged_cached_fp32_graph_is_exported_again_for_int8(tmp_path, caplog):
    variant = _variant("espcn_x2")
    cache = GraphCache(tmp_path)
    cached_onnx(variant, cache=cache)
    fp32 = cache.path(GraphKey.make(variant))
    fp32.write_bytes(fp32.read_bytes()[:200])  # still starts as a model does: read, then fails to parse
    with caplog.at_level(logging.WARNING):
        data, cached = cached_onnx(variant, precision="int8", cache=cache)
    assert not cached and "could not be read" in caplog.text
    assert sum(n.op_type == "QuantizeLinear" for n in onnx.load_from_string(data).graph.node) == 3
    onnx.load_from_string(fp32.read_bytes())  # repaired


def test_quantizing_leaves_the_root_logger_as_it_was(monkeypatch):
    """The quantizer's advice through logging.warning configured a stderr handler on a bare root
    logger for good."""
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])
    variant = _variant("espcn_x2")
    int8.quantize(cached_onnx(variant)[0], variant)
    assert root.handlers == [] and not root.filters


def test_int8_on_cuda_points_to_the_cpu():
    runs, why = choice.precision_fallback("onnxruntime", "cuda", "int8")
    assert runs == "fp32" and "int8 runs on the CPU: --device cpu" in why
