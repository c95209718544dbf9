"""Measure model-only fps of every network on every CPU backend setting worth choosing between,
and write the table ``--backend auto`` (and the torch backend's default channels_last on the
CPU) reads: ``streamsr/data/backend_speed.json``.

Each network is loaded once per setting (ONNX Runtime; PyTorch with channels_last off and on, in
fp32 and, on a CPU that computes it, bf16; OpenVINO in fp32 and bf16, the latter not for networks
it runs in fp32 anyway, see ``Backend.declines``; ONNX Runtime and OpenVINO in int8 for the
networks with int8 calibration);
then every setting is timed once per round, in rotating order, for several rounds, so that load
from other processes on a shared machine falls on all of them alike. The table's ``fps`` is each
setting's best round (load from elsewhere only ever slows a timing down, so the best round is the
least disturbed one), with every round's value beside it (``samples``; ``--merge`` pools them over
runs); the printout adds per-round ratios (min / median). Only rows of the same network are compared, so networks measured on different
days or under different load may share a table.

    python tools/measure_backend_speed.py                          # every model, 640x360, 5 rounds
    python tools/measure_backend_speed.py --models espcn,srresnet --rounds 3 --output /tmp/t.json
    python tools/measure_backend_speed.py --models lte --merge    # re-measure some, keep the rest

Networks costing more than ``--max-gflop`` (100) GFLOP a frame at ``--size`` are measured at half
the sides (each row says its input; the ranking of backends is assumed not to change with size),
which keeps a run near 20 minutes on two cores. Model-only: :func:`streamsr.bench.model_only_fps` (host arrays for ONNX Runtime, tensors for
PyTorch, batch 1, extra inputs built once per size as a run does). Weights: the shipped ones, or
random ones of the same shape where none are shipped (the speed is the same).
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = ROOT / "streamsr" / "data" / "backend_speed.json"

#: (backend, options, precision) settings measured per network on the CPU (bf16 where the CPU computes it)
SETTINGS = (
    ("onnxruntime", {}, "fp32"),
    ("torch", {"channels_last": False}, "fp32"),
    ("torch", {"channels_last": True}, "fp32"),
    ("torch", {"channels_last": False}, "bf16"),
    ("torch", {"channels_last": True}, "bf16"),
    ("openvino", {}, "fp32"),
    ("openvino", {}, "bf16"),
    ("onnxruntime", {}, "int8"),
    ("openvino", {}, "int8"),
)


def settings(variant):
    """The settings this machine can measure for ``variant``: bf16 where the CPU computes it, and
    each precision where the backend computes the network in it."""
    from streamsr.backends.choice import precision_fallback

    return [s for s in SETTINGS if precision_fallback(s[0], "cpu", s[2], variant=variant)[1] is None]


def variants(models):
    """Every (model name, factor, part) network of ``models``."""
    from streamsr.models import get_model

    for name in models:
        spec = get_model(name)
        parts = [p for p, _ in getattr(spec.geometry, "directions", ())] or [None]
        for factor in spec.scales or (None,):
            for part in parts:
                yield spec.variant(factor, part)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def fitted(variant, size):
    """``size`` cut down to sides the network takes (a down part: multiples of its factor)."""
    m = math.lcm(variant.factor or 1, variant.spec.pad_multiple) if variant.shrinks else variant.spec.pad_multiple
    return size[0] - size[0] % m, size[1] - size[1] % m


def label(backend: str, options: dict, precision: str) -> str:
    return backend + "".join(f" {k}={v}" for k, v in options.items()) + f" {precision}"


def measure(variant, size, rounds, seconds, runs, max_gflop, folder, report):
    """({setting index: [fps per round]}, input (width, height), untrained) for one network."""
    from streamsr.backends import create_backend
    from streamsr.bench import model_only_fps, network_gflop, with_weights
    from streamsr.config import RunConfig
    from streamsr.models.geometry import ScaleRequest, resolve_geometry

    config, untrained = with_weights(RunConfig(model=variant.spec.name), variant, folder)
    width, height = fitted(variant, size)
    geometry = resolve_geometry(variant.spec, ScaleRequest(scale=variant.factor, part=variant.part), width, height)
    gflop = network_gflop(variant, geometry.in_size, geometry.net_size)
    if gflop > max_gflop:  # a heavy network: a quarter of the pixels keeps the run short (the same on any machine)
        width, height = fitted(variant, (size[0] // 2, size[1] // 2))
        report(f"  {gflop:.0f} GFLOP a frame at {size[0]}x{size[1]}: measured at {width}x{height}")
    measured = settings(variant)
    loaded = [create_backend(b, variant, device="cpu", precision=p, weights=config.weights, options={b: o} if o else None)
              for b, o, p in measured]
    fell_back = [label(*s) for s, b in zip(measured, loaded, strict=True) if b.precision != s[2]]
    if fell_back:  # a row must be what it says (a run's notice says why)
        raise SystemExit(f"{variant.name}: {', '.join(fell_back)} ran another precision")
    try:
        for backend in loaded:  # first calls: allocations, oneDNN primitive caches
            model_only_fps(backend, width, height, 1, seconds=0.0, runs=1)
        fps = {i: [] for i in range(len(measured))}
        for r in range(rounds):
            order = list(range(len(measured)))
            order = order[r % len(order):] + order[:r % len(order)]
            for i in order:
                time.sleep(0.05)  # let ONNX Runtime's spinning workers go idle before the next timing
                fps[i].append(model_only_fps(loaded[i], width, height, 1, seconds=seconds, runs=runs))
            report(f"  round {r + 1}: " + ", ".join(f"{label(*measured[i])} {fps[i][-1]:.2f}" for i in fps))
    finally:
        for backend in loaded:
            backend.close()
    return fps, (width, height), untrained and variant.spec.learned


def _setting(row) -> tuple:
    return (row["variant"], row["input"], row["device"], row["precision"], row["backend"],
            json.dumps(row["options"], sort_keys=True))


def merged(old, new):
    """``old`` rows with ``new`` ones: a setting measured again at the same input pools its
    samples; a network measured now at another input replaces its old rows."""
    measured_at = {r["variant"]: r["input"] for r in new}
    pooled = {_setting(r): dict(r) for r in old if measured_at.get(r["variant"], r["input"]) == r["input"]}
    for r in new:
        key = _setting(r)
        if key in pooled:
            pooled[key]["samples"] = pooled[key]["samples"] + r["samples"]
        else:
            pooled[key] = dict(r)
    return list(pooled.values())


def ratios(a, b):
    r = [x / y for x, y in zip(a, b, strict=True)]
    return f"min {min(r):.2f} median {statistics.median(r):.2f}"


def summary(name, fit, measured, fps) -> str:
    """One line: every setting's best round, then per-round ratios against ONNX Runtime fp32."""
    best = ", ".join(f"{label(*s)} {max(fps[i]):.3f}" for i, s in enumerate(measured))
    versus = "; ".join(f"{label(*s)} / ort {ratios(fps[i], fps[0])}" for i, s in enumerate(measured) if i)
    return f"{name} {fit[0]}x{fit[1]}: best of rounds {best} fps; per round {versus}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default=None, help="comma-separated model names (default: every registered model)")
    ap.add_argument("--variants", default=None, help="comma-separated network names among those models "
                    "(espcn_x2,irn_x2-down; default: all of them)")
    ap.add_argument("--size", default="640x360", help="input WxH (default 640x360)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--seconds", type=float, default=1.0, help="least time of one timing")
    ap.add_argument("--runs", type=int, default=2, help="least calls of one timing")
    ap.add_argument("--max-gflop", type=float, default=100.0,
                    help="a network costing more a frame at --size is measured at half the sides (default 100)")
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    ap.add_argument("--merge", action="store_true", help="keep the output's rows of networks not measured now, "
                    "and pool the samples of settings measured again at the same input")
    args = ap.parse_args(argv)

    import onnxruntime
    import torch

    import streamsr
    from streamsr.models import list_models

    width, height = (int(v) for v in args.size.lower().split("x"))
    models = args.models.split(",") if args.models else list_models()
    rows, lines = [], []
    with tempfile.TemporaryDirectory() as folder:
        for variant in variants(models):
            if args.variants and variant.name not in args.variants.split(","):
                continue
            print(f"{variant.name}:", flush=True)
            fps, fit, untrained = measure(variant, (width, height), args.rounds, args.seconds, args.runs, args.max_gflop,
                                          folder, lambda line: print(line, flush=True))
            measured = settings(variant)
            for i, (backend, options, precision) in enumerate(measured):
                rows.append({"variant": variant.name, "input": f"{fit[0]}x{fit[1]}", "device": "cpu",
                             "precision": precision, "backend": backend, "options": options,
                             "samples": [round(v, 3) for v in fps[i]], **({"untrained": True} if untrained else {})})
            lines.append(summary(variant.name, fit, measured, fps))
            print(lines[-1], flush=True)
    if args.merge and args.output.is_file():
        rows = merged(json.loads(args.output.read_text())["rows"], rows)
    for r in rows:
        r["fps"] = max(r["samples"])
    table = {
        "about": ("Model-only frames per second of each network on each backend setting, batch 1, measured in "
                  "interleaved rounds by tools/measure_backend_speed.py on a shared machine (samples: one per "
                  "round, over every run merged; fps: the best, the least disturbed by other load). Compare rows "
                  "of one network only. --backend auto takes the fastest available backend of a network; the "
                  "torch backend takes its fastest row's channels_last on the CPU at the run's precision."),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads",
        "versions": {"streamsr": streamsr.__version__, "torch": torch.__version__,
                     "onnxruntime": onnxruntime.__version__, "python": platform.python_version()},
        "date": datetime.date.today().isoformat(),
        "rows": sorted(rows, key=lambda r: (r["variant"], r["device"], r["precision"], r["backend"],
                                            json.dumps(r["options"], sort_keys=True))),
    }
    text = json.dumps({**table, "rows": []}, indent=1)  # one line a row: the table stays readable
    args.output.write_text(text.replace('"rows": []', '"rows": [\n' + ",\n".join(
        "  " + json.dumps(r) for r in table["rows"]) + "\n ]") + "\n")
    print("\n".join(["", *lines, f"written: {args.output}"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
