"""What a new user gets wrong, answered in one line before the first frame: outputs that cannot be
written, encoder options out of range, encoders a container refuses; and the options that answer
a memory notice."""

import json

import av
import pytest
from click.testing import CliRunner
from conftest import SAMPLE

from streamsr.cli import main


def _run(tmp_path, *args):
    return CliRunner().invoke(main, ["run", str(SAMPLE), *args])


@pytest.mark.parametrize("args,message", [
    (["-o", "/proc/streamsr-test.mp4"], "cannot create the output /proc/streamsr-test.mp4: No such file or directory"),
    (["-o", "{tmp}/o.mp4", "--crf", "99"], "--crf 99 is outside libx264's range 0-51"),
    (["-o", "{tmp}/o.mp4", "--crf", "-1"], "--crf -1 is outside libx264's range 0-51"),
    (["-o", "{tmp}/o.webm", "--crf", "64"], "--crf 64 is outside libvpx-vp9's range 0-63"),
    (["-o", "{tmp}/o.webm", "--codec", "libx264"], ("the webm container does not take libx264 video; choose another "
                                                     "--codec (e.g. libvpx-vp9)")),
])
def test_refused_before_the_first_frame_in_one_line(tmp_path, args, message):
    result = _run(tmp_path, *(a.format(tmp=tmp_path) for a in args), "--stats-json", str(tmp_path / "s.json"))
    assert result.exit_code == 1, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert "Traceback" not in result.output
    assert not list(tmp_path.glob("o.*"))  # no output, not even an empty .partial
    assert message in json.loads((tmp_path / "s.json").read_text())["error"]


def test_webm_gets_vp9_and_opus_unasked(tmp_path):
    out = tmp_path / "o.webm"
    result = _run(tmp_path, "-o", str(out), "--max-frames", "3", "--quiet")
    assert result.exit_code == 0, result.output
    with av.open(str(out)) as c:
        assert c.streams.video[0].codec_context.name == "vp9"
        assert c.streams.video[0].frames == 3 or sum(1 for _ in c.decode(video=0)) == 3


def test_max_memory_option_tiles_and_says_so(tmp_path):
    out = tmp_path / "o.mp4"
    result = _run(tmp_path, "-o", str(out), "--max-memory", "40M", "--max-frames", "2")
    assert result.exit_code == 0, result.output
    assert "running it on" in result.output and "-pixel tiles" in result.output and "40 MiB" in result.output
    refused = _run(tmp_path, "-o", str(tmp_path / "p.mp4"), "--max-memory", "1M")
    assert refused.exit_code == 1 and "raise --max-memory" in refused.output and "1 MiB" in refused.output
    bad = _run(tmp_path, "-o", str(tmp_path / "p.mp4"), "--max-memory", "lots")
    assert bad.exit_code != 0 and "--max-memory wants a size like 8G or 512M" in bad.output


