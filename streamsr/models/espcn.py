"""ESPCN: Shi et al., "Real-Time Single Image and Video Super-Resolution Using an Efficient
Sub-Pixel Convolutional Neural Network", CVPR 2016.

conv5×5→64, conv3×3→32, conv3×3→3·s², pixel shuffle, tanh between layers as in the paper.
Two departures, both cheap: it works on RGB in [0, 1] (the paper used Y only; RGB lets one network
serve every pixel format), and the last layer predicts a residual over the input repeated s² times
(nearest-neighbour upscaling after the shuffle, the "anchor" of mobile SR nets), so flat areas pass
through unchanged and training converges in minutes on a CPU.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["ESPCN"]


class ESPCN(nn.Module):
    """The sub-pixel convolution network.

    Args:
        scale: upscale factor.
        channels: image channels in and out.
        features: widths of the two hidden layers (64, 32 in the paper).
    """

    def __init__(self, scale: int, channels: int = 3, features: tuple[int, int] = (64, 32)):
        super().__init__()
        f1, f2 = features
        self.body = nn.Sequential(
            nn.Conv2d(channels, f1, 5, padding=2),
            nn.Tanh(),
            nn.Conv2d(f1, f2, 3, padding=1),
            nn.Tanh(),
            nn.Conv2d(f2, channels * scale * scale, 3, padding=1),
        )
        self.shuffle = nn.PixelShuffle(scale)
        self.repeats = scale * scale

    def forward(self, x: Tensor) -> Tensor:
        """Upscale an N×C×H×W batch in [0, 1] to N×C×sH×sW (not clamped)."""
        anchor = torch.repeat_interleave(x, self.repeats, dim=1)
        return self.shuffle(self.body(x) + anchor)


def espcn(scale: int, **kwargs) -> nn.Module:
    """Build an untrained ESPCN for ``scale``."""
    return ESPCN(scale, **kwargs)
