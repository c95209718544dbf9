"""Train a registered model (ESPCN by default) on the prepared offline images and ship the weights.

    python tools/prepare_data.py            # once
    python tools/train_espcn.py --scale 2 --minutes 12

Recipe: HR patches from data/train, LR by MATLAB bicubic (streamsr.metrics.downscale, computed per
whole image so borders match evaluation), random flips and 90° rotations, MSE loss, Adam with a
cosine schedule, time-bounded. Writes streamsr/models/weights/{model}_x{scale}.safetensors with the
recipe in its metadata and prints the validation table (data/val, Y-PSNR vs bicubic).
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import random
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from streamsr.evaluate import load_rgb, score_folder
from streamsr.metrics import downscale
from streamsr.models import count_parameters, get_model

WEIGHTS = Path(__file__).resolve().parents[1] / "streamsr" / "models" / "weights"


class PatchSampler:
    """Random aligned LR/HR patch pairs from whole-image LR synthesis."""

    def __init__(self, folder: Path, scale: int, lr_patch: int, seed: int):
        self.scale, self.lr_patch = scale, lr_patch
        self.rng = np.random.default_rng(seed)
        self.pairs = []
        for p in sorted(folder.glob("*.png")):
            hr = load_rgb(p)
            h, w = hr.shape[:2]
            hr = hr[: h - h % scale, : w - w % scale]
            self.pairs.append((downscale(hr, scale), hr))
        areas = np.array([lr.shape[0] * lr.shape[1] for lr, _ in self.pairs], dtype=np.float64)
        self.prob = areas / areas.sum()

    def batch(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        s, p = self.scale, self.lr_patch
        lrs, hrs = [], []
        for k in self.rng.choice(len(self.pairs), size=n, p=self.prob):
            lr, hr = self.pairs[k]
            y = self.rng.integers(0, lr.shape[0] - p + 1)
            x = self.rng.integers(0, lr.shape[1] - p + 1)
            a, b = lr[y : y + p, x : x + p], hr[y * s : (y + p) * s, x * s : (x + p) * s]
            rot = int(self.rng.integers(4))
            a, b = np.rot90(a, rot), np.rot90(b, rot)
            if self.rng.random() < 0.5:
                a, b = a[:, ::-1], b[:, ::-1]
            lrs.append(np.ascontiguousarray(a))
            hrs.append(np.ascontiguousarray(b))
        to_t = lambda xs: torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float().div_(255)  # noqa: E731
        return to_t(lrs), to_t(hrs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="espcn")
    ap.add_argument("--scale", type=int, required=True)
    ap.add_argument("--data", type=Path, default=Path("data"))
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--iters", type=int, default=100000, help="upper bound; time usually ends first")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr-patch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--init", type=Path, help="start from these .safetensors weights")
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    spec = get_model(args.model, args.scale)
    model = spec.factory(args.scale)
    if args.init:
        from streamsr.models import load_weights

        load_weights(model, args.init)
    sampler = PatchSampler(args.data / "train", args.scale, args.lr_patch, args.seed)
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    budget = args.minutes * 60
    start = time.monotonic()
    it, loss_avg = 0, 0.0
    model.train()
    while it < args.iters:
        frac = (time.monotonic() - start) / budget
        if frac >= 1:
            break
        for g in opt.param_groups:  # cosine over wall time, so the schedule ends with the budget
            g["lr"] = 1e-6 + 0.5 * (args.lr - 1e-6) * (1 + math.cos(math.pi * frac))
        lr, hr = sampler.batch(args.batch)
        loss = torch.nn.functional.mse_loss(model(lr), hr)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        it += 1
        loss_avg = 0.98 * loss_avg + 0.02 * loss.item() if it > 1 else loss.item()
        if it % 500 == 0:
            print(f"it {it} loss {loss_avg:.5f} lr {opt.param_groups[0]['lr']:.2e} "
                  f"{time.monotonic() - start:.0f}s", flush=True)
    wall = time.monotonic() - start
    model.eval()
    scores = score_folder(model, args.data / "val", args.scale)
    for s in scores:
        print(f"{s.name:16s} {s.psnr:6.2f} dB  bicubic {s.psnr_bicubic:6.2f}  gain {s.gain:+.2f}")
    mean = lambda xs: float(np.mean(xs))  # noqa: E731
    result = {
        "psnr_y": round(mean([s.psnr for s in scores]), 3),
        "psnr_y_bicubic": round(mean([s.psnr_bicubic for s in scores]), 3),
        "ssim_y": round(mean([s.ssim for s in scores]), 4),
        "ssim_y_bicubic": round(mean([s.ssim_bicubic for s in scores]), 4),
    }
    result["gain_db"] = round(result["psnr_y"] - result["psnr_y_bicubic"], 3)
    print(json.dumps(result))
    recipe = {
        "model": args.model, "scale": args.scale, "iterations": it, "batch": args.batch,
        "lr_patch": args.lr_patch, "loss": "mse", "optimizer": f"adam lr {args.lr} cosine to 1e-6",
        "augment": "rot90 + hflip", "seed": args.seed,
        "train_data": "plasma-workspace-wallpapers, ukui-wallpapers, skimage/data RGB (tools/prepare_data.py)",
        "val_data": "opencv-doc examples/data photos (tools/prepare_data.py)",
        "wall_seconds": round(wall), "hardware": f"{platform.processor() or platform.machine()}, "
        f"{args.threads} threads, torch {torch.__version__}", "parameters": count_parameters(model),
        "validation": result,
    }
    WEIGHTS.mkdir(parents=True, exist_ok=True)
    out = WEIGHTS / spec.weights_file(args.scale)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(out), metadata={"recipe": json.dumps(recipe)})
    (WEIGHTS / f"{out.stem}.json").write_text(json.dumps(recipe, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
