"""The command line as a user meets it: one clear line for bad input, pipes, signals."""

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from media import make_video, read_video

from streamsr.cli import main

STREAMSR = [sys.executable, "-m", "streamsr.cli"]


def _run(*args):
    return CliRunner().invoke(main, list(map(str, args)))


def _one_clear_line(result, *needles):
    assert result.exit_code != 0
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output + result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("args", [["--max-frames", "0"], ["--max-frames", "-3"], ["--duration", "0"], ["--duration", "-1"]])
def test_bounds_that_leave_nothing_to_do_are_refused(small_clip, tmp_path, args):
    """Before: --max-frames 0 wrote one frame and exit 0; --duration 0 blamed the input. Refused
    once, before any camera starts (two inputs here)."""
    out = tmp_path / "o.mp4"
    r = _run("run", small_clip, small_clip, "-o", out, "-o", tmp_path / "p.mp4", *args)
    assert r.exit_code == 2 and f"Invalid value for '{args[0]}'" in r.output and "Traceback" not in r.output
    assert not out.exists()


def test_the_library_refuses_bounds_that_leave_nothing_to_do(small_clip, tmp_path):
    from streamsr import RunConfig, upscale_video
    from streamsr.errors import ConfigError

    with pytest.raises(ConfigError, match="--max-frames wants at least 1 frame"):
        upscale_video(small_clip, tmp_path / "o.mp4", RunConfig(), stop_after=0)
    with pytest.raises(ConfigError, match="--duration wants more than 0 seconds"):
        upscale_video(small_clip, tmp_path / "o.mp4", RunConfig(), duration=0)


def test_run_writes_output_and_stats(small_clip, tmp_path):
    out, stats = tmp_path / "o.mp4", tmp_path / "s.json"
    r = _run("run", small_clip, "-o", out, "--stats-json", stats, "--backend", "torch")
    assert r.exit_code == 0, r.stderr
    assert "done: 12 frames" in r.stderr
    data = json.loads(stats.read_text())
    assert data["frames_out"] == 12 and data["backend"] == "torch"
    assert [s["name"] for s in data["stages"]] == ["decode", "preprocess", "infer", "postprocess", "encode"]
    assert all(s["frames"] == 12 for s in data["stages"])
    assert len(read_video(out)[0]) == 12


def test_quiet_prints_nothing(small_clip, tmp_path):
    r = _run("run", small_clip, "-o", tmp_path / "o.mp4", "-q")
    assert r.exit_code == 0 and r.stderr == "" and r.stdout == ""


def test_missing_input(tmp_path):
    _one_clear_line(_run("run", tmp_path / "nope.mp4", "-o", tmp_path / "o.mp4"), "not found", "nope.mp4")


def test_not_a_video(tmp_path):
    p = tmp_path / "notes.mp4"
    p.write_text("this is not a video\n" * 50)
    _one_clear_line(_run("run", p, "-o", tmp_path / "o.mp4"), "notes.mp4")


def test_zero_byte_file(tmp_path):
    p = tmp_path / "empty.mp4"
    p.touch()
    _one_clear_line(_run("run", p, "-o", tmp_path / "o.mp4"), "empty")


def test_unknown_model(small_clip, tmp_path):
    _one_clear_line(_run("run", small_clip, "-o", tmp_path / "o.mp4", "--model", "espnc"),
                    "unknown model 'espnc'", "espcn")


def test_unsupported_scale(small_clip, tmp_path):
    _one_clear_line(_run("run", small_clip, "-o", tmp_path / "o.mp4", "--scale", "5"), "scale 5", "2, 3, 4")


def test_unwritable_output(small_clip, tmp_path):
    _one_clear_line(_run("run", small_clip, "-o", tmp_path / "no" / "such" / "dir" / "o.mp4"), "does not exist")


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_read_only_output_folder(small_clip, tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir(mode=0o555)
    _one_clear_line(_run("run", small_clip, "-o", ro / "o.mp4"), "not writable")


def test_output_is_input(small_clip):
    _one_clear_line(_run("run", small_clip, "-o", small_clip), "is the input")


def test_unknown_encoder(small_clip, tmp_path):
    _one_clear_line(_run("run", small_clip, "-o", tmp_path / "o.mp4", "--codec", "libx999"), "libx999")


def test_unknown_extension(small_clip, tmp_path):
    _one_clear_line(_run("run", small_clip, "-o", tmp_path / "o.xyz"), ".xyz")


def test_crf_for_encoder_without_crf(small_clip, tmp_path):
    _one_clear_line(_run("run", small_clip, "-o", tmp_path / "o.mkv", "--codec", "ffv1", "--crf", "20"), "crf")


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None, reason="TensorRT is installed here")
def test_tensorrt_absent(small_clip, tmp_path):
    _one_clear_line(_run("run", small_clip, "-o", tmp_path / "o.mp4", "--backend", "tensorrt"), "TensorRT")


