"""int8 on the CPU: a network's fp32 graph quantized statically in ONNX Runtime's QDQ format
(per-channel symmetric int8 weights, uint8 activations), with activation ranges calibrated once on
LR patches of the training images by ``tools/calibrate_int8.py`` and shipped in
:data:`RANGES_TABLE`. ONNX Runtime and OpenVINO run the quantized graph; it is cached next to the
fp32 one (:func:`~streamsr.backends.export.cached_onnx`), so a run quantizes once.

Only convolutions are quantized, and only their inputs: every convolution (but one reading
degradation maps joined to the image) reads 8-bit data and weights, and its output stays float, so
the activation after it, a residual add and the pixel shuffle see float. Measured on ESPCN x2
(BENCHMARKS.md): quantizing the outputs too lost 0.44 dB, and OpenVINO mishandled the first
convolution's quantized output (27 dB); inputs only lose 0.05 dB. The image input's range is
[0, 1]: 8-bit frames are quantized exactly.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import tempfile
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from ..errors import ExportError
from ..models.registry import ModelVariant

__all__ = ["RANGES_TABLE", "collect_ranges", "eligible", "problem", "quantize", "quantized_graph", "quantized_tensors",
           "ranges_digest"]

log = logging.getLogger(__name__)

#: the shipped activation ranges: {"recipe": ..., "variants": {name: {"weights": sha256[:16] of the
#: weights they were calibrated with, "tensors": {tensor: [min, max]}}}}
RANGES_TABLE = Path(__file__).resolve().parents[1] / "data" / "int8_ranges.json"


@functools.cache
def _table(path: Path) -> dict[str, dict]:
    try:
        return dict(json.loads(path.read_text())["variants"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        log.warning("cannot read the int8 calibration table %s (%s); --precision int8 runs fp32", path, exc)
        return {}


def _entry(variant: ModelVariant | str) -> dict | None:
    return _table(RANGES_TABLE).get(variant if isinstance(variant, str) else variant.name)


def eligible(variant: ModelVariant) -> bool:
    """Whether ``variant`` is one int8 is calibrated for (``tools/calibrate_int8.py``): a learned
    fixed-factor network, not a part of a pair, all of whose inputs lie on the LR grid. IRN's
    parts must invert each other closely (bf16 already costs its round trip 0.10 dB; int8 is not
    measured); the any-scale networks' query coordinates must stay float32."""
    return (variant.spec.learned and variant.factor is not None and variant.part is None
            and all(i.grid == "lr" for i in variant.inputs))


def problem(variant: ModelVariant, weights: str | Path | None = None) -> str | None:
    """Why ``variant`` with ``weights`` (a file; None: the shipped ones) cannot run in int8, or
    None: the one check a run, the graph cache and the backends share."""
    entry = _entry(variant)
    if entry is None:
        networks = ", ".join(sorted(_table(RANGES_TABLE))) or "none"
        return f"{variant.name} has no int8 calibration (calibrated: {networks})"
    if weights is not None:
        from .export import _weights_digest

        digest = _weights_digest(variant, weights)  # None: unreadable, which loading reports
        if digest is not None and digest != entry["weights"]:
            return f"the int8 calibration of {variant.name} is for its shipped weights, not these"
    return None


def ranges_digest(variant: ModelVariant) -> str:
    """sha256[:8] of ``variant``'s shipped ranges: part of its int8 graph's cache key, so that
    calibrating again never reuses a graph quantized with the old ranges ("none" without)."""
    entry = _entry(variant)
    return "none" if entry is None else hashlib.sha256(json.dumps(entry, sort_keys=True).encode()).hexdigest()[:8]


def _float_convs(model) -> list:
    """The convolutions left float: those reading the network's other inputs (degradation maps)
    joined to the image. One scale would cover both (UDVD's kernel codes and noise levels beside
    pixels in [0, 1]), and a condition outside the calibrated range would be clipped (measured:
    UDVD x2 lost 3.2 dB with its first convolution quantized)."""
    others = {i.name for i in model.graph.input[1:]}
    joined = {o for n in model.graph.node if n.op_type == "Concat" and others & set(n.input) for o in n.output}
    return [n for n in model.graph.node if n.op_type == "Conv" and n.input[0] in others | joined]


def quantized_tensors(model) -> list[str]:
    """The activations quantized in ``model`` (an ``onnx.ModelProto``): every convolution's data
    input, in graph order, but those of :func:`_float_convs`."""
    left = {n.input[0] for n in _float_convs(model)}
    return list(dict.fromkeys(n.input[0] for n in model.graph.node if n.op_type == "Conv" and n.input[0] not in left))


