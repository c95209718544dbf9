"""ONNX export with dynamic batch/height/width, checked numerically against PyTorch, and the cache
of exported graphs in the user's cache folder.

``precision="fp16"`` bakes fp16 into the graph (weights in fp16, casts at the input and output),
which is what strongly typed TensorRT 11 needs; the graph's inputs and outputs stay float32.
``precision="int8"`` is the fp32 graph quantized with shipped ranges (:mod:`streamsr.backends.int8`).

:func:`cached_onnx` keeps each exported graph under ``onnx/`` in the user's cache
(:mod:`streamsr.cache`), named by everything that invalidates it (:class:`GraphKey`): the
network, precision, opset, a hash of the weights' bytes and a version of the code that builds and
exports it. A later run reads the file instead of building the network and exporting it again.
PyTorch is imported only when a graph is really exported.
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

import numpy as np

from ..cache import cache_dir, write_atomic
from ..errors import ConfigError, ExportError
from ..metrics import psnr
from ..models.inputs import GRIDS
from ..models.registry import ModelVariant, weights_path

if TYPE_CHECKING:
    import torch
    from torch import nn

__all__ = ["OPSET", "OUTPUT_NAME", "GraphCache", "GraphKey", "cached_onnx", "check_onnx", "code_version", "export_onnx",
           "load_cached_graph"]

log = logging.getLogger(__name__)

OUTPUT_NAME = "output"
OPSET = 17


@functools.cache
def _fp16_graph_class() -> type:
    """The float32 in → fp16 network → float32 out wrapper (defined on first use: torch is
    imported only when exporting)."""
    from torch import nn

    class Fp16Graph(nn.Module):
        """Inputs declared full-precision (query tables) stay float32."""

        def __init__(self, model: nn.Module, keep: tuple[bool, ...]):
            super().__init__()
            self.model, self.keep = model.half(), keep

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(*(x if keep else x.half() for x, keep in zip(inputs, self.keep, strict=True))).float()

    return Fp16Graph


def _dummy_inputs(variant: ModelVariant, batch: int, height: int, width: int) -> list[torch.Tensor]:
    """Inputs for an h×w LR batch: random images and maps of their declared channels, on their
    grids (an output-grid input at the variant's factor, x2 for continuous models), tables from
    their own providers (coordinates must be real coordinates, not noise)."""
    import torch

    from ..models.inputs import Grid, get_provider

    g = torch.Generator().manual_seed(0)
    f = variant.factor or 2
    grid = Grid(batch, (height, width), (height * f, width * f))
    out = []
    for i in variant.inputs:
        table = get_provider(i.provider).table if i.provider else None
        out.append(torch.from_numpy(table(i, grid)) if table else torch.rand(batch, i.channels, *grid.of(i), generator=g))
    return out


def _spatial_axes(grid: str) -> dict[int, str]:
    """Dynamic axis names of an input's grid (a broadcast axis of size 1 stays fixed)."""
    names = {"lr": ("height", "width"), "out": ("out_height", "out_width")}
    return {2 + k: names[a][k] for k, a in enumerate(GRIDS[grid]) if a != 1}


def export_onnx(
    variant: ModelVariant,
    path: str | Path | None = None,
    *,
    precision: str = "fp32",
    weights: str | Path | None = None,
    check: bool = True,
) -> bytes:
    """Export a registered model to ONNX.

    Args:
        variant: the network (``spec.variant(factor)``).
        path: where to write the file (None: only return the bytes).
        precision: "fp32" or "fp16" (fp16 weights and casts inside the graph).
        weights: user weights instead of the shipped ones.
        check: compare ONNX Runtime's output with PyTorch's on two input sizes.

    Returns:
        The serialized ONNX model.

    Raises:
        ExportError: the exporter failed or the check found a mismatch.
    """
    import torch

    if precision not in ("fp32", "fp16"):
        raise ExportError(f"unknown precision {precision!r}; use fp32 or fp16")
    model = variant.build(weights=weights)
    net = _fp16_graph_class()(model, tuple(i.full_precision for i in variant.inputs)) if precision == "fp16" else model
    names = list(variant.input_names)
    dynamic = {i.name: {0: "batch", **_spatial_axes(i.grid)} for i in variant.inputs}
    dynamic[OUTPUT_NAME] = {0: "batch", 2: "out_height", 3: "out_width"}
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter announces its deprecation
            torch.onnx.export(
                net, tuple(_dummy_inputs(variant, 1, 32, 32)), buf, dynamo=False,
                input_names=names, output_names=[OUTPUT_NAME], dynamic_axes=dynamic,
                opset_version=OPSET,
            )
    except Exception as exc:  # the exporter raises many unrelated types
        raise ExportError(f"ONNX export of {variant.name} failed: {exc}") from exc
    data = buf.getvalue()
    if check:
        check_onnx(data, model, variant, tolerance_db=30.0 if precision == "fp16" else 60.0)
    if path is not None:
        Path(path).write_bytes(data)
    return data


def check_onnx(data: bytes, model: nn.Module, variant: ModelVariant, tolerance_db: float) -> list[float]:
    """Run the ONNX graph in ONNX Runtime (CPU) and PyTorch on two input sizes; compare by PSNR.

    Args:
        data: serialized ONNX model.
        model: the float32 PyTorch module it came from.
        variant: the network it is (input names and channels).
        tolerance_db: lowest PSNR (on [0, 1] outputs) accepted.

    Returns:
        PSNR of each comparison.

    Raises:
        ExportError: a comparison fell below ``tolerance_db`` or the output shape is wrong.
    """
    import onnx
    import onnxruntime as ort
    import torch

    try:
        onnx.checker.check_model(onnx.load_from_string(data))
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"exported ONNX is invalid: {exc}") from exc
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    results = []
    for batch, h, w in ((1, 24, 40), (2, 37, 29)):
        inputs = _dummy_inputs(variant, batch, h, w)
        with torch.inference_mode():
            ref = model.float()(*inputs).numpy()
        got = session.run([OUTPUT_NAME], {n: t.numpy() for n, t in zip(variant.input_names, inputs)})[0]
        if got.shape != ref.shape:
            raise ExportError(f"ONNX output shape {got.shape} differs from PyTorch's {ref.shape}")
        db = psnr(np.clip(got, 0, 1), np.clip(ref, 0, 1), peak=1.0)
        if db < tolerance_db:
            raise ExportError(
                f"ONNX and PyTorch disagree on {variant.name}: PSNR {db:.1f} dB < {tolerance_db} dB"
            )
        results.append(db)
    return results


