"""Super-resolution architectures; importing this package registers every model (from
:mod:`.catalog`, without importing PyTorch: a network's module is imported when it is built)."""

from . import catalog  # noqa: F401  (registers)
from .geometry import ContinuousRange, FixedFactors, Geometry, Parts, ScaleRequest, resolve_geometry
from .inputs import IMAGE, Conditioning, ModelInput, register_provider
from .registry import (
    ModelSpec,
    ModelVariant,
    add_model,
    build_model,
    count_parameters,
    get_model,
    list_models,
    load_weights,
    register_model,
    weights_path,
)

__all__ = [
    "IMAGE",
    "Conditioning",
    "ContinuousRange",
    "FixedFactors",
    "Geometry",
    "ModelInput",
    "ModelSpec",
    "ModelVariant",
    "Parts",
    "ScaleRequest",
    "add_model",
    "build_model",
    "count_parameters",
    "get_model",
    "list_models",
    "load_weights",
    "register_model",
    "register_provider",
    "resolve_geometry",
    "weights_path",
]
