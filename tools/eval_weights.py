"""Evaluate every shipped weight file on the validation photos and write MODELS.md's tables.

    python tools/prepare_data.py      # once: data/val from opencv-doc
    python tools/eval_weights.py      # rewrites the generated part of MODELS.md

Protocol (BasicSR): HR cropped to a multiple of the scale, LR by MATLAB bicubic, output clamped and
rounded to uint8, PSNR/SSIM on Y (BT.601) with `scale` border pixels cropped.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from streamsr.evaluate import score_folder
from streamsr.models import build_model, get_model, list_models, weights_path

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- eval:begin -->", "<!-- eval:end -->"


def main() -> None:
    val = ROOT / "data" / "val"
    parts = []
    for name in list_models():
        spec = get_model(name)
        for scale in spec.scales:
            path = weights_path(spec, scale)
            if path is None:
                continue
            scores = score_folder(build_model(name, scale), val, scale)
            recipe = json.loads(path.with_suffix(".json").read_text())
            rows = "\n".join(
                f"| {s.name} | {s.psnr_bicubic:.2f} | {s.psnr:.2f} | {s.gain:+.2f} | {s.ssim_bicubic:.4f} | {s.ssim:.4f} |"
                for s in scores
            )
            mean = lambda xs: float(np.mean(xs))  # noqa: E731
            pb, ps = mean([s.psnr_bicubic for s in scores]), mean([s.psnr for s in scores])
            sb, ss = mean([s.ssim_bicubic for s in scores]), mean([s.ssim for s in scores])
            parts.append(
                f"### {name} x{scale}: {ps - pb:+.2f} dB over bicubic\n\n"
                f"`{path.name}`, {recipe['parameters']:,} parameters, {recipe['iterations']:,} iterations "
                f"(batch {recipe['batch']}, LR patch {recipe['lr_patch']}), {recipe['wall_seconds'] / 60:.0f} min on "
                f"{recipe['hardware']}.\n\n"
                "| image | bicubic PSNR | model PSNR | gain | bicubic SSIM | model SSIM |\n|---|---|---|---|---|---|\n"
                f"{rows}\n| **mean** | **{pb:.2f}** | **{ps:.2f}** | **{ps - pb:+.2f}** | **{sb:.4f}** | **{ss:.4f}** |\n"
            )
            print(f"{name} x{scale}: {ps:.2f} dB vs bicubic {pb:.2f} ({ps - pb:+.2f})")
    doc = ROOT / "MODELS.md"
    text = doc.read_text()
    generated = f"{BEGIN}\n" + "\n".join(parts) + f"{END}"
    doc.write_text(re.sub(re.escape(BEGIN) + ".*" + re.escape(END), lambda _: generated, text, flags=re.S))


if __name__ == "__main__":
    main()
