"""Command line: ``streamsr run | models | export | bench``.

The only module that prints for the user or exits. A StreamSRError becomes one line on stderr
and exit code 1; Ctrl-C/SIGTERM stop the run cleanly (the output keeps every frame encoded so
far) and exit with 130.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path

import click

from . import __version__
from .errors import StreamSRError
from .urls import mask_credentials

__all__ = ["main"]

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


class _Progress:
    """A one-line progress display on stderr, only on a terminal and never with --quiet."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.last = 0.0
        self.handles: list = []

    def __call__(self, handle) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.25:
            return
        self.last = now
        click.echo("\r" + " | ".join(self._line(h, now) for h in (self.handles or [handle])) + "\033[K",
                   err=True, nl=False)

    @staticmethod
    def _line(h, now: float) -> str:
        fps = h.frames_out / max(now - h.started, 1e-9)
        if h.total:
            frac = min(h.frames_out / h.total, 1.0)
            eta = (h.total - h.frames_out) / fps if fps > 0 else 0
            return f"[{'#' * int(frac * 24):<24}] {h.frames_out}/{h.total} frames {fps:5.1f} fps ETA {eta:4.0f}s"
        p95 = h.latency.summary()["p95_ms"]
        live = f" dropped {h.dropped} p95 {p95:.0f}ms" if p95 is not None else ""
        again = f" reconnects {h.reconnects}" if h.reconnects else ""
        return f"{h.name[:24]}: {h.frames_out} frames {fps:5.1f} fps{live}{again}"

    def close(self) -> None:
        if self.enabled and self.last:
            click.echo("", err=True)


class _Notes(logging.Handler):
    """Library warnings (e.g. "building a TensorRT engine, this takes a while") as one line each;
    FFmpeg's own messages (streamsr.ffmpeg) stay out of the user's way."""

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("streamsr.ffmpeg"):
            click.echo(f"streamsr: note: {record.getMessage()}", err=True)


def _setup_logging() -> None:
    logger = logging.getLogger("streamsr")
    if not any(isinstance(h, _Notes) for h in logger.handlers):
        handler = _Notes(logging.WARNING)
        logger.addHandler(handler)


def _raise_interrupt(signum, frame):  # SIGTERM behaves like Ctrl-C: graceful stop
    raise KeyboardInterrupt


def _fail(exc: BaseException) -> None:
    click.echo(f"streamsr: error: {exc}", err=True)
    sys.exit(EXIT_ERROR)


