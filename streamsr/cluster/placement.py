"""Where cameras go: what one camera asks of a node, which cameras fit the cluster at all, and
how outputs are named across restarts. Pure functions (no Ray), tested without a cluster.

Ray places each camera actor by its resources (``num_cpus``, and a ``num_gpus`` fraction when
the network runs on the camera's node); these functions only decide the request and find, from the
nodes' totals, cameras no node could ever hold (reported at once, never queued for ever) and those
that wait for room.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..urls import is_url, mask_credentials

__all__ = ["ACTOR_PREFIX", "Demand", "NodeInfo", "Placement", "actor_name", "camera_demand", "nodes_from_ray", "plan_placement",
           "resolve_path", "segment_output"]

#: prefix of every camera actor's name in the streamsr namespace
ACTOR_PREFIX = "camera:"


@dataclass(frozen=True)
class NodeInfo:
    """A node of the cluster, as placement sees it.

    Args:
        node_id: Ray's node id (hex).
        address: its IP address.
        cpus, gpus: its total logical CPUs and GPUs.
        custom: its custom resources (``ray start --resources '{"triton": 100}'``), as (name, amount).
    """

    node_id: str
    address: str
    cpus: float
    gpus: float
    custom: tuple[tuple[str, float], ...] = ()

    def totals(self) -> dict[str, float]:
        """Every resource placement looks at: CPU, GPU and the custom ones."""
        return {"CPU": self.cpus, "GPU": self.gpus, **dict(self.custom)}


@dataclass(frozen=True)
class Demand:
    """What one camera actor asks of its node.

    Args:
        cpus: logical CPUs (decode, colour conversion, encode; and inference when on the CPU).
        gpus: a GPU fraction when the network runs on the camera's node (0: CPU or remote inference).
        custom: custom resources as (name, amount): a camera asking ``triton`` goes only to nodes
            that declare it (those running a Triton server it reaches on localhost, say).
    """

    cpus: float
    gpus: float = 0.0
    custom: tuple[tuple[str, float], ...] = ()

    def amounts(self) -> dict[str, float]:
        """The request as Ray resources (zero amounts left out)."""
        return {k: v for k, v in {"CPU": self.cpus, "GPU": self.gpus, **dict(self.custom)}.items() if v}

    def describe(self) -> str:
        """``1 CPU``, ``1 CPU + 0.25 GPU + 1 triton``."""
        return " + ".join(f"{v:g} {k}" for k, v in self.amounts().items()) or "nothing"


@dataclass(frozen=True)
class Placement:
    """One camera's placement verdict.

    Args:
        camera: the camera's name.
        placeable: some node can hold it (else it is reported and not started).
        waits: placeable, but the nodes' totals are taken by the cameras before it: it waits for room.
        reason: why it cannot be placed or waits.
    """

    camera: str
    placeable: bool
    waits: bool = False
    reason: str | None = None


#: resources Ray declares on every node that placement does not reason about
_BUILTIN = ("CPU", "GPU", "memory", "object_store_memory", "accelerator_type:")


def nodes_from_ray(entries: list[dict]) -> list[NodeInfo]:
    """The alive nodes of ``ray.nodes()``.

    Args:
        entries: ``ray.nodes()``'s records.
    """
    out = []
    for e in entries:
        if not e.get("Alive", e.get("alive", False)):
            continue
        res = e.get("Resources", {})
        custom = tuple(sorted((k, float(v)) for k, v in res.items()
                              if not k.startswith(_BUILTIN) and not k.startswith("node:")))
        out.append(NodeInfo(e["NodeID"], e.get("NodeManagerAddress", ""), float(res.get("CPU", 0)),
                            float(res.get("GPU", 0)), custom))
    return out


def camera_demand(nodes: list[NodeInfo], *, remote_inference: bool, cpus: float | None = None,
                  gpus: float | None = None, cameras_per_gpu: int = 4,
                  custom: dict[str, float] | None = None) -> Demand:
    """What each camera asks for.

    Args:
        nodes: the cluster's nodes.
        remote_inference: the network runs on a Triton tier: cameras need no GPU.
        cpus: CPUs per camera (default 1).
        gpus: GPU fraction per camera (default: ``1/cameras_per_gpu`` when the network runs locally
            and the cluster has GPUs, else 0).
        cameras_per_gpu: how many cameras share one GPU by default.
        custom: custom resources per camera (``--resource triton=1``).

    Raises:
        ConfigError: negative amounts, or a GPU request with remote inference.
    """
    custom = dict(custom or {})
    if any(v is not None and v < 0 for v in (cpus, gpus, *custom.values())):
        raise ConfigError(f"resources per camera must not be negative (cpus {cpus}, gpus {gpus}, {custom})")
    if gpus and remote_inference:
        raise ConfigError("--gpus-per-camera with --inference triton://: the network runs on the Triton tier, "
                          "cameras need no GPU")
    if cameras_per_gpu < 1:
        raise ConfigError(f"--cameras-per-gpu must be at least 1, got {cameras_per_gpu}")
    if gpus is None:
        gpus = 0.0 if remote_inference or not any(n.gpus for n in nodes) else 1.0 / cameras_per_gpu
    return Demand(cpus=1.0 if cpus is None else float(cpus), gpus=float(gpus),
                  custom=tuple(sorted((k, float(v)) for k, v in custom.items())))


def _fits(demand: Demand, free: dict[str, float]) -> bool:
    eps = 1e-9  # fractions that add up (4 x 0.25) must fit exactly
    return all(v <= free.get(k, 0.0) + eps for k, v in demand.amounts().items())


def plan_placement(cameras: list[str], demand: Demand | list[Demand], nodes: list[NodeInfo]) -> list[Placement]:
    """Which cameras the cluster can hold, from the nodes' totals (Ray does the actual placing).

    A camera no node could hold even empty is unplaceable (a GPU fraction needs a node with a GPU,
    a custom resource a node that declares it). The others are packed first-fit onto the nodes'
    totals; those left over wait until a camera ends or a node joins.

    Args:
        cameras: the cameras' names, in order.
        demand: what each asks for (one for all, or one per camera).
        nodes: the alive nodes.
    """
    demands = demand if isinstance(demand, list) else [demand] * len(cameras)
    free = [n.totals() for n in nodes]
    out = []
    for camera, want in zip(cameras, demands, strict=True):
        if not any(_fits(want, n.totals()) for n in nodes):
            out.append(Placement(camera, placeable=False, reason=f"needs {want.describe()}; {_largest(nodes)}"))
            continue
        slot = next((f for f in free if _fits(want, f)), None)
        if slot is None:
            out.append(Placement(camera, placeable=True, waits=True,
                                 reason=f"needs {want.describe()}; the cameras before it take every node's room"))
            continue
        for k, v in want.amounts().items():
            slot[k] -= v
        out.append(Placement(camera, placeable=True))
    return out


def _largest(nodes: list[NodeInfo]) -> str:
    """What the largest node has, for an unplaceable camera's reason."""
    biggest = max(nodes, key=lambda n: (n.gpus, n.cpus), default=None)
    if biggest is None:
        return "no node is alive"
    return "no node has that; the largest has " + ", ".join(f"{v:g} {k}" for k, v in biggest.totals().items())


