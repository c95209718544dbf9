"""The Triton backend and model repository, against the real tritonserver bundled in nvidia-pytriton.

The server runs as a subprocess on free loopback ports with a repository written by
``streamsr triton export-repo --platform python``. Tests wait on conditions with generous
deadlines and assert counts, never durations. Skipped at collection only where that wheel cannot be
installed (it needs x86-64 Linux with glibc >= 2.35); CI installs it (``pip install --no-deps
nvidia-pytriton``) with ``tritonclient[grpc,http]``.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import shutil
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner
from media import make_video, read_video

from streamsr.cli import main
from streamsr.config import RunConfig
from streamsr.errors import BackendUnavailableError, ConfigError
from streamsr.io.sink import SinkConfig
from streamsr.metrics import psnr
from streamsr.models import build_model, get_model


def _installable() -> bool:
    libc, version = platform.libc_ver()
    glibc = tuple(int(v) for v in version.split(".")[:2]) if libc == "glibc" and version else (0, 0)
    return sys.platform == "linux" and platform.machine() == "x86_64" and glibc >= (2, 35) \
        and (3, 8) <= sys.version_info[:2] <= (3, 13)


pytestmark = pytest.mark.skipif(not _installable(), reason="nvidia-pytriton's tritonserver needs x86-64 Linux, "
                                                           "glibc >= 2.35 and Python 3.8-3.13")

FFV1 = SinkConfig(codec="ffv1")
BATCHED = "espcn_batched"  # espcn_x2 with a long batching window: concurrent requests are joined for sure
FIXED = "espcn_fixed"  # espcn_x2 declared for 16x16 frames only
ANON = "espcn_anon"  # espcn_x2 without the parameter naming the network


def wait_for(condition, what: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _random_weights(name: str, factor: int | None, path: Path) -> Path:
    from safetensors.torch import save_file

    model = build_model(name, factor, pretrained=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


@pytest.fixture(scope="session")
def repo(tmp_path_factory) -> dict:
    """A python-platform repository: espcn_x2, udvd_x2 (degradation maps), lte (query tables) and
    irn_x2-up (a latent), the last two with random weights (returned by name)."""
    from streamsr.backends.triton_repo import export_repository

    root = tmp_path_factory.mktemp("triton")
    path = root / "repo"
    runner = CliRunner()
    for args in (["--model", "espcn", "--scale", "2"], ["--model", "udvd", "--scale", "2"]):
        result = runner.invoke(main, ["triton", "export-repo", *args, "--platform", "python", "--max-batch", "8",
                                      "--instances", "1", "-o", str(path)])
        assert result.exit_code == 0, result.output
    weights = {"lte": _random_weights("lte", None, root / "lte.safetensors"),
               "irn": _random_weights("irn", 2, root / "irn.safetensors")}
    export_repository(get_model("lte").variant(None), path, platform="python", weights=str(weights["lte"]))
    export_repository(get_model("irn").variant(2, "up"), path, platform="python", weights=str(weights["irn"]))
    espcn = get_model("espcn").variant(2)
    export_repository(espcn, path, platform="python", name=BATCHED, max_queue_delay_us=200_000)
    shutil.copytree(path / "espcn_x2", path / FIXED)
    config = (path / FIXED / "config.pbtxt").read_text().replace('"espcn_x2"', f'"{FIXED}"', 1)
    (path / FIXED / "config.pbtxt").write_text(config.replace("dims: [3, -1, -1] }", "dims: [3, 16, 16] }", 1))
    shutil.copytree(path / "espcn_x2", path / ANON)
    lines = (path / ANON / "config.pbtxt").read_text().replace('"espcn_x2"', f'"{ANON}"', 1).splitlines()
    (path / ANON / "config.pbtxt").write_text("\n".join(x for x in lines if "streamsr_variant" not in x) + "\n")
    return {"path": path, "weights": weights}


@pytest.fixture(scope="session")
def server(repo):
    from streamsr.backends.triton_server import TritonServer

    s = TritonServer(repo["path"])
    s.start()
    yield s
    s.close()


@pytest.fixture
def live_server(server):
    """The session's server, started again if a test left it down."""
    yield server
    if not server.ready():
        server.stop()
        server.start()


