"""End to end: files in, files out, through the real decoder, model, encoder and muxer."""

import json
from fractions import Fraction
from itertools import pairwise

import av
import numpy as np
import pytest
from media import audio_packets, make_video, moving_pattern, read_video

from streamsr import RunConfig, SinkConfig, upscale_video
from streamsr.frames import ColourTags
from streamsr.io import Source
from streamsr.metrics import bicubic_upscale, downscale, psnr_y
from streamsr.swscale import to_rgb


def test_every_frame_once_same_pts_and_size(small_clip, tmp_path):
    out = tmp_path / "out.mp4"
    stats = upscale_video(small_clip, out, RunConfig(scale=2))
    pts_in, _, tb_in = read_video(small_clip)
    pts_out, imgs, tb_out = read_video(out)
    assert [p * tb_in for p in pts_in] == [p * tb_out for p in pts_out]
    assert imgs[0].shape == (96, 128, 3)
    assert stats.frames_in == stats.frames_out == 12
    assert not (tmp_path / "out.mp4.partial").exists()


def test_variable_frame_rate_preserved(tmp_path):
    pts = [0, 40, 80, 200, 240, 250, 260, 600, 640, 641]  # ms, irregular gaps
    src = make_video(tmp_path / "vfr.mkv", frames=len(pts), pts=pts, time_base=Fraction(1, 1000))
    out = tmp_path / "out.mkv"
    upscale_video(src, out, RunConfig(scale=2))
    p_out, _, tb = read_video(out)
    assert [round(float(p * tb) * 1000) for p in p_out] == pts


def test_audio_copied_byte_for_byte(small_clip, tmp_path):
    out = tmp_path / "out.mkv"
    upscale_video(small_clip, out, RunConfig(scale=2))
    original = audio_packets(small_clip)
    assert len(original) > 5
    assert audio_packets(out) == original


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_adts_aac_from_mpegts_is_copied_not_reencoded(tmp_path, ext):
    """AAC in MPEG-TS carries ADTS headers instead of extradata: mp4/mkv take it once FFmpeg strips
    the 7-byte header, which must not be mistaken for a codec the container refuses."""
    src = make_video(tmp_path / "in.ts", frames=25, audio="aac")
    with av.open(str(src)) as c:
        assert c.streams.audio[0].codec_context.extradata is None  # ADTS, as cameras and HLS send it
    out = tmp_path / f"out{ext}"
    stats = upscale_video(src, out, RunConfig(scale=2))
    assert not any("re-encoded" in n for n in stats.notices)
    assert stats.extra["audio"] == [{"codec": "aac", "copied": True}]
    original = audio_packets(src)
    assert len(original) > 5 and all(p[:2] == b"\xff\xf1" for p in original)
    assert audio_packets(out) == [p[7:] for p in original]


def test_audio_reencoded_when_container_cannot_hold_it(tmp_path):
    src = make_video(tmp_path / "pcm.mkv", frames=10, audio="pcm_s16le")
    out = tmp_path / "out.mp4"
    stats = upscale_video(src, out, RunConfig(scale=2))
    assert any("re-encoded as aac" in n for n in stats.notices)
    with av.open(str(out)) as c:
        assert c.streams.audio[0].codec_context.name == "aac"
        assert sum(1 for _ in c.decode(audio=0)) > 5


def test_no_audio_option(small_clip, tmp_path):
    out = tmp_path / "out.mp4"
    upscale_video(small_clip, out, RunConfig(scale=2, audio=False))
    assert audio_packets(out) == []


@pytest.mark.parametrize(
    "codec,ext,pix_fmt",
    [("ffv1", ".mkv", None), ("libx265", ".mp4", None), ("libx264", ".mov", "yuv444p"),
     ("libvpx-vp9", ".webm", None)],
)
def test_codecs_and_containers(small_clip, tmp_path, codec, ext, pix_fmt):
    out = tmp_path / f"out{ext}"
    upscale_video(small_clip, out, RunConfig(scale=2, sink=SinkConfig(codec=codec, pix_fmt=pix_fmt)))
    with av.open(str(out)) as c:
        vs = c.streams.video[0]
        assert vs.codec_context.name == {"libx265": "hevc", "libx264": "h264", "libvpx-vp9": "vp9"}.get(codec, codec)
        assert (vs.width, vs.height) == (128, 96)
        assert sum(1 for _ in c.decode(vs)) == 12
        if pix_fmt:
            assert vs.codec_context.format.name == pix_fmt


