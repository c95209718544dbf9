"""What this machine has that a run may use: a CUDA GPU PyTorch sees, FFmpeg's hardware decoders,
the memory available, the CPU's instruction sets (:func:`cpu_flags`).

Probed once per process (:meth:`Machine.probe`); planning takes a :class:`Machine` as an argument,
so it stays a pure function that tests drive with any machine they like.
"""

from __future__ import annotations

import functools
import glob
import os
from dataclasses import dataclass

__all__ = ["CPU_BF16_FLAGS", "Machine", "cpu_flags", "cpu_runs_bf16", "cuda_available"]

#: what a machine whose PyTorch could see a GPU has: an NVIDIA driver's devices, WSL2's GPU
#: device, ROCm's (PyTorch's ROCm build answers through torch.cuda too)
_GPU_DEVICE_PATTERNS = ("/dev/nvidia[0-9]*", "/proc/driver/nvidia/gpus/*", "/dev/dxg", "/dev/kfd")


@functools.cache
def cuda_available() -> bool:
    """Whether PyTorch sees a CUDA GPU. A machine with no GPU driver's devices answers no without
    importing PyTorch (about a second and 200 MiB that a CPU run on ONNX Runtime never needs)."""
    if not any(glob.glob(pattern) for pattern in _GPU_DEVICE_PATTERNS):
        return False
    import torch

    return torch.cuda.is_available()


def _cuda_free() -> int:
    import torch

    return torch.cuda.mem_get_info()[0]

#: CPU flags (Linux /proc/cpuinfo names) of instructions that compute in bf16 natively
CPU_BF16_FLAGS = frozenset({"avx512_bf16", "amx_bf16"})
#: ... and of those that multiply-accumulate 8-bit integers in one step (VNNI, AMX tiles)
CPU_INT8_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux names them (``avx512_vnni``, ``amx_bf16``, ...); empty
    where /proc/cpuinfo cannot be read (another OS): nothing is assumed."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("flags", "Features")):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_runs_bf16() -> bool:
    """Whether the CPU computes bf16 in hardware (AVX512-BF16 or AMX); elsewhere PyTorch emulates
    it, slower than fp32."""
    return bool(cpu_flags() & CPU_BF16_FLAGS)


def cpu_runs_int8() -> bool:
    """Whether the CPU has int8 dot-product instructions (VNNI or AMX); elsewhere int8
    convolutions run, but no faster than fp32 ones (``--precision auto`` keeps fp32 there)."""
    return bool(cpu_flags() & CPU_INT8_FLAGS)


def _available_memory() -> int | None:
    """MemAvailable of /proc/meminfo (Linux), else the free physical pages (os.sysconf), in bytes."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


@dataclass(frozen=True)
class Machine:
    """A machine, as planning sees it.

    Args:
        cuda: PyTorch sees a CUDA GPU.
        hwdevices: FFmpeg's hardware device types usable for decoding ("cuda", "vaapi", ...).
        memory: bytes of host memory available when probed (None: unknown, no automatic bound).
        cuda_memory: bytes free on the CUDA device when probed (None: no GPU, or unknown).
    """

    cuda: bool = False
    hwdevices: tuple[str, ...] = ()
    memory: int | None = None
    cuda_memory: int | None = None

    @classmethod
    @functools.cache
    def probe(cls) -> Machine:
        """This machine (probed once; the memory figures are those at the first probe)."""
        from av.codec.hwaccel import hwdevices_available

        cuda = cuda_available()
        return cls(cuda=cuda, hwdevices=tuple(hwdevices_available()), memory=_available_memory(),
                   cuda_memory=_cuda_free() if cuda else None)

    def hwaccel(self, hwdec: str) -> str | None:
        """The device type to decode on for ``--hwdec`` (None: the CPU): "auto" picks NVDEC when
        FFmpeg has CUDA support and PyTorch sees a GPU."""
        if hwdec == "none":
            return None
        if hwdec != "auto":
            return hwdec
        return "cuda" if "cuda" in self.hwdevices and self.cuda else None
