"""Evaluate the shipped weights on the validation photos and write MODELS.md's generated part.

    python tools/prepare_data.py      # once: data/val from opencv-doc
    python tools/eval_weights.py      # rewrites the part of MODELS.md between the eval markers

Protocol (BasicSR): HR cropped to a multiple of the scale, LR by MATLAB bicubic (after a blur, and
with Gaussian noise added, for the degraded settings; noise seeded per image so every model sees the
same input), output rounded to uint8, PSNR/SSIM on Y with `scale` border pixels cropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from streamsr.backends import create_backend
from streamsr.degradation import Degradation
from streamsr.evaluate import Upscaler, score_items
from streamsr.models import get_model, list_models, weights_path

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT / "data" / "val"
BEGIN, END = "<!-- eval:begin -->", "<!-- eval:end -->"
GRID_BLUR = (0.0, 1.0, 1.6, 2.0)
GRID_NOISE = (0.0, 10.0, 30.0)


_BACKENDS: dict = {}


def mean_psnr(name: str, scale: int, deg: Degradation | None, auto: bool = False) -> tuple[float, float]:
    spec = get_model(name, scale)
    if (name, scale) not in _BACKENDS:
        _BACKENDS[name, scale] = create_backend("onnxruntime", spec, scale, device="cpu")
    scores = score_items(Upscaler(_BACKENDS[name, scale], spec, deg, noise_auto=auto), VAL, scale, deg)
    return float(np.mean([s.psnr for s in scores])), float(np.mean([s.psnr_bicubic for s in scores]))


def clean_table(name: str, scale: int) -> str:
    spec = get_model(name, scale)
    path = weights_path(spec, scale)
    backend = create_backend("onnxruntime", spec, scale, device="cpu")
    try:
        scores = score_items(Upscaler(backend, spec), VAL, scale)
    finally:
        backend.close()
    recipe = json.loads(path.with_suffix(".json").read_text())
    rows = "\n".join(f"| {s.name} | {s.psnr_bicubic:.2f} | {s.psnr:.2f} | {s.gain:+.2f} | {s.ssim_bicubic:.4f} | "
                     f"{s.ssim:.4f} |" for s in scores)
    m = {k: float(np.mean([getattr(s, k) for s in scores])) for k in ("psnr", "psnr_bicubic", "ssim", "ssim_bicubic")}
    gains = sorted(s.gain for s in scores)
    print(f"{name} x{scale}: {m['psnr']:.2f} vs bicubic {m['psnr_bicubic']:.2f} ({m['psnr'] - m['psnr_bicubic']:+.2f})")
    kwargs = recipe.get("model_kwargs") or {}
    return (f"### {name} x{scale}: {m['psnr'] - m['psnr_bicubic']:+.2f} dB over bicubic (median {np.median(gains):+.2f})\n\n"
            f"`{path.name}`, {recipe['parameters']:,} parameters{', variant ' + json.dumps(kwargs) if kwargs else ''}, "
            f"{recipe['iterations']:,} iterations (batch {recipe['batch']}, LR patch {recipe['lr_patch']}, "
            f"loss {recipe['loss']}), {recipe['wall_seconds'] / 60:.0f} min on {recipe['hardware']}.\n\n"
            "| image | bicubic PSNR | model PSNR | gain | bicubic SSIM | model SSIM |\n|---|---|---|---|---|---|\n"
            f"{rows}\n| **mean** | **{m['psnr_bicubic']:.2f}** | **{m['psnr']:.2f}** | "
            f"**{m['psnr'] - m['psnr_bicubic']:+.2f}** | **{m['ssim_bicubic']:.4f}** | **{m['ssim']:.4f}** |\n")


def udvd_grid(scale: int) -> str:
    lines = [f"### UDVD x{scale} against the others on degraded input (mean Y-PSNR, dB)\n",
             "UDVD is told the blur and noise (`told`) or estimates the noise itself (`auto`, as "
             "`--noise auto`); ESPCN and SRResNet are trained on clean bicubic LR and are not told anything.\n",
             "| blur | noise σ | bicubic | ESPCN | SRResNet | UDVD told | UDVD auto |", "|---|---|---|---|---|---|---|"]
    for blur in GRID_BLUR:
        for noise in GRID_NOISE:
            deg = Degradation(blur=blur, noise=noise)
            udvd, bic = mean_psnr("udvd", scale, deg)
            auto, _ = mean_psnr("udvd", scale, deg, auto=True)
            espcn, _ = mean_psnr("espcn", scale, deg)
            srres, _ = mean_psnr("srresnet", scale, deg)
            lines.append(f"| {blur:g} | {noise:g} | {bic:.2f} | {espcn:.2f} | {srres:.2f} | **{udvd:.2f}** | {auto:.2f} |")
            print(lines[-1], flush=True)
    return "\n".join(lines) + "\n"


def main() -> None:
    parts = []
    for name in list_models():
        for scale in get_model(name).scales:
            if weights_path(get_model(name), scale) is not None:
                parts.append(clean_table(name, scale))
    parts.append(udvd_grid(2))
    doc = ROOT / "MODELS.md"
    generated = f"{BEGIN}\n" + "\n".join(parts) + f"{END}"
    doc.write_text(re.sub(re.escape(BEGIN) + ".*" + re.escape(END), lambda _: generated, doc.read_text(), flags=re.S))


if __name__ == "__main__":
    main()
