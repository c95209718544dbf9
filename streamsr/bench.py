"""Throughput benchmark: the threaded pipeline against a sequential decode→infer→encode loop.

Per-stage fps is frames per busy second of that stage alone; efficiency is end-to-end fps over
the slowest stage's fps (1.0 means every other stage is hidden behind the slowest one).
"""

from __future__ import annotations

import dataclasses
import itertools
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import av
import numpy as np

from .backends import list_backends, load_backend, resolve_backend, resolve_device
from .config import RunConfig
from .errors import BackendUnavailableError
from .io.sink import Sink
from .io.source import Source
from .machine import Machine
from .models.inputs import InputAssembler, run_conditioning
from .models.registry import get_model
from .pipeline.job import build_stages, run_sequential, upscale_video
from .pipeline.plan import known_variant, plan_run, plan_source, plan_variant
from .synth import texture_pattern, write_clip

__all__ = ["MatrixRow", "format_matrix", "frame_gflop", "model_only_fps", "run_bench", "run_matrix", "synth_clip"]


def synth_clip(path: Path, width: int, height: int, frames: int, fps: int = 25) -> Path:
    """Write an H.264 clip of moving texture (edges, gradients, noise) for benchmarking."""
    return write_clip(path, frames=frames, size=(width, height), fps=fps, image=texture_pattern,
                      options={"preset": "ultrafast", "crf": "18"})


def _sequential_fps(clip: Path, out: Path, config: RunConfig) -> float:
    with Source(clip) as source:
        info = source.info
        backend = load_backend(config, plan_variant(config, info))
        try:
            plan = plan_run(config, info, out, plan_source(config, clip, Machine.probe()), backend)
            with Sink(out, info, *plan.geometry.out_size, plan.sink) as sink:
                stats = run_sequential(source, build_stages(plan, backend, sink))
        finally:
            backend.close()
    return stats.items / stats.busy_seconds


