"""How much memory a run needs, before its first frame, so that a large frame is tiled (or
refused with one line) instead of pushing the machine into the OOM killer.

Two parts add up: the network's working memory for a batch (measured once per network on
PyTorch's meta device: shapes only, no arithmetic, so a 4000×4000 frame costs nothing to
estimate) and the frames waiting in the queues between stages.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from ..errors import ConfigError
from ..models.registry import ModelVariant

__all__ = ["MemoryNeed", "network_bytes_per_pixel", "parse_bytes", "run_memory"]

#: queues between stages and what a frame weighs in each (bytes per LR / output pixel):
#: decoded YUV 4:2:0, float RGB going in, float RGB coming out, the encoder's YUV frame
_QUEUED_LR, _QUEUED_OUT = 1.5 + 12.0, 12.0 + 1.5
#: the network's peak is more than its largest single operation (skip connections stay alive)
_NETWORK_SAFETY = 2.0


def parse_bytes(text: str | float) -> int:
    """``"8G"``, ``"512M"``, ``"1.5GiB"`` or a number of bytes → bytes.

    Raises:
        ConfigError: not a size.
    """
    if isinstance(text, (int, float)):
        return int(text)
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMGT]?)(i?B)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ConfigError(f"--max-memory wants a size like 8G or 512M, got {text!r}")
    return int(float(m.group(1)) * 1024 ** " KMGT".index(m.group(2).upper() or " "))


#: the file that keeps :func:`network_bytes_per_pixel`'s measurements between runs (under the
#: user's cache folder, keyed by network, scale and the code's version)
MEASURED_FILE = "network_bytes.json"


@functools.lru_cache(maxsize=32)
def network_bytes_per_pixel(variant: ModelVariant, scale: tuple[float, float] | None = None) -> float:
    """Working memory of ``variant`` per LR pixel of a one-frame batch in float32: the largest
    operation's inputs plus outputs (measured at two sizes on the meta device, the difference
    divided by the pixels between them, so the weights drop out), times a safety factor.

    The measurement (0.7 s and PyTorch's compiler stack loaded, on two cores) is kept in the
    user's cache folder (``plan/``), so a later run of the same network and code reads it.

    Args:
        variant: the network.
        scale: (x, y) output per input pixel, for a network that takes any scale (its decoder
            works per output pixel); fixed-factor networks know their own. Measured decoding the
            whole frame at once, as an exported graph does (PyTorch decodes in bands: less).
    """
    import json

    from ..backends.export import code_version
    from ..cache import cache_dir, write_atomic

    path = cache_dir("plan") / MEASURED_FILE
    key = f"{variant.name}|{scale}|{_NETWORK_SAFETY}|{code_version(variant)}"
    known: dict = {}
    try:
        loaded = json.loads(path.read_text())
        known = loaded if isinstance(loaded, dict) else {}
    except (OSError, ValueError):  # none yet, or damaged: measured (and written) again
        pass
    if isinstance(known.get(key), (int, float)):
        return float(known[key])
    value = _measure_bytes_per_pixel(variant, scale)
    try:
        write_atomic(path, json.dumps({**known, key: value}, indent=0).encode())
    except OSError:  # an unwritable cache: measured again next time
        pass
    return value


def _measure_bytes_per_pixel(variant: ModelVariant, scale: tuple[float, float] | None) -> float:
    """:func:`network_bytes_per_pixel`, measured."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from ..models import implicit
    from ..models.inputs import Grid

    class Peak(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.peak = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            tensors = [t for t in tree_flatten((args, kwargs, out))[0] if isinstance(t, torch.Tensor)]
            self.peak = max(self.peak, sum(t.numel() * t.element_size() for t in tensors))
            return out

    net = variant.build(pretrained=False).to("meta")
    sx, sy = scale or (variant.factor or 1, variant.factor or 1)
    peaks = []
    chunk, implicit.QUERY_CHUNK = implicit.QUERY_CHUNK, 1 << 62
    try:
        for side in (32, 64):
            grid = Grid(1, (side, side), (max(1, round(side * sy)), max(1, round(side * sx))))
            inputs = [torch.empty(1, i.channels, *grid.of(i), device="meta") for i in variant.inputs]
            with torch.inference_mode(), Peak() as mode:
                net(*inputs)
            peaks.append(mode.peak)
    finally:
        implicit.QUERY_CHUNK = chunk
    return max(peaks[1] - peaks[0], 0) / (64 * 64 - 32 * 32) * _NETWORK_SAFETY


@dataclass(frozen=True)
class MemoryNeed:
    """Bytes a run needs, by part."""

    network: float
    queues: float

    @property
    def total(self) -> float:
        return self.network + self.queues


def run_memory(variant: ModelVariant, lr_size: tuple[int, int], out_size: tuple[int, int], *, batch: int,
               queue_size: int, tile: int | None, overlap: int, precision: str, banded: bool = False) -> MemoryNeed:
    """What a run of ``variant`` on frames of ``lr_size`` needs.

    Args:
        lr_size, out_size: (width, height) in and out.
        batch: frames per inference call.
        queue_size: bound of each of the four queues between stages.
        tile, overlap: the network sees tiles of at most ``tile`` + its overlap a side (None: whole frames).
        precision: "fp16" or "bf16" halves the network's working memory.
        banded: the backend decodes an any-scale model's output a band of rows at a time
            (:attr:`~streamsr.backends.base.Capabilities.banded`): its decoder's share counts
            :data:`~streamsr.models.implicit.QUERY_CHUNK` output pixels, not the frame's.
    """
    w, h = lr_size
    seen = (min(w, tile + 2 * overlap), min(h, tile + 2 * overlap)) if tile else (w, h)
    half = 0.5 if precision in ("fp16", "bf16") else 1.0
    pixels = seen[0] * seen[1] * batch
    if variant.factor is not None:
        network = network_bytes_per_pixel(variant) * half * pixels
    else:
        sx, sy = round(out_size[0] / w, 2), round(out_size[1] / h, 2)
        per_px = network_bytes_per_pixel(variant, (sx, sy)) * half
        if banded:  # the encoder's share per LR pixel (measured at x1), and one band of the decoder
            from ..models.tables import QUERY_CHUNK

            at_one = network_bytes_per_pixel(variant, (1.0, 1.0)) * half
            network = at_one * pixels + per_px * min(pixels, QUERY_CHUNK / (sx * sy))
        else:
            network = per_px * pixels
    frames = queue_size + batch  # each queue's frames, and the batch being gathered
    queues = frames * (_QUEUED_LR * w * h + _QUEUED_OUT * out_size[0] * out_size[1])
    return MemoryNeed(network, queues)
