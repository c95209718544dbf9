"""Per-stage timing and run statistics."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["StageStats", "RunStats"]


@dataclass
class StageStats:
    """Busy time and item count of one stage (updated from its own thread only).

    Args:
        name: stage label.
    """

    name: str
    busy_seconds: float = 0.0
    items: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, seconds: float, items: int) -> None:
        """Record ``seconds`` of work that handled ``items`` frames."""
        with self._lock:
            self.busy_seconds += seconds
            self.items += items

    @property
    def fps(self) -> float | None:
        """Frames per busy second: the rate this stage alone could sustain."""
        return self.items / self.busy_seconds if self.busy_seconds > 0 and self.items else None

    def as_dict(self) -> dict:
        """JSON-ready view."""
        fps = self.fps
        return {"name": self.name, "frames": self.items, "busy_s": round(self.busy_seconds, 4),
                "fps": round(fps, 3) if fps else None}


@dataclass
class RunStats:
    """Summary of one run, written by ``--stats-json``.

    Args:
        frames_in: frames decoded.
        frames_out: frames encoded.
        wall_seconds: run time.
        stages: per-stage stats.
        decode_errors: decode errors (failed packets and FFmpeg's concealed-damage messages).
        corrupt_frames: frames FFmpeg flagged as corrupt.
        notices: remarks for the user.
        extra: anything else (model, backend, sizes).
    """

    frames_in: int
    frames_out: int
    wall_seconds: float
    stages: list[StageStats]
    decode_errors: int = 0
    corrupt_frames: int = 0
    interrupted: bool = False
    notices: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)

    @property
    def fps(self) -> float:
        """End-to-end frames per second."""
        return self.frames_out / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def efficiency(self) -> float | None:
        """End-to-end fps over the slowest stage's fps (1.0 = the pipeline hides every other stage)."""
        rates = [s.fps for s in self.stages if s.fps]
        return self.fps / min(rates) if rates else None

    def as_dict(self) -> dict:
        """JSON-ready view."""
        eff = self.efficiency
        return {
            "frames_in": self.frames_in, "frames_out": self.frames_out,
            "wall_s": round(self.wall_seconds, 4), "fps": round(self.fps, 3),
            "efficiency": round(eff, 3) if eff else None, "decode_errors": self.decode_errors,
            "corrupt_frames": self.corrupt_frames,
            "interrupted": self.interrupted, "stages": [s.as_dict() for s in self.stages],
            "notices": self.notices, **self.extra,
        }
