"""What a model does to the picture's size, and the one function that resolves a run's output size.

A model declares its geometry in its spec:

- :class:`FixedFactors`: one network per integer factor (ESPCN ×2/×3/×4). A target size it
  cannot reach exactly is reached by resizing the network's output (the smallest factor that is
  at least as large, so the resize only ever shrinks).
- :class:`ContinuousRange`: one network for any factor in a range (LIIF, LTE), per axis when the
  model allows it; the exact output size is the network's own.
- :class:`Parts`: named parts running in opposite directions (IRN's ``down`` and ``up``), one
  network per integer factor and part, each exported and cached as its own graph.

A run asks for a :class:`ScaleRequest` (an integer scale, a float scale, or a target W×H, and for
parts the part); :func:`resolve_geometry` turns it, for one input size, into a :class:`Geometry`
that the sink, tiling, evaluation, bench and the engine key read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from ..errors import ConfigError, UnsupportedScaleError

__all__ = [
    "ContinuousRange",
    "FixedFactors",
    "Geometry",
    "GeometryKind",
    "Parts",
    "ScaleRequest",
    "parse_size",
    "resolve_geometry",
    "target_size",
]

_EPS = 1e-9


def parse_size(text: str, what: str = "--size") -> tuple[int | None, int]:
    """``"1920x1080"`` → (1920, 1080); ``"1440p"`` → (None, 1440): that height, the width from
    the input's aspect ratio (:func:`target_size`).

    Raises:
        ConfigError: neither form, or not positive.
    """
    value = str(text).strip().lower()
    try:
        if value.endswith("p"):
            w, h = None, int(value[:-1])
        else:
            w, h = (int(v) for v in value.split("x"))
    except ValueError:
        raise ConfigError(f"{what} wants WIDTHxHEIGHT (e.g. 1920x1080) or a height (e.g. 1080p); got {text!r}") from None
    if h < 1 or (w is not None and w < 1):
        raise ConfigError(f"{what} wants positive sizes, got {text!r}")
    return w, h


def target_size(size: tuple[int | None, int], width: int, height: int) -> tuple[int, int]:
    """The exact (width, height) a ``--size`` asks of a ``width``×``height`` input: a height alone
    keeps the input's aspect ratio, the width rounded to an even number (4:2:0 video needs it)."""
    w, h = size
    if w is None:
        w = max(2, 2 * round(width * h / height / 2))
    return w, h


@dataclass(frozen=True)
class ScaleRequest:
    """What a run asks for. At most one of ``scale`` and ``size``; neither = the model's default.

    Args:
        scale: the factor (an int for fixed-factor models, any float in range for continuous ones).
        size: the exact output (width, height); width None: the height, at the input's aspect ratio.
        part: for models made of parts (IRN): which one runs ("down" or "up").
    """

    scale: float | None = None
    size: tuple[int | None, int] | None = None
    part: str | None = None

    def __post_init__(self) -> None:
        if self.scale is not None and self.size is not None:
            raise ConfigError("give --scale or --size, not both")
        if self.scale is not None and not self.scale > 0:
            raise ConfigError(f"--scale must be positive, got {self.scale:g}")


@dataclass(frozen=True)
class Geometry:
    """A run's sizes for one input size.

    Args:
        in_size: (width, height) of the frames going in.
        net_size: (width, height) the network puts out.
        out_size: (width, height) written (differs from ``net_size`` when the output is resized).
        factor: the integer factor of the network variant (None for a continuous model).
        part: the model part that runs (None for single-part models).
    """

    in_size: tuple[int, int]
    net_size: tuple[int, int]
    out_size: tuple[int, int]
    factor: int | None = None
    part: str | None = None

    @property
    def scale(self) -> tuple[float, float]:
        """(x, y) factor from input to output."""
        return self.out_size[0] / self.in_size[0], self.out_size[1] / self.in_size[1]

    @property
    def resized(self) -> bool:
        """Whether the network's output is resized to reach ``out_size``."""
        return self.net_size != self.out_size

    @property
    def label(self) -> str:
        """Short text for summaries: ``x2``, ``x1.5``, ``x2 -> 1280x720``, ``x2 down``."""
        sx, sy = self.scale
        if self.resized:
            text = f"x{self.factor} -> {self.out_size[0]}x{self.out_size[1]}"
        elif self.factor is not None:
            text = f"x{self.factor}" if sx >= 1 else f"/{self.factor}"
        elif abs(sx - sy) < 1e-6:
            text = f"x{sx:.4g}"
        else:
            text = f"x{sx:.4g}/{sy:.4g}"
        return f"{text} {self.part}" if self.part else text


class GeometryKind(Protocol):
    """What every geometry declaration offers."""

    def resolve(self, request: ScaleRequest, width: int, height: int, name: str = "model") -> Geometry:
        """The geometry of a run on ``width``×``height`` input (``name``: the model, for messages)."""

    @property
    def factors(self) -> tuple[int, ...]:
        """Integer factors with a network variant of their own (empty for continuous models)."""

    def describe(self) -> str:
        """One line for ``streamsr models``."""


def _scaled(width: int, height: int, sx: float, sy: float) -> tuple[int, int]:
    return max(1, round(width * sx)), max(1, round(height * sy))


