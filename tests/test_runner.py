import threading
import time

import pytest

from streamsr.frames import PassThrough
from streamsr.pipeline import FnStage, Runner, Stage


def endless():
    i = 0
    while True:
        yield i
        i += 1


class Collect(Stage):
    handles_passthrough = True

    def __init__(self):
        super().__init__("collect")
        self.items = []

    def process(self, item):
        self.items.append(item)
        return ()


class Batch(Stage):
    def __init__(self, n):
        super().__init__("batch")
        self.n, self.held = n, []

    def process(self, item):
        self.held.append(item)
        if len(self.held) == self.n:
            out, self.held = [tuple(self.held)], []
            return out
        return []

    def flush(self):
        return [tuple(self.held)] if self.held else []


def test_order_flush_and_passthrough():
    sink = Collect()
    items = list(range(10)) + [PassThrough("audio", 1)]
    Runner(items, [FnStage("double", lambda x: x * 2), Batch(3), sink], queue_size=2).run()
    frames = [i for i in sink.items if not isinstance(i, PassThrough)]
    assert frames == [(0, 2, 4), (6, 8, 10), (12, 14, 16), (18,)]
    assert [i.payload for i in sink.items if isinstance(i, PassThrough)] == ["audio"]


def test_exception_in_a_stage_reaches_the_caller_and_stops_everything():
    def boom(x):
        if x == 5:
            raise ZeroDivisionError("stage failed on 5")
        return x

    runner = Runner(endless(), [FnStage("ok", lambda x: x), FnStage("boom", boom), Collect()], queue_size=2)
    with pytest.raises(ZeroDivisionError, match="stage failed on 5"):
        runner.run()
    assert runner.alive_threads() == []


def test_exception_in_the_source_reaches_the_caller():
    def bad_source():
        yield 1
        raise OSError("disk gone")

    runner = Runner(bad_source(), [Collect()])
    with pytest.raises(OSError, match="disk gone"):
        runner.run()
    assert runner.alive_threads() == []


def test_stop_drains_what_was_read():
    sink = Collect()

    def slow(x):
        time.sleep(0.002)
        return x

    runner = Runner(endless(), [FnStage("slow", slow), sink], queue_size=3,
                    on_item=lambda item: runner.stop() if item == 20 else None)
    runner.run()
    got = sink.items
    assert got == list(range(len(got)))  # nothing lost or reordered
    assert len(got) >= 21
    assert runner.alive_threads() == []


def test_stages_overlap():
    """With three slow stages, all three are busy at the same moment: the pipeline overlaps work.
    (No wall-clock threshold: we record who is busy when.)"""
    busy = set()
    peak = [0]
    lock = threading.Lock()

    def slow(name):
        def fn(x):
            with lock:
                busy.add(name)
                peak[0] = max(peak[0], len(busy))
            time.sleep(0.01)
            with lock:
                busy.discard(name)
            return x

        return FnStage(name, fn)

    runner = Runner(range(40), [slow("a"), slow("b"), slow("c"), Collect()], queue_size=2)
    runner.run()
    assert peak[0] == 3
    rates = [s.fps for s in runner.stats[1:4]]
    assert all(r is not None for r in rates)


def test_queue_size_validated():
    with pytest.raises(ValueError):
        Runner([], [Collect()], queue_size=0)


def test_live_queue_bounds_frames_only_and_drops_the_oldest_frame():
    """Live mode's queue: audio packets neither count against the bound nor push frames out;
    a frame beyond the bound drops the oldest waiting frame."""
    from fractions import Fraction

    from streamsr.frames import Frame
    from streamsr.pipeline.runner import DropOldestQueue

    def frame(i):
        return Frame(i, i, Fraction(1, 25), None, None)

    q = DropOldestQueue(maxsize=2)
    assert q.put_or_drop(frame(0)) is None and q.put_or_drop(PassThrough("a0", 1)) is None
    assert q.put_or_drop(frame(1)) is None
    for k in range(5):  # a burst of audio: kept, and no frame lost for it
        assert q.put_or_drop(PassThrough(f"a{k + 1}", 1)) is None
    dropped = q.put_or_drop(frame(2))
    assert dropped is not None and dropped.index == 0
    items = [q.get_nowait() for _ in range(q.qsize())]
    assert [x.index for x in items if isinstance(x, Frame)] == [1, 2]
    assert [x.payload for x in items if isinstance(x, PassThrough)] == ["a0", "a1", "a2", "a3", "a4", "a5"]


