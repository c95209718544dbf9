"""Frame timestamps out of the decoder (io/timestamps.py) and frames left in it at the end (io/drain.py).

MPEG-4 Part 2 in AVI with DivX "packed B-frames" (a P and a B VOP in one chunk, then a 7-byte
"not coded" N-VOP chunk, as in opencv-doc's Megamind.avi) decodes with frame.pts out of order
(1, 2, 3, 5, 4, 6, 8, 7 ...) while frame.dts runs 1, 2, 3, 4, 5 ... in display order. A plain
MPEG-4 AVI with B-frames does not show it, so :func:`packed_b_frames_avi` writes the AVI chunks
the DivX way from an FFmpeg-encoded elementary stream.
"""

from __future__ import annotations

from fractions import Fraction
from itertools import pairwise

import av
import pytest
from conftest import OPENCV_DATA
from media import make_video, moving_pattern, read_video

from streamsr import RunConfig, upscale_video
from streamsr.io import Source
from streamsr.io.timestamps import FrameTimes

MEGAMIND = OPENCV_DATA / "Megamind.avi"
START = b"\0\0\1"


# -- the chooser ------------------------------------------------------------------------------
def choose(pairs, step=1):
    """Timestamps FrameTimes gives a decode-order list of (pts, dts), checking they stay in order."""
    times, out = FrameTimes(step), []
    for k, (pts, dts) in enumerate(pairs):
        out += times.push(pts, dts, k)
    out += times.flush()
    assert [k for _, k in out] == list(range(len(pairs)))
    return [t for t, _ in out]


def test_packed_b_frames_follow_dts_from_the_first_swap():
    """(pts, dts) as PyAV 18 decodes Megamind.avi: the first and the last 6 frames of 270."""
    head = [(1, 1), (2, 2), (3, 3), (5, 4), (4, 5), (6, 6), (8, 7), (7, 8), (9, 9), (11, 10), (10, 11), (12, 12)]
    tail = [(265, 265), (267, 266), (266, 267), (268, 268), (270, 269), (269, None)]
    assert choose(head) == list(range(1, 13))
    assert choose(head + tail)[-6:] == list(range(265, 271))  # the last (no dts) after the others


def test_reordered_pts_with_lagging_dts_keep_pts():
    """The usual B-frame stream: pts in display order, dts of the packet that made the decoder
    return the frame, two frames behind (MP4 with an edit list)."""
    pairs = [(p, p - 2) for p in range(10)] + [(10, None), (11, None)]
    assert choose(pairs) == list(range(12))


def test_variable_frame_rate_and_missing_values():
    assert choose([(0, 0), (40, 40), (200, 200), (210, 210)]) == [0, 40, 200, 210]
    assert choose([(None, 0), (None, 40), (80, None), (None, None)], step=40) == [0, 40, 80, 120]
    assert choose([(None, None), (None, None)], step=3) == [0, 3]


def test_broken_both_ways_is_strictly_increasing():
    assert choose([(5, 5), (5, 5), (3, 3), (9, 9), (9, None)]) == [5, 6, 7, 9, 10]


def test_no_delay_where_pts_and_dts_agree():
    """Live streams (pts == dts) get each frame's time as it is decoded; a frame whose pts and
    dts differ waits for the next one."""
    times = FrameTimes()
    assert times.push(0, 0, "a") == [(0, "a")]
    assert times.push(3, None, "b") == [(3, "b")]
    assert times.push(5, 4, "c") == [] and times.holding
    assert times.push(4, 5, "d") == [(4, "c")]
    assert times.flush() == [(5, "d")] and not times.holding


# -- a packed B-frame AVI -----------------------------------------------------------------------
def _vop_type(packet: bytes) -> str:
    return "IPBS"[packet[packet.find(START + b"\xb6") + 4] >> 6]