def test_odd_output_size(tmp_path):
    # 4:4:4 input may have odd sides; x3 keeps them odd.
    src = make_video(tmp_path / "odd.mkv", frames=4, size=(41, 31), pix_fmt="yuv444p")
    same = upscale_video(src, tmp_path / "a.mkv", RunConfig(scale=3))
    assert (same.extra["output"]["width"], same.extra["output"]["height"]) == (123, 93)
    # Forcing 4:2:0 needs even sides: cropped by one pixel, and said so, not a crash.
    forced = upscale_video(src, tmp_path / "b.mkv", RunConfig(scale=3, sink=SinkConfig(pix_fmt="yuv420p")))
    assert (forced.extra["output"]["width"], forced.extra["output"]["height"]) == (122, 92)
    assert any("even" in n for n in forced.notices)
    _, imgs, _ = read_video(tmp_path / "b.mkv")
    assert len(imgs) == 4 and imgs[0].shape == (92, 122, 3)


COLOUR = (200, 60, 30)  # saturated: BT.601 and BT.709 decode it differently


def _flat(i, h, w):
    return np.broadcast_to(np.array(COLOUR, np.uint8), (h, w, 3)).copy()


@pytest.mark.parametrize("matrix", [1, 5], ids=["bt709", "bt601"])
@pytest.mark.parametrize("range_", [1, 2], ids=["limited", "full"])
def test_colour_matrix_and_range_preserved(tmp_path, matrix, range_):
    src = make_video(tmp_path / "flat.mkv", frames=3, size=(64, 48), image=_flat, codec="ffv1",
                     colorspace=matrix, color_range=range_)
    out = tmp_path / "out.mkv"
    upscale_video(src, out, RunConfig(scale=2, sink=SinkConfig(codec="ffv1")))
    with Source(out) as s:
        assert (s.info.colour.matrix, s.info.colour.range) == (matrix, range_)
        frame = next(f for f in s if hasattr(f, "colour"))
        mean = to_rgb(frame.image, frame.colour).reshape(-1, 3).mean(axis=0)
        other = 5 if matrix == 1 else 1  # decoding with the wrong matrix must be visibly off
        wrong = to_rgb(frame.image, ColourTags(other, range_)).reshape(-1, 3).mean(axis=0)
    tolerance = 2.0  # two RGB<->YUV round trips (clip in, output out) at 8 bits
    assert np.abs(mean - COLOUR).max() <= tolerance, mean
    assert np.abs(wrong - COLOUR).max() > 2 * tolerance


def test_full_range_yuvj_input(tmp_path):
    src = make_video(tmp_path / "j.mp4", frames=3, image=_flat, pix_fmt="yuvj420p", options={"qp": "0"})
    out = tmp_path / "out.mp4"
    upscale_video(src, out, RunConfig(scale=2))
    with Source(out) as s:
        assert s.info.colour.range == 2
        frame = next(iter(s))
        mean = to_rgb(frame.image, frame.colour).reshape(-1, 3).mean(axis=0)
    assert np.abs(mean - COLOUR).max() <= 2.0, mean


def test_espcn_beats_bicubic_through_the_pipeline(tmp_path):
    """LR clip made (MATLAB bicubic) from frames of the bundled vtest clip, a validation clip;
    stored and written losslessly in RGB so only the model is measured."""
    from conftest import SAMPLE

    _, hr_frames, _ = read_video(SAMPLE)
    hr_frames = [f[:, :, :] for f in hr_frames[:6]]
    lr_frames = [downscale(f, 2) for f in hr_frames]
    h, w = lr_frames[0].shape[:2]
    src = make_video(tmp_path / "lr.mkv", frames=len(lr_frames), size=(w, h), codec="ffv1",
                     pix_fmt="bgr0", image=lambda i, hh, ww: lr_frames[i])
    out = tmp_path / "sr.mkv"
    upscale_video(src, out, RunConfig(model="espcn", scale=2, sink=SinkConfig(codec="ffv1")))
    _, sr_frames, _ = read_video(out)
    assert len(sr_frames) == len(hr_frames)
    sr = np.mean([psnr_y(s, t, 2) for s, t in zip(sr_frames, hr_frames)])
    bic = np.mean([psnr_y(bicubic_upscale(lr, 2), t, 2) for lr, t in zip(lr_frames, hr_frames)])
    assert sr > bic + 0.5, (sr, bic)


