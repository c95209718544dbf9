"""One file-to-file (or pipe-to-pipe) upscaling run: Source → stages on threads → Sink."""

from __future__ import annotations

import os
import time
from typing import BinaryIO, Callable

from ..backends import create_backend
from ..config import RunConfig
from ..errors import ConfigError, MediaError
from ..frames import PassThrough
from ..io.sink import Sink, check_encoder, container_format
from ..io.source import Source
from ..models.registry import get_model
from .runner import Runner, Stage
from .stages import EncodeStage, InferStage, ToFrameStage, ToTensorStage
from .stats import RunStats, StageStats

__all__ = ["upscale_video", "build_stages", "run_sequential", "Progress"]

#: progress(frames_done, frames_total_or_None) — called from the encoder thread.
Progress = Callable[[int, "int | None"], None]


def build_stages(backend, sink: Sink, config: RunConfig) -> list[Stage]:
    """The stage chain after decoding: preprocess → infer → postprocess → encode."""
    return [ToTensorStage(), InferStage(backend, config.batch_size), ToFrameStage(sink), EncodeStage(sink)]


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


def upscale_video(
    src: str | os.PathLike | BinaryIO,
    dst: str | os.PathLike | BinaryIO,
    config: RunConfig = RunConfig(),
    *,
    progress: Progress | None = None,
    stop_after: int | None = None,
) -> RunStats:
    """Upscale a whole video: every frame once, same timestamps, audio copied, colour kept.

    Args:
        src: input path/URL, ``"-"`` for stdin, or a binary file object.
        dst: output path (container from its extension), ``"-"`` for MPEG-TS on stdout, or a
            binary file object (MPEG-TS).
        config: the run's settings.
        progress: called after each encoded frame with (done, total or None).
        stop_after: stop reading after this many frames (a bounded run; not an error).

    Returns:
        :class:`RunStats`. ``interrupted`` is True when Ctrl-C/SIGTERM ended the run early; the
        output then holds every frame processed so far and is playable.

    Raises:
        StreamSRError subclasses for bad input, options, encoders or outputs.
    """
    spec = get_model(config.model, config.scale)
    check_encoder(config.sink.codec)
    if isinstance(dst, (str, os.PathLike)):
        container_format(os.fspath(dst))
        if isinstance(src, (str, os.PathLike)) and os.fspath(src) not in ("-",) and os.fspath(dst) != "-":
            if os.path.abspath(src) == os.path.abspath(dst):
                raise ConfigError(f"output {os.fspath(dst)!r} is the input file; choose another name")
    with Source(src, decode_threads=config.decode_threads, audio=config.audio) as source:
        info = source.info
        backend = create_backend(config.backend, spec, config.scale, device=config.device,
                                 precision=config.precision, weights=config.weights)
        try:
            sink = Sink(dst, info, info.width * config.scale, info.height * config.scale,
                        config.sink, source.audio_streams)
            with sink:
                done = [0]

                def on_item(_item) -> None:
                    done[0] += 1
                    if progress is not None:
                        progress(done[0], info.frame_count)

                items = _limited(source, stop_after)
                runner = Runner(items, build_stages(backend, sink, config),
                                queue_size=config.queue_size, on_item=on_item)
                interrupted = False
                try:
                    runner.run()
                except KeyboardInterrupt:
                    interrupted = True
        finally:
            backend.close()
    stats = RunStats(
        frames_in=source.frames_decoded, frames_out=sink.frames_written,
        wall_seconds=runner.wall_seconds, stages=runner.stats, decode_errors=source.decode_errors,
        corrupt_frames=source.corrupt_frames,
        interrupted=interrupted, notices=list(sink.notices),
        extra={"model": spec.name, "scale": config.scale, "backend": getattr(backend, "name", "?"),
               "input": {"width": info.width, "height": info.height, "codec": info.codec,
                         "pix_fmt": info.pix_fmt},
               "output": {"width": sink.width, "height": sink.height, "codec": config.sink.codec,
                          "pix_fmt": sink.pix_fmt}},
    )
    if source.decode_errors or source.corrupt_frames:
        stats.notices.append(
            f"input is damaged: {source.decode_errors} decode error(s), {source.corrupt_frames} frame(s) "
            f"flagged corrupt; decoding went on (last FFmpeg error: {source.last_decode_error})"
        )
    if sink.frames_written == 0 and not interrupted:
        raise MediaError(f"no video frame could be decoded from {source.name}")
    return stats


def _limited(source, limit: int | None):
    if limit is None:
        yield from source
        return
    frames = 0
    for item in source:
        yield item
        if not isinstance(item, PassThrough):
            frames += 1
            if frames >= limit:
                return
