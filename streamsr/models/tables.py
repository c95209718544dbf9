"""Inputs made from the output grid alone, never from the frame: torch-free, so that a run on
ONNX Runtime builds them without importing PyTorch.

- The query tables of the implicit models (LIIF, LTE): for every output row (and, alike, column)
  the two LR cells of the local ensemble (the reference's v ∈ {−1, +1} shifts, the 1e-6 tie-break
  and the clamp), the relative offsets δ = (coordinate − cell centre)·(LR size), the ensemble
  weights, the cell size 2·(LR size)/(output size) and the four bicubic taps of the skip. The 2-D
  tables of the papers are outer combinations of these, so a (LR size, output size) pair costs two
  small arrays, built once in float64 by the ``implicit_rows``/``implicit_cols`` providers.
- IRN's latent z for the receiver (zeros) and the inputs of IRN's two parts.
"""

from __future__ import annotations

import numpy as np

from ..metrics import bicubic_taps
from .inputs import IMAGE, Grid, ModelInput, register_table_provider

__all__ = ["AXIS_CHANNELS", "CELL_CLIP", "COLS", "QUERY_CHUNK", "ROWS", "Z", "axis_table", "irn_part_inputs"]

#: one table per axis: [i0, i1, d0, d1, w0, w1, cell, t0..t3, c0..c3] (LR indices at 0, 1, 7-10)
AXIS_CHANNELS = 15
_INDEX_CHANNELS = (0, 1, 7, 8, 9, 10)
#: beyond this factor the cell is held at its value here (the papers' cell × max(s/4, 1)),
#: since training never saw smaller cells
CELL_CLIP = 4.0
_EPS_SHIFT, _CLAMP, _AREA_EPS = 1e-6, 1e-6, 1e-9
#: output pixels decoded at once by PyTorch (an exported graph decodes the frame at once; the
#: run plan tiles it when that would not fit): 2^17 queries of a 256-wide MLP are 128 MiB a layer
QUERY_CHUNK = 1 << 17


def axis_table(lr: int, out: int, cell_clip: float = CELL_CLIP) -> np.ndarray:
    """The query table of one axis: ``lr`` LR pixels read by ``out`` output pixels.

    Returns:
        (15, out) float32: the two ensemble cells' LR indices i0, i1 (v = −1, +1), their offsets
        d0, d1 (output coordinate − cell centre, times ``lr``), the ensemble weights w0, w1 (the
        opposite cell's |d| share), the cell size, and the skip's four bicubic taps t0..t3 with
        their weights c0..c3 (MATLAB's imresize: :func:`~streamsr.metrics.bicubic_taps`).
    """
    coord = -1 + (2 * np.arange(out, dtype=np.float64) + 1) / out
    idx, rel = [], []
    for v in (-1, 1):
        shifted = np.clip(coord + v / lr + _EPS_SHIFT, -1 + _CLAMP, 1 - _CLAMP)
        i = np.clip(np.floor((shifted + 1) * lr / 2), 0, lr - 1)  # the nearest cell
        idx.append(i)
        rel.append((coord - (-1 + (2 * i + 1) / lr)) * lr)
    a0, a1 = np.abs(rel[0]) + _AREA_EPS, np.abs(rel[1]) + _AREA_EPS
    scale = out / lr
    cell = np.full(out, 2 / scale * max(scale / cell_clip, 1.0))
    taps, weights = bicubic_taps(lr, out)
    return np.concatenate([np.stack([idx[0], idx[1], rel[0], rel[1], a1 / (a0 + a1), a0 / (a0 + a1), cell]),
                           taps, weights]).astype(np.float32)


@register_table_provider("implicit_rows")
def _rows(inp: ModelInput, grid: Grid) -> np.ndarray:
    table = axis_table(grid.lr[0], grid.out[0])
    return np.broadcast_to(table[None, :, :, None], (grid.n, AXIS_CHANNELS, grid.out[0], 1))


@register_table_provider("implicit_cols")
def _cols(inp: ModelInput, grid: Grid) -> np.ndarray:
    table = axis_table(grid.lr[1], grid.out[1])
    return np.broadcast_to(table[None, :, None, :], (grid.n, AXIS_CHANNELS, 1, grid.out[1]))


ROWS = ModelInput("rows", AXIS_CHANNELS, "query", "rows", provider="implicit_rows", lr_index_channels=_INDEX_CHANNELS)
COLS = ModelInput("cols", AXIS_CHANNELS, "query", "cols", provider="implicit_cols", lr_index_channels=_INDEX_CHANNELS)


#: the name of IRN's latent input at the receiver (3·(s²−1) channels at LR size)
Z = "z"


@register_table_provider("irn_z")
def _zero_latent(inp: ModelInput, grid: Grid) -> np.ndarray:
    """The receiver's z: zeros, the mode of z's N(0, 1) (no flicker: the same every frame)."""
    return np.zeros((grid.n, inp.channels, *grid.of(inp)), np.float32)


def irn_part_inputs(factor: int | None, part: str) -> tuple[ModelInput, ...]:
    """IRN's ``down`` takes the HR image; ``up`` the LR image and z (its channels depend on the factor)."""
    if part == "down":
        return (IMAGE,)
    return (IMAGE, ModelInput(Z, 3 * ((factor or 2) ** 2 - 1), "latent", "lr", provider="irn_z"))
