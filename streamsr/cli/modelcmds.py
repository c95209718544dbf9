"""``streamsr models | export | build-engine | engines``: what there is, and graphs/engines of it."""

from __future__ import annotations

import click

from . import main

__all__ = ["build_engine_cmd", "engines", "export", "models"]


def _variant(model: str, scale: float | None, part: str | None):
    """The network ``--model/--scale/--part`` name (refused when the scale or part does not fit)."""
    from ..config import RunConfig
    from ..pipeline.plan import known_variant

    return known_variant(RunConfig(model=model, scale=scale, part=part))


@main.command()
def models():
    """List models, their geometry, shipped weights and parameter counts."""
    from ..models import build_model, count_parameters, get_model, list_models, weights_path

    click.echo(f"{'model':10s} {'scale':>6s} {'params':>9s}  {'weights':32s} description")
    for name in list_models():
        spec = get_model(name)
        for factor in spec.scales or (None,):
            params = count_parameters(build_model(name, factor, pretrained=False))
            path = weights_path(spec, factor)
            shipped = path.name if path else "(none shipped)"
            label = f"x{factor}" if factor is not None else spec.geometry.describe()
            click.echo(f"{name:10s} {label:>6s} {params:>9,d}  {shipped:32s} {spec.description}")


@main.command()
@click.option("--model", default="espcn", show_default=True)
@click.option("--scale", type=float, default=None, help="The factor whose network to export (default: the model's first).")
@click.option("--part", default=None, help="Models made of parts: which part.")
@click.option("--precision", type=click.Choice(["fp32", "fp16"]), default="fp32", show_default=True)
@click.option("--weights", type=click.Path(dir_okay=False), default=None, help="Your own .safetensors weights.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False))
def export(model, scale, part, precision, weights, output):
    """Export a model to ONNX (dynamic batch, height, width) and check it against PyTorch.

    \b
    Example:
      streamsr export --model espcn --scale 2 -o espcn_x2.onnx
    """
    from ..backends.export import export_onnx

    variant = _variant(model, scale, part)
    export_onnx(variant, output, precision=precision, weights=weights, check=True)
    click.echo(f"wrote {output} ({variant.name}, {precision}; inputs: {', '.join(variant.input_names)}; "
               "checked against PyTorch with ONNX Runtime)")


@main.command(name="build-engine")
@click.option("--model", default="espcn", show_default=True)
@click.option("--scale", type=float, default=None, help="The factor whose network to build (default: the model's first).")
@click.option("--part", default=None, help="Models made of parts: which part.")
@click.option("--precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True)
@click.option("--min-shape", default="1x3x64x64", show_default=True, help="Smallest LR image batch NxCxHxW.")
@click.option("--opt-shape", default="1x3x540x960", show_default=True, help="The shape to tune for.")
@click.option("--max-shape", default="4x3x1080x1920", show_default=True, help="Largest LR image batch.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None)
@click.option("--engine-dir", type=click.Path(file_okay=False), default=None, help="Engine cache (user cache).")
def build_engine_cmd(model, scale, part, precision, min_shape, opt_shape, max_shape, weights, engine_dir):
    """Export ONNX and build a TensorRT engine into the engine cache (needs TensorRT and a GPU).

    \b
    Example:
      streamsr build-engine --model udvd --scale 2 --precision fp16 --min-shape 1x3x64x64 \\
          --opt-shape 1x3x540x960 --max-shape 4x3x1080x1920
    """
    from ..backends.engine import ShapeProfile
    from ..backends.tensorrt_backend import TensorRTBackend, TensorRTConfig
    from ..errors import BackendUnavailableError

    profile = ShapeProfile.parse(min_shape, opt_shape, max_shape)
    variant = _variant(model, scale, part)
    if not TensorRTBackend.available("cuda"):
        raise BackendUnavailableError(TensorRTBackend.unavailable_reason("cuda"))
    backend = TensorRTBackend(variant, TensorRTConfig(precision=precision, engine_dir=engine_dir, profile=profile),
                              weights)
    click.echo(f"engine ready: {backend.cache.folder}")
    backend.close()


@main.group()
def engines():
    """List or remove cached TensorRT engines."""


@engines.command(name="list")
@click.option("--engine-dir", type=click.Path(file_okay=False), default=None)
def engines_list(engine_dir):
    """Show cached engines with their size."""
    from ..backends.engine import EngineCache

    cache = EngineCache(engine_dir)
    found = cache.list()
    for p in found:
        click.echo(f"{p.stat().st_size / 2**20:8.1f} MiB  {p.name}")
    click.echo(f"{len(found)} engine(s) in {cache.folder}")


@engines.command(name="clean")
@click.option("--engine-dir", type=click.Path(file_okay=False), default=None)
def engines_clean(engine_dir):
    """Delete every cached engine and the timing cache."""
    from ..backends.engine import EngineCache

    gone = EngineCache(engine_dir).clean()
    click.echo(f"removed {len(gone)} file(s)")
