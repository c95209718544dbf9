"""Everything a run decides before its first frame, as pure functions of its inputs.

:func:`plan_source` decides how the input is read (live or a file, real-time pacing, audio,
hardware decoding) from the config and the input's name; :func:`plan_run` decides the rest once
the input's stream is known: the model's geometry and network, queues and latency bound, the
encoder's settings and pixel format, where colour is converted, what a degradation-aware model is
told. :func:`~streamsr.pipeline.job.upscale_video` only opens things, builds the stages a plan
describes and runs them. Both take what they need to know of the machine and the backend as
arguments, so tests can plan any run on any machine.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from ..backends.base import Capabilities
from ..config import RunConfig
from ..errors import ConfigError
from ..frames import VideoInfo
from ..io.encoders import check_crf, check_encoder, choose_pix_fmt, default_encoder, even_size
from ..io.outputs import container_format
from ..io.sink import SinkConfig
from ..machine import Machine
from ..models.geometry import Geometry, resolve_geometry
from ..models.inputs import needs_noise
from ..models.registry import AUTO, ModelSpec, ModelVariant, get_model, pick_model
from ..urls import is_hls, is_live_input
from .memory import MemoryNeed, parse_bytes, run_memory
from .reuse import ReusePolicy, plan_reuse
from .stages import Telling

__all__ = ["LIVE_QUEUE", "RunPlan", "SourcePlan", "check_options", "known_variant", "plan_run", "plan_source",
           "plan_variant", "resolve_model"]

#: live mode's queue bound: a slow stage makes the oldest frames drop instead of wait
LIVE_QUEUE = 2


@dataclass(frozen=True)
class SourcePlan:
    """How the input is read.

    Args:
        name: the input's path or URL (None for a file object).
        live: a live stream (reconnecting, capture-time timestamps).
        realtime: live mode: drop-oldest queues and a latency bound.
        pace: release frames no faster than their timestamps (a file read in real time; HLS,
            whose segments arrive whole).
        audio: pass audio packets through.
        hwaccel: the hardware device type to decode on (None: the CPU).
    """

    name: str | None
    live: bool
    realtime: bool
    pace: bool
    audio: bool
    hwaccel: str | None


def plan_source(config: RunConfig, src, machine: Machine) -> SourcePlan:
    """How ``src`` (a path, URL, ``"-"`` or a file object) is read under ``config``."""
    text = os.fspath(src) if isinstance(src, (str, os.PathLike)) else None
    live = bool(text) and is_live_input(text)
    realtime = live if config.realtime is None else config.realtime
    return SourcePlan(name=text, live=live, realtime=realtime, pace=realtime and (not live or is_hls(text)),
                      audio=config.audio and (live or not realtime), hwaccel=machine.hwaccel(config.hwdec))


@dataclass(frozen=True)
class RunPlan:
    """What a run does, decided before its first frame.

    Args:
        spec: the model.
        geometry: input, network and output sizes (:func:`~streamsr.models.geometry.resolve_geometry`).
        source: how the input is read.
        batch_size: frames per inference call.
        queue_size: bound of every queue between stages.
        max_latency: the most seconds a frame may wait before inference (live mode), else None.
        sink: the encoder's settings (live outputs: fast preset, zero-latency tune, a keyframe a second).
        pix_fmt: the output pixel format.
        out_size: the size written ((width, height); 4:2:0 crops an odd side).
        colour_on: "cpu" (swscale) or "device" (PyTorch on the inference device).
        telling: what a degradation-aware model is told (None for other models).
        estimate_noise: the noise level is estimated from the frames (told per frame).
        tile: run the network tile by tile on tiles of this many LR pixels a side (None: whole frames).
        tile_overlap: LR pixels neighbouring tiles share.
        reuse: how tiles are reused between frames (:mod:`streamsr.pipeline.reuse`), or None.
        memory: what the run is expected to need (:mod:`streamsr.pipeline.memory`).
        notices: what the plan changed to fit, for the user (said once).
    """

    spec: ModelSpec
    geometry: Geometry
    source: SourcePlan
    batch_size: int
    queue_size: int
    max_latency: float | None
    sink: SinkConfig
    pix_fmt: str
    out_size: tuple[int, int]
    colour_on: str
    telling: Telling | None
    estimate_noise: bool
    tile: int | None = None
    tile_overlap: int = 16
    reuse: ReusePolicy | None = None
    memory: MemoryNeed | None = None
    notices: tuple[str, ...] = ()

    @property
    def variant(self) -> ModelVariant:
        """The network the run loads."""
        return self.spec.variant(self.geometry.factor, self.geometry.part)


def resolve_model(config: RunConfig, width: int, height: int) -> RunConfig:
    """``config`` with ``--model auto`` replaced by the model it picks for ``width``×``height``
    frames (:func:`~streamsr.models.registry.pick_model`); any other config as it is."""
    if config.model != AUTO:
        return config
    return dataclasses.replace(config, model=pick_model(config.request, width, height))


def plan_variant(config: RunConfig, info: VideoInfo) -> ModelVariant:
    """The network a run of ``config`` on ``info``'s frames needs (to load it before planning)."""
    config = resolve_model(config, info.width, info.height)
    spec = get_model(config.model)
    geometry = resolve_geometry(spec, config.request, info.width, info.height)
    return spec.variant(geometry.factor, geometry.part)


