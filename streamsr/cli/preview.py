"""``streamsr preview``: a local page comparing the model with bicubic (or another model)."""

from __future__ import annotations

import signal
import threading

import click

from . import main
from .options import build_config, degradation_options, inference_options, model_options, preset_option

__all__ = ["preview"]


@main.command()
@click.argument("input_path", metavar="INPUT", type=click.Path(dir_okay=False))
@preset_option
@model_options
@inference_options
@degradation_options
@click.option("--compare", default=None, metavar="bicubic|MODEL[:SCALE]",
              help="What the model is compared with (default bicubic: MATLAB bicubic to the same size).")
@click.option("--reference", type=click.Path(dir_okay=False), default=None,
              help="Ground truth at the output size, frame for frame: per-frame Y-PSNR/SSIM of both renderings.")
@click.option("--port", default="8765", metavar="[HOST:]PORT",
              help="Where the page is served (default 8765 on localhost; a host only when given; 0 = any free port).")
@click.option("--codec", default=None, help="The encoder a run would use (its pixel formats; default libx264).")
@click.option("--pix-fmt", default=None, help="The output pixel format a run would write (default: as run).")
@click.option("--colour-on", type=click.Choice(["auto", "cpu", "device"]), default=None,
              help="Where YUV<->RGB conversion runs, as for run.")
@click.option("-q", "--quiet", is_flag=True, help="Say nothing but errors.")
def preview(input_path, preset_name, compare, reference, port, quiet, **options):
    """Serve a page comparing INPUT upscaled by the model with bicubic (or --compare MODEL).

    Frames are rendered on demand exactly as `streamsr run` gives them to its encoder: wipe or
    side by side, zoom 1:1/2:1/4:1 with drag-to-pan, ←/→ frames, space to play. Stop with Ctrl-C.

    \b
    Examples:
      streamsr preview clip.mp4 --model srresnet --scale 4
      streamsr preview clip.mp4 --model lte --scale 2.5 --compare espcn
      streamsr preview lr.mp4 --model espcn --scale 2 --reference hr.mp4 --port 9000
    """
    from ..ui import Preview, parse_listen, preview_server

    host, number = parse_listen(port, "--port")
    config = build_config(preset_name, options)
    with (Preview(input_path, config, compare=compare, reference=reference) as session,
          preview_server(session, host, number) as server):
        if not quiet:
            info = session.info()
            click.echo(f"streamsr: preview of {info['input']['name']} ({info['input']['frames']} frames, "
                       f"{info['sr']['label']} on {info['sr']['backend']} vs {info['other']['label']}) at "
                       f"{server.url}  (Ctrl-C to stop)", err=True)
        _wait_for_interrupt()
    if not quiet:
        click.echo("streamsr: preview stopped", err=True)


def _wait_for_interrupt() -> None:
    """Serve until Ctrl-C or SIGTERM: the way a page server is stopped, so not an error."""
    done = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