@pytest.mark.slow
@pytest.mark.parametrize("ext,realtime,playable", [(".mkv", False, True), (".mp4", True, True), (".mp4", False, False)])
def test_what_a_sigkill_leaves(tmp_path, ext, realtime, playable):
    """README's promise: a killed run's .mkv .partial plays up to its last frame, and so does a live
    (fragmented) .mp4's; a file-mode .mp4's does not (its index comes at the end). The input comes
    through a pipe that stays open, so the run is still going when it is killed on any machine."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from streamsr.synth import write_clip

    clip = write_clip(tmp_path / "in.ts", frames=150, size=(192, 144), container="mpegts")
    out = tmp_path / f"o{ext}"
    partial = tmp_path / f"o{ext}.partial"
    args = [sys.executable, "-m", "streamsr.cli", "run", "-", "-o", str(out), "--quiet"]
    proc = subprocess.Popen(args + (["--realtime"] if realtime else ["--no-realtime"]), stdin=subprocess.PIPE,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        proc.stdin.write(clip.read_bytes())
        proc.stdin.flush()  # and left open: the run waits for more input, it cannot end
        deadline = time.monotonic() + 300  # only a bound on a broken run, never reached by a working one
        while (not partial.exists() or partial.stat().st_size < 100_000) and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(30)
        proc.stdin.close()
    assert partial.stat().st_size >= 100_000 and not out.exists()
    try:
        with av.open(str(partial)) as c:
            frames = sum(1 for _ in c.decode(video=0))
    except av.FFmpegError:
        frames = 0
    assert (frames > 0) == playable, frames


def test_ctrl_c_stops_a_run_started_with_sigint_ignored(tmp_path):
    """A background job of a shell script (`streamsr run ... &`) starts with SIGINT ignored, and
    Python then leaves it so: Ctrl-C and `kill -INT` did nothing, and a cluster run under a test
    suite started that way never ended. The commands set SIGINT themselves: the run says it is
    stopping, finishes what it read, finalizes its output and exits 130."""
    import queue
    import signal
    import subprocess
    import sys
    import threading
    import time
    import urllib.request

    from conftest import free_port

    from streamsr.synth import write_clip

    clip = write_clip(tmp_path / "in.ts", frames=60, size=(96, 72), container="mpegts")
    out, partial = tmp_path / "o.mkv", tmp_path / "o.mkv.partial"
    port = free_port()
    ignore_sigint = lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)  # as `cmd &` in a script starts it
    proc = subprocess.Popen([sys.executable, "-m", "streamsr.cli", "run", "-", "-o", str(out), "--quiet",
                             "--metrics-port", str(port)],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            preexec_fn=ignore_sigint)  # noqa: PLW1509 -- the test's own process, before exec

    def frames_in() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                text = r.read().decode()
        except OSError:  # not listening yet
            return 0
        return sum(int(float(line.rsplit(" ", 1)[1])) for line in text.splitlines()
                   if line.startswith("streamsr_frames_in_total"))

    said: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: [said.put(line.decode(errors="replace")) for line in proc.stderr],
                     daemon=True).start()
    try:
        proc.stdin.write(clip.read_bytes())
        proc.stdin.flush()  # and left open: the run waits for more input
        deadline = time.monotonic() + 300  # only a bound on a broken run, never reached by a working one
        # the run is in its loop once frames come in (a Ctrl-C while it is still opening the output
        # quits at once, "interrupted", without the graceful stop this test is about)
        while frames_in() < 1 and time.monotonic() < deadline:
            assert proc.poll() is None
            time.sleep(0.05)
        assert partial.exists()
        proc.send_signal(signal.SIGINT)
        assert "stopping" in said.get(timeout=120)  # heard; it finishes the frames it has read
        proc.stdin.close()  # Ctrl-C in a terminal also ends the program feeding the pipe
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert code == 130
    assert out.exists() and not partial.exists()
    with av.open(str(out)) as c:
        assert sum(1 for _ in c.decode(video=0)) > 0


@pytest.mark.parametrize("ext", [".mkv", ".mp4"])
def test_a_live_recording_reaches_the_disk_as_it_goes(tmp_path, ext):
    """A small live recording used to sit in the muxer's memory (0 bytes on disk after 16 s of a
    camera): a SIGKILL lost all of it. Now a cluster / fragment a second is written out at once:
    while the run goes on, what is on disk already plays."""
    import threading
    import time

    from media import make_video

    from streamsr import RunConfig
    from streamsr.pipeline.job import RunHandle, upscale_video

    src = make_video(tmp_path / "in.mp4", frames=100, size=(64, 48))  # 4 s at 25 fps, read in real time
    partial = tmp_path / f"o{ext}.partial"
    handle, done = RunHandle("cam"), []
    run = threading.Thread(target=lambda: done.append(upscale_video(src, tmp_path / f"o{ext}", RunConfig(
        scale=2, realtime=True, max_latency=60), handle=handle)))
    run.start()
    frames = 0
    try:
        deadline = time.monotonic() + 120
        while not frames and not done and time.monotonic() < deadline:
            time.sleep(0.2)
            try:
                with av.open(str(partial)) as c:
                    frames = sum(1 for _ in c.decode(video=0))
            except (av.FFmpegError, FileNotFoundError):
                frames = 0
    finally:
        handle.stop()
        run.join(120)
    assert frames > 0, "nothing playable reached the disk before the run ended"
    assert done and (tmp_path / f"o{ext}").exists()


def test_a_cameras_file_refuses_what_it_does_not_know(tmp_path):
    """A misspelt key used to be ignored (a camera recording to the wrong place, or defaults that
    never applied); resources are for the cluster's placement."""
    from streamsr.errors import ConfigError
    from streamsr.pipeline.cameras import load_cameras

    good = tmp_path / "cams.toml"
    good.write_text('[defaults]\nscale = 2\n[[camera]]\nname = "gate"\ninput = "a.mp4"\noutput = "b.mkv"\n'
                    'resources = { cpus = 2, gpus = 0.25 }\n')
    cams, defaults = load_cameras(good)
    assert cams[0].resources == {"cpus": 2, "gpus": 0.25} and defaults == {"scale": 2}
    for text, message in (('[defaults]\nscale = 2\n[[camera]]\ninput = "a"\noutput = "b"\noutptu = "c"\n',
                           "unknown key(s) outptu"),
                          ('[default]\nscale = 2\n[[camera]]\ninput = "a"\noutput = "b"\n', "unknown table(s) default"),
                          ('[[camera]]\ninput = "a"\noutput = "b"\nresources = { cpus = "two" }\n',
                           "resources is a table of numbers")):
        bad = tmp_path / "bad.toml"
        bad.write_text(text)
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
            load_cameras(bad)
