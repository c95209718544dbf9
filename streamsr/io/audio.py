"""Audio of an output: input packets copied byte for byte where the container takes the codec,
else decoded and re-encoded (AAC, or Opus for WebM)."""

from __future__ import annotations

import io

import av

__all__ = ["AudioOut", "add_audio"]

_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "2.1", 4: "quad", 5: "5.0", 6: "5.1", 8: "7.1"}
#: the first bytes of a whole frame of codecs whose MP4/MOV track must start on one
_SYNC_WORDS = {"ac3": b"\x0b\x77", "eac3": b"\x0b\x77"}
_SYNC_FIRST = ("mp4", "mov", "ipod", "3gp")
_ADTS_RATES = (96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350)


def _probe_payload(stream) -> bytes:
    """A packet for the dry-run copy of ``stream``. AAC from MPEG-TS/ADTS sources carries its
    configuration in a 7-byte ADTS header on every packet instead of extradata; muxers that need
    extradata (mp4, mkv) then convert it themselves (FFmpeg's automatic aac_adtstoasc), but only
    for a packet that looks like ADTS -- so the probe sends one, built from the stream's
    parameters, rather than one that would fail where the real packets succeed."""
    cc = stream.codec_context
    if cc.name != "aac" or cc.extradata or cc.sample_rate not in _ADTS_RATES:
        return bytes(256)
    payload = bytes(32)
    length = 7 + len(payload)
    rate, channels = _ADTS_RATES.index(cc.sample_rate), min(cc.channels or 2, 7)
    header = bytes([0xFF, 0xF1, (1 << 6) | (rate << 2) | (channels >> 2),  # AAC LC
                    ((channels & 3) << 6) | (length >> 11), (length >> 3) & 0xFF, ((length & 7) << 5) | 0x1F, 0xFC])
    return header + payload


def copy_ok(stream, format: str) -> bool:
    """Dry-run a copy of ``stream`` into an in-memory container of ``format``: header, one packet
    and trailer, because muxers (mp4's) check some codecs only when writing samples."""
    probe = av.open(io.BytesIO(), mode="w", format=format)
    try:
        out = probe.add_stream_from_template(stream)
        probe.start_encoding()
        packet = av.Packet(_probe_payload(stream))
        packet.pts = packet.dts = 0
        packet.time_base = stream.time_base
        packet.stream = out
        probe.mux(packet)
        probe.close()
        return True
    except (av.FFmpegError, ValueError, NotImplementedError):
        return False


class AudioOut:
    """One output audio stream fed by one input stream's packets.

    Args:
        stream: the output stream.
        decoder, resampler: for a re-encoded stream (None for a copied one).
    """

    def __init__(self, stream, decoder=None, resampler=None, format: str | None = None):
        self.stream, self.decoder, self.resampler = stream, decoder, resampler
        self.last_dts: int | None = None
        self.dropped = 0
        self.last_error: str | None = None
        # MP4/MOV must start an AC-3 track on a whole frame (FFmpeg's muxer drops what comes before)
        self._need_sync = decoder is None and format in _SYNC_FIRST and stream.codec_context.name in _SYNC_WORDS
        self.leading_cut: list[str] = []

    @property
    def copied(self) -> bool:
        return self.decoder is None

    def packets(self, packet) -> list:
        """The output packets for one input packet. A copied packet whose dts does not increase
        (damaged input) is left out and counted: the muxer would refuse it and end the run."""
        if self.decoder is None:
            if self._need_sync:
                if bytes(packet)[:2] != _SYNC_WORDS[self.stream.codec_context.name]:
                    t = float(packet.pts * packet.time_base) if packet.pts is not None else 0.0
                    self.leading_cut.append(f"{packet.size} bytes at {t:.3f} s")
                    return []
                self._need_sync = False
            if packet.dts is not None and self.last_dts is not None and packet.dts <= self.last_dts:
                self.drop("its timestamp goes backwards")
                return []
            if packet.dts is not None:
                self.last_dts = packet.dts
            packet.stream = self.stream
            return [packet]
        return [p for frame in self.decoder.decode(packet) for rf in self.resampler.resample(frame)
                for p in self.stream.encode(rf)]

    def drop(self, why: str) -> None:
        """Count a packet that could not be written (said once at the end, see :attr:`notice`)."""
        self.dropped += 1
        self.last_error = why

    @property
    def notice(self) -> str | None:
        """What was left out, for the user, or None."""
        said = []
        if self.leading_cut:
            name = self.stream.codec_context.name.upper().replace("AC3", "AC-3")
            said.append(f"audio stream {self.stream.index} starts with {len(self.leading_cut)} packet(s) that are not a "
                        f"whole {name} frame ({', '.join(self.leading_cut[:3])}): MP4/MOV cannot hold them, left out "
                        f"(MKV keeps every packet)")
        if self.dropped:
            said.append(f"{self.dropped} damaged audio packet(s) of output stream {self.stream.index} were left out "
                        f"(last: {self.last_error})")
        return "; ".join(said) or None

    def flush(self) -> list:
        """What a re-encoder still holds at the end."""
        if self.decoder is None:
            return []
        held = [p for rf in self.resampler.resample(None) for p in self.stream.encode(rf)]
        return held + list(self.stream.encode(None))


def add_audio(container, stream, format: str) -> tuple[AudioOut, str | None]:
    """Add an output stream for input audio ``stream``: a copy where ``format`` takes the codec,
    else AAC (Opus for WebM). Returns the :class:`AudioOut` and a notice when re-encoded."""
    if copy_ok(stream, format):
        return AudioOut(container.add_stream_from_template(stream), format=format), None
    codec = "libopus" if format == "webm" else "aac"
    rate = stream.codec_context.sample_rate or 48000
    if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
        rate = 48000
    out = container.add_stream(codec, rate=rate)
    # the default layout for the channel count: an unordered "2 channels" isn't muxable in mp4
    channels = stream.codec_context.channels
    out.codec_context.layout = _DEFAULT_LAYOUTS.get(channels, stream.codec_context.layout)
    decoder = av.CodecContext.create(stream.codec_context.name, "r")
    decoder.extradata = stream.codec_context.extradata
    decoder.sample_rate = stream.codec_context.sample_rate
    decoder.layout = stream.codec_context.layout
    resampler = av.AudioResampler(format=out.codec_context.codec.audio_formats[0].name,
                                  layout=out.codec_context.layout, rate=rate)
    notice = (f"audio stream {stream.index} ({stream.codec_context.name}) cannot be copied into "
              f"{format}; re-encoded as {codec}")
    return AudioOut(out, decoder, resampler), notice
