"""IRN: Xiao et al., "Invertible Image Rescaling", ECCV 2020 (arXiv:2005.05650).

One invertible network is both the downscaler and the upscaler. Per level (one per factor 2): a
Haar transform per channel (4 fixed filters, low-pass first; the inverse is its transpose), then
invertible blocks on (x1 = the first 3 channels, x2 = the rest):

    y1 = x1 + F(x2);  s = clamp · (2·sigmoid(H(y1)) − 1);  y2 = x2 · e^s + G(y1)

inverted in reverse order. F, G, H are dense blocks (5 convolutions, growth 32, LeakyReLU 0.2,
the last initialised at zero). The forward pass turns an HR image into 3·s² channels at LR size:
the LR image (the first 3, close to a bicubic downscale) and a latent z; the inverse takes the LR
image and a z (the receiver has no z: it uses zeros, see MODELS.md).

Two parts run in opposite directions, each its own graph: ``down`` (HR → LR, the sender) and
``up`` (LR and z → HR, the receiver). ×2: one level of 8 blocks; ×4: two. The paper's sizes are
``configs/irn_paper_x{2,4}.toml``; the shipped weights are a smaller CPU variant (:data:`SHIPPED_IRN`).
Training (:func:`irn_loss`): L_forw (the LR close to MATLAB-bicubic's, L2, weighted s²),
L_distr (z close to N(0, 1)), L_back (Charbonnier between the HR and the inverse of the
quantized LR with a sampled z; quantisation with a straight-through gradient). The shipped
weights train the inverse with z = 0, the receiver's own (``z_scale = 0``): on a CPU budget the
paper's sampled z (``z_scale = 1``) left the round trip far below bicubic (MODELS.md).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .tables import Z

__all__ = ["IRN", "SHIPPED_IRN", "Z", "bit_cost", "haar", "irn_loss", "quantize", "through_codec"]

SHIPPED_IRN = {"blocks": 4, "growth": 16}


def _haar_filters(channels: int) -> Tensor:
    """(4·C, 1, 2, 2): LL, LH, HL, HH for each channel (grouped convolution)."""
    base = torch.tensor([[[1.0, 1.0], [1.0, 1.0]], [[1.0, -1.0], [1.0, -1.0]],
                         [[1.0, 1.0], [-1.0, -1.0]], [[1.0, -1.0], [-1.0, 1.0]]])
    return base.unsqueeze(1).repeat(channels, 1, 1, 1)


class Haar(nn.Module):
    """The Haar transform of each channel: C×H×W → 4C×H/2×W/2, ordered [all LL, all LH, all HL,
    all HH] (so the first C channels are the 2×2 means: a downscaled image)."""

    def __init__(self, channels: int):
        super().__init__()
        self.channels = channels
        self.register_buffer("filters", _haar_filters(channels), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        n, c, h, w = x.shape
        out = F.conv2d(x, self.filters.to(x.dtype), stride=2, groups=c) / 4.0
        return out.reshape(n, c, 4, h // 2, w // 2).transpose(1, 2).reshape(n, 4 * c, h // 2, w // 2)

    def inverse(self, y: Tensor) -> Tensor:
        n, c4, h, w = y.shape
        c = c4 // 4
        y = y.reshape(n, 4, c, h, w).transpose(1, 2).reshape(n, c4, h, w)
        return F.conv_transpose2d(y, self.filters.to(y.dtype), stride=2, groups=c)


def haar(x: Tensor) -> Tensor:
    """The Haar transform of ``x`` (see :class:`Haar`)."""
    return Haar(x.shape[1]).to(x.device)(x)


class DenseBlock(nn.Module):
    """Five 3×3 convolutions, each seeing the input and every earlier output; LeakyReLU 0.2; the
    last starts at zero (a block starts as the identity map of its coupling)."""

    def __init__(self, c_in: int, c_out: int, growth: int = 32):
        super().__init__()
        self.convs = nn.ModuleList(nn.Conv2d(c_in + k * growth, growth if k < 4 else c_out, 3, padding=1)
                                   for k in range(5))
        for conv in self.convs[:4]:  # the reference's xavier init scaled by 0.1
            nn.init.xavier_normal_(conv.weight)
            conv.weight.data.mul_(0.1)
            nn.init.zeros_(conv.bias)
        nn.init.zeros_(self.convs[4].weight)
        nn.init.zeros_(self.convs[4].bias)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for conv in self.convs[:4]:
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), 0.2))
        return self.convs[4](torch.cat(feats, 1))


class InvBlock(nn.Module):
    """An affine coupling on (the first ``split`` channels, the rest)."""

    def __init__(self, channels: int, split: int = 3, growth: int = 32, clamp: float = 1.0):
        super().__init__()
        self.split, self.clamp = split, clamp
        self.f = DenseBlock(channels - split, split, growth)
        self.g = DenseBlock(split, channels - split, growth)
        self.h = DenseBlock(split, channels - split, growth)

    def _s(self, y1: Tensor) -> Tensor:
        return self.clamp * (torch.sigmoid(self.h(y1)) * 2 - 1)

    def forward(self, x: Tensor) -> Tensor:
        x1, x2 = x[:, : self.split], x[:, self.split :]
        y1 = x1 + self.f(x2)
        y2 = x2 * torch.exp(self._s(y1)) + self.g(y1)
        return torch.cat([y1, y2], 1)

    def inverse(self, y: Tensor) -> Tensor:
        y1, y2 = y[:, : self.split], y[:, self.split :]
        x2 = (y2 - self.g(y1)) * torch.exp(-self._s(y1))
        x1 = y1 - self.f(x2)
        return torch.cat([x1, x2], 1)


class IRN(nn.Module):
    """The invertible rescaling network for ``scale`` (2 or 4: one level per factor 2).

    Args:
        scale: the factor.
        blocks: invertible blocks per level (8 in the paper).
        growth: the dense blocks' growth (32 in the paper).
        clamp: bound of the coupling's log-scale.
    """

    def __init__(self, scale: int, blocks: int = 8, growth: int = 32, clamp: float = 1.0):
        super().__init__()
        levels = int(math.log2(scale))
        if 2**levels != scale:
            raise ValueError(f"IRN scales by powers of 2, not {scale}")
        self.scale = scale
        ops, c = [], 3
        for _ in range(levels):
            ops.append(Haar(c))
            c *= 4
            ops += [InvBlock(c, 3, growth, clamp) for _ in range(blocks)]
        self.ops = nn.ModuleList(ops)

    def forward(self, x: Tensor) -> Tensor:
        """HR N×3×H×W → N×3s²×H/s×W/s: the LR image (first 3 channels), then z."""
        for op in self.ops:
            x = op(x)
        return x

    def inverse(self, y: Tensor) -> Tensor:
        """The LR image and z, concatenated, → the HR image."""
        for op in reversed(self.ops):
            y = op.inverse(y)
        return y

    @property
    def down(self) -> nn.Module:
        """The sender's part: HR → the LR image (z dropped)."""
        return _Down(self.ops)

    @property
    def up(self) -> nn.Module:
        """The receiver's part: (LR image, z) → HR."""
        return _Up(self.ops)


