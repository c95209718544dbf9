"""UDVD: Xu et al., "Unified Dynamic Convolutional Network for Super-Resolution with Variational
Degradations", CVPR 2020 (arXiv:2004.06965).

Input: the LR image (3) + SRMD kernel code (15) + noise level (1), each map at LR size. A head conv,
an EDSR-style residual body (residual scaling 0.1) with a global skip, then three dynamic-
convolution modules: the first predicts, per LR pixel, s² k×k kernels applied to the LR image
(one per sub-pixel position, then pixel shuffle) plus a residual; the next two predict one k×k
kernel per HR pixel applied to the current estimate plus a residual. Every module's output is
returned in training (multi-stage loss). Predicted kernels are offsets from fixed base kernels —
MATLAB-bicubic interpolation weights for each sub-pixel position in the upsampling module, the
identity in the refinement modules — so an untrained network is exactly bicubic upscaling and
training only has to learn what bicubic misses (a short CPU budget is enough to beat it).

The paper uses 128 channels and 15 blocks (``configs/udvd_paper.toml``); the shipped weights use
the smaller variant in :data:`SHIPPED_UDVD`, trainable on a CPU (see MODELS.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SHIPPED_UDVD", "UDVD", "apply_dynamic_kernels", "bicubic_kernels", "multistage_l1"]

SHIPPED_UDVD = {"channels": 48, "blocks": 6, "refine_channels": 24}


def _patches(x: Tensor, k: int) -> Tensor:
    """N×C×H×W → N×C×k²×H×W neighbourhoods (replicate padding), built from shifted slices so that
    it exports to plain ONNX Slice/Concat (no Im2Col)."""
    r = k // 2
    h, w = x.shape[-2:]
    p = F.pad(x, (r, r, r, r), mode="replicate")
    return torch.stack([p[..., dy : dy + h, dx : dx + w] for dy in range(k) for dx in range(k)], dim=2)


def apply_dynamic_kernels(x: Tensor, kernels: Tensor, k: int) -> Tensor:
    """Filter every pixel of ``x`` (N×C×H×W) with its own kernels (N×S×k²×H×W, S outputs per
    pixel, shared by the channels); returns N×(C·S)×H×W ordered for pixel shuffle."""
    n, c, h, w = x.shape
    out = torch.einsum("nckhw,nskhw->ncshw", _patches(x, k), kernels)
    return out.reshape(n, c * kernels.shape[1], h, w)


class _ResBlock(nn.Module):
    def __init__(self, c: int, res_scale: float):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(c, c, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(c, c, 3, padding=1))
        self.res_scale = res_scale

    def forward(self, x: Tensor) -> Tensor:
        return x + self.res_scale * self.body(x)


class _Refine(nn.Module):
    """HR dynamic-convolution module: one k×k kernel per pixel plus a residual."""

    def __init__(self, features: int, k: int):
        super().__init__()
        self.k = k
        self.feat = nn.Sequential(nn.Conv2d(3 + features, features, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(features, features, 3, padding=1), nn.ReLU(inplace=True))
        self.kernel = nn.Conv2d(features, k * k, 3, padding=1)
        self.residual = nn.Conv2d(features, 3, 3, padding=1)
        for conv in (self.kernel, self.residual):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.register_buffer("centre", _centre(k, 1), persistent=False)

    def forward(self, y: Tensor, hr_features: Tensor) -> Tensor:
        g = self.feat(torch.cat([y, hr_features], dim=1))
        n, _, h, w = y.shape
        kernels = self.kernel(g).view(n, 1, self.k * self.k, h, w) + self.centre
        return apply_dynamic_kernels(y, kernels, self.k) + self.residual(g)


def _centre(k: int, s: int) -> Tensor:
    c = torch.zeros(1, s, k * k, 1, 1)
    c[:, :, (k * k) // 2] = 1.0
    return c


def _cubic(x: float) -> float:
    x = abs(x)  # MATLAB's bicubic kernel, a = -0.5
    if x <= 1:
        return 1.5 * x**3 - 2.5 * x**2 + 1
    if x < 2:
        return -0.5 * x**3 + 2.5 * x**2 - 4 * x + 2
    return 0.0


def bicubic_kernels(k: int, s: int) -> Tensor:
    """1×s²×k²×1×1 base kernels: for sub-pixel position (i, j) (pixel-shuffle order), the k×k
    weights over the LR neighbourhood that bicubic interpolation gives that HR pixel."""
    r = k // 2
    out = torch.zeros(1, s * s, k * k, 1, 1)
    for i in range(s):
        for j in range(s):
            dy, dx = (i + 0.5) / s - 0.5, (j + 0.5) / s - 0.5  # HR centre offset in LR pixels
            wy = torch.tensor([_cubic(t - dy) for t in range(-r, r + 1)], dtype=torch.float64)
            wx = torch.tensor([_cubic(t - dx) for t in range(-r, r + 1)], dtype=torch.float64)
            kernel = torch.outer(wy / wy.sum(), wx / wx.sum())
            out[0, i * s + j, :, 0, 0] = kernel.reshape(-1).float()
    return out


class UDVD(nn.Module):
    """Args: scale: 2, 3 or 4; channels/blocks: body size; refine_channels: HR feature width;
    kernel_size: dynamic kernel side; code_dim: kernel code length."""

    def __init__(self, scale: int, channels: int = 128, blocks: int = 15, refine_channels: int = 32,
                 kernel_size: int = 5, code_dim: int = 15):
        super().__init__()
        self.scale, self.k = scale, kernel_size
        s2, k2 = scale * scale, kernel_size * kernel_size
        self.head = nn.Conv2d(3 + code_dim + 1, channels, 3, padding=1)
        self.body = nn.Sequential(*[_ResBlock(channels, 0.1) for _ in range(blocks)],
                                  nn.Conv2d(channels, channels, 3, padding=1))
        self.up_kernels = nn.Conv2d(channels, s2 * k2, 3, padding=1)
        self.up_residual = nn.Sequential(nn.Conv2d(channels, 3 * s2, 3, padding=1), nn.PixelShuffle(scale))
        for conv in (self.up_kernels, self.up_residual[0]):
            nn.init.zeros_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.hr_features = nn.Sequential(nn.Conv2d(channels, refine_channels * s2, 3, padding=1),
                                         nn.PixelShuffle(scale), nn.ReLU(inplace=True))
        self.refine = nn.ModuleList([_Refine(refine_channels, kernel_size) for _ in range(2)])
        self.shuffle = nn.PixelShuffle(scale)
        self.register_buffer("base", bicubic_kernels(kernel_size, scale), persistent=False)

    def forward(self, image: Tensor, kernel_code: Tensor, noise_level: Tensor, all_stages: bool = False):
        """Upscale N×3×H×W in [0, 1] given N×15×H×W kernel codes and N×1×H×W noise (σ/255).

        Returns:
            The N×3×sH×sW result, or with ``all_stages`` the outputs of all three modules.
        """
        f = self.head(torch.cat([image, kernel_code, noise_level], dim=1))
        f = f + self.body(f)
        n, _, h, w = image.shape
        kernels = self.up_kernels(f).view(n, self.scale**2, self.k**2, h, w) + self.base
        y = self.shuffle(apply_dynamic_kernels(image, kernels, self.k)) + self.up_residual(f)
        hr = self.hr_features(f)
        outputs = [y]
        for module in self.refine:
            y = module(y, hr)
            outputs.append(y)
        return outputs if all_stages else y


def multistage_l1(model: UDVD, inputs: list[Tensor], hr: Tensor) -> Tensor:
    """The paper's training loss: L1 on the output of every dynamic-convolution module, averaged."""
    outputs = model(*inputs, all_stages=True)
    return sum(F.l1_loss(o, hr) for o in outputs) / len(outputs)


def udvd(scale: int, **kwargs) -> nn.Module:
    """Build an untrained UDVD (shipped variant unless kwargs say otherwise)."""
    return UDVD(scale, **{**SHIPPED_UDVD, **kwargs})
