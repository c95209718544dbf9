"""Records that travel through the pipeline: colour tags, stream info, frames.

pts and time_base travel with every frame so the sink never guesses timing; colour tags travel
too so the output is encoded with the matrix and range the input was decoded with.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

__all__ = ["BT601", "BT709", "ColourTags", "Frame", "PassThrough", "VideoInfo"]

# FFmpeg's AVColorSpace / AVColorRange numbers (stable ABI values).
BT709, BT601 = 1, 5  # AVCOL_SPC_BT709, AVCOL_SPC_SMPTE170M
_UNSPECIFIED = 2
RANGE_UNSPECIFIED, RANGE_LIMITED, RANGE_FULL = 0, 1, 2


@dataclass(frozen=True, slots=True)
class ColourTags:
    """Colour description of a stream, with FFmpeg's enum values.

    Args:
        matrix: AVColorSpace of the YUV↔RGB matrix (1 = BT.709, 5/6 = BT.601, 9 = BT.2020).
        range: AVColorRange (1 = limited/"tv", 2 = full/"pc").
        primaries: AVColorPrimaries, copied to the output as-is.
        transfer: AVColorTransferCharacteristic, copied to the output as-is.
    """

    matrix: int
    range: int
    primaries: int = _UNSPECIFIED
    transfer: int = _UNSPECIFIED

    @classmethod
    def resolve(
        cls, matrix: int, range_: int, primaries: int, transfer: int, height: int, pix_fmt: str
    ) -> ColourTags:
        """Fill unspecified matrix/range the way players do: BT.709 from 720 lines up, else BT.601;
        full range for yuvj/RGB formats, limited otherwise.

        Args:
            matrix, range_, primaries, transfer: the stream's tags (0/2 where unspecified).
            height: frame height, for the matrix guess.
            pix_fmt: pixel format name, for the range guess.
        """
        if matrix in (0, _UNSPECIFIED):
            matrix = BT709 if height >= 720 else BT601
        if range_ == RANGE_UNSPECIFIED:
            full = pix_fmt.startswith(("yuvj", "rgb", "bgr", "gbr"))
            range_ = RANGE_FULL if full else RANGE_LIMITED
        return cls(matrix=matrix, range=range_, primaries=primaries, transfer=transfer)


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What the source knows about its video stream.

    Args:
        width, height: frame size in pixels.
        time_base: unit of pts.
        frame_rate: average frame rate, or None when unknown.
        frame_count: number of frames when the container says, else None.
        codec: decoder name.
        pix_fmt: decoded pixel format.
        colour: resolved colour tags.
        duration: seconds, or None.
        aspect: the shape of a pixel (sample aspect ratio, width over height) when it is not
            square: anamorphic DV, DVD and broadcast SD; None for square pixels.
        rotation: degrees a player turns the picture (counter-clockwise, as FFmpeg's display
            matrix says: phones store portrait video as landscape pixels and -90).
    """

    width: int
    height: int
    time_base: Fraction
    frame_rate: Fraction | None
    frame_count: int | None
    codec: str
    pix_fmt: str
    colour: ColourTags
    duration: float | None = None
    aspect: Fraction | None = None
    rotation: int = 0


@dataclass(frozen=True, slots=True)
class Frame:
    """One video frame as it moves between stages.

    Args:
        index: position in decode order of the source, from 0.
        pts: presentation timestamp in ``time_base`` units (never None after the source).
        time_base: unit of pts.
        image: the pixels; an ``av.VideoFrame`` right after decoding, an H×W×3 uint8 RGB array
            around inference, an ``av.VideoFrame`` again before encoding.
        colour: colour tags the frame was decoded with.
        arrival: ``time.monotonic()`` when the decoder delivered it (latency is measured from here).
        noise: estimated noise σ (0–255) when the model needs it and ``--noise auto`` is on.
        key: the decoder flagged it a keyframe (tile reuse refreshes every tile there).
    """

    index: int
    pts: int
    time_base: Fraction
    image: Any
    colour: ColourTags
    arrival: float = 0.0
    noise: float | None = None
    key: bool = False

    @property
    def time(self) -> float:
        """Presentation time in seconds."""
        return float(self.pts * self.time_base)

    def with_image(self, image: Any) -> Frame:
        """A copy carrying new pixels (timing and tags unchanged)."""
        return Frame(self.index, self.pts, self.time_base, image, self.colour, self.arrival, self.noise, self.key)


@dataclass(frozen=True, slots=True)
class PassThrough:
    """A non-video item (an audio packet) that stages forward untouched to the sink.

    Args:
        payload: the object the sink understands (an ``av.Packet``).
        stream_index: index of the input stream it came from.
    """

    payload: Any
    stream_index: int


