"""``streamsr run``: files, pipes, live streams and many cameras."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from pathlib import Path

import click

from ..errors import StreamSRError
from ..urls import mask_credentials
from . import EXIT_ERROR, EXIT_INTERRUPTED, main
from .options import (
    build_config,
    check_report_path,
    degradation_options,
    inference_options,
    model_options,
    preset_option,
    stop_on_signals,
)

__all__ = ["run"]


def _reuse(s) -> str:
    """Tile reuse in a progress line: the share of tiles recomputed (mean, p95 over recent frames)."""
    r = s.reuse
    if not r or not r["on"] or r["recomputed_mean"] is None:
        return ""
    return f" tiles {r['recomputed_mean']:.0%} (p95 {r['recomputed_p95']:.0%})"


class _Progress:
    """A one-line progress display on stderr, only on a terminal and never with --quiet. Reads
    the runs' snapshots."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.last = 0.0
        self.handles: list = []

    def __call__(self, handle) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.25:
            return
        self.last = now
        line = " | ".join(self._line(h.snapshot()) for h in (self.handles or [handle]))
        click.echo("\r" + line + "\033[K", err=True, nl=False)

    @staticmethod
    def _line(s) -> str:
        if s.total:
            frac = min(s.frames_out / s.total, 1.0)
            eta = (s.total - s.frames_out) / s.fps if s.fps > 0 else 0
            return (f"[{'#' * int(frac * 24):<24}] {s.frames_out}/{s.total} frames {s.fps:5.1f} fps "
                    f"ETA {eta:4.0f}s{_reuse(s)}")
        p95 = s.latency["p95_ms"]
        live = f" dropped {s.dropped} p95 {p95:.0f}ms" if p95 is not None else ""
        again = f" reconnects {s.reconnects}" if s.reconnects else ""
        state = f" [{s.state}]" if s.state not in ("running", "done") else ""
        return f"{s.name[:24]}: {s.frames_out} frames {s.fps:5.1f} fps{live}{again}{_reuse(s)}{state}"

    def close(self) -> None:
        if self.enabled and self.last:
            click.echo("", err=True)


@main.command()
@click.argument("inputs", metavar="INPUT...", nargs=-1)
@click.option("-o", "--output", "outputs", multiple=True,
              help="Output: file (container from extension), - (MPEG-TS on stdout), rtsp://, rtmp://, srt://, "
              "udp:// push, or dir/index.m3u8 (HLS). Once per input.")
@click.option("--config", "cameras_file", type=click.Path(dir_okay=False), default=None,
              help="Cameras TOML file: many inputs, one shared model ([defaults] takes run's options of the run "
                   "itself, not --max-frames, --duration, ports or --stats-json; "
                   "one [[camera]] table per camera with name, input, output).")
@preset_option
@model_options
@inference_options
@degradation_options
@click.option("--codec", default=None, help="Any FFmpeg video encoder (default libx264; e.g. libx265, ffv1, "
              "h264_nvenc: a hardware encoder this machine lacks falls back to its software twin).")
@click.option("--crf", type=float, default=None, help="Constant rate factor (default 18 for x264/x265).")
@click.option("--preset", default=None, help="Encoder preset (default: the encoder's; veryfast when live).")
@click.option("--tune", default=None, help="Encoder tune (default: zerolatency for live x264/x265).")
@click.option("--gop", type=int, default=None, help="Keyframe interval in frames.")
@click.option("--pix-fmt", default=None, help="Output pixel format (default: the input's when the encoder takes it).")
@click.option("--hls-time", type=float, default=None, help="HLS segment length in seconds (default 2).")
@click.option("--segment-time", type=float, default=None, help="Cut a file output into files of about this "
              "many seconds, named by the -o pattern: cam-%Y%m%d-%H%M%S.mkv (clock time) or cam-%03d.mkv.")
@click.option("--batch-size", type=int, default=None, help="Frames per inference call (default 1).")
@click.option("--hwdec", default=None, help="Hardware decoding: auto (NVDEC when a CUDA GPU is there), none, "
              "cuda, qsv, vaapi; falls back to the CPU.")
@click.option("--colour-on", type=click.Choice(["auto", "cpu", "device"]), default=None,
              help="Where YUV<->RGB conversion runs: swscale on the CPU, or the inference device "
                   "(8-bit 4:2:0; default auto = device on CUDA).")
@click.option("--reuse", type=click.Choice(["auto", "on", "off"]), default=None,
              help="Tile reuse: only the tiles that changed since the last frame go through the network "
                   "(default auto: on for live inputs; on a file, kept when its first 60 frames show it pays).")
@click.option("--reuse-refresh", default=None, metavar="SECONDS|keyframe",
              help="Recompute every reused tile after this many seconds (default keyframe: at each keyframe of "
                   "the input, and at least every 10 s).")
