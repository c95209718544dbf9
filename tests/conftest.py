"""Shared fixtures; GPU and TensorRT tests are skipped at collection where absent."""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skips = {
        "rtsp": (_gst_rtsp_available(), ("GStreamer RTSP server not installed (gstreamer1.0-rtsp, "
                                   "gir1.2-gst-rtsp-server-1.0, python3-gi, gstreamer1.0-plugins-ugly)")),
        "gpu": (_has_cuda(), "no CUDA GPU"),
        "tensorrt": (importlib.util.find_spec("tensorrt") is not None and _has_cuda(), "TensorRT not installed"),
    }
    for item in items:
        for marker, (present, why) in skips.items():
            if marker in item.keywords and not present:
                item.add_marker(pytest.mark.skip(reason=why))


#: what may be skipped where everything is installed (STREAMSR_STRICT_SKIPS=1, as .ci/run sets): facts
#: of the machine (no GPU, running as root, this FFmpeg's build), never a server or package missing
MACHINE_SKIPS = ("no CUDA GPU", "TensorRT not installed", "TensorRT is installed here", "root can write anywhere",
                 "this FFmpeg has SRT", "this FFmpeg build has no", "torch.compile's CPU kernels need a C++",
                 "needs the source tree", "variants ran in this session")


def skip_allowed(reason: str, strict: bool) -> bool:
    """Whether a test skipped for ``reason`` may stay skipped; under ``strict`` only machine facts."""
    return not strict or any(allowed in reason for allowed in MACHINE_SKIPS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under STREAMSR_STRICT_SKIPS=1 a test skipped because a server or package is missing fails:
    CI installs every real server the tests need, so a skip there would hide that one did not run."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and isinstance(report.longrepr, tuple) and not hasattr(report, "wasxfail"):
        reason = str(report.longrepr[2]).removeprefix("Skipped: ")
        if not skip_allowed(reason, os.environ.get("STREAMSR_STRICT_SKIPS") == "1"):
            report.outcome = "failed"
            report.longrepr = f"skipped where everything must be installed (STREAMSR_STRICT_SKIPS=1): {reason}"


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Every test must leave no pipeline thread running."""
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith("streamsr-") and t.is_alive()]
    assert not left, f"pipeline threads still running: {left}"


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    """No test writes into the user's real cache folder (engines): STREAMSR_CACHE_DIR points at a
    temporary folder (tests of the cache's own rules unset or change it)."""
    monkeypatch.setenv("STREAMSR_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "streamsr-cache"))


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def small_clip(clip_dir) -> Path:
    """64x48, 12 frames at 25 fps, H.264 + AAC."""
    from media import make_video

    return make_video(clip_dir / "small.mp4", frames=12, audio="aac")


SAMPLE = Path(__file__).resolve().parents[1] / "streamsr" / "data" / "sample.mp4"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


@functools.cache
def _gst_rtsp_available() -> bool:
    import subprocess

    probe = ("import gi; gi.require_version('Gst','1.0'); gi.require_version('GstRtspServer','1.0'); "
             "from gi.repository import Gst, GstRtspServer; Gst.init(None); "
             "assert Gst.ElementFactory.find('x264enc')")
    try:
        return subprocess.run(["/usr/bin/python3", "-c", probe], capture_output=True, timeout=30,
                              check=False).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RtspServer:
    """Debian's GStreamer RTSP server (tests/rtsp_server.py) as a subprocess."""

    def __init__(self, port: int | None = None, **options):
        self.port = port or free_port()
        self.options = options
        self.proc = None

    def start(self) -> RtspServer:
        import subprocess
        import time

        args = ["/usr/bin/python3", str(Path(__file__).parent / "rtsp_server.py"), "--port", str(self.port)]
        for key, value in self.options.items():
            args += [f"--{key.replace('_', '-')}"] + ([] if value is True else [str(value)])
        import tempfile

        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 -- read when the server crashed
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=self.log, text=True)
        deadline = time.monotonic() + 30
        line = self.proc.stdout.readline()
        if "READY" not in line or time.monotonic() > deadline:
            self.stop()
            raise RuntimeError(f"RTSP server did not start: {line!r}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def crashed(self) -> str | None:
        """The server's stderr if it died on its own (a test that kills it on purpose calls stop())."""
        if self.proc is None or self.proc.poll() is None or self.proc.returncode == -9:
            return None
        self.log.seek(0)
        return f"exit {self.proc.returncode}: {self.log.read()[-2000:]}"

    def url(self, path: str = "cam", user: str | None = None, password: str | None = None) -> str:
        creds = f"{user}:{password}@" if user else ""
        return f"rtsp://{creds}127.0.0.1:{self.port}/{path}"


@pytest.fixture
def rtsp_server():
    """Factory: rtsp_server(**options) starts a server; all are stopped after the test."""
    servers = []

    def start(**options) -> RtspServer:
        server = RtspServer(**options).start()
        servers.append(server)
        return server

    yield start
    crashes = [c for c in (s.crashed() for s in servers) if c]
    for s in servers:
        s.stop()
    assert not crashes, f"the test RTSP server crashed: {crashes}"
