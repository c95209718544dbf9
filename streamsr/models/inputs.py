"""A model's inputs, declared with their roles, and the providers that build the non-image ones.

Every input of a network is a :class:`ModelInput`: name, channels, role (the LR image, a
degradation map, a latent, a query table) and the grid it lives on (the LR frame, the output,
per query). Everything that feeds a network — the pipeline's two colour chains, evaluation, bench,
training, ONNX export (dummy inputs) and the TensorRT profile — reads these declarations; nothing
guesses from the number of inputs.

Inputs other than the image are built by a provider registered by name. Today's providers turn a
:class:`Conditioning` (what a degradation-aware model is told about one frame: the blur kernel's
code and the noise level) into one value per channel, stretched over the grid.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError

__all__ = [
    "GRIDS",
    "IMAGE",
    "ROLES",
    "Conditioning",
    "Grid",
    "InputAssembler",
    "ModelInput",
    "Provider",
    "conditioned",
    "get_provider",
    "grid_size",
    "needs_noise",
    "output_axes",
    "register_provider",
    "register_table_provider",
    "run_conditioning",
]

ROLES = ("image", "degradation", "latent", "query")
#: where an input lives: each grid's (height, width) axes are the LR frame's ("lr"), the output's
#: ("out") or a broadcast axis of size 1; "rows" and "cols" are tables with one entry per output
#: row / column. Tiling, export's dynamic axes and the TensorRT profile all read this.
GRIDS = {
    "lr": ("lr", "lr"),
    "output": ("out", "out"),
    "rows": ("out", 1),
    "cols": (1, "out"),
}


def grid_size(grid: str, lr: tuple[int, int], out: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) of ``grid`` for an LR frame of ``lr`` and an output of ``out`` (h, w)."""
    return tuple(lr[k] if a == "lr" else out[k] if a == "out" else 1  # type: ignore[index]
                 for k, a in enumerate(GRIDS[grid]))


def output_axes(grid: str) -> tuple[bool, bool]:
    """Which of a grid's (height, width) axes are the output's."""
    return tuple(a == "out" for a in GRIDS[grid])  # type: ignore[return-value]


@dataclass(frozen=True)
class ModelInput:
    """One network input.

    Args:
        name: the graph's input name (ONNX, TensorRT, Triton).
        channels: channels (the size of the feature axis).
        role: "image" (the frame), "degradation" (what the model is told about blur/noise),
            "latent" (a sampled code, IRN's z), "query" (coordinates of output pixels).
        grid: "lr" (the input frame's H×W), "output" (the output's H×W), "rows" / "cols" (one
            entry per output row / column: H×1 / 1×W).
        provider: registry name of what builds it (None only for the image).
        lr_index_channels: channels that hold LR pixel indices along the input's axis (a "rows"
            table's LR rows, a "cols" table's LR columns): a tiler that crops the LR frame shifts
            them by the crop's start.
    """

    name: str
    channels: int
    role: str = "image"
    grid: str = "lr"
    provider: str | None = None
    lr_index_channels: tuple[int, ...] = ()

    @property
    def full_precision(self) -> bool:
        """Kept in float32 when the network runs in fp16: query tables hold LR pixel indices
        (fp16 counts whole numbers exactly only up to 2048) and coordinates whose 1e-6 tie-break
        fp16 would lose."""
        return self.role == "query"

    @property
    def per_batch(self) -> bool:
        """One value for a whole batch: the any-scale decoders read the first frame's query table
        only (every frame of a batch has the same size), so frames or tiles whose tables differ
        must not share a call."""
        return self.role == "query"

    def __post_init__(self) -> None:
        if self.role not in ROLES or self.grid not in GRIDS:
            raise ValueError(f"input {self.name!r}: role must be one of {ROLES}, grid one of {GRIDS}")
        if (self.role == "image") != (self.provider is None):
            raise ValueError(f"input {self.name!r}: only the image comes without a provider")


IMAGE = ModelInput("image", 3)


@dataclass(frozen=True)
class Conditioning:
    """What a degradation-aware model is told about one frame.

    Args:
        kernel_code: the blur kernel's SRMD code (15 values).
        noise: the noise σ on the 0–255 scale.
    """

    kernel_code: np.ndarray
    noise: float = 0.0


@dataclass(frozen=True)
class Grid:
    """The sizes of one batch's grids.

    Args:
        n: frames in the batch.
        lr: (height, width) of the frames going in.
        out: (height, width) of the network's output (None where nobody needs it).
    """

    n: int
    lr: tuple[int, int]
    out: tuple[int, int] | None = None

    def of(self, i: ModelInput) -> tuple[int, int]:
        """(height, width) of input ``i``'s grid."""
        if i.grid != "lr" and self.out is None:
            raise ConfigError(f"input {i.name!r} lives on the {i.grid} grid of the output; its size is not known here")
        return grid_size(i.grid, self.lr, self.out)


@dataclass(frozen=True)
class Provider:
    """Builds one kind of input, in one of two ways.

    Args:
        name: registry name.
        vector: one frame's :class:`Conditioning` → one value per channel (the input is that
            vector at every pixel of its grid).
        table: ``table(input, grid) -> (n, C, h, w)`` array that depends on the grid's sizes only
            (query coordinates, a latent drawn once): built once per grid and reused.
        needs_noise: the value depends on the frame's noise level (estimated per frame unless told).
    """

    name: str
    vector: Callable[[Conditioning], np.ndarray] | None = None
    table: Callable[[ModelInput, Grid], np.ndarray] | None = None
    needs_noise: bool = False


_PROVIDERS: dict[str, Provider] = {}


def _register(provider: Provider) -> None:
    if provider.name in _PROVIDERS:
        raise ValueError(f"input provider {provider.name!r} is already registered")
    _PROVIDERS[provider.name] = provider


