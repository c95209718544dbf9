"""OpenVINO backend: the exported graph (the same cached file ONNX Runtime runs, see
:func:`~streamsr.backends.export.cached_onnx`) compiled by OpenVINO's CPU plugin, in fp32, in
bf16 on CPUs that compute it (AVX512-BF16, AMX): low precision with neither PyTorch nor a
quantized graph, or in int8 from the quantized graph (:mod:`streamsr.backends.int8`: VNNI, AMX).
A run never imports torch on this backend once the graph is cached.

The graph's sides are dynamic; OpenVINO runs a graph compiled for fixed sides faster (ESPCN x2 at
640x360: 135 against 160 ms in fp32), and compiling one takes tens of milliseconds, so each input
size gets its own compiled model (a run has one, or, tiled, the few sizes of its tiles); the batch
stays dynamic."""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from ..models.registry import ModelVariant
from .base import BackendBase, register_backend
from .export import OUTPUT_NAME, load_cached_graph

__all__ = ["OpenVinoBackend", "OpenVinoConfig"]

#: OpenVINO's name of the precision it computes in what the graph leaves float (the quantized
#: graph's int8 convolutions are int8 whatever the hint)
_HINTS = {"fp32": "f32", "bf16": "bf16", "int8": "f32"}
#: compiled input sizes kept per backend, the least recently used dropped past this: a tiled frame
#: has up to sixteen (the first, middle, next-to-last and last tiles across and down)
_SHAPES_KEPT = 32


@dataclass(frozen=True, kw_only=True)
class OpenVinoConfig:
    """Options of the OpenVINO backend.

    Args:
        device: "cpu" (OpenVINO's GPU plugin is Intel's, not the CUDA GPUs streamsr targets).
        precision: "fp32", "bf16" (CPUs with AVX512-BF16 or AMX; checked by
            :func:`~streamsr.backends.choice.resolve_precision`) or "int8" (calibrated networks).
        threads: inference threads (None = OpenVINO's default, one per core).
        pinning: pin its threads to cores (None = OpenVINO's default).
    """

    device: str = "cpu"
    precision: str = "fp32"
    threads: int | None = None
    pinning: bool | None = None


@register_backend("openvino", OpenVinoConfig)
class OpenVinoBackend(BackendBase):
    """Runs the exported graph with OpenVINO's CPU plugin, one compiled model per input size. An
    infer request serves one call at a time: calls from several threads take turns (as one
    ONNX Runtime session's would share its cores)."""

    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = {"cpu": ("fp32", "bf16", "int8")}

    def __init__(self, variant: ModelVariant, config: OpenVinoConfig, weights: str | None = None):
        import openvino as ov

        self.variant, self.config = variant, config
        self.input_names = variant.input_names
        self.core = ov.Core()
        graph = "int8" if config.precision == "int8" else "fp32"
        self.model = load_cached_graph(variant, self.core.read_model, precision=graph, weights=weights)
        self.properties: dict[str, Any] = {"INFERENCE_PRECISION_HINT": _HINTS[config.precision],
                                           "PERFORMANCE_HINT": "LATENCY"}
        if config.threads:
            self.properties["INFERENCE_NUM_THREADS"] = config.threads
        if config.pinning is not None:
            self.properties["ENABLE_CPU_PINNING"] = config.pinning
        self.compiled: OrderedDict[tuple, Any] = OrderedDict()
        self._lock = threading.Lock()

    @classmethod
    def declines(cls, variant: ModelVariant, precision: str, weights: str | None = None) -> str | None:
        """bf16 for networks with inputs that must stay float32 (the any-scale networks' query
        coordinates): OpenVINO's bf16 hint covers the whole graph, and coordinates rounded to bf16
        fetch the wrong feature pixels (LIIF, LTE: 17 dB from fp32), where PyTorch keeps those
        inputs float32; int8 as every backend (calibrated networks)."""
        if precision == "bf16" and any(i.full_precision for i in variant.inputs[1:]):
            return "its query coordinates must stay float32, and OpenVINO's bf16 covers the whole graph"
        return super().declines(variant, precision, weights)

    @classmethod
    def available(cls, device: str) -> bool:
        if device != "cpu":
            return False
        try:
            import openvino  # noqa: F401
        except ImportError:
            return False
        return True

    @classmethod
    def unavailable_reason(cls, device: str) -> str:
        if device != "cpu":
            return "the openvino backend runs on the CPU; use --device cpu, or another backend for CUDA"
        return "openvino is not installed; pip install openvino"

    def _request(self, shapes: dict[str, tuple[int, ...]]):
        """The infer request of the model compiled for these inputs' sides; the batch stays
        dynamic (it costs nothing measurable), so that a varying number of tiles (tile reuse, the
        multi-camera hub) compiles once per tile size."""
        key = tuple(sorted((name, shape[1:]) for name, shape in shapes.items()))
        request = self.compiled.get(key)
        if request is None:
            model = self.model.clone()
            model.reshape({name: [-1, *sides] for name, sides in key})
            request = self.core.compile_model(model, "CPU", self.properties).create_infer_request()
            self.compiled[key] = request
            if len(self.compiled) > _SHAPES_KEPT:
                self.compiled.popitem(last=False)
        else:
            self.compiled.move_to_end(key)
        return request

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Upscale an N×C×H×W float32 batch; returns float32 N×C×sH×sW."""
        feeds = {self.input_names[0]: np.ascontiguousarray(batch, dtype=np.float32)}
        for name in self.input_names[1:]:
            feeds[name] = np.ascontiguousarray(extra[name], dtype=np.float32)
        with self._lock:
            request = self._request({name: a.shape for name, a in feeds.items()})
            # share_inputs: the arrays are read in place; the output is copied out of the request
            return request.infer(feeds, share_inputs=True)[OUTPUT_NAME]

    def close(self) -> None:
        """Drop the compiled models."""
        self.compiled.clear()
        self.model = None
