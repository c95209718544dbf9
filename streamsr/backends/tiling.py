"""Tiling with overlap: run any backend on frames too large for it, without seams.

The LR frame is cut into tiles of at most ``tile`` pixels a side that overlap by ``overlap``
pixels; each output pixel is taken from the tile whose kept (centre) part holds the pixel's
centre, so as long as ``overlap`` covers the network's receptive field radius the result equals
whole-frame inference. Any output size works, per axis: a fixed-factor network puts out its
factor times the tile and the kept part is cut from it; a model that takes any scale (LIIF, LTE)
is given the query tables of the kept output pixels only, their LR indices shifted into the tile
(the inputs' ``lr_index_channels``).
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from ..models.inputs import GRIDS, output_axes
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


def _output_span(k0: int, k1: int, lr: int, out: int) -> tuple[int, int]:
    """Output pixels whose centres lie in LR pixels [k0, k1) of an axis of ``lr`` → ``out``
    pixels: j with k0 <= (j + 0.5) · lr / out < k1 (exact integer arithmetic)."""
    first = lambda k: -((lr - 2 * k * out) // (2 * lr))  # ceil(k · out / lr − 0.5)
    return first(k0), first(k1)


class TiledBackend(WrappedBackend):
    """Wraps a backend; frames larger than ``tile`` run tile by tile (tiles of a frame batched).
    Works on host arrays and, when the inner backend takes them, on device tensors (so tiling
    keeps the device colour chain).

    Args:
        inner: the backend.
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
        tile_ranges(tile, tile, overlap)  # validates tile vs overlap
        if inner.variant.shrinks:
            raise ConfigError(f"--tile applies to networks that enlarge; {inner.variant.name} shrinks: leave --tile unset")
        self.tile, self.overlap = tile, overlap

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Same contract as the inner backend's ``infer``."""
        return self._tiled(batch, extra or {}, self.inner.infer, np.ascontiguousarray, np.array,
                           lambda shape: np.empty(shape, dtype=np.float32))

    def infer_tensor(self, x, extra: dict | None = None):
        """Same contract as the inner backend's ``infer_tensor``."""
        import torch

        return self._tiled(x, extra or {}, self.inner.infer_tensor, lambda t: t.contiguous(), lambda t: t.clone(),
                           lambda shape: torch.empty(shape, dtype=torch.float32, device=x.device))

    def _out_size(self, h: int, w: int, extra: dict) -> tuple[int, int]:
        """(H, W) of the whole frame's output: the factor's, or read off the inputs on output grids."""
        s = self.variant.factor
        if s is not None:
            return h * s, w * s
        size = [None, None]
        for i in self.variant.inputs:
            for k, is_out in enumerate(output_axes(i.grid)):
                if is_out:
                    size[k] = extra[i.name].shape[2 + k]
        if None in size:
            raise ConfigError(f"{self.variant.name}: no input says the output size; it cannot be tiled")
        return size[0], size[1]

    def _tiled(self, batch, extra: dict, run, contiguous, copy, empty):
        n, c, h, w = batch.shape
        if h <= self.tile and w <= self.tile:
            return run(batch, extra)
        big_h, big_w = self._out_size(h, w, extra)
        s = self.variant.factor
        out = empty((n, c, big_h, big_w))
        for y0, y1, ky0, ky1 in tile_ranges(h, self.tile, self.overlap):
            keep_y = _output_span(ky0, ky1, h, big_h)
            net_y = (y0 * s, y1 * s) if s is not None else keep_y  # what the network puts out
            for x0, x1, kx0, kx1 in tile_ranges(w, self.tile, self.overlap):
                if self.cancelled():
                    from ..pipeline.runner import Aborted

                    raise Aborted("aborted between tiles")
                keep_x = _output_span(kx0, kx1, w, big_w)
                net_x = (x0 * s, x1 * s) if s is not None else keep_x
                part = run(contiguous(batch[:, :, y0:y1, x0:x1]),
                           {i.name: contiguous(self._cut(i, extra[i.name], (y0, y1), (x0, x1), net_y, net_x, copy))
                            for i in self.variant.inputs if i.name in extra})
                out[:, :, keep_y[0] : keep_y[1], keep_x[0] : keep_x[1]] = \
                    part[:, :, keep_y[0] - net_y[0] : keep_y[1] - net_y[0], keep_x[0] - net_x[0] : keep_x[1] - net_x[0]]
        return out

    def _cut(self, inp, value, lr_y, lr_x, net_y, net_x, copy):
        """The part of input ``inp`` a tile reads: its LR area, or the output pixels the network
        puts out for it (a table's LR indices shifted to the tile's origin)."""
        lr, net = (lr_y, lr_x), (net_y, net_x)
        axes = GRIDS[inp.grid]
        value = value[(slice(None), slice(None), *(slice(*lr[k]) if a == "lr" else slice(*net[k]) if a == "out"
                                                    else slice(None) for k, a in enumerate(axes)))]
        if not inp.lr_index_channels:
            return value
        k = axes.index("out")  # a table's indices run along its (one) output axis
        origin, size = lr[k][0], lr[k][1] - lr[k][0]
        value = copy(value)
        channels = list(inp.lr_index_channels)
        value[:, channels] -= origin
        low, high = float(value[:, channels].min()), float(value[:, channels].max())
        if low < 0 or high > size - 1:
            raise ConfigError(f"{self.variant.name} reads LR pixels beyond a tile's overlap; raise --tile-overlap "
                              f"(now {self.overlap})")
        return value
