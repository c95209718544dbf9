"""streamsr: real-time video super-resolution.

    from streamsr import RunConfig, upscale_video
    stats = upscale_video("in.mp4", "out.mp4", RunConfig(model="espcn", scale=2))
"""

from importlib.metadata import PackageNotFoundError, version

from .config import RunConfig
from .errors import StreamSRError
from .io.sink import SinkConfig
from .models import build_model, get_model, list_models
from .pipeline.job import upscale_video

try:
    __version__ = version("streamsr")
except PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"

__all__ = [
    "RunConfig",
    "SinkConfig",
    "StreamSRError",
    "__version__",
    "build_model",
    "get_model",
    "list_models",
    "upscale_video",
]