def _triton(url: str, **options) -> dict:
    return {"triton": {"url": url, **options}}


def _failures(handle) -> int:
    """Failed requests of the remote backend a running job uses, as its snapshot reports them."""
    return sum(r["failures"] for r in handle.snapshot().remote)


def _frames_match(a: Path, b: Path, db: float = 45.0) -> None:
    _, x, _ = read_video(a)
    _, y, _ = read_video(b)
    assert len(x) == len(y) > 0
    for p, q in zip(x, y, strict=True):
        assert np.array_equal(p, q) or psnr(p, q) > db


# -- repository --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("platform_", ["onnxruntime_onnx", "tensorrt_plan", "python"])
def test_config_pbtxt_parses_into_triton_model_config(platform_):
    from streamsr.backends.triton_repo import model_config_text, parse_model_config

    variant = get_model("udvd").variant(2)
    config = parse_model_config(model_config_text(variant, platform=platform_, max_batch=8, instances=2))
    assert config.name == "udvd_x2" and config.max_batch_size == 8
    assert [(i.name, list(i.dims)) for i in config.input] == [
        ("image", [3, -1, -1]), ("kernel_code", [15, -1, -1]), ("noise_level", [1, -1, -1])]
    assert [(o.name, list(o.dims)) for o in config.output] == [("output", [3, -1, -1])]
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert config.instance_group[0].count == 2
    assert (config.backend == "python") == (platform_ == "python")
    assert config.parameters["streamsr_variant"].string_value == "udvd_x2"
    lte = parse_model_config(model_config_text(get_model("lte").variant(None), platform=platform_))
    assert {i.name: list(i.dims) for i in lte.input} == {"image": [3, -1, -1], "rows": [15, -1, 1], "cols": [15, 1, -1]}


def test_export_repo_onnx_platform_writes_graph_and_config(tmp_path):
    from streamsr.backends.triton_repo import parse_model_config

    result = CliRunner().invoke(main, ["triton", "export-repo", "--model", "espcn", "--scale", "2", "--platform",
                                       "onnxruntime_onnx", "--max-batch", "4", "--instances", "2", "-o", str(tmp_path)])
    assert result.exit_code == 0, result.output
    config = parse_model_config((tmp_path / "espcn_x2" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx" and config.instance_group[0].count == 2
    assert (tmp_path / "espcn_x2" / "1" / "model.onnx").stat().st_size > 0


def test_bad_config_text_is_an_export_error():
    from streamsr.backends.triton_repo import parse_model_config
    from streamsr.errors import ExportError

    with pytest.raises(ExportError, match="ModelConfig"):
        parse_model_config('name: "x" max_batch_size: eight')


def test_serve_command_serves_a_repository_until_sigterm(repo, tmp_path):
    import signal
    import subprocess
    import urllib.request

    from streamsr.backends.triton_server import free_port

    small = tmp_path / "repo"
    shutil.copytree(repo["path"] / "espcn_x2", small / "espcn_x2")
    ports = [free_port() for _ in range(3)]
    cmd = [sys.executable, "-m", "streamsr.cli", "triton", "serve", str(small), "--grpc-port", str(ports[0]),
           "--http-port", str(ports[1]), "--metrics-port", str(ports[2])]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), name="test-stderr", daemon=True)
    reader.start()
    try:
        wait_for(lambda: any("serving" in line for line in lines) or proc.poll() is not None, "streamsr triton serve")
        assert any(f"gRPC 127.0.0.1:{ports[0]}" in line for line in lines), lines
        with urllib.request.urlopen(f"http://127.0.0.1:{ports[1]}/v2/models/espcn_x2/ready", timeout=10) as r:
            assert r.status == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        reader.join(timeout=10)
    assert proc.returncode == 0, lines