def collect_ranges(fp32: bytes, feeds: Iterable[Mapping[str, np.ndarray]]) -> dict[str, list[float]]:
    """[min, max] of every tensor :func:`quantized_tensors` names over ``feeds`` (the graph's
    inputs, one dict per call): the calibration ``tools/calibrate_int8.py`` ships."""
    import onnx
    import onnxruntime as ort

    model = onnx.load_from_string(fp32)
    names = quantized_tensors(model)
    inputs = {i.name for i in model.graph.input}
    fetched = [n for n in names if n not in inputs]
    model.graph.output.extend(onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in fetched)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    lo = dict.fromkeys(names, np.inf)
    hi = dict.fromkeys(names, -np.inf)
    for feed in feeds:
        values = dict(zip(fetched, session.run(fetched, dict(feed)), strict=True))
        for n in names:
            v = feed[n] if n in inputs else values[n]
            lo[n], hi[n] = min(lo[n], float(v.min())), max(hi[n], float(v.max()))
    if any(np.isinf(lo[n]) for n in names):
        raise ValueError("no calibration input")
    return {n: [lo[n], hi[n]] for n in names}


def quantized_graph(variant: ModelVariant, weights: str | Path | None, cache) -> bytes:
    """``variant``'s int8 graph, quantized from its fp32 graph in ``cache`` (a
    :class:`~streamsr.backends.export.GraphCache`; exported there when missing); a cached fp32
    graph that cannot be read (damaged after it was written) is exported again, said once."""
    from .export import cached_onnx

    fp32, cached = cached_onnx(variant, weights=weights, cache=cache)
    try:
        return quantize(fp32, variant)
    except ExportError:  # the calibration does not fit the graph: exporting again cannot help
        raise
    except Exception as exc:  # a protobuf decode error, or the quantizer's, on a damaged graph
        if not cached:
            raise
        log.warning("the cached ONNX graph of %s could not be read (%s); exporting it again",
                    variant.name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return quantize(cached_onnx(variant, weights=weights, cache=cache, refresh=True)[0], variant)


def quantize(fp32: bytes, variant: ModelVariant, ranges: Mapping[str, list[float]] | None = None) -> bytes:
    """``variant``'s fp32 graph quantized with ``ranges`` (default: its shipped ones).

    Raises:
        ExportError: the ranges do not name every tensor the graph quantizes (the graph changed
            since it was calibrated).
    """
    import onnx

    if ranges is None:
        entry = _entry(variant)
        ranges = entry["tensors"] if entry else {}
    model = onnx.load_from_string(fp32)
    names, left = quantized_tensors(model), [n.name for n in _float_convs(model)]
    if not all(left):
        raise ExportError(f"the graph of {variant.name} has an unnamed convolution: it cannot be left float")
    missing = [n for n in names if n not in ranges]
    if missing:
        raise ExportError(f"the int8 calibration of {variant.name} does not name {', '.join(missing[:3])} of its "
                          "graph: calibrate it again (python tools/calibrate_int8.py)")
    # The ranges override what the calibrator sees, so it runs once on a small blank input.
    blank = {i.name: np.zeros((1, i.channels, 8, 8), np.float32) for i in variant.inputs}
    # The quantizer advises pre-processing through the root logger, which configures a stderr
    # handler for good when the root has none: it gets a do-nothing handler meanwhile, and a
    # filter drops the advice where the application has handlers of its own.
    root, quiet, spare = logging.getLogger(), _NoAdvice(), logging.NullHandler()
    with _QUANTIZING:
        bare = not root.handlers
        root.addFilter(quiet)
        if bare:
            root.addHandler(spare)
        try:
            return _quantize_static(fp32, names, left, ranges, blank)
        finally:
            root.removeFilter(quiet)
            if bare:
                root.removeHandler(spare)


#: one quantization at a time (the root logger's filter and handler are shared)
_QUANTIZING = threading.Lock()


class _NoAdvice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return "pre-processing" not in record.getMessage()


def _quantize_static(fp32: bytes, names: list[str], left: list[str], ranges, blank) -> bytes:
    """ONNX Runtime's static QDQ quantization of the convolutions but ``left``, with the ranges
    of ``names`` given (the calibrator runs once, on ``blank``, for nothing else)."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Once(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([blank])

        def get_next(self):
            return next(self.feeds, None)

    with tempfile.TemporaryDirectory() as tmp:
        source, out = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(fp32)
        quantize_static(str(source), str(out), Once(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax, op_types_to_quantize=["Conv"], nodes_to_exclude=left,
                        extra_options={"WeightSymmetric": True, "OpTypesToExcludeOutputQuantization": ["Conv"],
                                       "TensorQuantOverrides": {n: [{"rmin": np.float32(ranges[n][0]),
                                                                     "rmax": np.float32(ranges[n][1])}] for n in names}})
        return out.read_bytes()
