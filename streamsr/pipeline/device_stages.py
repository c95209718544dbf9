"""The device colour chain of a run (``--colour-on device``, backends with ``infer_tensor``):
:class:`ToPlanesStage` uploads the frame's 8-bit 4:2:0 planes (from pinned memory on a side CUDA
stream, overlapping the inference of earlier frames), :class:`DeviceInferStage` converts to RGB,
estimates noise, upscales and converts back to 4:2:0 on the device (:mod:`streamsr.colour`), and
only the output planes come back to the host. Kept apart from :mod:`.stages` because it needs
PyTorch, which a CPU run on ONNX Runtime never imports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

import torch

from ..colour import YUV420_FORMATS, rgb_to_yuv420, yuv420_to_rgb
from ..degradation import NoiseTracker, estimate_noise_batch
from ..frames import ColourTags, Frame
from ..models.inputs import InputAssembler
from ..swscale import to_yuv420p
from .runner import Stage
from .stages import InferStage, Telling

__all__ = ["DeviceInferStage", "DevicePlanes", "ToPlanesStage"]


@dataclasses.dataclass(frozen=True)
class DevicePlanes:
    """A frame's 8-bit 4:2:0 planes on the inference device (PyAV's yuv420p layout, (3H/2)×W),
    with the CUDA event that marks the end of their upload (None on the CPU)."""

    tensor: torch.Tensor
    ready: torch.cuda.Event | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.tensor.shape)


class ToPlanesStage(Stage):
    """Decoded ``av.VideoFrame`` → :class:`DevicePlanes` on ``device`` (device colour chain).

    8-bit 4:2:0 frames are taken as they are; any other format (4:2:2, 10-bit, NV12 from a
    hardware decoder) is first repacked to yuv420p by swscale with the frame's own matrix and range.
    On CUDA the copy is made from pinned memory on this stage's own stream, so it overlaps the
    inference running on the other thread.
    """

    def __init__(self, device: torch.device | str) -> None:
        super().__init__("preprocess")
        self.device = torch.device(device)
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None

    def process(self, item: Frame) -> Iterable[Frame]:
        vf = item.image
        if vf.format.name not in YUV420_FORMATS:
            vf = to_yuv420p(vf, item.colour)
        planes = torch.from_numpy(vf.to_ndarray())
        if self.stream is None:
            return (item.with_image(DevicePlanes(planes.to(self.device))),)
        with torch.cuda.stream(self.stream):
            on_device = planes.pin_memory().to(self.device, non_blocking=True)
            ready = torch.cuda.Event()
            ready.record(self.stream)
        return (item.with_image(DevicePlanes(on_device, ready)),)


class DeviceInferStage(InferStage):
    """:class:`InferStage` for the device colour chain: 4:2:0 planes in, 4:2:0 planes (a host
    uint8 ``(3sH/2)×sW`` array per frame) out; everything in between stays on the device.

    Args:
        backend: a backend whose capabilities include device tensors (PyTorch, TensorRT).
        out_colour: the encoder's matrix and range.
        batch_size, inputs, telling, max_latency: as :class:`InferStage`; the extra inputs are
            built as one value per channel and frame, stretched over the frame on the device.
        tracker: the :class:`NoiseTracker` that smooths the per-frame noise estimates made on the
            device when the model is told the noise and ``telling.noise`` is None (``--noise auto``).
        out_size: (width, height) to resize the network's output to on the device (None: as is).
    """

    def __init__(self, backend, out_colour: ColourTags, batch_size: int = 1, *, inputs: InputAssembler | None = None,
                 telling: Telling | None = None, max_latency: float | None = None,
                 tracker: NoiseTracker | None = None, out_size: tuple[int, int] | None = None, out_of=None):
        super().__init__(backend, batch_size, inputs=inputs, telling=telling, max_latency=max_latency, out_of=out_of)
        self.out_colour = out_colour
        self.tracker = tracker
        self.out_size = out_size

    @torch.inference_mode()
    def _run(self) -> list[Frame]:
        frames, self._held = self._held, []
        if not frames:
            return []
        cuda = frames[0].image.tensor.is_cuda
        if cuda:
            stream = torch.cuda.current_stream()
            for f in frames:  # uploaded on the preprocess thread's stream
                stream.wait_event(f.image.ready)
                f.image.tensor.record_stream(stream)
        planes = torch.stack([f.image.tensor for f in frames])
        rgb = yuv420_to_rgb(planes, [f.colour for f in frames])
        n, _, h, w = rgb.shape
        sigmas: list[float | None] = [None] * n
        if self.tracker is not None:
            sigmas = [self.tracker.update(s) for s in estimate_noise_batch(rgb * 255.0).tolist()]
        extra = {}
        if self.inputs is not None:
            extra = self.inputs.tensors(self.telling.conditions(sigmas), h, w, rgb.device, self.out_of(h, w))
        out = self.backend.infer_tensor(rgb, extra)
        if self.out_size is not None and (out.shape[3], out.shape[2]) != self.out_size:
            out = torch.nn.functional.interpolate(out, size=self.out_size[::-1], mode="bicubic", antialias=True,
                                                  align_corners=False)
        host = rgb_to_yuv420(out, self.out_colour).cpu().numpy()
        if self.tracker is None:  # nothing estimated: frames keep their own
            return [f.with_image(o) for f, o in zip(frames, host, strict=True)]
        return [dataclasses.replace(f.with_image(o), noise=s) for f, o, s in zip(frames, host, sigmas, strict=True)]