# ---------------------------------------------------------------------------------------------
# The cache of exported graphs

#: bump when the export changes in a way that neither the version nor the sources below show
GRAPH_FORMAT = 1


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text)


@functools.cache
def _sources_digest(extra: str | None) -> str:
    """sha256 over the code a graph comes from: the model definitions (``streamsr/models``), the
    resampling taps they use (``streamsr/metrics.py``), this module, and ``extra`` (the file
    defining a model registered from outside the package). A changed architecture in a source
    checkout, where the version stays the same, never reuses an old graph."""
    here = Path(__file__).resolve()
    package = here.parents[1]
    files = sorted(package.joinpath("models").rglob("*.py")) + [package / "metrics.py", here]
    if extra and Path(extra).resolve() not in files:
        files.append(Path(extra).resolve())
    digest = hashlib.sha256()
    for path in files:
        name = path.relative_to(package).as_posix() if path.is_relative_to(package) else path.name
        try:
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        except OSError:  # compiled-only install: the version alone tells releases apart
            continue
    return digest.hexdigest()


def code_version(variant: ModelVariant) -> str:
    """streamsr's version, PyTorch's major.minor (its exporter writes the graph), the graph
    format, and the digest of the sources (see :func:`_sources_digest`): what anything derived
    from a network's code (its graph, the memory plan's measurement of it) is keyed by."""
    from .. import __version__

    try:
        torch_version = ".".join(metadata.version("torch").split(".")[:2])
    except metadata.PackageNotFoundError:
        torch_version = "none"
    tag = f"{__version__}|torch{torch_version}|g{GRAPH_FORMAT}|{_sources_digest(variant.spec.factory_file)}"
    return f"v{_slug(__version__)}-torch{torch_version}-{hashlib.sha256(tag.encode()).hexdigest()[:10]}"


def _weights_digest(variant: ModelVariant, weights: str | Path | None) -> str | None:
    """sha256[:16] of the weights' bytes (the user's file, else the shipped one); "none" for a
    network without weights; None when the file cannot be read (the export then says why)."""
    path = Path(weights) if weights is not None else weights_path(variant.spec, variant.factor)
    if path is None:
        return "none"
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()[:16]