@click.option("--queue-size", type=int, default=None, help="Bound of each queue between stages (default 8; at most 2 when live).")
@click.option("--realtime/--no-realtime", default=None,
              help="Live mode: drop the oldest waiting frames to keep latency bounded. Default: on for "
              "rtsp/rtmp/srt/udp/HLS/V4L2 inputs; a file with --realtime is read at its own frame rate.")
@click.option("--max-latency", type=float, default=None, help="Live mode: most seconds a frame may wait (default 0.5).")
@click.option("--reconnect/--no-reconnect", default=None, help="Reopen a live input that drops (default on).")
@click.option("--reconnect-max-wait", type=float, default=None,
              help="Give up when a live input stays away this many seconds (default 300; 0 = never).")
@click.option("--read-timeout", type=float, default=None, help="Watchdog: seconds without data before reconnecting (default 5).")
@click.option("--rtsp-transport", type=click.Choice(["tcp", "udp"]), default=None, help="RTSP transport (default tcp).")
@click.option("--no-audio", is_flag=True, help="Drop audio instead of copying it.")
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Stop after N frames (exit 0).")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None, help="Stop after this many seconds of video; for a live input a wall-clock bound on the whole run, "
                   "connecting included (exit 1 if no picture ever came).")
@click.option("--metrics-port", default=None, help="Serve Prometheus metrics at http://HOST:PORT/metrics (PORT = localhost).")
@click.option("--ui-port", default=None, metavar="[HOST:]PORT",
              help="Serve a live dashboard of the cameras at http://HOST:PORT/ (PORT = localhost).")
@click.option("--stats-json", type=click.Path(dir_okay=False), default=None, help="Write per-stage timings and counts here.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display, no summary.")
def run(inputs, outputs, cameras_file, preset_name, quiet, stats_json, no_audio, max_frames, duration, metrics_port,
        ui_port=None, **options):
    """Upscale INPUT (file, - for stdin, rtsp://..., /dev/video0) into OUTPUT.

    \b
    Examples:
      streamsr run input.mp4 -o output.mp4 --model espcn --scale 2
      streamsr run call.mp4 -o call_1080p.mp4 --size 1920x1080
      streamsr run cam.mp4 -o out.mp4 --model udvd --scale 2 --noise 15 --blur 1.6
      streamsr run in.mkv -o out.mkv --codec ffv1 --backend onnxruntime --backend-option onnxruntime.threads=2
      streamsr run rtsp://user:pass@cam/stream -o cam.mkv --max-latency 0.3 --metrics-port 9100
      streamsr run rtsp://cam1/s rtsp://cam2/s -o cam1.mkv -o cam2.mkv
      streamsr run --config cams.toml --duration 3600
      streamsr run rtsp://cam/s -o "gate-%Y%m%d-%H%M%S.mkv" --segment-time 3600 --for surveillance

    \b
    A cameras file:
      [defaults]
      scale = 2
      [[camera]]
      name = "gate"
      input = "rtsp://user:pass@10.0.0.5/stream1"
      output = "gate.mkv"
    """
    from ..pipeline.cameras import Camera, check_distinct, load_cameras

    check_report_path(stats_json)
    file_defaults: dict = {}
    if cameras_file:
        if inputs or outputs:
            raise click.UsageError("give either --config or INPUT... -o OUTPUT..., not both")
        cameras, file_defaults = load_cameras(cameras_file)
    else:
        if not inputs:
            raise click.UsageError("missing INPUT (or --config cams.toml)")
        if len(outputs) != len(inputs):
            raise click.UsageError(f"give one -o OUTPUT per input ({len(inputs)} inputs, {len(outputs)} outputs)")
        cameras = [Camera(f"camera{i + 1}" if len(inputs) > 1 else mask_credentials(inp), inp, out)
                   for i, (inp, out) in enumerate(zip(inputs, outputs))]
        check_distinct(cameras)
    if any(c.output == "-" for c in cameras) and sys.stdout.isatty():
        raise click.UsageError("refusing to write video to a terminal; redirect stdout or use -o FILE")
    config = build_config(preset_name, {**options, "audio": False if no_audio else None}, file_defaults)
    progress = _Progress(enabled=not quiet and sys.stderr.isatty())
    try:
        with stop_on_signals():
            results = _run_all(cameras, config, progress, max_frames, duration, metrics_port, ui_port, quiet)
    finally:
        progress.close()
    if stats_json:
        report = [{**(r.stats.as_dict() if r.stats else {"camera": r.camera.name}),
                   **({"error": str(r.error)} if r.error else {})} for r in results]
        Path(stats_json).write_text(json.dumps(report[0] if len(report) == 1 else report, indent=2) + "\n")
    failed = [r for r in results if r.error is not None]
    if not quiet:
        for r in results:
            if r.stats is not None:
                _summary(r.camera, r.stats, several=len(results) > 1)
    for r in failed:
        prefix = f"{r.camera.name}: " if len(results) > 1 else ""
        click.echo(f"streamsr: error: {prefix}{r.error}", err=True)
    if failed:
        sys.exit(EXIT_ERROR)
    if any(r.stats.interrupted for r in results):
        sys.exit(EXIT_INTERRUPTED)


