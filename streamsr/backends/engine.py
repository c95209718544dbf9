"""TensorRT engines: shape profiles, the cache key, the engine cache, and the builder.

An engine's file name encodes everything that invalidates it::

    {variant}-{onnx sha256[:12]}-{min}_{opt}_{max}-{precision}-trt{version}-{gpu}-sm{cc}.engine

where the variant names the network (``espcn_x2``, ``irn_x2-down``: see ModelVariant.name) and,
for a model with inputs on grids of the output (LIIF, LTE), the profile goes on with the output's
sizes: ``{min}_{opt}_{max}_out{HxW}_{HxW}_{HxW}``. So a new ONNX export, another profile,
precision, TensorRT version or GPU never reuses it. The builder supports TensorRT 10 and 11:
networks are created strongly typed where the flag exists (required for typing on 10.x, always on
in 11.x), with precision baked into the ONNX; only a TensorRT 10 without strong typing falls back
to the FP16 builder flag.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ..cache import cache_dir
from ..errors import ConfigError, ExportError
from ..models.inputs import ModelInput, grid_size

__all__ = [
    "EngineCache",
    "EngineKey",
    "Shape",
    "ShapeProfile",
    "build_engine",
    "needs_output_size",
    "network_flags",
    "uses_fp16_flag",
]

#: inputs as ModelInput records, or name -> (channels, grid)
Inputs = Iterable[ModelInput] | Mapping[str, tuple[int, str]]
HW = tuple[int, int]


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


def _parse_hw(text: str) -> HW:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError:
        h = w = 0
    if min(h, w) < 1:
        raise ConfigError(f"output size {text!r} must be HxW with positive integers, e.g. 1080x1920")
    return h, w


@dataclass(frozen=True)
class ShapeProfile:
    """min ≤ opt ≤ max shapes of one optimization profile; every input's shapes follow from them
    and the input's grid (:meth:`shapes`).

    Args:
        min, opt, max: NCHW shapes of the image input.
        out: the output's (height, width) at min, opt and max, for a model with inputs on grids of
            the output (its output is not a fixed multiple of its input); None otherwise.
    """

    min: Shape
    opt: Shape
    max: Shape
    out: tuple[HW, HW, HW] | None = None

    def __post_init__(self) -> None:
        dims = {d.upper(): [getattr(s, d) for s in (self.min, self.opt, self.max)] for d in "nhw"}
        if self.out is not None:
            out = tuple(tuple(int(v) for v in hw) for hw in self.out)
            if len(out) != 3 or any(len(hw) != 2 or min(hw) < 1 for hw in out):
                raise ConfigError(f"a profile's output sizes are three positive (height, width) pairs, got {self.out}")
            object.__setattr__(self, "out", out)  # lists and tuples alike: equal profiles compare equal
            dims.update({f"output {d}": [hw[k] for hw in out] for k, d in enumerate("HW")})
        for dim, (lo, mid, hi) in dims.items():
            if not lo <= mid <= hi:
                raise ConfigError(f"shape profile needs min <= opt <= max in every dimension; {dim} is {lo}, {mid}, {hi}")

    @classmethod
    def parse(cls, min_shape: str, opt_shape: str, max_shape: str, out: Iterable[str] | None = None) -> ShapeProfile:
        """From three ``NxCxHxW`` strings (and three ``HxW`` output sizes, or None).

        Raises:
            ConfigError: a malformed shape or size, or not min <= opt <= max.
        """
        sizes = None if out is None else tuple(_parse_hw(t) for t in out)
        return cls(Shape.parse(min_shape), Shape.parse(opt_shape), Shape.parse(max_shape), sizes)

    @classmethod
    def from_text(cls, text: str) -> ShapeProfile:
        """From ``"MIN,OPT,MAX"`` (a backend option: ``--backend-option tensorrt.profile=...``),
        then the output's ``OUTMIN,OUTOPT,OUTMAX`` (HxW; the first may start with ``out``) for a
        model with inputs on grids of the output. ``_`` separates like ``,``: ``str()`` reads back.

        Raises:
            ConfigError: not 3 or 6 parts, or a malformed part.
        """
        parts = [p.strip() for p in re.split(r"[,_]", text.strip())]
        if len(parts) == 6 and parts[3].lower().startswith("out"):
            parts[3] = parts[3][3:]
        if len(parts) not in (3, 6):
            raise ConfigError("a shape profile is MIN,OPT,MAX (NxCxHxW), then for a model that takes any scale the "
                              "output's OUTMIN,OUTOPT,OUTMAX (HxW), e.g. 1x3x64x64,1x3x540x960,4x3x1080x1920,"
                              f"128x128,1080x1920,2160x3840; got {text!r}")
        return cls.parse(*parts[:3], out=parts[3:] or None)

    def covers(self, n: int, h: int, w: int, out: HW | None = None) -> bool:
        """Whether a batch of n frames of h×w fits, and its output (height, width) ``out`` where the
        profile has output sizes (a batch without ``out`` does not fit such a profile)."""
        fits = self.min.n <= n <= self.max.n and self.min.h <= h <= self.max.h and self.min.w <= w <= self.max.w
        if self.out is None or not fits:
            return fits
        (lo_h, lo_w), _, (hi_h, hi_w) = self.out
        return out is not None and lo_h <= out[0] <= hi_h and lo_w <= out[1] <= hi_w

    def shapes(self, channels: int, grid: str = "lr", *, name: str = "input") -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) NCHW shapes of an input: the image's batch, its channels, the size of
        its grid (:func:`streamsr.models.inputs.grid_size`) at the profile's LR and output sizes.

        Args:
            channels: the input's channels.
            grid: the input's grid.
            name: the input's name (for the error message).

        Raises:
            ConfigError: an input off the LR grid while the profile has no output sizes.
        """
        if grid != "lr" and self.out is None:
            raise ConfigError(f"input {name!r} lives on the {grid} grid of the output: the shape profile needs the "
                              "output's sizes too (MIN,OPT,MAX,OUTMIN,OUTOPT,OUTMAX; build-engine --scale, --size "
                              "or --out-shape)")
        outs = self.out or (None, None, None)
        return tuple((s.n, channels, *grid_size(grid, (s.h, s.w), o)) for s, o in zip((self.min, self.opt, self.max), outs))

    def __str__(self) -> str:
        text = f"{self.min}_{self.opt}_{self.max}"
        return (text + "_out" + "_".join(f"{h}x{w}" for h, w in self.out)) if self.out else text