def test_damaged_input_counts_errors_and_goes_on(tmp_path):
    clean = make_video(tmp_path / "c.avi", frames=40, codec="mpeg4", container="avi")
    bad = tmp_path / "bad.avi"
    rng = np.random.default_rng(1)
    with av.open(str(clean)) as src, av.open(str(bad), "w") as dst:
        s = src.streams.video[0]
        o = dst.add_stream_from_template(s)
        for i, pk in enumerate(p for p in src.demux(s) if p.size):
            if i in (10, 20, 21):  # garbage payload, valid container
                noise = rng.integers(0, 256, pk.size - 4, dtype=np.uint8).tobytes()
                new = av.Packet(bytes(pk)[:4] + noise)
                new.pts, new.dts, new.time_base, new.is_keyframe = pk.pts, pk.dts, pk.time_base, pk.is_keyframe
                pk = new
            pk.stream = o
            dst.mux(pk)
    stats = upscale_video(bad, tmp_path / "out.mp4", RunConfig(scale=2))
    assert stats.decode_errors + stats.corrupt_frames > 0
    assert any("damaged" in n for n in stats.notices)
    assert stats.frames_out == stats.frames_in >= 30


@pytest.mark.slow
def test_real_damaged_file_from_opencv_doc(tmp_path):
    from conftest import OPENCV_DATA

    path = OPENCV_DATA / "Megamind_bugy.avi"
    if not path.exists():
        pytest.skip("opencv-doc is not installed (CI installs it)")
    stats = upscale_video(path, tmp_path / "out.mp4", RunConfig(scale=2), stop_after=40)
    assert stats.frames_out == stats.frames_in == 40


def test_stop_after_bounds_the_run(small_clip, tmp_path):
    stats = upscale_video(small_clip, tmp_path / "o.mp4", RunConfig(scale=2), stop_after=5)
    assert stats.frames_out == 5 and not stats.interrupted


def test_batching_gives_same_frames(small_clip, tmp_path):
    a, b = tmp_path / "a.mkv", tmp_path / "b.mkv"
    upscale_video(small_clip, a, RunConfig(scale=2, batch_size=1, sink=SinkConfig(codec="ffv1")))
    upscale_video(small_clip, b, RunConfig(scale=2, batch_size=5, sink=SinkConfig(codec="ffv1")))
    fa, fb = read_video(a)[1], read_video(b)[1]
    assert len(fa) == len(fb) == 12
    assert max(int(np.abs(x.astype(int) - y).max()) for x, y in zip(fa, fb)) <= 1


def test_failed_run_leaves_no_output(small_clip, tmp_path, monkeypatch):
    from streamsr.pipeline import stages

    calls = {"n": 0}
    original = stages.InferStage._run

    def flaky(self):
        calls["n"] += 1
        if calls["n"] == 4:
            raise RuntimeError("inference exploded")
        return original(self)

    monkeypatch.setattr(stages.InferStage, "_run", flaky)
    out = tmp_path / "out.mp4"
    with pytest.raises(RuntimeError, match="inference exploded"):
        upscale_video(small_clip, out, RunConfig(scale=2))
    assert not out.exists() and not (tmp_path / "out.mp4.partial").exists()


def test_udvd_in_the_pipeline_with_estimated_noise(tmp_path):
    """A noisy clip through --model udvd with --noise auto: the estimate is reported and sane."""
    rng = np.random.default_rng(3)
    clean = [moving_pattern(i, 48, 64) for i in range(6)]
    noisy = [np.clip(f + rng.normal(0, 12, f.shape), 0, 255).astype(np.uint8) for f in clean]
    src = make_video(tmp_path / "noisy.mkv", frames=6, codec="ffv1", pix_fmt="bgr0", image=lambda i, h, w: noisy[i])
    stats = upscale_video(src, tmp_path / "o.mkv", RunConfig(model="udvd", scale=2, sink=SinkConfig(codec="ffv1")))
    deg = stats.extra["degradation"]
    assert deg["blur"] == 1.0 and deg["noise"] is None
    assert 8 < deg["noise_estimated"] < 18, deg
    assert len(read_video(tmp_path / "o.mkv")[1]) == 6


def test_noise_option_needs_a_degradation_aware_model(small_clip, tmp_path):
    from streamsr.errors import ConfigError

    with pytest.raises(ConfigError, match="udvd"):
        upscale_video(small_clip, tmp_path / "o.mp4", RunConfig(model="espcn", scale=2, noise=10))


def test_tiled_run_matches_whole_frames(small_clip, tmp_path):
    a, b = tmp_path / "a.mkv", tmp_path / "b.mkv"
    upscale_video(small_clip, a, RunConfig(scale=2, sink=SinkConfig(codec="ffv1")))
    upscale_video(small_clip, b, RunConfig(scale=2, tile=40, tile_overlap=8, sink=SinkConfig(codec="ffv1")))
    fa, fb = read_video(a)[1], read_video(b)[1]
    assert len(fa) == len(fb) == 12
    assert max(int(np.abs(x.astype(int) - y).max()) for x, y in zip(fa, fb)) <= 1


