"""Per-stage timing and run statistics."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LatencyStats", "RemoteStats", "RunStats", "StageStats", "too_slow_notice"]

#: a live run is said to be too slow when its network sustains less than this share of the input rate
TOO_SLOW = 0.8


def too_slow_notice(model_fps: float | None, input_fps: float | None, what: str) -> str | None:
    """The one warning a live run gets when its network cannot keep up with the input: the rate of
    each, the share of frames that will be dropped, what to do. None when it keeps up (or a rate
    is unknown).

    Args:
        model_fps: frames per busy second of the inference stage.
        input_fps: the input's frame rate.
        what: the network and where it runs (e.g. "udvd_x2 on torch (cpu)").
    """
    if not model_fps or not input_fps or model_fps >= TOO_SLOW * input_fps:
        return None
    drop = 1 - model_fps / input_fps
    lighter = "" if what.startswith("espcn") else "a lighter model (espcn), "  # already the lightest
    return (f"{what} runs at {model_fps:.1f} fps here, the input at {input_fps:.3g} fps: about {drop:.0%} of "
            f"the frames will be dropped to stay live; {lighter}a smaller --scale, a GPU "
            f"or fewer cameras per machine would keep up")


class LatencyStats:
    """Capture-to-encode latency: percentiles over a recent window, and the maximum ever seen.

    Args:
        window: how many recent frames the percentiles cover (bounded memory for 24/7 runs).
    """

    def __init__(self, window: int = 2048):
        self._recent: deque[float] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.max = 0.0
        self.count = 0

    def add(self, seconds: float) -> None:
        """Record one frame's latency."""
        with self._lock:
            self._recent.append(seconds)
            self.max = max(self.max, seconds)
            self.count += 1

    def summary(self) -> dict:
        """p50/p95/max in milliseconds (None before the first frame)."""
        with self._lock:
            values = np.array(self._recent)
        if not len(values):
            return {"p50_ms": None, "p95_ms": None, "max_ms": None, "frames": 0}
        p50, p95 = np.percentile(values, [50, 95])
        return {"p50_ms": round(p50 * 1000, 1), "p95_ms": round(p95 * 1000, 1),
                "max_ms": round(self.max * 1000, 1), "frames": self.count}


class RemoteStats:
    """Requests of one remote inference backend (a Triton client), owned by it
    (:attr:`~streamsr.backends.base.BackendBase.remote_stats`; the cameras of a hub share their
    backend's): counts, per-request latency, and the server's own view of the model.

    Args:
        url: the server.
        model: the model's name there.
        server: ``server() -> dict`` of the server's counters for the model since the client
            started (executions, queue time...); polled in the background at most once a second,
            failures ignored.
    """

    def __init__(self, url: str, model: str, server: Callable[[], dict] | None = None):
        self.url, self.model = url, model
        self.latency = LatencyStats()
        self.requests = self.failures = self.retried_frames = 0
        self.closed = False
        self._server, self._view, self._polled = server, {}, 0.0
        self._poller: threading.Thread | None = None
        self._lock, self._polling = threading.Lock(), threading.Lock()

    def add_request(self, seconds: float) -> None:
        """Record one answered request."""
        self.latency.add(seconds)
        with self._lock:
            self.requests += 1

    def add_failure(self, frames: int) -> None:
        """Record a failed request whose ``frames`` are sent again."""
        with self._lock:
            self.failures += 1
            self.retried_frames += frames

    def _poll(self) -> None:
        with self._polling:  # one poll at a time (the server callable keeps the backend's counters)
            try:
                view = self._server()
            except Exception:  # noqa: BLE001 -- a server away keeps its last view
                view = None
        with self._lock:
            self._view = self._view if view is None else view
            self._polled = time.monotonic()

    def _poll_in_background(self) -> None:
        try:
            self._poll()
        finally:
            with self._lock:
                self._poller = None

    def server_view(self, fresh: bool = False) -> dict:
        """The server's counters as last polled. Never waits for the server unless ``fresh``: a
        view over a second old starts a poll in the background (the progress line and /metrics
        read it from the encoder's and the HTTP server's threads).

        Args:
            fresh: poll now and wait for the answer (a run's final stats).
        """
        if self._server is None:
            return {}
        with self._lock:
            due = self._poller is None and time.monotonic() - self._polled >= 1.0
            if self.closed or not (fresh or due):
                return self._view
            if not fresh:
                self._poller = threading.Thread(target=self._poll_in_background, name="streamsr-remote-stats",
                                                daemon=True)
                self._poller.start()
                return self._view
        self._poll()
        return self._view

    def close(self) -> None:
        """The backend is closing: poll the server a last time; the view stays as it is then."""
        with self._lock:
            self.closed, poller = True, self._poller
        if poller is not None:
            poller.join()
        if self._server is not None:
            self._poll()

    def summary(self, fresh: bool = False) -> dict:
        """JSON-ready view (latency in milliseconds).

        Args:
            fresh: see :meth:`server_view`.
        """
        return {"url": self.url, "model": self.model, "requests": self.requests, "failures": self.failures,
                "retried_frames": self.retried_frames, "request_latency": self.latency.summary(),
                "server": self.server_view(fresh)}


