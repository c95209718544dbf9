"""``streamsr cluster run | status``: the cameras of a cameras file across a Ray cluster."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import sys
from pathlib import Path

import click

from . import EXIT_ERROR, EXIT_INTERRUPTED, main
from .options import build_config, check_report_path, model_options, preset_option, stop_on_signals

__all__ = ["cluster", "cluster_run", "cluster_status", "format_table"]

_ADDRESS = click.option("--address", default="auto", show_default=True,
                        metavar="auto|local|HOST:6379|ray://HOST:10001",
                        help="The Ray cluster: auto = the one running on this machine (run: else a new local one, "
                             "bound to 127.0.0.1); local = always a new local one; a head's GCS address; or a Ray "
                             "Client address.")


@main.group()
def cluster():
    """Many cameras over many machines, on Ray (pip install 'streamsr[cluster]').

    Each camera of a cameras file (the file `streamsr run --config` reads) runs as a Ray actor, in
    its own process, on a node with room for it (CPUs, and a GPU fraction when the network runs
    there). A camera whose process or node is lost is restarted by Ray on a surviving node and
    records on into a new file (gate.mkv, then gate.r1.mkv); the gap is counted. Outputs are
    written on the node that runs the camera: use paths every node has (a shared mount) or stream
    URLs.

    \b
    Examples:
      streamsr cluster run --config cams.toml                        # a local Ray instance
      ray start --head --port 6379                                   # on the head machine
      ray start --address HEAD:6379                                  # on every other machine
      streamsr cluster run --config cams.toml --address HEAD:6379 --inference triton://gpubox:8001
      streamsr cluster status --address HEAD:6379 [--json]
    """


def _triton_url(inference: str) -> str | None:
    if inference == "local":
        return None
    if inference.startswith("triton://"):
        hostport = inference[len("triton://"):].rstrip("/")
        if hostport:
            return hostport if ":" in hostport.rsplit("]", 1)[-1] else f"{hostport}:8001"
    raise click.BadParameter(f"expected local or triton://HOST:PORT, got {inference!r}", param_hint="--inference")


def _resources(pairs: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, sep, amount = pair.partition("=")
        try:
            out[name.strip()] = float(amount)
        except ValueError:
            sep = ""
        if not sep or not name.strip():
            raise click.BadParameter(f"expected NAME=AMOUNT, got {pair!r}", param_hint="--resource")
    return out


def _cell(value) -> str:
    return "-" if value is None else str(value)


def format_table(statuses: list, *, errors: bool = True) -> str:
    """A text table of cameras: node, state, fps, latency, drops, restarts, gaps, frames.

    Args:
        statuses: :class:`~streamsr.cluster.status.CameraStatus` records (credentials masked).
        errors: add a line per camera with an error under the table.
    """
    head = ["CAMERA", "NODE", "STATE", "FPS", "P50 MS", "P95 MS", "DROPS", "RESTARTS", "GAPS", "FRAMES"]
    rows = [head]
    for s in statuses:
        snap = s.snapshot
        lat = snap.latency if snap is not None else {}
        rows.append([s.camera, s.node or "-", s.state, f"{s.fps:.1f}" if snap else "-", _cell(lat.get("p50_ms")),
                     _cell(lat.get("p95_ms")), _cell(snap.dropped if snap else None), str(s.restarts),
                     f"{s.gaps} ({s.gap_seconds:.1f} s)" if s.gaps else "0",
                     _cell(snap.frames_out if snap else None)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines += [f"{s.camera}: {s.error}" for s in statuses if s.error and errors]
    return "\n".join(lines)


@cluster.command("run")
@click.option("--config", "cameras_file", required=True, type=click.Path(dir_okay=False),
              help="Cameras TOML file ([defaults]: any option of `streamsr run`; one [[camera]] per camera).")
@_ADDRESS
@click.option("--inference", default="local", show_default=True, metavar="local|triton://HOST:PORT",
              help="Where the network runs: in each camera's process, or on a Triton tier shared by all.")
@click.option("--cpus-per-camera", type=float, default=None, help="CPUs each camera asks for (default 1).")
@click.option("--gpus-per-camera", type=float, default=None,
              help="GPU fraction each camera asks for (default: 1/--cameras-per-gpu on a cluster with GPUs and "
                   "local inference, else 0).")
@click.option("--cameras-per-gpu", type=int, default=4, show_default=True, help="Cameras sharing one GPU by default.")
@click.option("--resource", "custom", multiple=True, metavar="NAME=AMOUNT",
              help="A custom Ray resource each camera asks for (repeatable): cameras go only to nodes started with "
                   "it, e.g. --resource triton=1 with `ray start --resources '{\"triton\": 64}'` on the nodes "
                   "that run a Triton server (then --inference triton://127.0.0.1:8001 is each node's own).")
@click.option("--max-restarts", type=int, default=3, show_default=True,
              help="How often a camera's lost process is restarted before it is reported failed.")
@preset_option
@model_options
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop each camera after N frames (over its restarts).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, help="Stop every camera after this many seconds.")
@click.option("--metrics-port", default=None, metavar="[HOST:]PORT",
              help="Serve every camera's Prometheus metrics at http://HOST:PORT/metrics (PORT = localhost).")
@click.option("--stats-json", type=click.Path(dir_okay=False), default=None, help="Write the final camera table here.")
@click.option("-q", "--quiet", is_flag=True, help="Only errors.")
def cluster_run(cameras_file, address, inference, cpus_per_camera, gpus_per_camera, cameras_per_gpu, custom,
                max_restarts, preset_name, max_frames, duration, metrics_port, stats_json, quiet, **options):
    """Run every camera of a cameras file as a Ray actor until Ctrl-C (or --duration)."""
    from ..cluster import ClusterRun, cluster_metrics_server, connect, resolve_path
    from ..pipeline.cameras import load_cameras
    from ..pipeline.metrics_http import parse_listen

    check_report_path(stats_json)
    cameras, defaults = load_cameras(cameras_file)
    config = build_config(preset_name, {**options, "triton_url": _triton_url(inference)}, defaults)
    base = Path.cwd()  # camera processes run in Ray's folders: relative names are taken from here
    cameras = [dataclasses.replace(c, input=resolve_path(c.input, base), output=resolve_path(c.output, base))
               for c in cameras]

    def say(line: str) -> None:
        if not quiet:
            click.echo(f"streamsr: {line}", err=True)

    with stop_on_signals(), connect(address) as conn:
        say(f"{'started a local Ray instance at' if conn.started else 'connected to Ray at'} {conn.address}; "
            f"{len(cameras)} camera(s)")
        with ClusterRun(cameras, config, cpus=cpus_per_camera, gpus=gpus_per_camera, max_frames=max_frames,
                        cameras_per_gpu=cameras_per_gpu, resources=_resources(custom), max_restarts=max_restarts,
                        ray=conn.ray, on_event=say) as job, contextlib.ExitStack() as servers:
            if metrics_port:
                server = servers.enter_context(cluster_metrics_server(*parse_listen(metrics_port), job.statuses))
                say(f"metrics at http://{parse_listen(metrics_port)[0]}:{server.port}/metrics")
            statuses = job.run(duration=duration)
    if stats_json:
        Path(stats_json).write_text(json.dumps([s.as_dict() for s in statuses], indent=2) + "\n")
    if not quiet:
        click.echo(format_table(statuses, errors=False), err=True)
    failed = [s for s in statuses if s.state in ("failed", "unplaceable")]
    for s in failed:
        click.echo(f"streamsr: error: {s.camera}: {s.error}", err=True)
    if failed:
        sys.exit(EXIT_ERROR)
    if job.interrupted:
        sys.exit(EXIT_INTERRUPTED)


@cluster.command("status")
@_ADDRESS
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@click.option("--prometheus", is_flag=True, help="Prometheus text instead of a table.")
@click.option("--timeout", type=float, default=10.0, show_default=True, help="Seconds to wait for the cameras' answers.")
def cluster_status(address, as_json, prometheus, timeout):
    """The cameras running in a cluster: node, state, fps, latency, drops, restarts."""
    from ..cluster import collect_status, connect, render_cluster_metrics

    with connect(address, start_local=False) as conn:
        statuses = collect_status(conn.ray, timeout=timeout)
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in statuses], indent=2))
    elif prometheus:
        click.echo(render_cluster_metrics(statuses), nl=False)
    elif not statuses:
        click.echo("no cameras are running in this cluster")
    else:
        click.echo(format_table(statuses))
