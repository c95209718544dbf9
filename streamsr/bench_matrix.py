"""The model matrix: model-only and end-to-end fps of every model × input size × requested output
× precision × batch × backend, for fixed-factor and any-scale models alike.

Each row carries the geometry the run resolved (input, network and output sizes, label), so a
request a fixed-factor model cannot meet exactly (a target size) is measured as a run does it:
its next factor, then the sink's resize. The measuring pieces are in :mod:`streamsr.bench`.
"""

from __future__ import annotations

import dataclasses
import itertools
import platform
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import av

from .backends import list_backends, load_backend, resolve_device
from .backends.choice import precision_fallback
from .bench import _available, model_only_fps, network_gflop, run_geometry, synth_clip, with_weights
from .config import RunConfig
from .errors import ConfigError, UnsupportedScaleError
from .models.geometry import Geometry, ScaleRequest, parse_size
from .models.registry import resolve_weights
from .pipeline.job import upscale_video

__all__ = ["DEFAULT_MODELS", "MatrixRow", "format_matrix", "parse_request", "run_matrix"]

#: the matrix's models by default: the fixed-factor ones and the any-scale ones
DEFAULT_MODELS = ("espcn", "srresnet", "udvd", "liif", "lte")


def parse_request(text: str, part: str | None = None) -> ScaleRequest:
    """One requested output: ``"2"`` or ``"x2.5"`` (a scale), ``"1280x720"`` or ``"720p"`` (an
    output size), ``"default"`` (each model's own default).

    Args:
        text: the request.
        part: for models made of parts, the part that runs.

    Raises:
        ConfigError: none of these forms.
    """
    value = str(text).strip().lower()
    if value in ("", "default"):
        return ScaleRequest(part=part)
    if "x" in value[1:] or value.endswith("p"):
        return ScaleRequest(size=parse_size(value, "a requested output size"), part=part)
    try:
        return ScaleRequest(scale=float(value.removeprefix("x")), part=part)
    except ValueError:
        raise ConfigError(f"a requested output is a scale (2, x2.5), a size (1280x720) or a height (720p); "
                          f"got {text!r}") from None


@dataclass(frozen=True)
class MatrixRow:
    """One cell of :func:`run_matrix`: model-only and end-to-end frames per second.

    Args:
        model: registry name.
        geometry: the run's resolved sizes (input, network output, written output).
        backend, precision, batch, colour_on: how it ran.
        model_fps: the network alone (:func:`~streamsr.bench.model_only_fps`).
        e2e_fps: decode, colour, inference, encode of a synthetic clip.
        bound: the stage with the lowest fps.
        gflop: network cost of one frame (:func:`~streamsr.bench.frame_gflop`).
        untrained: measured with random weights (none shipped yet): speed only.
    """

    model: str
    geometry: Geometry
    backend: str
    precision: str
    batch: int
    colour_on: str
    model_fps: float
    e2e_fps: float
    bound: str
    gflop: float = 0.0
    untrained: bool = False

    @property
    def size(self) -> tuple[int, int]:
        """Input (width, height)."""
        return self.geometry.in_size

    @property
    def out_size(self) -> tuple[int, int]:
        """Output (width, height) written."""
        return self.geometry.out_size

    @property
    def label(self) -> str:
        """The geometry's short label (``x2``, ``x2.5``, ``x3 -> 1280x720``)."""
        return self.geometry.label