def test_triton_options_become_the_backends_config():
    from streamsr.cli.options import build_config

    config = build_config(None, {"triton_url": "gpubox:8001", "triton_shm": "off", "triton_timeout": 5.0,
                                 "backend_option": ("triton.max_in_flight=2",)})
    assert config.backend == "triton"
    assert config.backend_options["triton"] == {"url": "gpubox:8001", "shm": "off", "timeout": 5.0, "max_in_flight": 2}


# -- the remote backend -----------------------------------------------------------------------------------

@pytest.mark.parametrize("model,scale,part", [("espcn", 2, None), ("udvd", 2, None), ("lte", 2.5, None),
                                              ("irn", 2, "up")])
def test_pipeline_through_triton_equals_local_onnxruntime(repo, server, tmp_path, model, scale, part):
    from streamsr.pipeline import upscale_video

    clip = make_video(tmp_path / "in.mkv", frames=4, size=(40, 32), codec="ffv1")
    weights = repo["weights"].get(model)
    base = RunConfig(model=model, scale=scale, part=part, sink=FFV1, batch_size=2)
    local = dataclasses.replace(base, backend="onnxruntime", weights=weights and str(weights))
    remote = dataclasses.replace(base, backend="triton", backend_options=_triton(server.grpc_url))
    upscale_video(clip, tmp_path / "local.mkv", local)
    stats = upscale_video(clip, tmp_path / "remote.mkv", remote)
    _frames_match(tmp_path / "local.mkv", tmp_path / "remote.mkv")
    assert stats.extra["backend"] == "triton" and [r["requests"] for r in stats.remote] == [4]


def test_tile_reuse_through_triton_sends_only_changed_tiles(server, tmp_path):
    """Tile reuse on a remote tier: the changed tiles go to the server in batches and the frames are
    those of the same reuse run on local ONNX Runtime."""
    from streamsr.pipeline import upscale_video
    from streamsr.synth import StaticScene, texture_pattern, write_clip

    scene = StaticScene(texture_pattern(0, 240, 320), scale=2, objects=1, noise=2.0, speed=4.0)
    clip = write_clip(tmp_path / "static.mkv", frames=40, size=(160, 120), codec="ffv1", pix_fmt="yuv444p",
                      image=lambda i, h, w: scene.lr(i))
    base = RunConfig(model="espcn", scale=2, sink=FFV1, reuse="on")
    local = upscale_video(clip, tmp_path / "local.mkv", dataclasses.replace(base, backend="onnxruntime"))
    remote = upscale_video(clip, tmp_path / "remote.mkv", dataclasses.replace(
        base, backend="triton", backend_options=_triton(server.grpc_url)))
    _frames_match(tmp_path / "local.mkv", tmp_path / "remote.mkv")
    assert remote.extra["reuse"] == local.extra["reuse"] and remote.extra["reuse"]["network_pixels_saved"] > 1.5
    # one request per whole frame, and per changed tile (of 20; the server's batcher joins them)
    r = remote.extra["reuse"]
    tiles = (r["recomputed_mean"] * 40 - r["whole_frames"]) * 20
    assert remote.remote[0]["requests"] == pytest.approx(r["whole_frames"] + tiles, abs=1)
    assert tiles < 0.6 * 40 * 20


def test_cli_run_with_triton_url_writes_remote_stats(server, small_clip, tmp_path):
    stats_file = tmp_path / "stats.json"
    result = CliRunner().invoke(main, ["run", str(small_clip), "-o", str(tmp_path / "o.mkv"), "--codec", "ffv1",
                                       "--triton-url", server.grpc_url, "--stats-json", str(stats_file), "-q"])
    assert result.exit_code == 0, result.output
    remote = json.loads(stats_file.read_text())["remote"]
    assert len(remote) == 1 and remote[0]["model"] == "espcn_x2" and remote[0]["requests"] == 12 and remote[0]["failures"] == 0
    # the server's own counters (it may count a request just after answering it: not exact here)
    assert remote[0]["server"]["inferences"] > 0 and remote[0]["server"]["queue_ms"] is not None
    assert remote[0]["request_latency"]["frames"] == 12


