"""Inference backend protocol, capabilities and registry.

A backend turns an N×C×H×W float32 batch in [0, 1] into the upscaled batch (not clamped). It
declares its :class:`Capabilities` (where it runs, whether it takes device tensors, its largest
batch); wrappers (tiling, the multi-camera hub) forward them through :class:`WrappedBackend`.
It declares the precisions it runs on each device (``precisions``). Each backend has one frozen,
keyword-only config dataclass whose fields are reachable from the CLI
(``--backend-option torch.threads=2``) and TOML (``[backend.torch]`` tables), checked by name.
Which backend and precision a run gets is decided in :mod:`streamsr.backends.choice`.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

import numpy as np

from ..config import PRECISIONS
from ..errors import ConfigError
from ..models.registry import ModelVariant

if TYPE_CHECKING:
    from ..pipeline.stats import RemoteStats

__all__ = [
    "PRECISIONS",
    "Backend",
    "BackendBase",
    "BackendInfo",
    "Capabilities",
    "WrappedBackend",
    "backend_option_names",
    "coerce_backend_options",
    "get_backend_class",
    "list_backends",
    "register_backend",
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
    #: the precisions it runs on each device; the first is what it runs for one it does not
    precisions: ClassVar[Mapping[str, tuple[str, ...]]]
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
    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = {"cpu": ("fp32",), "cuda": ("fp32", "fp16")}
    variant: ModelVariant
    capabilities: Capabilities = Capabilities()
    remote_stats: RemoteStats | None = None

    @property
    def precision(self) -> str:
        """The precision it runs (its config's, after :func:`~streamsr.backends.choice.resolve_precision`)."""
        config = getattr(self, "config", None)
        return getattr(config, "precision", "fp32")

    @classmethod
    def declines(cls, variant: ModelVariant, precision: str, weights: str | None = None) -> str | None:
        """Why it does not compute ``variant`` (with ``weights``, a file; None: the shipped ones)
        in ``precision``, one of its declared precisions, or None; the run then takes its first
        precision and says why (:func:`~streamsr.backends.choice.resolve_precision`). int8 needs
        the network's shipped calibration (:func:`streamsr.backends.int8.problem`)."""
        if precision == "int8":
            from .int8 import problem

            return problem(variant, weights)
        return None

    @classmethod
    def computes(cls, variant: ModelVariant, precision: str) -> bool:
        """Whether it computes ``variant`` with its shipped weights in ``precision`` (:meth:`declines`)."""
        return cls.declines(variant, precision) is None

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

    @property
    def precision(self) -> str:
        return self.inner.precision

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
