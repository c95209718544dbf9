"""``streamsr train | eval``: train a model from a config, score one against bicubic."""

from __future__ import annotations

import json
import sys
import time

import click

from . import main
from .options import build_config, degradation_options, inference_options, model_options, preset_option

__all__ = ["evaluate", "train"]


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
    from ..training import load_train_config
    from ..training import train as run_training

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
@preset_option
@model_options
@inference_options
@degradation_options
@click.option("--synth-noise", type=float, default=None,
              help="Noise σ added to the synthesized LR (default: the --noise number; 0 with --noise auto).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def evaluate(path, preset_name, synth_noise, as_json, **options):
    """Y-PSNR/SSIM of a model against bicubic on an image folder or a video (BasicSR protocol).

    The LR input is synthesized from each image: blurred by --blur, MATLAB-bicubic downscaled,
    quantized, and given noise (--synth-noise, else --noise). A degradation-aware model (UDVD) is
    told --blur and --noise (auto: it estimates the noise from the LR, as `run` does).

    \b
    Examples:
      streamsr eval data/val --model espcn --scale 2
      streamsr eval data/val --model udvd --scale 2 --blur 1.6 --noise 10
      streamsr eval clip.mp4 --model udvd --scale 2 --blur 1.6 --noise auto --synth-noise 10 --json
      streamsr eval data/val --model lte --scale 2.5     # any scale (LR = floor(HR / 2.5))
      streamsr eval data/val --model espcn --scale 1.5   # ESPCN x2, then resized as `run --size` does
    """
    import numpy as np

    from ..backends.choice import load_backend
    from ..backends.tiling import TiledBackend
    from ..degradation import Degradation
    from ..errors import ConfigError
    from ..evaluate import Upscaler, score_items
    from ..models.geometry import ScaleRequest, resolve_geometry
    from ..models.registry import get_model

    config = build_config(preset_name, options)
    if config.size is not None or config.model == "auto":
        raise ConfigError("eval synthesizes the LR from each image by a factor: give --model and --scale, not --size")
    spec = get_model(config.model)
    scale = config.scale if config.scale is not None else (spec.scales[0] if spec.scales else 2.0)
    # a fixed-factor model at a factor it lacks runs as `run --size` would: its next factor, resized
    nominal = (round(960 * scale), round(960 * scale))
    variant = spec.variant(resolve_geometry(spec, ScaleRequest(size=nominal), 960, 960).factor)
    blur = config.blur or 0.0
    added = synth_noise if synth_noise is not None else (config.noise or 0.0)
    degradation = Degradation(blur=blur, noise=added) if (blur or added) else None
    told = Degradation(blur=blur, noise=config.noise if config.noise is not None else added)
    backend = load_backend(config, variant)
    if config.tile:
        backend = TiledBackend(backend, config.tile, config.tile_overlap)
    try:
        upscaler = Upscaler(backend, told, noise_auto=config.noise is None and options.get("noise") == "auto")
        scores = score_items(upscaler, path, scale, degradation)
    finally:
        backend.close()
    if not scores:
        raise ConfigError(f"no images or frames to evaluate in {path}")
    mean = {k: float(np.mean([getattr(s, k) for s in scores])) for k in ("psnr", "ssim", "psnr_bicubic", "ssim_bicubic")}
    name = variant.spec.name
    if as_json:
        click.echo(json.dumps({"model": name, "scale": scale, "network": variant.name, "backend": backend.name,
                               "degradation": {"blur": blur, "noise": added, "noise_auto": upscaler.noise_auto},
                               "items": [dict(s.__dict__, gain=s.gain) for s in scores],
                               "mean": dict(mean, gain=mean["psnr"] - mean["psnr_bicubic"])}, indent=2))
        return
    click.echo(f"{'item':20s} {'bicubic':>8s} {name:>8s} {'gain':>6s}  {'SSIM bic':>8s} {'SSIM':>6s}")
    for s in scores:
        click.echo(f"{s.name[:20]:20s} {s.psnr_bicubic:8.2f} {s.psnr:8.2f} {s.gain:+6.2f}  {s.ssim_bicubic:8.4f} {s.ssim:6.4f}")
    click.echo(f"{'mean':20s} {mean['psnr_bicubic']:8.2f} {mean['psnr']:8.2f} {mean['psnr'] - mean['psnr_bicubic']:+6.2f}"
               f"  {mean['ssim_bicubic']:8.4f} {mean['ssim']:6.4f}")
