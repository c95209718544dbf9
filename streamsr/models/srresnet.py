"""SRResNet and SRGAN's generator: Ledig et al., "Photo-Realistic Single Image Super-Resolution
Using a Generative Adversarial Network", CVPR 2017.

conv9×9→C + PReLU, B residual blocks (conv-PReLU-conv; batch norm dropped, as is common for SR),
a global skip, ×2 pixel-shuffle upsamplers (conv→4C, shuffle, PReLU), conv9×9→3. The paper uses
C = 64, B = 16 (``configs/srresnet_paper.toml``); the shipped weights are a smaller variant that
trains on a CPU (see MODELS.md). SRGAN is the same generator fine-tuned adversarially.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SHIPPED_SRRESNET", "SRResNet"]

#: the variant the shipped weights use (the paper: channels=64, blocks=16)
SHIPPED_SRRESNET = {"channels": 32, "blocks": 6}


class _Block(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.PReLU(c), nn.Conv2d(c, c, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)


class SRResNet(nn.Module):
    """Args: scale: 2 or 4; channels: feature width; blocks: residual blocks."""

    def __init__(self, scale: int, channels: int = 64, blocks: int = 16):
        super().__init__()
        if scale not in (2, 4):
            raise ValueError(f"SRResNet upsamples by powers of two: 2 or 4, not {scale}")
        self.scale = scale
        self.head = nn.Sequential(nn.Conv2d(3, channels, 9, padding=4), nn.PReLU(channels))
        self.body = nn.Sequential(*[_Block(channels) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, padding=1))
        ups = []
        for _ in range({2: 1, 4: 2}[scale]):
            ups += [nn.Conv2d(channels, channels * 4, 3, padding=1), nn.PixelShuffle(2), nn.PReLU(channels)]
        self.up = nn.Sequential(*ups)
        self.tail = nn.Conv2d(channels, 3, 9, padding=4)

    def forward(self, x: Tensor) -> Tensor:
        """Upscale N×3×H×W in [0, 1] to N×3×sH×sW."""
        f = self.head(x)
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        return base + self.tail(self.up(f + self.body(f)))


def srresnet(scale: int, **kwargs) -> nn.Module:
    """Build an untrained SRResNet (shipped variant unless kwargs say otherwise)."""
    return SRResNet(scale, **{**SHIPPED_SRRESNET, **kwargs})


def srgan(scale: int, **kwargs) -> nn.Module:
    """Build an untrained SRGAN generator (same network as SRResNet)."""
    return SRResNet(scale, **{**SHIPPED_SRRESNET, **kwargs})
