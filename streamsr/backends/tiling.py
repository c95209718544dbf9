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

from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError
from ..models.inputs import GRIDS, output_axes
from .base import WrappedBackend

__all__ = ["Tile", "TiledBackend", "cut_input", "output_size", "tile_grid", "tile_ranges"]


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


def window_ranges(size: int, core: int, overlap: int) -> list[tuple[int, int, int, int]]:
    """Like :func:`tile_ranges` with kept parts of ``core`` pixels, but every read part has the
    same length, ``min(size, core + 2·overlap)``: a window at the edge is shifted inwards instead
    of cut, so it still holds ``overlap`` pixels of context on its inner side (and the frame's
    edge on the other). Tiles of one shape batch together (tile reuse, the multi-camera hub)."""
    if core < 1 or overlap < 0:
        raise ConfigError(f"tile core {core} must be >= 1 and overlap {overlap} >= 0")
    length = min(size, core + 2 * overlap)
    out = []
    for start in range(0, size, core):
        end = min(start + core, size)
        read = min(max(0, start - overlap), size - length)
        out.append((read, read + length, start, end))
    return out


@dataclass(frozen=True)
class Tile:
    """One tile of a frame: the LR pixels the network reads (``lr_y``, ``lr_x``), the output
    pixels kept from it (``keep_y``, ``keep_x``) and the output pixels the network puts out for it
    (``net_y``, ``net_x``), all as [start, end) in the whole frame's coordinates."""

    lr_y: tuple[int, int]
    lr_x: tuple[int, int]
    keep_y: tuple[int, int]
    keep_x: tuple[int, int]
    net_y: tuple[int, int]
    net_x: tuple[int, int]

    def kept_part(self, part):
        """The kept pixels of the network's output ``part`` (its last two axes) for this tile."""
        return part[..., self.keep_y[0] - self.net_y[0] : self.keep_y[1] - self.net_y[0],
                    self.keep_x[0] - self.net_x[0] : self.keep_x[1] - self.net_x[0]]


def tile_grid(lr: tuple[int, int], out: tuple[int, int], factor: int | None, ranges) -> list[Tile]:
    """The tiles of an ``lr`` = (h, w) frame whose output is ``out`` = (H, W), row by row, cut
    per axis by ``ranges(size) -> [(read start, read end, keep start, keep end)]``
    (:func:`tile_ranges` or :func:`window_ranges`). A fixed-factor network puts out its factor
    times the read part; a model that takes any scale only the kept output pixels."""
    axes = []
    for size, big in zip(lr, out, strict=True):
        spans = []
        for r0, r1, k0, k1 in ranges(size):
            keep = _output_span(k0, k1, size, big)
            spans.append(((r0, r1), keep, (r0 * factor, r1 * factor) if factor is not None else keep))
        axes.append(spans)
    return [Tile(ly, lx, ky, kx, ny, nx) for ly, ky, ny in axes[0] for lx, kx, nx in axes[1]]


def output_size(variant, h: int, w: int, extra: dict) -> tuple[int, int]:
    """(H, W) of the whole frame's output: the factor's, or read off the inputs on output grids."""
    s = variant.factor
    if s is not None:
        return h * s, w * s
    size = [None, None]
    for i in variant.inputs:
        for k, is_out in enumerate(output_axes(i.grid)):
            if is_out:
                size[k] = extra[i.name].shape[2 + k]
    if None in size:
        raise ConfigError(f"{variant.name}: no input says the output size; it cannot be tiled")
    return size[0], size[1]


def cut_input(variant, inp, value, tile: Tile, overlap: int, copy):
    """The part of input ``inp``'s ``value`` a tile reads: its LR area, or the output pixels the
    network puts out for it (a table's LR indices shifted to the tile's origin).

    Raises:
        ConfigError: a table reads LR pixels outside the tile (the overlap is too small).
    """
    lr, net = (tile.lr_y, tile.lr_x), (tile.net_y, tile.net_x)
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
        raise ConfigError(f"{variant.name} reads LR pixels beyond a tile's overlap; raise --tile-overlap "
                          f"(now {overlap})")
    return value


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

    def _tiled(self, batch, extra: dict, run, contiguous, copy, empty):
        n, c, h, w = batch.shape
        if h <= self.tile and w <= self.tile:
            return run(batch, extra)
        big = output_size(self.variant, h, w, extra)
        out = empty((n, c, *big))
        ranges = lambda size: tile_ranges(size, self.tile, self.overlap)
        for t in tile_grid((h, w), big, self.variant.factor, ranges):
            if self.cancelled():
                from ..pipeline.runner import Aborted

                raise Aborted("aborted between tiles")
            part = run(contiguous(batch[:, :, t.lr_y[0] : t.lr_y[1], t.lr_x[0] : t.lr_x[1]]),
                       {i.name: contiguous(cut_input(self.variant, i, extra[i.name], t, self.overlap, copy))
                        for i in self.variant.inputs if i.name in extra})
            out[:, :, t.keep_y[0] : t.keep_y[1], t.keep_x[0] : t.keep_x[1]] = t.kept_part(part)
        return out
