"""Throughput benchmark: the threaded pipeline against a sequential decode→infer→encode loop.

Per-stage fps is frames per busy second of that stage alone; efficiency is end-to-end fps over
the slowest stage's fps (1.0 means every other stage is hidden behind the slowest one).
"""

from __future__ import annotations

import platform
import tempfile
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .backends import list_backends, resolve_backend
from .config import RunConfig
from .errors import BackendUnavailableError
from .io.sink import Sink, SinkConfig
from .io.source import Source
from .pipeline.job import build_stages, run_sequential, upscale_video

__all__ = ["run_bench", "synth_clip"]


def synth_clip(path: Path, width: int, height: int, frames: int, fps: int = 25) -> Path:
    """Write an H.264 clip of moving texture (edges, gradients, noise) for benchmarking."""
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    big = np.kron(base, np.ones((8, 8, 1), dtype=np.uint8))
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=fps)
        vs.width, vs.height, vs.pix_fmt = width, height, "yuv420p"
        vs.codec_context.options = {"preset": "ultrafast", "crf": "18"}
        for i in range(frames):
            img = np.ascontiguousarray(big[i % 8 : i % 8 + height, i % 16 : i % 16 + width])
            vf = av.VideoFrame.from_ndarray(img, format="rgb24")
            vf.pts = i
            vf.time_base = Fraction(1, fps)
            for p in vs.encode(vf):
                out.mux(p)
        for p in vs.encode(None):
            out.mux(p)
    return path


def _sequential_fps(clip: Path, out: Path, config: RunConfig) -> float:
    with Source(clip) as source:
        backend = config.load_backend()
        info = source.info
        try:
            with Sink(out, info, info.width * config.scale, info.height * config.scale, config.sink) as sink:
                stats = run_sequential(source, build_stages(backend, sink, config))
        finally:
            backend.close()
    return stats.items / stats.busy_seconds


def run_bench(
    *,
    model: str = "espcn",
    scale: int = 2,
    width: int = 640,
    height: int = 360,
    frames: int = 60,
    backends: list[str] | None = None,
    device: str = "cpu",
    preset: str = "veryfast",
    report: Callable[[str], None] = lambda line: None,
) -> str:
    """Benchmark each backend; return a Markdown table.

    Args:
        model, scale: what to run.
        width, height: input size.
        frames: clip length.
        backends: names to measure (default: every one available on ``device``).
        device: cpu or cuda.
        preset: x264 preset of the encode stage.
        report: receives one line per finished measurement (progress).
    """
    import torch

    names = backends or [b for b in list_backends() if _available(b, device)]
    sink = SinkConfig(codec="libx264", preset=preset)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = synth_clip(Path(tmp) / "bench.mp4", width, height, frames)
        for name in names:
            config = RunConfig(model=model, scale=scale, backend=name, device=device, sink=sink, audio=False)
            upscale_video(clip, Path(tmp) / "warm.mp4", config, stop_after=4)  # warm-up (allocations, autotune)
            stats = upscale_video(clip, Path(tmp) / "out.mp4", config)
            seq = _sequential_fps(clip, Path(tmp) / "seq.mp4", config)
            stage = {s.name: s.fps for s in stats.stages}
            rows.append((name, stage, stats.fps, stats.efficiency, seq))
            report(f"{name}: {stats.fps:.1f} fps threaded, {seq:.1f} fps sequential")
    head = (
        f"\n### {model} x{scale}, {width}x{height} -> {width * scale}x{height * scale}, {frames} frames, "
        f"{device}, x264 {preset}\n\n"
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}, "
        f"PyAV {av.__version__}.\n\n"
        "| backend | decode | preprocess | infer | postprocess | encode | end-to-end | efficiency | sequential | speed-up |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    fmt = lambda v: f"{v:.1f}" if v else "-"
    lines = [
        f"| {n} | {fmt(s.get('decode'))} | {fmt(s.get('preprocess'))} | {fmt(s.get('infer'))} | "
        f"{fmt(s.get('postprocess'))} | {fmt(s.get('encode'))} | {e2e:.1f} | {eff:.2f} | {seq:.1f} | {e2e / seq:.2f}x |"
        for n, s, e2e, eff, seq in rows
    ]
    return head + "\n".join(lines) + "\n"


def _available(name: str, device: str) -> bool:
    try:
        resolve_backend(name, device)
        return True
    except BackendUnavailableError:
        return False
