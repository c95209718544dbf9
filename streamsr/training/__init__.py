"""Training: ``streamsr train CONFIG`` (configs/*.toml)."""

from .config import DegradationSampling, GanConfig, TrainConfig, load_train_config
from .loop import VAL_DEGRADATION, TrainResult, train

__all__ = ["DegradationSampling", "GanConfig", "TrainConfig", "TrainResult", "VAL_DEGRADATION",
           "load_train_config", "train"]
