"""The benchmark's pieces for every model, fixed-factor (ESPCN) and any-scale (LIIF, LTE): rows carry
the resolved geometry, inputs are built for the real output size. No wall-clock assertions: only
that things were measured (positive), never how fast."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from streamsr import RunConfig
from streamsr.bench import frame_gflop, model_only_fps, run_bench, with_weights
from streamsr.bench_matrix import format_matrix, parse_request, run_matrix
from streamsr.cli import main
from streamsr.errors import ConfigError
from streamsr.machine import cpu_runs_bf16
from streamsr.models.geometry import ScaleRequest

CPU = RunConfig(device="cpu", backend="torch")


@pytest.fixture(scope="module")
def liif_weights(tmp_path_factory):
    """Randomly initialised LIIF weights (the shipped ones are still being trained)."""
    import torch
    from safetensors.torch import save_file

    from streamsr.models import build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / "liif_random.safetensors"
    net = build_model("liif", None, pretrained=False)
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return str(path)


def test_parse_request_forms():
    assert parse_request("2") == parse_request("x2") == ScaleRequest(scale=2.0)
    assert parse_request("x2.5") == ScaleRequest(scale=2.5)
    assert parse_request("1280x720") == ScaleRequest(size=(1280, 720))
    assert parse_request("720p") == ScaleRequest(size=(None, 720))
    assert parse_request("default") == ScaleRequest()
    with pytest.raises(ConfigError, match="a scale .* a size"):
        parse_request("wide")


def test_matrix_rows_carry_the_geometry_of_every_model(liif_weights):
    rows = run_matrix(CPU, models=("liif", "espcn"), sizes=((32, 24),), requests=[parse_request("80x60"),
                      parse_request("x2")], precisions=("fp32", "fp16"), batches=(1,), backends=("torch",),
                      frames=3, seconds=0.0, weights={"liif": liif_weights})
    got = {(r.model, r.label): r for r in rows}
    assert set(got) == {("liif", "x2.5"), ("liif", "x2"), ("espcn", "x3 -> 80x60"), ("espcn", "x2")}  # fp16: not on CPU
    assert got["liif", "x2.5"].out_size == (80, 60) and got["liif", "x2"].out_size == (64, 48)
    espcn = got["espcn", "x3 -> 80x60"]  # the next factor, then resized
    assert espcn.geometry.net_size == (96, 72) and espcn.out_size == (80, 60) and espcn.size == (32, 24)
    for r in rows:
        assert r.model_fps > 0 and r.e2e_fps > 0 and r.gflop > 0 and not r.untrained
        assert r.bound in ("decode", "preprocess", "infer", "postprocess", "encode")
    assert got["liif", "x2.5"].gflop > got["liif", "x2"].gflop

    table = format_matrix(rows, CPU)
    lines = [line for line in table.splitlines() if line.startswith(("| liif", "| espcn"))]
    cells = {tuple(c.strip() for c in line.strip("|").split("|"))[:2] for line in lines}
    assert cells == {("liif x2.5", "32x24 -> 80x60"), ("liif x2", "32x24 -> 64x48"),
                     ("espcn x3, resized", "32x24 -> 80x60"), ("espcn x2", "32x24 -> 64x48")}


def _unshipped(monkeypatch, model):
    """Pretend ``model`` ships no weights (a model still in training), whatever the package holds."""
    from streamsr import bench

    real = bench.weights_path
    monkeypatch.setattr(bench, "weights_path", lambda spec, scale: None if spec.name == model else real(spec, scale))


def test_matrix_skips_what_a_model_cannot_do_and_runs_untrained_models(monkeypatch):
    _unshipped(monkeypatch, "lte")
    lines = []
    rows = run_matrix(CPU, models=("espcn", "lte"), sizes=((32, 24),), requests=[ScaleRequest(scale=1.5)],
                      precisions=("fp32",), batches=(1,), backends=("torch",), frames=2, seconds=0.0,
                      report=lines.append)
    assert [(r.model, r.label, r.untrained) for r in rows] == [("lte", "x1.5", True)]
    assert any(line.startswith("espcn 32x24: skipped") and "1.5" in line for line in lines)
    assert "untrained (random) weights" in format_matrix(rows, CPU) and "| lte x1.5 * |" in format_matrix(rows, CPU)
    with pytest.raises(ConfigError, match="no cell of the matrix could run"):
        run_matrix(CPU, models=("espcn",), sizes=((32, 24),), requests=[ScaleRequest(scale=1.5)], frames=2)


def test_matrix_cells_are_labelled_with_the_precision_they_ran(liif_weights):
    """int8 for a network without int8 calibration (LIIF, or random weights) ran fp32 and was
    labelled int8: such a cell is skipped, and a row says what its run reported."""
    lines = []
    rows = run_matrix(RunConfig(device="cpu", backend="openvino"), models=("espcn", "liif"), sizes=((32, 24),),
                      requests=[parse_request("x2")], precisions=("int8",), batches=(1,), backends=("openvino",),
                      frames=2, seconds=0.0, weights={"liif": liif_weights}, report=lines.append)
    assert [(r.model, r.precision) for r in rows] == [("espcn", "int8")]


def test_frame_gflop_follows_the_output_size():
    liif = [frame_gflop("liif", None, 64, 48, size=s) for s in ((96, 72), (128, 96), (256, 192), "384p")]
    assert liif == sorted(liif) and len(set(liif)) == 4  # the decoder works per output pixel
    assert frame_gflop("liif", 2, 64, 48) == frame_gflop("liif", None, 64, 48, size=(128, 96)) == liif[1]
    assert frame_gflop("lte", 4, 64, 48) > frame_gflop("lte", 2, 64, 48)
    # a fixed-factor network's cost is its factor's, whatever the resize after it
    assert frame_gflop("espcn", None, 64, 48, size=(150, 100)) == frame_gflop("espcn", 3, 64, 48)


def test_model_only_fps_builds_tables_for_the_output(liif_weights, tmp_path, monkeypatch):
    _unshipped(monkeypatch, "lte")
    from streamsr.backends import load_backend
    from streamsr.models import get_model

    config = RunConfig(device="cpu", backend="torch", model="lte")
    variant = get_model("lte").variant(None)
    config, untrained = with_weights(config, variant, tmp_path)
    assert untrained and config.weights.endswith("-untrained.safetensors")
    assert with_weights(config, variant, tmp_path) == (config, False)  # weights given: kept
    backend = load_backend(config, variant)
    try:
        for fresh in (False, True):
            assert model_only_fps(backend, 24, 16, 2, 0.0, net_size=(60, 40), fresh_inputs=fresh, runs=1) > 0
        assert model_only_fps(backend, 24, 16, 1, 0.0, runs=1) > 0  # the model's default scale
    finally:
        backend.close()


def test_run_bench_of_an_any_scale_model(liif_weights):
    config = RunConfig(device="cpu", model="liif", size=(48, 40), weights=liif_weights)
    table = run_bench(config, width=32, height=24, frames=4, backends=["torch"])
    assert "### liif x1.5/1.667, 32x24 -> 48x40" in table
    row = next(line for line in table.splitlines() if line.startswith("| torch"))
    assert float(row.split("|")[7]) > 0


def test_cli_matrix_requests_and_per_model_weights(liif_weights, tmp_path):
    out = tmp_path / "BENCH.md"
    r = CliRunner().invoke(main, ["bench", "--matrix", "--device", "cpu", "--models", "espcn,liif", "--sizes", "32x24",
                                  "--requests", "2.5,48p", "--precisions", "fp32", "--batches", "1", "--backend",
                                  "torch", "--frames", "2", "--weights", f"liif={liif_weights}", "--output", str(out)])
    assert r.exit_code == 0, r.output
    rows = [line for line in out.read_text().splitlines() if line.startswith(("| espcn", "| liif"))]
    got = sorted(tuple(c.strip() for c in line.strip("|").split("|"))[:2] for line in rows)
    assert got == [("espcn x2", "32x24 -> 64x48"), ("liif x2", "32x24 -> 64x48"), ("liif x2.5", "32x24 -> 80x60")]
    assert "espcn 32x24: skipped" in r.output  # x2.5 is not one of its factors
    for args, hint in ((["--requests", "wide"], "--requests"), (["--sizes", "720p"], "--sizes"),
                       (["--weights", "a.safetensors", "--weights", "b.safetensors"], "--weights")):
        r = CliRunner().invoke(main, ["bench", "--matrix", *args])
        assert r.exit_code == 2 and hint in r.output, r.output


def test_cli_bench_runs_either_part_of_a_pair():
    """IRN's two directions measured on their own: the sender's shrinks, the receiver's enlarges."""
    for part, title in (("down", "### irn /2 down, 32x24 -> 16x12"), ("up", "### irn x2 up, 32x24 -> 64x48")):
        r = CliRunner().invoke(main, ["bench", "--model", "irn", "--scale", "2", "--part", part, "--size", "32x24",
                                      "--frames", "2", "--backend", "torch"])
        assert r.exit_code == 0 and title in r.output, r.output


