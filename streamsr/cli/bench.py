"""``streamsr bench``: per-stage and end-to-end throughput, or the model matrix."""

from __future__ import annotations

import dataclasses

import click

from ..config import PRECISIONS
from ..models.geometry import parse_size
from . import main
from .options import build_config, preset_option

__all__ = ["bench"]


def _size(text: str, hint: str) -> tuple[int, int]:
    from ..errors import ConfigError

    try:
        w, h = parse_size(text, hint)
    except ConfigError as exc:
        raise click.BadParameter(str(exc), param_hint=hint) from None
    if w is None:
        raise click.BadParameter(f"an input size needs both sides (e.g. 640x360), got {text!r}", param_hint=hint)
    return w, h


def _weights(values: tuple[str, ...]) -> tuple[str | None, dict[str, str]]:
    """``--weights FILE`` (every model) and ``--weights MODEL=FILE`` (one model of the matrix)."""
    from ..models.registry import list_models

    shared, per_model = None, {}
    for value in values:
        model, sep, path = value.partition("=")
        if sep and model in list_models():
            per_model[model] = path
        elif shared is None:
            shared = value
        else:
            raise click.BadParameter("give one FILE for every model, or MODEL=FILE per model", param_hint="--weights")
    return shared, per_model


@main.command()
@preset_option
@click.option("--model", default=None, help="Model (default espcn).")
@click.option("--scale", type=float, default=None,
              help="Upscale factor (default: the model's own); any factor (e.g. 2.5) for liif, lte.")
@click.option("--out-size", default=None, metavar="WxH|Np",
              help="Output size instead of --scale (1280x720, or 720p keeping the aspect ratio); a fixed-factor "
                   "model runs its next factor and is resized to it.")
@click.option("--part", default=None, help="Models made of parts (IRN): which part runs (down or up).")
@click.option("--size", default="640x360", show_default=True, help="Input size WxH.")
@click.option("--frames", type=int, default=60, show_default=True)
@click.option("--backend", "backends", multiple=True, help="Backends to measure (default: every available one).")
@click.option("--backend-option", "backend_option", multiple=True, metavar="BACKEND.KEY=VALUE",
              help="An option of a backend's config (as for `streamsr run`).")
@click.option("--weights", multiple=True, metavar="[MODEL=]FILE",
              help="Weights (.safetensors) for the model, or MODEL=FILE for one model of --matrix (repeatable). "
                   "A model without weights (none shipped yet) is measured untrained: same speed.")
@click.option("--device", default="cpu", show_default=True)
@click.option("--preset", default=None, help="x264 preset for the encode stage (default: --for's, else veryfast).")
@click.option("--output", type=click.Path(dir_okay=False), default=None,
              help="Append the results table to this Markdown file (BENCHMARKS.md is the project's record).")
@click.option("--matrix", is_flag=True, help="Model-only and end-to-end fps for every model x size x output x "
                                             "precision x batch.")
@click.option("--models", default="espcn,srresnet,udvd,liif,lte", show_default=True, help="--matrix: models.")
@click.option("--sizes", default="960x540,1280x720", show_default=True, help="--matrix: input sizes.")
@click.option("--requests", default=None, metavar="LIST",
              help="--matrix: outputs asked of every model: scales (2, x2.5), sizes (1280x720) or heights (720p), "
                   "comma-separated; a model that cannot meet one skips it (default: --scale / --out-size, else "
                   "each model's own).")
@click.option("--precisions", default="fp32,fp16", show_default=True, help="--matrix: precisions, each where the backend and the CPU run it (fp16 on CUDA; bf16 "
                   "on torch and openvino, on CUDA or CPUs with AVX512-BF16/AMX; int8 on onnxruntime and openvino, "
                   "calibrated networks).")
@click.option("--batches", default="1,4", show_default=True, help="--matrix: batch sizes.")
@click.option("--codec", default="libx264", show_default=True, help="Encoder of the end-to-end runs.")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the PyTorch backend.")
@click.option("--peer", is_flag=True, help="A 40-line user script (decode, ONNX Runtime per frame, encode) against "
                                           "`streamsr run` (on the first --backend, default onnxruntime, at the "
                                           "first of --precisions), whole processes interleaved, and the realistic "
                                           "bound.")
@click.option("--rounds", type=int, default=3, show_default=True, help="--peer: rounds of each.")
def bench(preset_name, model, scale, out_size, part, size, frames, backends, backend_option, weights, device, preset, output,
          matrix, models, sizes, requests, precisions, batches, codec, compile_, peer, rounds):
    """Measure per-stage and end-to-end throughput against a sequential loop, or (--matrix) the
    model-only and end-to-end fps of every model, size, requested output, precision and batch size.

    \b
    Examples:
      streamsr bench --model espcn --scale 2 --size 640x360 --output BENCHMARKS.md
      streamsr bench --model lte --out-size 1280x720 --size 480x270
      streamsr bench --model irn --scale 2 --part down --size 1280x720    # the sender's end
      streamsr bench --matrix --device cuda --output BENCHMARKS.md
      streamsr bench --matrix --models espcn,liif,lte --sizes 640x360 --requests 1280x720,1080p
      streamsr bench --peer --model espcn --scale 2 --size 640x360 --frames 60
      streamsr bench --peer --backend torch --precisions bf16 --compile     # streamsr on bf16
    """
    from ..bench import run_bench
    from ..bench_matrix import format_matrix, parse_request, run_matrix
    from ..errors import ConfigError

    shared, per_model = _weights(weights)
    base = build_config(preset_name, {"model": model, "scale": scale, "size": out_size, "part": part, "device": device,
                                      "preset": preset, "codec": codec, "backend_option": backend_option,
                                      "compile_": compile_, "weights": shared})
    if base.sink.preset is None:  # the bench's own default, below a --for preset's
        base = dataclasses.replace(base, sink=dataclasses.replace(base.sink, preset="veryfast"))
    report = lambda line: click.echo(line, err=True)
    if peer:
        from ..bench_peer import peer_table

        w, h = _size(size, "--size")
        table = peer_table(base, w, h, frames, rounds, report, backend=backends[0] if backends else "onnxruntime",
                           precision=precisions.split(",")[0])
    elif matrix:
        try:
            batch_list = [int(b) for b in batches.split(",")]
        except ValueError:
            raise click.BadParameter(f"expected numbers, got {batches!r}", param_hint="--batches") from None
        try:
            asked = [parse_request(r, base.part) for r in requests.split(",")] if requests else None
        except ConfigError as exc:
            raise click.BadParameter(str(exc), param_hint="--requests") from None
        wrong = [p for p in precisions.split(",") if p not in PRECISIONS]
        if wrong:
            raise click.BadParameter(f"unknown {', '.join(wrong)}; use {', '.join(PRECISIONS)}", param_hint="--precisions")
        rows = run_matrix(base, models=models.split(","), sizes=[_size(s, "--sizes") for s in sizes.split(",")],
                          requests=asked, precisions=precisions.split(","), batches=batch_list,
                          backends=list(backends) or None, frames=frames, weights=per_model, report=report)
        table = format_matrix(rows, base)
    else:
        if per_model:
            raise click.BadParameter("MODEL=FILE is for --matrix; give the model's FILE", param_hint="--weights")
        w, h = _size(size, "--size")
        table = run_bench(base, width=w, height=h, frames=frames, backends=list(backends) or None, report=report)
    click.echo(table)
    if output:
        with open(output, "a") as f:
            f.write(table + "\n")