def _segments(folder, pattern):
    """(frames, first frame is a keyframe, audio packets) of each file, in name order."""
    out = []
    for path in sorted(folder.glob(pattern)):
        with av.open(str(path)) as c:
            frames = list(c.decode(video=0))
        out.append((len(frames), frames[0].key_frame, len(audio_packets(path))))
    return out


def test_segmented_recording_keeps_every_frame_and_the_audio(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=75, audio="aac")  # 3 s
    stats = upscale_video(src, tmp_path / "cam-%03d.mkv", RunConfig(scale=2, sink=SinkConfig(segment_time=1)))
    parts = _segments(tmp_path, "cam-*.mkv")
    assert len(parts) >= 3 and sum(n for n, _, _ in parts) == stats.frames_out == 75
    assert all(key and audio > 0 for _, key, audio in parts)  # each file plays on its own
    assert sum(a for _, _, a in parts) == len(audio_packets(src))  # audio copied, none lost
    assert not list(tmp_path.glob("*.partial"))


@pytest.mark.slow
def test_segments_named_by_clock_time_from_the_cli(tmp_path):
    from click.testing import CliRunner

    from streamsr.cli import main

    src = make_video(tmp_path / "in.mp4", frames=110)  # 4.4 s, read in real time
    stats = tmp_path / "stats.json"
    r = CliRunner().invoke(main, ["run", str(src), "-o", str(tmp_path / "cam-%Y%m%d-%H%M%S.mkv"),
                                  "--segment-time", "2", "--realtime", "-q", "--stats-json", str(stats)])
    assert r.exit_code == 0, r.output
    parts = _segments(tmp_path, "cam-2*.mkv")
    written = json.loads(stats.read_text())["frames_out"]
    assert len(parts) >= 2 and sum(n for n, _, _ in parts) == written > 80, (parts, written)  # nothing overwritten
    r = CliRunner().invoke(main, ["run", str(src), "-o", str(tmp_path / "c-%H%M.mkv"), "--segment-time", "60"])
    assert r.exit_code == 1 and "would reuse names" in r.output
    r = CliRunner().invoke(main, ["run", str(src), "-o", str(tmp_path / "cam.mkv"), "--segment-time", "60"])
    assert r.exit_code == 1 and "needs a file name pattern" in r.output
    r = CliRunner().invoke(main, ["run", str(src), "-o", "udp://127.0.0.1:9", "--segment-time", "60"])
    assert r.exit_code == 1 and "applies to file outputs" in r.output


def test_a_run_is_watched_by_snapshots_and_stopped_by_its_handle(tmp_path):
    """What progress lines, /metrics and a remote job runner see: frozen snapshots; stop() ends
    the run gracefully (what was read is written, the file is finalized)."""
    from streamsr.pipeline import JobSnapshot, RunHandle

    src = make_video(tmp_path / "long.mp4", frames=200, size=(64, 48))
    handle, seen = RunHandle("clip"), []

    def progress(h):
        seen.append(h.snapshot())
        if h.frames_out == 5:
            h.stop()

    stats = upscale_video(src, tmp_path / "out.mkv", RunConfig(scale=2), progress=progress, handle=handle)
    assert all(isinstance(s, JobSnapshot) for s in seen) and seen[0].state == "running"
    assert [s.frames_out for s in seen] == list(range(1, len(seen) + 1))
    assert all(s.frames_in >= s.frames_out and s.total == 200 and s.name == "clip" for s in seen)
    assert stats.interrupted and 5 <= stats.frames_out < 200 and stats.frames_in == stats.frames_out
    assert len(read_video(tmp_path / "out.mkv")[1]) == stats.frames_out
    final = handle.snapshot()
    assert final.state == "done" and final.frames_out == stats.frames_out


def test_frames_closer_than_the_containers_clock_stay_distinct(tmp_path):
    """0.4 ms apart in MPEG-TS's 1/90000 s is one tick of Matroska's 1/1000 s: the sink moves the
    second frame by a tick (and says so) instead of the muxer refusing it."""
    pts = [0, 36, 3600, 7200, 7236, 10800]
    src = make_video(tmp_path / "dense.ts", frames=len(pts), pts=pts, time_base=Fraction(1, 90000),
                     container="mpegts")
    stats = upscale_video(src, tmp_path / "out.mkv", RunConfig(scale=2))
    out, _, tb = read_video(tmp_path / "out.mkv")
    ms = [round(float(p * tb) * 1000) for p in out]
    assert stats.frames_out == len(ms) == 6 and all(b > a for a, b in pairwise(ms))
    assert any("not increasing on the matroska container's clock" in n for n in stats.notices)