class _Group(click.Group):
    """Turns library errors into one line and an exit code, whatever the command."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except StreamSRError as exc:
            _fail(exc)
        except KeyboardInterrupt:
            click.echo("streamsr: interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="streamsr")
def main() -> None:
    """Make video sharper with super-resolution networks, in real time.

    \b
    Examples:
      streamsr run input.mp4 -o output.mp4 --model espcn --scale 2
      cat in.ts | streamsr run - -o - | ffplay -
      streamsr models
      streamsr export --model espcn --scale 2 -o espcn_x2.onnx
    """
    _setup_logging()


@main.command()
@click.argument("inputs", metavar="INPUT...", nargs=-1)
@click.option("-o", "--output", "outputs", multiple=True,
              help="Output: file (container from extension), - (MPEG-TS on stdout), rtsp://, rtmp://, srt://, "
              "udp:// push, or dir/index.m3u8 (HLS). Once per input.")
@click.option("--config", "cameras_file", type=click.Path(dir_okay=False), default=None,
              help="Cameras TOML file: many inputs, one shared model (see `streamsr run --help`).")
@click.option("--for", "preset_name", default=None, metavar="USE",
              help="Defaults for a use: surveillance, videocall, or a .toml file of run options "
                   "(options given here win).")
@click.option("--model", default=None, help="Model name (default espcn; see `streamsr models`).")
@click.option("--scale", type=int, default=None, help="Upscale factor (default 2).")
@click.option("--backend", default=None, help="auto (fastest available), torch, onnxruntime or tensorrt.")
@click.option("--device", default=None, help="auto, cpu or cuda.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None, help="Default: fp16 on CUDA, fp32 on CPU.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Your own .safetensors weights.")
@click.option("--noise", "noise_opt", default=None, help="UDVD: noise σ on the 0-255 scale, or auto (default: "
              "estimated from the frames, smoothed over time, reported in the stats).")
@click.option("--blur", type=float, default=None, help="UDVD: blur width in HR pixels (default 0.5 x scale).")
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
@click.option("--tile", type=int, default=None, help="Run frames larger than this (LR px a side) tile by tile.")
@click.option("--tile-overlap", type=int, default=None, help="LR pixels neighbouring tiles share (default 16).")
@click.option("--colour-on", type=click.Choice(["auto", "cpu", "device"]), default=None,
              help="Where YUV<->RGB conversion runs: swscale on the CPU, or the inference device "
                   "(8-bit 4:2:0; default auto = device on CUDA).")
@click.option("--compile", "compile_", is_flag=True, default=None,
              help="PyTorch backend: torch.compile the network (CUDA graphs on a GPU; the first frame compiles).")
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
@click.option("--max-frames", type=int, default=None, help="Stop after N frames (exit 0).")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds of video (exit 0).")
@click.option("--metrics-port", default=None, help="Serve Prometheus metrics at http://HOST:PORT/metrics (PORT = localhost).")
@click.option("--stats-json", type=click.Path(dir_okay=False), default=None, help="Write per-stage timings and counts here.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display, no summary.")
def run(inputs, outputs, cameras_file, preset_name, quiet, stats_json, no_audio, max_frames, duration, metrics_port,
        noise_opt, **options):
    """Upscale INPUT (file, - for stdin, rtsp://..., /dev/video0) into OUTPUT.

    \b
    Examples:
      streamsr run input.mp4 -o output.mp4 --model espcn --scale 2
      streamsr run cam.mp4 -o out.mp4 --model udvd --scale 2 --noise 15 --blur 1.6
      streamsr run in.mkv -o out.mkv --codec ffv1 --backend onnxruntime
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
    from .config import RunConfig, load_preset
    from .pipeline.cameras import Camera, load_cameras

    defaults: dict = load_preset(preset_name) if preset_name else {}
    if cameras_file:
        if inputs or outputs:
            raise click.UsageError("give either --config or INPUT... -o OUTPUT..., not both")
        cameras, file_defaults = load_cameras(cameras_file)
        defaults = {**defaults, **file_defaults}
    else:
        if not inputs:
            raise click.UsageError("missing INPUT (or --config cams.toml)")
        if len(outputs) != len(inputs):
            raise click.UsageError(f"give one -o OUTPUT per input ({len(inputs)} inputs, {len(outputs)} outputs)")
        cameras = [Camera(f"camera{i + 1}" if len(inputs) > 1 else mask_credentials(inp), inp, out)
                   for i, (inp, out) in enumerate(zip(inputs, outputs))]
    if any(c.output == "-" for c in cameras) and sys.stdout.isatty():
        raise click.UsageError("refusing to write video to a terminal; redirect stdout or use -o FILE")
    if noise_opt is not None and noise_opt != "auto":
        try:
            options["noise"] = float(noise_opt)
        except ValueError:
            raise click.BadParameter(f"expected a number or auto, got {noise_opt!r}", param_hint="--noise") from None
    options["compile"] = options.pop("compile_") or None  # a Python builtin's name
    flat = {**defaults, **{k: v for k, v in options.items() if v is not None}}
    config = RunConfig.from_options(**flat, audio=False if no_audio else None)
    progress = _Progress(enabled=not quiet and sys.stderr.isatty())
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        results = _run_all(cameras, config, progress, max_frames, duration, metrics_port)
    finally:
        signal.signal(signal.SIGTERM, previous)
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


def _run_all(cameras, config, progress, max_frames, duration, metrics_port):
    """One camera runs on the calling thread (Ctrl-C stops it gracefully); several share a hub."""
    import contextlib

    from .pipeline.cameras import CameraResult, run_cameras
    from .pipeline.job import RunHandle, upscale_video
    from .pipeline.metrics_http import MetricsServer, parse_listen

    handles: list = []
    server = contextlib.nullcontext()
    if metrics_port:
        server = MetricsServer(*parse_listen(metrics_port), handles=lambda: handles)
    with server:
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
        f"{stats.wall_seconds:.1f}s ({stats.fps:.1f} fps{live}), {stats.extra['model']} x{stats.extra['scale']} "
        f"on {stats.extra['backend']} -> {where} [{out['width']}x{out['height']} {out['codec']}]",
        err=True,
    )


