"""Tiling with overlap: run any backend on frames too large for it, without seams.

The LR frame is cut into tiles of at most ``tile`` pixels a side that overlap by ``overlap``
pixels; each output pixel is taken from the tile in which it lies farthest from a cut edge (the
centre region of each tile), so as long as ``overlap`` covers the network's receptive field
radius the result equals whole-frame inference.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError

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


class TiledBackend:
    """Wraps a backend; frames larger than ``tile`` run tile by tile (tiles of a frame batched).

    Args:
        inner: the backend.
        scale: the model's upscale factor.
        tile: largest LR tile side.
        overlap: LR pixels shared by neighbouring tiles on each side.
    """

    def __init__(self, inner, scale: int, tile: int, overlap: int = 16):
        if overlap < 0:
            raise ConfigError(f"--tile-overlap must be >= 0, got {overlap}")
        tile_ranges(tile, tile, overlap)  # validates tile vs overlap
        self.inner, self.scale, self.tile, self.overlap = inner, scale, tile, overlap
        self.name = getattr(inner, "name", "?")

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Same contract as the inner backend's ``infer``."""
        extra = extra or {}
        n, c, h, w = batch.shape
        if h <= self.tile and w <= self.tile:
            return self.inner.infer(batch, extra)
        s = self.scale
        out = np.empty((n, c, h * s, w * s), dtype=np.float32)
        for y0, y1, ky0, ky1 in tile_ranges(h, self.tile, self.overlap):
            for x0, x1, kx0, kx1 in tile_ranges(w, self.tile, self.overlap):
                part = self.inner.infer(np.ascontiguousarray(batch[:, :, y0:y1, x0:x1]),
                                        {k: np.ascontiguousarray(v[:, :, y0:y1, x0:x1]) for k, v in extra.items()})
                out[:, :, ky0 * s : ky1 * s, kx0 * s : kx1 * s] = \
                    part[:, :, (ky0 - y0) * s : (ky1 - y0) * s, (kx0 - x0) * s : (kx1 - x0) * s]
        return out

    def close(self) -> None:
        """Close the inner backend."""
        self.inner.close()
