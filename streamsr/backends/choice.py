"""Choosing what a network runs on: the device, the backend and the precision.

``auto`` takes, for the network being loaded, the backend that measured fastest on the device at
the run's precision in the shipped table :data:`SPEED_TABLE` (model-only frames per second,
produced by ``tools/measure_backend_speed.py``) among those available here that run that
precision; a network, device or precision the table does not hold walks :data:`PREFERENCE` and
takes the first backend available. A precision the backend, or the CPU, cannot run falls back to
what it can, said once (:func:`resolve_precision`). ``--precision auto`` takes, on the CPU, the
fastest measured precision that the shipped quality table :data:`QUALITY_TABLE` says loses at most
0.1 dB against fp32 for the network (:func:`auto_precision`). There is no if/elif ladder over names or
models: backends declare their precisions and why they decline a network in one
(``Backend.declines``), speeds are data.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import BackendUnavailableError, ConfigError
from ..machine import cuda_available
from ..models.registry import ModelVariant, get_model, resolve_weights
from .base import _BACKENDS, PRECISIONS, coerce_backend_options, get_backend_class

__all__ = [
    "AUTO_MAX_LOSS",
    "PREFERENCE",
    "QUALITY_TABLE",
    "SPEED_TABLE",
    "MeasuredSpeed",
    "auto_precision",
    "create_backend",
    "default_precision",
    "load_backend",
    "measured_speeds",
    "precision_fallback",
    "precision_loss",
    "resolve_backend",
    "resolve_device",
    "resolve_precision",
]

log = logging.getLogger(__name__)


def default_precision(device: str) -> str:
    """A run's precision when none is asked for: fp16 on CUDA, fp32 on the CPU."""
    return "fp16" if device == "cuda" else "fp32"


#: Order ``auto`` tries, per device, for a network the speed table does not hold.
PREFERENCE: dict[str, tuple[str, ...]] = {
    "cuda": ("tensorrt", "torch", "onnxruntime"),
    "cpu": ("onnxruntime", "torch"),
}

#: the shipped table of measured model-only speeds (see :func:`measured_speeds`)
SPEED_TABLE = Path(__file__).resolve().parents[1] / "data" / "backend_speed.json"


@dataclass(frozen=True)
class MeasuredSpeed:
    """One row of the speed table: a network on a backend with some of its options.

    Args:
        variant: the network's name (ModelVariant.name: ``espcn_x2``, ``irn_x2-down``, ``lte``).
        device: "cpu" or "cuda".
        precision: "fp32", "fp16", ...
        backend: the backend's name.
        options: the backend options it ran with (``{"channels_last": True}``); the backend's
            defaults for the rest.
        fps: model-only frames per second.
    """

    variant: str
    device: str
    precision: str
    backend: str
    options: Mapping[str, Any]
    fps: float


