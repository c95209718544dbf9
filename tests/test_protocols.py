"""Stream protocols other than RTSP: UDP (MPEG-TS) both ways with real sockets, RTMP both ways
through a real RTMP server (nginx with Debian's RTMP module, started by the test), live audio
carried in step with the video, and a clear refusal of protocols the FFmpeg inside PyAV lacks
(SRT in PyAV's wheels)."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import free_port
from media import audio_summary, make_video, read_video

from streamsr import RunConfig
from streamsr.cli import main
from streamsr.errors import ConfigError
from streamsr.io.live import LiveConfig
from streamsr.io.protocols import check_protocol, ffmpeg_protocols
from streamsr.pipeline.job import upscale_video

NGINX = shutil.which("nginx") or "/usr/sbin/nginx"
RTMP_MODULE = Path("/usr/lib/nginx/modules/ngx_rtmp_module.so")
QUICK = LiveConfig(read_timeout=3.0, open_timeout=5.0, backoff_initial=0.2, backoff_max=0.5, reconnect_max_wait=15.0)


def test_ffmpeg_protocols_are_read_from_the_library():
    for output in (False, True):
        known = ffmpeg_protocols(output)
        assert known is not None and {"file", "udp", "tcp", "rtmp", "http"} <= known


def test_unknown_protocol_is_refused_up_front(tmp_path):
    with pytest.raises(ConfigError, match="cannot read nosuch://"):
        check_protocol("nosuch://host/x", output=False)
    check_protocol("rtsp://host/cam", output=False)  # RTSP is a format in FFmpeg, not a protocol
    check_protocol(str(tmp_path / "a.mp4"), output=True)
    for url in ("RTSP://host/cam", "Udp://127.0.0.1:9", "FILE:///tmp/a.mp4"):  # FFmpeg: "Protocol not found"
        with pytest.raises(ConfigError, match="scheme in lower case"):
            check_protocol(url, output=False)


def test_a_password_with_a_quote_is_masked():
    from streamsr.urls import mask_credentials

    assert mask_credentials("rtsp://viewer:it's-ok@10.0.0.5/cam") == "rtsp://***@10.0.0.5/cam"
    said = mask_credentials("cannot open 'rtsp://admin:it's@10.0.0.5/s1' (401); see 'rtsp://cam/s2' and 'a@b'")
    assert said == "cannot open 'rtsp://***@10.0.0.5/s1' (401); see 'rtsp://cam/s2' and 'a@b'"


def test_secrets_in_a_query_string_are_masked():
    """Cameras that take ?usr=admin&pwd=..., SRT's passphrase=: shown in clear on the dashboard,
    the metrics labels and messages."""
    from streamsr.urls import mask_credentials

    assert mask_credentials("rtsp://10.0.0.5/videoMain?usr=admin&pwd=hunter2") == "rtsp://10.0.0.5/videoMain?usr=admin&pwd=***"
    assert mask_credentials("cannot open 'srt://host:9000?mode=caller&passphrase=longsecret1' (timeout)") == \
        "cannot open 'srt://host:9000?mode=caller&passphrase=***' (timeout)"
    assert mask_credentials("rtmp://host/live?Token=abc;key=k") == "rtmp://host/live?Token=***;key=***"
    assert mask_credentials("rtsp://host/s?channel=1&subtype=0") == "rtsp://host/s?channel=1&subtype=0"


def test_reconnecting_tries_once_more_at_the_wait_limit(monkeypatch):
    """--reconnect-max-wait 6 with backoff 1, 2, 4 s: tries at 0, 1, 3 and 6 s (not giving up at 3
    because the next pause would pass 6), so a camera back within the limit is taken."""
    from types import SimpleNamespace

    from streamsr.errors import MediaError
    from streamsr.io import live

    clock = [0.0]
    monkeypatch.setattr(live, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    tries = []

    def run(back_at):
        src = live.LiveSource("rtsp://cam/s", live.LiveConfig(reconnect_max_wait=6.0, backoff_initial=1.0, backoff_max=10.0))
        src.stop_event = SimpleNamespace(wait=lambda s: clock.__setitem__(0, clock[0] + s) or False, is_set=lambda: False)

        def open_():
            tries.append(clock[0])
            if clock[0] < back_at:
                raise MediaError("connection refused")
            return "session"
        src._open = open_
        clock[0] = 0.0
        tries.clear()
        return src._connect()

    with pytest.raises(MediaError, match="no stream for 6s"):
        run(back_at=100)
    assert tries == [0.0, 1.0, 3.0, 6.0]
    assert run(back_at=5.0) == "session" and tries == [0.0, 1.0, 3.0, 6.0]


@pytest.mark.skipif("srt" in (ffmpeg_protocols(False) or ()), reason="this FFmpeg has SRT")
def test_srt_without_libsrt_fails_at_once_instead_of_reconnecting(tmp_path, small_clip):
    t0 = time.monotonic()
    r = CliRunner().invoke(main, ["run", "srt://127.0.0.1:9/cam", "-o", str(tmp_path / "o.mp4")])
    assert r.exit_code == 1 and "cannot read srt:// URLs" in r.output and "libsrt" in r.output
    r = CliRunner().invoke(main, ["run", str(small_clip), "-o", "srt://127.0.0.1:9"])
    assert r.exit_code == 1 and "cannot write srt:// URLs" in r.output
    assert time.monotonic() - t0 < 30  # no reconnection loop (a generous bound, not a timing test)
    assert not (tmp_path / "o.mp4").exists()


class Publisher(threading.Thread):
    """Encodes a moving synthetic picture (H.264, 25 fps, a keyframe a second) to ``url`` in real
    time until stopped: a camera or encoder pushing a stream."""

    def __init__(self, url: str, fmt: str, size=(160, 96), seconds: float = 20.0, audio: bool = False,
                 options: dict | None = None):
        super().__init__(daemon=True)
        self.url, self.fmt, self.size, self.seconds, self.audio = url, fmt, size, seconds, audio
        self.options = options or {}
        self.stop = threading.Event()
        self.error: Exception | None = None
        self.sent = 0

    def run(self):
        w, h = self.size
        try:
            with av.open(self.url, "w", format=self.fmt, options=self.options) as out:
                s = out.add_stream("libx264", rate=25)
                s.width, s.height, s.pix_fmt = w, h, "yuv420p"
                s.options = {"tune": "zerolatency", "preset": "ultrafast", "g": "25"}
                a = out.add_stream("aac", rate=48000, layout="mono") if self.audio else None
                grad = np.linspace(0, 200, w, dtype=np.float32)[None, :, None]
                start = time.monotonic()
                while not self.stop.is_set() and self.sent < self.seconds * 25:
                    img = np.broadcast_to((grad + self.sent * 3) % 255, (h, w, 3)).astype(np.uint8)
                    frame = av.VideoFrame.from_ndarray(img, format="rgb24")
                    frame.pts = self.sent
                    out.mux(s.encode(frame))
                    if a is not None:  # 40 ms of a 440 Hz tone per picture
                        n = np.arange(self.sent * 1920, (self.sent + 1) * 1920)
                        tone = (0.3 * np.sin(2 * np.pi * 440 * n / 48000)).astype(np.float32)[None, :]
                        af = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
                        af.sample_rate, af.pts = 48000, int(n[0])
                        out.mux(a.encode(af))
                    self.sent += 1
                    time.sleep(max(0.0, start + self.sent / 25 - time.monotonic()))
                out.mux(s.encode())
                if a is not None:
                    out.mux(a.encode())
        except Exception as exc:  # noqa: BLE001 -- reported by the test that owns the thread
            self.error = exc


class Reader(threading.Thread):
    """Decodes frames from ``url`` until it ends or ``limit`` frames arrived."""

    def __init__(self, url: str, limit: int = 10_000, **open_kwargs):
        super().__init__(daemon=True)
        self.url, self.limit, self.open_kwargs = url, limit, open_kwargs
        self.sizes: list[tuple[int, int]] = []
        self.error: Exception | None = None

    def run(self):
        try:
            with av.open(self.url, **self.open_kwargs) as c:
                for f in c.decode(video=0):
                    self.sizes.append((f.width, f.height))
                    if len(self.sizes) >= self.limit:
                        break
        except Exception as exc:  # noqa: BLE001 -- an end of stream shows as an I/O error on some protocols
            self.error = exc


def _check_recording(path: Path, frames: int, size: tuple[int, int]):
    """Frames, size and monotonic times of the video; the publisher's tone in step with it."""
    pts, imgs, tb = read_video(path)
    assert len(imgs) == frames and imgs[0].shape[:2] == (size[1], size[0])
    times = [float(p * tb) for p in pts]
    assert all(b > a for a, b in pairwise(times))
    seconds, starts, peak = audio_summary(path)
    assert abs(peak - 440) < 5 and all(b > a for a, b in pairwise(starts))
    # the sound covers the pictures kept: real-time mode may drop pictures (at either end, on a slow
    # machine), never the sound, so the check is one-sided
    assert starts[0] < times[0] + 1.0 and starts[-1] > times[-1] - 1.0
    assert seconds > 0.8 * (times[-1] - times[0])


