"""Frames a frame-threaded decoder strands at the end of a damaged input, decoded again.

With frame threading FFmpeg decodes up to ``thread_count`` packets at once and hands back each
packet's result (its frame, or its error) in order, one decode call later than a single-threaded
decoder would. At the end of the input the last packets' results come out while the decoder
drains, and PyAV drains in one call that stops at the first error: it raises (or, when some
frames came first, returns them and drops the error), and as FFmpeg refuses a second drain, the
frames queued behind that error are lost. A lenient player (FFmpeg's own drain loop, or the
default single-threaded decoder) shows them. Clean inputs have no such error and lose nothing.

So the video packets since the last keyframe are kept (references to the demuxer's packets,
no copies; at most 64 MiB and 1000 packets), and when the decoder returned fewer frames than it
was given packets, or raised an error, they are decoded again from that keyframe by a
single-threaded decoder; the frames the first decode did not return (matched by pts) follow at
the end. FFmpeg's error log can't be the cue: PyAV drops a message identical to the one before,
and the drain can drop the error itself. Clean inputs pay only for holding the packets; a clean
input that gives fewer frames than packets (fields coded as packets of their own, DivX N-VOPs,
frames before the first keyframe) pays for decoding its last GOP once more.
"""

from __future__ import annotations

from collections import Counter

import av
from av.codec.codec import Capabilities
from av.codec.context import ThreadType

__all__ = ["DrainGuard"]

#: packets kept at most (bytes, count); a longer run from one keyframe is given up
KEEP_BYTES = 64 << 20
KEEP_PACKETS = 1000


def frame_threaded(cc) -> bool:
    """Whether this decoder decodes several frames at once (once open, thread_count is the real
    count; before, 0 means FFmpeg's choice)."""
    return (bool(cc.codec.capabilities & Capabilities.frame_threads) and bool(cc.thread_type & ThreadType.FRAME)
            and cc.thread_count != 1)


class _Run:
    """Packets from a keyframe to the next, and the pts of the frames returned while they went in."""

    __slots__ = ("packets", "seen", "size")

    def __init__(self):
        self.packets: list[av.Packet] = []
        self.seen: Counter = Counter()
        self.size = 0


class DrainGuard:
    """Keeps what is needed to decode the end of the input again (see the module's docstring).

    Packets are kept in runs that start at a keyframe; the oldest run is let go once the later
    ones hold more packets than the decoder can have in flight (intra-only codecs: every packet
    is a keyframe), or when the limits are passed.
    """

    def __init__(self, cc):
        self.enabled = frame_threaded(cc)
        self._cc = cc
        self._runs: list[_Run] = []
        self._bytes = self._count = 0
        self.packets_in = self.frames_out = 0
        self.recovered = 0

    def _drop_oldest(self) -> None:
        run = self._runs.pop(0)
        self._bytes -= run.size
        self._count -= len(run.packets)

    def packet(self, packet: av.Packet) -> None:
        """A video packet about to be decoded (the demuxer's empty end-of-stream one is ignored)."""
        if not self.enabled or not packet.size:
            return
        self.packets_in += 1
        if packet.is_keyframe or self.packets_in == 1:
            self._runs.append(_Run())
            in_flight = max(64, 2 * self._cc.thread_count)
            while len(self._runs) > 1 and self._count - len(self._runs[0].packets) >= in_flight:
                self._drop_oldest()
        if not self._runs:  # gave up on this run (too long): wait for the next keyframe
            return
        run = self._runs[-1]
        run.packets.append(packet)
        run.size += packet.size
        self._bytes += packet.size
        self._count += 1
        while self._bytes > KEEP_BYTES or self._count > KEEP_PACKETS:
            self._drop_oldest()

    def frame(self, frame: av.VideoFrame) -> None:
        """A frame the decoder returned."""
        if self.enabled:
            self.frames_out += 1
            if self._runs:
                self._runs[-1].seen[frame.pts] += 1

    def recover(self, raised: bool) -> list[av.VideoFrame]:
        """At the end of the input: decode the kept packets again on one thread when frames may
        be missing (``raised``: a decode call raised); returns the frames the first decode did
        not return. FFmpeg's errors here are not news: the first decode counted them."""
        cc = self._cc
        suspect = raised or self.frames_out < self.packets_in
        if not self.enabled or not self._runs or not suspect or not frame_threaded(cc):
            return []
        packets = [p for run in self._runs for p in run.packets]
        seen = sum((run.seen for run in self._runs), Counter())
        self._runs.clear()
        frames: list[av.VideoFrame] = []
        try:
            dec = av.CodecContext.create(cc.codec, "r")
            dec.extradata = cc.extradata
            dec.codec_tag = cc.codec_tag
            dec.width, dec.height = cc.width, cc.height
            dec.bits_per_coded_sample = cc.bits_per_coded_sample
            dec.thread_type = "SLICE"
            for packet in [*packets, None]:
                try:
                    frames += dec.decode(packet)
                except av.FFmpegError:
                    continue  # a damaged packet: the single-threaded decoder goes on with the next
        except (av.FFmpegError, ValueError):
            return []
        missing = []
        for frame in frames:
            if seen[frame.pts]:
                seen[frame.pts] -= 1
            else:
                missing.append(frame)
        self.recovered += len(missing)
        return missing
