"""Triton backend: the network runs on a Triton Inference Server; this process decodes, converts
colour, encodes, and sends every model input by name.

A batch is cut into requests of ``frames_per_request`` frames (1: the server's dynamic batcher joins
frames of every stream and client), sent asynchronously, at most ``max_in_flight`` at a time (the
pipeline's backpressure). A request that fails because the server is away (killed, restarting) is
sent again with backoff until ``timeout`` seconds have passed since the first failure, then the run
fails with one line; meanwhile live runs drop the frames arriving (their drop-oldest queues count
them) and file runs lose nothing. A server on this machine gets inputs and outputs through system
shared memory (``shm="auto"``); CUDA shared memory (``shm="cuda"``) needs a GPU on both ends. At
load the server's model is checked against the local :class:`ModelVariant` (input names, channels,
grids, the output, the variant its repository recorded). The backends of a process talking to one
server share one client (the cameras of a hub, several runs; :mod:`~streamsr.backends.triton_client`).
Each backend keeps its requests and the server's counters of its model in :attr:`remote_stats`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import logging
import os
import queue
import time
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from ..errors import BackendUnavailableError, ConfigError, StreamSRError
from ..models.inputs import GRIDS
from ..models.registry import ModelVariant
from .base import BackendBase, Capabilities, register_backend
from .export import OUTPUT_NAME
from .triton_client import Connection, SharedRegion, is_local, one_line, retryable, status_of
from .triton_repo import VARIANT_PARAMETER, input_dims, triton_model_name

__all__ = ["TritonBackend", "TritonConfig"]

log = logging.getLogger("streamsr")

_SERIAL = itertools.count()


@dataclass(frozen=True, kw_only=True)
class TritonConfig:
    """Options of the Triton backend (``--backend-option triton.KEY=VALUE``, ``[backend_options.triton]``).

    Args:
        device: where this process runs (informational: the server decides where the network runs).
        precision: ignored (the served model's own).
        url: ``HOST:PORT`` of the server (gRPC 8001, HTTP 8000 by default).
        model: the model's name on the server (None: the variant's, e.g. ``udvd_x2``).
        protocol: "grpc" or "http" (``pip install tritonclient[http]``).
        shm: "auto" (system shared memory when the server is on this machine), "system", "cuda"
            (CUDA IPC; a GPU here and on the server) or "off".
        timeout: seconds a frame may wait for the server, retries included, before the run fails;
            also the deadline of one request.
        max_in_flight: requests in flight per backend.
        frames_per_request: frames per request (0: a whole batch in one request).
    """

    device: str = "cpu"
    precision: str = "fp32"
    url: str = "127.0.0.1:8001"
    model: str | None = None
    protocol: str = "grpc"
    shm: str = "auto"
    timeout: float = 60.0
    max_in_flight: int = 8
    frames_per_request: int = 1

    def __post_init__(self) -> None:
        if self.protocol not in ("grpc", "http"):
            raise ConfigError(f"triton.protocol must be grpc or http, got {self.protocol!r}")
        if self.shm not in ("auto", "system", "cuda", "off"):
            raise ConfigError(f"--triton-shm must be auto, system, cuda or off, got {self.shm!r}")
        if self.timeout <= 0 or self.max_in_flight < 1 or self.frames_per_request < 0:
            raise ConfigError("--triton-timeout must be > 0, triton.max_in_flight >= 1, triton.frames_per_request >= 0")


class _Slot:
    """One request's place in the window of requests in flight (and its shared memory)."""

    def __init__(self, index: int):
        self.index, self.epoch = index, 0
        self.inputs: SharedRegion | None = None
        self.output: SharedRegion | None = None


def _counters(stats: dict) -> dict[str, int]:
    """The server's cumulative counters of one model (statistics extension)."""
    m = stats["model_stats"][0]
    inf = m.get("inference_stats", {})
    out = {"executions": int(m.get("execution_count", 0)), "inferences": int(m.get("inference_count", 0))}
    for key in ("queue", "compute_infer"):
        out[f"{key}_count"], out[f"{key}_ns"] = (int(inf.get(key, {}).get(k, 0)) for k in ("count", "ns"))
    return out


