"""A local ``tritonserver`` on a model repository, for trying the remote tier on one machine
(``streamsr triton serve``) and for the tests; production serves with NVIDIA's container.

:func:`find_tritonserver` takes one from PATH, else the one bundled in the ``nvidia-pytriton``
wheel (Python-backend models only), which :class:`TritonServer` prepares as it needs (see
DESIGN.md, verified recipe) and runs on loopback ports.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Self

from ..errors import BackendUnavailableError, ConfigError

__all__ = ["TritonServer", "find_tritonserver", "free_port"]


def find_tritonserver() -> tuple[Path, Path | None]:
    """The ``tritonserver`` to run: (binary, the nvidia-pytriton tree it came from, or None for one
    found on PATH, as in NVIDIA's container).

    Raises:
        BackendUnavailableError: neither is there (with the install line).
    """
    on_path = shutil.which("tritonserver")
    if on_path:
        return Path(on_path), None
    spec = importlib.util.find_spec("pytriton")  # located, not imported (its Python API is not needed)
    if spec is not None and spec.submodule_search_locations:
        tree = Path(next(iter(spec.submodule_search_locations))) / "tritonserver"
        if (tree / "bin" / "tritonserver").is_file():
            return tree / "bin" / "tritonserver", tree
    raise BackendUnavailableError("no tritonserver on PATH, and the nvidia-pytriton wheel (which bundles one) is not "
                                  "installed: pip install --no-deps nvidia-pytriton, or serve the repository with "
                                  "NVIDIA's container (nvcr.io/nvidia/tritonserver)")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class TritonServer:
    """A ``tritonserver`` subprocess on a model repository; a context manager.

    The one bundled in nvidia-pytriton is prepared as it needs (see DESIGN.md, verified recipe):
    its tree is copied to a temporary folder with this Python's backend stub in
    ``backends/python/``, and it runs with ``LD_LIBRARY_PATH`` = this interpreter's LIBDIR and the
    wheel's libraries, ``PATH`` starting with this interpreter's folder (the stub must import
    numpy and onnxruntime from this environment).

    Args:
        repo: the model repository.
        grpc_port, http_port, metrics_port: ports (0: a free one each).
        address: where to listen (loopback by default; it binds 0.0.0.0 otherwise).
        exit_timeout: seconds a stopping server waits for requests in flight.
        args: further tritonserver arguments.
    """

    def __init__(self, repo: str | Path, *, grpc_port: int = 0, http_port: int = 0, metrics_port: int = 0,
                 address: str = "127.0.0.1", exit_timeout: int = 3, args: tuple[str, ...] = ()):
        self.repo = Path(repo).resolve()
        if not self.repo.is_dir():
            raise ConfigError(f"Triton model repository {repo} is not a folder; make one with `streamsr triton export-repo`")
        self.address = address
        self.grpc_port, self.http_port, self.metrics_port = (p or free_port(address)
                                                             for p in (grpc_port, http_port, metrics_port))
        self.exit_timeout, self.args = exit_timeout, tuple(args)
        self.binary, tree = find_tritonserver()
        self._tmp = tempfile.TemporaryDirectory(prefix="streamsr-triton-")
        self.log_path = Path(self._tmp.name) / "tritonserver.log"
        self._env = dict(os.environ)
        self._backends: Path | None = None
        if tree is not None:
            self._prepare(tree)
        self.process: subprocess.Popen | None = None

    @property
    def grpc_url(self) -> str:
        """``HOST:PORT`` of the gRPC endpoint (``--triton-url``)."""
        return f"{self.address}:{self.grpc_port}"

    @property
    def http_url(self) -> str:
        """``HOST:PORT`` of the HTTP endpoint."""
        return f"{self.address}:{self.http_port}"

    def _prepare(self, tree: Path) -> None:
        copy = Path(self._tmp.name) / "tritonserver"
        shutil.copytree(tree, copy, symlinks=True)
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        stub = tree / "python_backend_stubs" / version / "triton_python_backend_stub"
        if not stub.is_file():
            raise BackendUnavailableError(f"this nvidia-pytriton has no Python-backend stub for Python {version}")
        shutil.copy2(stub, copy / "backends" / "python" / stub.name)
        self.binary, self._backends = copy / "bin" / "tritonserver", copy / "backends"
        libs = [sysconfig.get_config_var("LIBDIR"), str(tree.parent.parent / "nvidia_pytriton.libs"),
                self._env.get("LD_LIBRARY_PATH", "")]
        self._env["LD_LIBRARY_PATH"] = os.pathsep.join(p for p in libs if p)
        self._env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), self._env.get("PATH", "")])

    def command(self) -> list[str]:
        """The command line it runs."""
        cmd = [str(self.binary), f"--model-repository={self.repo}", f"--exit-timeout-secs={self.exit_timeout}"]
        for proto, port in (("http", self.http_port), ("grpc", self.grpc_port), ("metrics", self.metrics_port)):
            cmd += [f"--{proto}-address={self.address}", f"--{proto}-port={port}"]
        if self._backends is not None:
            tmp = Path(self._tmp.name)
            cmd += [f"--backend-directory={self._backends}", f"--cache-directory={tmp / 'tritonserver' / 'caches'}"]
        return cmd + list(self.args)

    def start(self, timeout: float = 120.0) -> Self:
        """Start it and wait until it is ready (every model loaded).

        Raises:
            BackendUnavailableError: it exited or was not ready within ``timeout`` (its log's tail).
        """
        log = open(self.log_path, "ab")  # noqa: SIM115 -- the child keeps writing to it
        try:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT, env=self._env,
                                            start_new_session=True)
        finally:
            log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise BackendUnavailableError(f"tritonserver exited with {self.process.returncode}: {self.log_tail()}")
            if self.ready():
                return self
            time.sleep(0.1)
        self.stop()
        raise BackendUnavailableError(f"tritonserver was not ready within {timeout:g} s: {self.log_tail()}")

    def ready(self) -> bool:
        """Whether it answers ``/v2/health/ready``."""
        try:
            with urllib.request.urlopen(f"http://{self.http_url}/v2/health/ready", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def log_tail(self, lines: int = 8) -> str:
        """The end of its log, one line (errors quote it)."""
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(line.strip() for line in text[-lines:] if line.strip()) or "(empty log)"

    def stop(self, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop it: SIGTERM (requests in flight finish), or SIGKILL with ``kill`` (a crash)."""
        p, self.process = self.process, None
        if p is None or p.poll() is not None:
            return
        p.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()

    def close(self) -> None:
        """Stop it and remove its temporary folder."""
        self.stop()
        self._tmp.cleanup()

    def __enter__(self) -> Self:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.close()