@main.command()
def models():
    """List models, scales, shipped weights and parameter counts."""
    from .models import (
        build_model,
        count_parameters,
        get_model,
        list_models,
        weights_path,
    )

    click.echo(f"{'model':10s} {'scale':>5s} {'params':>9s}  {'weights':32s} description")
    for name in list_models():
        spec = get_model(name)
        for scale in spec.scales:
            params = count_parameters(build_model(name, scale, pretrained=False))
            path = weights_path(spec, scale)
            shipped = path.name if path else "(none shipped)"
            click.echo(f"{name:10s} {'x' + str(scale):>5s} {params:>9,d}  {shipped:32s} {spec.description}")


@main.command()
@click.option("--model", default="espcn", show_default=True)
@click.option("--scale", type=int, default=2, show_default=True)
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Your own .safetensors weights.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
def export(model, scale, precision, weights, output):
    """Export a model to ONNX (dynamic batch, height, width) and check it against PyTorch.

    \b
    Example:
      streamsr export --model espcn --scale 2 -o espcn_x2.onnx
    """
    from .backends.export import export_onnx
    from .models import get_model

    spec = get_model(model, scale)
    export_onnx(spec, scale, output, precision=precision, weights=weights, check=True)
    click.echo(f"wrote {output} ({spec.name} x{scale}, {precision}; inputs: {', '.join(spec.inputs)}; "
               "checked against PyTorch with ONNX Runtime)")


