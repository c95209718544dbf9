"""Model registry: metadata (:class:`ModelSpec`) kept apart from constructor arguments.

The built-in models are registered by :mod:`.catalog` (:func:`add_model`, factories named as
``module:function`` so that nothing imports PyTorch before a network is built); a model defined
elsewhere can register its factory with :func:`register_model`. Everything else asks the registry
by name. A spec declares its geometry and inputs; a :class:`ModelVariant` is one network of it (a
factor's, a part's), the unit backends load, export and cache. Weights are shipped as
``models/weights/{name}_x{factor}.safetensors`` (``{name}.safetensors`` for continuous models).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, UnknownModelError, UnsupportedScaleError, WeightsError
from .geometry import GeometryKind, ScaleRequest, resolve_geometry
from .inputs import IMAGE, ModelInput, conditioned

if TYPE_CHECKING:
    from torch import nn

__all__ = [
    "AUTO",
    "AUTO_PREFERENCE",
    "ModelSpec",
    "ModelVariant",
    "add_model",
    "build_model",
    "check_safetensors",
    "count_parameters",
    "get_model",
    "list_models",
    "load_weights",
    "model_kwargs",
    "pick_model",
    "register_model",
    "resolve_weights",
    "shipped_alternatives",
    "weights_path",
]


@dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """What the rest of streamsr needs to know about an architecture.

    Args:
        name: registry name used on the command line.
        paper: the paper the architecture implements.
        geometry: what it does to the picture's size (:mod:`streamsr.models.geometry`).
        inputs: the network's inputs in call order, the image first (:mod:`streamsr.models.inputs`).
        part_inputs: for models made of parts, each part's inputs: ``(("down", (...)), ...)``, or
            a function ``(factor, part) -> inputs`` where they differ by factor (IRN's z).
        objective: "psnr" (fidelity) or "perceptual" (adversarially trained; PSNR is not its goal).
        colour: colour space the network works in; frames are converted to it by the pipeline.
        description: one line for ``streamsr models``.
        pad_multiple: input sides must be a multiple of this (1: any size).
        learned: it has weights (False: a fixed filter, e.g. the plain area downscale).
        halo: LR pixels of context an output pixel depends on, each side: its receptive field's
            radius where the architecture bounds it tightly (ESPCN), else the context beyond which
            an output pixel moves by less than half an 8-bit level (measured, said where declared);
            tile reuse gives each tile this much overlap (None: ``--tile-overlap``).
        train_loss: ``loss(model, inputs, hr) -> scalar tensor`` used by ``streamsr train``
            for this model (None: the config's l1/mse); UDVD supervises every stage. A function
            or a ``"module:function"`` reference, imported when first used.
        factory: ``factory(factor, **variant_kwargs) -> nn.Module``, or a ``"module:function"``
            reference to it: the built-in models name theirs (:mod:`streamsr.models.catalog`), so
            that nothing imports PyTorch until a network is really built.
    """

    name: str
    paper: str
    geometry: GeometryKind
    inputs: tuple[ModelInput, ...] = (IMAGE,)
    part_inputs: tuple[tuple[str, tuple[ModelInput, ...]], ...] | Callable = ()
    objective: str = "psnr"
    colour: str = "rgb"
    description: str = ""
    pad_multiple: int = 1
    learned: bool = True
    halo: int | None = None
    train_loss: Callable | str | None = field(default=None, repr=False, compare=False)
    factory: Callable[..., nn.Module] | str | None = field(repr=False, compare=False, default=None)

    def build(self, factor: int | None, **kwargs) -> nn.Module:
        """An untrained network of ``factor`` (the factory called; its module imported first)."""
        return _resolve(self.factory)(factor, **kwargs)

    @property
    def loss(self) -> Callable | None:
        """The model's own training loss (None: the config's)."""
        return _resolve(self.train_loss) if self.train_loss is not None else None

    @property
    def factory_file(self) -> str | None:
        """The source file defining the network, found without importing it (None: unknown)."""
        if isinstance(self.factory, str):
            found = importlib.util.find_spec(self.factory.partition(":")[0])
            return found.origin if found is not None else None
        try:
            return inspect.getsourcefile(self.factory) if self.factory is not None else None
        except TypeError:
            return None

    @property
    def scales(self) -> tuple[int, ...]:
        """Integer factors that have a network (and weights) of their own; empty for continuous models."""
        return self.geometry.factors

    @property
    def parts(self) -> tuple[str | None, ...]:
        """The networks of one factor by part: ``("down", "up")`` for a model of parts, else ``(None,)``."""
        return tuple(p for p, _ in getattr(self.geometry, "directions", ())) or (None,)

    @property
    def conditioned(self) -> bool:
        """Whether the model is told the degradation (blur, noise)."""
        return conditioned(self.inputs)

    def inputs_of(self, part: str | None = None, factor: int | None = None) -> tuple[ModelInput, ...]:
        """The inputs of ``part`` (or of the whole model) at ``factor``."""
        if not part:
            return self.inputs
        return self.part_inputs(factor, part) if callable(self.part_inputs) else dict(self.part_inputs)[part]

    def weights_file(self, factor: int | None) -> str:
        """File name of the shipped weights of a factor (one file for a continuous model)."""
        return f"{self.name}_x{factor}.safetensors" if factor is not None else f"{self.name}.safetensors"

    def variant(self, factor: int | None, part: str | None = None) -> ModelVariant:
        """The network that runs at ``factor`` (and ``part``)."""
        return ModelVariant(self, factor, part)


@dataclass(frozen=True)
class ModelVariant:
    """One network of a model: a factor's (and a part's). What backends load and export.

    Args:
        spec: the model.
        factor: the integer factor (None for continuous models).
        part: the part (None for single-part models).
    """

    spec: ModelSpec
    factor: int | None = None
    part: str | None = None

    @property
    def name(self) -> str:
        """``espcn_x2``, ``liif``, ``irn_x2-down``: graph and engine names start with it."""
        base = self.spec.weights_file(self.factor).removesuffix(".safetensors")
        return f"{base}-{self.part}" if self.part else base

    @property
    def inputs(self) -> tuple[ModelInput, ...]:
        """This network's inputs, image first."""
        return self.spec.inputs_of(self.part, self.factor)

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(i.name for i in self.inputs)

    @property
    def shrinks(self) -> bool:
        """Whether this network makes the picture smaller (a ``down`` part)."""
        return dict(getattr(self.spec.geometry, "directions", ())).get(self.part, 1) < 0

    def build(self, *, pretrained: bool = True, weights: str | Path | None = None) -> nn.Module:
        """The network in eval mode (see :func:`build_model`)."""
        model = build_model(self.spec.name, self.factor, pretrained=pretrained, weights=weights)
        return getattr(model, self.part).eval() if self.part else model