def known_variant(config: RunConfig) -> ModelVariant | None:
    """The network a run needs when that does not depend on the input's size (a scale, not a
    target size, or a continuous model); None otherwise."""
    if config.model == AUTO:
        return None
    spec = get_model(config.model)
    if not spec.scales:
        return spec.variant(None, config.part)
    if config.size is not None:
        return None
    geometry = resolve_geometry(spec, config.request, 64, 64)
    return spec.variant(geometry.factor, geometry.part)


def _sink_config(sink: SinkConfig, realtime: bool, info: VideoInfo) -> SinkConfig:
    """Live outputs: fast preset, zero-latency tune, one keyframe a second (HLS segments and
    players joining mid-stream need them), fragmented MP4; unless the user chose otherwise."""
    if not realtime:
        return sink
    changes: dict = {"live": True}
    if sink.codec in ("libx264", "libx265"):
        changes.update(preset=sink.preset or "veryfast", tune=sink.tune or "zerolatency")
    if sink.gop is None:
        changes["gop"] = max(1, round(info.frame_rate or 25))
    return dataclasses.replace(sink, **changes)


def _colour_on(config: RunConfig, backend, pix_fmt: str) -> str:
    """Where colour is converted: "auto" picks the device when the backend keeps tensors on a
    CUDA device and the output is 8-bit 4:2:0, unless tiles are to be reused (``--reuse on``,
    which works on host arrays).

    Raises:
        ConfigError: ``--colour-on device`` where it can't be done (says why).
    """
    if config.colour_on == "cpu" or (config.colour_on == "auto" and config.reuse == "on"):
        return "cpu"
    why = []
    capabilities: Capabilities = backend.capabilities
    if not capabilities.device_tensors:
        why.append(f"the {backend.name} backend works on host arrays")
    if pix_fmt not in ("yuv420p", "yuvj420p"):
        why.append(f"the output pixel format {pix_fmt} is not 8-bit 4:2:0")
    if config.colour_on == "device":
        if why:
            raise ConfigError(f"--colour-on device: {'; '.join(why)}; use --colour-on cpu")
        return "device"
    return "device" if not why and capabilities.on_cuda else "cpu"


def _check_paths(src_name: str | None, dst) -> None:
    if not isinstance(dst, (str, os.PathLike)):
        return
    container_format(os.fspath(dst))
    if src_name is not None and "-" not in (src_name, os.fspath(dst)) \
            and os.path.abspath(src_name) == os.path.abspath(dst):
        raise ConfigError(f"output {os.fspath(dst)!r} is the input file; choose another name")


def check_options(config: RunConfig, source: SourcePlan, destination) -> ModelSpec:
    """The checks that need no input stream (made before the input is opened, and again by
    :func:`plan_run`): the model exists and is told what it understands, the encoder exists, the
    output is one streamsr can write and is not the input. Returns the model's spec (None for
    ``--model auto``, which picks one when the input's size is known)."""
    spec = get_model(config.model) if config.model != AUTO else None
    if (spec is None or not spec.conditioned) and (config.noise is not None or config.blur is not None):
        raise ConfigError(f"model {config.model} is not told the degradation; --noise/--blur need a "
                          f"degradation-aware model (udvd)")
    if config.sink.codec is not None:
        check_encoder(config.sink.codec)
    check_crf(_encoder(config, destination), config.sink.crf)
    _check_paths(source.name, destination)
    return spec


def _encoder(config: RunConfig, destination) -> str:
    """The video encoder of a run: the one asked for, else the output container's default."""
    if config.sink.codec is not None:
        return config.sink.codec
    text = os.fspath(destination) if isinstance(destination, (str, os.PathLike)) else "-"
    return default_encoder(container_format(text))


_UNKNOWN = Machine()  # a machine planning knows nothing about (no automatic memory bound)

#: tile sides tried, largest first, when a frame does not fit the memory bound
_TILES = (1024, 768, 512, 384, 256, 192, 128, 96, 64)


