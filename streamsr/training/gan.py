"""SRGAN's discriminator and the content losses used to fine-tune the generator."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Discriminator", "VGG19Features"]


class Discriminator(nn.Module):
    """SRGAN-style: conv blocks (stride 2 every other, LeakyReLU 0.2; no batch norm so it works
    on small CPU batches), global pooling and two dense layers → one logit. ``features`` returns
    the activations used as the feature content loss when no VGG-19 is given.

    Args:
        channels: width of the first block (doubles every two blocks).
    """

    def __init__(self, channels: int = 32):
        super().__init__()
        layers, c_in = [], 3
        for i in range(8):
            c_out = channels * 2 ** (i // 2)
            layers.append(nn.Sequential(nn.Conv2d(c_in, c_out, 3, stride=1 + i % 2, padding=1),
                                        nn.LeakyReLU(0.2, inplace=True)))
            c_in = c_out
        self.blocks = nn.ModuleList(layers)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c_in, 256),
                                  nn.LeakyReLU(0.2, inplace=True), nn.Linear(256, 1))

    def features(self, x: Tensor) -> list[Tensor]:
        """Activations after blocks 2, 4 and 6."""
        out = []
        for i, block in enumerate(self.blocks):
            x = block(x)
            if i in (1, 3, 5):
                out.append(x)
        return out

    def forward(self, x: Tensor) -> Tensor:
        for block in self.blocks:
            x = block(x)
        return self.head(x)


class VGG19Features(nn.Module):
    """torchvision's VGG-19 ``features`` up to conv5_4 (before its ReLU), loaded from a torchvision
    state dict file, without needing torchvision. Inputs in [0, 1] are ImageNet-normalized here.

    Args:
        path: ``vgg19-*.pth`` (read with ``weights_only=True``) or a ``.safetensors`` file.
    """

    CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512)

    def __init__(self, path: str):
        super().__init__()
        layers, c_in = [], 3
        for v in self.CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c_in, v, 3, padding=1), nn.ReLU(inplace=False)]
                c_in = v
        self.features = nn.Sequential(*layers[:-1])  # stop at conv5_4, before its ReLU
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        own = {k: v for k, v in state.items() if k.startswith("features.") and
               int(k.split(".")[1]) < len(self.features)}
        self.load_state_dict(own, strict=True)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))
        for p in self.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        return self.features((x - self.mean) / self.std)
