"""Many cameras at once: one pipeline per camera, one loaded model shared through an
:class:`~streamsr.pipeline.hub.InferenceHub` that batches frames across cameras. A camera that
fails is reported and the others go on.

A cameras file (TOML)::

    [defaults]            # any `streamsr run` option, e.g.
    model = "espcn"
    scale = 2
    max_latency = 0.5

    [[camera]]
    name = "gate"
    input = "rtsp://user:pass@10.0.0.5/stream1"
    output = "gate.mkv"
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..backends.choice import load_backend
from ..config import RunConfig, read_toml
from ..errors import ConfigError, StreamSRError
from ..urls import is_url, mask_credentials
from .hub import InferenceHub
from .job import RunHandle, upscale_video
from .plan import known_variant
from .stats import RunStats

__all__ = ["Camera", "CameraResult", "load_cameras", "run_cameras"]


@dataclass(frozen=True)
class Camera:
    """One input/output pair.

    Args:
        name: label in stats and metrics.
        input: URL, device or file.
        output: file, stream URL or playlist.
        resources: what the camera needs where it runs (``streamsr cluster``'s placement: ``cpus``,
            ``gpus``, or a custom resource of the nodes); a run on one machine ignores it.
    """

    name: str
    input: str
    output: str
    resources: dict = field(default_factory=dict)


@dataclass
class CameraResult:
    """How a camera's run ended: its stats, or the error that stopped it."""

    camera: Camera
    stats: RunStats | None = None
    error: BaseException | None = None


#: what a [[camera]] entry may hold
_CAMERA_KEYS = {"name", "input", "output", "resources"}


def load_cameras(path: str | Path) -> tuple[list[Camera], dict]:
    """Read a cameras TOML file.

    Returns:
        (cameras, default options for :meth:`RunConfig.from_options`).

    Raises:
        ConfigError: missing file, bad TOML, a camera without input/output, unknown keys, duplicate names.
    """
    data = read_toml(path, "cameras file")
    unknown = set(data) - {"defaults", "camera"}
    if unknown:
        raise ConfigError(f"{path}: unknown table(s) {', '.join(sorted(unknown))}; a cameras file has [defaults] "
                          "and [[camera]] entries")
    cameras = []
    for i, entry in enumerate(data.get("camera", [])):
        missing = {"input", "output"} - set(entry)
        if missing:
            raise ConfigError(f"{path}: camera #{i + 1} lacks {', '.join(sorted(missing))}")
        unknown = set(entry) - _CAMERA_KEYS
        if unknown:  # a typo must not be ignored (a misspelt output, say)
            raise ConfigError(f"{path}: camera #{i + 1} has unknown key(s) {', '.join(sorted(unknown))}; known: "
                              f"{', '.join(sorted(_CAMERA_KEYS))} (run options go in [defaults])")
        resources = entry.get("resources", {})
        if not isinstance(resources, dict) or not all(isinstance(v, (int, float)) for v in resources.values()):
            raise ConfigError(f"{path}: camera #{i + 1}: resources is a table of numbers, e.g. {{ cpus = 1, gpus = 0.25 }}")
        cameras.append(Camera(str(entry.get("name", f"camera{i + 1}")), str(entry["input"]), str(entry["output"]),
                              dict(resources)))
    if not cameras:
        raise ConfigError(f"{path}: no [[camera]] entries")
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        raise ConfigError(f"{path}: camera names must be unique")
    check_distinct(cameras)  # paths are taken from the folder the run starts in, as the runs take them
    return cameras, dict(data.get("defaults", {}))


def check_distinct(cameras: list[Camera], base: str | Path = ".") -> None:
    """Refuse, before anything runs, cameras whose outputs would destroy another's input or mix
    into one file or stream (``-`` included): each output once, and none of them an input.

    Raises:
        ConfigError: naming the output and the cameras.
    """
    def key(target: str) -> str:
        return target if target == "-" or is_url(target) else os.path.realpath(Path(base) / target)

    inputs = {key(c.input): c for c in cameras}
    outputs: dict[str, Camera] = {}
    for c in cameras:
        k = key(c.output)
        if k in outputs:
            raise ConfigError(f"{mask_credentials(c.output)} is the output of both {outputs[k].name} and {c.name}; "
                              "give each camera its own")
        if k in inputs and k != "-" and inputs[k] is not c:  # its own input: said when it is planned
            raise ConfigError(f"{c.name}'s output {mask_credentials(c.output)} is {inputs[k].name}'s input; "
                              "choose another name")
        outputs[k] = c


def run_cameras(
    cameras: list[Camera],
    config: RunConfig,
    *,
    duration: float | None = None,
    max_frames: int | None = None,
    stop_event: threading.Event | None = None,
    on_start: Callable[[list[RunHandle]], None] | None = None,
) -> list[CameraResult]:
    """Run every camera until its input ends, a bound is reached, or ``stop_event`` is set.

    Args:
        cameras: the cameras.
        config: settings shared by all (the model is loaded once).
        duration, max_frames: per-camera bounds.
        stop_event: set it to stop every camera gracefully.
        on_start: receives the run handles once threads start (for metrics and progress).

    Returns:
        One :class:`CameraResult` per camera, in order.
    """
    hub = InferenceHub(lambda variant: load_backend(config, variant), max_batch=max(config.batch_size, len(cameras)))
    try:
        variant = known_variant(config)
        if variant is not None:  # a backend that cannot load fails the run once, before any camera starts
            hub.client(variant)
    except BaseException:
        hub.close()
        raise
    results = [CameraResult(c) for c in cameras]
    handles = [RunHandle(mask_credentials(c.name)) for c in cameras]

    def work(i: int) -> None:
        cam = cameras[i]
        try:
            results[i].stats = upscale_video(cam.input, cam.output, config, stop_after=max_frames,
                                             duration=duration, backends=hub.client, handle=handles[i],
                                             stop_event=stop_event)
        except (StreamSRError, OSError, RuntimeError, ValueError) as exc:  # reported per camera
            results[i].error = exc
            results[i].stats = getattr(exc, "stats", None)

    threads = [threading.Thread(target=work, args=(i,), name=f"streamsr-camera-{c.name}", daemon=True)
               for i, c in enumerate(cameras)]
    try:
        for t in threads:
            t.start()
        if on_start is not None:
            on_start(handles)
        for t in threads:
            while t.is_alive():
                t.join(timeout=0.1)
    except KeyboardInterrupt:
        for h in handles:
            h.stop()
        for t in threads:
            t.join()
        for r in results:
            if r.stats is not None:
                r.stats.interrupted = True
    finally:
        hub.close()
    return results
