"""LIIF: Chen, Liu, Wang, "Learning Continuous Image Representation with Local Implicit Image
Function", CVPR 2021 (arXiv:2012.09161).

An encoder (EDSR-baseline without upsampler) gives features on the LR grid; the colour at any
output pixel is an MLP of the 3×3-unfolded feature of an LR cell, the relative coordinate and the
cell size, over the four nearest cells blended by area (the local ensemble;
:mod:`streamsr.models.implicit`). The paper: 64 channels, 16 blocks, MLP 580 → 256×4 → 3
(1.57 M parameters; ``configs/liif_paper.toml``); the shipped weights use :data:`SHIPPED_LIIF`,
trainable on a CPU (MODELS.md). Departure: a bicubic skip (see implicit.py). The unfold and the
MLP's first layer run as one 3×3 convolution on the LR grid (see :class:`LIIF`).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .implicit import Encoder, Mlp, bicubic, ensemble, per_token

__all__ = ["LIIF", "SHIPPED_LIIF"]

SHIPPED_LIIF = {"channels": 32, "blocks": 4, "hidden": (64, 64)}


class LIIF(nn.Module):
    """Args: channels/blocks: encoder size; hidden: the MLP's hidden widths.

    The MLP's first layer, a linear map of [3×3-unfolded feature; δy; δx; cell_y; cell_x], is
    split at its input: its feature part is a 3×3 convolution on the LR grid (unfold followed by a
    linear map is exactly that, and gathering commutes with per-pixel maps), its coordinate part
    a sum of per-row and per-column terms. Same function, same parameter count as the paper's
    MLP, computed on LR pixels rather than on every output pixel four times.
    """

    def __init__(self, channels: int = 64, blocks: int = 16, hidden: tuple[int, ...] = (256, 256, 256, 256)):
        super().__init__()
        self.encoder = Encoder(channels, blocks)
        self.first = nn.Conv2d(channels, hidden[0], 3, padding=1)  # the feature part of the first layer
        self.coords = nn.Linear(4, hidden[0], bias=False)  # its δy, δx, cell_y, cell_x part
        self.mlp = Mlp(hidden[0], tuple(hidden[1:]))

    def forward(self, image: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        """N×3×h×w in [0, 1] and the output's query tables (N×10×H×1, N×10×1×W) → N×3×H×W."""
        x = (image - 0.5) / 0.5
        first = self.first(self.encoder(x))
        w = self.coords.weight  # columns: δy, δx, cell_y, cell_x

        def predict(tokens: Tensor, row: tuple, col: tuple) -> Tensor:
            (dy, cy), (dx, cx) = row, col
            rows_part = dy.unsqueeze(1) * w[:, 0] + cy.unsqueeze(1) * w[:, 2]
            cols_part = dx.unsqueeze(1) * w[:, 1] + cx.unsqueeze(1) * w[:, 3]
            # coordinates in float32 (the tables are); the MLP in the network's precision
            return self.mlp(torch.relu(tokens + per_token(rows_part, cols_part)).to(tokens.dtype))

        return (ensemble(first, rows, cols, predict) + bicubic(x, rows, cols)) * 0.5 + 0.5


def liif(scale: int | None = None, **kwargs) -> nn.Module:
    """Build an untrained LIIF (shipped variant unless kwargs say otherwise); it takes any scale."""
    return LIIF(**{**SHIPPED_LIIF, **kwargs})
