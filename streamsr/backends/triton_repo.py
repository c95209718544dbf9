"""A Triton Inference Server model repository for a streamsr network.

:func:`export_repository` writes ``repo/<model>/config.pbtxt`` and ``repo/<model>/1/`` with the
model file of a platform: ``onnxruntime_onnx`` (the exported ONNX graph), ``tensorrt_plan`` (an
engine built by :func:`streamsr.backends.engine.build_engine`, on the GPU it will run on) or
``python`` (a Python-backend ``model.py`` that runs the ONNX graph with ONNX Runtime: what the
``tritonserver`` bundled in the ``nvidia-pytriton`` wheel can serve). The configuration declares
every input by name with its dims (``[C, -1, -1]`` on the LR grid, ``[C, -1, 1]`` for a table of
output rows...), dynamic batching and instance groups, and carries the variant's name in its
parameters so that a client can tell a ×4 network from a ×2 one with the same inputs. It is
checked by parsing it into Triton's own ``ModelConfig`` protobuf. A local server on such a
repository: :mod:`streamsr.backends.triton_server`.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import BackendUnavailableError, ConfigError, ExportError
from ..models.inputs import GRIDS, ModelInput
from ..models.registry import ModelVariant
from .export import OUTPUT_NAME, export_onnx

__all__ = [
    "PLATFORMS",
    "VARIANT_PARAMETER",
    "export_repository",
    "input_dims",
    "model_config_text",
    "parse_model_config",
    "triton_model_name",
]

PLATFORMS = ("onnxruntime_onnx", "tensorrt_plan", "python")
#: the parameter of config.pbtxt naming the streamsr network a model is (checked by the client)
VARIANT_PARAMETER = "streamsr_variant"

# The Python-backend model: ONNX Runtime on model.onnx, requests of equal shapes run as one batch.
_PYTHON_MODEL = '''"""Triton Python-backend model written by streamsr: runs model.onnx with ONNX Runtime."""

import contextlib
import io
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

# A stub built against numpy 1 (nvidia-pytriton's) reads numpy 2 arrays as empty: tensors then
# travel as DLPack, which needs no numpy ABI.
_DLPACK = int(np.__version__.split(".")[0]) >= 2


class _Capsule:
    def __init__(self, capsule):
        self.capsule = capsule

    def __dlpack__(self, **kwargs):
        return self.capsule

    def __dlpack_device__(self):
        return (1, 0)  # kDLCPU


def _array(tensor):
    return np.from_dlpack(_Capsule(tensor.to_dlpack())) if _DLPACK else tensor.as_numpy()


def _tensor(name, array):
    array = np.ascontiguousarray(array, dtype=np.float32)
    if not _DLPACK:
        return pb_utils.Tensor(name, array)
    with contextlib.redirect_stderr(io.StringIO()):  # the stub prints a harmless capsule-name probe
        return pb_utils.Tensor.from_dlpack(name, array)


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.inputs = [i["name"] for i in config["input"]]
        self.output = config["output"][0]["name"]
        threads = int(config.get("parameters", {}).get("threads", {}).get("string_value", "0") or 0)
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        arrays = [[_array(pb_utils.get_input_tensor_by_name(r, n)) for n in self.inputs] for r in requests]
        groups = {}
        for k, inputs in enumerate(arrays):  # one ONNX Runtime call per shape: the batch Triton made
            groups.setdefault(tuple(x.shape[1:] for x in inputs), []).append(k)
        responses = [None] * len(requests)
        for members in groups.values():
            feeds = {n: np.concatenate([arrays[k][j] for k in members]) for j, n in enumerate(self.inputs)}
            try:
                out = self.session.run([self.output], feeds)[0]
            except Exception as exc:  # the caller gets ONNX Runtime's message
                for k in members:
                    responses[k] = pb_utils.InferenceResponse(output_tensors=[], error=pb_utils.TritonError(str(exc)))
                continue
            start = 0
            for k in members:
                n = arrays[k][0].shape[0]
                responses[k] = pb_utils.InferenceResponse(output_tensors=[_tensor(self.output, out[start:start + n])])
                start += n
        return responses
'''


def triton_model_name(variant: ModelVariant) -> str:
    """The model's name in the repository (and a client's default): the variant's (``udvd_x2``)."""
    return variant.name


def input_dims(i: ModelInput) -> list[int]:
    """Triton dims (batch excluded) of an input: channels, then -1 for an axis of the LR frame or
    the output, 1 for a broadcast axis."""
    return [i.channels, *(1 if axis == 1 else -1 for axis in GRIDS[i.grid])]


def _preferred(max_batch: int) -> list[int]:
    sizes, b = [], 2
    while b < max_batch:
        sizes.append(b)
        b *= 2
    return [*sizes, max_batch] if max_batch > 1 else []


