"""Audio is copied packet for packet with its times, in every container; what a container cannot
hold is said, never lost silently."""

import av
import numpy as np
import pytest
from conftest import OPENCV_DATA
from media import make_video

from streamsr import RunConfig, upscale_video


def _audio(path):
    """(pts seconds, payload) of every audio packet."""
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        return [(float(p.pts * p.time_base), bytes(p)) for p in c.demux(s) if p.size]


@pytest.fixture(scope="module")
def clip_with_cut_ac3(tmp_path_factory):
    """A clip whose AC-3 track starts with a fragment (no sync word), as Megamind.avi and files
    cut mid-frame have: the rest are whole frames. (Matroska, which keeps each packet's time.)"""
    folder = tmp_path_factory.mktemp("ac3")
    src = make_video(folder / "src.mkv", frames=25, audio="ac3")
    out = folder / "cut.mkv"
    with av.open(str(src)) as inp, av.open(str(out), "w") as dst:
        v, a = inp.streams.video[0], inp.streams.audio[0]
        ov, oa = dst.add_stream_from_template(v), dst.add_stream_from_template(a)
        first = True
        for pk in inp.demux(v, a):
            if not pk.size:
                continue
            if pk.stream is a and first:
                first = False
                cut = av.Packet(bytes(reversed(bytes(pk))))  # the same length, no 0x0B77 in front
                cut.pts, cut.dts, cut.time_base = pk.pts, pk.dts, pk.time_base
                pk = cut
            pk.stream = ov if pk.stream is v else oa
            dst.mux(pk)
    return out


def test_mp4_leaves_out_a_leading_partial_ac3_frame_and_says_so(clip_with_cut_ac3, tmp_path):
    original = _audio(clip_with_cut_ac3)
    assert original[0][1][:2] != b"\x0b\x77" and all(p[:2] == b"\x0b\x77" for _, p in original[1:])
    mkv = upscale_video(clip_with_cut_ac3, tmp_path / "o.mkv", RunConfig(scale=2))
    assert [p for _, p in _audio(tmp_path / "o.mkv")] == [p for _, p in original]  # every packet
    assert not any("AC-3" in n for n in mkv.notices)
    mp4 = upscale_video(clip_with_cut_ac3, tmp_path / "o.mp4", RunConfig(scale=2))
    written = _audio(tmp_path / "o.mp4")
    assert [p for _, p in written] == [p for _, p in original[1:]]
    np.testing.assert_allclose([t for t, _ in written], [t for t, _ in original[1:]], atol=1e-3)  # same times
    assert any("starts with 1 packet(s) that are not a whole AC-3 frame" in n for n in mp4.notices), mp4.notices


@pytest.mark.slow
@pytest.mark.skipif(not (OPENCV_DATA / "Megamind.avi").exists(), reason="opencv-doc not installed (CI installs it)")
def test_megamind_keeps_every_whole_ac3_frame(tmp_path):
    """The real file: 352 AC-3 packets, the first a 729-byte fragment that MP4 cannot start with."""
    src = OPENCV_DATA / "Megamind.avi"
    original = _audio(src)
    stats = upscale_video(src, tmp_path / "o.mp4", RunConfig(scale=2), stop_after=None)
    written = _audio(tmp_path / "o.mp4")
    assert len(original) == 352 and len(written) == 351
    assert [p for _, p in written] == [p for _, p in original[1:]]
    assert any("not a whole AC-3 frame (729 bytes at 0.000 s)" in n for n in stats.notices), stats.notices


@pytest.mark.parametrize("ext", [".mkv", ".webm", ".mp4"])
def test_audio_that_starts_before_zero_shifts_nothing(tmp_path, ext):
    """AAC from an MP4 starts with its priming packet at -21 ms. Matroska cannot start a file
    before zero and FFmpeg shifted the whole file forward by it: the pictures came out 21 ms late.
    Every stream now keeps its times (WebM re-encodes the audio to Opus, the video still keeps
    its own)."""
    from media import read_video

    src = make_video(tmp_path / "in.mp4", frames=8, audio="aac")
    assert _audio(src)[0][0] < 0
    upscale_video(src, tmp_path / f"o{ext}", RunConfig(scale=2))
    pts_in, _, tb_in = read_video(src)
    pts_out, _, tb_out = read_video(tmp_path / f"o{ext}")
    assert [p * tb_in for p in pts_in] == [p * tb_out for p in pts_out]
    if ext != ".webm":
        np.testing.assert_allclose([t for t, _ in _audio(tmp_path / f"o{ext}")], [t for t, _ in _audio(src)],
                                   atol=1e-3)
