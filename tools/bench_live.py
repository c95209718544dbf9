"""Capture-to-encode latency of a live RTSP camera (Debian's GStreamer RTSP server on localhost).

    python tools/bench_live.py --size 640x360 --seconds 20 --output BENCHMARKS.md

Starts tests/rtsp_server.py (25 fps H.264), runs `upscale_video` on it in real-time mode and
reports latency p50/p95/max, input/output fps and drops.
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path
from tempfile import TemporaryDirectory

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import RtspServer
from report import publish

from streamsr import RunConfig, SinkConfig, upscale_video


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", default="640x360")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--model", default="espcn")
    ap.add_argument("--scale", type=int, default=2)
    ap.add_argument("--backend", default="auto")
    ap.add_argument("--output", type=Path)
    args = ap.parse_args()
    server = RtspServer(size=args.size).start()
    try:
        with TemporaryDirectory() as tmp:
            config = RunConfig(model=args.model, scale=args.scale, backend=args.backend, sink=SinkConfig())
            stats = upscale_video(server.url(), Path(tmp) / "out.mkv", config, duration=args.seconds)
    finally:
        server.stop()
    lat = stats.latency
    row = (f"| {args.model} x{args.scale} | {args.size} @ 25 fps | {stats.extra['backend']} | "
           f"{stats.frames_in / stats.wall_seconds:.1f} | {stats.fps:.1f} | {stats.dropped} of {stats.frames_in} | "
           f"{lat['p50_ms']} | {lat['p95_ms']} | {lat['max_ms']} |")
    text = (f"\n### Live latency: RTSP camera on localhost, {args.seconds:g} s, x264 veryfast/zerolatency\n\n"
            f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}.\n\n"
            "| model | camera | backend | input fps | output fps | dropped | p50 ms | p95 ms | max ms |\n"
            "|---|---|---|---|---|---|---|---|---|\n" + row + "\n")
    publish(text, args.output)


if __name__ == "__main__":
    main()