def test_the_codecs_share_of_the_bound_encodes_the_runs_own_output(tmp_path):
    """The realistic bound's codec rate is measured on the frames a run encodes (the network's
    output of every input frame), not on blank frames x264 codes for almost nothing."""
    import av

    from streamsr.backends import create_backend
    from streamsr.bench import synth_clip
    from streamsr.bench_peer import codec_only_fps, upscaled_frames
    from streamsr.metrics import psnr_y
    from streamsr.models import get_model

    clip = synth_clip(tmp_path / "c.mp4", 64, 48, 5)
    backend = create_backend("onnxruntime", get_model("espcn").variant(2), device="cpu")
    outputs = upscaled_frames(backend, clip, (128, 96))
    assert len(outputs) == 5 and outputs[0].shape == (96, 128, 3) and outputs[0].std() > 10
    assert codec_only_fps(clip, outputs, out=tmp_path / "o.mp4") > 0
    with av.open(str(tmp_path / "o.mp4")) as c:
        coded = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(coded) == 5
    assert min(psnr_y(a, b) for a, b in zip(coded, outputs)) > 30  # crf 18: the frames given, coded


def test_peer_baseline_runs_the_naive_script_and_streamsr_interleaved(tmp_path):
    """`bench --peer`: both whole processes run on the same clip, the script's output is a real
    upscaled video, and the table says who was faster (no timing is asserted)."""
    import av

    from streamsr.backends.export import cached_onnx
    from streamsr.bench import synth_clip
    from streamsr.bench_peer import NAIVE_SCRIPT, realistic_bound, run_peer
    from streamsr.models import get_model

    clip = synth_clip(tmp_path / "c.mp4", 64, 48, 6)
    graph = tmp_path / "g.onnx"
    graph.write_bytes(cached_onnx(get_model("espcn").variant(2), precision="fp32")[0])
    result = run_peer(clip, graph, ["--model", "espcn", "--scale", "2"], frames=6, rounds=2)
    assert len(result.naive) == len(result.streamsr) == len(result.loop_fps) == 2
    assert min(result.naive + result.streamsr + result.loop_fps) > 0
    assert result.as_dict()["speedup_median"] > 0
    script = tmp_path / "naive.py"
    script.write_text(NAIVE_SCRIPT)
    import subprocess
    import sys

    subprocess.run([sys.executable, str(script), str(clip), str(graph), str(tmp_path / "n.mp4"), "18", "veryfast"],
                   check=True)
    with av.open(str(tmp_path / "n.mp4")) as c:
        frames = list(c.decode(video=0))
    assert len(frames) == 6 and (frames[0].width, frames[0].height) == (128, 96)
    assert realistic_bound(20.0, 20.0) == pytest.approx(10.0)  # each frame pays both times on the same cores
    out = CliRunner().invoke(main, ["bench", "--peer", "--model", "espcn", "--scale", "2", "--size", "64x48",
                                    "--frames", "4", "--rounds", "1"])
    assert out.exit_code == 0, out.output
    assert "naive script" in out.output and "Realistic bound" in out.output
    assert "streamsr on onnxruntime fp32" in out.output  # the comparison by default
    out = CliRunner().invoke(main, ["bench", "--peer", "--model", "espcn", "--scale", "2", "--size", "64x48",
                                    "--frames", "4", "--rounds", "1", "--backend", "torch", "--precisions", "bf16"])
    assert out.exit_code == 0, out.output
    assert f"streamsr on torch {'bf16' if cpu_runs_bf16() else 'fp32'}" in out.output
