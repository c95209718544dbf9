"""Files whose timestamps restart: MPEG-TS allows it (FFmpeg flags such formats
``AVFMT_TS_DISCONT``), and it happens whenever recordings are joined end to end (``cat a.ts b.ts``)
or a camera's encoder restarts mid-recording. Read as they are, the second part's frames would
all be stamped a tick apart after the first part's last one and its audio left out as damaged.

:func:`rejoined` passes the demuxed packets on with their timestamps shifted so that each restart
follows what came before it. A restart is a step back of more than :data:`BACK_S` in one stream's
dts; a step forward is the recording's own gap and is kept. The streams of an MPEG-TS are
interleaved with a lead of up to about a second, so they restart at different packets: from the
first restart the packets are held until every stream has shown its own (at most :data:`HOLD`
packets), and the streams that restarted get one offset, the one that puts each one's new start
after its old end, so picture and sound stay in step. A stream that did not restart within the
hold keeps its own offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from fractions import Fraction

__all__ = ["BACK_S", "HOLD", "TS_DISCONT", "rejoined"]

#: FFmpeg's AVFMT_TS_DISCONT: the format allows timestamps to restart
TS_DISCONT = 0x0200
#: a step back of more than this in a stream's dts is a restart (B-frame reordering stays under it)
BACK_S = Fraction(1, 10)
#: packets held at most while the streams' restarts settle
HOLD = 512


class _Rejoin:
    def __init__(self, streams: Iterable[int]):
        self.streams = set(streams)
        self.offset: dict[int, Fraction] = {}  # per stream: seconds added to its timestamps
        self.end: dict[int, Fraction] = {}  # per stream: the end of its latest packet, offset applied
        self.held: list[tuple[object, bool]] | None = None  # (packet, of the new part) while settling
        self.starts: dict[int, Fraction] = {}  # per stream: the new part's first dts, as read

    def _restarts(self, index: int, t: Fraction) -> bool:
        last = self.end.get(index)
        return last is not None and t + self.offset.get(index, 0) < last - BACK_S

    def _shift(self, packet, offset: Fraction) -> None:
        if offset:
            ticks = round(offset / packet.time_base)
            if packet.pts is not None:
                packet.pts += ticks
            if packet.dts is not None:
                packet.dts += ticks
        if packet.dts is not None:  # note where its stream ends now
            index = packet.stream.index
            end = (packet.dts + (packet.duration or 0)) * packet.time_base
            self.end[index] = max(self.end.get(index, end), end)

    def push(self, packet) -> list:
        index, dts = packet.stream.index, packet.dts
        t = dts * packet.time_base if dts is not None else None
        if self.held is None:
            if t is None or not self._restarts(index, t):
                self._shift(packet, self.offset.get(index, Fraction(0)))
                return [packet]
            self.held, self.starts = [], {}
        new = index in self.starts or (t is not None and self._restarts(index, t))
        if new and index not in self.starts:
            self.starts[index] = t
        if not new:
            self._shift(packet, self.offset.get(index, Fraction(0)))
        self.held.append((packet, new))
        if self.streams <= set(self.starts) or len(self.held) >= HOLD:
            return self._settle()
        return []

    def _settle(self) -> list:
        offset = max(self.end[i] - start for i, start in self.starts.items())
        self.offset.update(dict.fromkeys(self.starts, offset))
        out = []
        for packet, new in self.held or []:
            if new:
                self._shift(packet, offset)
            out.append(packet)
        self.held, self.starts = None, {}
        return out

    def flush(self) -> list:
        return self._settle() if self.held else []


def rejoined(packets: Iterable, streams: Iterable[int]) -> Iterator:
    """``packets`` (demuxed from ``streams``, by index) with timestamps that never restart."""
    joins = _Rejoin(streams)
    for packet in packets:
        yield from joins.push(packet)
    yield from joins.flush()
