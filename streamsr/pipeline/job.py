"""One upscaling run: a source (file, pipe or live stream) → stages on threads → a sink."""

from __future__ import annotations

import dataclasses
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import BinaryIO

import numpy as np

from ..config import RunConfig
from ..degradation import Degradation, NoiseTracker, code_map, noise_map
from ..errors import ConfigError, MediaError, StreamLostError
from ..frames import Frame, PassThrough
from ..io.live import LiveSource
from ..io.sink import Sink, SinkConfig, check_encoder, container_format
from ..io.source import Source
from ..models.registry import get_model
from ..urls import is_hls, is_live_input
from .runner import Runner, Stage
from .stages import DeviceInferStage, EncodeStage, InferStage, ToFrameStage, ToPlanesStage, ToTensorStage
from .stats import LatencyStats, RunStats, StageStats

__all__ = ["Progress", "RunHandle", "build_stages", "run_sequential", "upscale_video"]

LIVE_QUEUE = 2

#: progress(handle) — called from the encoder thread after each frame; must be quick.
Progress = Callable[["RunHandle"], None]


class RunHandle:
    """Live view of a run in progress (for progress lines and the /metrics endpoint).

    Attributes:
        name: label (the input, credentials masked).
        frames_out: frames encoded so far.
        total: expected frame count, or None (live, or unknown).
        latency: :class:`LatencyStats`.
        runner: the :class:`Runner` (per-stage stats, drops) once started.
        source: the source (reconnects, decode errors).
    """

    def __init__(self, name: str):
        self.name = name
        self.frames_out = 0
        self.total: int | None = None
        self.latency = LatencyStats()
        self.runner: Runner | None = None
        self.source = None
        self.started = time.monotonic()

    @property
    def dropped(self) -> int:
        """Frames dropped so far (live mode)."""
        return sum(s.dropped for s in self.runner.stats) if self.runner else 0

    @property
    def frames_in(self) -> int:
        """Frames decoded so far."""
        return self.source.frames_decoded if self.source else 0

    @property
    def reconnects(self) -> int:
        """Reconnections of a live source so far."""
        return getattr(self.source, "reconnects", 0)


def build_stages(backend, sink: Sink, config: RunConfig, *, realtime: bool = False,
                 latency: LatencyStats | None = None, noise: NoiseTracker | None = None) -> list[Stage]:
    """The stage chain after decoding: preprocess → infer → postprocess → encode.

    Args:
        noise: the tracker that estimates noise per frame (degradation-aware models, --noise auto).
    """
    max_latency = config.max_latency if realtime else None
    spec = get_model(config.model, config.scale)
    maps = None
    code = Degradation(blur=config.blur_width).code() if len(spec.inputs) > 1 else None
    if device_colour(backend, sink, config):
        def stretch(sigmas, n):  # n×C×1×1, stretched to the frame size on the device
            return {"kernel_code": code_map(code, n, 1, 1), "noise_level": noise_map(np.array(sigmas), n, 1, 1)}

        return [ToPlanesStage(backend.device),
                DeviceInferStage(backend, sink.colour, config.batch_size, maps=stretch if code is not None else None,
                                 max_latency=max_latency, noise=config.noise, tracker=noise),
                ToFrameStage(sink), EncodeStage(sink, latency)]
    if code is not None:
        code_maps: dict[tuple[int, int, int], np.ndarray] = {}  # constant per run: built once per shape

        def maps(frames, h, w):
            sigma = [config.noise if config.noise is not None else f.noise for f in frames]
            shape = (len(frames), h, w)
            if shape not in code_maps:
                code_maps[shape] = code_map(code, *shape)
            return {"kernel_code": code_maps[shape], "noise_level": noise_map(np.array(sigma), *shape)}

    return [ToTensorStage(noise), InferStage(backend, config.batch_size, maps=maps, max_latency=max_latency),
            ToFrameStage(sink), EncodeStage(sink, latency)]


def device_colour(backend, sink: Sink, config: RunConfig) -> bool:
    """Whether a run converts colour on the inference device (``--colour-on``): "auto" does when
    the backend keeps tensors on a CUDA device and the output is 8-bit 4:2:0.

    Raises:
        ConfigError: ``--colour-on device`` where it can't be done.
    """
    if config.colour_on == "cpu":
        return False
    why = []
    if not hasattr(backend, "infer_tensor"):
        why.append("tiling (--tile) works on host arrays" if hasattr(backend, "inner")
                   else f"the {getattr(backend, 'name', type(backend).__name__)} backend works on host arrays")
    if not sink.takes_planes:
        why.append(f"the output pixel format {sink.pix_fmt} is not 8-bit 4:2:0")
    if config.colour_on == "device":
        if why:
            raise ConfigError(f"--colour-on device: {'; '.join(why)}; use --colour-on cpu")
        return True
    device = getattr(backend, "device", None)
    return not why and device is not None and str(device).startswith("cuda")


