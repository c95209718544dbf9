"""The camera actor: one camera's pipeline (source -> inference -> sink) in a Ray worker process.

:class:`CameraWorker` is a plain class (importable without Ray); :func:`camera_actor` wraps it as
a Ray actor with its resources and restart policy. The actor does nothing until the supervisor
calls :meth:`CameraWorker.begin` with a segment number: 0 the first time, a new number after every
restart, so that a restarted process records into a new file (``gate.r1.mkv``) and never writes
over the one it was writing when it was lost. A restarted process comes back empty (Ray runs
``__init__`` again), says so through :meth:`CameraWorker.status`, and the supervisor begins it
again.

Everything the actor returns or logs has its credentials masked; its ``repr`` (what Ray shows
in log prefixes and on the dashboard) is the masked camera name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import resource
import threading
import time
import uuid
from collections import deque
from pathlib import Path

from ..config import RunConfig
from ..errors import ConfigError, StreamSRError
from ..pipeline.cameras import Camera
from ..pipeline.job import RunHandle, upscale_video
from ..urls import is_url, mask_credentials
from .placement import Demand, segment_output

__all__ = ["CameraWorker", "camera_actor"]

log = logging.getLogger("streamsr")


class _Notes(logging.Handler):
    """Keeps the run's warnings (masked) for :meth:`CameraWorker.status`."""

    def __init__(self, notes: deque):
        super().__init__(logging.WARNING)
        self.notes = notes

    def emit(self, record: logging.LogRecord) -> None:
        if not record.name.startswith("streamsr.ffmpeg"):
            self.notes.append(mask_credentials(record.getMessage()))


def _cpu_seconds() -> float:
    """CPU time this process used (user + system), every thread."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mb() -> float | None:
    """This process's resident memory in MiB (Linux), or None."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, IndexError):
        return None


