"""Frozen configuration of a run.

The CLI builds a :class:`RunConfig` from its options (unset ones dropped so the defaults here
apply); library users build one directly. Validation happens in ``__post_init__`` so an invalid
config can't exist.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io.live import LiveConfig
from .io.sink import SinkConfig
from .models.geometry import ScaleRequest, parse_size

__all__ = ["PRECISIONS", "PRESETS", "SAMPLE_CLIP", "RunConfig", "load_preset", "read_toml"]

#: the precisions a run may ask for; each backend declares those it runs (``Backend.precisions``)
PRECISIONS = ("fp32", "fp16", "bf16", "int8")

@dataclass(frozen=True, kw_only=True)
class RunConfig:
    """Everything that decides how a video is upscaled.

    Args:
        model: registry name.
        scale: upscale factor (None: the model's default, x2 for today's models); a float for
            models that take any factor (see ``streamsr models``).
        size: exact output (width, height) or "WxH" instead of ``scale``; a fixed-factor model
            runs its smallest factor that reaches it and the output is resized to it.
        part: for models made of parts (IRN): "down" or "up".
        backend: backend name or "auto".
        device: "auto", "cpu" or "cuda".
        precision: "fp32", "fp16", "bf16", "int8" (calibrated networks, CPU), "auto" (the fastest measured within 0.1 dB of fp32 for
            the network) or None (fp16 on CUDA, fp32 on CPU); one the backend or the CPU does not
            run falls back, said once (:func:`streamsr.backends.choice.resolve_precision`).
        weights: user .safetensors weights instead of the shipped ones.
        batch_size: frames per inference call.
        queue_size: bound of each queue between stages.
        decode_threads: decoder threads (0 = FFmpeg chooses).
        audio: copy audio streams (live inputs: retimed with the video; see streamsr.io.live).
        realtime: live mode: drop-oldest queues and a latency bound. None = on for live inputs
            (rtsp, rtmp, srt, udp, HLS playlists, V4L2 devices), off for files.
        max_latency: live mode: the most a frame may wait between decode and inference, in
            seconds; older frames are dropped (counted).
        noise: degradation-aware models (UDVD): the noise σ (0–255) to tell the model; None
            estimates it from the frames (``--noise auto``) and smooths it over time.
        blur: degradation-aware models: isotropic blur width in HR pixels; None = a mild camera
            blur, 0.5 × scale (1.0 at x2, 2.0 at x4).
        hwdec: hardware decoding: "auto" (NVDEC when FFmpeg has CUDA support and PyTorch sees a
            GPU), "none", or a device type ("cuda", "qsv", "vaapi"); falls back to the CPU.
        tile: run frames larger than this many LR pixels a side tile by tile (memory-bound GPUs,
            TensorRT profiles); None = whole frames.
        tile_overlap: LR pixels shared by neighbouring tiles (seam-free when it covers the
            network's receptive field).
        max_memory: the most memory a run may plan to use ("8G", "512M" or bytes); above it,
            queues are shortened and frames tiled, and a run that cannot fit even so is refused.
            None: half of the memory available when the run starts (of the GPU's, for the
            network on CUDA).
        colour_on: where YUV↔RGB conversion runs: "cpu" (swscale), "device" (PyTorch on the
            inference device, 8-bit 4:2:0 only: uploads 1.5 bytes a pixel instead of 12, and the
            CPU does no per-pixel work), or "auto" (device on CUDA when the formats allow).
        reuse: tile reuse (:mod:`streamsr.pipeline.reuse`): "on", "off", or "auto" (on for live
            inputs; on a file, kept when its first frames show it saves network work).
        reuse_refresh: seconds after which a reused tile is recomputed; None or "keyframe": at
            every keyframe of the input (and at least every 10 s).
        backend_options: ``{backend: {option: value}}`` for the backends' own configs (e.g.
            ``{"torch": {"compile": True, "threads": 2}}``; TOML ``[backend_options.torch]``,
            CLI ``--backend-option torch.threads=2``), checked by name when the backend loads.
        sink: encoder settings.
        live: how live inputs are read (reconnect, watchdog).
    """

    model: str = "espcn"
    scale: float | None = None
    size: tuple[int, int] | None = None
    part: str | None = None
    backend: str = "auto"
    device: str = "auto"
    precision: str | None = None
    weights: str | None = None
    batch_size: int = 1
    queue_size: int = 8
    decode_threads: int = 0
    audio: bool = True
    realtime: bool | None = None
    max_latency: float = 0.5
    noise: float | None = None
    blur: float | None = None
    hwdec: str = "auto"
    tile: int | None = None
    tile_overlap: int = 16
    max_memory: str | int | None = None
    colour_on: str = "auto"
    reuse: str = "auto"
    reuse_refresh: float | str | None = None
    backend_options: dict = field(default_factory=dict)
    sink: SinkConfig = field(default_factory=SinkConfig)
    live: LiveConfig = field(default_factory=LiveConfig)

    @property
    def request(self) -> ScaleRequest:
        """What this run asks of the model's geometry."""
        return ScaleRequest(scale=self.scale, size=self.size, part=self.part)

    def __post_init__(self) -> None:
        for name in ("batch_size", "queue_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if isinstance(self.size, str):
            object.__setattr__(self, "size", parse_size(self.size))
        elif self.size is not None:
            object.__setattr__(self, "size", tuple(self.size))
        if not isinstance(self.backend_options, dict) or not all(isinstance(v, dict)
                                                                 for v in self.backend_options.values()):
            raise ConfigError("backend_options must map a backend name to a table of its options")
        self.request  # noqa: B018 -- validates scale vs size
        if self.device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"unknown device {self.device!r}; use auto, cpu or cuda")
        if (self.noise is not None and self.noise < 0) or (self.blur is not None and self.blur < 0):
            raise ConfigError(f"--noise and --blur must be >= 0 (or --noise auto), got {self.noise}, {self.blur}")
        if self.max_latency <= 0:
            raise ConfigError(f"--max-latency must be positive, got {self.max_latency}")
        if self.precision not in (None, "auto", *PRECISIONS):
            raise ConfigError(f"unknown precision {self.precision!r}; use auto, {', '.join(PRECISIONS)}")
        if self.reuse not in ("auto", "on", "off"):
            raise ConfigError(f"--reuse must be auto, on or off, got {self.reuse!r}")
        if isinstance(self.reuse_refresh, str):
            text = self.reuse_refresh.strip().lower()
            try:
                object.__setattr__(self, "reuse_refresh", None if text == "keyframe" else float(text))
            except ValueError:
                raise ConfigError(f"--reuse-refresh takes seconds or 'keyframe', got {self.reuse_refresh!r}") from None
        if self.reuse_refresh is not None and not self.reuse_refresh > 0:
            raise ConfigError(f"--reuse-refresh must be positive seconds (or keyframe), got {self.reuse_refresh}")
        if self.colour_on not in ("auto", "cpu", "device"):
            raise ConfigError(f"--colour-on must be auto, cpu or device, got {self.colour_on!r}")

    @classmethod
    def from_options(cls, **options: Any) -> RunConfig:
        """Build from flat options (CLI style); None values are dropped, encoder and live-input
        keys are routed to :class:`SinkConfig` and :class:`LiveConfig`.

        Raises:
            ConfigError: an unknown option name.
        """
        if options.get("noise") == "auto":  # --noise's own word, in a preset or cameras file too
            options["noise"] = None
        options = {k: v for k, v in options.items() if v is not None}
        parts = {"sink": SinkConfig, "live": LiveConfig}
        keys = {name: {f.name for f in fields(kind)} for name, kind in parts.items()}
        run_keys = {f.name for f in fields(cls)} - set(parts)
        unknown = set(options) - run_keys - set().union(*keys.values())
        if unknown:
            raise ConfigError(f"unknown option(s): {', '.join(sorted(unknown))}")
        quoted = sorted(k for k, v in options.items() if isinstance(v, str) and _numeric(k))
        if quoted:  # a number in quotes, from a TOML file: said here, not as a traceback later
            raise ConfigError(f"an option's value has the wrong type ({', '.join(quoted)}: a number, without quotes)")
        nested = {name: kind(**{k: v for k, v in options.items() if k in keys[name]})
                  for name, kind in parts.items()}
        return cls(**nested, **{k: v for k, v in options.items() if k in run_keys})


