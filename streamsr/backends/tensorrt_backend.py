"""TensorRT backend entry.

Engine building and the TensorRT runtime are not part of this version; this entry exists so that
``--backend tensorrt`` and ``auto`` behave predictably: it reports why it cannot run here.
"""

from __future__ import annotations

import importlib.util

from ..errors import BackendUnavailableError
from ..models.registry import ModelSpec
from .base import register_backend

__all__ = ["TensorRTBackend", "tensorrt_installed"]


def tensorrt_installed() -> bool:
    """True when the ``tensorrt`` Python package can be imported."""
    return importlib.util.find_spec("tensorrt") is not None


@register_backend("tensorrt")
class TensorRTBackend:
    """Placeholder registry entry; never available until the engine runtime lands."""

    @classmethod
    def available(cls, device: str) -> bool:
        return False

    @classmethod
    def unavailable_reason(cls, device: str) -> str:
        if not tensorrt_installed():
            return ("TensorRT is not installed (it needs an NVIDIA GPU and the tensorrt package); "
                    "use --backend torch or onnxruntime")
        return ("this streamsr version cannot run TensorRT engines yet; "
                "use --backend torch or onnxruntime")

    @classmethod
    def create(cls, spec: ModelSpec, scale: int, **_):
        raise BackendUnavailableError(cls.unavailable_reason("cuda"))
