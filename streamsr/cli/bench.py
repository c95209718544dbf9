"""``streamsr bench``: per-stage and end-to-end throughput, or the model matrix."""

from __future__ import annotations

import click

from ..models.geometry import parse_size
from . import main
from .options import build_config, preset_option

__all__ = ["bench"]


def _size(text: str, hint: str) -> tuple[int, int]:
    from ..errors import ConfigError

    try:
        return parse_size(text, hint)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None


@main.command()
@preset_option
@click.option("--model", default=None, help="Model (default espcn).")
@click.option("--scale", type=float, default=None, help="Upscale factor (default: the model's first).")
@click.option("--size", default="640x360", show_default=True, help="Input size WxH.")
@click.option("--frames", type=int, default=60, show_default=True)
@click.option("--backend", "backends", multiple=True, help="Backends to measure (default: every available one).")
@click.option("--backend-option", "backend_option", multiple=True, metavar="BACKEND.KEY=VALUE",
              help="An option of a backend's config (as for `streamsr run`).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--preset", default="veryfast", show_default=True, help="x264 preset for the encode stage.")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Append the results table to this Markdown file (BENCHMARKS.md is the project's record).")
@click.option("--matrix", is_flag=True, help="Model-only and end-to-end fps for every model x size x precision x batch.")
@click.option("--models", default="espcn,srresnet,udvd", show_default=True, help="--matrix: models.")
@click.option("--sizes", default="960x540,1280x720", show_default=True, help="--matrix: input sizes.")
@click.option("--precisions", default="fp32,fp16", show_default=True, help="--matrix: precisions (fp16 only on CUDA).")
@click.option("--batches", default="1,4", show_default=True, help="--matrix: batch sizes.")
@click.option("--codec", default="libx264", show_default=True, help="Encoder of the end-to-end runs.")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the PyTorch backend.")
def bench(preset_name, model, scale, size, frames, backends, backend_option, device, preset, output, matrix, models,
          sizes, precisions, batches, codec, compile_):
    """Measure per-stage and end-to-end throughput against a sequential loop, or (--matrix) the
    model-only and end-to-end fps of every model, size, precision and batch size.

    \b
    Examples:
      streamsr bench --model espcn --scale 2 --size 640x360 --output BENCHMARKS.md
      streamsr bench --matrix --device cuda --output BENCHMARKS.md
    """
    from ..bench import format_matrix, run_bench, run_matrix

    base = build_config(preset_name, {"model": model, "scale": scale, "device": device, "preset": preset,
                                      "codec": codec, "backend_option": backend_option, "compile_": compile_})
    report = lambda line: click.echo(line, err=True)
    if matrix:
        try:
            batch_list = [int(b) for b in batches.split(",")]
        except ValueError:
            raise click.BadParameter(f"expected numbers, got {batches!r}", param_hint="--batches") from None
        rows = run_matrix(base, models=models.split(","), sizes=[_size(s, "--sizes") for s in sizes.split(",")],
                          precisions=precisions.split(","), batches=batch_list, backends=list(backends) or None,
                          frames=frames, report=report)
        table = format_matrix(rows, base)
    else:
        w, h = _size(size, "--size")
        table = run_bench(base, width=w, height=h, frames=frames, backends=list(backends) or None, report=report)
    click.echo(table)
    if output:
        with open(output, "a") as f:
            f.write(table + "\n")