def _resolve(ref: Callable | str) -> Callable:
    """A function, or the one a ``"module:function"`` reference names (its module imported)."""
    if not isinstance(ref, str):
        return ref
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


_REGISTRY: dict[str, ModelSpec] = {}


def add_model(spec: ModelSpec) -> ModelSpec:
    """Register ``spec``, whose ``factory`` is set (a function or a ``"module:function"`` reference).

    Raises:
        ValueError: a model of that name is already registered, or no factory.
    """
    if spec.factory is None:
        raise ValueError(f"model {spec.name!r} has no factory")
    if spec.name in _REGISTRY:
        raise ValueError(f"model {spec.name!r} is already registered")
    _REGISTRY[spec.name] = spec
    return spec


def register_model(spec: ModelSpec) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator registering ``factory(factor, **variant_kwargs) -> nn.Module`` under ``spec.name``
    (``factor`` is None for continuous models).

    Args:
        spec: the model's metadata (without factory; it is filled in here).

    Raises:
        ValueError: a model of that name is already registered.
    """

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        add_model(ModelSpec(**{**spec.__dict__, "factory": factory}))
        return factory

    return wrap


def list_models() -> list[str]:
    """Names of every registered model, sorted."""
    return sorted(_REGISTRY)


def get_model(name: str, scale: float | None = None) -> ModelSpec:
    """Look up a model's spec, checking the scale when given.

    Args:
        name: registry name.
        scale: upscale factor to validate, or None.

    Raises:
        UnknownModelError: no such model (the message lists the known ones).
        UnsupportedScaleError: the model does not support ``scale``.
    """
    try:
        spec = _REGISTRY[name]
    except KeyError:
        raise UnknownModelError(
            f"unknown model {name!r}; available: {', '.join(list_models())}"
        ) from None
    if scale is not None:
        spec.geometry.resolve(ScaleRequest(scale=scale), 240, 240, name=name)
    return spec


#: ``--model auto``: the name, and the models it tries in order (the first that reaches the
#: requested size with its own network, without resizing its output)
AUTO = "auto"
AUTO_PREFERENCE = ("espcn", "lte")


def pick_model(request: ScaleRequest, width: int, height: int) -> str:
    """The model ``--model auto`` runs for ``request`` on ``width``×``height`` frames: the fastest
    (ESPCN) where one of its factors gives the size exactly, else the arbitrary-scale LTE.

    Raises:
        UnsupportedScaleError: no model of :data:`AUTO_PREFERENCE` reaches it.
    """
    for name in AUTO_PREFERENCE:
        try:
            if not resolve_geometry(get_model(name), request, width, height).resized:
                return name
        except (UnsupportedScaleError, ConfigError):
            continue
    raise UnsupportedScaleError(f"--model auto: none of {', '.join(AUTO_PREFERENCE)} reaches "
                                f"{request.size or request.scale} from {width}x{height}; pick a model")


def weights_path(spec: ModelSpec, scale: int | None) -> Path | None:
    """Path of the shipped weights for ``spec`` at ``scale``, or None when none are shipped."""
    path = Path(str(resources.files("streamsr.models") / "weights" / spec.weights_file(scale)))
    return path if path.is_file() else None


def shipped_alternatives(spec: ModelSpec, scale: int | None) -> dict[str, Path]:
    """Other weights shipped for ``spec`` at ``scale``, by name: ``{base}-{name}.safetensors``
    beside the default ones (IRN x2's ``codec``: trained through a real codec)."""
    base = spec.weights_file(scale).removesuffix(".safetensors")
    folder = Path(str(resources.files("streamsr.models") / "weights"))
    return {p.name[len(base) + 1 : -len(".safetensors")]: p for p in sorted(folder.glob(f"{base}-*.safetensors"))}


def resolve_weights(spec: ModelSpec, scale: int | None, weights: str | Path | None) -> str | Path | None:
    """What ``--weights`` names: a file, or (a bare word that is not a file) shipped alternative
    weights of this network (:func:`shipped_alternatives`); None stays None (the default weights).

    Raises:
        WeightsError: a bare word this network ships no weights under.
    """
    if weights is None or Path(weights).suffix or Path(weights).exists() or len(Path(weights).parts) > 1:
        return weights
    alternatives = shipped_alternatives(spec, scale)
    if str(weights) in alternatives:
        return alternatives[str(weights)]
    raise WeightsError(f"--weights {weights}: no such file, and {spec.variant(scale).name} ships no weights named "
                       f"{str(weights)!r}" + (f" (it ships: {', '.join(alternatives)})" if alternatives else ""))


#: how a PyTorch checkpoint (never unpickled here) becomes a weights file streamsr reads
_CONVERT = ("convert it once where you trust it: python -c \"import torch, safetensors.torch as st; "
            "sd = torch.load('IN.pth', weights_only=True); st.save_file({k: v.contiguous() for k, v in "
            "sd.items()}, 'OUT.safetensors')\"")


def check_safetensors(path: str | Path) -> None:
    """Refuse, with one line, a weights file that is not ``.safetensors`` (read from its first
    bytes, never unpickled): a PyTorch checkpoint gets the one-line conversion.

    Raises:
        WeightsError: missing, unreadable, or another format.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise WeightsError(f"cannot read weights {path}: {exc.strerror or exc}") from exc
    size = int.from_bytes(head[:8], "little") if len(head) >= 8 else -1
    if len(head) >= 9 and 2 <= size <= path.stat().st_size - 8 and head[8:9] == b"{":
        return  # a safetensors header: an 8-byte length, then JSON
    if head[:4] == b"PK\x03\x04" or head[:1] == b"\x80":  # torch.save's zip, or a bare pickle
        raise WeightsError(f"{path} is a PyTorch checkpoint (pickle), which streamsr never loads (it can run "
                           f"code); only .safetensors weights are accepted; {_CONVERT}")
    raise WeightsError(f"{path} is not a .safetensors file (the only weights format streamsr reads)")


def load_weights(model: nn.Module, path: str | Path) -> None:
    """Load a ``.safetensors`` state dict into ``model`` (strict: every key must match).

    Raises:
        WeightsError: missing file, unreadable file or mismatched keys/shapes.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    check_safetensors(path)
    try:
        state = load_file(str(path))
        model.load_state_dict(state, strict=True)
    except (RuntimeError, OSError, ValueError, SafetensorError) as exc:
        raise WeightsError(f"cannot load weights {path}: {exc}") from exc


def build_model(
    name: str, scale: int | None, *, pretrained: bool = True, weights: str | Path | None = None
) -> nn.Module:
    """Instantiate a registered model in eval mode, with weights.

    Args:
        name: registry name.
        scale: the integer factor of the variant (None for continuous models).
        pretrained: load the shipped weights (error if none are shipped).
        weights: a user ``.safetensors`` file, which takes precedence over the shipped one, or
            the name of shipped alternative weights (:func:`resolve_weights`).

    Raises:
        UnknownModelError, UnsupportedScaleError, WeightsError.
    """
    spec = get_model(name, scale)
    if not spec.learned:
        return spec.build(scale).eval()
    weights = resolve_weights(spec, scale, weights)
    path = Path(weights) if weights is not None else (weights_path(spec, scale) if pretrained else None)
    if pretrained and path is None:
        raise WeightsError(f"no shipped weights for {spec.variant(scale).name}; pass a .safetensors file "
                           "with --weights")
    model = spec.build(scale, **(model_kwargs(path) if path is not None else {}))
    if path is not None:
        load_weights(model, path)
    return model.eval()


def model_kwargs(path: str | Path) -> dict:
    """Constructor arguments recorded in a weights file's metadata (``model_kwargs``), so weights
    of another variant (the paper-size one, say) build the network they fit."""
    import json

    from safetensors import SafetensorError, safe_open

    check_safetensors(path)
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
        return json.loads(meta.get("model_kwargs", "{}"))
    except (OSError, ValueError, SafetensorError) as exc:
        raise WeightsError(f"cannot read weights {path}: {exc}") from exc


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


