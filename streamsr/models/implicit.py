"""What the implicit (any-scale) models LIIF and LTE share.

- :class:`Encoder`: EDSR-baseline without its upsampler; the input is normalized, (x − 0.5)/0.5.
- Query tables (:mod:`streamsr.models.tables`, torch-free): per output row and column, the
  local ensemble's two LR cells, offsets, weights, the cell size and the skip's bicubic taps.
- :func:`ensemble`: each output pixel's four neighbours' predictions, blended by the areas of the
  diagonally opposite rectangles (separable: a row weight times a column weight).
- :func:`implicit_l1`: the training loss on a random sub-grid of output pixels.

Coordinates are pixel centres in [−1, 1], as in the papers' code. One departure, cheap: the skip
is MATLAB's bicubic upscaling of the input for both models (LTE adds a bilinear sample, LIIF none;
bicubic is the anchor SRCNN, SRResNet and UDVD use here), so the network learns only what the
baseline every evaluation compares with misses. The MLP's last layer keeps PyTorch's default
initialisation: started at zero (an untrained model exactly bicubic), L1 training stalled at the
baseline (+0.00 dB after 500 steps, against +0.38 dB from the default start; MODELS.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .tables import AXIS_CHANNELS, CELL_CLIP, COLS, QUERY_CHUNK, ROWS, axis_table

__all__ = ["AXIS_CHANNELS", "CELL_CLIP", "COLS", "QUERY_CHUNK", "ROWS", "Encoder", "Mlp", "axis_table", "bicubic", "ensemble",
           "implicit_l1", "per_token"]


class _ResBlock(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class Encoder(nn.Module):
    """EDSR-baseline without its upsampler: head conv, ``blocks`` residual blocks, a conv, a
    global skip. Takes the normalized image; ``channels`` features out."""

    def __init__(self, channels: int = 64, blocks: int = 16):
        super().__init__()
        self.out_dim = channels
        self.head = nn.Conv2d(3, channels, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(channels) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        f = self.head(x)
        return f + self.body(f)


class Mlp(nn.Module):
    """The decoding MLP on tokens (…×C, one per output pixel)."""

    def __init__(self, in_dim: int, hidden: tuple[int, ...], out_dim: int = 3):
        super().__init__()
        layers, dim = [], in_dim
        for h in hidden:
            layers += [nn.Linear(dim, h), nn.ReLU(inplace=True)]
            dim = h
        last = nn.Linear(dim, out_dim)
        self.layers = nn.Sequential(*layers, last)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)


def _axes(rows: Tensor, cols: Tensor) -> tuple[Tensor, Tensor]:
    """(10, H) and (10, W) from the batch's tables (the same for every frame of a batch)."""
    return rows[0, :, :, 0], cols[0, :, 0, :]


def bicubic(x: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``x`` (N×C×h×w) upscaled to the output grid as MATLAB's bicubic imresize does (four taps a
    row, then four a column)."""
    r, c = _axes(rows, cols)
    h_out, w_out = r.shape[1], c.shape[1]
    x = sum(x.index_select(2, r[7 + k].long()) * r[11 + k].view(1, 1, h_out, 1) for k in range(4))
    return sum(x.index_select(3, c[7 + k].long()) * c[11 + k].view(1, 1, 1, w_out) for k in range(4))


def ensemble(feat: Tensor, rows: Tensor, cols: Tensor, predict) -> Tensor:
    """Σ over the four ensemble cells of ``predict(tokens, rows, cols)`` times the opposite
    area's share, as an N×C'×H×W image.

    Output pixels are processed as tokens (N×(H·W)×C, row-major): the features of each pixel's
    cell are one row gather from the LR feature map laid out the same way (contiguous vectors:
    far faster than gathering an NCHW map along its last axis) and the MLP runs as matrix
    products. ``predict`` gets the N×Q×C tokens and, per output row and per column, that
    neighbour's offset and the cell size: ``rows = (δy (H,), cell_y (H,))``, ``cols = (δx (W,),
    cell_x (W,))``; it returns N×Q×C' predictions.
    """
    r, c = _axes(rows, cols)
    n, w = feat.shape[0], feat.shape[3]
    h_out, w_out = r.shape[1], c.shape[1]
    tokens = feat.flatten(2).transpose(1, 2).contiguous()  # N×(h·w)×C
    if torch.onnx.is_in_onnx_export() or h_out * w_out <= QUERY_CHUNK:
        out = _blend(tokens, r, c, w, predict)
    else:  # bounded memory at any output size: a band of output rows at a time
        step = max(1, QUERY_CHUNK // w_out)
        out = torch.cat([_blend(tokens, r[:, i : i + step], c, w, predict) for i in range(0, h_out, step)], dim=1)
    return out.transpose(1, 2).reshape(n, -1, h_out, w_out)


def _blend(tokens: Tensor, r: Tensor, c: Tensor, w: int, predict) -> Tensor:
    """:func:`ensemble` for the output rows of ``r``: N×(rows·W)×C'."""
    out = 0
    for a in (0, 1):
        for b in (0, 1):
            index = (r[a].view(-1, 1) * w + c[b].view(1, -1)).reshape(-1).long()
            pred = predict(tokens.index_select(1, index), (r[2 + a], r[6]), (c[2 + b], c[6]))
            weight = (r[4 + a].view(-1, 1) * c[4 + b].view(1, -1)).reshape(1, -1, 1)
            out = out + pred * weight
    return out


def per_token(row_term: Tensor, col_term: Tensor) -> Tensor:
    """(H, C) + (W, C) → 1×(H·W)×C: a value that is a per-row plus a per-column part."""
    return (row_term.unsqueeze(1) + col_term.unsqueeze(0)).reshape(1, -1, row_term.shape[-1])


def implicit_l1(model: nn.Module, inputs: list[Tensor], hr: Tensor, queries: int = 48) -> Tensor:
    """The training loss: L1 on a random sub-grid of ``queries`` output rows × columns (the same
    for the batch), so each step decodes queries² pixels per patch, not the whole patch."""
    image, rows, cols = inputs
    h_out, w_out = hr.shape[2], hr.shape[3]
    pick_r = torch.randperm(h_out, device=hr.device)[: min(queries, h_out)].sort().values
    pick_c = torch.randperm(w_out, device=hr.device)[: min(queries, w_out)].sort().values
    pred = model(image, rows.index_select(2, pick_r), cols.index_select(3, pick_c))
    return F.l1_loss(pred, hr.index_select(2, pick_r).index_select(3, pick_c))