def run_bench(
    base: RunConfig,
    *,
    width: int = 640,
    height: int = 360,
    frames: int = 60,
    backends: list[str] | None = None,
    report: Callable[[str], None] = lambda line: None,
) -> str:
    """Benchmark each backend on a run of ``base``'s settings; return a Markdown table.

    Args:
        base: the run's settings (model, scale, device, encoder, ...); the backend is varied.
        width, height: input size.
        frames: clip length.
        backends: names to measure (default: every one available on the device).
        report: receives one line per finished measurement (progress).
    """
    import torch

    device = resolve_device(base.device)
    names = backends or [b for b in list_backends() if _available(b, device)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        clip = synth_clip(Path(tmp) / "bench.mp4", width, height, frames)
        for name in names:
            config = dataclasses.replace(base, backend=name, audio=False)
            upscale_video(clip, Path(tmp) / "warm.mp4", config, stop_after=4)  # warm-up (allocations, autotune)
            stats = upscale_video(clip, Path(tmp) / "out.mp4", config)
            seq = _sequential_fps(clip, Path(tmp) / "seq.mp4", config)
            stage = {s.name: s.fps for s in stats.stages}
            rows.append((name, stage, stats.fps, stats.efficiency, seq))
            out = stats.extra["output"]
            report(f"{name}: {stats.fps:.1f} fps threaded, {seq:.1f} fps sequential")
    head = (
        f"\n### {stats.extra['model']} {stats.extra['geometry']}, {width}x{height} -> {out['width']}x{out['height']}, "
        f"{frames} frames, {device}, {base.sink.codec} {base.sink.preset}\n\n"
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


@dataclass(frozen=True)
class MatrixRow:
    """One cell of :func:`run_matrix`: model-only and end-to-end frames per second."""

    model: str
    scale: int
    size: tuple[int, int]
    backend: str
    precision: str
    batch: int
    colour_on: str
    model_fps: float
    e2e_fps: float
    bound: str
    gflop: float = 0.0  # network cost of one frame (see frame_gflop)


def frame_gflop(model: str, scale: int, width: int, height: int) -> float:
    """Floating-point operations of the network for one width×height input frame, in GFLOP
    (a multiply-add counts 2), counted by PyTorch's FlopCounterMode on shape-only tensors: the
    same number on every machine, so model-only fps × this is the arithmetic rate reached."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from .models import build_model

    spec = get_model(model, scale)
    net = build_model(model, scale, pretrained=False).eval().to("meta")
    inputs = [torch.empty(1, i.channels, height, width, device="meta") for i in spec.inputs]
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(*inputs)
    return counter.get_total_flops() / 1e9


def model_only_fps(backend, width: int, height: int, batch: int, seconds: float = 2.0) -> float:
    """Frames per second of the network alone on a random batch (after a warm-up): device tensors
    when the backend keeps them (nothing crosses the bus), host arrays otherwise."""
    import torch

    rng = np.random.default_rng(0)
    x = rng.random((batch, 3, height, width), dtype=np.float32)
    factor = backend.variant.factor or 2
    extra = InputAssembler(backend.variant.inputs).arrays([run_conditioning(0.5 * factor, 5.0)] * batch,
                                                          height, width)
    if backend.capabilities.device_tensors:
        device = torch.device(backend.capabilities.device)
        xt = torch.from_numpy(x).to(device)
        et = {k: torch.from_numpy(v).to(device) for k, v in extra.items()}
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

        def once():
            backend.infer_tensor(xt, et)
    else:
        def once():
            backend.infer(x, extra)

        def sync():  # host arrays: infer returns when the work is done
            pass
    once()
    sync()
    runs, start = 0, time.perf_counter()
    while runs < 3 or time.perf_counter() - start < seconds:
        once()
        runs += 1
    sync()
    return runs * batch / (time.perf_counter() - start)


def run_matrix(
    base: RunConfig,
    *,
    models: Sequence[str] = ("espcn", "srresnet", "udvd"),
    sizes: Sequence[tuple[int, int]] = ((960, 540), (1280, 720)),
    precisions: Sequence[str] = ("fp32", "fp16"),
    batches: Sequence[int] = (1, 4),
    backends: Sequence[str] | None = None,
    frames: int = 120,
    report: Callable[[str], None] = lambda line: None,
) -> list[MatrixRow]:
    """Every combination of model, input size, precision, batch and backend: model-only fps
    (:func:`model_only_fps`) and end-to-end fps of a run over a synthetic clip (decode, colour,
    inference, encode), with the stage that bounds it. fp16 is skipped on the CPU. Everything
    else (scale, device, encoder, backend options such as torch.compile) comes from ``base``."""
    device = resolve_device(base.device)
    names = list(backends or [b for b in list_backends() if _available(b, device)])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in sizes:
            clip = synth_clip(Path(tmp) / f"in_{width}x{height}.mp4", width, height, frames)
            for model, name, precision, batch in itertools.product(models, names, precisions, batches):
                if precision == "fp16" and device == "cpu":
                    continue
                config = dataclasses.replace(base, model=model, backend=name, precision=precision, batch_size=batch,
                                             audio=False)
                backend = load_backend(config, known_variant(config))
                try:
                    model_fps = model_only_fps(backend, width, height, batch)
                    upscale_video(clip, Path(tmp) / "warm.mp4", config, backend=backend, stop_after=2 * batch)
                    stats = upscale_video(clip, Path(tmp) / "out.mp4", config, backend=backend)
                finally:
                    backend.close()
                slowest = min((s for s in stats.stages if s.fps), key=lambda s: s.fps)
                factor = backend.variant.factor
                rows.append(MatrixRow(model, factor, (width, height), name, precision, batch,
                                      stats.extra["colour_on"], model_fps, stats.fps, slowest.name,
                                      frame_gflop(model, factor, width, height)))
                report(f"{model} {width}x{height} {name} {precision} b{batch}: model {model_fps:.1f} fps, "
                       f"end to end {stats.fps:.1f} fps (bound: {slowest.name})")
    return rows


def format_matrix(rows: Sequence[MatrixRow], base: RunConfig) -> str:
    """A Markdown section for BENCHMARKS.md: the machine, the software, one row per cell of a
    :func:`run_matrix` of ``base``."""
    import torch

    device, codec, preset = resolve_device(base.device), base.sink.codec, base.sink.preset
    compile = base.backend_options.get("torch", {}).get("compile", False)

    if device == "cuda" and torch.cuda.is_available():
        machine = f"{torch.cuda.get_device_name(0)}, CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}"
    else:
        machine = f"CPU {platform.machine()}, {torch.get_num_threads()} torch threads"
    versions = [f"torch {torch.__version__}", f"PyAV {av.__version__}"]
    for module in ("onnxruntime", "tensorrt"):
        try:
            versions.append(f"{module} {__import__(module).__version__}")
        except ImportError:
            pass
    head = (f"\n### Model matrix on {machine}\n\n{', '.join(versions)}; encode {codec} {preset}"
            f"{'; torch backend compiled (torch.compile)' if compile else ''}. Model-only: the "
            "network alone (on device tensors where the backend keeps them, host arrays for ONNX Runtime); "
            "end-to-end: decode, colour, inference, encode of a synthetic clip; bound: the stage with the lowest fps; "
            "GFLOP: the network's cost per frame; TFLOP/s: the rate the model-only fps reaches.\n\n"
            "| model | input -> output | backend | precision | batch | colour | model-only fps | end-to-end fps "
            "| bound | GFLOP/frame | TFLOP/s |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {r.model} x{r.scale} | {r.size[0]}x{r.size[1]} -> {r.size[0] * r.scale}x{r.size[1] * r.scale} | "
             f"{r.backend} | {r.precision} | {r.batch} | {r.colour_on} | {r.model_fps:.1f} | {r.e2e_fps:.1f} | "
             f"{r.bound} | {r.gflop:.1f} | {r.gflop * r.model_fps / 1000:.2f} |" for r in rows]
    return head + "\n".join(lines) + "\n"
