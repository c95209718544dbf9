"""Send small, restore big, through a real codec: rate-distortion of IRN against the alternatives.

For each crf the clip goes over the wire four ways, all through libx264 (yuv420p, BT.709):

  (a) full resolution;
  (b) MATLAB-bicubic down, then bicubic up;
  (c) MATLAB-bicubic down, then the project's best super-resolution at that factor (SRResNet);
  (d) IRN down (8-bit), then IRN up (z = 0).

Bitrate (kbit/s at 25 fps) and Y-PSNR against the original (BasicSR protocol, the factor's border
cropped); BD-rate (Bjontegaard, cubic fit of log rate over PSNR) of (d) against (a): how much of
the full-resolution bitrate the pair saves at equal quality. Also the round trip without a codec
(lossless 8-bit LR), how close IRN's LR is to the bicubic one, and z = 0 against a sampled z.

Clips (validation data only, opencv-doc): vtest.avi (a real camera) and a slow pan over the
validation photos. Writes a Markdown section (``--output``, appended) and a side-by-side PNG of
one LR frame (``--figure``).

    .venv/bin/python tools/irn_rd.py --output MODELS.md --figure docs/figures/irn_x2_lr.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from streamsr.backends import create_backend
from streamsr.degradation.codec import codec_round_trip
from streamsr.evaluate import Upscaler, load_rgb
from streamsr.metrics import bicubic_upscale, downscale, psnr_y
from streamsr.models import get_model

OPENCV = Path("/usr/share/doc/opencv-doc/examples/data")
VAL = Path("data/val")
CRFS = (18, 23, 28, 33)
#: further crfs of (a) alone: full resolution at high crf reaches the qualities the pair gives, so
#: that the BD-rate compares over a range both curves cover
ANCHOR_ONLY = (38, 43, 48)


def vtest_clip(frames: int) -> np.ndarray:
    """The first frames of opencv-doc's vtest.avi (768x576), RGB."""
    import av

    out = []
    with av.open(str(OPENCV / "vtest.avi")) as c:
        for frame in c.decode(video=0):
            out.append(frame.to_ndarray(format="rgb24"))
            if len(out) == frames:
                break
    return np.stack(out)


