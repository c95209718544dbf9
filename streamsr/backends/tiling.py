"""Tiling with overlap: run any backend on frames too large for it, without seams.

The LR frame is cut into tiles of at most ``tile`` pixels a side that overlap by ``overlap``
pixels; each output pixel is taken from the tile in which it lies farthest from a cut edge (the
centre region of each tile), so as long as ``overlap`` covers the network's receptive field
radius the result equals whole-frame inference.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .base import WrappedBackend

__all__ = ["TiledBackend", "tile_ranges"]


def tile_ranges(size: int, tile: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Cut ``[0, size)`` into tiles: (read start, read end, keep start, keep end), where the kept
    parts tile ``[0, size)`` exactly and each read part extends the kept part by up to
    ``overlap`` on both sides."""
    core = tile - 2 * overlap
    if core < 1:
        raise ConfigError(f"--tile {tile} must be larger than twice --tile-overlap {overlap}")
    out, start = [], 0
    while start < size:
        end = min(start + core, size)
        out.append((max(0, start - overlap), min(size, end + overlap), start, end))
        start = end
    return out


class TiledBackend(WrappedBackend):
    """Wraps a backend; frames larger than ``tile`` run tile by tile (tiles of a frame batched).
    Works on host arrays and, when the inner backend takes them, on device tensors (so tiling
    keeps the device colour chain).

    Args:
        inner: the backend (a fixed-factor network: tiles map to output tiles by its factor).
        tile: largest LR tile side.
        overlap: LR pixels shared by neighbouring tiles on each side.
        cancelled: checked between tiles; once it returns True the frame is given up
            (:class:`~streamsr.pipeline.runner.Aborted`), so an abort acts within one tile.
    """

    def __init__(self, inner, tile: int, overlap: int = 16, cancelled=None):
        super().__init__(inner)
        self.cancelled = cancelled or (lambda: False)
        if overlap < 0:
            raise ConfigError(f"--tile-overlap must be >= 0, got {overlap}")
        if inner.variant.factor is None:
            raise ConfigError(f"--tile needs a fixed-factor model; {inner.variant.name} is not one")
        tile_ranges(tile, tile, overlap)  # validates tile vs overlap
        self.tile, self.overlap = tile, overlap

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Same contract as the inner backend's ``infer``."""
        return self._tiled(batch, extra or {}, self.inner.infer, np.ascontiguousarray,
                           lambda shape: np.empty(shape, dtype=np.float32))

    def infer_tensor(self, x, extra: dict | None = None):
        """Same contract as the inner backend's ``infer_tensor``."""
        import torch

        return self._tiled(x, extra or {}, self.inner.infer_tensor, lambda t: t.contiguous(),
                           lambda shape: torch.empty(shape, dtype=torch.float32, device=x.device))

    def _tiled(self, batch, extra: dict, run, contiguous, empty):
        n, c, h, w = batch.shape
        if h <= self.tile and w <= self.tile:
            return run(batch, extra)
        s = self.variant.factor
        grid = {i.name: 1 if i.grid == "lr" else s for i in self.variant.inputs}  # output-grid inputs: x s
        out = empty((n, c, h * s, w * s))
        for y0, y1, ky0, ky1 in tile_ranges(h, self.tile, self.overlap):
            for x0, x1, kx0, kx1 in tile_ranges(w, self.tile, self.overlap):
                if self.cancelled():
                    from ..pipeline.runner import Aborted

                    raise Aborted("aborted between tiles")
                part = run(contiguous(batch[:, :, y0:y1, x0:x1]),
                           {k: contiguous(v[:, :, y0 * grid[k] : y1 * grid[k], x0 * grid[k] : x1 * grid[k]])
                            for k, v in extra.items()})
                out[:, :, ky0 * s : ky1 * s, kx0 * s : kx1 * s] = \
                    part[:, :, (ky0 - y0) * s : (ky1 - y0) * s, (kx0 - x0) * s : (kx1 - x0) * s]
        return out
