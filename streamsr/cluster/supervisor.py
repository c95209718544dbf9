"""The driver of a cluster run: starts one camera actor per camera, watches them, begins a new
segment after every restart, counts restarts and gaps, and drains every recording on stop.

Ray does the placing and the restarting (bounded ``max_restarts``; method calls are never
retried). The supervisor polls each actor's status (one call in flight per camera, never piled
up behind a lost node) and reacts to what it sees:

- an answer from a new process (a new incarnation) after a loss: a restart; the lost segment's
  last frame time is kept, and the gap ends with the new segment's first frame;
- an actor that has not begun (first start or restart): :meth:`CameraWorker.begin` with a new
  segment number, so the new process records into a new file;
- ``ActorUnavailableError``: being restarted; ``ActorDiedError`` twice: lost for good (restarts
  used up), reported, the others go on.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

from ..config import RunConfig
from ..errors import ConfigError
from ..pipeline.cameras import Camera
from ..urls import mask_credentials
from .actor import camera_actor
from .connection import NAMESPACE
from .placement import Placement, actor_name, camera_demand, nodes_from_ray, plan_placement, segment_output
from .status import TERMINAL, CameraStatus, node_label, snapshot_from_dict

__all__ = ["ClusterRun"]

#: states of a camera that has no running pipeline to show
_IDLE = {"pending", "waiting", "restarting", "stopped", "unplaceable"}


@dataclass
class _Tracked:
    """The supervisor's record of one camera."""

    camera: Camera
    name: str
    state: str = "pending"
    actor: Any = None
    status_ref: Any = None
    begin_ref: Any = None
    next_segment: int = 0
    incarnation: str | None = None
    begun: str | None = None  # the incarnation a segment was begun on
    lost: bool = False
    restarts: int = 0
    gaps: int = 0
    gap_seconds: float = 0.0
    gap_from: float | None = None
    outputs: list[str] = field(default_factory=list)
    frames_before: int = 0
    last: dict | None = None
    error: str | None = None
    died: int = 0
    node: str = ""