def run_sequential(source, stages: list[Stage]) -> StageStats:
    """Push every item through ``stages`` on the calling thread (the baseline the threaded
    runner is compared with in benchmarks). Returns stats of the whole loop."""
    total = StageStats("sequential")
    t0 = time.perf_counter()
    for item in source:
        _push(stages, item)
        total.items += 0 if isinstance(item, PassThrough) else 1
    for k, stage in enumerate(stages):
        for held in stage.flush():
            _push(stages[k + 1 :], held)
    total.busy_seconds = time.perf_counter() - t0
    return total


def _push(stages: list[Stage], item) -> None:
    if not stages:
        return
    stage = stages[0]
    passes = isinstance(item, PassThrough) and not stage.handles_passthrough
    for out in (item,) if passes else stage.process(item):
        _push(stages[1:], out)


def _media_time(item) -> float | None:
    """Seconds on the run's clock of a frame or an audio packet (None for a packet without pts)."""
    if isinstance(item, Frame):
        return item.time
    packet = item.payload
    return float(packet.pts * packet.time_base) if packet.pts is not None else None


def _bounded(items: Iterable, max_frames: int | None, duration: float | None,
             pace: bool, stop: threading.Event) -> Iterator:
    """Stop after ``max_frames`` frames or ``duration`` seconds of media time; with ``pace``,
    release frames (and audio packets) no faster than their timestamps, from the first frame on
    (a file played as if it were live; an HLS stream whose segments arrive whole)."""
    frames, first, start = 0, None, 0.0
    for item in items:
        is_frame = isinstance(item, Frame)
        if is_frame:
            if first is None:  # the clock starts with the first frame, not with opening the input
                first, start = item.time, time.monotonic()
            if duration is not None and item.time - first >= duration:
                return
        # audio of a burst (an HLS segment) goes with the pictures of its time, not ahead of them
        t = _media_time(item)
        if pace and first is not None and t is not None:
            wait = (t - first) - (time.monotonic() - start)
            if wait > 0 and stop.wait(wait):
                return
            if is_frame:
                item = dataclasses.replace(item, arrival=time.monotonic())
        yield item
        if isinstance(item, Frame):
            frames += 1
            if max_frames is not None and frames >= max_frames:
                return


def _sink_config(config: RunConfig, realtime: bool, info) -> SinkConfig:
    """Live outputs: fast preset, zero-latency tune, one keyframe a second (HLS segments and
    players joining mid-stream need them), fragmented MP4; unless the user chose otherwise."""
    sink = config.sink
    if not realtime:
        return sink
    changes: dict = {"live": True}
    if sink.codec in ("libx264", "libx265"):
        changes.update(preset=sink.preset or "veryfast", tune=sink.tune or "zerolatency")
    if sink.gop is None:
        changes["gop"] = max(1, round(info.frame_rate or 25))
    return dataclasses.replace(sink, **changes)


_DEFAULT_CONFIG = RunConfig()  # frozen: safe to share


def _check_paths(src, dst) -> None:
    if not isinstance(dst, (str, os.PathLike)):
        return
    container_format(os.fspath(dst))
    if (isinstance(src, (str, os.PathLike)) and "-" not in (os.fspath(src), os.fspath(dst))
            and os.path.abspath(src) == os.path.abspath(dst)):
        raise ConfigError(f"output {os.fspath(dst)!r} is the input file; choose another name")