class CameraWorker:
    """One camera in one process.

    Args:
        camera: the camera (input and output as given; relative paths already resolved).
        config: the run's settings.
        name: the camera's label (credentials masked).
    """

    def __init__(self, camera: Camera, config: RunConfig, name: str):
        self.camera, self.config, self.name = camera, config, name
        self.incarnation = uuid.uuid4().hex  # a new one after every restart of the process
        self.segment: int | None = None
        self.history: dict = {}
        self.handle: RunHandle | None = None
        self.thread: threading.Thread | None = None
        self.output: str | None = None
        self.error: str | None = None
        self.stopped = False
        self.finished = False  # set by the recording thread as it ends (status may run meanwhile)
        self.first_frame_wall: float | None = None
        self.last_frame_wall: float | None = None
        self.salvaged: list[str] = []
        self.notes: deque = deque(maxlen=20)
        self.node_id, self.node_ip = "", ""
        with contextlib.suppress(Exception):  # outside Ray (tests): no node
            import ray

            self.node_id = ray.get_runtime_context().get_node_id()
            self.node_ip = ray.util.get_node_ip_address()
        handler = _Notes(self.notes)
        logging.getLogger("streamsr").addHandler(handler)

    def __repr__(self) -> str:
        return f"CameraWorker({self.name})"

    def begin(self, segment: int, *, max_frames: int | None = None, history: dict | None = None) -> None:
        """Start recording segment ``segment`` (idempotent: a second call does nothing).

        Args:
            segment: 0 for the camera's first run, a new number after each restart.
            max_frames: frames still to record (None: until stopped or the input ends).
            history: what the supervisor counted before (restarts, gaps, earlier outputs), echoed in
                :meth:`status` so that ``cluster status`` in another process sees it.
        """
        if self.thread is not None or self.stopped:
            return
        self.segment, self.history = segment, dict(history or {})
        self.output = segment_output(self.camera.output, segment)
        if segment > 0:
            self._salvage(segment)
        self.handle = RunHandle(self.name)
        self.thread = threading.Thread(target=self._work, args=(max_frames,), name="streamsr-cluster-camera",
                                       daemon=True)
        self.thread.start()

    def _salvage(self, segment: int) -> None:
        """Earlier segments cut by a lost process stay ``NAME.partial``: what the muxer had written
        plays (a .mkv, a live .mp4), so it is renamed to its final name where this node sees it; an
        empty one (nothing reached the disk yet) is removed."""
        for k in range(segment):
            earlier = segment_output(self.camera.output, k)
            if earlier == "-" or is_url(earlier):
                return
            partial, final = Path(earlier + ".partial"), Path(earlier)
            with contextlib.suppress(OSError):
                if not partial.is_file() or final.exists():
                    continue
                if partial.stat().st_size == 0:
                    partial.unlink()
                    continue
                os.replace(partial, final)
                self.salvaged.append(mask_credentials(earlier))

    def _progress(self, handle: RunHandle) -> None:
        now = time.time()
        if self.first_frame_wall is None:
            self.first_frame_wall = now
        self.last_frame_wall = now

    def _work(self, max_frames: int | None) -> None:
        try:
            upscale_video(self.camera.input, self.output, self.config, handle=self.handle, stop_after=max_frames,
                          progress=self._progress)
        except StreamSRError as exc:
            self.error = mask_credentials(str(exc))
        except Exception as exc:  # noqa: BLE001 -- a camera's failure is reported, never lost in a thread
            self.error = mask_credentials(f"{type(exc).__name__}: {exc}")
        finally:
            self.finished = True

    def tell(self, history: dict) -> None:
        """Replace what the supervisor counted (echoed by :meth:`status`).

        Args:
            history: restarts, gaps, gap_seconds, outputs.
        """
        self.history = dict(history)

    def stop(self) -> None:
        """End the recording gracefully: stop reading, drain, finalize the file."""
        self.stopped = True
        if self.handle is not None:
            self.handle.stop()

    def status(self) -> dict:
        """This camera now, as plain data (credentials masked).

        Returns:
            ``camera``, ``incarnation``, ``segment`` (None: not begun, e.g. just restarted), ``state``,
            ``node_id``, ``node_ip``, ``pid``, ``snapshot`` (a :class:`JobSnapshot` as a dict, or None),
            ``output``, ``salvaged``, ``first_frame_wall``/``last_frame_wall`` (this process's first and
            latest encoded frame, epoch seconds), ``error``, ``notes``, ``rss_mb``, ``cpu_seconds`` (this process's CPU time), ``history``.
        """
        snap = self.handle.snapshot() if self.handle is not None else None
        if self.segment is None:
            state = "stopped" if self.stopped else "waiting"
        elif not self.finished:
            state = snap.state if snap is not None else "starting"
        else:
            state = "failed" if self.error else "done"
        snapshot = dataclasses.asdict(snap) if snap is not None else None
        if snapshot is not None:
            snapshot["error"] = mask_credentials(snapshot["error"]) if snapshot["error"] else None
        return {"camera": self.name, "incarnation": self.incarnation, "segment": self.segment, "state": state,
                "node_id": self.node_id, "node_ip": self.node_ip, "pid": os.getpid(), "snapshot": snapshot,
                "output": mask_credentials(self.output) if self.output else None, "salvaged": list(self.salvaged),
                "first_frame_wall": self.first_frame_wall, "last_frame_wall": self.last_frame_wall,
                "error": self.error, "notes": list(self.notes), "rss_mb": _rss_mb(), "cpu_seconds": _cpu_seconds(),
                "history": dict(self.history)}


def camera_actor(ray, *, name: str, namespace: str, demand: Demand, max_restarts: int):
    """The Ray actor class of a camera, with its options.

    Raises:
        ConfigError: a negative ``max_restarts``.

    Ray restarts the process (on any node with room) up to ``max_restarts`` times; method calls
    are never retried (``max_task_retries=0``): the supervisor polls and begins again itself.
    Cameras are spread over the nodes, so that losing one node loses as few as possible.

    Args:
        ray: the ``ray`` module.
        name: the actor's name (credentials masked).
        namespace: the Ray namespace.
        demand: the resources it asks for.
        max_restarts: how often Ray may restart it (bounded; never -1).
    """
    if max_restarts < 0:
        raise ConfigError(f"--max-restarts must be 0 or more (restarts are bounded), got {max_restarts}")
    custom = {"resources": dict(demand.custom)} if demand.custom else {}
    return ray.remote(CameraWorker).options(
        name=name, namespace=namespace, num_cpus=demand.cpus, num_gpus=demand.gpus, max_restarts=max_restarts,
        max_task_retries=0, max_concurrency=4, scheduling_strategy="SPREAD", **custom)