def test_a_run_reports_only_the_backend_it_ran_on(server, small_clip, tmp_path):
    from streamsr.backends import create_backend
    from streamsr.pipeline import RunHandle, upscale_video

    other = create_backend("triton", get_model("espcn").variant(2), device="cpu",
                           options=_triton(server.grpc_url, model=BATCHED))
    try:
        other.infer(np.zeros((1, 3, 16, 16), np.float32))  # another client of the process, open meanwhile
        handles = {"local": RunHandle("local"), "remote": RunHandle("remote")}
        local = upscale_video(small_clip, tmp_path / "l.mkv", RunConfig(backend="onnxruntime", sink=FFV1),
                              handle=handles["local"])
        remote = upscale_video(small_clip, tmp_path / "r.mkv", handle=handles["remote"],
                               config=RunConfig(backend="triton", sink=FFV1, backend_options=_triton(server.grpc_url)))
    finally:
        other.close()
    assert local.remote == [] and "remote" not in local.as_dict() and handles["local"].snapshot().remote == ()
    assert [(r["model"], r["requests"]) for r in remote.remote] == [("espcn_x2", 12)]
    assert [(r["model"], r["requests"]) for r in handles["remote"].snapshot().remote] == [("espcn_x2", 12)]
    assert other.remote_stats.requests == 1


def test_http_protocol_gives_the_same_frames(server):
    from streamsr.backends import create_backend

    variant = get_model("espcn").variant(2)
    x = np.random.default_rng(0).random((3, 3, 24, 32), dtype=np.float32)
    local = create_backend("onnxruntime", variant, device="cpu").infer(x)
    backend = create_backend("triton", variant, device="cpu",
                             options=_triton(server.http_url, protocol="http", shm="off"))
    try:
        np.testing.assert_allclose(backend.infer(x), local, atol=1e-5)
    finally:
        backend.close()


def test_a_region_the_server_still_holds_is_unregistered_again(monkeypatch, caplog):
    """Triton refuses to unregister a region a request it has answered still holds ("currently in
    use"); close asks again (no wall clock: the waits are recorded), where it used to give up
    silently and leave the region mapped on the server."""
    from streamsr.backends import triton_client
    from streamsr.backends.triton_client import SharedRegion

    class Conn:
        url = "localhost:8001"

        def __init__(self, refusals):
            self.refusals, self.calls = refusals, []

        def call(self, method, name):
            self.calls.append((method, name))
            if len(self.calls) <= self.refusals:
                raise RuntimeError(f"[StatusCode.INTERNAL] Cannot unregister shared memory region '{name}', "
                                   "it is currently in use.")

    waits = []
    monkeypatch.setattr(triton_client, "time", SimpleNamespace(sleep=waits.append))  # this module's waits only
    for refusals, calls in ((0, 1), (3, 4), (99, triton_client._UNREGISTER_TRIES)):
        region = object.__new__(SharedRegion)
        region.conn, region.kind, region.name = Conn(refusals), "system", "streamsr_1_2_output"
        waits.clear()
        with caplog.at_level("WARNING", logger="streamsr"):
            caplog.clear()
            region._unregister()
        assert region.conn.calls == [("unregister_system_shared_memory", "streamsr_1_2_output")] * calls
        assert len(waits) == min(refusals, calls - 1) and all(0 < w <= 0.5 for w in waits)
        assert ("still holds shared memory" in caplog.text) == (refusals >= calls)

    class Gone(Conn):
        def call(self, method, name):
            self.calls.append((method, name))
            raise RuntimeError("Unable to find system shared memory region: 'streamsr_1_2_output'")

    region = object.__new__(SharedRegion)
    region.conn, region.kind, region.name = Gone(0), "system", "streamsr_1_2_output"
    region._unregister()  # not registered there: nothing to wait for
    assert len(region.conn.calls) == 1

    # registering again (after a failed request) finds it still held: still registered, nothing to
    # wait for and nothing to register
    region = object.__new__(SharedRegion)
    region.conn, region.kind, region.name = Conn(1), "system", "streamsr_1_2_output"
    waits.clear()
    region.register()
    assert region.conn.calls == [("unregister_system_shared_memory", "streamsr_1_2_output")] and not waits


