"""Would int8 pay on this CPU? ONNX Runtime static quantization (QDQ, per-channel int8 weights,
uint8 activations, MinMax calibration on LR patches of the training images) of a network's graph,
timed against its fp32 graph in interleaved rounds, with where the time goes (ONNX Runtime's own
profile) and what it costs in Y-PSNR on the validation photos.

    python tools/prepare_data.py        # once: data/train, data/val
    python tools/measure_int8.py --models espcn_x2,srresnet_x2

This is a measurement, not a feature: streamsr has no --precision int8 because on the CPUs it was
measured on the quantized graphs ran slower than fp32 (BENCHMARKS.md, "int8"), while bf16 on the
PyTorch backend ran 2-5x faster. Re-run it on a CPU where that may differ.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
TRAIN, VAL = ROOT / "data" / "train", ROOT / "data" / "val"


def calibration(variant, count: int = 40, patch: int = 96) -> list[np.ndarray]:
    """LR patches (N=1) of the training images: MATLAB-bicubic downscales of random crops."""
    from streamsr.evaluate import load_rgb
    from streamsr.metrics import downscale

    rng = np.random.default_rng(0)
    files = sorted(p for p in TRAIN.iterdir() if p.suffix.lower() in (".png", ".jpg"))
    scale = variant.factor or 2
    out = []
    for i in range(count):
        img = load_rgb(files[i % len(files)])
        y, x = rng.integers(0, img.shape[0] - patch * scale), rng.integers(0, img.shape[1] - patch * scale)
        lr = downscale(img[y:y + patch * scale, x:x + patch * scale], scale)
        out.append(lr.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)
    return out


def quantize(fp32: Path, out: Path, variant) -> None:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = variant.input_names[0]
    patches = iter(calibration(variant))

    class Reader(CalibrationDataReader):
        def get_next(self):
            p = next(patches, None)
            return None if p is None else {name: p}

    pre = out.with_suffix(".pre.onnx")
    quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
    quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    calibrate_method=CalibrationMethod.MinMax)


def session(path: Path, profile: bool = False):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.enable_mem_pattern = False
    opts.enable_profiling = profile
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def op_shares(path: Path, x: np.ndarray) -> dict[str, float]:
    """Share of kernel time per operator type over a few runs."""
    s = session(path, profile=True)
    for _ in range(4):
        s.run(None, {s.get_inputs()[0].name: x})
    trace = Path(s.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    per = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            per[e["args"]["op_name"]] += e["dur"]
    total = sum(per.values()) or 1
    return {k: round(v / total, 3) for k, v in per.most_common(5)}


def y_psnr(path: Path, variant) -> float:
    """Mean Y-PSNR on the validation photos through the graph (BasicSR protocol)."""
    from streamsr.evaluate import Upscaler, score_items

    class Graph:
        def __init__(self):
            self.session, self.variant = session(path), variant

        def infer(self, batch, extra=None):
            return self.session.run(None, {variant.input_names[0]: batch.astype(np.float32)})[0]

    return float(np.mean([s.psnr for s in score_items(Upscaler(Graph()), VAL, variant.factor)]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="espcn_x2,srresnet_x2", help="networks (name_xN)")
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args(argv)

    from streamsr.backends.export import cached_onnx
    from streamsr.models import get_model

    w, h = (int(v) for v in args.size.split("x"))
    x = np.random.default_rng(1).random((1, 3, h, w), dtype=np.float32)
    for name in args.models.split(","):
        model, factor = name.rsplit("_x", 1)
        variant = get_model(model).variant(int(factor))
        with tempfile.TemporaryDirectory() as tmp:
            fp32, int8 = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
            fp32.write_bytes(cached_onnx(variant, precision="fp32")[0])
            quantize(fp32, int8, variant)
            sessions = {"fp32": session(fp32), "int8": session(int8)}
            times = {k: [] for k in sessions}
            for r in range(args.rounds):
                for k in (list(sessions) if r % 2 == 0 else list(sessions)[::-1]):
                    s = sessions[k]
                    s.run(None, {s.get_inputs()[0].name: x})
                    start = time.perf_counter()
                    s.run(None, {s.get_inputs()[0].name: x})
                    times[k].append(time.perf_counter() - start)
            ratio = [a / b for a, b in zip(times["fp32"], times["int8"], strict=True)]
            print(f"{name} {w}x{h}: fp32 {1 / min(times['fp32']):.2f} fps, int8 {1 / min(times['int8']):.2f} fps; "
                  f"int8 speed-up min {min(ratio):.2f} median {statistics.median(ratio):.2f}")
            print(f"  kernel time fp32 {op_shares(fp32, x)}")
            print(f"  kernel time int8 {op_shares(int8, x)}")
            print(f"  Y-PSNR on the validation photos: fp32 {y_psnr(fp32, variant):.3f}, int8 {y_psnr(int8, variant):.3f} dB",
                  flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