def test_frames_older_than_the_latency_bound_are_dropped_before_inference():
    """Live mode's bound on a driven clock: a frame that waited longer than max_latency between
    decode and inference is dropped and counted; every other one is inferred, in order."""
    from fractions import Fraction

    import numpy as np

    from streamsr.frames import ColourTags, Frame
    from streamsr.pipeline.stages import InferStage

    class Doubler:
        def infer(self, batch, extra=None):
            return batch * 2

    now = [0.0]
    stage = InferStage(Doubler(), batch_size=1, max_latency=0.5, clock=lambda: now[0])
    colour = ColourTags(1, 1)
    arrivals = [0.0, 0.1, 0.2, 0.3, 0.4]
    checked_at = [0.2, 0.7, 0.7, 0.8, 0.95]  # frames 1 and 4 waited 0.6 and 0.55 s
    out = []
    for i, (arrival, t) in enumerate(zip(arrivals, checked_at, strict=True)):
        now[0] = t
        frame = Frame(i, i, Fraction(1, 25), np.full((3, 2, 2), i, np.float32), colour, arrival)
        out += stage.process(frame)
    assert [f.index for f in out] == [0, 2, 3] and stage.stats.dropped == 2
    assert all((f.image == 2 * f.index).all() for f in out)


def test_work_given_up_because_of_an_abort_is_not_an_error():
    from streamsr.pipeline.runner import Aborted

    def give_up(x):
        if x == 3:
            runner.abort()
            raise Aborted("between tiles")
        return x

    sink = Collect()
    runner = Runner(range(100), [FnStage("tiles", give_up), sink], queue_size=2)
    runner.run()  # no error re-raised: the abort was the reason
    assert 3 not in sink.items and runner.aborted

    def broken(x):
        raise Aborted("not asked for")

    with pytest.raises(Aborted):  # without an abort it is a real failure
        Runner(range(3), [FnStage("tiles", broken), Collect()]).run()


def test_frames_a_stage_releases_at_the_end_and_a_live_queue_drops_are_counted(monkeypatch):
    """Live mode: frames a stage held (a batch, tiles) and releases at the end of the stream go
    into the next queue like any other; one dropped there to stay live is counted, so that
    frames in = out + dropped (they were dropped uncounted)."""
    from fractions import Fraction

    from streamsr.frames import Frame
    from streamsr.pipeline.runner import DropOldestQueue

    released = []  # frames the holding stage has put into the next queue at its end
    put = DropOldestQueue.put_or_drop

    def spy(queue, item):
        dropped = put(queue, item)
        if threading.current_thread().name == "streamsr-hold":
            released.append(item)  # once it is in (or dropped): the gate opens after the last
        return dropped

    monkeypatch.setattr(DropOldestQueue, "put_or_drop", spy)

    class HoldAll(Stage):
        def __init__(self):
            super().__init__("hold")
            self.held, self.flushed = [], threading.Event()

        def process(self, item):
            self.held.append(item)
            return []

        def flush(self):
            self.flushed.set()
            return self.held

    gate = threading.Event()

    class Gated(Collect):
        def process(self, item):
            gate.wait()
            return super().process(item)

    hold, sink = HoldAll(), Gated()
    def frames():  # each once the holding stage has the one before: none dropped on the way in
        for i in range(10):
            while len(hold.held) < i:
                time.sleep(0.001)
            yield Frame(i, i, Fraction(1, 25), None, None)

    runner = Runner(frames(), [hold, sink], queue_size=2, live=True)
    done = threading.Thread(target=runner.run)
    done.start()
    while not (hold.flushed.is_set() and len(released) == len(hold.held)):  # the sink shut meanwhile
        time.sleep(0.01)
    gate.set()
    done.join()
    dropped = sum(s.dropped for s in runner.stats)
    assert len(hold.held) == 10 and len(sink.items) + dropped == 10, (len(sink.items), [s.dropped for s in runner.stats])
    assert runner.stats[2].dropped >= 7  # 10 into a queue of 2 with the sink shut (it may hold one)