def test_shared_memory_used_when_local(server):
    import tritonclient.grpc as grpcclient

    from streamsr.backends import create_backend

    variant = get_model("espcn").variant(2)
    x = np.random.default_rng(1).random((2, 3, 24, 32), dtype=np.float32)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    ours = lambda: [n for n in client.get_system_shared_memory_status(as_json=True).get("regions", {})
                    if n.startswith("streamsr_")]
    try:
        results = {}
        for shm in ("auto", "off"):
            backend = create_backend("triton", variant, device="cpu", options=_triton(server.grpc_url, shm=shm))
            try:
                results[shm] = backend.infer(x)
                assert (backend.shm == "system") == (shm == "auto")
                assert bool(ours()) == (shm == "auto")
            finally:
                backend.close()
            assert not ours()  # released at close
        np.testing.assert_array_equal(results["auto"], results["off"])
    finally:
        client.close()


def test_metrics_endpoint_reports_requests_and_server_queue(server, small_clip, tmp_path):
    from streamsr.backends import create_backend
    from streamsr.pipeline import RunHandle, upscale_video
    from streamsr.pipeline.metrics_http import render_metrics

    backend = create_backend("triton", get_model("espcn").variant(2), device="cpu", options=_triton(server.grpc_url))
    handle = RunHandle("cam")
    try:  # a backend the caller keeps open: the job's snapshots keep polling the server
        upscale_video(small_clip, tmp_path / "o.mkv", RunConfig(sink=FFV1), backend=backend, handle=handle)
        wait_for(lambda: handle.snapshot().remote[0]["server"].get("inferences") == 12, "the server's count")
        snapshots = [handle.snapshot(), handle.snapshot()]  # two cameras sharing one client: one series
        text = render_metrics(snapshots)
    finally:
        backend.close()
    label = f'url="{server.grpc_url}",model="espcn_x2"'
    assert text.count(f"streamsr_remote_requests_total{{{label}}} 12\n") == 1
    queue_s = snapshots[-1].remote[0]["server"]["queue_ms"] / 1000
    assert text.count(f"streamsr_remote_server_queue_seconds{{{label}}} {queue_s}\n") == 1
    assert f'streamsr_remote_request_seconds{{{label},quantile="0.95"}}' in text
    assert "streamsr_remote" not in render_metrics([RunHandle("local").snapshot()])


def test_remote_stats_poll_the_server_in_the_background():
    """Snapshots are taken on the encoder's thread (the progress line): reading the server's view
    never waits for the server; a run's final stats and close do."""
    from streamsr.pipeline.stats import RemoteStats

    calls, answer = [], threading.Event()

    def server() -> dict:
        answer.wait(60)
        calls.append(1)
        return {"executions": len(calls)}

    stats = RemoteStats("gpubox:8001", "espcn_x2", server=server)
    t0 = time.monotonic()
    assert stats.summary()["server"] == {} and stats.server_view() == {}  # a poll is under way, nobody waits
    assert time.monotonic() - t0 < 5 and not calls
    answer.set()
    wait_for(lambda: stats.server_view().get("executions", 0) >= 1, "the background poll")
    fresh = stats.summary(fresh=True)["server"]["executions"]
    assert fresh >= 2 and fresh == len(calls)
    stats.close()  # a last poll
    last = len(calls)
    assert last > fresh and stats.server_view() == {"executions": last}
    time.sleep(1.1)
    assert stats.server_view() == stats.server_view(fresh=True) == {"executions": last} and len(calls) == last


