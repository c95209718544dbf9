"""Inference backend protocol, capabilities and registry.

A backend turns an N×C×H×W float32 batch in [0, 1] into the upscaled batch (not clamped). It
declares its :class:`Capabilities` (where it runs, whether it takes device tensors, its largest
batch); wrappers (tiling, the multi-camera hub) forward them through :class:`WrappedBackend`.
Each backend has one frozen, keyword-only config dataclass whose fields are reachable from the CLI
(``--backend-option torch.threads=2``) and TOML (``[backend.torch]`` tables), checked by name.
``auto`` takes, for the network being loaded, the backend that measured fastest on the device in
the shipped table :data:`SPEED_TABLE` (model-only frames per second, produced by
``tools/measure_backend_speed.py``) among those available here; a network, device or precision the
table does not hold walks :data:`PREFERENCE` and takes the first backend available. There is no
if/elif ladder over names or models: both are data.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..errors import BackendUnavailableError, ConfigError
from ..models.registry import ModelVariant

if TYPE_CHECKING:
    from ..pipeline.stats import RemoteStats

__all__ = [
    "PREFERENCE",
    "SPEED_TABLE",
    "Backend",
    "BackendBase",
    "BackendInfo",
    "Capabilities",
    "MeasuredSpeed",
    "WrappedBackend",
    "backend_option_names",
    "coerce_backend_options",
    "create_backend",
    "get_backend_class",
    "list_backends",
    "load_backend",
    "measured_speeds",
    "register_backend",
    "resolve_backend",
    "resolve_device",
]

log = logging.getLogger(__name__)

#: fields of a backend's config that the run sets (not user options)
_RUN_FIELDS = ("device", "precision")


@dataclass(frozen=True)
class Capabilities:
    """What a loaded backend offers its callers.

    Args:
        location: "host" (numpy arrays in and out, computed in this process), "torch" (also
            torch tensors on ``device``, results left there), or "remote" (another process/machine).
        device: the torch device its tensors live on ("cpu", "cuda", "cuda:1"); for a remote
            backend, where it runs (informational).
        device_tensors: ``infer_tensor`` takes and returns tensors on ``device`` (the device colour
            chain needs it).
        max_batch: the largest batch it takes (None: no limit of its own).
        banded: it runs the PyTorch module itself, whose any-scale decoder works a band of output
            rows at a time (an exported graph decodes the whole frame at once): the memory plan
            counts a band, not the frame.
    """

    location: str = "host"
    device: str = "cpu"
    device_tensors: bool = False
    max_batch: int | None = None
    banded: bool = False

    @property
    def on_cuda(self) -> bool:
        """Whether its tensors live on a CUDA device."""
        return self.device_tensors and self.device.startswith("cuda")


@runtime_checkable
class Backend(Protocol):
    """What every backend offers."""

    name: ClassVar[str]
    variant: ModelVariant
    capabilities: Capabilities

    @classmethod
    def available(cls, device: str) -> bool:
        """Whether this backend can run on ``device`` ("cpu" or "cuda") here."""

    @classmethod
    def unavailable_reason(cls, device: str) -> str:
        """Why :meth:`available` is False (a fix the user can apply)."""

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Run the network on an N×C×H×W float32 batch; ``extra`` holds further named inputs."""

    def infer_tensor(self, x, extra: dict | None = None):
        """Like :meth:`infer` on tensors on ``capabilities.device`` (when ``device_tensors``)."""

    def close(self) -> None:
        """Release device memory and sessions."""


class BackendBase:
    """Shared behaviour: no device tensors unless a backend says otherwise.

    Attributes:
        remote_stats: a remote backend's requests and its server's counters (a run's stats and
            its job's snapshots read them from the backend it runs on); None for a local one.
    """

    name: ClassVar[str] = "?"
    variant: ModelVariant
    capabilities: Capabilities = Capabilities()
    remote_stats: RemoteStats | None = None

    def infer_tensor(self, x, extra: dict | None = None):
        raise ConfigError(f"the {self.name} backend works on host arrays, not device tensors")

    def close(self) -> None:
        """Nothing to release."""


class WrappedBackend(BackendBase):
    """A backend around another one (tiling, the multi-camera hub's client): forwards its name,
    variant, capabilities and remote stats, so callers see what the inner backend can do.

    Args:
        inner: the wrapped backend.
    """

    def __init__(self, inner):
        self.inner = inner

    @property
    def name(self) -> str:  # type: ignore[override]
        return self.inner.name

    @property
    def variant(self) -> ModelVariant:  # type: ignore[override]
        return self.inner.variant

    @property
    def capabilities(self) -> Capabilities:  # type: ignore[override]
        return self.inner.capabilities

    @property
    def remote_stats(self) -> RemoteStats | None:  # type: ignore[override]
        return self.inner.remote_stats

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        return self.inner.infer(batch, extra)

    def infer_tensor(self, x, extra: dict | None = None):
        return self.inner.infer_tensor(x, extra)

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class BackendInfo:
    """Registry entry: the class and its frozen config class."""

    name: str
    cls: type
    config: type


_BACKENDS: dict[str, BackendInfo] = {}

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
    precision = precision or ("fp16" if device == "cuda" else "fp32")
    rows = [r for r in _speed_rows(table or SPEED_TABLE)
            if (r.variant, r.device, r.precision) == (name, device, precision) and backend in (None, r.backend)]
    return sorted(rows, key=lambda r: -r.fps)


