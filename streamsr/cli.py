"""Command line: ``streamsr run | models | export | bench``.

The only module that prints for the user or exits. A StreamSRError becomes one line on stderr
and exit code 1; Ctrl-C/SIGTERM stop the run cleanly (the output keeps every frame encoded so
far) and exit with 130.
"""

from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path

import click

from . import __version__
from .errors import StreamSRError

__all__ = ["main"]

EXIT_ERROR, EXIT_INTERRUPTED = 1, 130


class _Progress:
    """A one-line progress bar on stderr, only on a terminal and never with --quiet."""

    def __init__(self, enabled: bool):
        self.enabled = enabled
        self.start = time.monotonic()
        self.last = 0.0

    def __call__(self, done: int, total: int | None) -> None:
        now = time.monotonic()
        if not self.enabled or (now - self.last < 0.25 and done != total):
            return
        self.last = now
        fps = done / max(now - self.start, 1e-9)
        if total:
            frac = min(done / total, 1.0)
            bar = "#" * int(frac * 24)
            eta = (total - done) / fps if fps > 0 else 0
            line = f"[{bar:<24}] {done}/{total} frames  {fps:5.1f} fps  ETA {eta:4.0f}s"
        else:
            line = f"{done} frames  {fps:5.1f} fps"
        click.echo("\r" + line, err=True, nl=False)

    def close(self) -> None:
        if self.enabled and self.last:
            click.echo("", err=True)


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


@main.command()
@click.argument("input", metavar="INPUT")
@click.option("-o", "--output", required=True, help="Output file (container from extension) or - for MPEG-TS on stdout.")
@click.option("--model", default=None, help="Model name (default espcn; see `streamsr models`).")
@click.option("--scale", type=int, default=None, help="Upscale factor (default 2).")
@click.option("--backend", default=None, help="auto (fastest available), torch, onnxruntime or tensorrt.")
@click.option("--device", default=None, help="auto, cpu or cuda.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default=None, help="Default: fp16 on CUDA, fp32 on CPU.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Your own .safetensors weights.")
@click.option("--codec", default=None, help="Any FFmpeg video encoder (default libx264; e.g. libx265, ffv1).")
@click.option("--crf", type=float, default=None, help="Constant rate factor (default 18 for x264/x265).")
@click.option("--preset", default=None, help="Encoder preset (e.g. veryfast, medium).")
@click.option("--pix-fmt", default=None, help="Output pixel format (default: the input's when the encoder takes it).")
@click.option("--batch-size", type=int, default=None, help="Frames per inference call (default 1).")
@click.option("--queue-size", type=int, default=None, help="Bound of each queue between stages (default 8).")
@click.option("--no-audio", is_flag=True, help="Drop audio instead of copying it.")
@click.option("--max-frames", type=int, default=None, help="Stop after N frames (exit 0).")
@click.option("--stats-json", type=click.Path(dir_okay=False), default=None, help="Write per-stage timings and counts here.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar, no summary.")
def run(input, output, quiet, stats_json, no_audio, max_frames, **options):
    """Upscale INPUT (a file, or - for stdin) into OUTPUT.

    \b
    Examples:
      streamsr run input.mp4 -o output.mp4 --model espcn --scale 2
      streamsr run in.mkv -o out.mkv --codec ffv1 --backend onnxruntime
      streamsr run in.mp4 -o out.mp4 --scale 3 --crf 20 --preset veryfast --stats-json stats.json
    """
    from .config import RunConfig
    from .pipeline.job import upscale_video

    config = RunConfig.from_options(**options, audio=False if no_audio else None)
    if output == "-" and sys.stdout.isatty():
        raise click.UsageError("refusing to write video to a terminal; redirect stdout or use -o FILE")
    progress = _Progress(enabled=not quiet and sys.stderr.isatty())
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)
    try:
        stats = upscale_video(input, output, config, progress=progress, stop_after=max_frames)
    finally:
        signal.signal(signal.SIGTERM, previous)
        progress.close()
    if stats_json:
        Path(stats_json).write_text(json.dumps(stats.as_dict(), indent=2) + "\n")
    if not quiet:
        for notice in stats.notices:
            click.echo(f"streamsr: note: {notice}", err=True)
        out = stats.extra["output"]
        where = "stdout" if output == "-" else output
        click.echo(
            f"streamsr: {'interrupted after' if stats.interrupted else 'done:'} {stats.frames_out} frames in "
            f"{stats.wall_seconds:.1f}s ({stats.fps:.1f} fps), {stats.extra['model']} x{stats.extra['scale']} "
            f"on {stats.extra['backend']} -> {where} [{out['width']}x{out['height']} {out['codec']}]",
            err=True,
        )
    if stats.interrupted:
        sys.exit(EXIT_INTERRUPTED)


@main.command()
def models():
    """List models, scales, shipped weights and parameter counts."""
    from .models import build_model, count_parameters, get_model, list_models, weights_path

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


@main.command()
@click.option("--model", default="espcn", show_default=True)
@click.option("--scale", type=int, default=2, show_default=True)
@click.option("--size", default="640x360", show_default=True, help="Input size WxH.")
@click.option("--frames", type=int, default=60, show_default=True)
@click.option("--backend", "backends", multiple=True, help="Backends to measure (default: every available one).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--preset", default="veryfast", show_default=True, help="x264 preset for the encode stage.")
@click.option("--output", type=click.Path(dir_okay=False), default=None, help="Append the results table to this Markdown file.")
def bench(model, scale, size, frames, backends, device, preset, output):
    """Measure per-stage and end-to-end throughput against a sequential loop.

    \b
    Example:
      streamsr bench --model espcn --scale 2 --size 640x360 --output BENCHMARKS.md
    """
    from .bench import run_bench

    try:
        w, h = (int(v) for v in size.lower().split("x"))
    except ValueError:
        raise click.BadParameter(f"expected WxH, got {size!r}", param_hint="--size") from None
    table = run_bench(model=model, scale=scale, width=w, height=h, frames=frames,
                      backends=list(backends) or None, device=device, preset=preset,
                      report=lambda line: click.echo(line, err=True))
    click.echo(table)
    if output:
        with open(output, "a") as f:
            f.write(table + "\n")


if __name__ == "__main__":  # pragma: no cover
    main()
