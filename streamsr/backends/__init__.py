"""Inference backends; importing this package registers torch, onnxruntime, openvino, tensorrt and triton."""

from . import onnxruntime_backend, openvino_backend, tensorrt_backend, torch_backend, triton_backend  # noqa: F401  (register)
from .base import (
    PRECISIONS,
    Backend,
    BackendBase,
    Capabilities,
    WrappedBackend,
    backend_option_names,
    get_backend_class,
    list_backends,
)
from .choice import PREFERENCE, create_backend, load_backend, resolve_backend, resolve_device
from .export import export_onnx

__all__ = [
    "PRECISIONS",
    "PREFERENCE",
    "Backend",
    "BackendBase",
    "Capabilities",
    "WrappedBackend",
    "backend_option_names",
    "create_backend",
    "export_onnx",
    "get_backend_class",
    "list_backends",
    "load_backend",
    "resolve_backend",
    "resolve_device",
]