@functools.cache
def _speed_rows(path: Path) -> tuple[MeasuredSpeed, ...]:
    try:
        data = json.loads(path.read_text())
        return tuple(MeasuredSpeed(r["variant"], r["device"], r["precision"], r["backend"],
                                   dict(r.get("options", {})), float(r["fps"])) for r in data["rows"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot read the backend speed table %s (%s); auto uses the fixed order", path, exc)
        return ()


def measured_speeds(variant: ModelVariant | str, device: str, precision: str | None = None, *,
                    backend: str | None = None, table: Path | None = None) -> list[MeasuredSpeed]:
    """The table's rows for a network on a device, fastest first.

    Args:
        variant: the network (or its name).
        device: "cpu" or "cuda".
        precision: the run's (None: fp16 on CUDA, fp32 on the CPU, as :func:`create_backend`).
        backend: only this backend's rows (its fastest options first).
        table: another table file (default :data:`SPEED_TABLE`).
    """
    name = variant if isinstance(variant, str) else variant.name
    precision = precision or default_precision(device)
    rows = [r for r in _speed_rows(table or SPEED_TABLE)
            if (r.variant, r.device, r.precision) == (name, device, precision) and backend in (None, r.backend)]
    return sorted(rows, key=lambda r: -r.fps)


#: the shipped table of what each lower precision costs against fp32 (``tools/eval_precision.py``)
QUALITY_TABLE = Path(__file__).resolve().parents[1] / "data" / "precision_quality.json"
#: the most mean Y-PSNR (dB) a precision picked by ``--precision auto`` may lose against fp32
AUTO_MAX_LOSS = 0.1


@functools.cache
def _losses(path: Path) -> dict[tuple[str, str], float]:
    """{(network name, precision): the most mean Y-PSNR it lost against fp32 at any scale measured,
    on any backend} (a row's cell is a precision's on the torch backend, ``bf16``, or names its
    precision and backend, ``bf16@openvino``)."""
    try:
        rows = json.loads(path.read_text())["rows"]
        out: dict[tuple[str, str], float] = {}
        for r in rows:
            spec = get_model(r["model"])
            names = [spec.variant(int(r["scale"]) if spec.scales else None, p).name for p in spec.parts]
            for key, cell in r.items():
                if isinstance(cell, dict) and "mean_change" in cell:
                    precision = cell.get("precision", key)
                    for n in names:
                        out[n, precision] = max(out.get((n, precision), 0.0), -cell["mean_change"])
        return out
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot read the precision quality table %s (%s); --precision auto keeps fp32", path, exc)
        return {}


def precision_loss(variant: ModelVariant | str, precision: str) -> float | None:
    """The most mean Y-PSNR (dB) ``variant`` measured to lose at ``precision`` against fp32 on any
    backend (0 for fp32; None: not measured)."""
    if precision == "fp32":
        return 0.0
    name = variant if isinstance(variant, str) else variant.name
    return _losses(QUALITY_TABLE).get((name, precision))


def auto_precision(name: str, device: str, variant: ModelVariant | str | None, weights: str | None = None) -> str:
    """What ``--precision auto`` runs: on CUDA the device's default (fp16); on the CPU the
    precision whose fastest measured row (of the named backend, or of any available one under
    ``auto``) is fastest, among fp32 and those measured to lose at most :data:`AUTO_MAX_LOSS` dB
    for this network, that the row's backend runs for it with ``weights`` (a file; None: the
    shipped ones) and this CPU computes fast (bf16 needs AVX512-BF16/AMX, int8 VNNI/AMX). fp32
    when nothing is measured."""
    if device != "cpu" or variant is None:
        return default_precision(device)
    from ..machine import cpu_runs_int8

    network = variant if isinstance(variant, ModelVariant) else None
    allowed = ["fp32"] + [p for p in PRECISIONS if p != "fp32" and (loss := precision_loss(variant, p)) is not None
                          and loss <= AUTO_MAX_LOSS and (p != "int8" or cpu_runs_int8())]
    best, fastest = "fp32", 0.0
    for precision in allowed:
        rows = [r for r in measured_speeds(variant, device, precision, backend=None if name == "auto" else name)
                if _BACKENDS[r.backend].cls.available(device)
                and _declined(r.backend, device, precision, network, weights, None) is None]
        if rows and rows[0].fps > fastest:
            best, fastest = precision, rows[0].fps
    return best


def resolve_device(device: str) -> str:
    """Map ``auto`` to ``cuda`` when PyTorch sees a GPU, else ``cpu``; validate others.

    Raises:
        ConfigError: unknown device; BackendUnavailableError: cuda asked for but absent.
    """
    if device == "auto":
        return "cuda" if cuda_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "cuda" and not cuda_available():
        raise BackendUnavailableError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return device


def _runs(name: str, device: str, precision: str) -> bool:
    return precision in _BACKENDS[name].cls.precisions.get(device, ())


def resolve_backend(name: str, device: str, variant: ModelVariant | str | None = None,
                    precision: str | None = None) -> str:
    """Pick the backend name. For ``auto``: among the backends available here that run
    ``precision`` on ``device``, the fastest measured for ``variant`` (:func:`measured_speeds`),
    else the first in :data:`PREFERENCE` (also when no variant is given); when none runs that
    precision, the first available (which then runs its own, see :func:`resolve_precision`).

    Args:
        name: a backend's name or ``auto``.
        device: "cpu" or "cuda" (resolved).
        variant: the network that will be loaded (or its name).
        precision: the run's (None: the device's default).

    Raises:
        BackendUnavailableError: the named backend cannot run on ``device`` (with the reason).
    """
    precision = precision or default_precision(device)
    if name == "auto":
        measured = [r.backend for r in measured_speeds(variant, device, precision)] if variant is not None else []
        candidates = [c for c in dict.fromkeys(measured + list(PREFERENCE[device]))
                      if c in _BACKENDS and _BACKENDS[c].cls.available(device)]
        if not candidates:
            raise BackendUnavailableError(f"no inference backend is available for {device}")
        return next((c for c in candidates if _runs(c, device, precision)), candidates[0])
    cls = get_backend_class(name)
    if not cls.available(device):
        raise BackendUnavailableError(cls.unavailable_reason(device))
    return name


@functools.cache
def _notice(text: str) -> None:
    """Say ``text`` once per process (a multi-camera run loads a network per camera)."""
    log.warning("%s", text)


def _declined(backend: str, device: str, precision: str, variant: ModelVariant | None, weights: str | None,
              cpu_bf16: bool | None) -> str | None:
    """Why ``backend`` does not run ``precision`` on ``device`` (for ``variant`` with ``weights``
    when given), or None: the one test a run, ``--precision auto`` and the bench matrix share."""
    cls = _BACKENDS[backend].cls
    runs = cls.precisions.get(device, ("fp32",))
    if precision not in runs:
        return f"the {backend} backend runs {'/'.join(runs)} on the {device}, not {precision}"
    if precision == "bf16" and device == "cpu":
        from ..machine import cpu_runs_bf16

        if not (cpu_runs_bf16() if cpu_bf16 is None else cpu_bf16):
            return "this CPU has no bf16 instructions (AVX512-BF16 or AMX) and would emulate them"
    if variant is not None and (why := cls.declines(variant, precision, weights)):
        return f"the {backend} backend runs {variant.name} in {runs[0]}: {why}"
    return None


def precision_fallback(backend: str, device: str, precision: str, *, variant: ModelVariant | None = None,
                       weights: str | None = None, cpu_bf16: bool | None = None) -> tuple[str, str | None]:
    """(the precision ``backend`` runs for ``precision`` on ``device``, why it differs or None):
    the one asked for when the backend runs it, the CPU computes it in hardware (bf16), and the
    backend computes ``variant`` with ``weights`` in it (``Backend.declines``: int8 needs the
    network's calibration); else the backend's first (fp32 on the CPU). The reason names the
    backends, or the device, that would run it.

    Args:
        backend: a registered backend's name.
        device: "cpu" or "cuda" (resolved).
        precision: one of :data:`~streamsr.config.PRECISIONS`.
        variant: the network it will run (None: any).
        weights: the weights file it will load (None: the shipped ones).
        cpu_bf16: whether the CPU has bf16 instructions (None: this machine's, see
            :func:`streamsr.machine.cpu_runs_bf16`).
    """
    why = _declined(backend, device, precision, variant, weights, cpu_bf16)
    if why is None:
        return precision, None
    runs = _BACKENDS[backend].cls.precisions.get(device, ("fp32",))
    others = [n for n in sorted(_BACKENDS) if n != backend and _declined(n, device, precision, variant, weights, cpu_bf16) is None]
    if others:
        why += f" ({precision} runs on --backend {' or '.join(others)})"
    elif device == "cuda" and any(_declined(n, "cpu", precision, variant, weights, cpu_bf16) is None for n in _BACKENDS):
        why += f" ({precision} runs on the CPU: --device cpu)"
    return runs[0], why


def resolve_precision(backend: str, device: str, precision: str | None, variant: ModelVariant | None = None,
                      weights: str | None = None) -> str:
    """The precision ``backend`` runs for a run asking for ``precision`` on ``device``
    (:func:`precision_fallback`); a fallback is said once, with the reason.

    Args:
        backend: the resolved backend's name.
        device: "cpu" or "cuda" (resolved).
        precision: one of :data:`~streamsr.config.PRECISIONS` (checked by :func:`create_backend`),
            or None: the device's default.
        variant, weights: the network and weights file it will run (None: any, the shipped ones).
    """
    if precision is None:
        precision = default_precision(device)
    runs, why = precision_fallback(backend, device, precision, variant=variant, weights=weights)
    if why is not None:
        _notice(f"--precision {precision}: {why}; running {runs}")
    return runs


def create_backend(
    name: str,
    variant: ModelVariant,
    *,
    device: str = "auto",
    precision: str | None = None,
    weights: str | None = None,
    tile: int | None = None,
    tile_overlap: int = 16,
    options: Mapping[str, Mapping[str, Any]] | None = None,
):
    """Resolve device, backend and precision, then load the network on it.

    Args:
        name: backend name or ``auto`` (the fastest measured for ``variant`` at ``precision``, see
            :func:`resolve_backend`).
        variant: the network to load (``spec.variant(factor)``).
        device: auto, cpu or cuda.
        precision: fp32, fp16, bf16 or int8 (None = fp16 on CUDA, fp32 on CPU); one the backend,
            the CPU or the network's calibration (int8) cannot run falls back to what it can, said once (:func:`resolve_precision`);
            ``auto``: the fastest measured within 0.1 dB of fp32 (:func:`auto_precision`).
        weights: user weights file instead of the shipped ones, or the name of shipped
            alternative weights (``codec`` for IRN x2, see :func:`~streamsr.models.registry.resolve_weights`).
        tile: run frames larger than this (LR pixels a side) tile by tile (None: whole frames).
        tile_overlap: LR pixels neighbouring tiles share.
        options: ``{backend: {option: value}}`` (see :func:`coerce_backend_options`); the chosen
            backend's entry configures it. Options for another backend are an error when the
            backend was named (``--backend onnxruntime`` with torch options), and are left unused
            under ``auto`` (a preset may tune every backend it could get).
    """
    options = coerce_backend_options(options or {})
    device = resolve_device(device)
    if precision is not None and precision not in ("auto", *PRECISIONS):
        raise ConfigError(f"unknown precision {precision!r}; use auto, {', '.join(PRECISIONS)}")
    weights = resolve_weights(variant.spec, variant.factor, weights)  # a shipped alternative's name -> its file
    if precision == "auto":
        precision = auto_precision(name, device, variant, weights)
    chosen = resolve_backend(name, device, variant, precision)
    precision = resolve_precision(chosen, device, precision, variant, weights)
    if name != "auto":
        for other, opts in options.items():
            if other != chosen and opts:
                spelled = ", ".join(f"{other}.{k}" for k in opts)
                raise ConfigError(f"{spelled} applies to the {other} backend, and this run uses {chosen}; "
                                  f"add --backend {other}")
    info = _BACKENDS[chosen]
    config = info.config(device=device, precision=precision, **options.get(chosen, {}))
    backend = info.cls(variant, config, weights)
    if tile:
        from .tiling import TiledBackend

        backend = TiledBackend(backend, tile, tile_overlap)
    return backend


def load_backend(config, variant: ModelVariant):
    """Load ``variant`` on the backend a :class:`~streamsr.config.RunConfig` asks for (whole
    frames: a run's plan decides whether it is tiled, see :func:`streamsr.pipeline.plan.plan_run`)."""
    return create_backend(config.backend, variant, device=config.device, precision=config.precision,
                          weights=config.weights, options=config.backend_options)
