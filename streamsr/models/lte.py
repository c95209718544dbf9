"""LTE: Lee & Jin, "Local Texture Estimator for Implicit Representation Function", CVPR 2022
(arXiv:2111.08918).

LIIF's encoder, then three estimators on the LR grid: amplitude (3×3 conv), frequency (3×3 conv,
read as 2-D frequencies) and phase (a linear map of the cell, no bias). At an output pixel the
Fourier basis [cos πθ; sin πθ], θ = F·δ + phase(cell), times the amplitude is decoded by an MLP;
the four nearest cells are blended by area and the bicubic upscaled image is added (the paper
adds a bilinear sample; :mod:`streamsr.models.implicit`). The paper: 64-channel, 16-block encoder, 256 amplitudes,
MLP 256 → 256×3 → 3 (1.71 M parameters; ``configs/lte_paper.toml``); shipped: :data:`SHIPPED_LTE`.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .implicit import Encoder, Mlp, bicubic, ensemble, per_token

__all__ = ["LTE", "SHIPPED_LTE"]

SHIPPED_LTE = {"channels": 32, "blocks": 4, "width": 64, "hidden": (64, 64)}


class LTE(nn.Module):
    """Args: channels/blocks: encoder size; width: amplitudes (and frequency pairs × 2);
    hidden: the MLP's hidden widths."""

    def __init__(self, channels: int = 64, blocks: int = 16, width: int = 256, hidden: tuple[int, ...] = (256, 256, 256)):
        super().__init__()
        self.encoder = Encoder(channels, blocks)
        self.coef = nn.Conv2d(channels, width, 3, padding=1)
        self.freq = nn.Conv2d(channels, width, 3, padding=1)
        self.phase = nn.Linear(2, width // 2, bias=False)
        self.mlp = Mlp(width, tuple(hidden))

    def forward(self, image: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
        """N×3×h×w in [0, 1] and the output's query tables (N×10×H×1, N×10×1×W) → N×3×H×W."""
        x = (image - 0.5) / 0.5
        feat = self.encoder(x)
        both = torch.cat([self.coef(feat), self.freq(feat)], dim=1)  # one gather for the two
        width = self.coef.out_channels
        phase = self.phase.weight  # (width/2, 2): cell_y, cell_x

        def predict(tokens: Tensor, row: tuple, col: tuple) -> Tensor:
            (dy, cy), (dx, cx) = row, col
            coef, freq = tokens[..., :width], tokens[..., width:]
            zeros_h, zeros_w = torch.zeros_like(dy).unsqueeze(1), torch.zeros_like(dx).unsqueeze(1)
            dy_tok, dx_tok = per_token(dy.unsqueeze(1), zeros_w), per_token(zeros_h, dx.unsqueeze(1))
            theta = freq[..., 0::2] * dy_tok + freq[..., 1::2] * dx_tok
            theta = theta + per_token(cy.unsqueeze(1) * phase[:, 0], cx.unsqueeze(1) * phase[:, 1])
            # θ and its basis in float32 (the tables are; fp16 loses the phase), the MLP in the network's precision
            theta = theta.float()
            basis = torch.cat([torch.cos(math.pi * theta), torch.sin(math.pi * theta)], dim=-1)
            return self.mlp((coef * basis).to(coef.dtype))

        return (ensemble(both, rows, cols, predict) + bicubic(x, rows, cols)) * 0.5 + 0.5


def lte(scale: int | None = None, **kwargs) -> nn.Module:
    """Build an untrained LTE (shipped variant unless kwargs say otherwise); it takes any scale."""
    return LTE(**{**SHIPPED_LTE, **kwargs})