def register_backend(name: str, config: type) -> Callable[[type], type]:
    """Class decorator adding a backend under ``name``. The class is built as
    ``cls(variant, config_instance, weights)``; ``config`` is its frozen keyword-only dataclass,
    whose fields other than device/precision are the user's options for it.

    Raises:
        ValueError: the name is taken.
    """

    def wrap(cls: type) -> type:
        if name in _BACKENDS:
            raise ValueError(f"backend {name!r} is already registered")
        cls.name = name
        _BACKENDS[name] = BackendInfo(name, cls, config)
        return cls

    return wrap


def list_backends() -> list[str]:
    """Registered backend names."""
    return sorted(_BACKENDS)


def get_backend_class(name: str) -> type:
    """The class registered as ``name``.

    Raises:
        ConfigError: unknown name (lists the known ones).
    """
    return _info(name).cls


def _info(name: str) -> BackendInfo:
    try:
        return _BACKENDS[name]
    except KeyError:
        raise ConfigError(
            f"unknown backend {name!r}; available: auto, {', '.join(list_backends())}"
        ) from None


def backend_option_names(name: str) -> list[str]:
    """The options a user may set for backend ``name`` (its config's fields but device/precision)."""
    return [f.name for f in dataclasses.fields(_info(name).config) if f.name not in _RUN_FIELDS]


def _coerce(value: Any, kind: Any, where: str) -> Any:
    """A CLI string (or TOML value) as the field's type: bool, int, float, str, or a class
    with ``from_text``; Optional[...] takes "none"."""
    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if args and type(None) in typing.get_args(kind):
        if isinstance(value, str) and value.lower() == "none":
            return None
        kind = args[0]
    if not isinstance(value, str) or kind is str:
        return value
    try:
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off"):
                raise ValueError(value)
            return value.lower() in ("true", "1", "yes", "on")
        if kind in (int, float):
            return kind(value)
        if hasattr(kind, "from_text"):
            return kind.from_text(value)
    except ValueError:
        raise ConfigError(f"backend option {where}: cannot read {value!r} as {getattr(kind, '__name__', kind)}") from None
    return value


def coerce_backend_options(options: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Check ``{backend: {option: value}}`` by name and turn strings into each field's type.

    Raises:
        ConfigError: an unknown backend or option (the message lists the known ones), a bad value.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, opts in options.items():
        info = _info(name)
        hints = typing.get_type_hints(info.config)
        known = backend_option_names(name)
        for key, value in opts.items():
            if key not in known:
                raise ConfigError(f"unknown option {key!r} for the {name} backend; it has: {', '.join(known)}")
            out.setdefault(name, {})[key] = _coerce(value, hints[key], f"{name}.{key}")
    return out


def resolve_device(device: str) -> str:
    """Map ``auto`` to ``cuda`` when PyTorch sees a GPU, else ``cpu``; validate others.

    Raises:
        ConfigError: unknown device; BackendUnavailableError: cuda asked for but absent.
    """
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda"):
        raise ConfigError(f"unknown device {device!r}; use auto, cpu or cuda")
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailableError("--device cuda asked for, but PyTorch sees no CUDA GPU; use --device cpu")
    return device


def resolve_backend(name: str, device: str, variant: ModelVariant | str | None = None,
                    precision: str | None = None) -> str:
    """Pick the backend name. For ``auto``: the fastest available one measured for ``variant``
    on ``device`` at ``precision`` (:func:`measured_speeds`), else the first available in
    :data:`PREFERENCE` (also when no variant is given).

    Args:
        name: a backend's name or ``auto``.
        device: "cpu" or "cuda" (resolved).
        variant: the network that will be loaded (or its name).
        precision: the run's (None: the device's default).

    Raises:
        BackendUnavailableError: the named backend cannot run on ``device`` (with the reason).
    """
    if name == "auto":
        measured = [r.backend for r in measured_speeds(variant, device, precision)] if variant is not None else []
        for candidate in dict.fromkeys(measured + list(PREFERENCE[device])):
            if candidate in _BACKENDS and _BACKENDS[candidate].cls.available(device):
                return candidate
        raise BackendUnavailableError(f"no inference backend is available for {device}")
    cls = get_backend_class(name)
    if not cls.available(device):
        raise BackendUnavailableError(cls.unavailable_reason(device))
    return name


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
    """Resolve device and backend, then load the network on it.

    Args:
        name: backend name or ``auto`` (the fastest measured for ``variant``, see :func:`resolve_backend`).
        variant: the network to load (``spec.variant(factor)``).
        device: auto, cpu or cuda.
        precision: fp32 or fp16 (None = fp16 on CUDA, fp32 on CPU).
        weights: user weights file instead of the shipped ones.
        tile: run frames larger than this (LR pixels a side) tile by tile (None: whole frames).
        tile_overlap: LR pixels neighbouring tiles share.
        options: ``{backend: {option: value}}`` (see :func:`coerce_backend_options`); the chosen
            backend's entry configures it. Options for another backend are an error when the
            backend was named (``--backend onnxruntime`` with torch options), and are left unused
            under ``auto`` (a preset may tune every backend it could get).
    """
    options = coerce_backend_options(options or {})
    device = resolve_device(device)
    if precision is None:
        precision = "fp16" if device == "cuda" else "fp32"
    if precision not in ("fp32", "fp16"):
        raise ConfigError(f"unknown precision {precision!r}; use fp32 or fp16")
    chosen = resolve_backend(name, device, variant, precision)
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