@dataclass
class StageStats:
    """Busy time and item count of one stage (updated from its own thread only).

    Args:
        name: stage label.
    """

    name: str
    busy_seconds: float = 0.0
    items: int = 0
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, seconds: float, items: int) -> None:
        """Record ``seconds`` of work that handled ``items`` frames."""
        with self._lock:
            self.busy_seconds += seconds
            self.items += items

    def add_drop(self, n: int = 1) -> None:
        """Record frames dropped before this stage (live mode: queue full, or too late)."""
        with self._lock:
            self.dropped += n

    @property
    def fps(self) -> float | None:
        """Frames per busy second: the rate this stage alone could sustain."""
        return self.items / self.busy_seconds if self.busy_seconds > 0 and self.items else None

    def as_dict(self) -> dict:
        """JSON-ready view."""
        fps = self.fps
        return {"name": self.name, "frames": self.items, "busy_s": round(self.busy_seconds, 4),
                "fps": round(fps, 3) if fps else None, "dropped": self.dropped}


@dataclass
class RunStats:
    """Summary of one run, written by ``--stats-json``.

    Args:
        frames_in: frames decoded.
        frames_out: frames encoded.
        wall_seconds: run time.
        stages: per-stage stats.
        realtime: live mode (drop-oldest queues, latency bound).
        reconnects: times a live input came back after dropping.
        latency: capture-to-encode latency summary (:meth:`LatencyStats.summary`).
        decode_errors: decode errors (failed packets and FFmpeg's concealed-damage messages).
        corrupt_frames: frames FFmpeg flagged as corrupt.
        notices: remarks for the user.
        extra: anything else (model, backend, sizes).
        remote: summaries of the remote inference the run used (:meth:`RemoteStats.summary` of
            its backend's :attr:`~streamsr.backends.base.BackendBase.remote_stats`; empty for a
            local backend).
    """

    frames_in: int
    frames_out: int
    wall_seconds: float
    stages: list[StageStats]
    decode_errors: int = 0
    corrupt_frames: int = 0
    interrupted: bool = False
    realtime: bool = False
    reconnects: int = 0
    latency: dict = field(default_factory=dict)
    notices: list[str] = field(default_factory=list)
    extra: dict = field(default_factory=dict)
    remote: list[dict] = field(default_factory=list)

    @property
    def fps(self) -> float:
        """End-to-end frames per second."""
        return self.frames_out / self.wall_seconds if self.wall_seconds > 0 else 0.0

    @property
    def dropped(self) -> int:
        """Frames dropped in live mode (queues full or too late for --max-latency)."""
        return sum(s.dropped for s in self.stages)

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
            "input_fps": round(self.frames_in / self.wall_seconds, 3) if self.wall_seconds else 0.0,
            "dropped": self.dropped, "realtime": self.realtime, "reconnects": self.reconnects,
            "latency": self.latency,
            "interrupted": self.interrupted, "stages": [s.as_dict() for s in self.stages],
            "notices": self.notices, **({"remote": self.remote} if self.remote else {}), **self.extra,
        }
