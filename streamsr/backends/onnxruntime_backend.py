"""ONNX Runtime backend: the exported graph (from the user's cache after the first run, see
:func:`~streamsr.backends.export.cached_onnx`) run by an InferenceSession: fp32, fp16 baked into
the graph on CUDA, or the quantized graph in int8 on the CPU (:mod:`streamsr.backends.int8`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..models.registry import ModelVariant
from .base import BackendBase, register_backend
from .export import OUTPUT_NAME, load_cached_graph

__all__ = ["OnnxRuntimeBackend", "OrtConfig"]


@dataclass(frozen=True, kw_only=True)
class OrtConfig:
    """Options of the ONNX Runtime backend.

    Args:
        device: "cpu" or "cuda" (CUDA execution provider).
        precision: "fp32", "fp16" (CUDA: fp16 baked into the graph) or "int8" (CPU: the quantized graph).
        threads: intra-op threads (None = ONNX Runtime's default, one per core).
    """

    device: str = "cpu"
    precision: str = "fp32"
    threads: int | None = None


def _providers(device: str) -> list[str]:
    return (["CUDAExecutionProvider"] if device == "cuda" else []) + ["CPUExecutionProvider"]


@register_backend("onnxruntime", OrtConfig)
class OnnxRuntimeBackend(BackendBase):
    """Runs the exported graph with ONNX Runtime."""

    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}

    def __init__(self, variant: ModelVariant, config: OrtConfig, weights: str | None = None):
        self.variant, self.config = variant, config
        self.input_names = variant.input_names
        self.session = load_cached_graph(variant, self._session, precision=config.precision, weights=weights)

    def _session(self, data: bytes):
        import onnxruntime as ort

        config = self.config
        opts = ort.SessionOptions()
        if config.threads:
            opts.intra_op_num_threads = config.threads
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # The memory pattern pre-plans every intermediate of a call in one block on top of the
        # arena: from the second call on a frame then holds up to twice what the run plan budgets
        # (LTE at 4K on tiles: 19 GB against 11). Without it the peak stays the first call's, at
        # the same speed (BENCHMARKS.md).
        opts.enable_mem_pattern = False
        return ort.InferenceSession(data, opts, providers=_providers(config.device))

    @classmethod
    def available(cls, device: str) -> bool:
        try:
            import onnxruntime as ort
        except ImportError:
            return False
        return device == "cpu" or "CUDAExecutionProvider" in ort.get_available_providers()

    @classmethod
    def unavailable_reason(cls, device: str) -> str:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            return "onnxruntime is not installed; pip install onnxruntime"
        return "this onnxruntime has no CUDA provider; pip install onnxruntime-gpu, or use --device cpu"

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Upscale an N×C×H×W float32 batch; returns float32 N×C×sH×sW."""
        feeds = {self.input_names[0]: np.ascontiguousarray(batch, dtype=np.float32)}
        for name in self.input_names[1:]:
            feeds[name] = np.ascontiguousarray(extra[name], dtype=np.float32)
        return self.session.run([OUTPUT_NAME], feeds)[0]

    def close(self) -> None:
        """Drop the session."""
        self.session = None
