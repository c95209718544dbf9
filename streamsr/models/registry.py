"""Model registry: metadata (:class:`ModelSpec`) kept apart from constructor arguments.

A model file registers a factory with :func:`register_model`; everything else asks the registry by
name. Weights are shipped as ``models/weights/{name}_x{scale}.safetensors``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from torch import nn

from ..errors import UnknownModelError, UnsupportedScaleError, WeightsError

__all__ = [
    "ModelSpec",
    "build_model",
    "count_parameters",
    "get_model",
    "list_models",
    "load_weights",
    "model_kwargs",
    "register_model",
    "weights_path",
]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What the rest of streamsr needs to know about an architecture.

    Args:
        name: registry name used on the command line.
        scales: supported integer upscale factors.
        paper: the paper the architecture implements.
        inputs: names of the network inputs, in order ("image" first; extra degradation maps after).
        input_channels: channels of each input.
        objective: "psnr" (fidelity) or "perceptual" (adversarially trained; PSNR is not its goal).
        colour: colour space the network works in; frames are converted to it by the pipeline.
        description: one line for ``streamsr models``.
        pad_multiple: input sides must be a multiple of this (1: any size).
    """

    name: str
    scales: tuple[int, ...]
    paper: str
    inputs: tuple[str, ...] = ("image",)
    input_channels: tuple[int, ...] = (3,)
    objective: str = "psnr"
    colour: str = "rgb"
    description: str = ""
    pad_multiple: int = 1
    factory: Callable[[int], nn.Module] = field(repr=False, compare=False, default=None)

    def weights_file(self, scale: int) -> str:
        """File name of the shipped weights for ``scale``."""
        return f"{self.name}_x{scale}.safetensors"


_REGISTRY: dict[str, ModelSpec] = {}


def register_model(spec: ModelSpec) -> Callable[[Callable[[int], nn.Module]], Callable[[int], nn.Module]]:
    """Decorator registering ``factory(scale, **variant_kwargs) -> nn.Module`` under ``spec.name``.

    Args:
        spec: the model's metadata (without factory; it is filled in here).

    Raises:
        ValueError: a model of that name is already registered.
    """

    def wrap(factory: Callable[[int], nn.Module]) -> Callable[[int], nn.Module]:
        if spec.name in _REGISTRY:
            raise ValueError(f"model {spec.name!r} is already registered")
        _REGISTRY[spec.name] = ModelSpec(**{**spec.__dict__, "factory": factory})
        return factory

    return wrap


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str, scale: int | None = None) -> ModelSpec:
    """Look up a model's spec, checking the scale when given.

    Args:
        name: registry name.
        scale: upscale factor to validate, or None.

    Raises:
        UnknownModelError: no such model (the message lists the known ones).
        UnsupportedScaleError: the model does not support ``scale``.
    """
    try:
        spec = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; available: {', '.join(list_models())}"
        ) from None
    if scale is not None and scale not in spec.scales:
        raise UnsupportedScaleError(
            f"model {name!r} does not support scale {scale}; "
            f"supported: {', '.join(map(str, spec.scales))}"
        )
    return spec


def weights_path(spec: ModelSpec, scale: int) -> Path | None:
    """Path of the shipped weights for ``spec`` at ``scale``, or None when none are shipped."""
    path = Path(str(resources.files("streamsr.models") / "weights" / spec.weights_file(scale)))
    return path if path.is_file() else None


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``.safetensors`` state dict into ``model`` (strict: every key must match).

    Raises:
        WeightsError: missing file, unreadable file or mismatched keys/shapes.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError) as exc:
        raise WeightsError(f"cannot load weights {path}: {exc}") from exc


def build_model(
    name: str, scale: int, *, pretrained: bool = True, weights: str | Path | None = None
) -> nn.Module:
    """Instantiate a registered model in eval mode, with weights.

    Args:
        name: registry name.
        scale: upscale factor.
        pretrained: load the shipped weights (error if none are shipped).
        weights: a user ``.safetensors`` file, which takes precedence over the shipped one.

    Raises:
        UnknownModelError, UnsupportedScaleError, WeightsError.
    """
    spec = get_model(name, scale)
    path = Path(weights) if weights is not None else (weights_path(spec, scale) if pretrained else None)
    if pretrained and path is None:
        raise WeightsError(f"no shipped weights for {name} x{scale}; pass a .safetensors file with --weights")
    model = spec.factory(scale, **(model_kwargs(path) if path is not None else {}))
    if path is not None:
        load_weights(model, path)
    return model.eval()


def model_kwargs(path: str | Path) -> dict:
    """Constructor arguments recorded in a weights file's metadata (``model_kwargs``), so weights
    of another variant (the paper-size one, say) build the network they fit."""
    import json

    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (OSError, ValueError) as exc:  # missing or not safetensors: load_weights explains
        if not Path(path).is_file():
            raise WeightsError(f"weights file not found: {path}") from exc
        raise WeightsError(f"cannot read weights {path}: {exc}") from exc
    return json.loads(meta.get("model_kwargs", "{}"))


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


