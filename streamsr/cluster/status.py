"""What ``streamsr cluster status`` and the cluster's ``/metrics`` show: one :class:`CameraStatus`
per camera, built from its actor's answer (its job's snapshot) and the supervisor's counts.

:func:`collect_status` asks the camera actors of a running cluster directly, from any process
connected to it (the actors are named in the streamsr namespace). :func:`render_cluster_metrics`
is the project's Prometheus text of every camera's snapshot plus the cluster's own counters.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..pipeline.job import JobSnapshot
from ..pipeline.metrics_http import MetricsServer, families, render_metrics
from ..urls import mask_credentials
from .connection import NAMESPACE
from .placement import ACTOR_PREFIX

__all__ = ["TERMINAL", "CameraStatus", "cluster_metrics_server", "collect_status", "node_label",
           "render_cluster_metrics", "snapshot_from_dict", "status_from_actor"]

#: states a camera does not leave
TERMINAL = frozenset({"done", "failed", "unplaceable", "stopped"})


def snapshot_from_dict(data: dict | None) -> JobSnapshot | None:
    """A :class:`JobSnapshot` from the dict an actor sent (None stays None).

    Args:
        data: ``dataclasses.asdict`` of a snapshot.
    """
    if data is None:
        return None
    return JobSnapshot(**{**data, "remote": tuple(data.get("remote", ()))})


@dataclass
class CameraStatus:
    """One camera of a cluster run.

    Args:
        camera: its name (credentials masked).
        state: "pending" (waiting for room), "waiting" (placed, not begun), "starting",
            "connecting", "running", "reconnecting", "restarting" (process or node lost, Ray
            restarting it), "stopping", "done", "failed", "unplaceable" or "stopped".
        node: the node it runs on (``IP/node-id prefix``), or "".
        restarts: times its process came back after being lost.
        gaps: recordings cut by a loss and continued in a new file; ``gap_seconds``: the time
            between the last frame before and the first after, added up.
        outputs: every file it recorded, in order (credentials masked).
        snapshot: its job's latest snapshot, or None before it began.
        error: why it failed or cannot be placed.
        rss_mb: its process's resident memory; ``pid``: that process's id (on its node);
            ``cpu_seconds``: the CPU time that process used.
        notes: the run's warnings (masked).
    """

    camera: str
    state: str
    node: str = ""
    restarts: int = 0
    gaps: int = 0
    gap_seconds: float = 0.0
    outputs: list[str] = field(default_factory=list)
    snapshot: JobSnapshot | None = None
    error: str | None = None
    rss_mb: float | None = None
    notes: list[str] = field(default_factory=list)
    pid: int | None = None
    cpu_seconds: float | None = None

    @property
    def fps(self) -> float:
        """Frames written per second by its current process."""
        return self.snapshot.fps if self.snapshot is not None else 0.0

    def as_dict(self) -> dict:
        """Plain data for JSON (credentials were masked by the actor and the supervisor)."""
        s = self.snapshot
        return {"camera": self.camera, "state": self.state, "node": self.node, "restarts": self.restarts,
                "gaps": self.gaps, "gap_seconds": round(self.gap_seconds, 3), "outputs": list(self.outputs),
                "frames_in": s.frames_in if s else 0, "frames_out": s.frames_out if s else 0,
                "dropped": s.dropped if s else 0, "reconnects": s.reconnects if s else 0,
                "fps": round(self.fps, 2), "error": self.error, "pid": self.pid,
                "cpu_seconds": None if self.cpu_seconds is None else round(self.cpu_seconds, 2),
                "latency": {k: float(v) if isinstance(v, float) else v for k, v in s.latency.items()} if s else None,
                "rss_mb": None if self.rss_mb is None else round(self.rss_mb, 1), "notes": list(self.notes),
                "remote": [dict(r) for r in s.remote] if s else []}


def node_label(ip: str, node_id: str) -> str:
    """``IP/abcdef12``: the node's address and the start of its id (nodes of one machine share an IP)."""
    return f"{ip}/{node_id[:8]}" if node_id else ip