def _declared(inputs: Inputs) -> dict[str, tuple[int, str]]:
    """name -> (channels, grid) of ModelInput records (or of such a mapping)."""
    if isinstance(inputs, Mapping):
        return {name: (int(c), str(g)) for name, (c, g) in inputs.items()}
    return {i.name: (i.channels, i.grid) for i in inputs}


def needs_output_size(inputs: Inputs) -> bool:
    """Whether some input lives on a grid of the output (so the profile needs output sizes).

    Args:
        inputs: ModelInput records, or name -> (channels, grid).
    """
    return any(grid != "lr" for _, grid in _declared(inputs).values())


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


def build_engine(onnx: bytes, inputs: Inputs, profile: ShapeProfile, precision: str,
                 timing_cache: Path | None = None, workspace_gib: float = 4.0) -> bytes:
    """Build a serialized engine from ONNX bytes with one optimization profile.

    Args:
        onnx: the graph (with fp16 baked in for strongly typed fp16 builds).
        inputs: every input (``variant.inputs``, or name -> (channels, grid)); each one's shapes
            follow from the profile and its grid (:meth:`ShapeProfile.shapes`).
        profile: shapes of the image input (and the output's sizes, for inputs on its grids).
        precision: "fp32" or "fp16".
        timing_cache: read and updated, so later builds are faster.
        workspace_gib: builder workspace limit.

    Raises:
        ConfigError: an input on a grid of the output, and the profile has no output sizes.
        ExportError: the parser or the builder failed (with TensorRT's messages).
    """
    import tensorrt as trt

    shapes = {name: profile.shapes(c, grid, name=name) for name, (c, grid) in _declared(inputs).items()}
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
    for name, (lo, mid, hi) in shapes.items():
        opt_profile.set_shape(name, lo, mid, hi)
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
