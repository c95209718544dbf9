"""The CPU side of the GPU goals: how fast this machine's cores decode the LR video and encode the
HR video, alone (no network), so the end-to-end ceiling of a GPU run can be told apart from the
network's. Appends a table to BENCHMARKS.md.

    python tools/bench_codecs.py [--frames 120] [--output BENCHMARKS.md]
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import av
import numpy as np
from report import publish

from streamsr.bench import frame_gflop, synth_clip

SIZES = [(960, 540), (1280, 720)]
PRESETS = ["ultrafast", "veryfast"]


def decode_fps(clip: Path) -> tuple[float, list]:
    """Decode (FFmpeg threads, as streamsr's Source) and convert to RGB, as the pipeline does."""
    with av.open(str(clip)) as c:
        c.streams.video[0].thread_type = "AUTO"
        t = time.perf_counter()
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
        return len(frames) / (time.perf_counter() - t), frames


def encode_fps(frames: list, width: int, height: int, preset: str, out: Path) -> float:
    """Encode HR-sized yuv420p frames with libx264 (its own threads)."""
    hr = [av.VideoFrame.from_ndarray(np.ascontiguousarray(np.kron(f, np.ones((2, 2, 1), np.uint8))),
                                     format="rgb24").reformat(format="yuv420p") for f in frames]
    with av.open(str(out), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.codec_context.options = {"preset": preset, "crf": "18"}
        t = time.perf_counter()
        for i, f in enumerate(hr):
            f.pts = i
            c.mux(s.encode(f))
        c.mux(s.encode(None))
        return len(hr) / (time.perf_counter() - t)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=120)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for w, h in SIZES:
            clip = synth_clip(Path(tmp) / "in.mp4", w, h, args.frames)
            dec, frames = decode_fps(clip)
            enc = {p: encode_fps(frames, 2 * w, 2 * h, p, Path(tmp) / "out.mp4") for p in PRESETS}
            rows.append(f"| {w}x{h} -> {2 * w}x{2 * h} | {dec:.0f} | "
                        + " | ".join(f"{enc[p]:.1f}" for p in PRESETS)
                        + f" | {frame_gflop('espcn', 2, w, h):.1f} | {frame_gflop('srresnet', 2, w, h):.1f} "
                        f"| {frame_gflop('udvd', 2, w, h):.1f} |")
            print(rows[-1], flush=True)
    text = (f"\n### CPU codecs alone and the network's cost, x2 ({platform.machine()}, {os.cpu_count()} cores, "
            f"PyAV {av.__version__})\n\n`python tools/bench_codecs.py`: decode = H.264 decode + conversion to RGB; "
            "encode = libx264 at crf 18 on HR frames; GFLOP = the network's operations per frame "
            "(PyTorch's FlopCounterMode; the same on any machine).\n\n"
            "| input -> output | decode fps | encode fps ultrafast | encode fps veryfast | ESPCN GFLOP | "
            "SRResNet GFLOP | UDVD GFLOP |\n|---|---|---|---|---|---|---|\n" + "\n".join(rows) + "\n")
    publish(text, args.output)


if __name__ == "__main__":
    main()