class ClusterRun:
    """Cameras as Ray actors across a cluster; a context manager (closing kills every actor left).

    The caller connects first (:func:`~streamsr.cluster.connection.connect`).

    Args:
        cameras: the cameras (inputs and outputs as the nodes see them).
        config: settings shared by all; ``backend="triton"`` means the network runs on the Triton
            tier (cameras ask for no GPU).
        cpus, gpus, cameras_per_gpu: resources per camera (see :func:`camera_demand`).
        resources: custom Ray resources per camera, e.g. ``{"triton": 1}``: only nodes declaring them.
        max_restarts: how often Ray may restart each camera's process.
        max_frames: frames per camera, added up over its segments (None: until stopped).
        namespace: the Ray namespace of the actors.
        on_event: receives one line (credentials masked) for each thing that happens to a camera.
        poll_interval: seconds between looks at the actors.
        drain_timeout: seconds a stop waits for recordings to be finalized.
        ray: the connected ``ray`` module (None: imported).

    Raises:
        ConfigError: no cameras, or a bad resource request.
    """

    def __init__(self, cameras: list[Camera], config: RunConfig, *, cpus: float | None = None,
                 gpus: float | None = None, cameras_per_gpu: int = 4, resources: dict[str, float] | None = None,
                 max_restarts: int = 3,
                 max_frames: int | None = None, namespace: str = NAMESPACE,
                 on_event: Callable[[str], None] | None = None, poll_interval: float = 0.5,
                 drain_timeout: float = 120.0, ray=None):
        if not cameras:
            raise ConfigError("a cluster run needs at least one camera")
        if ray is None:
            from .connection import import_ray

            ray = import_ray()
        self.ray, self.config, self.namespace = ray, config, namespace
        self.resources = {"cpus": cpus, "gpus": gpus, "cameras_per_gpu": cameras_per_gpu, "custom": resources}
        self.max_restarts, self.max_frames = max_restarts, max_frames
        self.on_event, self.poll_interval, self.drain_timeout = on_event, poll_interval, drain_timeout
        self.interrupted = False
        self.placements: list[Placement] = []
        self.demand = None  # what each camera asks for (decided by start)
        self._tracked = [_Tracked(c, mask_credentials(c.name)) for c in cameras]
        self._stopping, self._stop_deadline, self._started = False, 0.0, False
        self._view: list[CameraStatus] = []
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def start(self) -> None:
        """Plan placement on the alive nodes and create an actor for every camera that fits.

        Raises:
            ConfigError: not connected to Ray, or a bad resource request.
        """
        if self._started:
            return
        if not self.ray.is_initialized():
            raise ConfigError("not connected to a Ray cluster: call streamsr.cluster.connect() first")
        self._started = True
        nodes = nodes_from_ray(self.ray.nodes())
        remote = self.config.backend == "triton"
        self.demand = camera_demand(nodes, remote_inference=remote, **self.resources)
        demands = [camera_demand(nodes, remote_inference=remote, **_own(self.resources, t.camera.resources))
                   if t.camera.resources else self.demand for t in self._tracked]
        self.placements = plan_placement([t.name for t in self._tracked], demands, nodes)
        for t, p, demand in zip(self._tracked, self.placements, demands, strict=True):
            if not p.placeable:
                t.state, t.error = "unplaceable", f"cannot be placed: {p.reason}"
                self._event(t, t.error + " (the other cameras go on)")
                continue
            if p.waits:
                self._event(t, f"waits for room: {p.reason}")
            try:
                t.actor = camera_actor(self.ray, name=actor_name(t.camera.name), namespace=self.namespace,
                                       demand=demand, max_restarts=self.max_restarts).remote(t.camera, self.config,
                                                                                             t.name)
            except ValueError as exc:  # the name is taken: another cluster run records this camera
                t.state, t.error = "failed", f"already running in this cluster ({exc})"
                self._event(t, t.error)
        self._publish()

    def stop(self) -> None:
        """Ask every camera to stop: each drains what it read and finalizes its file."""
        if self._stopping:
            return
        self._stopping, self._stop_deadline = True, time.monotonic() + self.drain_timeout
        for t in self._tracked:
            if t.state in TERMINAL:
                continue
            if t.state in ("pending", "restarting"):  # nothing recording: nothing to drain
                t.state = "stopped"
            if t.actor is not None:
                t.actor.stop.remote()
        self._publish()

    def close(self) -> None:
        """Kill every actor (their recordings should be finalized first: :meth:`stop`, :meth:`run`)."""
        for t in self._tracked:
            if t.actor is not None:
                with contextlib.suppress(Exception):  # already gone
                    self.ray.kill(t.actor, no_restart=True)
                t.actor = None

    @property
    def finished(self) -> bool:
        """Every camera has ended (done, failed, unplaceable or stopped)."""
        return all(t.state in TERMINAL for t in self._tracked)

    def run(self, *, duration: float | None = None, stop_event: threading.Event | None = None) -> list[CameraStatus]:
        """Watch the cameras until all have ended, ``duration`` seconds have passed or
        ``stop_event`` is set (then stop and drain). Ctrl-C stops and drains too
        (:attr:`interrupted` becomes True).

        Args:
            duration: wall-clock seconds before every camera is stopped.
            stop_event: set it to stop every camera.

        Returns:
            The cameras' final :class:`CameraStatus`.
        """
        self.start()
        deadline = None if duration is None else time.monotonic() + duration
        try:
            self._watch(deadline, stop_event)
        except KeyboardInterrupt:
            self.interrupted = True
            self.stop()
            self._watch(None, None)
        return self.statuses()

    def _watch(self, deadline: float | None, stop_event: threading.Event | None) -> None:
        while not self.finished:
            t0 = time.monotonic()
            self.poll(timeout=self.poll_interval)
            now = time.monotonic()
            if not self._stopping and ((stop_event is not None and stop_event.is_set())
                                       or (deadline is not None and now >= deadline)):
                self.stop()
            if self._stopping and now > self._stop_deadline:
                for t in self._tracked:
                    if t.state not in TERMINAL:
                        t.state, t.error = "failed", f"not finalized within {self.drain_timeout:g} s of the stop"
                        self._event(t, t.error)
                self._publish()
                return
            time.sleep(max(0.0, self.poll_interval - (time.monotonic() - t0)))

    # -- watching ----------------------------------------------------------------------------

    def statuses(self) -> list[CameraStatus]:
        """The cameras as of the latest poll (safe from another thread, e.g. a metrics server)."""
        with self._lock:
            return list(self._view)

    def poll(self, timeout: float = 0.0) -> list[CameraStatus]:
        """Look at every actor once (waiting at most ``timeout`` seconds for answers) and act.

        Args:
            timeout: seconds to wait for the actors' answers.
        """
        ray = self.ray
        live = [t for t in self._tracked if t.actor is not None and t.state not in TERMINAL]
        for t in live:
            if t.status_ref is None:
                t.status_ref = t.actor.status.remote()
        refs = [t.status_ref for t in live] + [t.begin_ref for t in live if t.begin_ref is not None]
        ready = set(ray.wait(refs, num_returns=len(refs), timeout=timeout)[0]) if refs else set()
        errors = ray.exceptions
        for t in live:
            if t.begin_ref is not None and t.begin_ref in ready:
                ref, t.begin_ref = t.begin_ref, None
                try:
                    ray.get(ref)
                except errors.RayActorError:  # lost while beginning: its next status says so
                    pass
            if t.status_ref is None or t.status_ref not in ready:
                continue
            ref, t.status_ref = t.status_ref, None
            try:
                data = ray.get(ref)
            except errors.ActorDiedError as exc:
                self._died(t, exc)
            except errors.RayActorError:  # ActorUnavailableError: Ray is restarting it
                self._lost(t)
            else:
                self._seen(t, data)
        self._publish()
        return self.statuses()

    def _seen(self, t: _Tracked, data: dict) -> None:
        t.died = 0
        if data["incarnation"] != t.incarnation:
            if t.incarnation is not None:  # a new process: the old one was lost, seen or not
                self._lost(t, quiet=True)
                t.restarts += 1
                self._event(t, f"restarted on node {node_label(data['node_ip'], data['node_id'])} "
                               f"(restart {t.restarts} of at most {self.max_restarts})")
            t.incarnation, t.lost = data["incarnation"], False
        t.last, t.node = data, node_label(data["node_ip"], data["node_id"])
        if data["segment"] is None:
            if self._stopping:
                t.state = "stopped"
            elif t.begun != t.incarnation:  # once per process: the actor answers calls concurrently,
                t.state = "waiting"         # so a status asked before its begin may arrive after it
                self._begin(t)
            return
        if t.gap_from is not None and data["first_frame_wall"] is not None:
            gap = max(0.0, data["first_frame_wall"] - t.gap_from)
            t.gaps, t.gap_seconds, t.gap_from = t.gaps + 1, t.gap_seconds + gap, None
            self._event(t, f"recording again into {data['output']} after a gap of {gap:.1f} s")
            t.actor.tell.remote(self._history(t))  # so that `cluster status` elsewhere sees the gap
        previous, t.state = t.state, data["state"]
        if t.state in ("done", "failed") and previous != t.state:
            t.error = data["error"]
            frames = (data["snapshot"] or {}).get("frames_out", 0)
            self._event(t, f"failed: {t.error}" if t.error else f"done: {frames} frames into {data['output']}")

    def _begin(self, t: _Tracked) -> None:
        done = t.frames_before
        if self.max_frames is not None and done >= self.max_frames:
            t.state = "done"
            return
        segment = t.next_segment
        t.next_segment, t.begun = segment + 1, t.incarnation
        output = mask_credentials(segment_output(t.camera.output, segment))
        t.outputs.append(output)
        remaining = None if self.max_frames is None else self.max_frames - done
        t.begin_ref = t.actor.begin.remote(segment, max_frames=remaining, history=self._history(t))
        if segment == 0:
            self._event(t, f"placed on node {t.node or '?'}, recording into {output}")

    def _history(self, t: _Tracked) -> dict:
        return {"restarts": t.restarts, "gaps": t.gaps, "gap_seconds": t.gap_seconds, "outputs": list(t.outputs)}

    def _lost(self, t: _Tracked, quiet: bool = False) -> None:
        if t.lost:
            return
        t.lost = True
        last = t.last or {}
        if last.get("segment") is not None:  # a recording was cut: the gap starts at its last frame
            t.frames_before += (last.get("snapshot") or {}).get("frames_out", 0)
            t.gap_from = last.get("last_frame_wall") or time.time()
        t.last = None
        if not quiet:
            t.state = "stopped" if self._stopping else "restarting"
            self._event(t, f"lost its process on node {t.node or '?'}; Ray restarts it where there is room")

    def _died(self, t: _Tracked, exc: Exception) -> None:
        self._lost(t, quiet=True)
        t.died += 1
        if t.died >= 2 or getattr(exc, "actor_init_failed", False):
            t.state = "failed"
            t.error = (f"lost for good after {t.restarts} restart(s) (at most {self.max_restarts}): "
                       f"{mask_credentials(str(exc).splitlines()[0])}")
            self._event(t, t.error)
        else:
            t.state = "restarting"

    def _event(self, t: _Tracked, message: str) -> None:
        if self.on_event is not None:
            self.on_event(mask_credentials(f"{t.name}: {message}"))

    def _publish(self) -> None:
        view = []
        for t in self._tracked:
            last = t.last or {}
            snap = snapshot_from_dict(last.get("snapshot")) if t.state not in _IDLE else None
            view.append(CameraStatus(
                camera=t.name, state=t.state, node=t.node,
                restarts=t.restarts, gaps=t.gaps, gap_seconds=t.gap_seconds, outputs=list(t.outputs), snapshot=snap,
                error=t.error, rss_mb=last.get("rss_mb"), notes=list(last.get("notes", [])), pid=last.get("pid"),
                cpu_seconds=last.get("cpu_seconds")))
        with self._lock:
            self._view = view


def _own(run_wide: dict, camera: dict) -> dict:
    """The run's resource request with a camera's own (its cameras-file ``resources``) on top:
    ``cpus``/``gpus`` replace the run's, other names join the run's custom resources.

    Raises:
        ConfigError: an amount that is not a number.
    """
    out = dict(run_wide, custom=dict(run_wide.get("custom") or {}))
    for key, value in camera.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"camera resources: {key} wants a number, got {value!r}")
        if key in ("cpus", "gpus"):
            out[key] = float(value)
        else:
            out["custom"][key] = float(value)
    return out
