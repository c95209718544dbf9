"""What this machine has that a run may use: a CUDA GPU PyTorch sees, FFmpeg's hardware decoders.

Probed once per process (:meth:`Machine.probe`); planning takes a :class:`Machine` as an argument,
so it stays a pure function that tests drive with any machine they like.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

__all__ = ["Machine"]


@dataclass(frozen=True)
class Machine:
    """Args:
        cuda: PyTorch sees a CUDA GPU.
        hwdevices: FFmpeg's hardware device types usable for decoding ("cuda", "vaapi", ...).
    """

    cuda: bool = False
    hwdevices: tuple[str, ...] = ()

    @classmethod
    @functools.cache
    def probe(cls) -> Machine:
        """This machine (probed once)."""
        import torch
        from av.codec.hwaccel import hwdevices_available

        return cls(cuda=torch.cuda.is_available(), hwdevices=tuple(hwdevices_available()))

    def hwaccel(self, hwdec: str) -> str | None:
        """The device type to decode on for ``--hwdec`` (None: the CPU): "auto" picks NVDEC when
        FFmpeg has CUDA support and PyTorch sees a GPU."""
        if hwdec == "none":
            return None
        if hwdec != "auto":
            return hwdec
        return "cuda" if "cuda" in self.hwdevices and self.cuda else None