def model_config_text(variant: ModelVariant, *, platform: str, name: str | None = None, max_batch: int = 8,
                      instances: int = 1, kind: str = "auto", max_queue_delay_us: int = 2000,
                      threads: int = 0) -> str:
    """The ``config.pbtxt`` of a network.

    Args:
        variant: the network.
        platform: one of :data:`PLATFORMS`.
        name: the model's name (default :func:`triton_model_name`).
        max_batch: the most frames the server batches into one execution (0: no batching).
        instances: model instances (parallel executions) per device.
        kind: "cpu", "gpu" or "auto" (GPU for ONNX Runtime and TensorRT, CPU for python).
        max_queue_delay_us: how long the dynamic batcher may hold a request to fill a batch.
        threads: ONNX Runtime intra-op threads of each python-backend instance (0: its default).

    Raises:
        ConfigError: unknown platform or kind, or a negative count.
    """
    if platform not in PLATFORMS:
        raise ConfigError(f"unknown Triton platform {platform!r}; use {', '.join(PLATFORMS)}")
    if kind not in ("auto", "cpu", "gpu"):
        raise ConfigError(f"unknown instance kind {kind!r}; use auto, cpu or gpu")
    if max_batch < 0 or instances < 1 or max_queue_delay_us < 0:
        raise ConfigError("--max-batch must be >= 0, --instances >= 1 and the queue delay >= 0")
    if platform == "tensorrt_plan" and kind == "cpu":
        raise ConfigError("a TensorRT plan runs on a GPU only; use --kind gpu or auto")
    if kind == "auto":
        kind = "cpu" if platform == "python" else "gpu"
    lines = [f'name: "{name or triton_model_name(variant)}"',
             'backend: "python"' if platform == "python" else f'platform: "{platform}"',
             f"max_batch_size: {max_batch}"]
    for i in variant.inputs:
        lines.append(f'input {{ name: "{i.name}" data_type: TYPE_FP32 dims: {input_dims(i)} }}')
    lines.append(f'output {{ name: "{OUTPUT_NAME}" data_type: TYPE_FP32 dims: [3, -1, -1] }}')
    if max_batch > 1:
        preferred = ", ".join(str(b) for b in _preferred(max_batch))
        lines.append(f"dynamic_batching {{ preferred_batch_size: [{preferred}] "
                     f"max_queue_delay_microseconds: {max_queue_delay_us} }}")
    lines.append(f"instance_group [ {{ count: {instances} kind: KIND_{kind.upper()} }} ]")
    lines.append(f'parameters {{ key: "{VARIANT_PARAMETER}" value: {{ string_value: "{variant.name}" }} }}')
    if platform == "python" and threads:
        lines.append(f'parameters {{ key: "threads" value: {{ string_value: "{threads}" }} }}')
    return "\n".join(lines) + "\n"


def parse_model_config(text: str):
    """Parse ``config.pbtxt`` text into Triton's ``ModelConfig`` protobuf (from tritonclient).

    Raises:
        BackendUnavailableError: tritonclient[grpc] is not installed.
        ExportError: the text is not a valid model configuration.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except ImportError as exc:
        raise BackendUnavailableError(f"checking a Triton config needs tritonclient[grpc] ({exc}); "
                                      "pip install 'streamsr[triton]'") from None
    try:
        return text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise ExportError(f"config.pbtxt does not parse as Triton's ModelConfig: {exc}") from None


def _plan(variant: ModelVariant, onnx: bytes, precision: str, max_batch: int, profile) -> bytes:
    """A TensorRT engine of the graph (built on this machine's GPU: build where it will be served)."""
    from .engine import ShapeProfile, build_engine, needs_output_size
    from .tensorrt_backend import tensorrt_installed

    if not tensorrt_installed():
        raise BackendUnavailableError("--platform tensorrt_plan builds the engine here, and TensorRT is not installed; "
                                      "run export-repo on the GPU box (NVIDIA's Triton container has TensorRT)")
    if profile is None:
        if needs_output_size(variant.inputs):
            raise ConfigError(f"{variant.name} takes any output size: give --profile with the output's sizes")
        n = max(1, max_batch)
        profile = ShapeProfile.parse("1x3x32x32", "1x3x360x640", f"{n}x3x1080x1920")
    return build_engine(onnx, variant.inputs, profile, precision)


def export_repository(variant: ModelVariant, repo: str | Path, *, platform: str = "onnxruntime_onnx",
                      name: str | None = None, max_batch: int = 8, instances: int = 1, kind: str = "auto",
                      max_queue_delay_us: int = 2000, precision: str = "fp32", weights: str | None = None,
                      threads: int = 0, profile=None) -> Path:
    """Write one network as a model of a Triton repository.

    Args:
        variant: the network.
        repo: the repository folder (created; other models in it are left alone).
        platform: one of :data:`PLATFORMS`.
        name: the model's name (default :func:`triton_model_name`).
        max_batch, instances, kind, max_queue_delay_us, threads: see :func:`model_config_text`.
        precision: "fp32" or "fp16" (baked into the graph; its inputs and output stay FP32).
        weights: user weights instead of the shipped ones.
        profile: tensorrt_plan: the engine's :class:`~streamsr.backends.engine.ShapeProfile`
            (default 1×32×32 … max_batch×1080×1920 LR).

    Returns:
        The model's folder.

    Raises:
        ConfigError, ExportError, BackendUnavailableError: bad options, a failed export or build.
    """
    text = model_config_text(variant, platform=platform, name=name, max_batch=max_batch, instances=instances,
                             kind=kind, max_queue_delay_us=max_queue_delay_us, threads=threads)
    parsed = parse_model_config(text)
    if [i.name for i in parsed.input] != list(variant.input_names):
        raise ExportError(f"config.pbtxt lost inputs: {[i.name for i in parsed.input]}")
    onnx = export_onnx(variant, precision=precision, weights=weights, check=True)
    files = {"model.plan": _plan(variant, onnx, precision, max_batch, profile)} if platform == "tensorrt_plan" \
        else {"model.onnx": onnx, **({"model.py": _PYTHON_MODEL.encode()} if platform == "python" else {})}
    folder = Path(repo) / parsed.name
    (folder / "1").mkdir(parents=True, exist_ok=True)  # only once the model files exist
    for file, data in files.items():
        (folder / "1" / file).write_bytes(data)
    (folder / "config.pbtxt").write_text(text)
    return folder