class _Down(nn.Module):
    def __init__(self, ops: nn.ModuleList):
        super().__init__()
        self.ops = ops

    def forward(self, image: Tensor) -> Tensor:
        for op in self.ops:
            image = op(image)
        return image[:, :3]


class _Up(nn.Module):
    def __init__(self, ops: nn.ModuleList):
        super().__init__()
        self.ops = ops

    def forward(self, image: Tensor, z: Tensor) -> Tensor:
        y = torch.cat([image, z.to(image.dtype)], 1)
        for op in reversed(self.ops):
            y = op.inverse(y)
        return y




def quantize(x: Tensor) -> Tensor:
    """To 8 bits as a video frame stores it, with a straight-through gradient."""
    q = torch.round(x.clamp(0, 1) * 255) / 255
    return x + (q - x).detach()


def through_codec(lr: Tensor, codec: str, crf: tuple[float, float]) -> Tensor:
    """``lr`` (8-bit values) through a real encoder and decoder at a crf drawn from the range, as
    one clip of intra frames, with a straight-through gradient (the codec is not differentiable;
    the inverse learns to undo what it did)."""
    from ..degradation.codec import codec_round_trip

    rate = float(crf[0] + (crf[1] - crf[0]) * torch.rand(()).item())
    frames = (lr.detach().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy()
    coded = codec_round_trip(frames, codec=codec, crf=rate, intra=True).frames
    decoded = torch.from_numpy(coded).to(lr.device).permute(0, 3, 1, 2).to(lr.dtype) / 255
    return lr + (decoded - lr).detach()


def _dct_matrix(n: int = 8) -> Tensor:
    """The orthonormal DCT-II of size n (rows: frequencies)."""
    k, i = torch.arange(n).unsqueeze(1), torch.arange(n).unsqueeze(0)
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


def bit_cost(lr: Tensor, step: float = 9.0) -> Tensor:
    """A differentiable stand-in for the bits an intra codec spends on ``lr`` (N×3×H×W in [0, 1]),
    per pixel: for each 8×8 block of its BT.709 luma and chroma (0-255 scale), log2(1 + |c|/step)
    summed over the AC coefficients of the orthonormal DCT, as a coefficient coded at quantiser
    step ``step`` costs about that many bits (9 ≈ H.264's step at QP 23). Only its gradient
    matters in training: it pushes the LR's detail toward what a codec keeps cheaply."""
    r, g, b = lr[:, 0] * 255, lr[:, 1] * 255, lr[:, 2] * 255
    y = 0.2126 * r + 0.7152 * g + 0.0722 * b
    yuv = torch.stack([y, (b - y) / 1.8556, (r - y) / 1.5748], 1)
    n, _, h, w = yuv.shape
    yuv = yuv[:, :, : h - h % 8, : w - w % 8]
    blocks = yuv.unfold(2, 8, 8).unfold(3, 8, 8)  # N×C×H/8×W/8×8×8
    d = _dct_matrix().to(lr)
    coeffs = d @ blocks @ d.T
    ac = torch.ones(8, 8, dtype=lr.dtype, device=lr.device)
    ac[0, 0] = 0
    return (torch.log2(1 + coeffs.abs() / step) * ac).sum() / (n * yuv.shape[2] * yuv.shape[3])


def irn_loss(model: IRN, inputs: list[Tensor], hr: Tensor, weights: tuple[float, float, float] | None = None,
             codec: str | None = None, crf: tuple[float, float] = (18, 33), z_scale: float = 1.0,
             rate: float = 0.0) -> Tensor:
    """The paper's loss for one batch: ``inputs[0]`` is the MATLAB-bicubic LR of ``hr``.

    Args:
        model: the whole network.
        inputs: [bicubic LR].
        hr: the HR patches.
        weights: (forward, distribution, backward); default (s², 1, 1): the paper's λ_forw is 4
            at ×2 and 16 at ×4.
        codec: compression-aware training: the quantized LR also goes through this encoder
            (e.g. "libx264") and its decoder before the inverse (:func:`through_codec`).
        crf: the range the codec's crf is drawn from, per batch.
        z_scale: standard deviation of the z the backward pass samples (the paper's 1; 0: the
            receiver's own z = 0).
        rate: weight of the LR's :func:`bit_cost` (bits per LR pixel, times the LR pixels of a
            patch): the compression-aware stage's rate term, so that the LR does not buy
            quality at the inverse with detail the codec pays for.
    """
    s = model.scale
    w_forw, w_distr, w_back = weights or (float(s * s), 1.0, 1.0)
    n = hr.shape[0]
    y = model(hr)
    lr, z = y[:, :3], y[:, 3:]
    forw = ((lr - inputs[0]) ** 2).sum() / n
    distr = (z**2).sum() / n
    sent = quantize(lr)
    if codec is not None:
        sent = through_codec(sent, codec, tuple(crf))
    back_in = torch.cat([sent, torch.randn_like(z) * z_scale], 1)
    back = torch.sqrt((model.inverse(back_in) - hr) ** 2 + 1e-6).sum() / n
    loss = w_forw * forw + w_distr * distr + w_back * back
    if rate:
        loss = loss + rate * bit_cost(lr) * lr.shape[2] * lr.shape[3]
    return loss


def irn(scale: int, **kwargs) -> nn.Module:
    """Build an untrained IRN for ``scale`` (shipped variant unless kwargs say otherwise)."""
    return IRN(scale, **{**SHIPPED_IRN, **kwargs})