def register_provider(name: str, *, needs_noise: bool = False):
    """Decorator registering ``vector(conditioning) -> (C,) array`` as provider ``name``.

    Raises:
        ValueError: the name is taken.
    """

    def wrap(fn: Callable[[Conditioning], np.ndarray]):
        _register(Provider(name, vector=fn, needs_noise=needs_noise))
        return fn

    return wrap


def register_table_provider(name: str):
    """Decorator registering ``table(input, grid) -> (n, C, h, w) array`` as provider ``name``.

    Raises:
        ValueError: the name is taken.
    """

    def wrap(fn: Callable[[ModelInput, Grid], np.ndarray]):
        _register(Provider(name, table=fn))
        return fn

    return wrap


def get_provider(name: str) -> Provider:
    """The provider registered as ``name``.

    Raises:
        ConfigError: no such provider.
    """
    try:
        return _PROVIDERS[name]
    except KeyError:
        raise ConfigError(f"unknown input provider {name!r}; known: {', '.join(sorted(_PROVIDERS))}") from None


@register_provider("kernel_code")
def _kernel_code(c: Conditioning) -> np.ndarray:
    return np.asarray(c.kernel_code, np.float32)


@register_provider("noise_level", needs_noise=True)
def _noise_level(c: Conditioning) -> np.ndarray:
    return np.array([c.noise / 255.0], np.float32)


def conditioned(inputs: Sequence[ModelInput]) -> bool:
    """Whether a model is told the degradation (``--noise``/``--blur`` mean something to it)."""
    return any(i.role == "degradation" for i in inputs)


def needs_noise(inputs: Sequence[ModelInput]) -> bool:
    """Whether some input depends on the frame's noise level."""
    return any(i.provider is not None and get_provider(i.provider).needs_noise for i in inputs)


@functools.lru_cache(maxsize=32)
def _code_of_blur(blur: float) -> np.ndarray:
    from ..degradation import Degradation

    return Degradation(blur=blur).code()


def run_conditioning(blur: float, noise: float) -> Conditioning:
    """The conditioning of a run's frame: an isotropic blur of ``blur`` HR pixels, noise σ."""
    return Conditioning(_code_of_blur(float(blur)), float(noise))


class InputAssembler:
    """Builds a batch's extra inputs (everything but the image) for one model.

    Inputs whose provider does not depend on the frame are built once per batch shape and reused
    (a 15-channel code map of a 1080p batch is 120 MB: not something to rebuild per frame), on
    the host and, for the device colour chain, on the device.

    Args:
        inputs: the model's inputs (the image is skipped).
    """

    def __init__(self, inputs: Sequence[ModelInput]):
        self.inputs = [i for i in inputs if i.role != "image"]
        self._constant: dict[str, tuple] = {}  # name -> (key, array); one shape at a time
        self._on_device: dict[str, tuple] = {}  # name -> (id of the host array, tensor)

    def vectors(self, conds: Sequence[Conditioning]) -> dict[str, np.ndarray]:
        """``{name: (n, C) float32}`` of the vector inputs, one row per frame."""
        return {i.name: np.stack([get_provider(i.provider).vector(c) for c in conds]).astype(np.float32)
                for i in self.inputs if get_provider(i.provider).vector is not None}

    def _table(self, i: ModelInput, grid: Grid) -> np.ndarray:
        key = (grid.n, grid.of(i))
        cached = self._constant.get(i.name)
        if cached is None or cached[0] != key:
            value = np.ascontiguousarray(get_provider(i.provider).table(i, grid))
            if not value.flags.writeable:  # a broadcast view: torch wants memory of its own
                value = value.copy()
            if value.shape != (grid.n, i.channels, *grid.of(i)):
                raise ValueError(f"provider {i.provider!r} built {value.shape} for input {i.name!r}")
            cached = self._constant[i.name] = (key, value)
        return cached[1]

    def arrays(self, conds: Sequence[Conditioning], h: int, w: int,
               out: tuple[int, int] | None = None) -> dict[str, np.ndarray]:
        """``{name: (n, C, gh, gw)}`` for an h×w batch (``out``: the output's (height, width),
        for inputs on the output grid)."""
        grid = Grid(len(conds), (h, w), out)
        result = {i.name: self._table(i, grid) for i in self.inputs if get_provider(i.provider).table is not None}
        for name, rows in self.vectors(conds).items():
            key = (rows.tobytes(), rows.shape, h, w)
            cached = self._constant.get(name)
            if cached is not None and cached[0] == key:
                result[name] = cached[1]
                continue
            value = np.ascontiguousarray(np.broadcast_to(rows[:, :, None, None], (*rows.shape, h, w)))
            if not get_provider(self._provider_of(name)).needs_noise:
                self._constant[name] = (key, value)
            result[name] = value
        return result

    def tensors(self, conds: Sequence[Conditioning], h: int, w: int, device,
                out: tuple[int, int] | None = None) -> dict:
        """Like :meth:`arrays`, as tensors on ``device``: vector inputs stretched there (no
        per-pixel upload), tables uploaded once per grid."""
        import torch

        n = len(conds)
        result = {k: torch.from_numpy(v).to(device)[:, :, None, None].expand(n, -1, h, w)
                  for k, v in self.vectors(conds).items()}
        grid = Grid(n, (h, w), out)
        for i in self.inputs:
            if get_provider(i.provider).table is None:
                continue
            host = self._table(i, grid)
            cached = self._on_device.get(i.name)
            if cached is None or cached[0] is not host:
                cached = self._on_device[i.name] = (host, torch.from_numpy(host).to(device))
            result[i.name] = cached[1]
        return result

    def _provider_of(self, name: str) -> str:
        return next(i.provider for i in self.inputs if i.name == name)
