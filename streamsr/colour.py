"""YUV 4:2:0 ↔ RGB conversion in PyTorch, on whatever device the tensors live on.

On a GPU this replaces swscale on both ends of inference: the decoder's 8-bit yuv420p planes
(1.5 bytes per pixel) go up instead of float RGB (12 bytes per pixel), and the encoder's planes come
back down, so the CPU does no per-pixel colour work at all. The maths follows the same conventions
as the swscale path (:func:`streamsr.io.source.to_rgb`, :meth:`streamsr.io.sink.Sink.make_frame`):
the frame's own matrix (BT.601/709/2020, FCC, SMPTE 240M) and range, MPEG-2 chroma siting (4:2:0
chroma co-sited with the left luma column, centred between two luma rows), linear chroma
interpolation, and a [1 2 1] × [1 1] chroma filter when subsampling. It agrees with swscale to
within a few code values on flat colour and above 40 dB on natural frames (tests/test_colour.py).

Planes travel in PyAV's ``yuv420p`` ndarray layout: one ``(3H/2)×W`` uint8 array per frame, the Y
plane followed by the flattened U and V planes (``VideoFrame.to_ndarray`` / ``from_ndarray``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from .frames import RANGE_FULL, ColourTags

__all__ = ["YUV420_FORMATS", "luma_weights", "rgb_to_yuv420", "split_yuv420", "yuv420_to_rgb"]

# pixel formats whose planes are the 8-bit 4:2:0 layout above (yuvj420p is full-range yuv420p)
YUV420_FORMATS = ("yuv420p", "yuvj420p")

# AVColorSpace → (Kr, Kb); unknown matrices are treated as BT.601, as swscale does
_KR_KB = {1: (0.2126, 0.0722), 4: (0.30, 0.11), 5: (0.299, 0.114), 6: (0.299, 0.114),
          7: (0.212, 0.087), 9: (0.2627, 0.0593), 10: (0.2627, 0.0593)}


def luma_weights(matrix: int) -> tuple[float, float, float]:
    """(Kr, Kg, Kb) of an AVColorSpace value."""
    kr, kb = _KR_KB.get(matrix, _KR_KB[5])
    return kr, 1.0 - kr - kb, kb


def _scales(colour: ColourTags) -> tuple[float, float, float]:
    """(luma offset, luma scale, chroma scale) of 8-bit code values per unit of Y'/Pb/Pr."""
    if colour.range == RANGE_FULL:
        return 0.0, 255.0, 255.0
    return 16.0, 219.0, 224.0


def split_yuv420(planes: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """N×(3H/2)×W (PyAV's yuv420p layout) → Y N×H×W, U and V N×(H/2)×(W/2)."""
    n, rows, w = planes.shape
    h = rows * 2 // 3
    chroma = planes[:, h:].reshape(n, 2, h // 2, w // 2)
    return planes[:, :h], chroma[:, 0], chroma[:, 1]


def _upsample_chroma(c: Tensor) -> Tensor:
    """N×2×h×w chroma → N×2×2h×2w, linear, MPEG-2 siting."""
    # vertical: chroma row i sits between luma rows 2i and 2i+1 → weights 3/4, 1/4
    up = torch.cat([c[:, :, :1], c[:, :, :-1]], dim=2)
    down = torch.cat([c[:, :, 1:], c[:, :, -1:]], dim=2)
    even, odd = 0.75 * c + 0.25 * up, 0.75 * c + 0.25 * down
    c = torch.stack([even, odd], dim=3).flatten(2, 3)
    # horizontal: chroma column j sits on luma column 2j → odd columns are the mean of two
    right = torch.cat([c[..., 1:], c[..., -1:]], dim=3)
    return torch.stack([c, 0.5 * (c + right)], dim=4).flatten(3, 4)


def _downsample_chroma(c: Tensor) -> Tensor:
    """N×2×H×W chroma → N×2×(H/2)×(W/2): [1 2 1]/4 horizontally around even columns (left siting),
    the mean of each row pair vertically."""
    c = 0.5 * (c[:, :, 0::2] + c[:, :, 1::2])
    padded = torch.cat([c[..., :1], c, c[..., -1:]], dim=3)
    return 0.25 * padded[..., 0:-2:2] + 0.5 * padded[..., 1:-1:2] + 0.25 * padded[..., 2::2]


def _per_frame(values: Sequence[float], like: Tensor) -> float | Tensor:
    """One value per frame, broadcastable over N×1×H×W; a plain number when all frames agree (the
    usual case: no tensor to build and copy to the device for every batch)."""
    if all(v == values[0] for v in values):
        return values[0]
    return torch.tensor(values, dtype=like.dtype, device=like.device).view(-1, 1, 1, 1)


def yuv420_to_rgb(planes: Tensor, colours: ColourTags | Sequence[ColourTags]) -> Tensor:
    """Decode 8-bit 4:2:0 planes to RGB.

    Args:
        planes: N×(3H/2)×W uint8 (any device).
        colours: the frames' colour tags, one for all or one per frame.

    Returns:
        N×3×H×W float32 full-range RGB in [0, 1] on the planes' device.
    """
    n = planes.shape[0]
    colours = [colours] * n if isinstance(colours, ColourTags) else list(colours)
    y, u, v = split_yuv420(planes)
    yf = y.unsqueeze(1).float()
    chroma = _upsample_chroma(torch.stack([u, v], dim=1).float())
    params = [(*_scales(c), *luma_weights(c.matrix)) for c in colours]
    off, ys, cs, kr, kg, kb = (_per_frame([p[i] for p in params], yf) for i in range(6))
    luma = (yf - off) / ys
    pb, pr = (chroma[:, :1] - 128.0) / cs, (chroma[:, 1:] - 128.0) / cs
    r = luma + 2.0 * (1.0 - kr) * pr
    b = luma + 2.0 * (1.0 - kb) * pb
    g = (luma - kr * r - kb * b) / kg
    return torch.cat([r, g, b], dim=1).clamp_(0.0, 1.0)


def rgb_to_yuv420(rgb: Tensor, colour: ColourTags) -> Tensor:
    """Encode RGB to 8-bit 4:2:0 planes.

    Args:
        rgb: N×3×H×W float in [0, 1] (values outside are clipped), H and W even.
        colour: the output's matrix and range.

    Returns:
        N×(3H/2)×W uint8 in PyAV's yuv420p layout, on the input's device.
    """
    n, _, h, w = rgb.shape
    if h % 2 or w % 2:
        raise ValueError(f"4:2:0 needs even sizes, got {w}x{h}")
    rgb = rgb.float().clamp(0.0, 1.0)
    kr, kg, kb = luma_weights(colour.matrix)
    off, ys, cs = _scales(colour)
    luma = kr * rgb[:, 0:1] + kg * rgb[:, 1:2] + kb * rgb[:, 2:3]
    pb = (rgb[:, 2:3] - luma) / (2.0 * (1.0 - kb))
    pr = (rgb[:, 0:1] - luma) / (2.0 * (1.0 - kr))
    chroma = _downsample_chroma(torch.cat([pb, pr], dim=1)) * cs + 128.0
    y = luma * ys + off
    top = 255.0 if colour.range == RANGE_FULL else 235.0
    ctop = 255.0 if colour.range == RANGE_FULL else 240.0
    y = (y + 0.5).clamp_(off, top).to(torch.uint8)
    chroma = (chroma + 0.5).clamp_(256.0 - ctop if ctop < 255 else 0.0, ctop).to(torch.uint8)
    return torch.cat([y.view(n, h, w), chroma.reshape(n, -1).view(n, h // 2, w)], dim=1)
