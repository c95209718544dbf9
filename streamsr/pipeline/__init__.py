"""Threaded pipeline: runner, stages, stats and the file-to-file job."""

from .job import JobSnapshot, RunHandle, run_sequential, upscale_video
from .plan import RunPlan, plan_run, plan_source
from .runner import END, FnStage, Runner, Stage
from .stats import RunStats, StageStats

__all__ = ["END", "FnStage", "JobSnapshot", "RunHandle", "RunPlan", "RunStats", "Runner", "Stage", "StageStats",
           "plan_run", "plan_source", "run_sequential", "upscale_video"]
