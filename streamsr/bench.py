"""Throughput benchmark: the threaded pipeline against a sequential decode→infer→encode loop, and
the measuring pieces that the model matrix (:mod:`streamsr.bench_matrix`) and the tools share.

Per-stage fps is frames per busy second of that stage alone; efficiency is end-to-end fps over
the slowest stage's fps (1.0 means every other stage is hidden behind the slowest one).

Every size comes from the run's resolved geometry (:func:`~streamsr.models.geometry.resolve_geometry`),
so fixed-factor models (ESPCN ×2/×3/×4) and models that take any output size (LIIF, LTE) are
measured alike; a network's extra inputs (UDVD's degradation maps, LIIF/LTE's query tables on the
output grid) are built through their grids (:class:`~streamsr.models.inputs.InputAssembler`) for
the real output size.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import av
import numpy as np

from .backends import list_backends, load_backend, resolve_backend, resolve_device
from .config import RunConfig
from .errors import BackendUnavailableError
from .io.sink import Sink
from .io.source import Source
from .machine import Machine
from .models.geometry import Geometry, ScaleRequest, parse_size, resolve_geometry
from .models.inputs import Grid, InputAssembler, run_conditioning
from .models.registry import ModelVariant, get_model, weights_path
from .pipeline.job import build_stages, run_sequential, upscale_video
from .pipeline.plan import plan_run, plan_source, plan_variant, resolve_model
from .synth import texture_pattern, write_clip

__all__ = ["frame_gflop", "model_only_fps", "network_gflop", "run_bench", "run_geometry", "synth_clip", "with_weights"]

def synth_clip(path: Path, width: int, height: int, frames: int, fps: int = 25) -> Path:
    """Write an H.264 clip of moving texture (edges, gradients, noise) for benchmarking.

    Args:
        path: the file to write.
        width, height: frame size.
        frames: clip length.
        fps: frame rate.
    """
    return write_clip(path, frames=frames, size=(width, height), fps=fps, image=texture_pattern,
                      options={"preset": "ultrafast", "crf": "18"})


def run_geometry(config: RunConfig, width: int, height: int) -> tuple[RunConfig, Geometry, ModelVariant]:
    """The model (``auto`` resolved), geometry and network of a run of ``config`` on
    ``width``×``height`` frames, decided as a run decides them.

    Args:
        config: the run's settings (model, scale or size, part).
        width, height: the input size.

    Raises:
        UnsupportedScaleError, ConfigError: the model cannot give what ``config`` asks.
    """
    config = resolve_model(config, width, height)
    spec = get_model(config.model)
    geometry = resolve_geometry(spec, config.request, width, height)
    return config, geometry, spec.variant(geometry.factor, geometry.part)


def with_weights(config: RunConfig, variant: ModelVariant, folder: str | Path) -> tuple[RunConfig, bool]:
    """``config`` with weights ``variant`` can load: the run's own (``config.weights``), the shipped
    ones, or, where neither exists (a model still in training), a randomly initialised state saved
    under ``folder``: the same arithmetic, so the speed measured is the trained network's.

    Args:
        config: the run's settings.
        variant: the network it loads.
        folder: where to save random weights (a temporary folder).

    Returns:
        (config, whether the weights are random).
    """
    if config.weights is not None or weights_path(variant.spec, variant.factor) is not None:
        return config, False
    import torch
    from safetensors.torch import save_file

    from .models import build_model

    stem = variant.spec.weights_file(variant.factor).removesuffix(".safetensors")
    path = Path(folder) / f"{stem}-untrained.safetensors"
    if not path.is_file():
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            net = build_model(variant.spec.name, variant.factor, pretrained=False)
        save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return dataclasses.replace(config, weights=str(path)), True


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
        base: the run's settings (model, scale or output size, device, encoder, ...); the backend
            is varied. A model without weights (shipped or ``base.weights``) runs untrained.
        width, height: input size.
        frames: clip length.
        backends: names to measure (default: every one available on the device).
        report: receives one line per finished measurement (progress).
    """
    import torch

    device = resolve_device(base.device)
    names = backends or [b for b in list_backends() if _available(b, device)]
    base, geometry, variant = run_geometry(base, width, height)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        base, untrained = with_weights(base, variant, tmp)
        clip = synth_clip(Path(tmp) / "bench.mp4", width, height, frames)
        for name in names:
            config = dataclasses.replace(base, backend=name, audio=False)
            upscale_video(clip, Path(tmp) / "warm.mp4", config, stop_after=4)  # warm-up (allocations, autotune)
            stats = upscale_video(clip, Path(tmp) / "out.mp4", config)
            seq = _sequential_fps(clip, Path(tmp) / "seq.mp4", config)
            stage = {s.name: s.fps for s in stats.stages}
            rows.append((name, stage, stats.fps, stats.efficiency, seq))
            report(f"{name}: {stats.fps:.1f} fps threaded, {seq:.1f} fps sequential")
    out = geometry.out_size
    head = (
        f"\n### {base.model} {geometry.label}, {width}x{height} -> {out[0]}x{out[1]}, "
        f"{frames} frames, {device}, {base.sink.codec} {base.sink.preset}\n\n"
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads; torch {torch.__version__}, "
        f"PyAV {av.__version__}.{' Untrained (random) weights: speed only.' if untrained else ''}\n\n"
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


def frame_gflop(model: str, scale: float | None, width: int, height: int, *,
                size: tuple[int | None, int] | str | None = None, part: str | None = None) -> float:
    """Floating-point operations of the network for one width×height input frame, in GFLOP
    (a multiply-add counts 2), counted by PyTorch's FlopCounterMode on shape-only tensors: the
    same number on every machine, so model-only fps × this is the arithmetic rate reached.

    Args:
        model: registry name.
        scale: the factor asked for (None: the model's default); or give ``size``.
        width, height: the input size.
        size: the output (width, height), "WxH" or "720p", instead of ``scale``; a fixed-factor
            model counts the factor it runs (the resize after it is not the network's).
        part: for models made of parts, the part.

    Raises:
        UnsupportedScaleError, ConfigError: the model cannot give that output.
    """
    if isinstance(size, str):
        size = parse_size(size)
    spec = get_model(model)
    geometry = resolve_geometry(spec, ScaleRequest(scale=scale, size=size, part=part), width, height)
    return network_gflop(spec.variant(geometry.factor, geometry.part), geometry.in_size, geometry.net_size)


@functools.lru_cache(maxsize=64)
def network_gflop(variant: ModelVariant, in_size: tuple[int, int], net_size: tuple[int, int]) -> float:
    """GFLOP of ``variant`` for one frame (see :func:`frame_gflop`), its inputs shaped by their grids.

    Args:
        variant: the network.
        in_size: (width, height) of the frame going in.
        net_size: (width, height) the network puts out (the output grid of query tables).
    """
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    net = variant.build(pretrained=False).to("meta")
    grid = Grid(1, (in_size[1], in_size[0]), (net_size[1], net_size[0]))
    inputs = [torch.empty(1, i.channels, *grid.of(i), device="meta") for i in variant.inputs]
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        net(*inputs)
    return counter.get_total_flops() / 1e9


def model_only_fps(backend, width: int, height: int, batch: int, seconds: float = 2.0, *,
                   net_size: tuple[int, int] | None = None, fresh_inputs: bool = False, runs: int = 3) -> float:
    """Frames per second of the network alone on a random batch (after a warm-up call): device
    tensors when the backend keeps them (nothing crosses the bus), host arrays otherwise.

    Args:
        backend: a loaded backend; its variant says which inputs to build.
        width, height: the input frames' size.
        batch: frames per call.
        seconds: time at least this long.
        net_size: (width, height) the network puts out (the grid of LIIF/LTE's query tables);
            None: the variant's own factor, or the model's default scale for one that takes any.
        fresh_inputs: build the extra inputs anew for every call (a new assembler: no table
            reused), to see what reusing them saves; by default they are built once, as a run does.
        runs: at least this many timed calls.
    """
    import torch

    variant = backend.variant
    if net_size is None:
        net_size = resolve_geometry(variant.spec, ScaleRequest(scale=variant.factor, part=variant.part),
                                    width, height).net_size
    out = (net_size[1], net_size[0])
    conds = [run_conditioning(0.5 * max(net_size[0] / width, net_size[1] / height), 5.0)] * batch
    x = np.random.default_rng(0).random((batch, 3, height, width), dtype=np.float32)
    if backend.capabilities.device_tensors:
        device = torch.device(backend.capabilities.device)
        xt = torch.from_numpy(x).to(device)
        sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
        extras = lambda: InputAssembler(variant.inputs).tensors(conds, height, width, device, out)

        def call(extra):
            backend.infer_tensor(xt, extra)
    else:
        extras = lambda: InputAssembler(variant.inputs).arrays(conds, height, width, out)

        def call(extra):
            backend.infer(x, extra)

        def sync():  # host arrays: infer returns when the work is done
            pass
    kept = extras()
    once = (lambda: call(extras())) if fresh_inputs else (lambda: call(kept))
    once()
    sync()
    done, start = 0, time.perf_counter()
    while done < runs or time.perf_counter() - start < seconds:
        once()
        done += 1
    sync()
    return done * batch / (time.perf_counter() - start)