def actor_name(camera: str) -> str:
    """The camera actor's name in the streamsr namespace (credentials masked: Ray shows it).

    Args:
        camera: the camera's name.
    """
    return ACTOR_PREFIX + mask_credentials(camera)


_EXTENSION = re.compile(r"(\.[A-Za-z0-9]{1,5})$")


def segment_output(output: str, segment: int) -> str:
    """The output of a camera's ``segment``-th run: the output itself for the first, then
    ``NAME.rN.EXT`` (``gate.mkv`` -> ``gate.r1.mkv``; a pattern keeps its codes:
    ``cam-%03d.mkv`` -> ``cam-%03d.r1.mkv``) so a restarted camera never writes over the file it
    was writing when its process or node was lost. Stream URLs and stdout are kept as they are.

    Args:
        output: the camera's output.
        segment: 0 for the first run, N for the N-th restart.
    """
    if segment == 0 or output == "-" or is_url(output):
        return output
    head, tail = os.path.split(output)
    m = _EXTENSION.search(tail)
    stem, ext = (tail[: m.start()], m.group(1)) if m else (tail, "")
    return os.path.join(head, f"{stem}.r{segment}{ext}")


def resolve_path(target: str, base: str | os.PathLike) -> str:
    """A relative file name taken from ``base`` (the folder ``cluster run`` started in): camera
    actors run in Ray's own working folders. URLs, devices and ``-`` are kept.

    Args:
        target: a camera's input or output.
        base: the folder relative names are taken from.
    """
    if target == "-" or is_url(target) or os.path.isabs(target):
        return target
    return str(Path(base) / target)
