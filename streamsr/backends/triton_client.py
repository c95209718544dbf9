"""The Triton backend's transport (:mod:`streamsr.backends.triton_backend`): one ``tritonclient``
per server shared by every backend of the process, shared-memory regions registered with the
server, and which failures are worth sending a request again for.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ClassVar

import numpy as np

from ..errors import StreamSRError

__all__ = ["Connection", "SharedRegion", "is_local", "one_line", "retryable", "status_of"]

log = logging.getLogger("streamsr")

#: gRPC statuses (and HTTP/transport failures) worth sending a request again for
_RETRY = ("UNAVAILABLE", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "CANCELLED", "ABORTED", "Deadline",
          "shared memory", "Socket closed", "Connection", "connect", "503", "not ready")


#: times a region the server says is in use is asked to be unregistered (about 2 s of waits in all)
_UNREGISTER_TRIES = 10


def status_of(exc: BaseException) -> str:
    """A tritonclient error's status ("StatusCode.UNAVAILABLE", "400"...), else ""."""
    return str(exc.status()) if callable(getattr(exc, "status", None)) else ""


def retryable(exc: BaseException) -> bool:
    """Whether a failed request is worth sending again (the server is away or busy)."""
    text = f"{status_of(exc)} {exc}"
    return not isinstance(exc, StreamSRError) and (isinstance(exc, OSError) or any(k in text for k in _RETRY))


def one_line(exc: BaseException) -> str:
    """The first line of a tritonclient error's message (for a one-line error)."""
    text = exc.message() if callable(getattr(exc, "message", None)) else str(exc)
    return (text or type(exc).__name__).strip().splitlines()[0][:300]


def is_local(url: str) -> bool:
    """Whether ``HOST:PORT`` names this machine (loopback, or this host's name)."""
    host = url.rsplit(":", 1)[0].strip("[]") if ":" in url.replace("::1", "") else url.strip("[]")
    try:
        return host in ("localhost", "::1", socket.gethostname()) or socket.gethostbyname(host).startswith("127.")
    except OSError:
        return False


class Connection:
    """One client per (protocol, url), shared by every backend of the process: take it with
    :meth:`acquire`, give it back with :meth:`release` (the last one closes it).

    Args:
        protocol: "grpc" or "http".
        url: ``HOST:PORT`` of the server.
    """

    _pool: ClassVar[dict[tuple[str, str], Connection]] = {}
    _lock = threading.Lock()

    def __init__(self, protocol: str, url: str):
        self.protocol, self.url, self.users = protocol, url, 0
        if protocol == "grpc":
            import tritonclient.grpc as mod

            big = 2**31 - 1  # frames are large; a restarted server is reconnected to within 2 s
            self.client = mod.InferenceServerClient(url, channel_args=[
                ("grpc.max_send_message_length", big), ("grpc.max_receive_message_length", big),
                ("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 2000)])
        else:
            import tritonclient.http as mod

            self._local = threading.local()  # the HTTP client is not thread-safe: one per worker
            self._workers = ThreadPoolExecutor(32, thread_name_prefix="triton-http")
        self.mod = mod

    @classmethod
    def acquire(cls, protocol: str, url: str) -> Connection:
        """The process's client of ``url`` (made on first use)."""
        with cls._lock:
            conn = cls._pool.get((protocol, url)) or cls(protocol, url)
            cls._pool[(protocol, url)] = conn
            conn.users += 1
            return conn

    def release(self) -> None:
        """Give the client back; the last user closes it."""
        with self._lock:
            self.users -= 1
            if self.users:
                return
            del self._pool[(self.protocol, self.url)]
        if self.protocol == "grpc":
            self.client.close()
        else:
            self._workers.shutdown(wait=True)

    def _client(self):
        if self.protocol == "grpc":
            return self.client
        if not hasattr(self._local, "client"):
            self._local.client = self.mod.InferenceServerClient(self.url, network_timeout=600.0)
        return self._local.client

    def call(self, method: str, *args, **kwargs):
        """A control call (metadata, statistics, shared memory) as JSON-like dicts."""
        if self.protocol == "grpc":
            if method.startswith("get_"):
                kwargs["as_json"] = True
            return getattr(self.client, method)(*args, **kwargs)
        # on a worker, whose client is kept: callers' threads come and go (the stats' background polls)
        return self._workers.submit(lambda: getattr(self._client(), method)(*args, **kwargs)).result()

    def submit(self, model: str, inputs, outputs, timeout: float, done: Callable) -> None:
        """Send one request; ``done(result, error)`` runs on a client thread."""
        if self.protocol == "grpc":  # tritonclient passes keywords: a positional callback never fires
            self.client.async_infer(model, inputs, callback=lambda result=None, error=None: done(result, error),
                                    outputs=outputs, client_timeout=timeout)
            return

        def work():
            try:
                done(self._client().infer(model, inputs, outputs=outputs, timeout=int(timeout * 1e6)), None)
            except Exception as exc:  # noqa: BLE001 -- handed to the waiting caller
                done(None, exc)

        self._workers.submit(work)


class SharedRegion:
    """A shared-memory region registered with the server: system (POSIX shm) or CUDA (IPC).

    Args:
        conn: the server's client.
        kind: "system" or "cuda".
        name: the region's name (and its /dev/shm key).
        size: bytes.
    """

    def __init__(self, conn: Connection, kind: str, name: str, size: int):
        self.conn, self.kind, self.name, self.size = conn, kind, name, size
        if kind == "system":
            import tritonclient.utils.shared_memory as shm

            self.handle = shm.create_shared_memory_region(name, "/" + name, size, create_only=True)
        else:
            import tritonclient.utils.cuda_shared_memory as shm

            self.handle = shm.create_shared_memory_region(name, size, 0)
        self.shm = shm
        self.register()

    def _unregister(self, wait: bool = True) -> bool:
        """Unregister it. Returns False while the server still holds it for a request it has
        answered but not yet let go of ("in use": still registered, still valid); with ``wait``
        it is asked again, briefly, first: given up silently, the server would keep it mapped."""
        tries = _UNREGISTER_TRIES if wait else 1
        for attempt in range(tries):
            try:
                self.conn.call(f"unregister_{self.kind}_shared_memory", self.name)
                return True
            except Exception as exc:  # noqa: BLE001 -- not registered there (any more): the server forgot or is gone
                if "currently in use" not in str(exc):
                    log.debug("shared memory %s was not registered", self.name)
                    return True
                if attempt + 1 < tries:
                    time.sleep(min(0.5, 0.01 * 2**attempt))
        if wait:
            log.warning("the Triton server at %s still holds shared memory %s; it keeps it mapped until it "
                        "restarts", self.conn.url, self.name)
        return False

    def register(self) -> None:
        """Register it (again: a restarted server forgot it; one that still holds it has it)."""
        if not self._unregister(wait=False):
            return
        if self.kind == "system":
            self.conn.call("register_system_shared_memory", self.name, "/" + self.name, self.size)
        else:
            self.conn.call("register_cuda_shared_memory", self.name, self.shm.get_raw_handle(self.handle), 0, self.size)

    def write(self, arrays: list[np.ndarray]) -> None:
        """Write ``arrays`` one after the other from its start."""
        self.shm.set_shared_memory_region(self.handle, arrays)

    def read(self, shape: tuple[int, ...]) -> np.ndarray:
        """A float32 copy of its start as ``shape``."""
        return np.array(self.shm.get_contents_as_numpy(self.handle, np.float32, shape), copy=True)

    def close(self) -> None:
        """Unregister and destroy it."""
        self._unregister()
        self.shm.destroy_shared_memory_region(self.handle)
