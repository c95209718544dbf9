import json
import shutil

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from model_cases import case_id, model_cases, network_inputs, out_size

from streamsr.backends import (
    create_backend,
    export_onnx,
    list_backends,
    resolve_backend,
)
from streamsr.cli import main
from streamsr.errors import BackendUnavailableError, ConfigError
from streamsr.metrics import psnr
from streamsr.models import get_model

CASES = model_cases()


def _psnr(a, b):
    return psnr(np.clip(a, 0, 1), np.clip(b, 0, 1), peak=1.0)


def test_backends_registered():
    assert {"torch", "onnxruntime", "tensorrt"} <= set(list_backends())


def test_auto_picks_an_available_cpu_backend():
    assert resolve_backend("auto", "cpu") in ("onnxruntime", "torch")


def test_tensorrt_reports_clearly():
    with pytest.raises(BackendUnavailableError, match="TensorRT"):
        resolve_backend("tensorrt", "cuda")


def test_unknown_backend():
    with pytest.raises(ConfigError, match="available: auto"):
        resolve_backend("tensorflow", "cpu")


@pytest.mark.parametrize("name,scale,part", CASES, ids=map(case_id, CASES))
def test_onnxruntime_and_torch_agree(name, scale, part):
    spec = get_model(name, scale)
    batch, extra = network_inputs(name, scale, 2, 24, 36, np.random.default_rng(0), maps=0.2, part=part)
    outs = {}
    for backend in ("torch", "onnxruntime"):
        b = create_backend(backend, spec.variant(scale, part), device="cpu")
        try:
            outs[backend] = b.infer(batch, extra)
        finally:
            b.close()
    assert outs["torch"].shape == (2, 3, *out_size(name, scale, 24, 36, part))
    assert _psnr(outs["torch"], outs["onnxruntime"]) > 45


@pytest.mark.parametrize("name,scale,part", CASES, ids=map(case_id, CASES))
def test_torch_channels_last_gives_the_same_output(name, scale, part):
    """NHWC on the CPU (chosen per network from the speed table) changes the order of the sums,
    nothing else: outputs agree within float32 rounding."""
    variant = get_model(name, scale).variant(scale, part)
    batch, extra = network_inputs(name, scale, 2, 24, 36, np.random.default_rng(0), maps=0.2, part=part)
    outs = []
    for channels_last in (False, True):
        b = create_backend("torch", variant, device="cpu", options={"torch": {"channels_last": channels_last}})
        try:
            outs.append(b.infer(batch, extra))
        finally:
            b.close()
    np.testing.assert_allclose(outs[1], outs[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_export_dynamic_shapes(tmp_path, precision):
    import onnxruntime as ort

    spec = get_model("espcn", 2)
    path = tmp_path / "m.onnx"
    export_onnx(spec.variant(2), path, precision=precision)
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 3, "height", "width"]
    if precision == "fp16":
        assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for shape in ((1, 3, 16, 24), (3, 3, 33, 17)):
        out = s.run(None, {"image": np.zeros(shape, np.float32)})[0]
        assert out.shape == (shape[0], 3, shape[2] * 2, shape[3] * 2)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("c++") is None and shutil.which("g++") is None,
                    reason="torch.compile's CPU kernels need a C++ compiler")
def test_torch_compile_matches_eager(tmp_path, small_clip):
    from streamsr.backends import create_backend

    spec = get_model("espcn", 2)
    batch = np.random.default_rng(0).random((1, 3, 24, 32), dtype=np.float32)
    eager = create_backend("torch", spec.variant(2), device="cpu").infer(batch)
    compiled = create_backend("torch", spec.variant(2), device="cpu", options={"torch": {"compile": True}})
    out = compiled.infer(batch)
    assert compiled.compiled  # it really compiled (a failure would have fallen back to eager)
    assert np.abs(out - eager).max() < 1e-4
    r = CliRunner().invoke(main, ["run", str(small_clip), "-o", str(tmp_path / "o.mp4"), "--backend", "torch",
                                  "--compile", "-q", "--stats-json", str(tmp_path / "s.json")])
    assert r.exit_code == 0, r.output
    assert json.loads((tmp_path / "s.json").read_text())["frames_out"] == 12
    r = CliRunner().invoke(main, ["run", str(small_clip), "-o", str(tmp_path / "p.mp4"), "--backend", "onnxruntime",
                                  "--compile"])
    assert r.exit_code == 1 and "torch.compile applies to the torch backend" in r.output


def test_a_compile_failure_falls_back_to_eager(caplog):
    from streamsr.backends import create_backend

    spec = get_model("espcn", 2)
    batch = np.random.default_rng(0).random((1, 3, 16, 16), dtype=np.float32)
    backend = create_backend("torch", spec.variant(2), device="cpu", options={"torch": {"compile": True}})

    def broken(*args):
        raise RuntimeError("no compiler here")

    backend.forward = broken
    out = backend.infer(batch)
    assert not backend.compiled and "torch.compile failed (RuntimeError: no compiler here)" in caplog.text
    assert np.abs(out - create_backend("torch", spec.variant(2), device="cpu").infer(batch)).max() == 0


_REPEATED_CALLS = """
import re
import numpy as np
from streamsr.backends import load_backend
from streamsr.config import RunConfig
from streamsr.models import get_model
from streamsr.models.inputs import InputAssembler, run_conditioning

variant = get_model("udvd").variant(2)
backend = load_backend(RunConfig(device="cpu", backend="onnxruntime", model="udvd", scale=2), variant)
x = np.random.default_rng(0).random((1, 3, 240, 320), dtype=np.float32)
extra = InputAssembler(variant.inputs).arrays([run_conditioning(1.0, 5.0)], 240, 320, (480, 640))
def peak():  # this process's own peak RSS (ru_maxrss also counts the parent's, forked before exec)
    with open("/proc/self/status") as f:
        return int(re.search(r"VmHWM:\\s+(\\d+)", f.read()).group(1))

peaks = [peak()]
for _ in range(3):
    backend.infer(x, extra)
    peaks.append(peak())
print(*peaks)
"""


def test_onnxruntime_peak_memory_does_not_grow_after_the_first_frame():
    """The run plan budgets one call's working memory: the second frame must not add to it (ONNX
    Runtime's memory pattern did, by a third here and nearly double for LTE at 4K)."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", _REPEATED_CALLS], check=True, capture_output=True, text=True,
                          timeout=300)
    before, first, *later = (int(v) for v in done.stdout.split())
    assert first > before and later[-1] - first < 0.05 * (first - before), (before, first, later)
