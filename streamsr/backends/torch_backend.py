"""PyTorch backend: CPU (fp32, or bf16 on CPUs that compute it), or CUDA with fp16; channels_last
on CUDA, and on the CPU for the networks it measured faster for (the speed table, see
:func:`~streamsr.backends.choice.measured_speeds`)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from ..machine import cuda_available
from ..models.registry import ModelVariant
from .base import BackendBase, Capabilities, register_backend
from .choice import measured_speeds

if TYPE_CHECKING:
    import torch

__all__ = ["TorchBackend", "TorchConfig"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class TorchConfig:
    """Options of the PyTorch backend.

    Args:
        device: "cpu" or "cuda".
        precision: "fp32", "fp16" (CUDA) or "bf16" (CUDA, and CPUs with AVX512-BF16 or AMX).
        channels_last: use the NHWC memory format. None: on CUDA (faster convolutions with tensor
            cores), and on the CPU where the speed table measured it faster for the network
            (oneDNN's NHWC convolutions: 1.2-1.7x for some networks, slower for others).
        threads: CPU threads for intra-op parallelism (None = PyTorch's default).
        compile: run the network through ``torch.compile`` (Inductor kernels; on the CPU with
            the weights frozen as constants; on CUDA in "reduce-overhead" mode, which replays CUDA
            graphs). The first frame of each size compiles (seconds to a minute); if compiling
            fails the backend says so once and runs eagerly.
    """

    device: str = "cpu"
    precision: str = "fp32"
    channels_last: bool | None = None
    threads: int | None = None
    compile: bool = False


def _channels_last(config: TorchConfig, variant: ModelVariant) -> bool:
    """The config's choice; by default always on CUDA, and on the CPU as the fastest measured
    torch row of the speed table has it at the run's precision (else at fp32; off for a network
    the table does not hold)."""
    if config.channels_last is not None:
        return config.channels_last
    if config.device == "cuda":
        return True
    fastest = (measured_speeds(variant, config.device, config.precision, backend="torch")
               or measured_speeds(variant, config.device, "fp32", backend="torch"))
    return bool(fastest and fastest[0].options.get("channels_last", False))


@register_backend("torch", TorchConfig)
class TorchBackend(BackendBase):
    """Runs the registered PyTorch module directly (PyTorch is imported when one is created)."""

    # bf16 on the CPU: oneDNN's AVX512-BF16/AMX kernels (choice.resolve_precision checks the CPU)
    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = {"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")}

    def __init__(self, variant: ModelVariant, config: TorchConfig, weights: str | None = None):
        import torch

        self.variant, self.config = variant, config
        self.input_names = variant.input_names
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(config.device)
        self.capabilities = Capabilities(location="torch", device=str(self.device), device_tensors=True, banded=True)
        self.dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[config.precision]
        model = variant.build(weights=weights).to(self.device, self.dtype)
        self.memory_format = torch.channels_last if _channels_last(config, variant) else torch.contiguous_format
        # only 4-D weights take the format (Module.to would refuse UDVD's 5-D kernel buffers)
        self.model = model._apply(lambda t: t.contiguous(memory_format=self.memory_format) if t.dim() == 4 else t)
        if config.device == "cuda":
            torch.backends.cudnn.benchmark = True
        self.graphs = config.compile and self.device.type == "cuda"
        self.forward = self.model
        if config.compile:
            if not self.graphs:
                # the weights are constants here: Inductor folds them into prepacked oneDNN
                # convolutions with their activations fused (ESPCN bf16 on the CPU: 1.9x eager)
                from torch._inductor import config as inductor

                inductor.freezing = True
            self.forward = torch.compile(self.model, mode="reduce-overhead" if self.graphs else None, dynamic=False)
        self.compiled = config.compile  # False once a compile failure fell back to eager

    @classmethod
    def available(cls, device: str) -> bool:
        return device == "cpu" or cuda_available()

    @classmethod
    def unavailable_reason(cls, device: str) -> str:
        return "PyTorch sees no CUDA GPU; use --device cpu"

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Upscale an N×C×H×W float32 batch; returns float32 N×C×sH×sW."""
        import torch

        extra = {k: torch.from_numpy(v) for k, v in (extra or {}).items()}
        return self.infer_tensor(torch.from_numpy(batch), extra).cpu().numpy()

    def infer_tensor(self, x: torch.Tensor, extra: dict[str, torch.Tensor] | None = None) -> torch.Tensor:
        """Like :meth:`infer` on tensors (any device); the result stays on the backend's device
        as float32 (the GPU path of :mod:`streamsr.colour` keeps frames there)."""
        import torch

        with torch.inference_mode():
            return self._forward(x, extra or {})

    def _forward(self, x: torch.Tensor, extra: dict[str, torch.Tensor]) -> torch.Tensor:
        import torch

        x = x.to(self.device, self.dtype, non_blocking=True).contiguous(memory_format=self.memory_format)
        args = [x] + [extra[i.name].to(self.device, torch.float32 if i.full_precision else self.dtype, non_blocking=True)
                      for i in self.variant.inputs[1:]]
        if not self.compiled:
            return self.model(*args).float()
        try:
            if self.graphs:  # each call is a new step: earlier outputs may be overwritten after it
                torch.compiler.cudagraph_mark_step_begin()
            y = self.forward(*args)
        except Exception as exc:  # noqa: BLE001 -- any compiler failure: say so once, run eagerly
            log.warning("torch.compile failed (%s: %s); running the model eagerly", type(exc).__name__,
                        str(exc).splitlines()[0] if str(exc) else "")
            self.compiled, self.forward = False, self.model
            return self.model(*args).float()
        # a CUDA graph's output lives in its pool until the next replay: hand out a copy
        return y.float() if y.dtype != torch.float32 or not self.graphs else y.clone()

    def close(self) -> None:
        """Drop the model; free cached CUDA memory."""
        self.model = None
        if self.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
