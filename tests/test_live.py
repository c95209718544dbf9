"""Live streams against Debian's real GStreamer RTSP server (skipped where it isn't installed)."""

import json
import threading
import time
import urllib.request
from itertools import pairwise

import av
import numpy as np
import pytest
from click.testing import CliRunner
from media import audio_summary, make_video, moving_pattern, read_video

from streamsr import RunConfig
from streamsr.backends import Capabilities, WrappedBackend, create_backend
from streamsr.cli import main
from streamsr.io.live import LiveConfig
from streamsr.models import get_model
from streamsr.pipeline.cameras import Camera, run_cameras
from streamsr.pipeline.job import RunHandle, upscale_video
from streamsr.pipeline.metrics_http import MetricsServer

pytestmark = pytest.mark.rtsp

FAST_RECONNECT = LiveConfig(read_timeout=2.0, open_timeout=3.0, backoff_initial=0.2, backoff_max=1.0,
                            reconnect_max_wait=20.0)
#: tests about reading live streams, not about the latency bound: frames drop only when a queue
#: overflows, so however slow the machine, the newest frames always reach the output
PATIENT = 30.0


def _capture_steps(times, fps=25):
    """Output times as whole numbers of the camera's frame interval from the first (a dropped
    frame leaves a gap of two or more; rounding to 1/90000 s stays well under a tenth)."""
    steps = [(t - times[0]) * fps for t in times]
    assert all(abs(k - round(k)) < 0.1 for k in steps), steps
    return [round(k) for k in steps]


class SlowBackend(WrappedBackend):
    """Wraps a real backend and makes every call take at least ``delay`` seconds (host arrays only)."""

    name = "slow"
    capabilities = Capabilities()

    def __init__(self, delay: float):
        super().__init__(create_backend("torch", get_model("espcn", 2).variant(2), device="cpu"))
        self.delay = delay

    def infer(self, batch, extra=None):
        t0 = time.monotonic()
        out = self.inner.infer(batch, extra)
        time.sleep(max(0.0, self.delay - (time.monotonic() - t0)))
        return out


def _times(path):
    pts, imgs, tb = read_video(path)
    return [float(p * tb) for p in pts], imgs


@pytest.mark.slow
def test_reads_frames_from_rtsp(rtsp_server, tmp_path):
    server = rtsp_server()
    out = tmp_path / "cam.mkv"
    stats = upscale_video(server.url(), out, RunConfig(scale=2, max_latency=PATIENT), stop_after=50)
    assert stats.realtime and stats.frames_in == 50
    assert stats.frames_out + stats.dropped == 50 and stats.frames_out >= 1  # a slow machine drops, never loses
    times, imgs = _times(out)
    assert len(imgs) == stats.frames_out and imgs[0].shape == (480, 640, 3)
    # capture times of a 25 fps camera: every output frame on the camera's own 40 ms grid, in
    # order, within the 50 frames read (1.96 s), however many a slow machine dropped
    steps = _capture_steps(times)
    assert all(b > a for a, b in pairwise(steps)) and steps[-1] <= 49
    assert stats.latency["p95_ms"] is not None


def test_basic_auth_and_masked_credentials(rtsp_server, tmp_path):
    server = rtsp_server(user="viewer", password="s3cret")
    stats = upscale_video(server.url(user="viewer", password="s3cret"), tmp_path / "a.mkv",
                          RunConfig(scale=2, max_latency=PATIENT), stop_after=5)
    assert stats.frames_in == 5 and stats.frames_out + stats.dropped == 5 and stats.frames_out >= 1
    assert "s3cret" not in json.dumps(stats.as_dict()) and "***@" in stats.extra["input"]["name"]
    # wrong password: one clear line, credentials masked, even inside FFmpeg's own message
    stats_file = tmp_path / "s.json"
    r = CliRunner().invoke(main, ["run", server.url(user="viewer", password="wr0ng"), "-o", str(tmp_path / "b.mkv"),
                                  "--no-reconnect", "--stats-json", str(stats_file)])
    assert r.exit_code == 1
    assert "wr0ng" not in r.stderr + r.stdout and "rtsp://***@" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_reconnects_after_the_server_restarts(rtsp_server, tmp_path):
    server = rtsp_server()
    out = tmp_path / "cam.mkv"
    config = RunConfig(scale=2, live=FAST_RECONNECT, max_latency=PATIENT)
    result = {}
    handle = RunHandle("cam")

    def run():
        result["stats"] = upscale_video(server.url(), out, config, stop_after=120, handle=handle)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while handle.snapshot().frames_in < 25 and time.monotonic() < deadline:  # the camera is read (in real time)
        time.sleep(0.05)
    server.stop()
    time.sleep(1.5)
    server.start()  # same port
    t.join(timeout=90)
    assert not t.is_alive()
    stats = result["stats"]
    assert stats.reconnects >= 1 and stats.frames_in == 120
    # frames queued before the outage drain while it lasts: some on each side of it come out
    assert stats.frames_out + stats.dropped == 120 and stats.frames_out >= 2
    times, _ = _times(out)
    assert all(b > a for a, b in pairwise(times))  # monotonic across the gap
    gaps = np.diff(times)
    assert gaps.max() > 1.0  # the outage shows as a gap in capture time, not a jump back