def test_models_lists_weights_and_params():
    r = _run("models")
    assert r.exit_code == 0
    assert "espcn" in r.stdout and "espcn_x2.safetensors" in r.stdout and "26,796" in r.stdout


def test_export(tmp_path):
    out = tmp_path / "e.onnx"
    r = _run("export", "--model", "espcn", "--scale", "2", "-o", out)
    assert r.exit_code == 0, r.stderr
    assert out.stat().st_size > 10_000


def test_version_and_help():
    assert _run("--version").stdout.startswith("streamsr, version")
    for cmd in ([], ["run"], ["export"], ["bench"], ["models"]):
        r = _run(*cmd, "--help")
        assert r.exit_code == 0 and "Usage" in r.stdout


@pytest.mark.slow
def test_stdin_to_stdout(tmp_path):
    src = make_video(tmp_path / "in.ts", frames=10, container="mpegts", audio="aac")
    out = tmp_path / "out.ts"
    with open(src, "rb") as fin, open(out, "wb") as fout:
        p = subprocess.run(STREAMSR + ["run", "-", "-o", "-", "-q"], stdin=fin, stdout=fout,
                           stderr=subprocess.PIPE, timeout=120, check=False)
    assert p.returncode == 0, p.stderr.decode()
    _, imgs, _ = read_video(out)
    assert len(imgs) == 10 and imgs[0].shape == (96, 128, 3)