def photo_pan(frames: int, size=(384, 512)) -> np.ndarray:
    """A slow pan (2 px a frame) over each validation photo large enough, ``frames`` in all."""
    h, w = size
    photos = [p for p in (load_rgb(f) for f in sorted(VAL.glob("*.png"))) if p.shape[0] >= h and p.shape[1] >= w + 40]
    out = []
    per = max(1, frames // len(photos))
    for photo in photos:
        for k in range(per):
            out.append(photo[:h, 2 * k : 2 * k + w])
    return np.stack(out[:frames])


def bd_rate(anchor: list[tuple[float, float]], test: list[tuple[float, float]]) -> float:
    """Bjontegaard delta rate of ``test`` against ``anchor`` ((kbit/s, dB) points), in percent:
    negative = fewer bits at equal quality."""
    (ra, pa), (rt, pt) = (np.array(list(zip(*sorted(p, key=lambda x: x[1]))), dtype=np.float64) for p in (anchor, test))
    fa, ft = np.polyfit(pa, np.log(ra), 3), np.polyfit(pt, np.log(rt), 3)
    lo, hi = max(pa.min(), pt.min()), min(pa.max(), pt.max())
    if lo >= hi:
        return float("nan")
    ia, it = np.polyint(fa), np.polyint(ft)
    mean = ((np.polyval(it, hi) - np.polyval(it, lo)) - (np.polyval(ia, hi) - np.polyval(ia, lo))) / (hi - lo)
    return float((np.exp(mean) - 1) * 100)


WEIGHTS: dict[int, str] = {}  # --irn-weights: a factor's IRN weights other than the shipped ones


def _up(name: str, scale: int, part: str | None = None, backend: str = "torch") -> Upscaler:
    weights = WEIGHTS.get(scale) if name == "irn" else None
    return Upscaler(create_backend(backend, get_model(name).variant(scale, part), device="cpu", weights=weights))


def measure(clip: np.ndarray, scale: int, fps: int, report) -> dict:
    """Every way over the wire at every crf; the lossless round trip; z = 0 vs a sampled z."""
    h, w = clip.shape[1:3]
    clip = clip[:, : h - h % (2 * scale), : w - w % (2 * scale)]
    irn_down, irn_up, sr = _up("irn", scale, "down"), _up("irn", scale, "up"), _up("srresnet", scale)
    lr_bic = np.stack([downscale(f, scale) for f in clip])
    lr_irn = np.stack([irn_down(f) for f in clip])
    seconds = len(clip) / fps
    y = lambda frames: float(np.mean([psnr_y(a, b, scale) for a, b in zip(frames, clip)]))
    rows = {"lossless": {
        "bicubic": y([bicubic_upscale(f, scale) for f in lr_bic]),
        "sr": y([sr(f) for f in lr_bic]),
        "irn": y([irn_up(f) for f in lr_irn]),
        "lr_vs_bicubic": float(np.mean([psnr_y(a, b) for a, b in zip(lr_irn, lr_bic)])),
    }}
    rng = np.random.default_rng(0)
    z = rng.standard_normal((1, 3 * (scale * scale - 1), *lr_irn.shape[1:3])).astype(np.float32)
    sampled = [np.clip(irn_up.backend.infer(f.transpose(2, 0, 1)[None].astype(np.float32) / 255, {"z": z})[0]
                       .transpose(1, 2, 0) * 255 + 0.5, 0, 255).astype(np.uint8) for f in lr_irn]
    rows["lossless"]["irn_sampled_z"] = y(sampled)
    for crf in CRFS:
        full = codec_round_trip(clip, crf=crf, fps=fps)
        bic = codec_round_trip(lr_bic, crf=crf, fps=fps)
        irn = codec_round_trip(lr_irn, crf=crf, fps=fps)
        kbps = lambda r: r.bits / seconds / 1000
        row = {"full": (kbps(full), y(full.frames)),
               "bicubic": (kbps(bic), y([bicubic_upscale(f, scale) for f in bic.frames])),
               "sr": (kbps(bic), y([sr(f) for f in bic.frames])),
               "irn": (kbps(irn), y([irn_up(f) for f in irn.frames]))}
        rows[crf] = row
        report(f"x{scale} crf {crf}: " + ", ".join(f"{k} {r:.0f} kbit/s {p:.2f} dB" for k, (r, p) in row.items()))
    for crf in ANCHOR_ONLY:
        full = codec_round_trip(clip, crf=crf, fps=fps)
        rows[crf] = {"full": (full.bits / seconds / 1000, y(full.frames))}
    return rows


def table(name: str, clip: np.ndarray, scale: int, rows: dict) -> str:
    """A Markdown section for one clip and factor."""
    h, w = clip.shape[1:3]
    ways = [("full", "(a) full resolution"), ("bicubic", "(b) bicubic down, bicubic up"),
            ("sr", f"(c) bicubic down, SRResNet x{scale} up"), ("irn", "(d) IRN down, IRN up")]
    lines = [f"\n#### {name}, {w}x{h} -> {w // scale}x{h // scale} on the wire (x{scale}), {len(clip)} frames\n",
             "| crf | " + " | ".join(label for _, label in ways) + " |", "|---|" + "---|" * len(ways)]
    for crf in CRFS:
        lines.append(f"| {crf} | " + " | ".join(f"{rows[crf][k][0]:.0f} kbit/s, {rows[crf][k][1]:.2f} dB"
                                                 for k, _ in ways) + " |")
    anchor = [rows[c]["full"] for c in CRFS + ANCHOR_ONLY]
    bd = {k: bd_rate(anchor, [rows[c][k] for c in CRFS]) for k in ("bicubic", "sr", "irn")}
    lossless = rows["lossless"]
    extra = ", ".join(f"{c}: {rows[c]['full'][0]:.0f} kbit/s, {rows[c]['full'][1]:.2f} dB" for c in ANCHOR_ONLY)
    lines += ["", f"(a) at higher crf, for the BD-rate's overlap: {extra}.",
              (f"BD-rate against (a) (crf 18-48): (d) IRN {bd['irn']:+.1f} %, (c) SRResNet {bd['sr']:+.1f} %, (b) "
               f"bicubic {bd['bicubic']:+.1f} % (negative: fewer bits for the same Y-PSNR)."),
              (f"Lossless 8-bit LR: IRN {lossless['irn']:.2f} dB (z sampled from N(0, 1): {lossless['irn_sampled_z']:.2f}),"
               f" bicubic down and up {lossless['bicubic']:.2f}, bicubic down and SRResNet up {lossless['sr']:.2f}"
               f"; IRN's LR against the bicubic LR {lossless['lr_vs_bicubic']:.2f} dB."), ""]
    return "\n".join(lines)


def figure(clip: np.ndarray, scale: int, path: Path) -> None:
    """One frame's LR, bicubic beside IRN's, as a PNG."""
    from PIL import Image

    frame = clip[0]
    h, w = frame.shape[:2]
    frame = frame[: h - h % scale, : w - w % scale]
    lr_bic, lr_irn = downscale(frame, scale), _up("irn", scale, "down")(frame)
    gap = np.full((lr_bic.shape[0], 8, 3), 255, np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate([lr_bic, gap, lr_irn], axis=1)).save(path, optimize=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scales", default="2,4")
    parser.add_argument("--frames", type=int, default=50)
    parser.add_argument("--output", type=Path, default=None, help="append the Markdown here (default: print)")
    parser.add_argument("--figure", type=Path, default=None, help="write one LR frame, bicubic | IRN, here")
    parser.add_argument("--irn-weights", action="append", default=[], metavar="SCALE=FILE",
                        help="IRN weights other than the shipped ones, e.g. 2=runs/irn_x2/last.safetensors")
    args = parser.parse_args(argv)
    WEIGHTS.update({int(k): v for k, v in (item.split("=", 1) for item in args.irn_weights)})
    report = lambda line: print(line, file=sys.stderr, flush=True)
    clips = {"vtest.avi (opencv-doc)": vtest_clip(args.frames), "a pan over the validation photos": photo_pan(args.frames)}
    text = "\n### IRN through libx264 (tools/irn_rd.py)\n"
    for scale in (int(s) for s in args.scales.split(",")):
        for name, clip in clips.items():
            text += table(name, clip, scale, measure(clip, scale, 25, report))
    if args.figure:
        figure(clips["vtest.avi (opencv-doc)"], 2, args.figure)
    if args.output:
        with open(args.output, "a") as f:
            f.write(text)
    else:
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
