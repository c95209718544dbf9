"""Training: ``streamsr train CONFIG`` (configs/*.toml)."""

from .config import DegradationSampling, GanConfig, TrainConfig, load_train_config
from .loop import VAL_DEGRADATION, TrainResult, train

__all__ = [
           "VAL_DEGRADATION",
           "DegradationSampling",
           "GanConfig",
           "TrainConfig",
           "TrainResult",
           "load_train_config",
           "train",
]
