"""Loaded backends shared by several pipelines, batching frames across streams.

Each camera's infer stage calls its :class:`HubClient` (blocking, like a backend); the hub's
thread gathers the requests waiting at that moment, joins those of the same network, frame size
and kind (host arrays or device tensors) into one batch (up to ``max_batch`` frames), runs the
backend once and hands each caller its slice. A network is loaded the first time a client asks
for it (cameras whose sizes need different factors of a model get one network each).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

import numpy as np

from ..backends.base import WrappedBackend
from ..models.registry import ModelVariant

__all__ = ["HubClient", "InferenceHub"]


def _concat(parts: list):
    if isinstance(parts[0], np.ndarray):
        return np.concatenate(parts)
    import torch

    return torch.cat(parts)


class HubClient(WrappedBackend):
    """Backend-shaped handle on one of the hub's networks: ``infer`` blocks until the hub ran the
    batch it joined; name, variant and capabilities are the loaded backend's."""

    def __init__(self, hub: InferenceHub, backend):
        super().__init__(backend)
        self._hub = hub

    def _submit(self, batch, extra, tensors: bool):
        future: Future = Future()
        self._hub._requests.put((self.variant, tensors, batch, extra or {}, future))
        return future.result()

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Submit a batch and wait for its result (re-raises the backend's error)."""
        return self._submit(batch, extra, False)

    def infer_tensor(self, x, extra: dict | None = None):
        """Submit a batch of device tensors (when the backend takes them) and wait."""
        if not self.capabilities.device_tensors:
            return super().infer_tensor(x, extra)
        return self._submit(x, extra, True)

    def close(self) -> None:
        """Nothing to release: the hub owns the backend."""


def _digest(value) -> int | str:
    """What identifies a per-batch input's value: a hash of a host array's bytes (a query table is
    a few kB); a device tensor's storage."""
    if isinstance(value, np.ndarray):
        return hash(value.tobytes())
    return f"{value.device}:{value.data_ptr()}"


class InferenceHub:
    """Owns the loaded backends and a thread that serves many :class:`HubClient`.

    Args:
        load: ``load(variant) -> backend``, called once per network the clients need.
        max_batch: most frames per backend call.
    """

    def __init__(self, load: Callable[[ModelVariant], object], max_batch: int = 8):
        self._load = load
        self.max_batch = max_batch
        self.batches = 0
        self.frames = 0
        self._backends: dict[ModelVariant, object] = {}
        self._loading = threading.Lock()
        self._requests: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="streamsr-hub", daemon=True)
        self._thread.start()

    def client(self, variant: ModelVariant) -> HubClient:
        """A client for one pipeline running ``variant`` (loaded now if no client asked for it yet)."""
        with self._loading:
            if variant not in self._backends:
                self._backends[variant] = self._load(variant)
            return HubClient(self, self._backends[variant])

    @staticmethod
    def _key(req) -> tuple:
        """Requests batch together when this matches: network, kind, frame shape, the other
        inputs' shapes, and the values of those read once per batch (query tables: two cameras'
        tiles of one shape have their own)."""
        variant, tensors, batch, extra, _ = req
        shared = {i.name for i in variant.inputs if i.per_batch}
        return variant, tensors, tuple(batch.shape[1:]), tuple(
            (k, tuple(v.shape[1:]), _digest(v) if k in shared else None) for k, v in sorted(extra.items()))

    def _gather(self, first) -> list:
        group, later = [first], []
        count, key = len(first[2]), self._key(first)
        while count < self.max_batch:
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                break
            if self._key(req) == key and count + len(req[2]) <= self.max_batch:
                group.append(req)
                count += len(req[2])
            else:
                later.append(req)
        for req in later:  # other networks and sizes wait for the next round
            self._requests.put(req)
        return group

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                first = self._requests.get(timeout=0.05)
            except queue.Empty:
                continue
            group = self._gather(first)
            variant, tensors = first[0], first[1]
            try:
                backend = self._backends[variant]
                batch = _concat([g[2] for g in group])
                extra = {k: _concat([g[3][k] for g in group]) for k in first[3]}
                out = backend.infer_tensor(batch, extra) if tensors else backend.infer(batch, extra)
            except BaseException as exc:  # noqa: BLE001 -- handed to every waiting caller
                for g in group:
                    g[4].set_exception(exc)
                continue
            self.batches += 1
            self.frames += len(batch)
            start = 0
            for g in group:
                g[4].set_result(out[start : start + len(g[2])])
                start += len(g[2])

    def close(self) -> None:
        """Stop serving, fail any request still waiting, and close every backend."""
        self._closing.set()
        self._thread.join()
        while True:
            try:
                *_, future = self._requests.get_nowait()
            except queue.Empty:
                break
            future.set_exception(RuntimeError("inference hub closed"))
        for backend in self._backends.values():
            backend.close()
