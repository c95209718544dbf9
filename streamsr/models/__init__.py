"""Super-resolution architectures; importing this package registers every model."""

from . import espcn, srcnn, srresnet, udvd  # noqa: F401  (registers)
from .registry import (
    ModelSpec,
    build_model,
    count_parameters,
    get_model,
    list_models,
    load_weights,
    register_model,
    weights_path,
)

__all__ = [
    "ModelSpec",
    "build_model",
    "count_parameters",
    "get_model",
    "list_models",
    "load_weights",
    "register_model",
    "weights_path",
]
