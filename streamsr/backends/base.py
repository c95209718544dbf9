"""Inference backend protocol and registry.

A backend turns an N×C×H×W float32 batch in [0, 1] into the upscaled batch (not clamped). Each
backend has one frozen, keyword-only config dataclass. ``auto`` walks :data:`PREFERENCE` and takes
the first backend available for the device; there is no if/elif ladder over names.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..errors import BackendUnavailableError, ConfigError
from ..models.registry import ModelSpec

__all__ = [
    "PREFERENCE",
    "Backend",
    "BackendInfo",
    "create_backend",
    "get_backend_class",
    "list_backends",
    "register_backend",
    "resolve_backend",
    "resolve_device",
]


@runtime_checkable
class Backend(Protocol):
    """What every backend offers."""

    name: ClassVar[str]

    @classmethod
    def available(cls, device: str) -> bool:
        """Whether this backend can run on ``device`` ("cpu" or "cuda") here."""

    @classmethod
    def unavailable_reason(cls, device: str) -> str:
        """Why :meth:`available` is False (a fix the user can apply)."""

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Run the network on an N×C×H×W float32 batch; ``extra`` holds further named inputs."""

    def close(self) -> None:
        """Release device memory and sessions."""


@dataclass(frozen=True)
class BackendInfo:
    """Registry entry: the class and how to build its config from generic options."""

    name: str
    cls: type
    make: Callable[..., Any]


_BACKENDS: dict[str, BackendInfo] = {}

#: Order ``auto`` tries, per device: fastest first (measured in BENCHMARKS.md for the CPU).
PREFERENCE: dict[str, tuple[str, ...]] = {
    "cuda": ("tensorrt", "torch", "onnxruntime"),
    "cpu": ("onnxruntime", "torch"),
}


def register_backend(name: str) -> Callable[[type], type]:
    """Class decorator adding a backend under ``name``; the class needs a ``create`` classmethod
    ``create(spec, scale, *, device, precision, weights) -> Backend``.

    Raises:
        ValueError: the name is taken.
    """

    def wrap(cls: type) -> type:
        if name in _BACKENDS:
            raise ValueError(f"backend {name!r} is already registered")
        cls.name = name
        _BACKENDS[name] = BackendInfo(name, cls, cls.create)
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
    try:
        return _BACKENDS[name].cls
    except KeyError:
        raise ConfigError(
            f"unknown backend {name!r}; available: auto, {', '.join(list_backends())}"
        ) from None


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


def resolve_backend(name: str, device: str) -> str:
    """Pick the backend name: the first available in :data:`PREFERENCE` for ``auto``.

    Raises:
        BackendUnavailableError: the named backend cannot run on ``device`` (with the reason).
    """
    if name == "auto":
        for candidate in PREFERENCE[device]:
            if candidate in _BACKENDS and _BACKENDS[candidate].cls.available(device):
                return candidate
        raise BackendUnavailableError(f"no inference backend is available for {device}")
    cls = get_backend_class(name)
    if not cls.available(device):
        raise BackendUnavailableError(cls.unavailable_reason(device))
    return name


def create_backend(
    name: str,
    spec: ModelSpec,
    scale: int,
    *,
    device: str = "auto",
    precision: str | None = None,
    weights: str | None = None,
    tile: int | None = None,
    tile_overlap: int = 16,
    **options: Any,
) -> Backend:
    """Resolve device and backend, then load the model on it.

    Args:
        name: backend name or ``auto``.
        spec: model spec from the registry.
        scale: upscale factor.
        device: auto, cpu or cuda.
        precision: fp32 or fp16 (None = fp16 on CUDA, fp32 on CPU).
        weights: user weights file instead of the shipped ones.
        tile: run frames larger than this (LR pixels a side) tile by tile (None: whole frames).
        tile_overlap: LR pixels neighbouring tiles share.
        options: backend-specific options (unset ones dropped by the caller).
    """
    device = resolve_device(device)
    chosen = resolve_backend(name, device)
    if precision is None:
        precision = "fp16" if device == "cuda" else "fp32"
    if precision not in ("fp32", "fp16"):
        raise ConfigError(f"unknown precision {precision!r}; use fp32 or fp16")
    if options.get("compile") and chosen != "torch":
        raise ConfigError(f"--compile applies to the torch backend, and this run uses {chosen}; add --backend torch")
    backend = _BACKENDS[chosen].make(spec, scale, device=device, precision=precision, weights=weights, **options)
    if tile:
        from .tiling import TiledBackend

        backend = TiledBackend(backend, scale, tile, tile_overlap)
    return backend