def run_matrix(
    base: RunConfig,
    *,
    models: Sequence[str] = DEFAULT_MODELS,
    sizes: Sequence[tuple[int, int]] = ((960, 540), (1280, 720)),
    requests: Sequence[ScaleRequest] | None = None,
    precisions: Sequence[str] = ("fp32", "fp16"),
    batches: Sequence[int] = (1, 4),
    backends: Sequence[str] | None = None,
    frames: int = 120,
    seconds: float = 2.0,
    weights: Mapping[str, str | Path] | None = None,
    report: Callable[[str], None] = lambda line: None,
) -> list[MatrixRow]:
    """Every combination of model, input size, requested output, precision, batch and backend:
    model-only fps (:func:`~streamsr.bench.model_only_fps`) and end-to-end fps of a run over a
    synthetic clip (decode, colour, inference, encode), with the stage that bounds it. A precision
    a backend or the CPU does not run (fp16 on the CPU) is skipped; a request a model cannot meet (x2.5 of ESPCN) is skipped and reported.

    Args:
        base: everything else (device, encoder, backend options such as torch.compile, weights).
        models: registry names.
        sizes: input (width, height) sizes.
        requests: outputs asked for (:func:`parse_request`); None: ``base``'s (each model's
            default when it asks for none).
        precisions, batches: as a run's ``precision`` and ``batch_size``.
        backends: names (default: every one available on the device).
        frames: clip length of the end-to-end runs.
        seconds: the least time each model-only measurement takes.
        weights: ``{model: .safetensors}`` over ``base.weights``; a model with neither and no
            shipped weights runs untrained (random weights: the speed is the same).
        report: receives one line per finished (or skipped) cell.

    Raises:
        ConfigError: no model meets any request.
    """
    device = resolve_device(base.device)
    names = list(backends or [b for b in list_backends() if _available(b, device)])
    requests = list(requests) if requests else [base.request]
    rows, skipped = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for width, height in sizes:
            clip = synth_clip(Path(tmp) / f"in_{width}x{height}.mp4", width, height, frames)
            for model, request in itertools.product(models, requests):
                config = dataclasses.replace(base, model=model, scale=request.scale, size=request.size,
                                             part=request.part, audio=False,
                                             weights=(weights or {}).get(model, base.weights))
                try:
                    config, geometry, variant = run_geometry(config, width, height)
                except (ConfigError, UnsupportedScaleError) as exc:
                    skipped.append(str(exc))
                    report(f"{model} {width}x{height}: skipped ({exc})")
                    continue
                config, untrained = with_weights(config, variant, tmp)
                gflop = network_gflop(variant, geometry.in_size, geometry.net_size)
                file = resolve_weights(variant.spec, variant.factor, config.weights)
                for name, precision, batch in itertools.product(names, precisions, batches):
                    if precision_fallback(name, device, precision, variant=variant, weights=file)[1]:
                        continue  # the backend, this CPU, or the network (int8: its calibration) does not run it
                    cell = dataclasses.replace(config, backend=name, precision=precision, batch_size=batch)
                    backend = load_backend(cell, variant)
                    try:
                        model_fps = model_only_fps(backend, width, height, batch, seconds,
                                                   net_size=geometry.net_size)
                        upscale_video(clip, Path(tmp) / "warm.mp4", cell, backend=backend, stop_after=2 * batch)
                        stats = upscale_video(clip, Path(tmp) / "out.mp4", cell, backend=backend)
                    finally:
                        backend.close()
                    slowest = min((s for s in stats.stages if s.fps), key=lambda s: s.fps)
                    rows.append(MatrixRow(config.model, geometry, name, stats.extra["precision"], batch,
                                          stats.extra["colour_on"], model_fps, stats.fps, slowest.name, gflop, untrained))
                    report(f"{config.model} {_sizes(geometry)} {name} {precision} b{batch}: model {model_fps:.1f} "
                           f"fps, end to end {stats.fps:.1f} fps (bound: {slowest.name})")
    if not rows and skipped:
        raise ConfigError(f"no cell of the matrix could run: {skipped[0]}")
    return rows


def _sizes(g: Geometry) -> str:
    return f"{g.in_size[0]}x{g.in_size[1]} -> {g.out_size[0]}x{g.out_size[1]}"


def _model_cell(r: MatrixRow) -> str:
    g = r.geometry
    text = f"{r.model} x{g.factor}, resized" if g.resized else f"{r.model} {g.label}"
    return text + (" *" if r.untrained else "")


def format_matrix(rows: Sequence[MatrixRow], base: RunConfig) -> str:
    """A Markdown section for BENCHMARKS.md: the machine, the software, one row per cell of a
    :func:`run_matrix` of ``base``.

    Args:
        rows: the matrix's cells.
        base: the settings it ran with (device, encoder, backend options).
    """
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
            "network alone (on device tensors where the backend keeps them, host arrays for ONNX Runtime; "
            "query tables of any-scale models built once per size, as a run does); "
            "end-to-end: decode, colour, inference, encode of a synthetic clip; bound: the stage with the lowest fps; "
            "GFLOP: the network's cost per frame; TFLOP/s: the rate the model-only fps reaches. "
            "\"resized\": a fixed-factor network runs its next factor and the encoder's input is resized to the "
            "output (the network's fps and GFLOP are at its own factor).\n\n"
            "| model | input -> output | backend | precision | batch | colour | model-only fps | end-to-end fps "
            "| bound | GFLOP/frame | TFLOP/s |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
    lines = [f"| {_model_cell(r)} | {_sizes(r.geometry)} | {r.backend} | {r.precision} | {r.batch} | {r.colour_on} | "
             f"{r.model_fps:.1f} | {r.e2e_fps:.1f} | {r.bound} | {r.gflop:.1f} | {r.gflop * r.model_fps / 1000:.2f} |"
             for r in rows]
    foot = ("\n\n\\* untrained (random) weights, none shipped yet: the speed is the trained network's, "
            "the picture is not." if any(r.untrained for r in rows) else "")
    return head + "\n".join(lines) + foot + "\n"