@main.command(name="build-engine")
@click.option("--model", default="espcn", show_default=True)
@click.option("--scale", type=int, default=2, show_default=True)
@click.option("--precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True)
@click.option("--min-shape", default="1x3x64x64", show_default=True, help="Smallest LR image batch NxCxHxW.")
@click.option("--opt-shape", default="1x3x540x960", show_default=True, help="The shape to tune for.")
@click.option("--max-shape", default="4x3x1080x1920", show_default=True, help="Largest LR image batch.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None)
@click.option("--engine-dir", type=click.Path(file_okay=False), default=None, help="Engine cache (default engines/).")
def build_engine_cmd(model, scale, precision, min_shape, opt_shape, max_shape, weights, engine_dir):
    """Export ONNX and build a TensorRT engine into the engine cache (needs TensorRT and a GPU).

    \b
    Example:
      streamsr build-engine --model udvd --scale 2 --precision fp16 --min-shape 1x3x64x64 \\
          --opt-shape 1x3x540x960 --max-shape 4x3x1080x1920
    """
    from .backends.engine import ShapeProfile
    from .backends.tensorrt_backend import TensorRTBackend, TensorRTConfig
    from .errors import BackendUnavailableError
    from .models import get_model

    profile = ShapeProfile.parse(min_shape, opt_shape, max_shape)
    spec = get_model(model, scale)
    if not TensorRTBackend.available("cuda"):
        raise BackendUnavailableError(TensorRTBackend.unavailable_reason("cuda"))
    backend = TensorRTBackend(spec, scale, TensorRTConfig(precision=precision, engine_dir=engine_dir,
                                                          profile=profile), weights)
    click.echo(f"engine ready: {backend.cache.folder}")
    backend.close()


@main.group()
def engines():
    """List or remove cached TensorRT engines."""


@engines.command(name="list")
@click.option("--engine-dir", type=click.Path(file_okay=False), default=None)
def engines_list(engine_dir):
    """Show cached engines with their size."""
    from .backends.engine import EngineCache

    cache = EngineCache(engine_dir)
    found = cache.list()
    for p in found:
        click.echo(f"{p.stat().st_size / 2**20:8.1f} MiB  {p.name}")
    click.echo(f"{len(found)} engine(s) in {cache.folder}")


@engines.command(name="clean")
@click.option("--engine-dir", type=click.Path(file_okay=False), default=None)
def engines_clean(engine_dir):
    """Delete every cached engine and the timing cache."""
    from .backends.engine import EngineCache

    gone = EngineCache(engine_dir).clean()
    click.echo(f"removed {len(gone)} file(s)")


@main.command()
@click.argument("config_file", metavar="CONFIG", type=click.Path(dir_okay=False))
@click.option("--resume", is_flag=True, help="Continue from OUT_DIR/last.safetensors.")
@click.option("--minutes", type=float, default=None, help="Override the wall-clock budget.")
@click.option("--iterations", type=int, default=None, help="Override the step limit.")
@click.option("--device", default=None, help="auto, cpu or cuda (overrides the config).")
@click.option("--out-dir", default=None, help="Override where checkpoints and weights go.")
@click.option("--no-ship", is_flag=True, help="Do not copy the final weights into the package.")
@click.option("-q", "--quiet", is_flag=True)
def train(config_file, resume, minutes, iterations, device, out_dir, no_ship, quiet):
    """Train a model from a TOML config (configs/*.toml).

    \b
    Examples:
      streamsr train configs/udvd_x2.toml
      streamsr train configs/udvd_x2.toml --resume
      streamsr train configs/udvd_paper.toml --device cuda
    """
    from .training import load_train_config
    from .training import train as run_training

    cfg = load_train_config(config_file, minutes=minutes, iterations=iterations, device=device,
                            out_dir=out_dir, ship=False if no_ship else None)
    last = [0.0]

    def report(info: dict) -> None:
        now = time.monotonic()
        val = "".join(f" {k} {v:.2f}" for k, v in info.items() if k.startswith("psnr"))
        if quiet or (now - last[0] < 1.0 and not val):
            return
        last[0] = now
        line = f"step {info['step']} loss {info['loss']:.5f} lr {info['lr']:.1e} {info['progress'] * 100:3.0f}%{val}"
        if sys.stderr.isatty():
            click.echo("\r" + line + "\033[K", err=True, nl=False)
        elif val:
            click.echo(line, err=True)

    result = run_training(cfg, resume=resume, report=report)
    if sys.stderr.isatty() and not quiet:
        click.echo("", err=True)
    click.echo(json.dumps(dict(result), indent=2))


@main.command(name="eval")
@click.argument("path", type=click.Path())
@click.option("--model", default="espcn", show_default=True)
@click.option("--scale", type=int, default=2, show_default=True)
@click.option("--backend", default="auto", show_default=True)
@click.option("--device", default="auto", show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), default=None)
@click.option("--noise", default=None, help="Noise σ (0-255) added to the LR; for UDVD also what it is told, "
              "or 'auto:σ' to add σ and let UDVD estimate it.")
@click.option("--blur", type=float, default=None, help="Isotropic blur width (HR px) applied before downscaling.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def evaluate(path, model, scale, backend, device, weights, noise, blur, as_json):
    """Y-PSNR/SSIM of a model against bicubic on an image folder or a video (BasicSR protocol).

    \b
    Examples:
      streamsr eval data/val --model espcn --scale 2
      streamsr eval data/val --model udvd --scale 2 --blur 1.6 --noise 10
      streamsr eval clip.mp4 --model udvd --scale 2 --blur 1.6 --noise auto:10 --json
    """
    import numpy as np

    from .backends import create_backend
    from .degradation import Degradation
    from .errors import ConfigError
    from .evaluate import Upscaler, score_items
    from .models import get_model

    spec = get_model(model, scale)
    auto = noise is not None and str(noise).startswith("auto")
    try:
        sigma = float(str(noise).split(":")[-1]) if noise is not None else 0.0
    except ValueError:
        raise ConfigError(f"--noise wants a number or auto:NUMBER, got {noise!r}") from None
    degradation = Degradation(blur=blur or 0.0, noise=sigma) if (noise is not None or blur) else None
    b = create_backend(backend, spec, scale, device=device, weights=weights)
    try:
        scores = score_items(Upscaler(b, spec, degradation, noise_auto=auto), path, scale, degradation)
    finally:
        b.close()
    if not scores:
        raise ConfigError(f"no images or frames to evaluate in {path}")
    mean = {k: float(np.mean([getattr(s, k) for s in scores])) for k in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic")}
    if as_json:
        click.echo(json.dumps({"model": model, "scale": scale, "backend": getattr(b, "name", backend),
                               "degradation": {"blur": blur or 0.0, "noise": sigma, "noise_auto": auto},
                               "items": [dict(s.__dict__, gain=s.gain) for s in scores],
                               "mean": dict(mean, gain=mean["psnr"] - mean["psnr_bicubic"])}, indent=2))
        return
    click.echo(f"{'item':20s} {'bicubic':>8s} {model:>8s} {'gain':>6s}  {'SSIM bic':>8s} {'SSIM':>6s}")
    for s in scores:
        click.echo(f"{s.name[:20]:20s} {s.psnr_bicubic:8.2f} {s.psnr:8.2f} {s.gain:+6.2f}  {s.ssim_bicubic:8.4f} {s.ssim:6.4f}")
    click.echo(f"{'mean':20s} {mean['psnr_bicubic']:8.2f} {mean['psnr']:8.2f} {mean['psnr'] - mean['psnr_bicubic']:+6.2f}"
               f"  {mean['ssim_bicubic']:8.4f} {mean['ssim']:6.4f}")


@main.command()
@click.option("--model", default="espcn", show_default=True)
@click.option("--scale", type=int, default=2, show_default=True)
@click.option("--size", default="640x360", show_default=True, help="Input size WxH.")
@click.option("--frames", type=int, default=60, show_default=True)
@click.option("--backend", "backends", multiple=True, help="Backends to measure (default: every available one).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--preset", default="veryfast", show_default=True, help="x264 preset for the encode stage.")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Append the results table to this Markdown file.")
@click.option("--matrix", is_flag=True, help="Model-only and end-to-end fps for every model x size x precision x batch.")
@click.option("--models", default="espcn,srresnet,udvd", show_default=True, help="--matrix: models.")
@click.option("--sizes", default="960x540,1280x720", show_default=True, help="--matrix: input sizes.")
@click.option("--precisions", default="fp32,fp16", show_default=True, help="--matrix: precisions (fp16 only on CUDA).")
@click.option("--batches", default="1,4", show_default=True, help="--matrix: batch sizes.")
@click.option("--codec", default="libx264", show_default=True, help="--matrix: encoder of the end-to-end runs.")
@click.option("--compile", "compile_", is_flag=True, help="--matrix: torch.compile the PyTorch backend.")
def bench(model, scale, size, frames, backends, device, preset, output, matrix, models, sizes, precisions, batches,
          codec, compile_):
    """Measure per-stage and end-to-end throughput against a sequential loop, or (--matrix) the
    model-only and end-to-end fps of every model, size, precision and batch size.

    \b
    Examples:
      streamsr bench --model espcn --scale 2 --size 640x360 --output BENCHMARKS.md
      streamsr bench --matrix --device cuda --output BENCHMARKS.md
    """
    from .bench import format_matrix, run_bench, run_matrix

    def parse_size(text: str, hint: str) -> tuple[int, int]:
        try:
            w, h = (int(v) for v in text.lower().split("x"))
        except ValueError:
            raise click.BadParameter(f"expected WxH, got {text!r}", param_hint=hint) from None
        return w, h

    if matrix:
        try:
            batch_list = [int(b) for b in batches.split(",")]
        except ValueError:
            raise click.BadParameter(f"expected numbers, got {batches!r}", param_hint="--batches") from None
        rows = run_matrix(models=models.split(","), scale=scale,
                          sizes=[parse_size(s, "--sizes") for s in sizes.split(",")], precisions=precisions.split(","), batches=batch_list, backends=list(backends) or None,
                          device=device, frames=frames, codec=codec, preset=preset, compile=compile_,
                          report=lambda line: click.echo(line, err=True))
        table = format_matrix(rows, device, codec, preset, compile_)
    else:
        w, h = parse_size(size, "--size")
        table = run_bench(model=model, scale=scale, width=w, height=h, frames=frames,
                          backends=list(backends) or None, device=device, preset=preset,
                          report=lambda line: click.echo(line, err=True))
    click.echo(table)
    if output:
        with open(output, "a") as f:
            f.write(table + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