def _run_all(cameras, config, progress, max_frames, duration, metrics_port, ui_port=None, quiet=False):
    """One camera runs on the calling thread (Ctrl-C stops it gracefully); several share a hub."""
    from ..pipeline.cameras import CameraResult, run_cameras
    from ..pipeline.job import RunHandle, upscale_video
    from ..pipeline.metrics_http import MetricsServer, parse_listen

    handles: list = []
    with contextlib.ExitStack() as servers:
        if metrics_port:
            servers.enter_context(MetricsServer(*parse_listen(metrics_port), handles=lambda: handles))
        if ui_port:
            from ..ui import dashboard_server
            from ..ui import parse_listen as parse_ui

            dashboard = servers.enter_context(dashboard_server(lambda: handles, *parse_ui(ui_port, "--ui-port")))
            if not quiet:
                click.echo(f"streamsr: dashboard at {dashboard.url}", err=True)
        if len(cameras) > 1:
            def started(hs):
                handles.extend(hs)
                progress.handles = hs

            return run_cameras(cameras, config, duration=duration, max_frames=max_frames, on_start=started)
        cam = cameras[0]
        handle = RunHandle(cam.name)
        handles.append(handle)
        try:
            stats = upscale_video(cam.input, cam.output, config, progress=progress, stop_after=max_frames,
                                  duration=duration, handle=handle)
        except StreamSRError as exc:  # a lost stream still has its stats (and a kept recording)
            return [CameraResult(cam, stats=getattr(exc, "stats", None), error=exc)]
        return [CameraResult(cam, stats=stats)]


def _summary(camera, stats, several: bool) -> None:
    for notice in stats.notices:
        click.echo(f"streamsr: note: {camera.name + ': ' if several else ''}{notice}", err=True)
    out = stats.extra["output"]
    where = "stdout" if camera.output == "-" else mask_credentials(camera.output)
    live = ""
    deg = stats.extra.get("degradation")
    if deg:
        told = f"noise {deg['noise']:g}" if deg["noise"] is not None else f"noise estimated {deg['noise_estimated']}"
        live += f", blur {deg['blur']:g}, {told}"
    if stats.realtime:
        lat = stats.latency
        live += (f", dropped {stats.dropped}, latency p50 {lat['p50_ms']} ms p95 {lat['p95_ms']} ms"
                 f" max {lat['max_ms']} ms, reconnects {stats.reconnects}")
    click.echo(
        f"streamsr: {camera.name + ': ' if several else ''}"
        f"{'interrupted after' if stats.interrupted else 'done:'} {stats.frames_out} frames in "
        f"{stats.wall_seconds:.1f}s ({stats.fps:.1f} fps{live}), {stats.extra['model']} {stats.extra['geometry']} "
        f"on {stats.extra['backend']} {stats.extra['precision']} -> {where} [{out['width']}x{out['height']} {out['codec']}]",
        err=True,
    )


def _downscale(**kwargs):
    """The sender's end: the model's ``down`` part, or the plain area downscale for a model
    without one (said once)."""
    from ..models import get_model

    name = kwargs.get("model") or "irn"
    if name != "auto" and any(p == "down" for p, _ in getattr(get_model(name).geometry, "directions", ())):
        kwargs.update(model=name, part="down")
    else:
        if kwargs.get("model") and not kwargs.get("quiet"):
            click.echo(f"streamsr: note: {name} has no down part: a plain area downscale", err=True)
        kwargs.update(model="area", part="down")
    return run.callback(**kwargs)


main.add_command(click.Command(
    "downscale", callback=_downscale, params=[p for p in run.params if p.name != "part"],
    help="""Downscale INPUT into OUTPUT: the sender's end of a down/up pair.

    With --model irn (the default) the frames go through IRN's learned downscaler: ordinary,
    viewable video at 1/scale the size, from which `streamsr run --model irn` on the receiving
    end restores far more than any super-resolution of a plain downscale can. Any other model has
    no down part: the plain area downscale (--model area) is used, for comparison. Everything else
    is as `streamsr run` (live inputs and outputs, audio, colour, timestamps).

    \b
    Examples:
      streamsr downscale call.mp4 -o small.mp4 --model irn --scale 2
      streamsr run small.mp4 -o restored.mp4 --model irn --scale 2        # the receiver
      streamsr downscale rtsp://cam/s -o rtsp://server/small --scale 2 --for videocall
      streamsr downscale call.mp4 -o plain.mp4 --model area --scale 2
    """))
