"""PyTorch backend: CPU, or CUDA with fp16 and channels_last."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..models.registry import ModelSpec, build_model
from .base import register_backend

__all__ = ["TorchBackend", "TorchConfig"]


@dataclass(frozen=True, kw_only=True)
class TorchConfig:
    """Options of the PyTorch backend.

    Args:
        device: "cpu" or "cuda".
        precision: "fp32" or "fp16" (fp16 only on CUDA).
        channels_last: use NHWC memory format on CUDA (faster convolutions with tensor cores).
        threads: CPU threads for intra-op parallelism (None = PyTorch's default).
    """

    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool = True
    threads: int | None = None


@register_backend("torch")
class TorchBackend:
    """Runs the registered PyTorch module directly."""

    def __init__(self, spec: ModelSpec, scale: int, config: TorchConfig, weights: str | None = None):
        self.spec, self.scale, self.config = spec, scale, config
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(config.device)
        self.dtype = torch.float16 if config.precision == "fp16" and config.device == "cuda" else torch.float32
        model = build_model(spec.name, scale, weights=weights).to(self.device, self.dtype)
        self.memory_format = (
            torch.channels_last if config.channels_last and config.device == "cuda" else torch.contiguous_format
        )
        self.model = model.to(memory_format=self.memory_format)
        if config.device == "cuda":
            torch.backends.cudnn.benchmark = True

    @classmethod
    def create(cls, spec: ModelSpec, scale: int, *, device: str, precision: str, weights=None, **opts):
        """Build from generic options (see :func:`streamsr.backends.create_backend`)."""
        return cls(spec, scale, TorchConfig(device=device, precision=precision, **opts), weights)

    @classmethod
    def available(cls, device: str) -> bool:
        return device == "cpu" or torch.cuda.is_available()

    @classmethod
    def unavailable_reason(cls, device: str) -> str:
        return "PyTorch sees no CUDA GPU; use --device cpu"

    @torch.inference_mode()
    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Upscale an N×C×H×W float32 batch; returns float32 N×C×sH×sW."""
        extra = {k: torch.from_numpy(v) for k, v in (extra or {}).items()}
        return self.infer_tensor(torch.from_numpy(batch), extra).cpu().numpy()

    @torch.inference_mode()
    def infer_tensor(self, x: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Like :meth:`infer` on tensors (any device); the result stays on the backend's device
        as float32 (the GPU path of :mod:`streamsr.colour` keeps frames there)."""
        x = x.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
        args = [x] + [extra[k].to(self.device, self.dtype, non_blocking=True) for k in self.spec.inputs[1:]]
        return self.model(*args).float()

    def close(self) -> None:
        """Drop the model; free cached CUDA memory."""
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
