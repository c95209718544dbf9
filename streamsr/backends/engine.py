"""TensorRT engines: shape profiles, the cache key, the engine cache, and the builder.

An engine's file name encodes everything that invalidates it::

    {variant}-{onnx sha256[:12]}-{min}_{opt}_{max}-{precision}-trt{version}-{gpu}-sm{cc}.engine

where the variant names the network (``espcn_x2``, ``irn_x2-down``: see ModelVariant.name)

so a new ONNX export, another profile, precision, TensorRT version or GPU never reuses it. The
builder supports TensorRT 10 and 11: networks are created strongly typed where the flag exists
(required for typing on 10.x, always on in 11.x), with precision baked into the ONNX; only a
TensorRT 10 without strong typing falls back to the FP16 builder flag.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir
from ..errors import ConfigError, ExportError

__all__ = [
    "EngineCache",
    "EngineKey",
    "Shape",
    "ShapeProfile",
    "build_engine",
    "network_flags",
    "uses_fp16_flag",
]

@dataclass(frozen=True)
class Shape:
    """An NCHW shape of the LR image input."""

    n: int
    c: int
    h: int
    w: int

    @classmethod
    def parse(cls, text: str) -> Shape:
        """``"1x3x540x960"`` → Shape.

        Raises:
            ConfigError: not four positive integers, or not 3 channels.
        """
        parts = text.lower().split("x")
        try:
            values = [int(p) for p in parts]
        except ValueError:
            values = []
        if len(values) != 4 or min(values) < 1:
            raise ConfigError(f"shape {text!r} must be NxCxHxW with positive integers, e.g. 1x3x540x960")
        if values[1] != 3:
            raise ConfigError(f"shape {text!r}: the image input has 3 channels, not {values[1]}")
        return cls(*values)

    def __str__(self) -> str:
        return f"{self.n}x{self.c}x{self.h}x{self.w}"

    def as_tuple(self, channels: int | None = None) -> tuple[int, int, int, int]:
        """(N, C, H, W), with C replaced for the degradation-map inputs."""
        return (self.n, self.c if channels is None else channels, self.h, self.w)


@dataclass(frozen=True)
class ShapeProfile:
    """min ≤ opt ≤ max shapes of one optimization profile (LR image; map inputs follow it)."""

    min: Shape
    opt: Shape
    max: Shape

    def __post_init__(self) -> None:
        for dim in ("n", "h", "w"):
            lo, mid, hi = (getattr(s, dim) for s in (self.min, self.opt, self.max))
            if not lo <= mid <= hi:
                raise ConfigError(f"shape profile needs min <= opt <= max in every dimension; "
                                  f"{dim.upper()} is {lo}, {mid}, {hi}")

    @classmethod
    def parse(cls, min_shape: str, opt_shape: str, max_shape: str) -> ShapeProfile:
        """From three ``NxCxHxW`` strings."""
        return cls(Shape.parse(min_shape), Shape.parse(opt_shape), Shape.parse(max_shape))

    @classmethod
    def from_text(cls, text: str) -> ShapeProfile:
        """From ``"MIN,OPT,MAX"`` (a backend option: ``--backend-option tensorrt.profile=...``)."""
        parts = text.replace("_", ",").split(",")
        if len(parts) != 3:
            raise ConfigError(f"a shape profile is MIN,OPT,MAX, e.g. 1x3x64x64,1x3x540x960,4x3x1080x1920; got {text!r}")
        return cls.parse(*parts)

    def covers(self, n: int, h: int, w: int) -> bool:
        """Whether a batch of n frames of h×w fits."""
        return (self.min.n <= n <= self.max.n and self.min.h <= h <= self.max.h
                and self.min.w <= w <= self.max.w)

    def __str__(self) -> str:
        return f"{self.min}_{self.opt}_{self.max}"


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "", text.lower())


@dataclass(frozen=True)
class EngineKey:
    """Everything that invalidates an engine."""

    variant: str
    onnx_sha: str
    profile: ShapeProfile
    precision: str
    trt_version: str
    gpu: str
    compute_capability: str

    @classmethod
    def make(cls, variant: str, onnx: bytes, profile: ShapeProfile, precision: str,
             trt_version: str, gpu: str, compute_capability: tuple[int, int] | str) -> EngineKey:
        """Build a key; ``variant`` is the network's name (ModelVariant.name), ``onnx`` the
        serialized graph (hashed)."""
        cc = compute_capability if isinstance(compute_capability, str) else f"{compute_capability[0]}{compute_capability[1]}"
        return cls(variant, hashlib.sha256(onnx).hexdigest()[:12], profile, precision,
                   ".".join(trt_version.split(".")[:3]), _slug(gpu), cc)

    @property
    def filename(self) -> str:
        """The engine's file name."""
        return (f"{self.variant}-{self.onnx_sha}-{self.profile}-{self.precision}"
                f"-trt{self.trt_version}-{self.gpu}-sm{self.compute_capability}.engine")

    @property
    def family(self) -> str:
        """Prefix shared by engines of the same network (stale ones included)."""
        return f"{self.variant}-"


