"""Any output size through the whole pipeline: fractional scales (LIIF, LTE), exact sizes for every
model, ``--model auto``, and the one-line refusals."""

import av
import numpy as np
import pytest
from click.testing import CliRunner
from media import audio_packets, make_video, read_video

from streamsr import RunConfig, upscale_video
from streamsr.cli import main
from streamsr.metrics import bicubic_upscale, downscale_to, psnr_y

BT709, LIMITED = 1, 1


@pytest.fixture(scope="module")
def tagged_clip(tmp_path_factory):
    """64x48, 8 frames, BT.709 limited range, AAC."""
    return make_video(tmp_path_factory.mktemp("any") / "in.mp4", frames=8, audio="aac", colorspace=BT709,
                      color_range=LIMITED)


@pytest.mark.parametrize("model", ["liif", "lte"])
def test_fractional_scale_keeps_frames_times_tags_and_audio(tagged_clip, tmp_path, model):
    out = tmp_path / "out.mkv"
    stats = upscale_video(tagged_clip, out, RunConfig(model=model, scale=1.5))
    pts_in, _, tb_in = read_video(tagged_clip)
    pts_out, imgs, tb_out = read_video(out)
    assert [p * tb_in for p in pts_in] == [p * tb_out for p in pts_out]
    assert stats.frames_in == stats.frames_out == 8
    assert imgs[0].shape == (72, 96, 3)
    with av.open(str(out)) as c:
        cc = c.streams.video[0].codec_context
        assert (cc.colorspace, cc.color_range) == (BT709, LIMITED)
    assert audio_packets(out) == audio_packets(tagged_clip)


def test_non_uniform_size(tagged_clip, tmp_path):
    """1.75 wide, 1.25 high: an axis each."""
    out = tmp_path / "out.mp4"
    stats = upscale_video(tagged_clip, out, RunConfig(model="lte", size=(112, 60)))
    _, imgs, _ = read_video(out)
    assert len(imgs) == 8 and imgs[0].shape == (60, 112, 3)
    assert stats.extra["geometry"] == "x1.75/1.25"


def test_size_with_a_fixed_factor_model_runs_the_next_factor_and_resizes(tagged_clip, tmp_path):
    out = tmp_path / "out.mp4"
    stats = upscale_video(tagged_clip, out, RunConfig(model="espcn", size=(100, 70)))
    _, imgs, _ = read_video(out)
    assert len(imgs) == 8 and imgs[0].shape == (70, 100, 3)
    assert (stats.extra["model"], stats.extra["geometry"]) == ("espcn", "x2 -> 100x70")  # the run says which


def test_size_as_a_height_keeps_the_aspect_ratio(tagged_clip, tmp_path):
    out = tmp_path / "out.mp4"
    upscale_video(tagged_clip, out, RunConfig(model="espcn", size="96p"))
    _, imgs, _ = read_video(out)
    assert imgs[0].shape == (96, 128, 3)


@pytest.mark.parametrize("request_,picked", [({"scale": 2}, ("espcn", "x2")), ({"size": (128, 96)}, ("espcn", "x2")),
                                             ({"scale": 1.5}, ("lte", "x1.5")), ({"size": "72p"}, ("lte", "x1.5"))])
def test_model_auto_picks_an_exact_network(tagged_clip, tmp_path, request_, picked):
    stats = upscale_video(tagged_clip, tmp_path / "out.mp4", RunConfig(model="auto", **request_))
    assert (stats.extra["model"], stats.extra["geometry"]) == picked


@pytest.mark.parametrize("args,message", [
    (["--size", "0x10"], "--size wants positive sizes"),
    (["--size", "wide"], "--size wants WIDTHxHEIGHT"),
    (["--model", "espcn", "--scale", "1.5"], "does not support scale 1.5; supported: 2, 3, 4 (or --size"),
    (["--model", "lte", "--scale", "13"], "upscales by 1 to 12"),
    (["--model", "lte", "--scale", "0.5"], "upscales by 1 to 12"),
    (["--model", "lte", "--scale", "2", "--size", "90x90"], "give --scale or --size, not both"),
    (["--model", "auto", "--scale", "1.5", "--noise", "5"], "--noise/--blur need a degradation-aware model"),
])
def test_bad_scales_and_sizes_are_one_line_errors(tagged_clip, tmp_path, args, message):
    result = CliRunner().invoke(main, ["run", str(tagged_clip), "-o", str(tmp_path / "o.mp4"), *args])
    assert result.exit_code != 0
    assert message in result.output and "Traceback" not in result.output
    assert not (tmp_path / "o.mp4").exists()


@pytest.mark.slow
def test_shipped_lte_beats_bicubic_at_2_5_through_run(tmp_path):
    """LR made (MATLAB bicubic, floor(HR / 2.5)) from frames of the bundled vtest clip, a
    validation clip, stored and written losslessly: `streamsr run --scale 2.5` against bicubic."""
    from conftest import SAMPLE

    _, hr_frames, _ = read_video(SAMPLE)
    pairs = [downscale_to(f, 2.5) for f in hr_frames[:4]]
    lr_frames, hr_frames = [p[0] for p in pairs], [p[1] for p in pairs]
    h, w = lr_frames[0].shape[:2]
    src = make_video(tmp_path / "lr.mkv", frames=len(lr_frames), size=(w, h), codec="ffv1", pix_fmt="bgr0",
                     image=lambda i, hh, ww: lr_frames[i])
    out = tmp_path / "sr.mkv"
    result = CliRunner().invoke(main, ["run", str(src), "-o", str(out), "--model", "lte", "--scale", "2.5",
                                       "--codec", "ffv1", "--quiet"])
    assert result.exit_code == 0, result.output
    _, sr_frames, _ = read_video(out)
    assert len(sr_frames) == len(hr_frames) and sr_frames[0].shape == hr_frames[0].shape
    sr = np.mean([psnr_y(s, t, 3) for s, t in zip(sr_frames, hr_frames)])
    bic = np.mean([psnr_y(bicubic_upscale(lr, 2.5, size=t.shape[:2]), t, 3) for lr, t in zip(lr_frames, hr_frames)])
    assert sr > bic + 0.3, (sr, bic)