def _fit_memory(config: RunConfig, variant: ModelVariant, geometry: Geometry, queue_size: int, backend,
                machine: Machine) -> tuple[int, int | None, MemoryNeed | None, tuple[str, ...]]:
    """The queue bound and tile that keep a run within its memory bound: shorter queues first,
    then tiles, else a one-line refusal. A remote backend's network runs on its server: only the
    queues count here (and tiles would not shrink them). Returns (queue size, tile, need, notices)."""
    on_cuda = backend.capabilities.on_cuda
    remote = backend.capabilities.location == "remote"
    host = parse_bytes(config.max_memory) if config.max_memory is not None else (
        machine.memory // 2 if machine.memory else None)
    device = host if config.max_memory is not None or not on_cuda else (
        machine.cuda_memory // 2 if machine.cuda_memory else None)

    def need(q: int, tile: int | None) -> MemoryNeed:
        n = run_memory(variant, geometry.in_size, geometry.net_size, batch=config.batch_size, queue_size=q,
                       tile=tile, overlap=config.tile_overlap, precision=getattr(backend, "precision", None) or ("fp16" if on_cuda else "fp32"),
                       banded=backend.capabilities.banded)
        return dataclasses.replace(n, network=0.0) if remote else n

    def fits(n: MemoryNeed) -> bool:
        if on_cuda:
            return (host is None or n.queues <= host) and (device is None or n.network <= device)
        return host is None or n.total <= host

    tile = config.tile
    first = need(queue_size, tile)
    if fits(first):
        return queue_size, tile, first, ()
    gib = lambda b: f"{b / 2**30:.1f} GiB" if b >= 2**30 else f"{b / 2**20:.0f} MiB"
    budget = f"{'--max-memory' if config.max_memory is not None else 'half the memory available'}, " \
             f"{gib(host) if host is not None else '?'}"
    notices = []
    size = f"{geometry.in_size[0]}x{geometry.in_size[1]}"
    for q in range(queue_size - 1, 0, -1):
        if fits(need(q, tile)):
            notices.append(f"{size} frames: queues shortened to {q} frame(s) to stay within {budget}")
            return q, tile, need(q, tile), tuple(notices)
    if tile is None and not variant.shrinks and not remote:
        for side in _TILES:
            if side > 2 * config.tile_overlap and side < max(geometry.in_size) and fits(need(1, side)):
                notices.append(f"{size} frames would need about {gib(first.total)} for {variant.name} "
                               f"({budget}): running it on {side}-pixel tiles, one frame queued between stages")
                return 1, side, need(1, side), tuple(notices)
    smallest = need(1, tile or _TILES[-1])
    if remote:  # the frames alone: the network is the server's
        raise ConfigError(f"{size} frames need about {gib(smallest.total)} here with one frame queued between "
                          f"stages ({budget}); raise --max-memory, or use a smaller input")
    raise ConfigError(f"{size} frames need about {gib(smallest.total)} for {variant.name} even tiled "
                      f"({budget}); raise --max-memory, or use a smaller input or a lighter model")


def plan_run(config: RunConfig, info: VideoInfo, destination, source: SourcePlan, backend,
             machine: Machine = _UNKNOWN) -> RunPlan:
    """Decide a run. Pure: reads its arguments only (and FFmpeg's static tables of encoders).

    Args:
        config: the run's settings.
        info: the input's video stream.
        destination: the output path, URL, ``"-"`` or file object.
        source: from :func:`plan_source`.
        backend: the loaded backend (its name and capabilities: where colour can be converted).
        machine: the memory it has (the automatic memory bound; ``Machine()`` knows none).

    Raises:
        StreamSRError subclasses: an option that does not fit the model, the output or the input.
    """
    config = resolve_model(config, info.width, info.height)
    spec = check_options(config, source, destination)
    geometry = resolve_geometry(spec, config.request, info.width, info.height)
    sink = _sink_config(dataclasses.replace(config.sink, codec=_encoder(config, destination)), source.realtime, info)
    pix_fmt = choose_pix_fmt(sink.codec, sink.pix_fmt, info.pix_fmt)
    telling = None
    if spec.conditioned:
        factor = geometry.factor or max(geometry.scale)
        telling = Telling(blur=0.5 * factor if config.blur is None else config.blur, noise=config.noise)
    queue_size = min(config.queue_size, LIVE_QUEUE) if source.realtime else config.queue_size
    variant = spec.variant(geometry.factor, geometry.part)
    queue_size, tile, memory, notices = _fit_memory(config, variant, geometry, queue_size, backend, machine)
    colour_on = _colour_on(config, backend, pix_fmt)
    reuse = plan_reuse(config.reuse, config.reuse_refresh, live=source.realtime, learned=spec.learned,
                       shrinks=variant.shrinks, colour_on=colour_on, halo=spec.halo, overlap=config.tile_overlap)
    return RunPlan(
        spec=spec, geometry=geometry, source=source, batch_size=config.batch_size, queue_size=queue_size,
        max_latency=config.max_latency if source.realtime else None, sink=sink, pix_fmt=pix_fmt,
        out_size=even_size(*geometry.out_size, pix_fmt), colour_on=colour_on,
        telling=telling, estimate_noise=needs_noise(spec.inputs) and config.noise is None,
        tile=tile, tile_overlap=config.tile_overlap, reuse=reuse, memory=memory, notices=notices,
    )
