"""Video input and output through PyAV."""

from .sink import Sink, SinkConfig
from .source import Source

__all__ = ["Sink", "SinkConfig", "Source"]
