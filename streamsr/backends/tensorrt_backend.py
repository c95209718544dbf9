"""TensorRT backend: finds a matching engine in the cache or builds one, then runs it with
``execute_async_v3`` on a CUDA stream, device buffers being PyTorch CUDA tensors (no pycuda).

Written against the documented Python API of TensorRT 10 and 11 (named I/O tensors,
``set_input_shape``/``set_tensor_address``); not yet run on a GPU here, see README.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import BackendUnavailableError, ConfigError
from ..machine import cuda_available
from ..models.inputs import output_axes
from ..models.registry import ModelVariant
from .base import BackendBase, Capabilities, register_backend
from .engine import (
    EngineCache,
    EngineKey,
    Shape,
    ShapeProfile,
    build_engine,
    needs_output_size,
    network_flags,
)
from .export import OUTPUT_NAME, export_onnx

__all__ = ["TensorRTBackend", "TensorRTConfig", "engine_key_for", "tensorrt_installed"]

log = logging.getLogger("streamsr")


def tensorrt_installed() -> bool:
    """True when the ``tensorrt`` Python package can be imported."""
    return importlib.util.find_spec("tensorrt") is not None


@dataclass(frozen=True, kw_only=True)
class TensorRTConfig:
    """Options of the TensorRT backend.

    Args:
        device: "cuda" (TensorRT runs nowhere else).
        precision: "fp16" or "fp32" (decided at build time; part of the engine key).
        engine: an explicit engine file (refused if its key does not match this model/GPU/TRT).
        engine_dir: the engine cache folder (default: engines/ in the user's cache, streamsr.cache).
        profile: shapes to build for (with the output's sizes for a model that takes any scale);
            None = built for the first batch's size (batch up to ``max_batch``).
        max_batch: largest batch of an automatically built engine.
    """

    device: str = "cuda"
    precision: str = "fp16"
    engine: str | None = None
    engine_dir: str | None = None
    profile: ShapeProfile | None = None
    max_batch: int = 4


def _onnx_precision(trt, precision: str) -> str:
    # strongly typed builds take precision from the graph; a TRT without strong typing takes an
    # fp32 graph and the FP16 builder flag
    return precision if network_flags(trt) else "fp32"


def engine_key_for(variant: ModelVariant, profile: ShapeProfile, precision: str,
                   weights: str | None = None) -> tuple[EngineKey, bytes]:
    """The engine key (and the ONNX it hashes) for a network on this machine's GPU and TensorRT."""
    import tensorrt as trt
    import torch

    onnx = export_onnx(variant, precision=_onnx_precision(trt, precision), weights=weights)
    key = EngineKey.make(variant.name, onnx, profile, precision, trt.__version__,
                         torch.cuda.get_device_name(), torch.cuda.get_device_capability())
    return key, onnx


@register_backend("tensorrt", TensorRTConfig)
class TensorRTBackend(BackendBase):
    """Runs serialized TensorRT engines; builds and caches them on first use."""

    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = {"cuda": ("fp16", "fp32")}

    def __init__(self, variant: ModelVariant, config: TensorRTConfig, weights: str | None = None):
        import torch

        if config.device != "cuda":
            raise BackendUnavailableError("TensorRT runs on CUDA GPUs only; use --device cuda")
        self.variant, self.config, self.weights = variant, config, weights
        self.input_names = variant.input_names
        self.cache = EngineCache(config.engine_dir)
        self.device = torch.device("cuda")
        # an engine built for the first batch takes up to max_batch (tile reuse batches tiles by it)
        self.capabilities = Capabilities(location="torch", device="cuda", device_tensors=True,
                                         max_batch=config.profile.max.n if config.profile else config.max_batch)
        self.stream = torch.cuda.Stream()
        self.context = self.engine = self.profile = None
        if config.engine or config.profile:
            self._load(config.profile or _profile_from_name(config.engine))

    @classmethod
    def available(cls, device: str) -> bool:
        return device == "cuda" and tensorrt_installed() and cuda_available()

    @classmethod
    def unavailable_reason(cls, device: str) -> str:
        if not tensorrt_installed():
            return ("TensorRT is not installed (it needs an NVIDIA GPU and the tensorrt package); "
                    "use --backend torch or onnxruntime")
        return "TensorRT needs a CUDA GPU, and PyTorch sees none; use --backend onnxruntime --device cpu"

    def _load(self, profile: ShapeProfile) -> None:
        import tensorrt as trt

        if profile.out is None and needs_output_size(self.variant.inputs):
            raise ConfigError(f"{self.variant.name} takes any output size: its TensorRT profile needs the output's "
                              "sizes too, e.g. tensorrt.profile=1x3x64x64,1x3x540x960,4x3x1080x1920,"
                              "128x128,1080x1920,2160x3840 (or `streamsr build-engine --scale`)")
        if profile.out is not None and not needs_output_size(self.variant.inputs):
            raise ConfigError(f"{self.variant.name}'s output size follows from its input's: its TensorRT profile "
                              f"takes no output sizes (got {profile})")
        key, onnx = engine_key_for(self.variant, profile, self.config.precision, self.weights)
        if self.config.engine:
            path = os.fspath(self.config.engine)
            if os.path.basename(path) != key.filename:
                raise ConfigError(
                    f"engine {os.path.basename(path)} does not match this model, precision, TensorRT "
                    f"and GPU (expected {key.filename}); rebuild it with `streamsr build-engine`")
        else:
            path = self.cache.path(key)
            if not os.path.exists(path):
                stale = self.cache.stale(key)
                if stale:
                    log.warning("ignoring %d stale engine(s) for %s (`streamsr engines clean` removes them)",
                                len(stale), self.variant.name)
                log.warning("building a TensorRT engine for %s (%s, %s); this takes a while, once",
                            self.variant.name, self.config.precision, profile)
                data = build_engine(onnx, self.variant.inputs, profile, self.config.precision,
                                    self.cache.timing_cache)
                self.cache.folder.mkdir(parents=True, exist_ok=True)
                tmp = f"{path}.partial"
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        with open(path, "rb") as f:
            self.engine = runtime.deserialize_cuda_engine(f.read())
        if self.engine is None:
            raise ConfigError(f"TensorRT could not load engine {path}; rebuild it with `streamsr build-engine`")
        self.context = self.engine.create_execution_context()
        self.profile = profile

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Upscale an N×C×H×W float32 batch; returns float32 N×C×sH×sW."""
        import torch

        arrays = {self.input_names[0]: batch, **(extra or {})}
        with torch.cuda.stream(self.stream):
            tensors = {name: torch.from_numpy(np.ascontiguousarray(arrays[name], dtype=np.float32))
                       .pin_memory().to(self.device, non_blocking=True) for name in self.input_names}
        out = self._execute(tensors)
        self.stream.synchronize()
        return out.cpu().numpy()

    def infer_tensor(self, x, extra: dict | None = None):
        """Like :meth:`infer` on CUDA tensors (float32 N×C×H×W and the map inputs), without
        leaving the GPU; ordered after the caller's stream and before its later work."""
        import torch

        tensors = {self.input_names[0]: x, **(extra or {})}
        tensors = {name: tensors[name].to(self.device, torch.float32).contiguous() for name in self.input_names}
        caller = torch.cuda.current_stream()
        self.stream.wait_stream(caller)
        for t in tensors.values():  # the caching allocator must not reuse them before the engine ran
            t.record_stream(self.stream)
        out = self._execute(tensors)
        caller.wait_stream(self.stream)
        out.record_stream(caller)
        return out

    def _execute(self, tensors: dict):
        """Run the engine on ``self.stream`` over device tensors (one per input name)."""
        import torch

        n, _, h, w = tensors[self.input_names[0]].shape
        out = _output_size(self.variant, {name: tuple(t.shape) for name, t in tensors.items()})
        if self.context is None:
            # a tile's kept output can be a few pixels, whatever the LR tile: any output up to this one;
            # tiles of 16 LR pixels a side and up fit (tile reuse's windows are 40 and up)
            self._load(ShapeProfile(Shape(1, 3, min(h, 16), min(w, 16)), Shape(n, 3, h, w),
                                    Shape(max(n, self.config.max_batch), 3, h, w),
                                    ((1, 1), out, out) if out else None))
        if not self.profile.covers(n, h, w, out):
            size = f"{w}x{h}" + (f" to {out[1]}x{out[0]}" if out else "")
            raise ConfigError(f"a batch of {n} frames of {size} is outside the engine's profile {self.profile}; "
                              "use --tile, or build an engine with a larger --max-shape"
                              + (" and output sizes (--out-shape)" if self.profile.out else ""))
        with torch.cuda.stream(self.stream):
            for name, t in tensors.items():
                self.context.set_input_shape(name, tuple(t.shape))
                self.context.set_tensor_address(name, t.data_ptr())
            out = torch.empty(tuple(self.context.get_tensor_shape(OUTPUT_NAME)), dtype=torch.float32,
                              device=self.device)
            self.context.set_tensor_address(OUTPUT_NAME, out.data_ptr())
            if not self.context.execute_async_v3(self.stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
        return out

    def close(self) -> None:
        """Release the execution context and engine."""
        self.context = self.engine = None


def _output_size(variant: ModelVariant, shapes: dict[str, tuple[int, ...]]) -> tuple[int, int] | None:
    """The output's (height, width), read off the inputs on grids of the output (rows, cols,
    output); None when the variant has none (its output size follows from the image's)."""
    size: list[int | None] = [None, None]
    for i in variant.inputs:
        for k, is_out in enumerate(output_axes(i.grid)):
            if is_out:
                got = int(shapes[i.name][2 + k])
                if size[k] not in (None, got):
                    raise ConfigError(f"input {i.name!r} of {variant.name} is for an output {'HW'[k]} of {got}, "
                                      f"another input for {size[k]}")
                size[k] = got
    if size == [None, None]:
        return None
    if None in size:
        raise ConfigError(f"the inputs of {variant.name} tell the output's {'HW'[1 - size.index(None)]} "
                          f"but not its {'HW'[size.index(None)]}")
    return size[0], size[1]


def _profile_from_name(path: str | None) -> ShapeProfile:
    """Read the shape profile out of an engine file name (see EngineKey.filename: the profile is
    the fifth field from the end, as a variant's name may hold a ``-``)."""
    name = os.path.basename(path or "")
    parts = name.removesuffix(".engine").split("-")
    try:
        if len(parts) < 7:
            raise ConfigError(name)
        return ShapeProfile.from_text(parts[-5])
    except ConfigError:
        raise ConfigError(f"{name!r} is not an engine file named by streamsr (build one with `streamsr build-engine`)"
                          ) from None