def test_cameras_share_one_client_and_the_server_batches_them(server, tmp_path):
    import tritonclient.grpc as grpcclient

    from streamsr.backends import triton_client
    from streamsr.pipeline.cameras import Camera, run_cameras

    def executions():
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            m = client.get_inference_statistics(BATCHED, as_json=True)["model_stats"][0]
            return int(m.get("execution_count", 0)), int(m.get("inference_count", 0))
        finally:
            client.close()

    clips = [make_video(tmp_path / f"c{i}.mkv", frames=12, size=(32, 24), codec="ffv1") for i in range(4)]
    cams = [Camera(f"cam{i}", str(c), str(tmp_path / f"o{i}.mkv")) for i, c in enumerate(clips)]
    acquired, acquire = [], triton_client.Connection.acquire.__func__

    def counting(cls, protocol, url):
        acquired.append(acquire(cls, protocol, url))
        return acquired[-1]

    config = RunConfig(backend="triton", sink=FFV1, backend_options=_triton(server.grpc_url, model=BATCHED))
    before = executions()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(triton_client.Connection, "acquire", classmethod(counting))
        results = run_cameras(cams, config)
    assert all(r.error is None and r.stats.frames_out == 12 for r in results)
    wait_for(lambda: executions()[1] - before[1] == 48, "the server to count every frame")
    runs, frames = (a - b for a, b in zip(executions(), before, strict=True))
    assert runs < frames  # Triton joined requests of several cameras
    assert len({id(c) for c in acquired}) == 1


# -- faults -------------------------------------------------------------------------------------------------

def test_wrong_model_name_is_one_clear_line(server, small_clip, tmp_path):
    result = CliRunner().invoke(main, ["run", str(small_clip), "-o", str(tmp_path / "o.mkv"), "--triton-url",
                                       server.grpc_url, "--triton-model", "nope"])
    assert result.exit_code == 1
    line = result.output.strip()
    assert "\n" not in line and "no model 'nope'" in line and "espcn_x2" in line and "udvd_x2" in line


def test_server_not_running_is_backend_unavailable():
    from streamsr.backends import create_backend
    from streamsr.backends.triton_server import free_port

    with pytest.raises(BackendUnavailableError, match="no Triton server answers"):
        create_backend("triton", get_model("espcn").variant(2), device="cpu",
                       options=_triton(f"127.0.0.1:{free_port()}"))


@pytest.mark.parametrize("variant,model,message", [
    (("udvd", 2), "espcn_x2", "udvd_x2 sends image, kernel_code, noise_level"),
    (("espcn", 4), "espcn_x2", "is espcn_x2, and this run needs espcn_x4"),
    (("espcn", 2), "udvd_x2", "takes inputs image, kernel_code, noise_level; espcn_x2 sends image"),
])
def test_a_model_that_does_not_fit_is_refused_at_start(server, variant, model, message):
    from streamsr.backends import create_backend

    with pytest.raises(ConfigError, match=message):
        create_backend("triton", get_model(variant[0]).variant(variant[1]), device="cpu",
                       options=_triton(server.grpc_url, model=model))


def test_another_networks_output_size_is_a_config_error(server):
    from streamsr.backends import create_backend

    backend = create_backend("triton", get_model("espcn").variant(4), device="cpu",
                             options=_triton(server.grpc_url, model=ANON, shm="off"))
    try:
        with pytest.raises(ConfigError, match="answered .* espcn_x4 gives"):
            backend.infer(np.zeros((1, 3, 16, 16), np.float32))
    finally:
        backend.close()


def test_input_shapes_the_server_refuses_are_a_config_error(server):
    from streamsr.backends import create_backend

    backend = create_backend("triton", get_model("espcn").variant(2), device="cpu",
                             options=_triton(server.grpc_url, model=FIXED, shm="off"))
    try:
        assert backend.infer(np.zeros((1, 3, 16, 16), np.float32)).shape == (1, 3, 32, 32)
        with pytest.raises(ConfigError, match="refused"):
            backend.infer(np.zeros((1, 3, 24, 32), np.float32))
    finally:
        backend.close()