def _numeric(name: str) -> bool:
    """Whether option ``name`` of :class:`RunConfig` (or its parts) takes a number."""
    for kind in (RunConfig, SinkConfig, LiveConfig):
        for f in fields(kind):
            if f.name == name:
                words = set(re.findall(r"[A-Za-z]+", str(f.type)))
                return bool(words & {"int", "float"}) and words <= {"int", "float", "bool", "None"}
    return False


def read_toml(path: str | Path, what: str) -> dict[str, Any]:
    """Read a TOML file.

    Args:
        path: the file.
        what: what it is, for messages ("cameras file", "training config").

    Raises:
        ConfigError: missing file or invalid TOML.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML in {path}: {exc}") from exc


PRESETS = Path(__file__).parent / "data" / "presets"
#: the bundled 5-s clip (384x288, AAC) that `make demo` upscales; installed with the package
SAMPLE_CLIP = Path(__file__).parent / "data" / "sample.mp4"


def load_preset(name: str) -> dict[str, Any]:
    """Run options of a preset: a shipped one by name (surveillance, videocall) or a TOML file
    with the same keys as ``streamsr run``'s options (underscores for dashes).

    Raises:
        ConfigError: no such preset or file, invalid TOML, or an option ``streamsr run`` lacks.
    """
    shipped = PRESETS / f"{name}.toml"
    if not shipped.is_file() and not name.endswith(".toml"):
        names = ", ".join(sorted(p.stem for p in PRESETS.glob("*.toml")))
        raise ConfigError(f"unknown preset {name!r}; shipped: {names} (or give a .toml file)")
    options = read_toml(shipped if shipped.is_file() else name, "preset")
    RunConfig.from_options(**options)  # refuse unknown or invalid options now, naming the preset's file
    return options