class EngineCache:
    """A folder of engines named by :class:`EngineKey`.

    Args:
        folder: where engines live (default: ``engines/`` in the user's cache, see streamsr.cache).
    """

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder else cache_dir("engines")

    def path(self, key: EngineKey) -> Path:
        """Where the engine for ``key`` is (or would be) stored."""
        return self.folder / key.filename

    def list(self) -> list[Path]:
        """Every cached engine, sorted by name."""
        return sorted(self.folder.glob("*.engine")) if self.folder.is_dir() else []

    def stale(self, key: EngineKey) -> list[Path]:
        """Engines of the same network that do not match ``key`` (another ONNX, precision,
        TensorRT version or GPU)."""
        return [p for p in self.list() if p.name.startswith(key.family) and p.name != key.filename]

    def clean(self, only_stale_for: EngineKey | None = None) -> list[Path]:
        """Delete engines (all, or the stale ones of a key) and the timing cache; returns what went."""
        gone = self.stale(only_stale_for) if only_stale_for else self.list()
        if only_stale_for is None and (self.folder / "timing.cache").exists():
            gone.append(self.folder / "timing.cache")
        for p in gone:
            p.unlink()
        return gone

    @property
    def timing_cache(self) -> Path:
        """The persistent TensorRT timing cache shared by builds."""
        return self.folder / "timing.cache"


def network_flags(trt) -> int:
    """Creation flags: strongly typed where the API has the flag (10.x opt-in, 11.x default)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 1 << int(flag) if flag is not None else 0


def uses_fp16_flag(trt, precision: str) -> bool:
    """Only a TensorRT without strong typing needs (and still has) the FP16 builder flag."""
    return (precision == "fp16" and network_flags(trt) == 0 and hasattr(trt.BuilderFlag, "FP16"))


def build_engine(onnx: bytes, input_channels: dict[str, int], profile: ShapeProfile, precision: str,
                 timing_cache: Path | None = None, workspace_gib: float = 4.0) -> bytes:
    """Build a serialized engine from ONNX bytes with one optimization profile.

    Args:
        onnx: the graph (with fp16 baked in for strongly typed fp16 builds).
        input_channels: every input's name and channels (the profile's H×W apply to all).
        profile: shapes of the image input.
        precision: "fp32" or "fp16".
        timing_cache: read and updated, so later builds are faster.
        workspace_gib: builder workspace limit.

    Raises:
        ExportError: the parser or the builder failed (with TensorRT's messages).
    """
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse the ONNX graph: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if uses_fp16_flag(trt, precision):
        config.set_flag(trt.BuilderFlag.FP16)
    opt_profile = builder.create_optimization_profile()
    for name, channels in input_channels.items():
        opt_profile.set_shape(name, profile.min.as_tuple(channels), profile.opt.as_tuple(channels),
                              profile.max.as_tuple(channels))
    config.add_optimization_profile(opt_profile)
    cache_bytes = timing_cache.read_bytes() if timing_cache and timing_cache.exists() else b""
    cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(cache, ignore_mismatch=False)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ExportError("TensorRT failed to build the engine (see its log above)")
    if timing_cache is not None:
        timing_cache.parent.mkdir(parents=True, exist_ok=True)
        timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(engine)
