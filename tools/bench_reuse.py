"""Tile reuse, measured: network pixels, speed and quality against whole-frame inference.

Two clips: opencv-doc's vtest.avi (a real surveillance camera, MPEG-4) and a synthetic static scene
(a validation photo, two textured boxes crossing it, Gaussian sensor noise, made by
:class:`streamsr.synth.StaticScene`, whose clean HR frames are the ground truth). For each model:

- network LR pixels per frame, whole-frame over reuse, and the fraction of tiles recomputed;
- Y-PSNR of the reuse output against the whole-frame output, and (synthetic) both against the truth;
- flicker where the input did not change: mean |output(t) − output(t−1)| on the 0-255 scale, over
  the output pixels whose LR input stayed still (synthetic: away from the boxes; vtest: LR pixels
  that moved less than 3 levels);
- model-only seconds per frame, whole and reuse, rounds interleaved (min);
- end-to-end fps of `streamsr run --reuse on` and `--reuse off`, interleaved (min and median).

    python tools/bench_reuse.py --output BENCHMARKS_reuse.md
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from streamsr.backends import create_backend
from streamsr.metrics import psnr_y
from streamsr.models import get_model
from streamsr.pipeline.reuse import TileReuse, plan_reuse
from streamsr.synth import StaticScene, write_clip

DATA = Path("/usr/share/doc/opencv-doc/examples/data")


def _chw(rgb: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(rgb.transpose(2, 0, 1), dtype=np.float32) / 255.0


def _rgb(chw: np.ndarray) -> np.ndarray:
    return np.clip(chw.transpose(1, 2, 0) * 255.0 + 0.5, 0, 255).astype(np.uint8)


def vtest_frames(n: int) -> list[np.ndarray]:
    with av.open(str(DATA / "vtest.avi")) as c:
        return [f.to_ndarray(format="rgb24") for _, f in zip(range(n), c.decode(video=0), strict=False)]


def scene(n: int) -> tuple[StaticScene, list[np.ndarray]]:
    with av.open(str(DATA / "building.jpg")) as c:
        photo = next(c.decode(video=0)).to_ndarray(format="rgb24")
    bg = photo[: photo.shape[0] // 2 * 2, : photo.shape[1] // 2 * 2][:480, :640]
    s = StaticScene(np.ascontiguousarray(bg), scale=2, objects=2, noise=5.0, speed=6.0, seed=3)
    return s, [s.lr(i) for i in range(n)]


def _static_mask(prev_lr: np.ndarray, lr: np.ndarray, scale: int, boxes=None) -> np.ndarray:
    """Output pixels whose input stayed still between two frames."""
    if boxes is not None:
        h, w = lr.shape[0] * scale, lr.shape[1] * scale
        mask = np.ones((h, w), dtype=bool)
        for y0, y1, x0, x1 in boxes:
            mask[max(0, y0 - 16) : y1 + 16, max(0, x0 - 16) : x1 + 16] = False
        return mask
    still = np.abs(lr.astype(np.float32) - prev_lr).mean(axis=2) < 3
    return np.kron(still, np.ones((scale, scale), dtype=bool))


def quality(name: str, model: str, frames: list[np.ndarray], truth=None, boxes=None, rounds: int = 2) -> dict:
    variant = get_model(model).variant(2)
    spec = variant.spec
    backend = create_backend("onnxruntime", variant, device="cpu")
    policy = plan_reuse("on", None, live=True, learned=True, shrinks=False, colour_on="cpu", halo=spec.halo,
                        overlap=16)
    extra = {}
    if spec.conditioned:
        from streamsr.models.inputs import InputAssembler
        from streamsr.pipeline.stages import Telling

        h, w = frames[0].shape[:2]
        extra = InputAssembler(variant.inputs).arrays(Telling(blur=1.0, noise=5.0).conditions([None]), h, w,
                                                      (2 * h, 2 * w))
    times = {"whole": [], "reuse": []}
    outs = {}
    for _ in range(rounds):  # interleaved: whole, reuse, whole, reuse
        for kind in ("whole", "reuse"):
            reuse = TileReuse(backend, policy)
            t0 = time.perf_counter()
            result = []
            for i, f in enumerate(frames):
                x = _chw(f)
                y = backend.infer(x[None], extra)[0] if kind == "whole" else reuse(x, extra, i / 25, i == 0)
                result.append(_rgb(y))
            times[kind].append((time.perf_counter() - t0) / len(frames))
            outs[kind] = result
            if kind == "reuse":
                counters = reuse.counters.summary()
    row = {"clip": name, "model": model, "frames": len(frames), **{k: counters[k] for k in
           ("network_pixels_saved", "recomputed_mean", "recomputed_p95", "whole_frames")},
           "s_per_frame_whole": round(min(times["whole"]), 4), "s_per_frame_reuse": round(min(times["reuse"]), 4)}
    row["model_speedup"] = round(row["s_per_frame_whole"] / row["s_per_frame_reuse"], 2)
    # one PSNR of the mean squared error over the frames (a frame that ran whole is identical)
    mse = np.mean([10 ** (-min(psnr_y(a, b), 100.0) / 10) for a, b in
                   zip(outs["reuse"][1:], outs["whole"][1:], strict=True)])
    row["psnr_reuse_vs_whole"] = round(float(-10 * np.log10(mse)), 2)
    if truth is not None:
        for kind in ("whole", "reuse"):
            row[f"psnr_{kind}_vs_truth"] = round(float(np.mean([psnr_y(o, t) for o, t in
                                                                zip(outs[kind], truth, strict=True)])), 2)
    for kind in ("whole", "reuse"):
        flicker = []
        for i in range(1, len(frames)):
            mask = _static_mask(frames[i - 1], frames[i], 2, boxes(i - 1) + boxes(i) if boxes else None)
            d = np.abs(outs[kind][i].astype(np.float32) - outs[kind][i - 1]).mean(axis=2)
            flicker.append(float(d[mask].mean()))
        row[f"flicker_{kind}"] = round(float(np.mean(flicker)), 3)
    backend.close()
    return row


def end_to_end(clip: Path, model: str, frames: int, rounds: int) -> dict:
    fps = {"on": [], "off": []}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):
            for mode in ("off", "on"):
                stats = Path(tmp) / "s.json"
                subprocess.run([sys.executable, "-m", "streamsr.cli", "run", str(clip), "-o", f"{tmp}/o.mkv",
                                "--model", model, "--scale", "2", "--backend", "onnxruntime", "--reuse", mode,
                                "--max-frames", str(frames), "--stats-json", str(stats), "-q"], check=True)
                fps[mode].append(json.loads(stats.read_text())["fps"])
    return {"fps_off": [round(v, 2) for v in fps["off"]], "fps_on": [round(v, 2) for v in fps["on"]],
            "e2e_speedup_median": round(statistics.median(fps["on"]) / statistics.median(fps["off"]), 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument("--frames", type=int, default=100, help="frames per clip for ESPCN")
    ap.add_argument("--udvd-frames", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--models", default="espcn,udvd", help="comma-separated")
    ap.add_argument("--clips", default="vtest,scene", help="comma-separated: vtest, scene")
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        s, lr = scene(max(args.frames, args.udvd_frames))
        synthetic = Path(tmp) / "static.mkv"
        write_clip(synthetic, frames=len(lr), size=(lr[0].shape[1], lr[0].shape[0]), fps=25,
                   image=lambda i, h, w: lr[i])
        v = vtest_frames(max(args.frames, args.udvd_frames)) if "vtest" in args.clips else []
        for model, n in (("espcn", args.frames), ("udvd", args.udvd_frames)):
            if model not in args.models.split(","):
                continue
            for key, name, frames, truth, boxes, clip in (
                ("vtest", "vtest.avi 768x576", v[:n], None, None, DATA / "vtest.avi"),
                ("scene", "static scene 320x240, noise 5", lr[:n], [s.hr(i) for i in range(n)], s.box_spans,
                 synthetic),
            ):
                if key not in args.clips.split(","):
                    continue
                row = quality(name, model, frames, truth, boxes, args.rounds)
                row.update(end_to_end(clip, model, n, args.rounds))
                print(json.dumps(row), flush=True)
                rows.append(row)
    if args.output:
        lines = [("| clip | model | frames | network pixels, whole / reuse | tiles recomputed (mean, p95) | "
                 "model-only speed-up | end-to-end fps off → on | Y-PSNR reuse vs whole | vs truth (whole, reuse) | "
                 "static flicker (whole, reuse) |"), "|" + "---|" * 10]
        for r in rows:
            truth = (f"{r['psnr_whole_vs_truth']} / {r['psnr_reuse_vs_truth']} dB" if "psnr_whole_vs_truth" in r
                     else "n/a")
            lines.append(f"| {r['clip']} | {r['model']} | {r['frames']} | {r['network_pixels_saved']}x | "
                         f"{r['recomputed_mean']:.0%}, {r['recomputed_p95']:.0%} | {r['model_speedup']}x | "
                         f"{statistics.median(r['fps_off'])} → {statistics.median(r['fps_on'])} "
                         f"({r['e2e_speedup_median']}x) | {r['psnr_reuse_vs_whole']} dB | {truth} | "
                         f"{r['flicker_whole']} / {r['flicker_reuse']} |")
        args.output.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
