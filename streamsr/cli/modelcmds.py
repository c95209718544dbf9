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

    rows = []
    for name in list_models():
        spec = get_model(name)
        for factor in spec.scales or (None,):
            params = count_parameters(build_model(name, factor, pretrained=False))
            path = weights_path(spec, factor)
            shipped = path.name if path else "(none shipped)" if spec.learned else "(a fixed filter)"
            label = spec.geometry.describe() if factor is None else (
                f"x{factor} " + "/".join(p for p, _ in spec.geometry.directions) if spec.part_inputs else f"x{factor}")
            rows.append((name, label, params, shipped, spec.description))
    width = max(len(r[1]) for r in rows)
    click.echo(f"{'model':10s} {'scale':>{width}s} {'params':>9s}  {'weights':24s} description")
    for name, label, params, shipped, description in rows:
        click.echo(f"{name:10s} {label:>{width}s} {params:>9,d}  {shipped:24s} {description}")


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


def _engine_profile(variant, scale: float | None, size: str | None, shapes: tuple[str, str, str],
                    out_shape: str | None):
    """The shape profile of ``build-engine``: the LR ``shapes`` (min, opt, max) and, for a model
    that takes any scale, the output's sizes: ``out_shape`` (``MIN,OPT,MAX`` as HxW), else those
    ``--scale`` or ``--size`` give each LR shape (:func:`~streamsr.models.geometry.resolve_geometry`).

    Raises:
        ConfigError: output sizes missing for a model that takes any scale, or given for one that
            does not; UnsupportedScaleError: an LR shape the scale or size does not fit.
    """
    from dataclasses import replace

    from ..backends.engine import ShapeProfile, needs_output_size
    from ..errors import ConfigError
    from ..models.geometry import ScaleRequest, parse_size, resolve_geometry

    profile = ShapeProfile.parse(*shapes)
    if not needs_output_size(variant.inputs):
        if size is not None or out_shape is not None:
            raise ConfigError(f"{variant.name}'s output size follows from its input's: build it with --scale, "
                              "without --size or --out-shape")
        return profile
    if out_shape is not None:
        return ShapeProfile.from_text(",".join((*shapes, out_shape)))
    if scale is None and size is None:
        raise ConfigError(f"model {variant.spec.name!r} takes any scale: say which outputs the engine is for with "
                          "--scale, --size WxH or --out-shape MIN,OPT,MAX (HxW each)")
    request = ScaleRequest(scale=scale, size=parse_size(size) if size is not None else None)
    nets = [resolve_geometry(variant.spec, request, s.w, s.h).net_size for s in (profile.min, profile.opt, profile.max)]
    return replace(profile, out=tuple((h, w) for w, h in nets))


@main.command(name="build-engine")
@click.option("--model", default="espcn", show_default=True)
@click.option("--scale", type=float, default=None, help="The factor whose network to build (default: the model's "
              "first); for a model that takes any scale, the factor the engine's output sizes are for.")
@click.option("--size", default=None, help="A model that takes any scale: the output size the engine is for "
              "(as run's --size).")
@click.option("--out-shape", default=None, help="A model that takes any scale: the output's MIN,OPT,MAX sizes "
              "(HxW each, e.g. 128x128,1080x1920,2160x3840), instead of --scale/--size.")
@click.option("--part", default=None, help="Models made of parts: which part.")
@click.option("--precision", type=click.Choice(["fp16", "fp32"]), default="fp16", show_default=True)
@click.option("--min-shape", default="1x3x64x64", show_default=True, help="Smallest LR image batch NxCxHxW.")
@click.option("--opt-shape", default="1x3x540x960", show_default=True, help="The shape to tune for.")
@click.option("--max-shape", default="4x3x1080x1920", show_default=True, help="Largest LR image batch.")
@click.option("--weights", type=click.Path(dir_okay=False), default=None)
@click.option("--engine-dir", type=click.Path(file_okay=False), default=None, help="Engine cache (user cache).")
def build_engine_cmd(model, scale, size, out_shape, part, precision, min_shape, opt_shape, max_shape, weights,
                     engine_dir):
    """Export ONNX and build a TensorRT engine into the engine cache (needs TensorRT and a GPU).

    \b
    Examples:
      streamsr build-engine --model udvd --scale 2 --precision fp16 --min-shape 1x3x64x64 \\
          --opt-shape 1x3x540x960 --max-shape 4x3x1080x1920
      streamsr build-engine --model liif --scale 2.5 --max-shape 1x3x720x1280
    """
    from ..backends.tensorrt_backend import TensorRTBackend, TensorRTConfig
    from ..errors import BackendUnavailableError

    variant = _variant(model, scale, part)
    profile = _engine_profile(variant, scale, size, (min_shape, opt_shape, max_shape), out_shape)
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
