"""Video input and output through PyAV."""

from .sink import Sink, SinkConfig, check_encoder, container_format
from .source import Source, to_rgb

__all__ = ["Sink", "SinkConfig", "Source", "check_encoder", "container_format", "to_rgb"]
