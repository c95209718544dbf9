"""Every built-in model's spec, in one torch-free place.

A spec names its network's factory and training loss as ``module:function`` references
(:class:`~streamsr.models.registry.ModelSpec`), so that looking a model up, planning a run and
running an exported graph on ONNX Runtime never import PyTorch: the module that defines the
network is imported when the network is built.
"""

from __future__ import annotations

from .geometry import ContinuousRange, FixedFactors, Parts
from .inputs import IMAGE, ModelInput
from .registry import ModelSpec, add_model
from .tables import COLS, ROWS, irn_part_inputs

__all__: list[str] = []

_SPECS = (
    ModelSpec(name="area", geometry=Parts((2, 3, 4), (("down", -1),), default_part="down"), paper="-",
              part_inputs=(("down", (IMAGE,)),), learned=False, description="plain area downscale (no network weights)",
              factory="streamsr.models.area:area"),
    ModelSpec(name="espcn", geometry=FixedFactors((2, 3, 4)), paper="Shi et al., CVPR 2016, arXiv:1609.05158",
              description="sub-pixel CNN, 3 layers; fastest",
              halo=4,  # 5×5, 3×3, 3×3 convolutions on the LR grid: 2 + 1 + 1
              factory="streamsr.models.espcn:espcn"),
    ModelSpec(name="srcnn", geometry=FixedFactors((2, 3, 4)), paper="Dong et al., ECCV 2014, arXiv:1501.00092",
              description="classic 3-layer baseline on the bicubic image", factory="streamsr.models.srcnn:srcnn"),
    ModelSpec(name="srresnet", geometry=FixedFactors((2, 4)), paper="Ledig et al., CVPR 2017, arXiv:1609.04802",
              description="residual network, L2/L1-trained (PSNR-oriented)", factory="streamsr.models.srresnet:srresnet"),
    ModelSpec(name="srgan", geometry=FixedFactors((4,)), paper="Ledig et al., CVPR 2017, arXiv:1609.04802",
              description="SRResNet generator fine-tuned adversarially (perceptual)",
              factory="streamsr.models.srresnet:srgan"),
    ModelSpec(name="udvd", geometry=FixedFactors((2, 4)), paper="Xu et al., CVPR 2020, arXiv:2004.06965",
              inputs=(IMAGE, ModelInput("kernel_code", 15, "degradation", provider="kernel_code"),
                      ModelInput("noise_level", 1, "degradation", provider="noise_level")),
              description="degradation-aware (blur + noise maps), dynamic convolutions",
              # measured (x2, shipped weights): tiles with 10 LR pixels of context differ from the whole
              # frame's output by at most 0.07 of an 8-bit level on a noisy block texture (8: 0.55; 12: 0.004)
              halo=10, factory="streamsr.models.udvd:udvd", train_loss="streamsr.models.udvd:multistage_l1"),
    ModelSpec(name="liif", geometry=ContinuousRange(1.0, 12.0, per_axis=True), paper="Chen et al., CVPR 2021, arXiv:2012.09161",
              inputs=(IMAGE, ROWS, COLS), description="any scale (local implicit image function)",
              factory="streamsr.models.liif:liif", train_loss="streamsr.models.implicit:implicit_l1"),
    ModelSpec(name="lte", geometry=ContinuousRange(1.0, 12.0, per_axis=True), paper="Lee & Jin, CVPR 2022, arXiv:2111.08918",
              inputs=(IMAGE, ROWS, COLS), description="any scale (local texture estimator)",
              factory="streamsr.models.lte:lte", train_loss="streamsr.models.implicit:implicit_l1"),
    ModelSpec(name="irn", geometry=Parts((2, 4), (("down", -1), ("up", 1)), default_part="up"),
              paper="Xiao et al., ECCV 2020, arXiv:2005.05650", part_inputs=irn_part_inputs,
              description="invertible rescaling: down on the sender, up on the receiver",
              factory="streamsr.models.irn:irn", train_loss="streamsr.models.irn:irn_loss"),
)

for _spec in _SPECS:
    add_model(_spec)
