"""Threaded pipeline: runner, stages, stats and the file-to-file job."""

from .job import run_sequential, upscale_video
from .runner import END, FnStage, Runner, Stage
from .stats import RunStats, StageStats

__all__ = ["END", "FnStage", "RunStats", "Runner", "Stage", "StageStats", "run_sequential", "upscale_video"]
