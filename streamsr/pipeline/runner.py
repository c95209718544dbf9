"""Threads joined by bounded queues.

Every stage runs on its own thread and reads a bounded queue; the first stage pulls from an
iterable instead. A unique sentinel ends the stream; each stage's ``flush()`` runs before the
sentinel moves on. The first exception in any stage is relayed and re-raised by :meth:`Runner.run`
in the caller; it also aborts every other stage. :meth:`Runner.stop` ends the source gracefully
(what was read is still processed and written), :meth:`Runner.abort` ends everything at once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from ..frames import Frame, PassThrough
from .stats import StageStats

__all__ = ["END", "Aborted", "DropOldestQueue", "FnStage", "Runner", "Stage"]

log = logging.getLogger("streamsr")


class Aborted(Exception):
    """Raised by long work inside a stage (a frame's tiles) once :meth:`Runner.abort` was called,
    so that a second Ctrl-C acts at once rather than after the frame."""


class _End:
    def __repr__(self) -> str:
        return "<END>"


END = _End()
_POLL = 0.05  # seconds between checks of the abort flag while blocked on a queue


class DropOldestQueue(queue.Queue):
    """A bounded queue whose :meth:`put_or_drop` makes room by discarding the oldest *frame*
    (never a pass-through packet or the end marker): live mode's policy, so waiting frames
    never pile up behind a slow stage. Its bound counts frames only: pass-through packets
    (audio, tiny, never processed on the way) join without pushing a frame out."""

    def put_or_drop(self, item: Any) -> Any | None:
        """Put without blocking; return the frame dropped to make room, or None.

        Raises:
            queue.Full: the queue is full of items that must not be dropped.
        """
        with self.not_full:
            dropped = None
            counted = sum(not isinstance(old, PassThrough) for old in self.queue)
            if not isinstance(item, PassThrough) and counted >= self.maxsize > 0:
                for i, old in enumerate(self.queue):
                    if isinstance(old, Frame):
                        dropped = old
                        del self.queue[i]
                        break
                else:
                    raise queue.Full
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()
            return dropped


class Stage:
    """One step of the pipeline. Subclasses override :meth:`process` and maybe :meth:`flush`.

    Args:
        name: label in stats and errors.

    Attributes:
        stats: this stage's :class:`StageStats`, given by the Runner (a stage may count drops).
    """

    #: True when :meth:`process` wants PassThrough items (the sink); others forward them untouched.
    handles_passthrough = False

    def __init__(self, name: str):
        self.name = name
        self.stats = StageStats(name)

    def process(self, item: Any) -> Iterable[Any]:
        """Handle one item; return (or yield) zero or more items for the next stage."""
        raise NotImplementedError

    def flush(self) -> Iterable[Any]:
        """End of stream: return items still held back (a partial batch, say)."""
        return ()


class FnStage(Stage):
    """A stage that maps each item through ``fn`` (one in, one out).

    Args:
        name: label.
        fn: the function applied to each item.
    """

    def __init__(self, name: str, fn: Callable[[Any], Any]):
        super().__init__(name)
        self.fn = fn

    def process(self, item: Any) -> Iterable[Any]:
        return (self.fn(item),)


class Runner:
    """Run a source iterable through stages, each on its own thread.

    Args:
        source: iterable of items (frames, pass-through packets); read on its own thread.
        stages: the stages, in order. The last one's outputs are discarded (it is the sink).
        queue_size: bound of every queue between threads.
        on_item: called on the last stage's thread after each frame it consumed (progress);
            must be quick.
        live: drop the oldest waiting frame instead of blocking when a queue is full (counted in
            each receiving stage's ``dropped``); file mode (False) never drops.
        stop_event: the event :meth:`stop` sets (share it with a source that waits on it).

    Attributes:
        stats: one :class:`StageStats` per thread, source first.
    """

    def __init__(
        self,
        source: Iterable[Any],
        stages: list[Stage],
        *,
        queue_size: int = 8,
        on_item: Callable[[Any], None] | None = None,
        live: bool = False,
        stop_event: threading.Event | None = None,
    ):
        if queue_size < 1:
            raise ValueError(f"queue_size must be at least 1, got {queue_size}")
        self.source = source
        self.stages = stages
        self.queue_size = queue_size
        self.on_item = on_item
        self.live = live
        self._stop = stop_event or threading.Event()
        self._abort = threading.Event()
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self.stats = [StageStats("decode")] + [s.stats for s in stages]
        self.wall_seconds = 0.0

    # -- control -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop reading the source; items already read still flow to the end."""
        self._stop.set()

    def abort(self) -> None:
        """Stop every stage as soon as possible (items in flight are dropped)."""
        self._stop.set()
        self._abort.set()

    @property
    def aborted(self) -> bool:
        """True once :meth:`abort` was called (stages may check it inside long work)."""
        return self._abort.is_set()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` or :meth:`abort` was called or a stage failed."""
        return self._stop.is_set()

    def _fail(self, exc: BaseException) -> None:
        if isinstance(exc, Aborted) and self._abort.is_set():
            return  # the abort is the reason, not an error
        with self._lock:
            self._errors.append(exc)
        self.abort()

    # -- queues ------------------------------------------------------------------------------
    def _put(self, q: queue.Queue, item: Any, stats: StageStats | None = None) -> bool:
        if self.live and item is not END and isinstance(q, DropOldestQueue):
            try:
                if q.put_or_drop(item) is not None and stats is not None:
                    stats.add_drop()
                return True
            except queue.Full:
                pass  # only undroppable items waiting: block like file mode
        while not self._abort.is_set():
            try:
                q.put(item, timeout=_POLL)
                return True
            except queue.Full:
                continue
        return False

    def _get(self, q: queue.Queue) -> Any:
        while not self._abort.is_set():
            try:
                return q.get(timeout=_POLL)
            except queue.Empty:
                continue
        return END

    # -- threads -----------------------------------------------------------------------------
    def _run_source(self, out: queue.Queue, stats: StageStats, receiver: StageStats) -> None:
        try:
            iterator: Iterator[Any] = iter(self.source)
            while not self._stop.is_set():
                t0 = time.perf_counter()
                try:
                    item = next(iterator)
                except StopIteration:
                    break
                stats.add(time.perf_counter() - t0, 0 if isinstance(item, PassThrough) else 1)
                if not self._put(out, item, receiver):
                    return
        except BaseException as exc:  # noqa: BLE001 -- relayed to the caller by run()
            self._fail(exc)
        finally:
            self._put(out, END)

    def _run_stage(self, stage: Stage, inq: queue.Queue, out: queue.Queue | None, stats: StageStats,
                   receiver: StageStats | None) -> None:
        last = out is None
        try:
            while True:
                item = self._get(inq)
                if item is END:
                    break
                if isinstance(item, PassThrough) and not stage.handles_passthrough:
                    results: Iterable[Any] = (item,)
                    counted = 0
                else:
                    t0 = time.perf_counter()
                    results = list(stage.process(item))
                    counted = 0 if isinstance(item, PassThrough) else 1
                    stats.add(time.perf_counter() - t0, counted)
                if last:
                    if self.on_item is not None and counted:
                        self.on_item(item)
                    continue
                for r in results:
                    if not self._put(out, r, receiver):
                        return
            if self._abort.is_set():
                return
            t0 = time.perf_counter()
            held = list(stage.flush())
            stats.add(time.perf_counter() - t0, 0)
            if not last:
                for r in held:
                    if not self._put(out, r, receiver):
                        return
        except BaseException as exc:  # noqa: BLE001 -- relayed to the caller by run()
            self._fail(exc)
        finally:
            if out is not None:
                self._put(out, END)

    def run(self) -> None:
        """Run to the end of the source (or a stop), then re-raise the first stage error, if any.

        A KeyboardInterrupt in the caller stops the source gracefully and waits for the stages
        to drain; a second one aborts.
        """
        queues = [DropOldestQueue(self.queue_size) for _ in self.stages]
        threads = [threading.Thread(target=self._run_source, args=(queues[0], self.stats[0], self.stats[1]),
                                    name="streamsr-decode", daemon=True)]
        for i, stage in enumerate(self.stages):
            last = i + 1 == len(self.stages)
            out = None if last else queues[i + 1]
            receiver = None if last else self.stats[i + 2]
            threads.append(threading.Thread(
                target=self._run_stage, args=(stage, queues[i], out, self.stats[i + 1], receiver),
                name=f"streamsr-{stage.name}", daemon=True))
        self._threads = threads
        start = time.perf_counter()
        for t in threads:
            t.start()
        interrupted = 0
        try:
            for t in threads:
                while t.is_alive():
                    try:
                        t.join(timeout=0.1)
                    except KeyboardInterrupt:
                        interrupted += 1
                        if interrupted == 1:
                            log.warning("stopping: the frames already read are finished and written "
                                        "(Ctrl-C again to stop at once)")
                        (self.stop if interrupted == 1 else self.abort)()
        finally:
            for t in threads:
                t.join()
            self.wall_seconds = time.perf_counter() - start
        if self._errors:
            raise self._errors[0]
        if interrupted:
            raise KeyboardInterrupt

    def alive_threads(self) -> list[threading.Thread]:
        """Threads of this runner still running (empty after :meth:`run` returns)."""
        return [t for t in self._threads if t.is_alive()]
