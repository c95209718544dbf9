"""One upscaling run: a source (file, pipe or live stream) → stages on threads → a sink.

:func:`upscale_video` opens the input, plans the run (:mod:`streamsr.pipeline.plan`), loads the
network, builds the stages the plan describes and runs them. A :class:`RunHandle` watches a
run from outside: :meth:`RunHandle.snapshot` gives a frozen :class:`JobSnapshot` (what the
progress line, /metrics and the cameras runner read) and :meth:`RunHandle.stop` ends it
gracefully, so the same run works in a thread, a process or a Ray actor.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from ..backends.choice import load_backend
from ..backends.tiling import TiledBackend
from ..config import RunConfig
from ..degradation import NoiseTracker
from ..errors import ConfigError, MediaError, StreamLostError
from ..frames import Frame, PassThrough
from ..io.live import LiveSource
from ..io.sink import Sink
from ..io.source import Source
from ..machine import Machine
from ..models.inputs import InputAssembler
from ..models.registry import ModelVariant
from .plan import RunPlan, SourcePlan, check_options, plan_run, plan_source, plan_variant
from .reuse import ReuseCounters, TileReuse
from .runner import Runner, Stage
from .stages import EncodeStage, InferStage, Telling, ToFrameStage, ToTensorStage
from .stats import LatencyStats, RunStats, StageStats, too_slow_notice

__all__ = ["JobSnapshot", "Progress", "RunHandle", "build_stages", "run_sequential", "upscale_video"]

log = logging.getLogger("streamsr")

#: progress(handle) — called from the encoder thread after each frame; must be quick.
Progress = Callable[["RunHandle"], None]


@dataclass(frozen=True)
class JobSnapshot:
    """A running (or ended) job at one moment.

    Args:
        name: label (the input, credentials masked).
        state: "starting", "connecting" (a live input not reached yet), "running",
            "reconnecting", "stopping", "done" or "failed".
        frames_in, frames_out, dropped, reconnects: counts so far.
        connect_failures: failed connection attempts of a live input so far.
        total: expected frame count, or None (live, or unknown).
        elapsed: seconds since the job started.
        latency: capture-to-encode latency summary (see :class:`LatencyStats`).
        error: why it failed (state "failed").
        remote: the stats of the remote inference the job uses (``RemoteStats.summary``), if any.
        reuse: what tile reuse did (``ReuseCounters.summary``), or None when the run does not reuse.
    """

    name: str
    state: str
    frames_in: int
    frames_out: int
    dropped: int
    reconnects: int
    connect_failures: int
    total: int | None
    elapsed: float
    latency: dict
    error: str | None = None
    remote: tuple[dict, ...] = ()
    reuse: dict | None = None

    @property
    def fps(self) -> float:
        """Frames written per second so far."""
        return self.frames_out / self.elapsed if self.elapsed > 0 else 0.0


class RunHandle:
    """Watches and controls one run from another thread.

    Args:
        name: label in progress lines and metrics (credentials masked).

    Attributes:
        frames_out: frames encoded so far (updated by the run's encoder thread).
        total: the input's frame count when known.
        latency: the run's :class:`LatencyStats`.
        last_input: the latest decoded :class:`Frame` (its ``av.VideoFrame``), or None.
        last_output: the latest :class:`Frame` given to the encoder (its ``av.VideoFrame`` in the
            output's size, format and colour tags; ``noise``: the σ a degradation-aware model was
            told), or None. Both are replaced by the run's threads, never changed in place: a
            reader on another thread (the live dashboard) takes a reference and converts it itself.
    """

    def __init__(self, name: str):
        self.name = name
        self.frames_out = 0
        self.total: int | None = None
        self.latency = LatencyStats()
        self.started = time.monotonic()
        self.state = "starting"
        self.error: str | None = None
        self.last_input: Frame | None = None
        self.last_output: Frame | None = None
        self._runner: Runner | None = None
        self._source = None
        self._stop = threading.Event()
        self.remote_stats = None  # the RemoteStats of the backend the run infers on (set by the run)
        self.reuse: ReuseCounters | None = None  # what tile reuse did (set by a run that reuses tiles)

    def stop(self) -> None:
        """End the run gracefully: stop reading, drain what was read, finalize the output."""
        self.state = "stopping"
        self._stop.set()

    def snapshot(self) -> JobSnapshot:
        """The run's counts and state now."""
        source, runner = self._source, self._runner
        state = self.state
        live = getattr(source, "state", None)  # a live input's own: connecting, running, reconnecting
        if (state == "running" and live) or (state == "starting" and live == "connecting"):
            state = live
        return JobSnapshot(
            name=self.name, state=state, frames_in=runner.stats[0].items if runner is not None else 0,
            frames_out=self.frames_out, dropped=sum(s.dropped for s in runner.stats) if runner else 0,
            reconnects=getattr(source, "reconnects", 0), connect_failures=getattr(source, "connect_failures", 0),
            total=self.total,
            elapsed=time.monotonic() - self.started, latency=self.latency.summary(), error=self.error,
            remote=(self.remote_stats.summary(),) if self.remote_stats is not None else (),
            reuse=self.reuse.summary() if self.reuse is not None else None)


def build_stages(plan: RunPlan, backend, sink: Sink, *, latency: LatencyStats | None = None,
                 tracker: NoiseTracker | None = None, reuse: ReuseCounters | None = None) -> list[Stage]:
    """The stage chain after decoding that ``plan`` describes: preprocess → infer →
    postprocess → encode, on the CPU colour chain or the device one.

    Args:
        tracker: the tracker that smooths per-frame noise estimates (when the plan estimates noise).
        reuse: where tile reuse counts what it does (when the plan reuses tiles).
    """
    inputs = InputAssembler(plan.variant.inputs)
    telling = plan.telling or Telling(blur=0.0, noise=0.0)  # what providers of other inputs are told: nothing
    g = plan.geometry

    def out_of(h: int, w: int) -> tuple[int, int]:
        """The network's output (height, width) for an h×w frame (a live stream may change size)."""
        if (w, h) == g.in_size:
            return g.net_size[1], g.net_size[0]
        if g.factor is not None:
            return h * g.factor, w * g.factor
        sx, sy = g.scale
        return max(1, round(h * sy)), max(1, round(w * sx))

    if plan.colour_on == "device":
        from .device_stages import DeviceInferStage, ToPlanesStage

        infer: Stage = DeviceInferStage(
            backend, sink.colour, plan.batch_size, inputs=inputs, telling=telling, max_latency=plan.max_latency,
            tracker=tracker, out_size=(sink.width, sink.height), out_of=out_of)
        first: Stage = ToPlanesStage(backend.capabilities.device)
    else:
        infer = InferStage(backend, plan.batch_size, inputs=inputs, telling=telling, max_latency=plan.max_latency,
                           out_of=out_of, reuse=TileReuse(backend, plan.reuse, reuse) if plan.reuse else None)
        first = ToTensorStage(tracker)
    return [first, infer, ToFrameStage(sink), EncodeStage(sink, latency)]


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


def _noted(items: Iterator, handle: RunHandle) -> Iterator:
    """``items``, keeping the latest frame on ``handle.last_input`` (for the live dashboard)."""
    for item in items:
        if isinstance(item, Frame):
            handle.last_input = item
        yield item


def _open_source(plan: SourcePlan, src, config: RunConfig, stop: threading.Event):
    if plan.live:
        return LiveSource(plan.name, config.live, stop=stop, decode_threads=config.decode_threads,
                          hwaccel=plan.hwaccel, audio=plan.audio)
    return Source(src, decode_threads=config.decode_threads, audio=plan.audio, hwaccel=plan.hwaccel)


_DEFAULT_CONFIG = RunConfig()  # frozen: safe to share


def upscale_video(
    src: str | os.PathLike | BinaryIO,
    dst: str | os.PathLike | BinaryIO,
    config: RunConfig = _DEFAULT_CONFIG,
    *,
    progress: Progress | None = None,
    stop_after: int | None = None,
    duration: float | None = None,
    backend=None,
    backends: Callable[[ModelVariant], object] | None = None,
    handle: RunHandle | None = None,
    stop_event: threading.Event | None = None,
    machine: Machine | None = None,
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
        backend: an already-loaded backend of the run's network (kept open).
        backends: ``backends(variant) -> backend`` for the network the run needs (several cameras
            sharing a hub); None loads it on ``config.backend`` and closes it at the end.
        handle: a :class:`RunHandle` to fill (for a metrics endpoint); None makes one.
        stop_event: setting it ends the run gracefully, like Ctrl-C (as does ``handle.stop()``).
        machine: what this machine has (tests plan other machines); None probes it.

    Returns:
        :class:`RunStats`. ``interrupted`` is True when Ctrl-C/SIGTERM ended the run early; the
        output then holds every frame processed so far and is playable.

    Raises:
        StreamSRError subclasses for bad input, options, encoders or outputs.
    """
    if stop_after is not None and stop_after < 1:
        raise ConfigError(f"--max-frames wants at least 1 frame, got {stop_after}")
    if duration is not None and not duration > 0:
        raise ConfigError(f"--duration wants more than 0 seconds, got {duration:g}")
    machine = machine or Machine.probe()
    source_plan = plan_source(config, src, machine)
    check_options(config, source_plan, dst)  # before anything is opened
    named_by_caller = handle is not None
    handle = handle or RunHandle(source_plan.name or "<stream>")
    stop = stop_event or handle._stop
    if stop is not handle._stop:  # handle.stop() and the caller's event both end the run
        handle._stop = stop
    source = _open_source(source_plan, src, config, stop)
    handle._source = source
    expired = threading.Event()
    timer = None
    if source_plan.live and duration is not None:  # live: a wall-clock bound, connecting included
        def expire() -> None:
            expired.set()
            stop.set()

        timer = threading.Timer(duration, expire)
        timer.daemon = True
        timer.start()
    try:
        try:
            source.__enter__()
        except MediaError as exc:
            if expired.is_set():
                raise MediaError(f"{source.name}: no stream within --duration {duration:g} s "
                                 f"(last error: {source.last_error})") from exc
            raise
        try:
            handle.total = source.info.frame_count
            if not named_by_caller:
                handle.name = source.name
            stats = _run(config, source_plan, source, dst, backend, backends, handle, stop, progress,
                         stop_after, None if timer else duration, machine)
        finally:
            source.__exit__(None, None, None)
    except BaseException as exc:
        handle.state, handle.error = "failed", str(exc)
        raise
    finally:
        if timer is not None:
            timer.cancel()
    handle.state = "done"
    return stats


class _SpeedWatch:
    """Says once, after a few frames of a live run, that its network cannot keep up."""

    FRAMES = 4  # the first call warms up (allocations, autotuning): judged on those after it

    def __init__(self, plan: RunPlan, backend, info):
        self.what = f"{plan.variant.name} on {backend.name} ({backend.capabilities.device or 'cpu'})"
        self.input_fps = float(info.frame_rate) if info.frame_rate else None
        self.done = False

    def check(self, runner) -> None:
        infer = next((s for s in runner.stats if s.name == "infer"), None) if runner is not None else None
        if self.done or infer is None or infer.items < self.FRAMES:
            return
        self.done = True
        notice = too_slow_notice(infer.fps, self.input_fps, self.what)
        if notice:
            log.warning("%s", notice)


def _run(config, source_plan, source, dst, backend, backends, handle, stop, progress, stop_after, duration, machine):
    variant = plan_variant(config, source.info)
    own = backend is None
    if own:
        backend = (backends or (lambda v: load_backend(config, v)))(variant)
    try:
        if backend.variant != variant:
            raise ConfigError(f"the loaded network is {backend.variant.name}, this run needs {variant.name}")
        handle.remote_stats = backend.remote_stats
        plan = plan_run(config, source.info, dst, source_plan, backend, machine)
        for notice in plan.notices:
            log.warning("%s", notice)
        runner = None
        if plan.tile and not isinstance(backend, TiledBackend):  # a second Ctrl-C acts within one tile
            backend = TiledBackend(backend, plan.tile, plan.tile_overlap, cancelled=lambda: runner.aborted)
        sink = Sink(dst, source.info, *plan.geometry.out_size, plan.sink, source.audio_streams)
        with sink:
            watch = _SpeedWatch(plan, backend, source.info) if plan.source.realtime else None

            def on_item(item) -> None:
                handle.last_output = item
                handle.frames_out += 1
                if watch is not None:
                    watch.check(runner)
                if progress is not None:
                    progress(handle)

            tracker = NoiseTracker() if plan.estimate_noise else None
            handle.reuse = ReuseCounters() if plan.reuse else None
            stages = build_stages(plan, backend, sink, latency=handle.latency, tracker=tracker, reuse=handle.reuse)
            items = _noted(_bounded(source, stop_after, duration, pace=source_plan.pace, stop=stop), handle)
            runner = Runner(items, stages, queue_size=plan.queue_size, on_item=on_item, live=source_plan.realtime,
                            stop_event=stop)
            handle._runner = runner
            if handle.state == "starting":
                handle.state = "running"
            interrupted = False
            try:
                runner.run()
            except KeyboardInterrupt:
                interrupted = True
    finally:
        if own:
            backend.close()
    stopped = handle.state == "stopping"  # handle.stop(): like Ctrl-C, the output keeps what was read
    return _stats(plan, source, sink, runner, backend, handle, tracker, interrupted or stopped)


def _stats(plan: RunPlan, source, sink: Sink, runner: Runner, backend, handle: RunHandle, tracker,
           interrupted: bool) -> RunStats:
    info, live = source.info, plan.source.live
    stats = RunStats(  # frames in = those that entered the pipeline (not one decoded past --duration)
        frames_in=runner.stats[0].items, frames_out=sink.frames_written,
        wall_seconds=runner.wall_seconds, stages=runner.stats, decode_errors=source.decode_errors,
        corrupt_frames=source.corrupt_frames, interrupted=interrupted,
        notices=list(source.notices) + list(sink.notices),
        realtime=plan.source.realtime, reconnects=getattr(source, "reconnects", 0), latency=handle.latency.summary(),
        remote=[backend.remote_stats.summary(fresh=True)] if backend.remote_stats is not None else [],
        extra={"model": plan.spec.name, "scale": plan.geometry.factor or round(max(plan.geometry.scale), 4),
               "geometry": plan.geometry.label, "backend": backend.name,
               "precision": backend.precision,
               "input": {"name": source.name, "width": info.width, "height": info.height,
                         "codec": info.codec, "pix_fmt": info.pix_fmt},
               "output": {"width": sink.width, "height": sink.height, "codec": sink.config.codec,
                          "pix_fmt": sink.pix_fmt},
               "audio": sink.audio_outputs, "colour_on": plan.colour_on,
               **({"connect_failures": source.connect_failures} if live else {})},
    )
    if source.decode_errors or source.corrupt_frames:
        stats.notices.append(
            f"input is damaged: {source.decode_errors} decode error(s), {source.corrupt_frames} frame(s) "
            f"flagged corrupt; decoding went on (last FFmpeg error: {source.last_decode_error})"
        )
    if plan.telling is not None:
        stats.extra["degradation"] = {"blur": plan.telling.blur, "noise": plan.telling.noise,
                                      "noise_estimated": round(tracker.value, 2) if tracker and tracker.value else None}
    if handle.reuse is not None:
        stats.extra["reuse"] = handle.reuse.summary()
        if handle.reuse.decision:
            stats.notices.append(handle.reuse.decision)
    if live and source.reconnects:
        stats.notices.append(f"the stream dropped and came back {source.reconnects} time(s)")
    if sink.frames_written == 0 and not interrupted:
        raise MediaError(source.ended_early or f"no video frame could be decoded from {source.name}")
    if source.ended_early:
        if not live:  # a file whose tail is damaged: a notice, the run succeeded
            stats.notices.append(f"the input broke off after {source.frames_decoded} frames; "
                                 f"they were all written ({source.ended_early})")
        else:  # a live stream lost for good: the recording is finalized and kept, the run failed
            error = StreamLostError(f"{source.ended_early}; the output holds the "
                                    f"{sink.frames_written} frames recorded before")
            error.stats = stats
            raise error
    return stats
