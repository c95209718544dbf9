"""Typed errors for streamsr.

Every error derives from :class:`StreamSRError`; where a builtin fits, the subclass inherits it too,
so callers may catch either (``except FileNotFoundError`` works for a missing input). Messages name
the thing, the value and the fix. Only ``cli.py`` turns these into exit codes.
"""

from __future__ import annotations

__all__ = [
    "BackendUnavailableError",
    "ConfigError",
    "DecodeError",
    "EncodeError",
    "ExportError",
    "InputNotFoundError",
    "MediaError",
    "OutputError",
    "StreamLostError",
    "StreamSRError",
    "UnknownModelError",
    "UnsupportedScaleError",
    "WeightsError",
]


class StreamSRError(Exception):
    """Root of every error streamsr raises on purpose."""


class ConfigError(StreamSRError, ValueError):
    """An option or a combination of options is invalid."""


class InputNotFoundError(StreamSRError, FileNotFoundError):
    """The input file does not exist."""


class UnknownModelError(StreamSRError, KeyError):
    """No model of that name is registered."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class UnsupportedScaleError(StreamSRError, ValueError):
    """The model exists but not at this scale."""


class BackendUnavailableError(StreamSRError, RuntimeError):
    """The asked-for inference backend cannot run here."""


class MediaError(StreamSRError, OSError):
    """A container or stream cannot be opened or read (not a video, zero bytes...).

    Args:
        message: what went wrong, FFmpeg's own words included.
        frame_index: index of the frame being processed, when known.
    """

    def __init__(self, message: str, frame_index: int | None = None):
        super().__init__(message)
        self.frame_index = frame_index

    def __str__(self) -> str:
        msg = self.args[0] if self.args else ""
        if self.frame_index is not None:
            return f"{msg} (at frame {self.frame_index})"
        return str(msg)


class DecodeError(MediaError):
    """Decoding failed in a way the run cannot continue from."""


class StreamLostError(MediaError):
    """A live input went away for good (or a file broke off) after frames were written; the output
    was finalized and holds them. ``stats`` carries the run's statistics."""

    stats = None


class EncodeError(MediaError):
    """The encoder or muxer failed or cannot be configured."""


class OutputError(StreamSRError, OSError):
    """The output path cannot be written."""


class ExportError(StreamSRError, RuntimeError):
    """ONNX export failed or the exported graph disagrees with PyTorch."""


class WeightsError(StreamSRError, OSError):
    """Shipped or user weights are missing or do not fit the model."""