def status_from_actor(data: dict) -> CameraStatus:
    """A :class:`CameraStatus` from an actor's :meth:`~streamsr.cluster.actor.CameraWorker.status`
    alone (the counts it was told by the supervisor included).

    Args:
        data: the actor's answer.
    """
    history = data.get("history", {})
    outputs = list(history.get("outputs", []))
    if data.get("output") and data["output"] not in outputs:
        outputs.append(data["output"])
    return CameraStatus(
        camera=data["camera"], state=data["state"], node=node_label(data.get("node_ip", ""), data.get("node_id", "")),
        restarts=int(history.get("restarts", 0)), gaps=int(history.get("gaps", 0)),
        gap_seconds=float(history.get("gap_seconds", 0.0)), outputs=outputs,
        snapshot=snapshot_from_dict(data.get("snapshot")), error=data.get("error"), rss_mb=data.get("rss_mb"),
        notes=list(data.get("notes", [])), pid=data.get("pid"), cpu_seconds=data.get("cpu_seconds"))


def collect_status(ray, *, namespace: str = NAMESPACE, timeout: float = 10.0) -> list[CameraStatus]:
    """Every camera actor of the cluster, asked now (from any connected process).

    A camera whose actor does not answer within ``timeout`` (not placed yet, or being restarted)
    is listed as "pending" or "restarting".

    Args:
        ray: the connected ``ray`` module.
        namespace: where the actors are named.
        timeout: seconds to wait for the answers.
    """
    names = sorted(a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
                   if a.get("namespace") == namespace and a["name"].startswith(ACTOR_PREFIX))
    refs = {}
    for name in names:
        try:
            refs[name] = ray.get_actor(name, namespace=namespace).status.remote()
        except ValueError:  # it ended between the listing and now
            continue
    ready, _ = ray.wait(list(refs.values()), num_returns=len(refs), timeout=timeout) if refs else ([], [])
    out = []
    for name, ref in refs.items():
        camera = name[len(ACTOR_PREFIX):]
        if ref not in ready:
            out.append(CameraStatus(camera, "pending"))
            continue
        try:
            out.append(status_from_actor(ray.get(ref)))
        except ray.exceptions.ActorUnavailableError:
            out.append(CameraStatus(camera, "restarting"))
        except ray.exceptions.RayActorError as exc:
            out.append(CameraStatus(camera, "failed", error=mask_credentials(str(exc).splitlines()[0])))
    return out


_CLUSTER_METRICS = [
    ("streamsr_cluster_restarts_total", "counter", "Times a camera's process came back after being lost.",
     lambda c: c.restarts),
    ("streamsr_cluster_gaps_total", "counter", "Recordings cut by a lost process or node and continued in a new file.",
     lambda c: c.gaps),
    ("streamsr_cluster_gap_seconds_total", "counter", "Seconds between the last frame before a loss and the first after.",
     lambda c: round(c.gap_seconds, 3)),
]


def render_cluster_metrics(statuses: list[CameraStatus]) -> str:
    """Prometheus text: every camera's job metrics (``render_metrics`` of their snapshots), then
    restarts, gaps and an info series with each camera's node and state.

    Args:
        statuses: the cameras.
    """
    text = render_metrics([c.snapshot for c in statuses if c.snapshot is not None])
    lines = families(_CLUSTER_METRICS, statuses, lambda c: {"camera": c.camera})
    lines += families([("streamsr_cluster_camera_info", "gauge", "The node a camera runs on and its state.",
                        lambda c: 1)], statuses, lambda c: {"camera": c.camera, "node": c.node, "state": c.state})
    return text + "\n".join(lines) + "\n"


def cluster_metrics_server(host: str, port: int, statuses: Callable[[], list[CameraStatus]]) -> MetricsServer:
    """A server of :func:`render_cluster_metrics` at ``/metrics`` on a daemon thread (a context manager).

    Args:
        host, port: where to listen (port 0: a free one, see its ``port``).
        statuses: callable returning the cameras to report (the supervisor's latest view: a
            scrape costs no call to the cluster).

    Raises:
        ConfigError: the port cannot be bound.
    """
    return MetricsServer(host, port, render=lambda: render_cluster_metrics(statuses()), name="streamsr-cluster-metrics")
