"""Every registered network once per variant, and its inputs for a batch: what registry-driven
tests parametrize over, so a new model (a fixed-factor one, one that takes any scale, or one made
of parts running in opposite directions) is tested for free."""

from __future__ import annotations

import numpy as np

from streamsr.models import ScaleRequest, get_model, list_models, resolve_geometry
from streamsr.models.inputs import InputAssembler

#: the factor a model that takes any scale is tested at (fractional: the hard case)
ANY_SCALE = 2.5


def model_cases(learned_only: bool = False) -> list[tuple[str, int | None, str | None]]:
    """(model, factor, part) for every network: each factor of a fixed-factor model, None once for
    a model that takes any scale, each factor and part of a model made of parts."""
    cases = []
    for name in list_models():
        spec = get_model(name)
        if learned_only and not spec.learned:
            continue
        parts = [p for p, _ in getattr(spec.geometry, "directions", ())] or [None]
        cases += [(name, factor, part) for factor in (spec.scales or (None,)) for part in parts]
    return cases


def case_id(case) -> str:
    name, factor, part = case
    return f"{name}-x{factor or ANY_SCALE}" + (f"-{part}" if part else "")


def scale_of(name: str, factor: int | None) -> float:
    """The factor a case runs at."""
    return factor if factor is not None else ANY_SCALE


def out_size(name: str, factor: int | None, h: int, w: int, part: str | None = None) -> tuple[int, int]:
    """(H, W) of the output of an h×w input."""
    g = resolve_geometry(get_model(name), ScaleRequest(scale=scale_of(name, factor), part=part), w, h)
    return g.out_size[1], g.out_size[0]


def network_inputs(name: str, factor: int | None, n: int, h: int, w: int, rng, maps: float = 0.1,
                   part: str | None = None):
    """(batch, extra) for an n×3×h×w batch: degradation maps random (times ``maps``), tables and
    latents as the pipeline builds them."""
    variant = get_model(name).variant(factor, part)
    batch = rng.random((n, 3, h, w), dtype=np.float32)
    tables = [i for i in variant.inputs if i.role in ("query", "latent")]
    extra = InputAssembler(tables).arrays([None] * n, h, w, out=out_size(name, factor, h, w, part)) if tables else {}
    for i in variant.inputs[1:]:
        if i.role == "degradation":
            extra[i.name] = rng.random((n, i.channels, h, w), dtype=np.float32) * maps
    return batch, extra
