"""The plain area downscale: each output pixel the mean of the s×s input pixels it covers (what
swscale's area filter does at an integer factor). No weights. ``streamsr downscale`` uses it for
models without a ``down`` part, so a learned downscaler (IRN) can be compared with it.
"""

from __future__ import annotations

from torch import Tensor, nn

__all__ = ["AreaDown"]


class AreaDown(nn.Module):
    """Mean over s×s blocks (sides must be multiples of s)."""

    def __init__(self, scale: int):
        super().__init__()
        self.pool = nn.AvgPool2d(scale)

    def forward(self, image: Tensor) -> Tensor:
        return self.pool(image)


class _Area(nn.Module):
    def __init__(self, scale: int):
        super().__init__()
        self.down = AreaDown(scale)


def area(scale: int, **kwargs) -> nn.Module:
    """The area downscale for ``scale``."""
    return _Area(scale)
