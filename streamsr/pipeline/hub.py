"""One loaded backend shared by several pipelines, batching frames across streams.

Each camera's infer stage calls :meth:`HubClient.infer` (blocking, like a backend); the hub's
thread gathers the requests waiting at that moment, joins those of the same frame size into one
batch (up to ``max_batch`` frames), runs the backend once and hands each caller its slice.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future

import numpy as np

__all__ = ["HubClient", "InferenceHub"]


class HubClient:
    """Backend-shaped handle on a hub: ``infer`` blocks until the hub ran this batch."""

    def __init__(self, hub: InferenceHub):
        self._hub = hub
        self.name = getattr(hub.backend, "name", "?")

    def infer(self, batch: np.ndarray, extra: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """Submit a batch and wait for its result (re-raises the backend's error)."""
        future: Future = Future()
        self._hub._requests.put((batch, extra or {}, future))
        return future.result()

    def close(self) -> None:
        """Nothing to release: the hub owns the backend."""


class InferenceHub:
    """Owns a backend and a thread that serves many :class:`HubClient`.

    Args:
        backend: a loaded backend.
        max_batch: most frames per backend call.
    """

    def __init__(self, backend, max_batch: int = 8):
        self.backend = backend
        self.max_batch = max_batch
        self.batches = 0
        self.frames = 0
        self._requests: queue.Queue = queue.Queue()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="streamsr-hub", daemon=True)
        self._thread.start()

    def client(self) -> HubClient:
        """A new client for one pipeline."""
        return HubClient(self)

    def _gather(self, first) -> list:
        group, later = [first], []
        count = len(first[0])
        while count < self.max_batch:
            try:
                req = self._requests.get_nowait()
            except queue.Empty:
                break
            same = req[0].shape[1:] == first[0].shape[1:] and req[1].keys() == first[1].keys()
            if same and count + len(req[0]) <= self.max_batch:
                group.append(req)
                count += len(req[0])
            else:
                later.append(req)
        for req in later:  # other sizes wait for the next round
            self._requests.put(req)
        return group

    def _serve(self) -> None:
        while not self._closing.is_set():
            try:
                first = self._requests.get(timeout=0.05)
            except queue.Empty:
                continue
            group = self._gather(first)
            try:
                batch = np.concatenate([g[0] for g in group])
                extra = {k: np.concatenate([g[1][k] for g in group]) for k in first[1]}
                out = self.backend.infer(batch, extra)
            except BaseException as exc:  # noqa: BLE001 -- handed to every waiting caller
                for g in group:
                    g[2].set_exception(exc)
                continue
            self.batches += 1
            self.frames += len(batch)
            start = 0
            for g in group:
                g[2].set_result(out[start : start + len(g[0])])
                start += len(g[0])

    def close(self) -> None:
        """Stop serving, fail any request still waiting, and close the backend."""
        self._closing.set()
        self._thread.join()
        while True:
            try:
                _, _, future = self._requests.get_nowait()
            except queue.Empty:
                break
            future.set_exception(RuntimeError("inference hub closed"))
        self.backend.close()
