"""Cameras across machines on Ray (``pip install 'streamsr[cluster]'``).

Each camera of a cameras file runs as a Ray actor (its own process: source -> inference -> sink),
placed by its resources on the cluster's nodes, restarted by Ray on a surviving node when its
process or node is lost (recording on into a new file), and drained on stop. Importing this package
does not import Ray: :func:`connect` does, with a one-line error when it is missing.

    from streamsr.cluster import ClusterRun, connect
    with connect("auto") as conn, ClusterRun(cameras, config, ray=conn.ray) as job:
        statuses = job.run(duration=3600)
"""

from .actor import CameraWorker, camera_actor
from .connection import INSTALL_HINT, NAMESPACE, Connection, connect, import_ray, is_loopback
from .placement import (
    Demand,
    NodeInfo,
    Placement,
    actor_name,
    camera_demand,
    nodes_from_ray,
    plan_placement,
    resolve_path,
    segment_output,
)
from .status import CameraStatus, cluster_metrics_server, collect_status, render_cluster_metrics
from .supervisor import ClusterRun

__all__ = [
    "INSTALL_HINT",
    "NAMESPACE",
    "CameraStatus",
    "CameraWorker",
    "ClusterRun",
    "Connection",
    "Demand",
    "NodeInfo",
    "Placement",
    "actor_name",
    "camera_actor",
    "camera_demand",
    "cluster_metrics_server",
    "collect_status",
    "connect",
    "import_ray",
    "is_loopback",
    "nodes_from_ray",
    "plan_placement",
    "render_cluster_metrics",
    "resolve_path",
    "segment_output",
]