# -- UDP: MPEG-TS datagrams over loopback, as hardware encoders and many cameras send them


def _record_while_publishing(pub: Publisher, url: str, tmp_path: Path, frames: int, before=None) -> None:
    """Start ``pub``, (wait with ``before``,) record ``frames`` frames of ``url`` in real-time
    mode, stop the publisher; then check the run and the recording."""
    pub.start()
    try:
        if before is not None:
            before()
        out = tmp_path / "recording.mkv"
        stats = upscale_video(url, out, RunConfig(scale=2, live=QUICK), stop_after=frames)
    finally:
        pub.stop.set()
        pub.join(10)
    assert pub.error is None
    # counted, not timed: every frame read is written or counted as dropped (a slow machine drops more)
    assert stats.realtime and stats.frames_in == frames == stats.frames_out + stats.dropped and stats.frames_out >= 1
    _check_recording(out, stats.frames_out, (320, 192))


def test_reads_mpegts_over_udp(tmp_path):
    port = free_port()
    pub = Publisher(f"udp://127.0.0.1:{port}?pkt_size=1316", "mpegts", audio=True)
    _record_while_publishing(pub, f"udp://127.0.0.1:{port}?overrun_nonfatal=1&fifo_size=100000", tmp_path, 30)


def test_pushes_mpegts_over_udp(tmp_path):
    port = free_port()
    reader = Reader(f"udp://127.0.0.1:{port}?overrun_nonfatal=1&fifo_size=100000", limit=40,
                    timeout=(10.0, 5.0))
    reader.start()
    time.sleep(0.5)  # UDP: the receiver listens first
    src = make_video(tmp_path / "in.mp4", frames=50, size=(64, 48))
    stats = upscale_video(src, f"udp://127.0.0.1:{port}?pkt_size=1316", RunConfig(scale=2, realtime=True))
    reader.join(15)
    assert stats.frames_out + stats.dropped == 50 and stats.frames_out >= 1
    assert reader.sizes and len(reader.sizes) <= stats.frames_out and set(reader.sizes) == {(128, 96)}, reader.error


