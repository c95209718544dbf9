"""Exported ONNX graphs are cached in the user's cache folder: a second ONNX Runtime backend
neither builds the network nor exports it, and gives the same outputs. The key holds everything
that invalidates a graph; a damaged file is rebuilt, an unwritable folder only costs the export."""

import logging
import shutil
import subprocess
import sys

import numpy as np
import pytest

from streamsr.backends import create_backend
from streamsr.backends import export as export_module
from streamsr.backends.export import OPSET, GraphCache, GraphKey, cached_onnx
from streamsr.cache import CACHE_ENV
from streamsr.models import get_model, weights_path

ESPCN = get_model("espcn").variant(2)


@pytest.fixture
def folder(tmp_path, monkeypatch):
    """The cache's ``onnx/`` folder, empty, under a root of this test's own."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "onnx"


@pytest.fixture
def exports(monkeypatch) -> list[str]:
    """The networks exported (every call of export_onnx, which really exports)."""
    calls = []
    real = export_module.export_onnx

    def counting(variant, *args, **kwargs):
        calls.append(variant.name)
        return real(variant, *args, **kwargs)

    monkeypatch.setattr(export_module, "export_onnx", counting)
    return calls


def _batch():
    return np.random.default_rng(0).random((1, 3, 20, 28), dtype=np.float32)


def test_a_second_backend_reads_the_cache_and_does_not_export(folder, exports):
    x = _batch()
    first = create_backend("onnxruntime", ESPCN, device="cpu")
    out = first.infer(x)
    assert exports == ["espcn_x2"]
    (path,) = folder.glob("*.onnx")
    assert path.name.startswith(f"espcn_x2-fp32-opset{OPSET}-w")
    second = create_backend("onnxruntime", ESPCN, device="cpu")
    assert exports == ["espcn_x2"]  # not exported again
    np.testing.assert_array_equal(second.infer(x), out)
    reference = create_backend("torch", ESPCN, device="cpu", options={"torch": {"channels_last": False}}).infer(x)
    assert np.abs(out - reference).max() < 1e-4
    assert not [p for p in folder.iterdir() if p.suffix != ".onnx"]  # no temporary file left


def test_the_key_holds_everything_that_invalidates_a_graph(tmp_path):
    shipped = weights_path(ESPCN.spec, 2)
    key = GraphKey.make(ESPCN)
    assert (key.variant, key.precision, key.opset) == ("espcn_x2", "fp32", OPSET)
    import streamsr

    assert streamsr.__version__ in key.code and "torch" in key.code
    copy = tmp_path / "copy.safetensors"
    shutil.copy(shipped, copy)
    assert GraphKey.make(ESPCN, weights=copy) == key  # the weights' bytes count, not their path
    changed = tmp_path / "changed.safetensors"
    data = bytearray(shipped.read_bytes())
    data[-1] ^= 1
    changed.write_bytes(bytes(data))
    others = [GraphKey.make(ESPCN, weights=changed), GraphKey.make(ESPCN, "fp16"),
              GraphKey.make(get_model("espcn").variant(3)), GraphKey.make(get_model("irn").variant(2, "down")),
              GraphKey.make(get_model("irn").variant(2, "up"))]
    names = {k.filename for k in [key, *others]}
    assert len(names) == 6
    assert GraphKey.make(ESPCN, weights=tmp_path / "missing.safetensors") is None  # the export says why


def test_user_weights_are_cached_under_their_own_hash(folder, exports, tmp_path):
    weights = tmp_path / "mine.safetensors"
    shutil.copy(weights_path(ESPCN.spec, 2), weights)
    cached_onnx(ESPCN)
    cached_onnx(ESPCN, weights=weights)  # same bytes: the same graph
    assert exports == ["espcn_x2"]
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    state = {k: v * 0.5 if v.dim() == 4 else v for k, v in state.items()}
    save_file(state, str(weights))
    data, hit = cached_onnx(ESPCN, weights=weights)
    assert not hit and exports == ["espcn_x2", "espcn_x2"] and len(list(folder.glob("*.onnx"))) == 2
    assert cached_onnx(ESPCN, weights=weights) == (data, True)


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
@pytest.mark.parametrize("damage", [b"\x08\x01garbage", b"", "truncated"])
def test_a_damaged_cache_file_is_rebuilt(folder, exports, caplog, damage, backend):
    x = _batch()
    out = create_backend(backend, ESPCN, device="cpu").infer(x)
    (path,) = folder.glob("*.onnx")
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2] if damage == "truncated" else damage)
    with caplog.at_level(logging.WARNING):
        again = create_backend(backend, ESPCN, device="cpu")
    np.testing.assert_array_equal(again.infer(x), out)
    assert exports == ["espcn_x2", "espcn_x2"]
    assert path.read_bytes() == good  # replaced by a sound graph
    # an empty file is no graph at all; one the runtime could not load is reported
    assert ("exporting it again" in caplog.text) == (damage != b"")


def test_an_unwritable_cache_folder_falls_back_to_exporting(tmp_path, monkeypatch, exports, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache root should be")
    monkeypatch.setenv(CACHE_ENV, str(blocker))
    x = _batch()
    with caplog.at_level(logging.WARNING):
        outs = [create_backend("onnxruntime", ESPCN, device="cpu").infer(x) for _ in range(2)]
    np.testing.assert_array_equal(outs[0], outs[1])
    assert exports == ["espcn_x2", "espcn_x2"]  # no cache: each backend exports
    lines = [r for r in caplog.records if "cannot cache the exported ONNX graph" in r.getMessage()]
    assert len(lines) == 1  # said once, not once per backend


def test_graph_cache_lists_and_ignores_what_is_not_a_graph(tmp_path):
    cache = GraphCache(tmp_path)
    key = GraphKey.make(ESPCN)
    assert cache.load(key) is None and cache.list() == []
    cache.path(key).write_bytes(b"not onnx")
    assert cache.load(key) is None
    assert cache.store(key, b"\x08\x08rest") and cache.load(key) == b"\x08\x08rest"
    assert cache.list() == [cache.path(key)]


_BUILD = """
import sys
import numpy as np
from streamsr.backends import create_backend
from streamsr.models import get_model
b = create_backend("onnxruntime", get_model("espcn").variant(2), device="cpu")
print(float(b.infer(np.full((1, 3, 8, 8), 0.5, np.float32)).sum()))
"""


@pytest.mark.slow
def test_concurrent_first_runs_both_succeed(folder):
    """Two processes missing the cache at the same moment both export and write; each write is
    atomic, so both run and one sound file remains."""
    procs = [subprocess.Popen([sys.executable, "-c", _BUILD], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    results = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), results
    assert results[0][0] == results[1][0]
    (path,) = folder.iterdir()
    assert path.suffix == ".onnx" and GraphCache(folder).load(GraphKey.make(ESPCN)) is not None


_WITHOUT_TORCH = """
import sys