@dataclass(frozen=True)
class FixedFactors:
    """One network per integer factor.

    Args:
        factors: the supported factors, e.g. (2, 3, 4).
        default: the factor when the run asks for none (the first by default).
    """

    factors: tuple[int, ...]
    default: int | None = None

    def _check(self, factor: float, name: str) -> int:
        if abs(factor - round(factor)) > _EPS or round(factor) not in self.factors:
            raise UnsupportedScaleError(
                f"model {name!r} does not support scale {factor:g}; supported: "
                f"{', '.join(map(str, self.factors))} (or --size WxH: the output is resized to it)")
        return round(factor)

    def resolve(self, request: ScaleRequest, width: int, height: int, name: str = "model") -> Geometry:
        if request.size is None:
            factor = self._check(request.scale if request.scale is not None else self.default or self.factors[0],
                                 name)
            size = (width * factor, height * factor)
            return Geometry((width, height), size, size, factor)
        size = target_size(request.size, width, height)
        want = max(size[0] / width, size[1] / height)
        # the smallest factor that reaches the target, so the resize after the network only shrinks
        factor = next((f for f in sorted(self.factors) if f >= want - _EPS), max(self.factors))
        return Geometry((width, height), (width * factor, height * factor), size, factor)

    def describe(self) -> str:
        return "x" + ", x".join(map(str, self.factors))


@dataclass(frozen=True)
class ContinuousRange:
    """One network for every factor in ``[low, high]``.

    Args:
        low, high: the range of factors (per axis).
        per_axis: whether the two axes may differ (a target size of another aspect ratio).
        default: the factor when the run asks for none.
    """

    low: float
    high: float
    per_axis: bool = True
    default: float = 2.0

    @property
    def factors(self) -> tuple[int, ...]:
        return ()

    def resolve(self, request: ScaleRequest, width: int, height: int, name: str = "model") -> Geometry:
        if request.size is not None:
            size = target_size(request.size, width, height)
            sx, sy = size[0] / width, size[1] / height
        else:
            sx = sy = request.scale if request.scale is not None else self.default
            size = _scaled(width, height, sx, sy)
        for s in (sx, sy):
            if not self.low - _EPS <= s <= self.high + _EPS:
                raise UnsupportedScaleError(
                    f"model {name!r} upscales by {self.low:g} to {self.high:g}; {width}x{height} -> "
                    f"{size[0]}x{size[1]} is x{s:.4g}")
        if not self.per_axis and abs(sx - sy) > max(1 / width, 1 / height) * max(sx, sy):
            raise ConfigError(f"model {name!r} scales both axes alike; {width}x{height} -> {size[0]}x{size[1]} "
                              f"is x{sx:.4g} by x{sy:.4g}")
        return Geometry((width, height), size, size, None)

    def describe(self) -> str:
        return f"any x{self.low:g}-x{self.high:g}" + (" (per axis)" if self.per_axis else "")


@dataclass(frozen=True)
class Parts:
    """Named parts running in opposite directions, one network per factor and part.

    Args:
        factors: the supported integer factors.
        directions: each part's direction: +1 enlarges by the factor, -1 shrinks by it
            (e.g. ``{"down": -1, "up": +1}``).
        default_part: the part a run without ``part`` uses.
    """

    factors: tuple[int, ...]
    directions: tuple[tuple[str, int], ...]
    default_part: str | None = None

    def resolve(self, request: ScaleRequest, width: int, height: int, name: str = "model") -> Geometry:
        parts = dict(self.directions)
        part = request.part or self.default_part or next(iter(parts))
        if part not in parts:
            raise ConfigError(f"model {name!r} has parts {', '.join(parts)}; got --part {part!r}")
        if request.size is not None:
            raise ConfigError(f"model {name!r} runs at its own factors; use --scale, not --size")
        factor = request.scale if request.scale is not None else self.factors[0]
        if abs(factor - round(factor)) > _EPS or round(factor) not in self.factors:
            raise UnsupportedScaleError(f"model {name!r} does not support scale {factor:g}; supported: "
                                        f"{', '.join(map(str, self.factors))}")
        factor = round(factor)
        if parts[part] > 0:
            size = (width * factor, height * factor)
        else:
            if width % factor or height % factor:
                raise ConfigError(f"model {name!r} part {part!r} needs sides divisible by {factor}; "
                                  f"got {width}x{height}")
            size = (width // factor, height // factor)
        return Geometry((width, height), size, size, factor, part)

    def describe(self) -> str:
        return "x" + ", x".join(map(str, self.factors)) + " (" + " / ".join(p for p, _ in self.directions) + ")"


def resolve_geometry(spec, request: ScaleRequest, width: int, height: int) -> Geometry:
    """The one place a run's output size is decided.

    Args:
        spec: the model's :class:`~streamsr.models.registry.ModelSpec`.
        request: what the run asks for.
        width, height: the input size.

    Raises:
        UnsupportedScaleError: the model cannot do the factor; ConfigError: a bad combination.
    """
    if width < 1 or height < 1:
        raise ConfigError(f"cannot upscale a {width}x{height} frame")
    if request.part is not None and not isinstance(spec.geometry, Parts):
        raise ConfigError(f"model {spec.name!r} has no parts; leave --part unset")
    geometry = spec.geometry.resolve(request, width, height, name=spec.name)
    if not all(math.isfinite(v) and v >= 1 for v in geometry.out_size):
        raise ConfigError(f"output size {geometry.out_size} is not valid")
    return geometry
