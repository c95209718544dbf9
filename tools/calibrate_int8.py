"""Calibrate int8: the range of every quantized activation (each convolution's input, see
streamsr/backends/int8.py) of every network that runs in int8, over LR patches of the training
images, written to streamsr/data/int8_ranges.json (shipped: a run quantizes the cached fp32 graph
with it, once).

    python tools/prepare_data.py              # once: data/train
    python tools/calibrate_int8.py            # every calibrated network, with its shipped weights
    python tools/calibrate_int8.py --models espcn --merge

Networks: the learned fixed-factor ones whose inputs all lie on the LR grid (ESPCN, SRCNN,
SRResNet, SRGAN, UDVD: ``int8.eligible``). IRN (a pair that must invert each other closely: bf16
already costs its round trip 0.10 dB) and the any-scale networks (float32 query coordinates) stay
fp32/bf16. Patches: MATLAB-bicubic downscales of random crops of data/train (seed 0; images
smaller than a crop skipped). For UDVD each patch gets Gaussian noise and is told a blur, both
cycling over the ranges it was trained on (RECIPE: noise σ 0-50, blur σ 0 to the scale), so that
no condition a run tells it lies outside the calibrated ranges. Ranges are the min and max seen
(a 99.999th percentile instead changed ESPCN x2 by 0.002 dB). The loss against fp32 goes into the quality table: tools/eval_precision.py --precisions int8.
"""

from __future__ import annotations

import argparse
import datetime
import json
from pathlib import Path

import numpy as np

from streamsr.backends.export import GraphKey, cached_onnx
from streamsr.backends.int8 import RANGES_TABLE, collect_ranges, eligible
from streamsr.degradation import Degradation
from streamsr.evaluate import load_rgb
from streamsr.metrics import downscale
from streamsr.models import get_model, list_models, weights_path
from streamsr.models.inputs import Conditioning, InputAssembler

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / "data" / "train"
RECIPE = {"source": "data/train (wallpapers, skimage)", "patches": 64, "lr_patch": 96, "seed": 0,
          "ranges": "min/max", "noise_levels": [0, 5, 15, 30, 50],
          "blurs_times_scale": [0, 0.25, 0.5, 0.75, 1.0]}


def networks(models=None):
    """The variants calibrated: those int8 is for (``int8.eligible``) with shipped weights."""
    for name in models or list_models():
        spec = get_model(name)
        for factor in spec.scales:
            for part in spec.parts:
                variant = spec.variant(factor, part)
                if eligible(variant) and weights_path(spec, factor) is not None:
                    yield variant


def feeds(variant, count: int, patch: int, seed: int):
    """The calibration inputs: ``count`` LR patches (N=1) with their degradation maps."""
    rng = np.random.default_rng(seed)
    files = sorted(p for p in TRAIN.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    assembler = InputAssembler(variant.inputs)
    blurs, levels = RECIPE["blurs_times_scale"], RECIPE["noise_levels"]
    side = patch * variant.factor
    images = (img for i in range(count * len(files)) if min((img := load_rgb(files[i % len(files)])).shape[:2]) > side)
    for i, img in zip(range(count), images):
        y, x = rng.integers(0, img.shape[0] - side), rng.integers(0, img.shape[1] - side)
        lr = downscale(img[y:y + side, x:x + side], variant.factor).astype(np.float32) / 255.0
        blur = blurs[i % len(blurs)] * variant.factor
        sigma = levels[i // len(blurs) % len(levels)] if variant.spec.conditioned else 0
        lr = np.clip(lr + rng.normal(0, sigma / 255.0, lr.shape), 0, 1).astype(np.float32)
        batch = np.ascontiguousarray(lr.transpose(2, 0, 1)[None])
        cond = Conditioning(Degradation(blur=blur).code(), float(sigma))
        extra = assembler.arrays([cond], patch, patch) if assembler.inputs else {}
        yield {variant.input_names[0]: batch, **extra}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", help="comma-separated model names (default: every one that qualifies)")
    ap.add_argument("--output", type=Path, default=RANGES_TABLE)
    ap.add_argument("--merge", action="store_true", help="keep the table's other networks")
    args = ap.parse_args(argv)

    table = json.loads(args.output.read_text()) if args.merge and args.output.exists() else {}
    variants = dict(table.get("variants", {}))
    for variant in networks(args.models.split(",") if args.models else None):
        fp32, _ = cached_onnx(variant)
        ranges = collect_ranges(fp32, feeds(variant, RECIPE["patches"], RECIPE["lr_patch"], RECIPE["seed"]))
        variants[variant.name] = {"weights": GraphKey.make(variant).weights,
                                  "tensors": {n: [round(lo, 6), round(hi, 6)] for n, (lo, hi) in ranges.items()}}
        print(f"{variant.name}: {len(ranges)} tensors", flush=True)
    out = {"recipe": RECIPE, "date": datetime.date.today().isoformat(), "variants": dict(sorted(variants.items()))}
    args.output.write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
