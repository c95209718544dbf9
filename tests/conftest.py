"""Shared fixtures; GPU and TensorRT tests are skipped at collection where absent."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def _has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except ImportError:
        return False


def pytest_collection_modifyitems(config, items):
    skips = {
        "gpu": (_has_cuda(), "no CUDA GPU"),
        "tensorrt": (importlib.util.find_spec("tensorrt") is not None and _has_cuda(), "TensorRT not installed"),
    }
    for item in items:
        for marker, (present, why) in skips.items():
            if marker in item.keywords and not present:
                item.add_marker(pytest.mark.skip(reason=why))


@pytest.fixture(autouse=True)
def no_leftover_threads():
    """Every test must leave no pipeline thread running."""
    yield
    left = [t.name for t in threading.enumerate() if t.name.startswith("streamsr-") and t.is_alive()]
    assert not left, f"pipeline threads still running: {left}"


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("clips")


@pytest.fixture(scope="session")
def small_clip(clip_dir) -> Path:
    """64x48, 12 frames at 25 fps, H.264 + AAC."""
    from media import make_video

    return make_video(clip_dir / "small.mp4", frames=12, audio="aac")


SAMPLE = Path(__file__).resolve().parents[1] / "streamsr" / "data" / "sample.mp4"
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