class NoTorch:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("this run must not import torch")

sys.meta_path.insert(0, NoTorch())
from streamsr.cli import main
main(sys.argv[1:])
"""


@pytest.mark.slow
@pytest.mark.parametrize("model,backend,precision", [
    ("espcn", "onnxruntime", "fp32"), ("lte", "onnxruntime", "fp32"), ("udvd", "onnxruntime", "fp32"),
    ("espcn", "openvino", "fp32"), ("udvd", "openvino", "fp32"), ("espcn", "openvino", "int8"),
    ("udvd", "onnxruntime", "int8")])
def test_a_run_on_an_exported_graph_after_the_first_never_imports_torch(folder, tmp_path, model, backend, precision):
    """Importing PyTorch costs about a second and 200 MiB: once the first run has cached the graph
    and the memory plan, a run on ONNX Runtime or OpenVINO on the CPU never imports it (the model
    specs, the CPU stages, the noise estimate and the device check are torch-free). Networks with
    query tables (LTE) and degradation inputs (UDVD, noise estimated) included, and the quantized
    int8 graph."""
    from media import make_video

    clip = make_video(tmp_path / "in.mp4", frames=3, size=(64, 48))
    args = ["run", str(clip), "--model", model, "--scale", "2", "--backend", backend, "--precision", precision, "-q"]
    if model == "udvd":
        args += ["--noise", "auto"]
    first = subprocess.run([sys.executable, "-m", "streamsr.cli", *args, "-o", str(tmp_path / "a.mp4")],
                           check=False, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    again = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, *args, "-o", str(tmp_path / "b.mp4")],
                           check=False, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert (tmp_path / "b.mp4").read_bytes() == (tmp_path / "a.mp4").read_bytes()
