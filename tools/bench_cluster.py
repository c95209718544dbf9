"""What the actor layer costs: N live cameras on a local 2-node Ray cluster (``streamsr cluster``)
against the same N cameras in one ``streamsr run --config`` process.

    python tools/bench_cluster.py --output BENCHMARKS.md              # 1, 2, 4, 8 cameras, 30 s each
    python tools/bench_cluster.py --quick --output BENCHMARKS.md      # 1, 2, 4 cameras, 12 s each

Cameras are Debian's GStreamer RTSP server on localhost (tests/rtsp_server.py, one encoding
pipeline per client, 25 fps H.264), read in real-time mode with ``max_latency`` 0.5 s; ESPCN x2 on
the CPU. Per camera: input and output fps, frames dropped, capture-to-encode latency, resident
memory and CPU time per second of video. One process: its peak RSS and CPU time (``wait4``) shared
out over its cameras. Cluster: each actor's own RSS and CPU time (from its status), plus Ray's own
processes (GCS, raylets, idle workers) found by their temporary folder. Numbers on a busy machine
are contended: say so when publishing them.
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import RtspServer
from report import publish

STREAMSR = str(Path(sys.executable).with_name("streamsr"))
PAGE = os.sysconf("SC_PAGE_SIZE")


def _cams_file(folder: Path, urls: list[str], model: str, scale: int) -> Path:
    text = f'[defaults]\nmodel = "{model}"\nscale = {scale}\nmax_latency = 0.5\n'
    for i, url in enumerate(urls):
        text += f'[[camera]]\nname = "cam{i}"\ninput = "{url}"\noutput = "{folder}/cam{i}.mkv"\n'
    path = folder / "cams.toml"
    path.write_text(text)
    return path


def _proc_cpu_rss(pid: int) -> tuple[float, float]:
    """(CPU seconds, RSS MiB) of a process now."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE / 2**20
    return cpu, rss


def _parse_metrics(text: str) -> dict[str, dict]:
    """Per camera: frames in/out, dropped, latency p50/p95 (ms) from Prometheus text."""
    cams: dict[str, dict] = {}
    keys = {"streamsr_frames_in_total": "frames_in", "streamsr_frames_out_total": "frames_out",
            "streamsr_frames_dropped_total": "dropped"}
    for line in text.splitlines():
        if line.startswith("#") or "camera=" not in line:
            continue
        name, rest = line.split("{", 1)
        labels, value = rest.rsplit("} ", 1)
        camera = labels.split('camera="', 1)[1].split('"', 1)[0]
        entry = cams.setdefault(camera, {"frames_in": 0, "frames_out": 0, "dropped": 0, "p50": None, "p95": None})
        if name in keys:
            entry[keys[name]] = float(value)
        elif name == "streamsr_latency_seconds" and 'quantile="0.5"' in labels:
            entry["p50"] = float(value) * 1000
        elif name == "streamsr_latency_seconds" and 'quantile="0.95"' in labels:
            entry["p95"] = float(value) * 1000
    return cams


def _row(mode: str, n: int, a: dict, b: dict, dt: float, cpu: float, rss: float, start_s: float, extra: str) -> str:
    """One table row from two samples ``a``, ``b`` of the cameras ``dt`` seconds apart."""
    delta = {k: sum(b[c][k] - a[c][k] for c in b) for k in ("frames_in", "frames_out", "dropped")}
    mean = (lambda key: f"{sum(v) / len(v):.0f}" if (v := [b[c][key] for c in b if b[c][key] is not None]) else "-")
    drop = 100 * delta["dropped"] / delta["frames_in"] if delta["frames_in"] else 0.0
    return (f"| {n} | {mode} | {delta['frames_in'] / n / dt:.1f} | {delta['frames_out'] / n / dt:.1f} | {drop:.0f}% | "
            f"{mean('p50')} | {mean('p95')} | {rss / n:.0f} | {cpu / n / dt:.2f} | {start_s:.1f} | {extra} |")