@pytest.mark.slow
def test_slow_backend_keeps_latency_bounded_and_counts_drops(rtsp_server, tmp_path):
    server = rtsp_server()
    slow = SlowBackend(delay=0.12)  # ~8 fps against a 25 fps camera
    try:
        stats = upscale_video(server.url(), tmp_path / "o.mkv", RunConfig(scale=2, max_latency=0.3),
                              duration=4.0, backend=slow)
    finally:
        slow.close()
    # the backend cannot keep up with the camera on any machine: frames drop, and every one is
    # counted (the bound itself is checked on a driven clock in tests/test_runner.py)
    assert stats.dropped > 0 and stats.frames_out >= 1
    assert stats.frames_out + stats.dropped == stats.frames_in


@pytest.mark.slow
def test_two_cameras_one_failing(rtsp_server, tmp_path):
    server = rtsp_server()
    from conftest import free_port

    dead = f"rtsp://127.0.0.1:{free_port()}/cam"
    config = RunConfig(scale=2, max_latency=PATIENT,
                       live=LiveConfig(reconnect_max_wait=2.0, open_timeout=2.0, backoff_initial=0.2))
    cams = [Camera("good", server.url(), str(tmp_path / "good.mkv")),
            Camera("dead", dead, str(tmp_path / "dead.mkv")),
            Camera("good2", server.url(), str(tmp_path / "good2.mkv"))]
    results = run_cameras(cams, config, max_frames=40)
    by_name = {r.camera.name: r for r in results}
    assert by_name["dead"].error is not None and by_name["dead"].stats is None
    for name in ("good", "good2"):
        stats = by_name[name].stats
        assert by_name[name].error is None and stats.frames_in == 40
        assert stats.frames_out + stats.dropped == 40 and stats.frames_out > 0
        assert len(read_video(tmp_path / f"{name}.mkv")[0]) == stats.frames_out


def test_rtsp_push_output_is_readable(rtsp_server, tmp_path):
    server = rtsp_server(record_dir=tmp_path)
    src = make_video(tmp_path / "in.mp4", frames=50, size=(64, 48))
    stats = upscale_video(src, server.url("push"), RunConfig(scale=2, realtime=True, max_latency=PATIENT))
    assert stats.frames_out + stats.dropped == 50 and stats.frames_out >= 1
    frames, want = [], min(10, stats.frames_out)  # as many as were sent, up to 10 (a slow machine drops more)
    deadline = time.monotonic() + 60  # the server writes what it received in its own time
    while len(frames) < want and time.monotonic() < deadline:
        time.sleep(0.2)
        try:
            with av.open(str(tmp_path / "push.ts")) as c:
                frames = list(c.decode(video=0))
        except (av.FFmpegError, FileNotFoundError):  # not there yet, or its start not yet whole
            frames = []
    assert len(frames) >= want and (frames[0].width, frames[0].height) == (128, 96)


def test_hls_output(tmp_path):
    src = make_video(tmp_path / "in.mp4", frames=60, size=(64, 48))
    playlist = tmp_path / "hls" / "index.m3u8"
    playlist.parent.mkdir()
    upscale_video(src, playlist, RunConfig(scale=2))
    assert "#EXTM3U" in playlist.read_text() and list(playlist.parent.glob("*.ts"))
    assert len(read_video(playlist)[1]) == 60