@dataclass(frozen=True)
class GraphKey:
    """Everything that invalidates an exported graph; :attr:`filename` spells all of it.

    Args:
        variant: the network's name (``espcn_x2``, ``irn_x2-down``: ModelVariant.name).
        precision: "fp32", "fp16" or "int8".
        opset: the ONNX opset exported to.
        weights: sha256[:16] of the weights file's bytes ("none" for a network without weights).
        code: the code's version (:func:`code_version`).
    """

    variant: str
    precision: str
    opset: int
    weights: str
    code: str

    @classmethod
    def make(cls, variant: ModelVariant, precision: str = "fp32", weights: str | Path | None = None) -> GraphKey | None:
        """The key of ``variant``'s graph with ``weights`` (None: the shipped ones); None when the
        weights file cannot be read (nothing to key on: export and let it report the problem)."""
        digest = _weights_digest(variant, weights)
        if digest is None:
            return None
        code = code_version(variant)
        if precision == "int8":  # quantized with the shipped ranges: calibrating again makes another graph
            from .int8 import ranges_digest

            code += f"-q{ranges_digest(variant)}"
        return cls(variant.name, precision, OPSET, digest, code)

    @property
    def filename(self) -> str:
        """The cached file's name."""
        return f"{self.variant}-{self.precision}-opset{self.opset}-w{self.weights}-{self.code}.onnx"


class GraphCache:
    """A folder of exported graphs named by :class:`GraphKey`.

    Args:
        folder: where graphs live (default: ``onnx/`` in the user's cache, see :mod:`streamsr.cache`).
    """

    #: folders already reported unwritable (one log line each, not one per backend loaded)
    _unwritable: ClassVar[set[Path]] = set()

    def __init__(self, folder: str | Path | None = None):
        self.folder = Path(folder) if folder else cache_dir("onnx")

    def path(self, key: GraphKey) -> Path:
        """Where the graph of ``key`` is (or would be) stored."""
        return self.folder / key.filename

    def load(self, key: GraphKey) -> bytes | None:
        """The cached graph, or None when there is none or it cannot be read. A file that cannot
        be an ONNX model (empty, or not starting with the model's first field) counts as none."""
        try:
            data = self.path(key).read_bytes()
        except OSError:
            return None
        return data if data[:1] == b"\x08" else None

    def store(self, key: GraphKey, data: bytes) -> bool:
        """Write the graph atomically; False (and one warning per folder) when the folder cannot
        be written, which only costs the next run another export."""
        try:
            write_atomic(self.path(key), data)
            return True
        except OSError as exc:
            if self.folder not in self._unwritable:
                self._unwritable.add(self.folder)
                log.warning("cannot cache the exported ONNX graph in %s (%s); exporting on every run",
                            self.folder, exc.strerror or exc)
            return False

    def list(self) -> list[Path]:
        """Every cached graph, sorted by name."""
        return sorted(self.folder.glob("*.onnx")) if self.folder.is_dir() else []


def cached_onnx(
    variant: ModelVariant,
    *,
    precision: str = "fp32",
    weights: str | Path | None = None,
    cache: GraphCache | None = None,
    refresh: bool = False,
) -> tuple[bytes, bool]:
    """``variant``'s ONNX graph from the cache, else exported (unchecked, as
    :func:`export_onnx` with ``check=False``) and cached for the next run.

    Args:
        variant: the network.
        precision: "fp32", "fp16", or "int8" (the fp32 graph, cached too, quantized: see
            :mod:`streamsr.backends.int8`).
        weights: user weights instead of the shipped ones.
        cache: the cache (default: :class:`GraphCache` in the user's cache folder).
        refresh: export again and replace the cached file (one a consumer could not load).

    Returns:
        (the serialized graph, whether it came from the cache).

    Raises:
        ExportError, WeightsError: as :func:`export_onnx`; ConfigError: int8 for a network or
            weights without int8 calibration.
    """
    cache = cache or GraphCache()
    key = GraphKey.make(variant, precision, weights)
    if precision == "int8":
        from .int8 import problem

        if why := problem(variant, weights):
            raise ConfigError(f"--precision int8: {why}")
    if key is not None and not refresh:
        data = cache.load(key)
        if data is not None:
            return data, True
    if precision == "int8":
        from .int8 import quantized_graph

        data = quantized_graph(variant, weights, cache)
    else:
        data = export_onnx(variant, precision=precision, weights=weights, check=False)
    if key is not None:
        cache.store(key, data)
    return data, False


T = TypeVar("T")


def load_cached_graph(variant: ModelVariant, load: Callable[[bytes], T], *, precision: str = "fp32",
                      weights: str | Path | None = None) -> T:
    """``load`` (a runtime's session or compiled model) of ``variant``'s graph from
    :func:`cached_onnx`. A cached graph the runtime cannot load was damaged after it was written
    (writes are atomic): it is exported again, said once, and loaded; a fresh export that fails to
    load raises the runtime's error.
    """
    data, cached = cached_onnx(variant, precision=precision, weights=weights)
    try:
        return load(data)
    except Exception as exc:  # runtimes' load errors share no base class but Exception
        if not cached:
            raise
        log.warning("the cached ONNX graph of %s could not be loaded (%s); exporting it again",
                    variant.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        data, _ = cached_onnx(variant, precision=precision, weights=weights, refresh=True)
        return load(data)