@pytest.mark.slow
def test_reads_mpegts_from_a_tcp_server(tmp_path):
    """An encoder that serves MPEG-TS over TCP (tcp://...?listen=1 on its side). It runs in its
    own process: PyAV holds the GIL while its output waits for a client to connect."""
    import subprocess
    import sys

    port = free_port()
    script = (
        "import sys, time; sys.path.insert(0, sys.argv[1]); from test_protocols import Publisher; "
        f"p = Publisher('tcp://127.0.0.1:{port}?listen=1', 'mpegts', audio=True, seconds=15); p.run()"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(Path(__file__).parent)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        out = tmp_path / "tcp.mkv"
        stats = upscale_video(f"tcp://127.0.0.1:{port}", out, RunConfig(scale=2, live=QUICK), stop_after=30)
    finally:
        proc.kill()
        proc.wait(10)
    assert stats.realtime and stats.frames_in == 30 == stats.frames_out + stats.dropped and stats.frames_out >= 1
    _check_recording(out, stats.frames_out, (320, 192))


@pytest.mark.slow
def test_reads_a_live_hls_playlist_over_http(tmp_path):
    """A live HLS playlist (rolling window of 1-second segments) served over HTTP."""
    import functools
    import http.server

    folder = tmp_path / "hls"
    folder.mkdir()
    pub = Publisher(str(folder / "index.m3u8"), "hls", audio=True, options={
        "hls_time": "1", "hls_list_size": "4", "hls_flags": "delete_segments", "hls_segment_type": "mpegts"})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.m3u8"

    def playlist_written():
        deadline = time.monotonic() + 20
        while not (folder / "index.m3u8").exists() and time.monotonic() < deadline:
            time.sleep(0.1)

    try:
        _record_while_publishing(pub, url, tmp_path, 40, before=playlist_written)
    finally:
        server.shutdown()
        server.server_close()


# -- RTMP through a real server (nginx + Debian's libnginx-mod-rtmp)


@pytest.fixture
def rtmp_server(tmp_path):
    if not (Path(NGINX).exists() and RTMP_MODULE.exists()):
        pytest.skip("nginx with the RTMP module not installed (nginx, libnginx-mod-rtmp)")
    port = free_port()
    conf = tmp_path / "nginx.conf"
    (tmp_path / "logs").mkdir()
    conf.write_text(f"""
load_module {RTMP_MODULE};
daemon off;
master_process off;
pid {tmp_path}/nginx.pid;
error_log {tmp_path}/logs/error.log warn;
events {{ worker_connections 64; }}
rtmp {{ server {{ listen 127.0.0.1:{port}; application live {{ live on; record off; }} }} }}
""")
    proc = subprocess.Popen([NGINX, "-c", str(conf), "-p", str(tmp_path), "-e", str(tmp_path / "logs" / "error.log")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import socket

    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"nginx did not start: {proc.stderr.read()}")
            time.sleep(0.1)
    yield f"rtmp://127.0.0.1:{port}/live"
    proc.kill()
    proc.wait(10)


@pytest.mark.slow
def test_reads_from_an_rtmp_server(rtmp_server, tmp_path):
    pub = Publisher(f"{rtmp_server}/cam", "flv", audio=True)
    # published before anyone plays it
    _record_while_publishing(pub, f"{rtmp_server}/cam", tmp_path, 30, before=lambda: time.sleep(1.0))


@pytest.mark.slow
def test_pushes_to_an_rtmp_server(rtmp_server, tmp_path):
    reader = Reader(f"{rtmp_server}/out", limit=40, timeout=(10.0, 5.0))
    reader.start()  # nginx lets a player wait for a stream not yet published
    time.sleep(0.5)
    src = make_video(tmp_path / "in.mp4", frames=50, size=(64, 48))
    stats = upscale_video(src, f"{rtmp_server}/out", RunConfig(scale=2, realtime=True))
    reader.join(15)
    assert stats.frames_out + stats.dropped == 50 and stats.frames_out >= 1  # realtime: may drop
    assert reader.sizes and len(reader.sizes) <= stats.frames_out and set(reader.sizes) == {(128, 96)}, reader.error


def test_live_timestamps_follow_the_stream_clock_through_bursts_and_regap_after_stalls():
    """HLS hands over whole segments (6-10 s) at once: their frames must keep their own spacing,
    not be squashed together; a stall the stream clock did not count must show as a gap."""
    from fractions import Fraction
    from types import SimpleNamespace

    from streamsr.frames import Frame, VideoInfo
    from streamsr.io.live import LiveSource

    src = LiveSource("http://host/live/index.m3u8")
    src.info = VideoInfo(width=8, height=8, time_base=Fraction(1, 90000), frame_rate=Fraction(25), frame_count=None,
                         codec="h264", pix_fmt="yuv420p", colour=None, duration=None)
    image = SimpleNamespace(width=8, height=8)
    tb, anchor, times = Fraction(1, 25), None, []

    def feed(index, arrival):
        nonlocal anchor
        frame, anchor = src._retime(Frame(index, index, tb, image, None, arrival), anchor)
        times.append(float(frame.pts * frame.time_base))

    for i in range(200):  # an 8-second segment arriving all at once at t=100
        feed(i, 100.0)
    assert np.allclose(np.diff(times), 0.04, atol=1e-4) and abs(times[-1] - 199 * 0.04) < 1e-3
    for i in range(200, 225):  # the stream stalls 20 s, then goes on where its clock stopped
        feed(i, 128.0 + (i - 200) * 0.04)
    assert times[200] - times[199] > 15  # the stall is a gap
    assert np.allclose(np.diff(times[200:]), 0.04, atol=1e-4)


@pytest.mark.parametrize("ppm", [+1000, -1000])
def test_live_timestamps_follow_a_camera_clock_that_drifts_without_gaps_or_squeezes(ppm):
    """A camera's clock runs faster or slower than this machine's (tens to hundreds of ppm; 1,000
    here, so that the offset a day at 100 ppm builds comes in hours of stream): frames arriving
    steadily must stay about a frame apart, with no fake gap (a slow clock once 5 s behind) and no
    frames stamped a tick apart (a fast clock re-anchored once 30 s ahead)."""
    from fractions import Fraction
    from types import SimpleNamespace

    from streamsr.frames import Frame, VideoInfo
    from streamsr.io.live import LiveSource

    src = LiveSource("rtsp://cam/s")
    src.info = VideoInfo(width=8, height=8, time_base=Fraction(1, 90000), frame_rate=Fraction(25), frame_count=None,
                         codec="h264", pix_fmt="yuv420p", colour=None, duration=None)
    image, tb, anchor, pts = SimpleNamespace(width=8, height=8), Fraction(1, 25), None, []
    rate = 1 + ppm * 1e-6  # camera seconds per second here
    for i in range(25 * 40_000):  # 11 h of stream: 40 s of offset at 1,000 ppm
        frame, anchor = src._retime(Frame(i, i, tb, image, None, 1000.0 + i * 0.04 / rate), anchor)
        pts.append(frame.pts)
    gaps = np.diff(pts) / 90000
    assert gaps.min() > 0.039 and gaps.max() < 0.041, (gaps.min(), gaps.max())
    assert abs((pts[-1] - pts[0]) / 90000 - (len(pts) - 1) * 0.04 / rate) < 1.0  # the local clock's length


def test_live_decoding_holds_no_frame_back(tmp_path):
    """Frame threading holds each frame back by about its thread count; live inputs decode with
    slice threading, so a camera's frame comes out with its own packet."""
    from streamsr.io.source import configure_decoder

    path = tmp_path / "cam.ts"
    with av.open(str(path), "w") as out:  # a camera-like stream: no B-frames
        s = out.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
        s.options = {"tune": "zerolatency", "preset": "ultrafast"}
        for i in range(30):
            frame = av.VideoFrame.from_ndarray(np.full((240, 320, 3), i * 8, np.uint8), format="rgb24")
            frame.pts = i
            out.mux(s.encode(frame))
        out.mux(s.encode())

    def lag(low_delay):
        with av.open(str(path)) as c:
            configure_decoder(c.streams.video[0].codec_context, 4, low_delay)
            sent = got = worst = 0
            for packet in c.demux(video=0):
                sent += bool(packet.size)
                got += len(packet.decode())
                worst = max(worst, sent - got) if packet.size else worst
            return worst, got

    assert lag(low_delay=True) == (0, 30)
    assert lag(low_delay=False)[0] >= 2  # files: throughput over delay


def test_the_last_decode_error_outlives_its_connection():
    """The damage notice quotes FFmpeg's last words; a reconnect closed the session that had them."""
    from types import SimpleNamespace

    from streamsr.io.live import LiveSource

    src = LiveSource("rtsp://cam/s")
    src._session = SimpleNamespace(decode_errors=2, corrupt_frames=0, last_decode_error="Error at MB: 1",
                                   close=lambda: None)
    src._retire()  # the connection broke
    assert src.last_decode_error == "Error at MB: 1" and src.decode_errors == 2
    src._session = SimpleNamespace(decode_errors=0, corrupt_frames=0, last_decode_error=None, close=lambda: None)
    assert src.last_decode_error == "Error at MB: 1"


def test_cameras_in_one_process_count_only_their_own_decode_errors(tmp_path):
    """FFmpeg names the codec, not the decoder, in its messages: two cameras of the same codec
    (H.264, as almost all are) read on their own threads each count their own damage (the clean
    one counted the damaged one's errors and carried its 'damaged input' notice)."""
    import threading

    from streamsr.io.source import Source

    clean = make_video(tmp_path / "clean.ts", frames=60, size=(128, 96), container="mpegts")
    bad = tmp_path / "bad.ts"
    rng = np.random.default_rng(1)
    with av.open(str(clean)) as src, av.open(str(bad), "w") as dst:
        out = dst.add_stream_from_template(src.streams.video[0])
        for i, packet in enumerate(p for p in src.demux(video=0) if p.size):
            if i in (10, 20, 21, 30):  # bytes flipped inside the slices, the container intact
                data = bytearray(bytes(packet))
                data[20::7] = rng.integers(0, 256, len(data[20::7]), dtype=np.uint8).tobytes()
                damaged = av.Packet(bytes(data))
                damaged.pts, damaged.dts, damaged.time_base = packet.pts, packet.dts, packet.time_base
                damaged.is_keyframe, packet = packet.is_keyframe, damaged
            packet.stream = out
            dst.mux(packet)
    counted, go = {}, threading.Barrier(2)

    def camera(name, path):
        with Source(str(path), low_delay=True, decode_threads=2) as source:  # as a live input decodes
            go.wait()
            for _ in source:
                pass
            counted[name] = (source.decode_errors, source.frames_decoded)

    threads = [threading.Thread(target=camera, args=a) for a in (("clean", clean), ("bad", bad))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert counted["bad"][0] > 0 and counted["clean"] == (0, 60), counted
