"""What a lower precision costs in quality: mean Y-PSNR of every shipped network on the validation
photos at fp32 and at each lower precision this machine runs, through the backends a run would
use, and write the table into MODELS.md (between the precision markers) and a JSON file.

    python tools/prepare_data.py            # once: data/val from opencv-doc
    python tools/eval_precision.py          # bf16 on the CPU (AVX512-BF16/AMX), every model
    python tools/eval_precision.py --models espcn,udvd --output /tmp/p.json --no-doc

Protocol as ``tools/eval_weights.py`` (BasicSR: MATLAB-bicubic LR, output rounded to uint8, Y-PSNR
with ``scale`` border pixels cropped); IRN is scored as a round trip (both parts at the precision,
the LR stored as 8-bit frames store it). The difference is paired per image: "worst" is the image
that lost most. Each backend's lower precision is paired with its own fp32, so a column isolates
the precision. The torch backend's cells are named by the precision (``bf16``), another backend's
``bf16@openvino``; ``--precision auto`` allows a precision for a network only when no backend
measured it to lose more than 0.1 dB. OpenVINO runs the any-scale networks in fp32 (see
``Backend.computes``): it has no bf16 cell for them.

    python tools/eval_precision.py --backends openvino --merge   # add OpenVINO's cells to the table
    python tools/eval_precision.py --backends openvino,onnxruntime --precisions int8 --merge   # int8's cells

int8 runs the networks with shipped calibration (tools/calibrate_int8.py) on ONNX Runtime and
OpenVINO.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
from pathlib import Path

import numpy as np

from streamsr.backends import create_backend, get_backend_class
from streamsr.evaluate import Upscaler, iter_items, score_image, score_round_trip
from streamsr.machine import cpu_runs_bf16
from streamsr.models import get_model, list_models, weights_path

ROOT = Path(__file__).resolve().parents[1]
VAL = ROOT / "data" / "val"
BEGIN, END = "<!-- precision:begin -->", "<!-- precision:end -->"
#: scales an any-scale network is scored at
ANY_SCALES = (2.0, 3.0)


def cases(models):
    """(model, scale) pairs with shipped weights."""
    for name in models:
        spec = get_model(name)
        if not spec.learned:
            continue
        for scale in spec.scales or ANY_SCALES:
            if weights_path(spec, int(scale) if spec.scales else None) is not None:
                yield name, scale


def scores(name: str, scale, precision: str, images, backend: str = "torch") -> list[float]:
    """Y-PSNR of each image through the network at ``precision`` on ``backend`` (CPU)."""
    spec = get_model(name)

    def load(part=None):
        return create_backend(backend, spec.variant(scale if spec.scales else None, part), device="cpu",
                              precision=precision)

    if "down" in dict(getattr(spec.geometry, "directions", ())) and len(spec.geometry.directions) > 1:
        down, up = Upscaler(load("down")), Upscaler(load("up"))
        return [score_round_trip(down, up, hr, scale, n).psnr for n, hr in images]
    up = Upscaler(load())
    return [score_image(up, hr, scale, n, seed=i).psnr for i, (n, hr) in enumerate(images)]


def cell_key(backend: str, precision: str) -> str:
    """The row's key of a backend's precision: ``bf16`` (torch), ``bf16@openvino``."""
    return precision if backend == "torch" else f"{precision}@{backend}"


def runs_lower(backend: str, name: str, scale, precision: str) -> bool:
    """Whether ``backend`` computes every part of the network in ``precision`` (``Backend.computes``)."""
    spec = get_model(name)
    return all(get_backend_class(backend).computes(spec.variant(scale if spec.scales else None, p), precision)
               for p in spec.parts)


def table(results) -> str:
    keys = results["precisions"]
    lines = ["| network | scale | fp32 Y-PSNR | " + " | ".join(f"{k if '@' in k else k + '@torch'} change (mean / worst image)"
                                                           for k in keys)
             + " |", "|---|---|---|" + "---|" * len(keys)]
    for r in results["rows"]:
        cells = [f"{r[k]['mean_change']:+.3f} / {r[k]['worst_change']:+.3f}" if k in r else "runs fp32" for k in keys]
        lines.append(f"| {r['model']} | x{r['scale']:g} | {r['fp32']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def merged(earlier: dict, rows: list[dict]) -> list[dict]:
    """The table's rows after measuring ``rows``: each earlier row (``{(model, scale): row}``)
    replaced by its new one, the networks not measured now kept, new networks added."""
    fresh = {(r["model"], r["scale"]): r for r in rows}
    return [fresh.get(k, r) for k, r in earlier.items()] + [r for k, r in fresh.items() if k not in earlier]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=None, help="comma-separated model names (default: every shipped one)")
    ap.add_argument("--output", type=Path, default=ROOT / "streamsr" / "data" / "precision_quality.json")
    ap.add_argument("--no-doc", action="store_true", help="do not rewrite MODELS.md")
    ap.add_argument("--backends", default="torch,openvino,onnxruntime", help="backends whose precisions are measured")
    ap.add_argument("--precisions", default="bf16,int8",
                    help="lower precisions measured, where a backend runs them (bf16: CPUs with bf16 instructions)")
    ap.add_argument("--merge", action="store_true", help="keep the output's networks, and cells of backends, "
                    "not measured now")
    args = ap.parse_args(argv)
    precisions = [p for p in args.precisions.split(",") if p != "bf16" or cpu_runs_bf16()]
    if not precisions:
        print("this CPU has no bf16 instructions: nothing lower than fp32 to measure here")
        return 1
    backends = args.backends.split(",")
    earlier = {(r["model"], r["scale"]): r for r in json.loads(args.output.read_text())["rows"]} \
        if args.merge and args.output.is_file() else {}
    images = list(iter_items(VAL))
    rows = []
    for name, scale in cases(args.models.split(",") if args.models else list_models()):
        row = dict(earlier.get((name, float(scale)), {}))
        for backend in backends:
            lower = [p for p in precisions if p in get_backend_class(backend).precisions.get("cpu", ())
                     and runs_lower(backend, name, scale, p)]
            if not lower:
                continue
            base = scores(name, scale, "fp32", images, backend)
            if backend == "torch" or "fp32" not in row:
                row.update({"model": name, "scale": float(scale), "fp32": float(np.mean(base))})
            for p in lower:
                diff = np.array(scores(name, scale, p, images, backend)) - np.array(base)
                row[cell_key(backend, p)] = {
                    "precision": p, "backend": backend, "mean": float(np.mean(base) + diff.mean()),
                    "mean_change": float(diff.mean()), "worst_change": float(diff.min()),
                    "worst_image": images[int(diff.argmin())][0]}
        rows.append(row)
        print(f"{name} x{scale:g}: fp32 {row['fp32']:.3f} dB; " + ", ".join(
            f"{k} {c['mean_change']:+.3f} (worst {c['worst_change']:+.3f} on {c['worst_image']})"
            for k, c in row.items() if isinstance(c, dict)), flush=True)
    rows = merged(earlier, rows)
    keys = sorted({k for r in rows for k, c in r.items() if isinstance(c, dict)}, key=lambda k: (len(k), k))
    results = {"about": "Mean Y-PSNR on the validation photos at fp32 and the change at each lower precision "
                        "on each backend against its own fp32 (CPU), by tools/eval_precision.py",
               "date": datetime.date.today().isoformat(), "images": len(images), "precisions": keys,
               "rows": rows}
    args.output.write_text(json.dumps(results, indent=1) + "\n")
    if not args.no_doc:
        doc = ROOT / "MODELS.md"
        generated = f"{BEGIN}\n{table(results)}{END}"
        doc.write_text(re.sub(re.escape(BEGIN) + ".*" + re.escape(END), lambda _: generated, doc.read_text(),
                              flags=re.DOTALL))
    print(table(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