def test_hls_output_of_a_file_is_cut_at_its_segment_length(tmp_path):
    """The muxer cuts at keyframes only: a file's HLS output gets them at --hls-time (it had x264's
    one in 250 frames: one 10-second segment for --hls-time 1)."""
    import dataclasses

    from streamsr.io.sink import SinkConfig

    still = moving_pattern(0, 48, 64)  # a camera's view: little changes, no scene cut
    src = make_video(tmp_path / "in.mp4", frames=100, size=(64, 48), fps=25,
                     image=lambda i, h, w: np.roll(still, i // 10, axis=1))
    playlist = tmp_path / "hls" / "index.m3u8"
    playlist.parent.mkdir()
    upscale_video(src, playlist, dataclasses.replace(RunConfig(scale=2), sink=SinkConfig(hls_time=1.0)))
    lengths = [float(line.split(":")[1].rstrip(",")) for line in playlist.read_text().splitlines()
               if line.startswith("#EXTINF")]
    # cut at the first keyframe from 1 s on (x264 may add one at a scene cut: then a segment is shorter)
    assert len(lengths) >= 4 and max(lengths) < 1.5 and abs(sum(lengths) - 4.0) < 0.05, lengths
    assert len(read_video(playlist)[1]) == 100


@pytest.mark.slow
def test_metrics_endpoint_during_a_live_run(rtsp_server, tmp_path):
    server = rtsp_server()
    handle = RunHandle("gate")
    with MetricsServer("127.0.0.1", 0, handles=lambda: [handle]) as metrics:
        t = threading.Thread(target=upscale_video, args=(server.url(), tmp_path / "o.mkv", RunConfig(scale=2, max_latency=PATIENT)),
                             kwargs={"stop_after": 40, "handle": handle})
        t.start()
        t.join(timeout=60)
        text = urllib.request.urlopen(f"http://127.0.0.1:{metrics.port}/metrics", timeout=5).read().decode()
    assert 'streamsr_frames_in_total{camera="gate"} 40' in text
    assert f'streamsr_frames_out_total{{camera="gate"}} {handle.frames_out}' in text and handle.frames_out > 0
    assert f'streamsr_frames_dropped_total{{camera="gate"}} {40 - handle.frames_out}' in text
    assert 'streamsr_latency_seconds{camera="gate",quantile="0.95"}' in text
    assert 'streamsr_reconnects_total{camera="gate"} 0' in text


def test_file_read_in_realtime_drops_when_too_slow(tmp_path, caplog):
    """...and says so once, early, with the rates and the share that will be dropped (the network
    takes at least 0.15 s a frame against 25 fps: below the input's rate on any machine)."""
    src = make_video(tmp_path / "in.mp4", frames=50, size=(64, 48))
    slow = SlowBackend(delay=0.15)
    try:
        with caplog.at_level("WARNING", logger="streamsr"):
            stats = upscale_video(src, tmp_path / "o.mkv", RunConfig(scale=2, realtime=True, max_latency=PATIENT),
                                  backend=slow)
    finally:
        slow.close()
    assert stats.frames_in == 50 and 0 < stats.frames_out < 50 and stats.dropped == 50 - stats.frames_out
    said = [r.getMessage() for r in caplog.records if "will be dropped to stay live" in r.getMessage()]
    assert len(said) == 1 and "espcn_x2 on slow" in said[0] and "the input at 25 fps" in said[0], said


@pytest.mark.slow
def test_cli_bounded_live_run_masks_credentials(rtsp_server, tmp_path):
    server = rtsp_server(user="admin", password="hunter2")
    out, stats_file = tmp_path / "cam.mp4", tmp_path / "stats.json"
    r = CliRunner().invoke(main, ["run", server.url(user="admin", password="hunter2"), "-o", str(out),
                                  "--duration", "2", "--stats-json", str(stats_file), "--metrics-port", "0"])
    assert r.exit_code == 0, r.stderr
    assert "hunter2" not in r.stderr + r.stdout + stats_file.read_text()
    data = json.loads(stats_file.read_text())
    assert data["realtime"] and data["latency"]["p95_ms"] is not None
    assert "rtsp://***@" in data["input"]["name"]
    times, imgs = _times(out)  # fragmented MP4 written live, readable
    assert len(imgs) == data["frames_out"] > 0 and times[-1] - times[0] < 2.0


@pytest.mark.slow
def test_stream_lost_for_good_keeps_the_recording(rtsp_server, tmp_path):
    from streamsr.errors import StreamLostError

    server = rtsp_server()
    out = tmp_path / "cam.mp4"
    handle = RunHandle("cam")
    config = RunConfig(scale=2, live=LiveConfig(read_timeout=2.0, open_timeout=2.0, backoff_initial=0.2,
                                                backoff_max=0.5, reconnect_max_wait=2.0))
    result = {}

    def run():
        try:
            upscale_video(server.url(), out, config, handle=handle)
        except StreamLostError as exc:
            result["error"] = exc

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while handle.frames_out < 20 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop()  # and never comes back
    t.join(timeout=60)
    error = result["error"]
    assert "--reconnect-max-wait" in str(error) and error.stats.frames_out >= 20
    assert not (tmp_path / "cam.mp4.partial").exists()
    assert len(read_video(out)[1]) == error.stats.frames_out  # finalized and playable


@pytest.mark.slow
def test_camera_audio_is_recorded_and_survives_a_reconnect(rtsp_server, tmp_path):
    """A camera's G.711 microphone track is carried into the recording on the video's clock,
    through an outage: sound stays in step with the picture and shows the same gap."""
    server = rtsp_server(audio=True)
    out = tmp_path / "cam.mkv"
    result, handle = {}, RunHandle("cam")

    def run():
        result["stats"] = upscale_video(server.url(), out, RunConfig(scale=2, live=FAST_RECONNECT,
                                                                     max_latency=PATIENT),
                                        stop_after=100, handle=handle)

    t = threading.Thread(target=run)
    t.start()
    deadline = time.monotonic() + 30
    while handle.snapshot().frames_in < 25 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.stop()
    time.sleep(1.5)
    server.start()
    t.join(timeout=90)
    assert not t.is_alive()
    stats = result["stats"]
    assert stats.reconnects >= 1 and stats.frames_in == 100
    assert stats.extra["audio"] == [{"codec": "aac", "copied": False}]  # G.711 does not go into .mkv as is
    video_times, _ = _times(out)
    seconds, starts, peak = audio_summary(out)
    assert all(b > a for a, b in pairwise(starts))  # monotonic across the reconnect
    assert abs(peak - 440) < 5  # the camera's tone
    assert max(np.diff(starts)) > 1.0  # the outage is a gap in the sound too
    # sound covers the pictures kept (real-time mode may drop pictures at either end, on a slow
    # machine more, never the sound): one-sided
    assert starts[0] < video_times[0] + 1.0 and starts[-1] > video_times[-1] - 1.0
    assert seconds > 0.7 * (video_times[-1] - video_times[0] - max(np.diff(starts)))


def test_a_camera_still_connecting_says_so():
    """The run's state while its live input is still being reached (the dashboard, /api/cameras
    and cluster status said 'starting' for the whole retry window)."""
    from types import SimpleNamespace

    handle = RunHandle("gate")
    handle._source = SimpleNamespace(state="connecting", reconnects=0, connect_failures=4)
    assert handle.snapshot().state == "connecting" and handle.snapshot().connect_failures == 4
    handle._source = SimpleNamespace(state="running", reconnects=0, connect_failures=0)
    assert handle.snapshot().state == "starting"  # connected; the network still loading
    handle.state = "running"
    handle._source.state = "reconnecting"
    assert handle.snapshot().state == "reconnecting"


def test_metrics_on_ipv6_and_a_scraper_that_goes_away_says_nothing(capfd):
    """--metrics-port [::1]:PORT serves (it could not resolve '[::1]'); a scraper that resets
    its connection mid-answer leaves no traceback on the run's terminal."""
    import socket
    import struct

    from streamsr.pipeline.metrics_http import parse_listen

    rendering, reset = threading.Event(), threading.Event()

    def render():
        rendering.set()
        reset.wait(10)
        return "x" * 4_000_000

    host, port = parse_listen("[::1]:0")
    with MetricsServer(host, port, render=render) as server:
        client = socket.create_connection(("::1", server.port))
        client.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        rendering.wait(10)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()  # a reset, before the answer is written
        reset.set()
    assert "Traceback" not in capfd.readouterr().err
