"""ONNX export with dynamic batch/height/width, checked numerically against PyTorch.

``precision="fp16"`` bakes fp16 into the graph (weights in fp16, casts at the input and output),
which is what strongly typed TensorRT 11 needs; the graph's inputs and outputs stay float32.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import ExportError
from ..metrics import psnr
from ..models.inputs import GRIDS
from ..models.registry import ModelVariant

__all__ = ["OPSET", "OUTPUT_NAME", "check_onnx", "export_onnx"]

OUTPUT_NAME = "output"
OPSET = 17


class _Fp16Graph(nn.Module):
    """float32 in → fp16 network → float32 out; inputs declared full-precision (query tables)
    stay float32."""

    def __init__(self, model: nn.Module, keep: tuple[bool, ...]):
        super().__init__()
        self.model, self.keep = model.half(), keep

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(*(x if keep else x.half() for x, keep in zip(inputs, self.keep, strict=True))).float()


def _dummy_inputs(variant: ModelVariant, batch: int, height: int, width: int) -> list[torch.Tensor]:
    """Inputs for an h×w LR batch: random images and maps of their declared channels, on their
    grids (an output-grid input at the variant's factor, x2 for continuous models), tables from
    their own providers (coordinates must be real coordinates, not noise)."""
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
    if precision not in ("fp32", "fp16"):
        raise ExportError(f"unknown precision {precision!r}; use fp32 or fp16")
    model = variant.build(weights=weights)
    net = _Fp16Graph(model, tuple(i.full_precision for i in variant.inputs)) if precision == "fp16" else model
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