def _n_vop(p_vop: bytes, increment_bits: int) -> bytes:
    """A "not coded" VOP with the time fields of ``p_vop`` (vop_coded = 0, then stuffing)."""
    at = p_vop.find(START + b"\xb6") + 4
    bits = "".join(f"{b:08b}" for b in p_vop[at:at + 8])
    end = 2
    while bits[end] == "1":  # modulo_time_base
        end += 1
    end += 1 + 1 + increment_bits + 1  # its closing 0, marker, vop_time_increment, marker
    out = "01" + bits[2:end] + "0"
    out += "0" + "1" * (-(len(out) + 1) % 8)
    return START + b"\xb6" + int(out, 2).to_bytes(len(out) // 8, "big")


def packed_b_frames_avi(path, frames=24, fps=25, size=(64, 48)):
    """MPEG-4 with two B-frames, written to AVI the way DivX 5 did: user data "DivX503b1393p"
    (the decoder's cue), each P or I VOP packed with the B-VOP that follows it in decode order
    into one chunk, a chunk per further B, then an N-VOP chunk, one chunk per frame interval."""
    w, h = size
    enc = av.CodecContext.create("mpeg4", "w")
    enc.width, enc.height, enc.pix_fmt = w, h, "yuv420p"
    enc.time_base, enc.framerate = Fraction(1, fps), fps
    enc.max_b_frames, enc.gop_size = 2, 12
    packets = []
    for i in [*range(frames), None]:
        frame = None
        if i is not None:
            frame = av.VideoFrame.from_ndarray(moving_pattern(i, h, w), format="rgb24").reformat(format="yuv420p")
            frame.pts = i
        packets += [bytes(p) for p in enc.encode(frame)]
    kinds = [_vop_type(p) for p in packets]
    vop = packets[0].find(START + b"\xb6")
    packets[0] = packets[0][:vop] + START + b"\xb2DivX503b1393p" + packets[0][vop:]
    chunks, k = [], 0
    while k < len(packets):
        if kinds[k] != "B" and k + 1 < len(packets) and kinds[k + 1] == "B":
            chunks.append((packets[k] + packets[k + 1], kinds[k] == "I"))
            reference, k = packets[k], k + 2
            while k < len(packets) and kinds[k] == "B":
                chunks.append((packets[k], False))
                k += 1
            chunks.append((_n_vop(reference, (fps - 1).bit_length()), False))
        else:
            chunks.append((packets[k], kinds[k] == "I"))
            k += 1
    assert len(chunks) == frames and "B" in kinds
    with av.open(str(path), "w", format="avi") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.codec_context.codec_tag = "XVID"
        for n, (data, key) in enumerate(chunks):
            packet = av.Packet(data)
            packet.pts = packet.dts = n
            packet.time_base, packet.stream, packet.is_keyframe = Fraction(1, fps), stream, key
            out.mux(packet)
    return path


def display_times(path) -> list[Fraction]:
    """The input's display times: every decoded frame's pts, sorted."""
    pts, _, tb = read_video(path)
    return sorted(p * tb for p in pts)


def source_times(path, **kwargs) -> list[Fraction]:
    with Source(path, audio=False, **kwargs) as src:
        return [f.pts * f.time_base for f in src]


@pytest.fixture(scope="module")
def packed_clip(tmp_path_factory):
    return packed_b_frames_avi(tmp_path_factory.mktemp("packed") / "packed.avi")


def test_packed_b_frame_clip_shows_the_decoder_s_swapped_pts(packed_clip):
    """The clip is what it claims: PyAV's pts out of order, its dts in order."""
    with av.open(str(packed_clip)) as c:
        pairs = [(f.pts, f.dts) for f in c.decode(video=0)]
    pts = [p for p, _ in pairs]
    assert pts != sorted(pts) and sorted(pts) == list(range(1, 25))
    assert [d for _, d in pairs[:-1]] == list(range(1, 24))


@pytest.mark.parametrize("threads", [0, 1])
def test_packed_b_frames_keep_their_display_times(packed_clip, threads):
    assert source_times(packed_clip, decode_threads=threads) == display_times(packed_clip)


def test_packed_b_frames_through_a_run(packed_clip, tmp_path):
    out = tmp_path / "out.mkv"
    stats = upscale_video(packed_clip, out, RunConfig(scale=2))
    assert stats.frames_out == 24
    assert display_times(out) == display_times(packed_clip)


@pytest.mark.skipif(not MEGAMIND.exists(), reason="opencv-doc not installed (CI installs it)")
def test_megamind_keeps_its_display_times():
    """The real file: 270 frames at 2997/125 fps, 267 of which came out one frame late."""
    expected = display_times(MEGAMIND)
    assert len(expected) == 270
    assert source_times(MEGAMIND) == expected


@pytest.mark.slow
@pytest.mark.skipif(not MEGAMIND.exists(), reason="opencv-doc not installed (CI installs it)")
def test_megamind_run_output_times(tmp_path):
    """``streamsr run Megamind.avi``: each output frame is at its input display time, to the
    output's 1 ms time base (Matroska's)."""
    out = tmp_path / "out.mkv"
    upscale_video(MEGAMIND, out, RunConfig(scale=2, audio=False), stop_after=16)
    pts, _, tb = read_video(out)
    assert tb == Fraction(1, 1000)
    assert pts == [round(t * 1000) for t in display_times(MEGAMIND)[:16]]


# -- frames a frame-threaded decoder holds at the end ------------------------------------------------
def _damage_packet(src, dst, index):
    """Copy ``src`` with video packet ``index`` (decode order) zeroed, same size and timing."""
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        stream = out.add_stream_from_template(inp.streams.video[0])
        packets = [p for p in inp.demux(video=0) if p.size]
        for k, packet in enumerate(packets):
            if k == index:
                fresh = av.Packet(bytes(packet.size))
                fresh.pts, fresh.dts, fresh.time_base = packet.pts, packet.dts, packet.time_base
                fresh.is_keyframe, packet = packet.is_keyframe, fresh
            packet.stream = stream
            out.mux(packet)
    return dst


def _lenient_count(path) -> int:
    """Frames the default (single-threaded) decoder gives, skipping packets that fail."""
    count = 0
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            try:
                count += len(packet.decode())
            except av.FFmpegError:
                continue
    return count


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
@pytest.mark.parametrize("threads", [2, 4, 9, 17])
def test_frame_threads_give_every_frame_after_a_damaged_packet_near_the_end(tmp_path, codec, threads):
    """A packet near the end fails; the frames after it decode (from stale references). Frame
    threading reports the failure while draining, where PyAV used to drop the frames behind it."""
    clean = make_video(tmp_path / "clean.mp4", frames=12, codec=codec,
                       options={"x264-params": "mbtree=0", "bf": "0"} if codec == "libx264" else None)
    damaged = _damage_packet(clean, tmp_path / "damaged.mp4", 9)
    expected = _lenient_count(damaged)
    assert 8 <= expected < 12
    with Source(damaged, decode_threads=threads, audio=False) as src:
        times = [f.pts for f in src]
    assert len(times) == expected
    assert all(b > a for a, b in pairwise(times))


# -- files whose timestamps restart ----------------------------------------------------------
def _times(path, kind):
    """(seconds, packet bytes) of every video frame / audio packet, in order."""
    with av.open(str(path)) as c:
        if kind == "video":
            return [float(f.pts * f.time_base) for f in c.decode(video=0)]
        return [(float(p.pts * p.time_base), bytes(p)) for p in c.demux(audio=0) if p.size]


@pytest.mark.parametrize("parts", [2, 3])
def test_joined_mpegts_recordings_keep_every_frame_and_audio_packet_in_step(tmp_path, parts):
    """MPEG-TS recordings joined end to end (`cat a.ts b.ts`, or a camera's encoder restarting):
    the timestamps restart at each join. Every part keeps its frames a frame apart, every audio
    packet is kept, and sound stays in step with picture (before: the later parts' frames were
    stamped a tick apart and their audio left out as damaged)."""
    one = make_video(tmp_path / "part.ts", frames=25, size=(64, 48), container="mpegts", audio="aac")
    joined = tmp_path / "joined.ts"
    joined.write_bytes(one.read_bytes() * parts)
    raw_video, raw_audio = _times(joined, "video"), _times(joined, "audio")
    assert min(b - a for a, b in pairwise(raw_video)) < -0.5  # the input does restart
    out = tmp_path / "out.mkv"
    stats = upscale_video(joined, out, RunConfig(scale=2))
    assert not any("damaged" in n for n in stats.notices), stats.notices
    video, audio = _times(out, "video"), _times(out, "audio")
    assert len(video) == 25 * parts and stats.frames_out == 25 * parts
    steps = [b - a for a, b in pairwise(video)]
    assert min(steps) > 0.039 and max(steps) < 0.1, steps  # 40 ms; a join adds the audio's lead at most
    assert [p for _, p in audio] == [p[7:] for _, p in raw_audio]  # every packet, in order (ADTS header off)
    assert all(b > a for (a, _), (b, _) in pairwise(audio))
    per_part = len(raw_audio) // parts
    for k in range(parts):  # picture against sound at each part's start, as in the first part
        lag = video[25 * k] - audio[per_part * k][0]
        assert abs(lag - (video[0] - audio[0][0])) < 0.002, (k, lag)


def test_rejoined_closes_restarts_only():
    """Steps forward pass untouched (the recording's own gaps); a step back is closed, for both
    streams by one offset; a stream that does not restart keeps its times."""
    from types import SimpleNamespace

    from streamsr.io.joins import rejoined

    tb = Fraction(1, 1000)

    def packet(stream, ms):
        return SimpleNamespace(stream=SimpleNamespace(index=stream), pts=ms, dts=ms, duration=40, time_base=tb)

    def run(times):
        return [(p.stream.index, p.dts) for p in rejoined([packet(s, t) for s, t in times], [0, 1])]

    steady = [(0, 0), (1, 0), (0, 1000), (1, 1000), (0, 6000), (1, 6000)]  # a 5 s gap: kept
    assert run(steady) == steady
    back = [(0, 0), (1, 0), (0, 1000), (1, 1000), (0, 0), (1, 0), (0, 40)]
    assert run(back) == [(0, 0), (1, 0), (0, 1000), (1, 1000), (0, 1040), (1, 1040), (0, 1080)]
    jump = [(0, 0), (1, 0), (0, 1000), (1, 1000), (1, 60_000), (0, 60_000), (0, 60_040)]
    assert run(jump) == jump  # a step forward is the recording's own gap
    alone = [(0, 0), (1, 0), (0, 1000), (1, 1000)] + [(0, 200 + 40 * k) for k in range(600)] + [(1, 1040)]
    got = run(alone)  # only the picture restarts, within the hold: the sound keeps its own times
    assert got[-1] == (1, 1040) and [t for s, t in got if s == 0][2:4] == [1040, 1080]
    # sound half a second ahead of the picture in the interleaving: it restarts first, the
    # picture's old part goes on meanwhile; the offset puts both new starts after their old ends
    lead = [(1, 500), (0, 0), (1, 1000), (0, 500), (1, 0), (0, 1000), (1, 40), (0, 0), (1, 500)]
    assert run(lead) == [(1, 500), (0, 0), (1, 1000), (0, 500), (1, 1040), (0, 1000), (1, 1080), (0, 1040),
                         (1, 1540)]


def test_a_gap_in_an_mpegts_recording_with_b_frames_is_kept(tmp_path):
    """A motion-triggered recorder's file: 1 s of frames, 30 s of nothing, 1 s more, with
    B-frames (their dts lags their pts). The gap stays a gap; every other step is a frame."""
    src = make_video(tmp_path / "gap.ts", frames=50, size=(64, 48), container="mpegts",
                     pts=list(range(25)) + list(range(775, 800)), time_base=Fraction(1, 25))
    with av.open(str(src)) as c:
        assert any(p.pts != p.dts for p in c.demux(video=0) if p.pts is not None)  # B-frames
    out = tmp_path / "out.mkv"
    upscale_video(src, out, RunConfig(scale=2))
    times = _times(out, "video")
    steps = sorted(b - a for a, b in pairwise(times))
    assert len(times) == 50 and abs(steps[-1] - 30.04) < 0.01 and 0.039 < steps[0] and steps[-2] < 0.041, steps