def upscale_video(
    src: str | os.PathLike | BinaryIO,
    dst: str | os.PathLike | BinaryIO,
    config: RunConfig = _DEFAULT_CONFIG,
    *,
    progress: Progress | None = None,
    stop_after: int | None = None,
    duration: float | None = None,
    backend=None,
    handle: RunHandle | None = None,
    stop_event: threading.Event | None = None,
) -> RunStats:
    """Upscale a video or a live stream.

    Files: every frame once, same timestamps, audio copied, colour kept. Live inputs (rtsp, ...):
    reconnects, timestamps follow capture time, frames too late for ``config.max_latency`` dropped.

    Args:
        src: input path/URL, ``"-"`` for stdin, or a binary file object.
        dst: output path (container from its extension), stream URL, ``dir/index.m3u8``, ``"-"``
            for MPEG-TS on stdout, or a binary file object (MPEG-TS).
        config: the run's settings.
        progress: called with the :class:`RunHandle` after each encoded frame.
        stop_after: stop after this many frames (a bounded run; not an error).
        duration: stop after this many seconds of video (live: of capture time).
        backend: an already-loaded backend to share (several cameras); None loads one.
        handle: a :class:`RunHandle` to fill (for a metrics endpoint); None makes one.
        stop_event: setting it ends the run gracefully, like Ctrl-C.

    Returns:
        :class:`RunStats`. ``interrupted`` is True when Ctrl-C/SIGTERM ended the run early; the
        output then holds every frame processed so far and is playable.

    Raises:
        StreamSRError subclasses for bad input, options, encoders or outputs.
    """
    spec = get_model(config.model, config.scale)
    if len(spec.inputs) == 1 and (config.noise is not None or config.blur is not None):
        raise ConfigError(f"model {spec.name} is not told the degradation; --noise/--blur need a "
                          f"degradation-aware model (udvd)")
    check_encoder(config.sink.codec)
    _check_paths(src, dst)
    text = os.fspath(src) if isinstance(src, (str, os.PathLike)) else None
    live_input = bool(text) and is_live_input(text)
    realtime = live_input if config.realtime is None else config.realtime
    stop = stop_event or threading.Event()
    named_by_caller = handle is not None
    handle = handle or RunHandle(text or "<stream>")
    if live_input:
        source = LiveSource(text, config.live, stop=stop, decode_threads=config.decode_threads,
                            hwaccel=config.hwaccel(), audio=config.audio)
    else:
        source = Source(src, decode_threads=config.decode_threads, audio=config.audio and not realtime,
                        hwaccel=config.hwaccel())
    handle.source = source
    with source:
        info = source.info
        handle.total = info.frame_count
        if not named_by_caller:
            handle.name = source.name
        sink_config = _sink_config(config, realtime, info)
        own_backend = backend is None
        if own_backend:
            backend = config.load_backend()
        try:
            sink = Sink(dst, info, info.width * config.scale, info.height * config.scale,
                        sink_config, source.audio_streams)
            with sink:
                def on_item(_item) -> None:
                    handle.frames_out += 1
                    if progress is not None:
                        progress(handle)

                # pace what does not arrive at its own rate: a file read in real time, and HLS,
                # whose segments come whole (else the drop-oldest queues would discard most of each)
                pace = realtime and (not live_input or is_hls(text))
                items = _bounded(source, stop_after, duration, pace=pace, stop=stop)
                needs_noise = len(spec.inputs) > 1 and config.noise is None
                tracker = NoiseTracker() if needs_noise else None
                stages = build_stages(backend, sink, config, realtime=realtime, latency=handle.latency,
                                      noise=tracker)
                # live: short queues, so a slow stage makes the oldest frames drop instead of wait
                queue_size = min(config.queue_size, LIVE_QUEUE) if realtime else config.queue_size
                runner = Runner(items, stages, queue_size=queue_size,
                                on_item=on_item, live=realtime, stop_event=stop)
                handle.runner = runner
                interrupted = False
                try:
                    runner.run()
                except KeyboardInterrupt:
                    interrupted = True
        finally:
            if own_backend:
                backend.close()
    stats = RunStats(
        frames_in=source.frames_decoded, frames_out=sink.frames_written,
        wall_seconds=runner.wall_seconds, stages=runner.stats, decode_errors=source.decode_errors,
        corrupt_frames=source.corrupt_frames, interrupted=interrupted,
        notices=list(source.notices) + list(sink.notices),
        realtime=realtime, reconnects=handle.reconnects, latency=handle.latency.summary(),
        extra={"model": spec.name, "scale": config.scale, "backend": getattr(backend, "name", "?"),
               "input": {"name": source.name, "width": info.width, "height": info.height,
                         "codec": info.codec, "pix_fmt": info.pix_fmt},
               "output": {"width": sink.width, "height": sink.height, "codec": sink.config.codec,
                          "pix_fmt": sink.pix_fmt},
               "audio": sink.audio_outputs,
               "colour_on": "device" if any(isinstance(s, DeviceInferStage) for s in stages) else "cpu"},
    )
    if source.decode_errors or source.corrupt_frames:
        stats.notices.append(
            f"input is damaged: {source.decode_errors} decode error(s), {source.corrupt_frames} frame(s) "
            f"flagged corrupt; decoding went on (last FFmpeg error: {source.last_decode_error})"
        )
    if len(spec.inputs) > 1:
        stats.extra["degradation"] = {"blur": config.blur_width, "noise": config.noise,
                                      "noise_estimated": round(tracker.value, 2) if tracker and tracker.value else None}
    if live_input and source.reconnects:
        stats.notices.append(f"the stream dropped and came back {source.reconnects} time(s)")
    if sink.frames_written == 0 and not interrupted:
        raise MediaError(source.ended_early or f"no video frame could be decoded from {source.name}")
    if source.ended_early:
        if not live_input:  # a file whose tail is damaged: a notice, the run succeeded
            stats.notices.append(f"the input broke off after {source.frames_decoded} frames; "
                                 f"they were all written ({source.ended_early})")
        else:  # a live stream lost for good: the recording is finalized and kept, the run failed
            error = StreamLostError(f"{source.ended_early}; the output holds the "
                                    f"{sink.frames_written} frames recorded before")
            error.stats = stats
            raise error
    return stats
