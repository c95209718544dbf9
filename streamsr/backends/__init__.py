"""Inference backends; importing this package registers torch, onnxruntime and tensorrt."""

from . import onnxruntime_backend, tensorrt_backend, torch_backend  # noqa: F401  (register)
from .base import (
    PREFERENCE,
    Backend,
    create_backend,
    get_backend_class,
    list_backends,
    resolve_backend,
    resolve_device,
)
from .export import export_onnx

__all__ = [
    "PREFERENCE",
    "Backend",
    "create_backend",
    "export_onnx",
    "get_backend_class",
    "list_backends",
    "resolve_backend",
    "resolve_device",
]