@register_backend("triton", TritonConfig)
class TritonBackend(BackendBase):
    """Sends frames to a model on a Triton Inference Server (see the module docstring)."""

    # the served graph has its own precision: these are those its repository export writes
    precisions: ClassVar[Mapping[str, tuple[str, ...]]] = {"cpu": ("fp32", "fp16"), "cuda": ("fp32", "fp16")}

    def __init__(self, variant: ModelVariant, config: TritonConfig, weights: str | None = None):
        from ..pipeline.stats import RemoteStats

        if weights:
            raise ConfigError("--weights: a Triton server's model has its own weights; write them into its repository "
                              "(streamsr triton export-repo --weights ...)")
        self.variant, self.config = variant, config
        self.model = config.model or triton_model_name(variant)
        self.input_names = variant.input_names
        self.shm = self._shm_kind()
        self._conn: Connection | None = Connection.acquire(config.protocol, config.url)
        try:
            max_batch = self._check_model()
        except BaseException:
            self._conn.release()
            raise
        self.batched = max_batch > 0
        per = config.frames_per_request or max_batch
        self.per_request = min(per, max_batch) if self.batched else 1
        self.capabilities = Capabilities(location="remote", device=config.url)
        self._base, self._carry, self._last = {}, {}, {}
        with contextlib.suppress(Exception):  # statistics are a nicety
            self._base = _counters(self._conn.call("get_inference_statistics", self.model))
        self.remote_stats = RemoteStats(config.url, self.model, server=self._server_view)
        self._all = [_Slot(i) for i in range(config.max_in_flight)]
        self._slots: queue.LifoQueue = queue.LifoQueue()  # LIFO: regions only for the slots a burst needs
        for slot in reversed(self._all):
            self._slots.put(slot)
        self._epoch = 0

    @classmethod
    def available(cls, device: str) -> bool:
        return all(importlib.util.find_spec(m) is not None for m in ("tritonclient", "grpc"))

    @classmethod
    def unavailable_reason(cls, device: str) -> str:
        return "the Triton client is not installed: pip install 'streamsr[triton]' (tritonclient[grpc])"

    def _check_model(self) -> int:
        """Whether the server's model is the network this run needs; returns its max batch."""
        url, model, variant = self.config.url, self.model, self.variant
        try:
            self._conn.call("is_server_live")
        except Exception as exc:  # noqa: BLE001 -- any transport failure means the same
            raise BackendUnavailableError(f"no Triton server answers at {url} ({one_line(exc)}); start one "
                                          "(streamsr triton serve REPO) or fix --triton-url") from None
        try:
            ready = self._conn.call("is_model_ready", model)
        except Exception:  # noqa: BLE001 -- unknown model
            ready = False
        if not ready:
            index = self._conn.call("get_model_repository_index")
            names = sorted({m["name"] for m in (index.get("models", []) if isinstance(index, dict) else index)})
            raise ConfigError(f"the Triton server at {url} has no model {model!r} ready; it serves: "
                              f"{', '.join(names) or 'nothing'} (--triton-model NAME, or add it with "
                              f"streamsr triton export-repo --model {variant.spec.name})")
        meta = self._conn.call("get_model_metadata", model)
        config = self._conn.call("get_model_config", model)
        config = config.get("config", config)
        max_batch = int(config.get("max_batch_size", 0))
        served = {i["name"]: i for i in meta.get("inputs", [])}
        if sorted(served) != sorted(self.input_names):
            raise ConfigError(f"Triton model {model!r} at {url} takes inputs {', '.join(sorted(served))}; "
                              f"{variant.name} sends {', '.join(self.input_names)}")
        for i in variant.inputs:
            dims = [int(d) for d in served[i.name]["shape"]][1 if max_batch > 0 else 0:]
            want = input_dims(i)
            fits = len(dims) == len(want) and all(d == w or -1 in (d, w) for d, w in zip(dims, want))
            if served[i.name]["datatype"] != "FP32" or not fits:
                raise ConfigError(f"Triton model {model!r} input {i.name!r} is {served[i.name]['datatype']} {dims}; "
                                  f"{variant.name} sends FP32 {want} ({i.channels} channels on the {i.grid} grid)")
        if OUTPUT_NAME not in {o["name"] for o in meta.get("outputs", [])}:
            raise ConfigError(f"Triton model {model!r} at {url} has no output {OUTPUT_NAME!r}")
        recorded = config.get("parameters", {}).get(VARIANT_PARAMETER, {}).get("string_value")
        if recorded and recorded != variant.name:
            raise ConfigError(f"Triton model {model!r} at {url} is {recorded}, and this run needs {variant.name} "
                              "(--triton-model NAME, or export it with streamsr triton export-repo)")
        return max_batch

    def _shm_kind(self) -> str | None:
        want = self.config.shm
        if want == "auto":
            return "system" if is_local(self.config.url) else None
        if want == "cuda":
            import torch

            if not torch.cuda.is_available() or importlib.util.find_spec("cuda") is None:
                raise BackendUnavailableError("--triton-shm cuda needs a CUDA GPU here and cuda-python (pip install "
                                              "'tritonclient[cuda]'); use --triton-shm system or off")
        return None if want == "off" else want

    def _server_view(self) -> dict:
        """The server's counters of the model since this backend started (a restart is carried over)."""
        now = _counters(self._conn.call("get_inference_statistics", self.model))
        if any(now.get(k, 0) < v for k, v in self._base.items()):  # the server restarted: counting begins anew
            self._carry = {k: self._carry.get(k, 0) + v for k, v in self._last.items()}
            self._base = {}
        self._last = {k: v - self._base.get(k, 0) for k, v in now.items()}
        d = {k: v + self._carry.get(k, 0) for k, v in self._last.items()}
        mean = lambda ns, n: round(d[ns] / d[n] / 1e6, 3) if d.get(n) else None
        return {"executions": d.get("executions", 0), "inferences": d.get("inferences", 0),
                "batch_mean": round(d["inferences"] / d["executions"], 2) if d.get("executions") else None,
                "queue_ms": mean("queue_ns", "queue_count"), "compute_ms": mean("compute_infer_ns", "compute_infer_count")}

    def _out_size(self, feeds: list[np.ndarray]) -> tuple[tuple[int, int] | None, bool]:
        """The output's (height, width), from inputs on the output's grids or the factor, and
        whether it is exact (a down part's is a bound: its input's size)."""
        size: list[int | None] = [None, None]
        for i, a in zip(self.variant.inputs, feeds, strict=True):
            for k, axis in enumerate(GRIDS[i.grid]):
                if axis == "out":
                    size[k] = a.shape[2 + k]
        h, w, f = feeds[0].shape[2], feeds[0].shape[3], self.variant.factor
        if None not in size:
            return (size[0], size[1]), True
        return (None, False) if f is None else ((h, w), False) if self.variant.shrinks else ((h * f, w * f), True)

    def _region(self, slot: _Slot, which: str, size: int) -> SharedRegion:
        region = getattr(slot, which)
        if region is None or region.size < size:
            if region is not None:
                region.close()
            name = f"streamsr_{os.getpid()}_{next(_SERIAL)}_{which}"
            region = SharedRegion(self._conn, self.shm, name, size)
            setattr(slot, which, region)
        elif slot.epoch != self._epoch:
            region.register()
        return region

    def _shared(self, slot: _Slot, arrays: list[np.ndarray], out_bytes: int) -> tuple[SharedRegion, SharedRegion] | None:
        """The slot's regions, sized and registered (None: this server cannot map our memory, under auto)."""
        try:
            regions = self._region(slot, "inputs", sum(a.nbytes for a in arrays)), self._region(slot, "output", out_bytes)
            slot.epoch = self._epoch
            return regions
        except Exception as exc:
            if retryable(exc) and "shared memory" not in str(exc):
                raise  # the server is away: a failed request, sent again
            if self.config.shm != "auto":
                raise ConfigError(f"--triton-shm {self.config.shm}: the server at {self.config.url} cannot use this "
                                  f"process's shared memory ({one_line(exc)}); use --triton-shm off") from None
            log.warning("the Triton server at %s cannot map this process's shared memory (%s); sending frames over "
                        "the network", self.config.url, one_line(exc))
            self.shm = None
            return None

    def _request(self, slot: _Slot, arrays: list[np.ndarray], out_hw):
        mod, n = self._conn.mod, len(arrays[0])
        if not self.batched:
            arrays = [a[0] for a in arrays]
        inputs = [mod.InferInput(name, list(a.shape), "FP32") for name, a in zip(self.input_names, arrays, strict=True)]
        output = mod.InferRequestedOutput(OUTPUT_NAME)
        regions = self._shared(slot, arrays, n * 3 * out_hw[0] * out_hw[1] * 4) if self.shm and out_hw else None
        if regions is None:
            for i, a in zip(inputs, arrays, strict=True):
                i.set_data_from_numpy(a)
            return inputs, [output], lambda result: result.as_numpy(OUTPUT_NAME)
        src, dst = regions
        src.write(arrays)
        offset = 0
        for i, a in zip(inputs, arrays, strict=True):
            i.set_shared_memory(src.name, a.nbytes, offset)
            offset += a.nbytes
        output.set_shared_memory(dst.name, dst.size)

        def read(result) -> np.ndarray:
            o = result.get_output(OUTPUT_NAME)
            return dst.read(tuple(int(d) for d in (o["shape"] if isinstance(o, dict) else o.shape)))

        return inputs, [output], read

    def _send(self, arrays: list[np.ndarray], out_hw) -> Future:
        """Send one request once a place in the window is free; its future holds the output."""
        future: Future = Future()
        slot = self._slots.get()  # blocks while max_in_flight requests are in flight
        t0 = time.monotonic()

        def done(result, error) -> None:
            try:
                if error is not None:
                    future.set_exception(error)
                else:
                    out = read(result)
                    self.remote_stats.add_request(time.monotonic() - t0)
                    future.set_result(out if self.batched else out[None])
            except Exception as exc:  # noqa: BLE001 -- handed to the waiting caller
                future.set_exception(exc)
            finally:
                self._slots.put(slot)

        try:
            inputs, outputs, read = self._request(slot, arrays, out_hw)
            self._conn.submit(self.model, inputs, outputs, self.config.timeout, done)
        except Exception as exc:  # a failure to send is a failed request
            if future.done():
                raise
            done(None, exc)
        return future

    def _fatal(self, exc: BaseException) -> Exception:
        status = status_of(exc)
        text = f"the Triton server at {self.config.url} refused {self.model}'s request: {one_line(exc)}"
        return ConfigError(text) if "INVALID_ARG" in status or status == "400" else BackendUnavailableError(text)

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Upscale an N×C×H×W float32 batch on the server; returns float32 N×3×H'×W'.

        Raises:
            BackendUnavailableError: the server stayed away for ``timeout`` seconds.
            ConfigError: the server refused the request (shapes) or answered another network's size.
        """
        feeds = [np.ascontiguousarray(batch, np.float32)] + [np.ascontiguousarray(extra[n], np.float32)
                                                             for n in self.input_names[1:]]
        (out_hw, exact), n = self._out_size(feeds), len(batch)
        chunks = [(lo, min(n, lo + self.per_request)) for lo in range(0, n, self.per_request)]
        results: list = [None] * len(chunks)
        pending, first_failure, attempt = list(range(len(chunks))), None, 0
        while pending:
            sent = time.monotonic()
            futures = [(k, self._send([f[chunks[k][0]:chunks[k][1]] for f in feeds], out_hw)) for k in pending]
            failed, error = [], None
            for k, future in futures:
                try:
                    results[k] = future.result()
                except Exception as exc:  # sorted: retried, or the run's error
                    if isinstance(exc, StreamSRError):
                        raise
                    if not retryable(exc):
                        raise self._fatal(exc) from None
                    failed.append(k)
                    error = exc
                    self.remote_stats.add_failure(chunks[k][1] - chunks[k][0])
            if not failed:
                break
            first_failure = first_failure or sent
            if time.monotonic() - first_failure >= self.config.timeout:
                raise BackendUnavailableError(
                    f"the Triton server at {self.config.url} did not answer for {self.config.timeout:g} s "
                    f"(model {self.model}; last error: {one_line(error)}); --triton-timeout sets how long frames wait")
            self._epoch += 1  # a restarted server forgot our shared memory: register it again
            time.sleep(min(2.0, 0.05 * 2 ** attempt))
            attempt, pending = attempt + 1, failed
        out = results[0] if len(results) == 1 else np.concatenate(results)
        if out.shape[:2] != (n, 3) or (exact and tuple(out.shape[2:]) != tuple(out_hw)):
            raise ConfigError(f"Triton model {self.model!r} answered {tuple(out.shape)} for {tuple(batch.shape)}; "
                              f"{self.variant.name} gives {(n, 3, *(out_hw or ('?', '?')))}: the server runs "
                              "another network (--triton-model)")
        return out

    def close(self) -> None:
        """Release shared memory and this backend's hold on the shared client."""
        if self._conn is None:
            return
        self.remote_stats.close()
        for slot in self._all:
            for region in (slot.inputs, slot.output):
                if region is not None:
                    region.close()
        self._conn.release()
        self._conn = None