@pytest.mark.slow
def test_sigterm_leaves_a_playable_file(tmp_path):
    src = make_video(tmp_path / "long.mp4", frames=600, size=(160, 120))
    out = tmp_path / "out.mp4"
    partial = tmp_path / "out.mp4.partial"
    p = subprocess.Popen(STREAMSR + ["run", str(src), "-o", str(out), "--scale", "4", "--backend", "torch"],
                         stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (partial.exists() and partial.stat().st_size > 20_000):
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    _, err = p.communicate(timeout=60)
    assert p.returncode == 130, err.decode()
    assert "interrupted after" in err.decode()
    assert not partial.exists()
    pts, imgs, _ = read_video(out)
    assert 0 < len(imgs) < 600
    assert pts == sorted(pts)


def test_pix_fmt_the_encoder_refuses(tmp_path):
    # mpeg2video has no 4:4:4: refused before anything is written
    src = make_video(tmp_path / "in.mp4", frames=3, size=(64, 48))
    out = tmp_path / "o.mp4"
    r = _run("run", src, "-o", out, "--codec", "mpeg2video", "--pix-fmt", "yuv444p")
    assert r.exit_code != 0
    assert not out.exists() and not Path(str(out) + ".partial").exists()


def test_eval_folder_and_video(tmp_path):
    from media import save_png
    from skimage import data

    from streamsr.evaluate import score_image
    from streamsr.models import build_model

    folder = tmp_path / "imgs"
    folder.mkdir()
    save_png(data.chelsea()[:120, :160], folder / "cat.png")
    save_png(data.coffee()[:120, :160], folder / "cup.png")
    r = _run("eval", folder, "--model", "espcn", "--scale", "2", "--backend", "torch", "--json")
    assert r.exit_code == 0, r.stderr
    report = json.loads(r.stdout)
    assert [i["name"] for i in report["items"]] == ["cat", "cup"]
    direct = score_image(build_model("espcn", 2), data.chelsea()[:120, :160], 2)
    assert report["items"][0]["psnr"] == pytest.approx(direct.psnr, abs=0.05)  # torch backend = module
    assert report["mean"]["gain"] > 0
    table = _run("eval", folder, "--model", "espcn", "--scale", "2", "--blur", "1.6", "--noise", "10")
    assert table.exit_code == 0 and table.stdout.splitlines()[-1].startswith("mean")
    video = _run("eval", make_video(tmp_path / "v.mp4", frames=12), "--model", "espcn", "--json")
    assert video.exit_code == 0 and len(json.loads(video.stdout)["items"]) == 2  # every 10th frame
    missing = _run("eval", tmp_path / "nope", "--model", "espcn")
    assert missing.exit_code == 1 and "not found" in missing.stderr


@pytest.mark.slow
def test_bench_matrix_on_a_tiny_grid(tmp_path):
    out = tmp_path / "BENCH.md"
    r = CliRunner().invoke(main, ["bench", "--matrix", "--device", "cpu", "--models", "espcn,udvd", "--sizes", "64x48",
                                  "--precisions", "fp32,fp16", "--batches", "1,2", "--backend", "torch",
                                  "--frames", "6", "--output", str(out)])
    assert r.exit_code == 0, r.output
    rows = [line for line in out.read_text().splitlines() if line.startswith(("| espcn", "| udvd"))]
    assert len(rows) == 4  # 2 models x 2 batches; fp16 skipped on the CPU
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        assert cells[1] == "64x48 -> 128x96" and cells[3] == "fp32" and cells[5] == "cpu"
        assert float(cells[6]) > 0 and float(cells[7]) > 0 and cells[8] in ("decode", "preprocess", "infer",
                                                                            "postprocess", "encode")
        assert float(cells[9]) > 0 and float(cells[10]) >= 0
    r = CliRunner().invoke(main, ["bench", "--matrix", "--batches", "one"])
    assert r.exit_code == 2 and "--batches" in r.output


def test_frame_gflop_counts_the_network():
    from streamsr.bench import frame_gflop
    from streamsr.models import build_model

    # ESPCN is three convolutions at LR size: 2 FLOP per weight per LR pixel (biases not counted)
    net = build_model("espcn", 2)
    weights = sum(p.numel() for n, p in net.named_parameters() if n.endswith("weight"))
    assert abs(frame_gflop("espcn", 2, 960, 540) - 2 * weights * 960 * 540 / 1e9) < 1e-6
    assert frame_gflop("espcn", 2, 1280, 720) / frame_gflop("espcn", 2, 640, 360) == 4.0
    udvd = frame_gflop("udvd", 2, 960, 540)  # body at LR size plus HR refinement: the heavy one
    assert udvd > frame_gflop("srresnet", 2, 960, 540) > frame_gflop("espcn", 2, 960, 540)



def test_presets_set_defaults_that_options_override(small_clip, tmp_path):
    import json as _json

    from streamsr.config import PRESETS, RunConfig, load_preset

    shipped = sorted(p.stem for p in PRESETS.glob("*.toml"))
    assert shipped == ["surveillance", "videocall"]
    for name in shipped:
        RunConfig.from_options(**load_preset(name))
    call = RunConfig.from_options(**load_preset("videocall"))
    assert call.queue_size == 1 and call.sink.tune == "zerolatency" and call.max_latency == 0.15
    assert RunConfig.from_options(**load_preset("surveillance")).live.reconnect_max_wait == 0

    stats = tmp_path / "s.json"
    r = _run("run", small_clip, "-o", tmp_path / "a.mp4", "--for", "surveillance", "--stats-json", stats, "-q")
    assert r.exit_code == 0, r.output
    assert _json.loads(stats.read_text())["model"] == "udvd"
    assert _json.loads(stats.read_text())["reuse"]["on"]  # a file too: the preset turns tile reuse on
    from streamsr.backends.choice import auto_precision

    assert _json.loads(stats.read_text())["precision"] == auto_precision("auto", "cpu", "udvd_x2")
    r = _run("run", small_clip, "-o", tmp_path / "b.mp4", "--for", "videocall", "--model", "srcnn",
                "--stats-json", stats, "-q")
    assert r.exit_code == 0, r.output
    assert _json.loads(stats.read_text())["model"] == "srcnn"  # the option wins

    r = _run("run", small_clip, "-o", tmp_path / "c.mp4", "--for", "nightowl")
    assert r.exit_code == 1 and "unknown preset 'nightowl'; shipped: surveillance, videocall" in r.output
    own = tmp_path / "mine.toml"
    own.write_text('model = "espcn"\nsharpness = 3\n')
    r = _run("run", small_clip, "-o", tmp_path / "d.mp4", "--for", own)
    assert r.exit_code == 1 and "sharpness" in r.output


def test_an_unreachable_camera_is_said_and_duration_bounds_the_wait(tmp_path):
    """Nothing listens: every retry is a (rate-limited) warning with the credentials masked, and
    --duration bounds the whole run, connecting included."""
    from conftest import free_port

    url = f"rtsp://u:s3cret@127.0.0.1:{free_port()}/cam"
    out = tmp_path / "x.mkv"
    r = _run("run", url, "-o", out, "--duration", "2", "--reconnect-max-wait", "0")
    assert r.exit_code == 1 and "Traceback" not in r.output
    lines = r.stderr.strip().splitlines()
    assert any("cannot be reached (attempt 1" in ln for ln in lines), lines
    assert lines[-1].startswith("streamsr: error: rtsp://***@127.0.0.1") and "no stream within --duration 2 s" in lines[-1]
    assert "s3cret" not in r.output and not out.exists() and not (tmp_path / "x.mkv.partial").exists()


def test_an_output_that_is_another_cameras_input_or_given_twice_is_refused(small_clip, tmp_path, monkeypatch):
    """Several inputs: camera1 writing camera2's input destroyed it; two cameras on one output
    lost one's recording; both exited 0. Refused before anything runs, as a cameras file."""
    import shutil

    shutil.copy(small_clip, tmp_path / "b.mp4")
    before = (tmp_path / "b.mp4").read_bytes()
    _one_clear_line(_run("run", small_clip, tmp_path / "b.mp4", "-o", tmp_path / "b.mp4", "-o", tmp_path / "x.mkv"),
                    "camera1's output", "is camera2's input")
    assert (tmp_path / "b.mp4").read_bytes() == before and not (tmp_path / "x.mkv").exists()
    _one_clear_line(_run("run", small_clip, tmp_path / "b.mp4", "-o", tmp_path / "same.mkv", "-o", tmp_path / "same.mkv"),
                    "is the output of both camera1 and camera2")
    assert not (tmp_path / "same.mkv").exists()
    (tmp_path / "conf").mkdir()
    cams = tmp_path / "conf" / "cams.toml"
    cams.write_text(f'[[camera]]\nname = "a"\ninput = "{small_clip}"\noutput = "one.mkv"\n'
                    f'[[camera]]\nname = "b"\ninput = "b.mp4"\noutput = "{tmp_path / "one.mkv"}"\n')
    monkeypatch.chdir(tmp_path)  # a run takes a cameras file's relative paths from where it starts
    _one_clear_line(_run("run", "--config", cams), "is the output of both a and b")


def test_a_size_given_beside_a_preset_s_scale_wins(small_clip, tmp_path):
    """The shipped presets set scale = 2; --size on the command line (or in a cameras file's
    [defaults]) replaces it instead of clashing with it ('give --scale or --size, not both')."""
    from media import read_video

    r = _run("run", small_clip, "-o", tmp_path / "a.mkv", "--for", "videocall", "--size", "256x192", "-q")
    assert r.exit_code == 0, r.output
    assert read_video(tmp_path / "a.mkv")[1][0].shape[:2] == (192, 256)
    cams = tmp_path / "cams.toml"
    cams.write_text(f'[defaults]\nsize = "128x96"\n[[camera]]\ninput = "{small_clip}"\noutput = "{tmp_path / "b.mkv"}"\n')
    r = _run("run", "--config", cams, "--for", "videocall", "-q")
    assert r.exit_code == 0, r.output
    assert read_video(tmp_path / "b.mkv")[1][0].shape[:2] == (96, 128)
    _one_clear_line(_run("run", small_clip, "-o", tmp_path / "c.mkv", "--scale", "2", "--size", "256x192"),
                    "not both")  # both on one layer: still the user's mistake


def test_a_preset_s_values_of_the_wrong_type_are_one_clear_line(small_clip, tmp_path):
    """noise = "auto" is --noise's own word and works in a preset; a quoted number is named
    (both were tracebacks)."""
    preset = tmp_path / "p.toml"
    preset.write_text('model = "udvd"\nnoise = "auto"\n')
    r = _run("run", small_clip, "-o", tmp_path / "a.mkv", "--for", preset, "-q")
    assert r.exit_code == 0, r.output
    preset.write_text('batch_size = "2"\ntile = "256"\n')
    _one_clear_line(_run("run", small_clip, "-o", tmp_path / "b.mkv", "--for", preset),
                    "wrong type", "batch_size, tile: a number, without quotes")
    for line in ('crf = "23"', 'tile = "32"', 'hls_time = "2"', 'gop = "25"', 'reconnect_max_wait = "30"'):
        preset.write_text(line + "\n")  # ones nothing compares until the run: tracebacks there
        _one_clear_line(_run("run", small_clip, "-o", tmp_path / "c.mkv", "--for", preset),
                        "wrong type", line.split()[0] + ": a number, without quotes")


def test_a_stats_file_that_could_not_be_written_is_refused_before_the_run(small_clip, tmp_path):
    """It was a traceback after the whole run (an hours-long camera run included), with no summary."""
    r = _run("run", small_clip, "-o", tmp_path / "a.mkv", "--stats-json", tmp_path / "nodir" / "s.json")
    assert r.exit_code == 2 and "--stats-json" in r.output and "does not exist" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "a.mkv").exists()


def test_bench_for_a_preset_keeps_its_encoder_preset(monkeypatch):
    import streamsr.bench

    seen = {}
    monkeypatch.setattr(streamsr.bench, "run_bench", lambda base, **kw: seen.setdefault("base", base) and "table")
    assert _run("bench", "--for", "videocall").exit_code == 0
    assert seen["base"].sink.preset == "ultrafast"  # the preset's, not the bench's own veryfast
    seen.clear()
    assert _run("bench").exit_code == 0 and seen["base"].sink.preset == "veryfast"
