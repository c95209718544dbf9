"""Evaluate the any-scale models (LIIF, LTE) on the validation photos and write MODELS.md's part
between the any-scale markers.

    python tools/prepare_data.py          # once: data/val from opencv-doc
    python tools/eval_any_scale.py        # rewrites the part of MODELS.md between the markers

Protocol (LIIF's arbitrary-scale one on the BasicSR measures): LR = floor(HR / s) per axis by
MATLAB bicubic, HR cropped to round(LR · s), output rounded to uint8, Y-PSNR with ceil(s) border
pixels cropped. A fixed-factor model at a fractional s runs as `streamsr run --size` does: its
smallest factor that reaches the size, then swscale's Lanczos down to it (the Video2X approach).
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from streamsr.backends import create_backend
from streamsr.bench import network_gflop
from streamsr.evaluate import Upscaler, iter_items, score_image
from streamsr.models import ScaleRequest, get_model, resolve_geometry
from streamsr.models.registry import count_parameters

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT / "data" / "val"
BEGIN, END = "<!-- any-scale:begin -->", "<!-- any-scale:end -->"
SCALES = (1.5, 2, 2.5, 3, 3.5, 4, 6, 8)
ANY = ("liif", "lte")
FIXED = ("espcn", "srcnn", "srresnet", "udvd")


def _upscaler(name: str, scale: float, weights: dict[str, str]) -> Upscaler:
    spec = get_model(name)
    factor = None
    if spec.scales:  # the factor `run --size` would use
        nominal = (round(960 * scale), round(960 * scale))
        factor = resolve_geometry(spec, ScaleRequest(size=nominal), 960, 960).factor
    backend = create_backend("torch", spec.variant(factor), device="cpu", weights=weights.get(name))
    return Upscaler(backend)


def gains(name: str, scale: float, images, weights) -> list[float]:
    """Y-PSNR gain over bicubic of ``name`` at ``scale`` on each image (UDVD told "clean")."""
    up = _upscaler(name, scale, weights)
    try:
        return [score_image(up, hr, scale, n).gain for n, hr in images]
    finally:
        up.backend.close()


def _cost(name: str, scale: float) -> tuple[int, float]:
    """(parameters, GFLOP per output megapixel) at ``scale`` from a 256x256 input."""
    spec = get_model(name)
    factor = None if not spec.scales else resolve_geometry(spec, ScaleRequest(size=(round(256 * scale),) * 2), 256,
                                                           256).factor
    variant = spec.variant(factor)
    net = (256 * (factor or scale), 256 * (factor or scale))
    gflop = network_gflop(variant, (256, 256), tuple(round(v) for v in net))
    return count_parameters(variant.build(pretrained=False)), gflop / (net[0] * net[1] / 1e6)


def section(images, weights) -> str:
    table: dict[tuple[str, float], float] = {}
    for name in ANY:
        for s in SCALES:
            table[name, s] = float(np.mean(gains(name, s, images, weights)))
            print(f"{name} x{s:g}: {table[name, s]:+.2f}", flush=True)
    for name in FIXED:
        for s in SCALES:
            spec = get_model(name)
            if max(spec.scales) >= s:
                table[name, s] = float(np.mean(gains(name, s, images, weights)))
                print(f"{name} x{s:g}: {table[name, s]:+.2f}", flush=True)
    head = "| model | params | GFLOP / output MP (x2) | " + " | ".join(f"x{s:g}" for s in SCALES) + " |"
    lines = [(f"Mean Y-PSNR gain over MATLAB bicubic on the {len(images)} validation photos (dB); ×6 and ×8 are "
              "outside the training range (s ~ U(1, 4)). Fixed-factor models at a factor they lack run their next "
              "factor and are resized (Lanczos), as `run --size` does; a blank is a factor beyond their largest.\n"),
             head, "|---|---|---|" + "---|" * len(SCALES)]
    for name in ANY + FIXED:
        params, gflop = _cost(name, 2)
        cells = " | ".join(f"{table[name, s]:+.2f}" if (name, s) in table else "" for s in SCALES)
        lines.append(f"| {name} | {params:,} | {gflop:.2f} | {cells} |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", action="append", default=[], metavar="MODEL=FILE",
                        help="weights other than the shipped ones (e.g. a training checkpoint)")
    parser.add_argument("--limit", type=int, default=None, help="the first N photos only (a quick check)")
    parser.add_argument("--print", action="store_true", help="print instead of rewriting MODELS.md")
    args = parser.parse_args(argv)
    weights = dict(item.split("=", 1) for item in args.weights)
    images = list(iter_items(VAL))[: args.limit]
    text = section(images, weights)
    if args.print:
        print(text)
        return
    doc = ROOT / "MODELS.md"
    generated = f"{BEGIN}\n{text}{END}"
    doc.write_text(re.sub(re.escape(BEGIN) + ".*" + re.escape(END), lambda _: generated, doc.read_text(), flags=re.DOTALL))


if __name__ == "__main__":
    main()
