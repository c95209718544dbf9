"""SRCNN: Dong et al., "Image Super-Resolution Using Deep Convolutional Networks", ECCV 2014 / TPAMI 2016.

9×9→64, ReLU, 5×5→32, ReLU, 5×5→3 (the 9-5-5 setting), run on the bicubic-upscaled image. The
upscaling happens inside the network (so it takes the LR frame like every other model) and the
network predicts a residual over it (as VDSR later did), which trains far faster than the paper's
direct mapping.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SRCNN"]


class SRCNN(nn.Module):
    """Args: scale: upscale factor; features: hidden widths (64, 32 in the paper)."""

    def __init__(self, scale: int, features: tuple[int, int] = (64, 32)):
        super().__init__()
        self.scale = scale
        f1, f2 = features
        self.body = nn.Sequential(
            nn.Conv2d(3, f1, 9, padding=4), nn.ReLU(inplace=True),
            nn.Conv2d(f1, f2, 5, padding=2), nn.ReLU(inplace=True),
            nn.Conv2d(f2, 3, 5, padding=2),
        )

    def forward(self, x: Tensor) -> Tensor:
        """Upscale N×3×H×W in [0, 1] to N×3×sH×sW."""
        up = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return up + self.body(up)


def srcnn(scale: int, **kwargs) -> nn.Module:
    """Build an untrained SRCNN."""
    return SRCNN(scale, **kwargs)