def _run_in_thread(target):
    box: dict = {}

    def work():
        try:
            box["stats"] = target()
        except BaseException as exc:  # noqa: BLE001 -- re-raised by the test
            box["error"] = exc

    thread = threading.Thread(target=work, name="test-run", daemon=True)
    thread.start()
    return thread, box


def test_server_killed_mid_file_waits_and_resumes(live_server, tmp_path):
    from streamsr.pipeline import RunHandle, upscale_video

    clip = make_video(tmp_path / "in.mkv", frames=100, size=(32, 24), codec="ffv1")
    killed = threading.Event()

    def progress(handle):
        if handle.frames_out == 5 and not killed.is_set():
            live_server.stop(kill=True)  # a crash, between two frames of the run
            killed.set()

    config = RunConfig(sink=FFV1, backend="triton", backend_options=_triton(live_server.grpc_url, timeout=300.0))
    handle = RunHandle("file")
    thread, box = _run_in_thread(lambda: upscale_video(clip, tmp_path / "o.mkv", config, progress=progress,
                                                       handle=handle))
    try:
        wait_for(killed.is_set, "the kill")
        wait_for(lambda: _failures(handle) > 0, "a failed request")
    finally:
        if killed.is_set():
            live_server.start()  # the run resumes (and ends, should a wait above have failed)
        thread.join(timeout=600)
    assert "error" not in box, box.get("error")
    stats = box["stats"]
    assert stats.frames_out == 100 and stats.dropped == 0  # file mode: every frame, late
    assert len(stats.remote) == 1 and stats.remote[0]["failures"] > 0 and stats.remote[0]["retried_frames"] > 0


def test_server_killed_mid_live_run_drops_then_output_resumes(live_server, tmp_path):
    from streamsr.pipeline import RunHandle, upscale_video

    clip = make_video(tmp_path / "long.mkv", frames=1500, size=(32, 24), codec="ffv1")  # 60 s at 25 fps
    handle, stop = RunHandle("cam"), threading.Event()
    config = RunConfig(sink=FFV1, backend="triton", realtime=True,
                       backend_options=_triton(live_server.grpc_url, timeout=300.0))
    thread, box = _run_in_thread(lambda: upscale_video(clip, tmp_path / "o.mkv", config, handle=handle,
                                                       stop_event=stop))
    try:
        wait_for(lambda: handle.frames_out >= 10, "frames before the kill")
        live_server.stop(kill=True)
        wait_for(lambda: _failures(handle) > 0, "a failed request")
        live_server.start()
        resumed = handle.frames_out
        wait_for(lambda: handle.frames_out > resumed + 10, "output after the restart")
    finally:
        stop.set()
        thread.join(timeout=600)
    assert "error" not in box, box.get("error")
    stats = box["stats"]
    assert stats.dropped > 0  # frames that arrived while the server was away
    assert len(stats.remote) == 1 and stats.remote[0]["failures"] > 0


def test_a_server_away_too_long_fails_a_file_run_with_one_line(live_server, tmp_path):
    from streamsr.backends import create_backend

    backend = create_backend("triton", get_model("espcn").variant(2), device="cpu",
                             options=_triton(live_server.grpc_url, timeout=1.0))
    try:
        live_server.stop(kill=True)
        with pytest.raises(BackendUnavailableError, match="did not answer for 1 s"):
            backend.infer(np.zeros((1, 3, 16, 16), np.float32))
        assert backend.remote_stats.failures > 0
    finally:
        backend.close()


@pytest.mark.gpu
def test_cuda_shared_memory(server):
    from streamsr.backends import create_backend

    variant = get_model("espcn").variant(2)
    x = np.random.default_rng(2).random((2, 3, 24, 32), dtype=np.float32)
    backend = create_backend("triton", variant, device="cpu", options=_triton(server.grpc_url, shm="cuda"))
    try:
        np.testing.assert_allclose(backend.infer(x), create_backend("onnxruntime", variant, device="cpu").infer(x),
                                   atol=1e-5)
    finally:
        backend.close()
