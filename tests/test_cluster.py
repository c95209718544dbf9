"""``streamsr cluster`` on a real multi-node Ray cluster (head + two worker nodes as processes on
this machine) against the real GStreamer RTSP server: placement, restarts after a killed process
and a lost node, counted gaps, drained recordings, masked credentials.

Ray is imported only inside the fixtures (its loopback setting is read at import). Tests wait on
conditions with generous deadlines and assert counted facts, never durations.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import free_port
from media import make_video, read_video

from streamsr import RunConfig
from streamsr.cli import main
from streamsr.cluster import (
    ClusterRun,
    Demand,
    NodeInfo,
    actor_name,
    camera_demand,
    nodes_from_ray,
    plan_placement,
    render_cluster_metrics,
    resolve_path,
    segment_output,
)
from streamsr.cluster.status import CameraStatus, status_from_actor
from streamsr.errors import BackendUnavailableError, ConfigError
from streamsr.pipeline.cameras import Camera

HAS_RAY = importlib.util.find_spec("ray") is not None
needs_ray = pytest.mark.skipif(not HAS_RAY, reason="ray not installed (pip install 'streamsr[cluster]')")
PATIENT = 30.0  # max_latency: frames drop only when a queue overflows, however slow the machine
STREAMSR = str(Path(sys.executable).with_name("streamsr"))
SECRET = "s3cretpw"


# -- without a cluster ------------------------------------------------------------------------------

def test_base_install_does_not_import_ray():
    code = ("import sys, streamsr, streamsr.cli, streamsr.cluster, streamsr.cli.cluster; "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert out.stdout.strip() == "False"


def test_missing_ray_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    cams = tmp_path / "cams.toml"
    cams.write_text('[[camera]]\nname = "a"\ninput = "rtsp://u:p@h/s"\noutput = "a.mkv"\n')
    r = CliRunner().invoke(main, ["cluster", "run", "--config", str(cams)])
    assert r.exit_code == 1
    assert r.stderr.strip() == ("streamsr: error: streamsr cluster needs Ray, which is not installed: "
                                "pip install 'streamsr[cluster]'")
    with pytest.raises(BackendUnavailableError):
        from streamsr.cluster import import_ray

        import_ray()


def test_placement_fits_gpus_and_reports_what_cannot_be_placed():
    cpu_nodes = [NodeInfo("a", "10.0.0.1", 2, 0), NodeInfo("b", "10.0.0.2", 1, 0)]
    gpu_nodes = cpu_nodes + [NodeInfo("g", "10.0.0.3", 8, 2)]
    assert camera_demand(cpu_nodes, remote_inference=False) == Demand(1.0, 0.0)
    assert camera_demand(gpu_nodes, remote_inference=False) == Demand(1.0, 0.25)
    assert camera_demand(gpu_nodes, remote_inference=True) == Demand(1.0, 0.0)
    assert camera_demand(gpu_nodes, remote_inference=False, cameras_per_gpu=8).gpus == 0.125
    with pytest.raises(ConfigError):
        camera_demand(gpu_nodes, remote_inference=True, gpus=0.5)
    with pytest.raises(ConfigError):
        camera_demand(cpu_nodes, remote_inference=False, cpus=-1)
    names = [f"c{i}" for i in range(5)]
    plan = plan_placement(names, Demand(1.0), cpu_nodes)  # 3 CPUs: three run, two wait for room
    assert [p.placeable for p in plan] == [True] * 5 and [p.waits for p in plan] == [False] * 3 + [True] * 2
    plan = plan_placement(names, Demand(1.0, 0.25), cpu_nodes)  # no GPU anywhere: none can be placed
    assert not any(p.placeable for p in plan) and "0.25 GPU" in plan[0].reason
    plan = plan_placement([f"c{i}" for i in range(9)], Demand(1.0, 0.25), gpu_nodes)  # 2 GPUs x 4 cameras
    assert sum(not p.waits for p in plan) == 8 and plan[8].waits
    assert not plan_placement(["x"], Demand(4.0), cpu_nodes)[0].placeable
    # a custom resource: only the nodes declaring it (those running a Triton server, say)
    tiered = [NodeInfo("a", "10.0.0.1", 8, 0), NodeInfo("t", "10.0.0.4", 8, 0, (("triton", 2.0),))]
    want = camera_demand(tiered, remote_inference=True, custom={"triton": 1})
    assert want.amounts() == {"CPU": 1.0, "triton": 1.0} and want.describe() == "1 CPU + 1 triton"
    plan = plan_placement(names[:3], want, tiered)
    assert [p.waits for p in plan] == [False, False, True]
    plan = plan_placement(names[:1], want, cpu_nodes)
    assert not plan[0].placeable and "1 triton" in plan[0].reason
    # one demand per camera (a cameras file's own resources): each is placed, or refused, by its own
    plan = plan_placement(["big", "small", "gpu"], [Demand(2.0), Demand(1.0), Demand(1.0, 0.5)], cpu_nodes)
    assert [(p.placeable, p.waits) for p in plan] == [(True, False), (True, False), (False, False)]
    assert "needs 1 CPU + 0.5 GPU" in plan[2].reason


def test_segment_names_never_reuse_a_file(tmp_path):
    assert segment_output("/rec/gate.mkv", 0) == "/rec/gate.mkv"
    assert segment_output("/rec/gate.mkv", 2) == "/rec/gate.r2.mkv"
    assert segment_output("/rec/cam-%03d.mkv", 1) == "/rec/cam-%03d.r1.mkv"
    assert segment_output("rtsp://u:p@server/out", 3) == "rtsp://u:p@server/out"
    assert segment_output("-", 1) == "-"
    assert resolve_path("gate.mkv", tmp_path) == str(tmp_path / "gate.mkv")
    assert resolve_path("rtsp://h/s", tmp_path) == "rtsp://h/s" and resolve_path("/a/b.mkv", tmp_path) == "/a/b.mkv"
    assert actor_name("rtsp://user:pw@cam/s") == "camera:rtsp://***@cam/s"


class _Ref:
    def __init__(self, value):
        self.value = value


def _answer(incarnation: str, segment: int | None, state: str) -> dict:
    return {"incarnation": incarnation, "segment": segment, "state": state, "node_ip": "10.0.0.1", "node_id": "ab",
            "snapshot": None, "first_frame_wall": None, "last_frame_wall": None, "error": None, "output": None}


def test_a_status_answered_before_its_begin_does_not_begin_a_second_segment():
    """A camera actor answers calls concurrently (max_concurrency > 1), so a status asked before
    the begin may be answered after the begin's own answer: it still says "not begun". The
    supervisor must not begin again (it once did: the camera's outputs then listed gate.r1.mkv,
    a file nobody wrote, with no restart). A new process is begun afresh."""
    class RayActorError(Exception):
        pass

    class ActorDiedError(RayActorError):
        pass

    answers = [_answer("a", None, "waiting"),  # poll 1: not begun yet -> begin segment 0
               _answer("a", None, "waiting"),  # poll 2: asked before the begin ran, answered after it
               _answer("a", 0, "running"),
               _answer("b", None, "waiting"),  # a restarted process: begin segment 1
               _answer("b", 1, "done")]
    begun = []
    actor = types.SimpleNamespace(
        status=types.SimpleNamespace(remote=lambda: _Ref(answers.pop(0))),
        begin=types.SimpleNamespace(remote=lambda segment, **kw: begun.append(segment) or _Ref(None)))
    fake_ray = types.SimpleNamespace(wait=lambda refs, num_returns, timeout: (refs, []), get=lambda ref: ref.value,
                                     exceptions=types.SimpleNamespace(RayActorError=RayActorError,
                                                                      ActorDiedError=ActorDiedError))
    job = ClusterRun([Camera("gate", "rtsp://cam/s", "/rec/gate.mkv")], RunConfig(scale=2), ray=fake_ray)
    job._tracked[0].actor = actor
    for _ in range(3):
        job.poll()
    [status] = job.statuses()
    assert begun == [0] and status.outputs == ["/rec/gate.mkv"] and status.restarts == 0 and status.state == "running"
    job.poll()
    job.poll()
    [status] = job.statuses()
    assert begun == [0, 1] and status.outputs == ["/rec/gate.mkv", "/rec/gate.r1.mkv"] and status.restarts == 1
    assert status.state == "done" and not answers


def test_status_table_json_and_metrics_mask_credentials():
    from streamsr.cli.cluster import format_table

    data = {"camera": "gate", "incarnation": "x", "segment": 1, "state": "running", "node_id": "abcdef123456",
            "node_ip": "10.0.0.2", "pid": 1, "output": "/rec/gate.r1.mkv", "first_frame_wall": 1.0,
            "last_frame_wall": 2.0, "error": None, "notes": [], "rss_mb": 300.0, "salvaged": [],
            "history": {"restarts": 1, "gaps": 1, "gap_seconds": 2.5, "outputs": ["/rec/gate.mkv"]},
            "snapshot": {"name": "gate", "state": "running", "frames_in": 50, "frames_out": 48, "dropped": 2,
                         "reconnects": 0, "connect_failures": 0, "total": None, "elapsed": 2.0,
                         "latency": {"p50_ms": 80, "p95_ms": 120, "max_ms": 130}, "error": None, "remote": []}}
    s = status_from_actor(data)
    assert s.outputs == ["/rec/gate.mkv", "/rec/gate.r1.mkv"] and s.restarts == 1 and s.fps == 24.0
    table = format_table([s, CameraStatus("rtsp://***@cam/s", "unplaceable", error="cannot be placed: needs 1 GPU")])
    assert "10.0.0.2/abcdef12" in table and "1 (2.5 s)" in table and "unplaceable" in table
    metrics = render_cluster_metrics([s])
    assert 'streamsr_frames_out_total{camera="gate"} 48' in metrics
    assert 'streamsr_cluster_restarts_total{camera="gate"} 1' in metrics
    assert 'streamsr_cluster_camera_info{camera="gate",node="10.0.0.2/abcdef12",state="running"} 1' in metrics
    assert json.loads(json.dumps(s.as_dict()))["gap_seconds"] == 2.5


def _gcs_running() -> bool:
    """Whether any Ray cluster runs on this machine (``--address auto`` would join it)."""
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if proc.name.isdigit() and b"gcs_server" in (proc / "cmdline").read_bytes():
                return True
    return False


@needs_ray
@pytest.mark.slow
def test_auto_address_starts_a_local_instance_on_loopback(tmp_path):
    """``cluster run --address auto`` with no cluster running starts a local Ray bound to 127.0.0.1
    (``--address local`` always does: the test takes it when another cluster runs here)."""
    clip = make_video(tmp_path / "in.mp4", frames=12)
    cams = tmp_path / "cams.toml"
    cams.write_text('[defaults]\nscale = 2\n[[camera]]\nname = "clip"\ninput = "in.mp4"\noutput = "out.mkv"\n')
    base = Path(tempfile.mkdtemp(prefix="ssr", dir="/tmp"))
    env = {**os.environ, "RAY_TMPDIR": str(base), "HOME": str(base), "RAY_AUTH_MODE": "disabled"}
    env.pop("RAY_ADDRESS", None)
    env.pop("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", None)  # streamsr sets it itself for loopback
    address = "local" if _gcs_running() else "auto"
    try:
        r = subprocess.run([STREAMSR, "cluster", "run", "--config", str(cams), "--address", address],
                           cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300, check=False)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    assert r.returncode == 0, r.stderr
    assert "started a local Ray instance at 127.0.0.1:" in r.stderr
    assert "clip: done: 12 frames" in r.stderr
    assert len(read_video(tmp_path / "out.mkv")[1]) == 12 and clip.exists()


# -- a real cluster: head + two workers -------------------------------------------------------------

@contextlib.contextmanager
def _ray_env(base: Path):
    """Ray's files under ``base`` (short: unix socket paths), no auth token in the real home, loopback."""
    values = {"RAY_TMPDIR": str(base / "t"), "HOME": str(base / "h"), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
              "RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
    for v in ("t", "h"):
        (base / v).mkdir()
    saved = {k: os.environ.get(k) for k in [*values, "RAY_ADDRESS"]}
    os.environ.update(values)
    os.environ.pop("RAY_ADDRESS", None)
    try:
        yield values
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class RayCluster:
    """A head (1 CPU) and two worker nodes (2 CPUs each) as processes on this machine."""

    def __init__(self, base: Path):
        from ray.cluster_utils import Cluster

        self.base = base
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "node_ip_address": "127.0.0.1", "include_dashboard": False})
        self.workers = [self.cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1") for _ in range(2)]
        self.cluster.wait_for_nodes()
        self.address = self.cluster.address

    def worker(self, node_id: str):
        return next((w for w in self.workers if w.node_id == node_id), None)

    def log_text(self) -> str:
        """Every log file Ray wrote (drivers, raylets, workers) as one text."""
        parts = []
        for path in (self.base / "t").rglob("*"):
            if path.is_file() and path.suffix in (".log", ".out", ".err", ".txt", ".json", ""):
                with contextlib.suppress(OSError):
                    parts.append(path.read_text(errors="replace"))
        return "\n".join(parts)


@pytest.fixture(scope="module")
def ray_cluster():
    if not HAS_RAY:
        pytest.skip("ray not installed")
    base = Path(tempfile.mkdtemp(prefix="ssr", dir="/tmp"))
    with _ray_env(base) as env:
        import ray

        cluster = RayCluster(base)
        cluster.env = env
        ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
        try:
            yield cluster
        finally:
            ray.shutdown()
            cluster.cluster.shutdown()
            shutil.rmtree(base, ignore_errors=True)


def _wait(condition, what: str, timeout: float = 180.0, poll=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if poll is not None:
            poll()
        value = condition()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def _playable(path: Path) -> int:
    """Frames a file decodes to (it must open and decode)."""
    _, imgs, _ = read_video(path)
    assert imgs and imgs[0].shape == (480, 640, 3)
    return len(imgs)


def _by_name(statuses):
    return {s.camera: s for s in statuses}


@needs_ray
@pytest.mark.rtsp
@pytest.mark.slow
def test_cameras_over_three_nodes_with_an_unplaceable_one(ray_cluster, rtsp_server, tmp_path):
    import ray

    plain = rtsp_server()
    secured = rtsp_server(user="viewer", password=SECRET)
    cameras = [Camera("gate", plain.url(), str(tmp_path / "gate.mkv")),
               Camera("yard", secured.url(user="viewer", password=SECRET), str(tmp_path / "yard.mkv")),
               Camera("door", plain.url(), str(tmp_path / "door.mkv"))]
    events = []
    config = RunConfig(scale=2, max_latency=PATIENT)
    with ClusterRun(cameras, config, max_frames=40, ray=ray, on_event=events.append) as job:
        statuses = job.run(duration=600)
    by = _by_name(statuses)
    assert {s.state for s in statuses} == {"done"}, [(s.camera, s.state, s.error) for s in statuses]
    assert len({s.node for s in statuses}) >= 2  # spread over the nodes
    assert sorted((n.cpus, n.gpus, n.custom) for n in nodes_from_ray(ray.nodes())) == [(1, 0, ()), (2, 0, ()),
                                                                                        (2, 0, ())]
    for cam in cameras:
        s = by[cam.name]
        assert s.restarts == 0 and s.gaps == 0 and s.outputs == [cam.output]
        assert s.snapshot.frames_in == 40 and s.snapshot.frames_out + s.snapshot.dropped == 40
        assert _playable(Path(cam.output)) == s.snapshot.frames_out >= 1
        assert not Path(cam.output + ".partial").exists()
    text = "\n".join(events) + json.dumps([s.as_dict() for s in statuses])
    assert SECRET not in text and "viewer" not in text
    # a camera that asks for a GPU on a cluster without one is reported at once; none is started
    with ClusterRun(cameras[:1], config, gpus=0.5, ray=ray, on_event=events.append) as job:
        statuses = job.run(duration=60)
    assert statuses[0].state == "unplaceable" and "0.5 GPU" in statuses[0].error
    logs = ray_cluster.log_text()
    assert "camera:yard" in logs and SECRET not in logs  # Ray's logs name the actor, never the password


def _drive(job: ClusterRun, condition, what: str, timeout: float = 240.0):
    """Poll the cluster run until ``condition(statuses by camera)`` holds."""
    return _wait(lambda: condition(_by_name(job.statuses())), what, timeout, poll=lambda: job.poll(timeout=0.5))


def _recording(s, frames: int = 3) -> bool:
    return s.state == "running" and s.snapshot is not None and s.snapshot.frames_out >= frames


#: bigger frames reach the disk sooner: what a SIGKILL leaves of a recording is what the muxer wrote
DISK_SOON = RunConfig.from_options(scale=2, max_latency=PATIENT, crf=4)


def _on_disk(output: Path, frames: int = 3) -> bool:
    """The recording's file on disk already decodes to ``frames`` frames: what a SIGKILL cannot
    take back (it loses only what the muxer still buffers: Matroska's current cluster, the I/O
    buffer). Counted in the file, so the kill that follows leaves those frames on any machine."""
    import av

    partial = output.with_name(output.name + ".partial")
    if not partial.is_file() or partial.stat().st_size == 0:
        return False
    try:
        with av.open(str(partial)) as c:
            return sum(1 for _ in itertools.islice(c.decode(video=0), frames)) >= frames
    except av.FFmpegError:  # not even a header yet
        return False


def _finish(job: ClusterRun, timeout: float = 240.0):
    job.stop()
    _wait(lambda: job.finished, "every recording to be finalized", timeout, poll=lambda: job.poll(timeout=0.5))
    return _by_name(job.statuses())


@needs_ray
@pytest.mark.rtsp
@pytest.mark.slow
def test_killed_camera_process_is_restarted_into_a_new_file(ray_cluster, rtsp_server, tmp_path):
    import ray

    server = rtsp_server(user="viewer", password=SECRET)
    out = tmp_path / "porch.mkv"
    events = []
    cam = Camera("porch", server.url(user="viewer", password=SECRET), str(out))
    with ClusterRun([cam], DISK_SOON, ray=ray, on_event=events.append) as job:
        first = _drive(job, lambda by: _recording(by["porch"]) and _on_disk(out) and by["porch"],
                       "the camera to record and its muxer to write")
        os.kill(first.pid, signal.SIGKILL)  # the node is this machine: the actor's process, killed
        again = _drive(job, lambda by: by["porch"].restarts == 1 and _recording(by["porch"]) and by["porch"],
                       "the camera to come back and record again")
        assert again.pid != first.pid and again.gaps == 1 and again.gap_seconds > 0
        final = _finish(job)["porch"]
    assert final.state == "done" and final.restarts == 1 and final.gaps == 1
    assert final.outputs == [str(out), str(tmp_path / "porch.r1.mkv")]
    # the cut recording (left as .partial by the killed process) was renamed by the new one; both play
    assert not list(tmp_path.glob("*.partial"))
    assert _playable(out) >= 3 and _playable(tmp_path / "porch.r1.mkv") >= 3
    assert any("restarted on node" in e for e in events) and any("after a gap of" in e for e in events)
    assert SECRET not in "\n".join(events) + json.dumps(final.as_dict()) + ray_cluster.log_text()


@needs_ray
@pytest.mark.slow
def test_inference_on_a_triton_tier(ray_cluster, tmp_path):
    """``--inference triton://HOST:PORT``: the camera actor decodes and encodes, the network runs on a
    real tritonserver (nvidia-pytriton's, Python-backend ESPCN)."""
    try:
        from streamsr.backends.triton_server import TritonServer, find_tritonserver

        find_tritonserver()
    except Exception as exc:  # noqa: BLE001 -- the wheel is absent or cannot run here
        pytest.skip(f"no tritonserver: {exc}")
    repo = tmp_path / "repo"
    r = CliRunner().invoke(main, ["triton", "export-repo", "--model", "espcn", "--scale", "2", "--platform", "python",
                                  "--max-batch", "4", "-o", str(repo)])
    assert r.exit_code == 0, r.output
    make_video(tmp_path / "in.mp4", frames=12)
    cams = tmp_path / "cams.toml"
    cams.write_text('[[camera]]\nname = "tiered"\ninput = "in.mp4"\noutput = "out.mkv"\n')
    with TritonServer(repo) as server, contextlib.chdir(tmp_path):
        r = CliRunner().invoke(main, ["cluster", "run", "--config", str(cams), "--address", ray_cluster.address,
                                      "--inference", f"triton://127.0.0.1:{server.grpc_port}", "--stats-json", "s.json"])
    assert r.exit_code == 0, r.output
    (camera,) = json.loads((tmp_path / "s.json").read_text())
    assert camera["state"] == "done" and camera["frames_out"] == 12
    assert camera["remote"] and camera["remote"][0]["requests"] >= 1
    _, imgs, _ = read_video(tmp_path / "out.mkv")
    assert len(imgs) == 12 and imgs[0].shape == (96, 128, 3)


@needs_ray
@pytest.mark.rtsp
@pytest.mark.slow
def test_restarts_are_bounded(ray_cluster, rtsp_server, tmp_path):
    """With no restart left, a lost camera is reported failed (and not retried for ever)."""
    import ray

    server = rtsp_server()
    cam = Camera("shed", server.url(), str(tmp_path / "shed.mkv"))
    with ClusterRun([cam], RunConfig(scale=2, max_latency=PATIENT), max_restarts=0, ray=ray) as job:
        first = _drive(job, lambda by: _recording(by["shed"]) and by["shed"], "the camera to record")
        os.kill(first.pid, signal.SIGKILL)
        final = _drive(job, lambda by: by["shed"].state == "failed" and by["shed"], "the loss to be reported")
        assert job.finished
    assert final.restarts == 0 and "lost for good" in final.error


def _read_lines(stream, into: list) -> threading.Thread:
    t = threading.Thread(target=lambda: into.extend(iter(stream.readline, "")), daemon=True)
    t.start()
    return t


@needs_ray
@pytest.mark.rtsp
@pytest.mark.slow
def test_cli_run_status_metrics_and_ctrl_c(ray_cluster, rtsp_server, tmp_path):
    server = rtsp_server(user="viewer", password=SECRET)
    cams = tmp_path / "cams.toml"
    cams.write_text(f'[defaults]\nscale = 2\nmax_latency = {PATIENT}\n'
                    f'[[camera]]\nname = "lobby"\ninput = "{server.url(user="viewer", password=SECRET)}"\n'
                    'output = "lobby.mkv"\n'
                    f'[[camera]]\nname = "{server.url(user="viewer", password=SECRET)}"\n'
                    f'input = "{server.url(user="viewer", password=SECRET)}"\noutput = "dock.mkv"\n')
    port = free_port()
    proc = subprocess.Popen([STREAMSR, "cluster", "run", "--config", str(cams), "--address", ray_cluster.address,
                             "--metrics-port", str(port)], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = _read_lines(proc.stderr, lines)
    try:
        def status():
            r = subprocess.run([STREAMSR, "cluster", "status", "--address", ray_cluster.address, "--json"],
                               capture_output=True, text=True, timeout=120, check=False)
            assert r.returncode == 0, r.stderr
            return r.stdout

        def both_recording():
            found = {c["camera"]: c for c in json.loads(status())}
            return len(found) == 2 and all(c["state"] == "running" and c["frames_out"] >= 3 for c in found.values())

        _wait(both_recording, "both cameras recording, as `cluster status` sees them", 240)
        text = status()
        table = subprocess.run([STREAMSR, "cluster", "status", "--address", ray_cluster.address],
                               capture_output=True, text=True, timeout=120, check=False).stdout
        assert "lobby" in table and "rtsp://***@127.0.0.1" in table and "RESTARTS" in table
        metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30).read().decode()
        assert 'streamsr_frames_out_total{camera="lobby"}' in metrics
        assert 'streamsr_cluster_restarts_total{camera="rtsp://***@127.0.0.1' in metrics
        for shown in (text, table, metrics):
            assert SECRET not in shown and "viewer" not in shown
    finally:
        proc.send_signal(signal.SIGINT)  # Ctrl-C: every recording drained and finalized
        code = proc.wait(timeout=240)
        reader.join(timeout=30)
    err = "".join(lines)
    assert code == 130, err
    assert SECRET not in err and "viewer" not in err
    for name in ("lobby.mkv", "dock.mkv"):
        assert _playable(tmp_path / name) >= 3
    assert not list(tmp_path.glob("*.partial"))
    r = subprocess.run([STREAMSR, "cluster", "status", "--address", ray_cluster.address],
                       capture_output=True, text=True, timeout=120, check=False)
    assert r.stdout.strip() == "no cameras are running in this cluster"
    assert SECRET not in ray_cluster.log_text()  # drivers, raylets, camera processes


@needs_ray
@pytest.mark.rtsp
@pytest.mark.slow
def test_lost_worker_node_moves_its_cameras(ray_cluster, rtsp_server, tmp_path):
    """Runs last: it takes a worker node away (and adds a fresh one back)."""
    import ray

    server = rtsp_server()
    cameras = [Camera(n, server.url(), str(tmp_path / f"{n}.mkv")) for n in ("north", "south", "east")]
    events = []
    with ClusterRun(cameras, DISK_SOON, ray=ray, on_event=events.append) as job:
        by = _drive(job, lambda by: all(_recording(s) for s in by.values()) and by, "all three cameras to record")
        nodes = {name: s.node.split("/")[1] for name, s in by.items()}
        victim = next(w for w in ray_cluster.workers if w.node_id[:8] in nodes.values())
        moved = [name for name, node in nodes.items() if node == victim.node_id[:8]]
        _drive(job, lambda by: all(_on_disk(tmp_path / f"{n}.mkv") for n in moved), "the muxers to write")
        ray_cluster.cluster.remove_node(victim, allow_graceful=False)  # the node is lost, its processes killed
        ray_cluster.workers.remove(victim)
        after = _drive(job, lambda by: all(by[n].restarts >= 1 and _recording(by[n]) for n in moved) and by,
                       "the lost node's cameras to record again elsewhere")
        for name in moved:
            assert after[name].node.split("/")[1] != victim.node_id[:8] and after[name].gaps == 1
        final = _finish(job)
    for name in ("north", "south", "east"):
        s = final[name]
        assert s.state == "done"
        if name in moved:
            assert s.restarts == 1 and s.outputs == [str(tmp_path / f"{name}.mkv"), str(tmp_path / f"{name}.r1.mkv")]
            assert _playable(tmp_path / f"{name}.r1.mkv") >= 3
        else:
            assert s.restarts == 0 and s.gaps == 0 and s.outputs == [str(tmp_path / f"{name}.mkv")]
        assert _playable(tmp_path / f"{name}.mkv") >= 3
    assert not list(tmp_path.glob("*.partial"))
    # a node joins with a custom resource: a camera asking for it goes there and nowhere else
    fresh = ray_cluster.cluster.add_node(num_cpus=2, node_ip_address="127.0.0.1", resources={"edge": 2})
    ray_cluster.workers.append(fresh)
    ray_cluster.cluster.wait_for_nodes()
    make_video(tmp_path / "in.mp4", frames=12)
    clip = Camera("edgecam", str(tmp_path / "in.mp4"), str(tmp_path / "edge.mkv"), {"edge": 1})  # its own
    with ClusterRun([clip], RunConfig(scale=2), ray=ray) as job:
        (s,) = job.run(duration=240)
    assert s.state == "done" and s.node.split("/")[1] == fresh.node_id[:8] and s.snapshot.frames_out == 12


def test_cluster_run_hands_each_camera_its_own_resources(tmp_path, monkeypatch):
    """A camera's `resources` in the cameras file reach the placement (the CLI rebuilt each camera
    with its paths resolved and dropped them). The cluster itself is a stand-in here: what is
    tested is what the command hands it."""
    from streamsr import cluster
    from streamsr.cli import main

    seen = {}

    class Run:
        interrupted = False

        def __init__(self, cameras, config, **kwargs):
            seen["cameras"] = cameras

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def run(self, duration=None):
            return []

        def statuses(self):
            return []

    @contextlib.contextmanager
    def connect(address, **kwargs):
        yield types.SimpleNamespace(started=True, address="local", ray=None)

    monkeypatch.setattr(cluster, "ClusterRun", Run)
    monkeypatch.setattr(cluster, "connect", connect)
    cams = tmp_path / "cams.toml"
    cams.write_text('[[camera]]\nname = "gate"\ninput = "in.mp4"\noutput = "out.mkv"\nresources = { cpus = 2, gpus = 0.25 }\n'
                    '[[camera]]\nname = "yard"\ninput = "in2.mp4"\noutput = "out2.mkv"\n')
    r = CliRunner().invoke(main, ["cluster", "run", "--config", str(cams), "-q"])
    assert r.exit_code == 0, r.output
    assert [(c.name, c.resources) for c in seen["cameras"]] == [("gate", {"cpus": 2, "gpus": 0.25}), ("yard", {})]
    assert all(Path(c.input).is_absolute() and Path(c.output).is_absolute() for c in seen["cameras"])
