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
from streamsr.degradation import Degradation, degrade
from streamsr.evaluate import Upscaler, iter_items, score_items
from streamsr.metrics import bicubic_upscale, psnr_y
from streamsr.models import get_model, list_models, weights_path

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT / "data" / "val"
BEGIN, END = "<!-- eval:begin -->", "<!-- eval:end -->"
GRID_BLUR = (0.0, 1.0, 1.6, 2.0)
GRID_NOISE = (0.0, 10.0, 30.0)


_BACKENDS: dict = {}


def _backend(name: str, scale: int):
    if (name, scale) not in _BACKENDS:
        _BACKENDS[name, scale] = create_backend("onnxruntime", get_model(name, scale).variant(scale), device="cpu")
    return _BACKENDS[name, scale]


def grid_cell(images: list[np.ndarray], scale: int, deg: Degradation) -> dict[str, float]:
    """Mean Y-PSNR of bicubic, ESPCN, SRResNet and UDVD (told / estimating the noise) on the same
    degraded LR images (noise seeded per image)."""
    ups = {
        "espcn": Upscaler(_backend("espcn", scale), deg),
        "srresnet": Upscaler(_backend("srresnet", scale), deg),
        "udvd": Upscaler(_backend("udvd", scale), deg),
        "udvd_auto": Upscaler(_backend("udvd", scale), deg, noise_auto=True),
    }
    sums = {k: [] for k in ["bicubic", *ups]}
    for i, hr in enumerate(images):
        lr = degrade(hr, scale, deg.kernel_array(), deg.noise, np.random.default_rng(i))
        sums["bicubic"].append(psnr_y(bicubic_upscale(lr, scale), hr, scale))
        for key, up in ups.items():
            sums[key].append(psnr_y(up(lr), hr, scale))
    return {k: float(np.mean(v)) for k, v in sums.items()}


def clean_table(name: str, scale: int) -> str:
    spec = get_model(name, scale)
    path = weights_path(spec, scale)
    scores = score_items(Upscaler(_backend(name, scale)), VAL, scale)
    recipe = json.loads(path.with_suffix(".json").read_text())
    rows = "\n".join(f"| {s.name} | {s.psnr_bicubic:.2f} | {s.psnr:.2f} | {s.gain:+.2f} | {s.ssim_bicubic:.4f} | "
                     f"{s.ssim:.4f} |" for s in scores)
    m = {k: float(np.mean([getattr(s, k) for s in scores])) for k in ("psnr", "psnr_bicubic", "ssim", "ssim_bicubic")}
    gains = sorted(s.gain for s in scores)
    print(f"{name} x{scale}: {m['psnr']:.2f} vs bicubic {m['psnr_bicubic']:.2f} ({m['psnr'] - m['psnr_bicubic']:+.2f})")
    kwargs = recipe.get("model_kwargs") or {}
    chain, r = [], recipe  # a fine-tuned model carries the recipe it started from
    while r:
        chain.append(r)
        r = r.get("init_recipe")
    iterations, wall = sum(c["iterations"] for c in chain), sum(c["wall_seconds"] for c in chain)
    stages = f" in {len(chain)} stages, each fine-tuning the one before" if len(chain) > 1 else ""
    return (f"### {name} x{scale}: {m['psnr'] - m['psnr_bicubic']:+.2f} dB over bicubic (median {np.median(gains):+.2f})\n\n"
            f"`{path.name}`, {recipe['parameters']:,} parameters{', variant ' + json.dumps(kwargs) if kwargs else ''}, "
            f"{iterations:,} iterations{stages} (batch {recipe['batch']}, LR patch {recipe['lr_patch']}, "
            f"loss {recipe['loss']}), {wall / 60:.0f} min on {recipe['hardware']}.\n\n"
            "| image | bicubic PSNR | model PSNR | gain | bicubic SSIM | model SSIM |\n|---|---|---|---|---|---|\n"
            f"{rows}\n| **mean** | **{m['psnr_bicubic']:.2f}** | **{m['psnr']:.2f}** | "
            f"**{m['psnr'] - m['psnr_bicubic']:+.2f}** | **{m['ssim_bicubic']:.4f}** | **{m['ssim']:.4f}** |\n")


def _centre_crop(img: np.ndarray, size: int = 256) -> np.ndarray:
    h, w = img.shape[:2]
    y, x = max(0, (h - size) // 2), max(0, (w - size) // 2)
    return img[y : y + size, x : x + size]


def udvd_grid(scale: int) -> str:
    images = [_centre_crop(hr) for _, hr in iter_items(VAL)]
    lines = [f"### UDVD x{scale} against the others on degraded input (mean Y-PSNR, dB)\n",
             (f"Central 256x256 crop of each of the {len(images)} validation photos, blur then MATLAB-bicubic "
              "downscaling, then noise (seeded per image, the same for every model). UDVD is told the blur and "
              "noise (`told`) or is told the blur and estimates the noise itself (`auto`, as `--noise auto`); "
              "ESPCN and SRResNet are trained on clean bicubic LR.\n"),
             "| blur | noise σ | bicubic | ESPCN | SRResNet | UDVD told | UDVD auto |", "|---|---|---|---|---|---|---|"]
    for blur in GRID_BLUR:
        for noise in GRID_NOISE:
            r = grid_cell(images, scale, Degradation(blur=blur, noise=noise))
            lines.append(f"| {blur:g} | {noise:g} | {r['bicubic']:.2f} | {r['espcn']:.2f} | {r['srresnet']:.2f} | "
                         f"**{r['udvd']:.2f}** | {r['udvd_auto']:.2f} |")
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
    doc.write_text(re.sub(re.escape(BEGIN) + ".*" + re.escape(END), lambda _: generated, doc.read_text(), flags=re.DOTALL))


if __name__ == "__main__":
    main()
