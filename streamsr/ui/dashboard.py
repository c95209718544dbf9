"""The live camera wall of ``streamsr run --ui-port``: one tile per running job.

Reads what the progress line and ``/metrics`` read: each job's :class:`~streamsr.pipeline.job.RunHandle`
(its :class:`~streamsr.pipeline.job.JobSnapshot`), plus the latest input and output frames the
handle keeps. Endpoints:

- ``GET /api/cameras`` — a JSON list, one entry per job: the snapshot's counts, state, latency,
  error, the noise σ a degradation-aware model was told last, the picture sizes;
- ``GET /snapshot/{i}?view=output|input`` — a JPEG of job ``i``'s latest frame (404 before the
  first). A JPEG is made only when a page asks, at most one at a time and about once a second per
  picture (asked more often, the last one is sent again), so a page never slows the pipeline much.

Names and errors are masked (``rtsp://***@host``) as everywhere.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..errors import ConfigError
from ..urls import mask_credentials
from .http import NotFound, PageServer, Response, json_response
from .images import detached, encode_jpeg, frame_rgb

__all__ = ["SNAPSHOT_INTERVAL", "Snapshots", "camera_entry", "dashboard_server"]

#: seconds a snapshot is reused before a newer frame is encoded
SNAPSHOT_INTERVAL = 1.0
#: snapshots wider than this are shrunk (a wall of 4K cameras stays light)
SNAPSHOT_WIDTH = 960


def camera_entry(index: int, handle) -> dict:
    """One job as ``/api/cameras`` lists it.

    Args:
        index: its place in the list (the ``/snapshot/{i}`` number).
        handle: its :class:`~streamsr.pipeline.job.RunHandle`.
    """
    s = handle.snapshot()
    last_in, last_out = handle.last_input, handle.last_output
    return {
        "index": index, "name": mask_credentials(s.name), "state": s.state, "frames_in": s.frames_in,
        "frames_out": s.frames_out, "dropped": s.dropped, "reconnects": s.reconnects,
        "connect_failures": s.connect_failures, "total": s.total, "elapsed": round(s.elapsed, 3),
        "fps": round(s.fps, 3), "latency": s.latency, "error": mask_credentials(s.error) if s.error else None,
        "noise": round(float(last_out.noise), 2) if last_out is not None and last_out.noise is not None else None,
        "input_size": _size(last_in), "output_size": _size(last_out),
    }


def _size(frame) -> list[int] | None:
    return [frame.image.width, frame.image.height] if frame is not None else None


class Snapshots:
    """JPEGs of jobs' latest frames, made on demand and rate-limited; thread-safe.

    Args:
        interval: seconds a picture is reused before a newer frame is encoded.
        max_width: pictures wider than this are shrunk.
        clock: the clock intervals are measured on.
    """

    def __init__(self, interval: float = SNAPSHOT_INTERVAL, max_width: int = SNAPSHOT_WIDTH,
                 clock: Callable[[], float] = time.monotonic):
        self.interval, self.max_width, self.clock = interval, max_width, clock
        self._made: dict[tuple[int, str], tuple[float, object, bytes]] = {}
        self._lock = threading.Lock()
        self.encoded = 0

    def jpeg(self, index: int, handle, view: str) -> bytes:
        """The latest ``view`` ("output" or "input") of job ``index`` as a JPEG.

        Args:
            index: the job's number.
            handle: its run handle.
            view: which picture.

        Raises:
            NotFound: no frame yet.
            ConfigError: an unknown view.
        """
        if view not in ("output", "input"):
            raise ConfigError(f"unknown view {view!r}; use output or input")
        frame = handle.last_output if view == "output" else handle.last_input
        if frame is None:
            raise NotFound(f"camera {index} has no {view} picture yet")
        key = (index, view)
        with self._lock:  # one JPEG at a time, whatever the number of pages and cameras
            made = self._made.get(key)
            now = self.clock()
            if made is not None and (made[1] is frame or now - made[0] < self.interval):
                return made[2]
            try:  # the pipeline's own frame is copied, never converted (see detached)
                picture = detached(frame.image)
            except ValueError as exc:
                raise NotFound(f"camera {index}'s {view} ({frame.image.format.name}) cannot be shown: {exc}") from None
            # the frame record's tags: those it was decoded with, and those the output is encoded with
            data = encode_jpeg(frame_rgb(picture, frame.colour), max_width=self.max_width)
            self._made[key] = (now, frame, data)
            self.encoded += 1
            return data


def dashboard_server(handles: Callable[[], list], host: str = "127.0.0.1", port: int = 0,
                     snapshots: Snapshots | None = None) -> PageServer:
    """The camera wall for the jobs ``handles()`` returns; enter it to serve.

    Args:
        handles: returns the run handles to show (a list that may grow once cameras start).
        host, port: where to listen (127.0.0.1 unless a host is given; port 0 picks a free one).
        snapshots: the JPEG maker (None: a new one).

    Raises:
        ConfigError: the address cannot be listened on.
    """
    snapshots = snapshots or Snapshots()

    def cameras(m, q) -> Response:
        return json_response([camera_entry(i, h) for i, h in enumerate(list(handles()))])

    def snapshot(m, q) -> Response:
        jobs = list(handles())
        index = int(m.group(1))
        if index >= len(jobs):
            raise NotFound(f"no camera {index}: there are {len(jobs)}")
        return Response(snapshots.jpeg(index, jobs[index], q.get("view", "output")), "image/jpeg")

    routes = [(r"/api/cameras", cameras), (r"/snapshot/(\d{1,6})", snapshot)]
    return PageServer(host, port, routes, index="dashboard.html", option="--ui-port")
