"""Training configuration, read from TOML (``configs/*.toml``) into frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from ..config import read_toml
from ..errors import ConfigError

__all__ = ["DegradationSampling", "GanConfig", "TrainConfig", "load_train_config"]


@dataclass(frozen=True, kw_only=True)
class DegradationSampling:
    """Random degradations per training patch (SRMD recipe); ``enabled = False`` means clean
    bicubic LR.

    Args:
        enabled: synthesize blur and noise.
        blur_max: largest isotropic kernel width (HR px); anisotropic kernels use variances 0.1–10.
        anisotropic: fraction of patches with a random anisotropic kernel.
        noise_max: largest noise σ (0–255 scale).
        clean_fraction: fraction of patches with neither blur nor noise.
    """

    enabled: bool = False
    blur_max: float = 2.0
    anisotropic: float = 0.3
    noise_max: float = 50.0
    clean_fraction: float = 0.2


@dataclass(frozen=True, kw_only=True)
class GanConfig:
    """SRGAN fine-tuning.

    Args:
        init: generator weights to start from (a trained SRResNet).
        adv_weight: weight of the adversarial loss.
        feature_weight: weight of the content loss on the discriminator's own features (used when
            no VGG-19 is given; see MODELS.md).
        vgg_weights: a torchvision VGG-19 state dict; when given, its conv5_4 features are the
            content loss instead.
        pixel_weight: weight of an L1 pixel loss kept for stability.
        d_lr: discriminator learning rate.
    """

    init: str | None = None
    adv_weight: float = 1e-3
    feature_weight: float = 1.0
    vgg_weights: str | None = None
    pixel_weight: float = 1e-2
    d_lr: float = 1e-4


@dataclass(frozen=True, kw_only=True)
class TrainConfig:
    """One training run.

    Args:
        model, scale: registry name and factor (None for a model that takes any scale);
            model_kwargs picks a variant (the paper size).
        scale_range: a model that takes any scale trains on a factor drawn per batch from this
            range (default [1, 4], the papers' s ~ U(1, 4)).
        val_scales: the factors validation reports (default: ``scale``; [2, 3, 4] for a model
            that takes any scale).
        train_dir, val_dir: image folders (DIV2K-style folders work as they are).
        out_dir: checkpoints and final weights.
        ship: also write the final weights into the package (streamsr/models/weights) when running
            from a source checkout; an installed package is never written (they stay in out_dir).
        init: weights to start from (fine-tuning); the new weights' recipe records them and the
            recipe they carried. A gan run starts from ``[gan] init`` instead.
        lr_patch, batch: LR patch side and batch size.
        loss: "l1", "mse" or "gan".
        lr: Adam learning rate (cosine schedule to 1e-6 over the run).
        grad_clip: clip the gradient's norm to this (None: no clipping; IRN's recipe uses 10).
        loss_options: keyword arguments of the model's own loss (IRN: ``codec``, ``crf`` for
            compression-aware training; ``weights``).
        iterations: upper bound of steps.
        minutes: wall-clock budget (None: iterations only); the schedule follows whichever is set.
        val_every, checkpoint_every: steps between validations / checkpoints.
        seed, threads, device: reproducibility and hardware.
    """

    model: str
    scale: int | None = None
    scale_range: tuple[float, float] = (1.0, 4.0)
    val_scales: tuple[float, ...] = ()
    model_kwargs: dict = field(default_factory=dict)
    train_dir: str = "data/train"
    val_dir: str = "data/val"
    out_dir: str = "runs/train"
    ship: bool = False
    init: str | None = None
    lr_patch: int = 32
    batch: int = 16
    loss: str = "l1"
    lr: float = 1e-3
    grad_clip: float | None = None
    loss_options: dict = field(default_factory=dict)
    iterations: int = 100_000
    minutes: float | None = None
    val_every: int = 2000
    checkpoint_every: int = 500
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
    degradation: DegradationSampling = field(default_factory=DegradationSampling)
    gan: GanConfig = field(default_factory=GanConfig)

    def __post_init__(self) -> None:
        object.__setattr__(self, "scale_range", tuple(float(v) for v in self.scale_range))
        lo, hi = self.scale_range
        if not 1.0 <= lo <= hi:
            raise ConfigError(f"scale_range wants [low, high] with 1 <= low <= high, got {list(self.scale_range)}")
        if not self.val_scales:
            object.__setattr__(self, "val_scales", (self.scale,) if self.scale is not None else (2, 3, 4))
        object.__setattr__(self, "val_scales", tuple(self.val_scales))
        if self.loss not in ("l1", "mse", "gan"):
            raise ConfigError(f"loss must be l1, mse or gan, got {self.loss!r}")
        if self.loss == "gan" and self.init:
            raise ConfigError("a gan run starts from [gan] init; remove the top-level init")
        if self.loss == "gan" and not self.gan.init:
            raise ConfigError("a gan run needs [gan] init = <trained generator .safetensors>")


def _build(cls, table: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}")
    return cls(**table)


def load_train_config(path: str | Path, **overrides) -> TrainConfig:
    """Read a training TOML: top-level keys of :class:`TrainConfig`, ``[degradation]`` and ``[gan]``
    tables. ``overrides`` (e.g. from the command line) replace top-level keys.

    Raises:
        ConfigError: missing file, bad TOML, unknown keys, invalid values.
    """
    data = read_toml(path, "training config")
    data.update({k: v for k, v in overrides.items() if v is not None})
    data["degradation"] = _build(DegradationSampling, data.get("degradation", {}), f"{path} [degradation]")
    data["gan"] = _build(GanConfig, data.get("gan", {}), f"{path} [gan]")
    return _build(TrainConfig, data, str(path))