def _until(condition, what: str, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    raise RuntimeError(f"timed out waiting for {what}")


def one_process(urls: list[str], seconds: float, warmup: float, model: str, scale: int) -> str:
    """The cameras in one `streamsr run --config` process, sampled through its --metrics-port."""
    import urllib.request

    from conftest import free_port

    port = free_port()
    with tempfile.TemporaryDirectory(prefix="benchc") as tmp:
        folder = Path(tmp)
        cams = _cams_file(folder, urls, model, scale)
        t0 = time.monotonic()
        proc = subprocess.Popen([STREAMSR, "run", "--config", str(cams), "-q", "--metrics-port", str(port)])

        def sample():
            try:
                text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
            except OSError:
                return None
            return _parse_metrics(text)

        try:
            _until(lambda: (m := sample()) and len(m) == len(urls) and all(c["frames_out"] > 0 for c in m.values()),
                   "every camera to record")
            start_s = time.monotonic() - t0
            time.sleep(warmup)
            a, (cpu_a, _), ta = sample(), _proc_cpu_rss(proc.pid), time.monotonic()
            time.sleep(seconds)
            b, (cpu_b, rss), tb = sample(), _proc_cpu_rss(proc.pid), time.monotonic()
        finally:
            proc.send_signal(signal.SIGTERM)  # as Ctrl-C; SIGINT is ignored when started in the background
            proc.wait(timeout=120)
    return _row("one process", len(urls), a, b, tb - ta, cpu_b - cpu_a, rss, start_s, f"process RSS {rss:.0f} MiB")


def _ray_processes_mb(marker: str, exclude: set[int]) -> float:
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit() or int(proc.name) in exclude or int(proc.name) == os.getpid():
            continue
        try:
            if marker.encode() in (proc / "cmdline").read_bytes():
                total += int((proc / "statm").read_text().split()[1]) * PAGE
        except (OSError, ValueError, IndexError):
            continue
    return total / 2**20


def cluster(urls: list[str], seconds: float, warmup: float, model: str, scale: int, base: Path) -> str:
    """The cameras as actors on a head + one worker node of Ray on this machine."""
    import ray
    from ray.cluster_utils import Cluster

    from streamsr import RunConfig
    from streamsr.cluster import ClusterRun
    from streamsr.pipeline.cameras import Camera

    n = len(urls)
    c = Cluster(initialize_head=True, head_node_args={"num_cpus": n, "node_ip_address": "127.0.0.1",
                                                     "include_dashboard": False})
    c.add_node(num_cpus=n, node_ip_address="127.0.0.1")
    c.wait_for_nodes()
    ray.init(address=c.address, logging_level="WARNING", log_to_driver=False)

    def sample(job):
        statuses = job.poll(timeout=5.0)
        cams = {s.camera: {"frames_in": s.snapshot.frames_in, "frames_out": s.snapshot.frames_out,
                           "dropped": s.snapshot.dropped, "p50": s.snapshot.latency["p50_ms"],
                           "p95": s.snapshot.latency["p95_ms"]} for s in statuses if s.snapshot is not None}
        return cams, sum(s.cpu_seconds or 0 for s in statuses), sum(s.rss_mb or 0 for s in statuses), statuses

    try:
        with tempfile.TemporaryDirectory(prefix="benchc") as tmp:
            cameras = [Camera(f"cam{i}", u, f"{tmp}/cam{i}.mkv") for i, u in enumerate(urls)]
            config = RunConfig(model=model, scale=scale, max_latency=0.5)
            t0 = time.monotonic()
            with ClusterRun(cameras, config, ray=ray) as job:
                _until(lambda: all(s.state == "running" and s.snapshot.frames_out > 0 for s in job.poll(timeout=0.5)),
                       "every camera to record")
                start_s = time.monotonic() - t0
                time.sleep(warmup)
                (a, cpu_a, _, _), ta = sample(job), time.monotonic()
                time.sleep(seconds)
                (b, cpu_b, rss, statuses), tb = sample(job), time.monotonic()
                nodes = len({s.node for s in statuses})
                ray_mb = _ray_processes_mb(str(base), {s.pid for s in statuses if s.pid})
                job.run(duration=0)  # stop and drain
    finally:
        ray.shutdown()
        c.shutdown()
    return _row("cluster", n, a, b, tb - ta, cpu_b - cpu_a, rss, start_s,
                f"actors on {nodes} node(s); Ray's own processes {ray_mb:.0f} MiB")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cameras", default="1,2,4,8", help="Camera counts to measure (comma-separated).")
    ap.add_argument("--seconds", type=float, default=30.0, help="Measured recording time per row.")
    ap.add_argument("--warmup", type=float, default=3.0, help="Seconds of recording before measuring.")
    ap.add_argument("--quick", action="store_true", help="1, 2, 4 cameras, 12 s each.")
    ap.add_argument("--size", default="320x240", help="The cameras' picture size.")
    ap.add_argument("--model", default="espcn")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--note", default="", help="A line said under the heading (e.g. that the machine was busy).")
    ap.add_argument("--output", type=Path, help="Append the Markdown here (BENCHMARKS.md).")
    args = ap.parse_args()
    counts = [1, 2, 4] if args.quick else [int(v) for v in args.cameras.split(",")]
    seconds = 12.0 if args.quick else args.seconds
    base = Path(tempfile.mkdtemp(prefix="benchray", dir="/tmp"))
    for sub in ("t", "h"):
        (base / sub).mkdir()
    os.environ.update({"RAY_TMPDIR": str(base / "t"), "HOME": str(base / "h"), "RAY_AUTH_MODE": "disabled",
                       "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"})
    os.environ.pop("RAY_ADDRESS", None)
    server = RtspServer(size=args.size).start()
    rows = []
    try:
        for n in counts:
            urls = [server.url()] * n
            rows.append(one_process(urls, seconds, args.warmup, args.model, args.scale))
            rows.append(cluster(urls, seconds, args.warmup, args.model, args.scale, base))
            print(rows[-2], rows[-1], sep="\n", flush=True)
    finally:
        server.stop()
    text = (f"\n### Cameras on a local 2-node Ray cluster vs one process ({args.model} x{args.scale}, "
            f"{args.size} @ 25 fps RTSP, {seconds:g} s{', quick' if args.quick else ''})\n\n"
            f"`python tools/bench_cluster.py{' --quick' if args.quick else ''}`: {platform.machine()}, "
            f"{os.cpu_count()} cores. {args.note}\n\n"
            "Steady state, after every camera records and a warm-up: per camera, fps in/out and frames dropped "
            "(real-time policy) over the window, capture-to-encode latency (mean of the cameras' p50/p95), "
            "resident memory (one process: its RSS shared out; cluster: the actors' own), CPU seconds per second "
            "(one process: the whole process's; cluster: the actors' own, Ray's daemons not included); start = "
            "seconds from launch to every camera recording.\n\n"
            "| cameras | where | fps in | fps out | dropped | p50 ms | p95 ms | RSS MiB/camera | CPU s/s per camera "
            "| start s | notes |\n|---|---|---|---|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    publish(text, args.output)


if __name__ == "__main__":
    main()
