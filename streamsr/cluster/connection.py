"""Reaching a Ray cluster: Ray is imported lazily (the optional ``cluster`` extra), and a cluster
this machine starts for itself listens on the loopback interface only.

Ray reads ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER`` once, when it is first imported: set to 0, a local
instance binds 127.0.0.1 (otherwise every interface), and a driver connecting to a cluster at
127.0.0.1 does not rewrite that address to the host's (which would hang waiting for a GCS that
listens on loopback only). :func:`import_ray` sets it, before the first import, for loopback
addresses only: a driver joining a cluster on other machines must announce a reachable address.
"""

from __future__ import annotations

import logging
import os
import sys
from dataclasses import dataclass
from typing import Any, Self

from ..errors import BackendUnavailableError, ConfigError

__all__ = ["INSTALL_HINT", "NAMESPACE", "Connection", "connect", "import_ray", "is_loopback"]

#: the Ray namespace every camera actor of streamsr lives in (``cluster status`` looks there)
NAMESPACE = "streamsr"
INSTALL_HINT = "pip install 'streamsr[cluster]'"
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
_LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


def is_loopback(address: str | None) -> bool:
    """Whether ``address`` means this machine only: ``auto``/``local``/None, or a loopback host.

    Args:
        address: ``auto``, ``HOST:PORT`` or ``ray://HOST:PORT``.
    """
    if address in (None, "", "auto", "local"):
        return True
    host = address.split("://", 1)[-1].rsplit(":", 1)[0]
    return host in _LOOPBACK_HOSTS


def import_ray(*, loopback: bool = False) -> Any:
    """The ``ray`` module.

    Args:
        loopback: the cluster is on this machine only (see the module's note); takes effect only
            before Ray's first import in this process.

    Raises:
        BackendUnavailableError: Ray is not installed (the message says how to install it).
    """
    if loopback and "ray" not in sys.modules:
        os.environ.setdefault(_LOOPBACK_ENV, "0")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # no usage reports from camera sites
    try:
        import ray
    except ImportError:
        raise BackendUnavailableError(f"streamsr cluster needs Ray, which is not installed: {INSTALL_HINT}") from None
    return ray


@dataclass
class Connection:
    """This process's link to a Ray cluster.

    Attributes:
        ray: the ``ray`` module.
        address: the cluster's GCS address (``HOST:PORT``).
        started: True when :func:`connect` started a local Ray instance for this process.
        owned: True when :func:`connect` called ``ray.init`` (and :meth:`close` shuts it down).
    """

    ray: Any
    address: str
    started: bool = False
    owned: bool = True

    def close(self) -> None:
        """Disconnect (a local instance started here stops with it)."""
        if self.owned and self.ray.is_initialized():
            self.ray.shutdown()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def connect(address: str | None = "auto", *, start_local: bool = True, num_cpus: float | None = None,
            num_gpus: float | None = None) -> Connection:
    """Join a Ray cluster, or start one on this machine.

    Args:
        address: ``auto`` (the cluster running on this machine, else a new local one when
            ``start_local``), ``local`` (always a new local one, private to this process),
            ``HOST:6379`` (a cluster's GCS) or ``ray://HOST:10001`` (Ray Client).
        start_local: with ``auto`` and no cluster running, start a local instance (bound to
            127.0.0.1); False raises instead (``cluster status`` must not start an empty cluster).
        num_cpus, num_gpus: resources of a local instance (None: what the machine has).

    Raises:
        BackendUnavailableError: Ray missing, or no cluster answers at ``address``.
        ConfigError: an empty address.
    """
    if address is not None and not address.strip():
        raise ConfigError("--address wants auto, HOST:6379 or ray://HOST:10001, got an empty value")
    ray = import_ray(loopback=is_loopback(address))
    if ray.is_initialized():  # a caller (a test, a notebook) connected already
        return Connection(ray, _gcs_address(ray), owned=False)
    quiet = {"logging_level": logging.WARNING, "log_to_driver": False}
    target = "auto" if address in (None, "auto") else address
    if target == "local" and not start_local:
        raise ConfigError("--address local starts a new, empty cluster: give the address of a running one")
    if target != "local":
        try:
            ray.init(address=target, **quiet)
            return Connection(ray, _gcs_address(ray))
        except ConnectionError as exc:
            if target != "auto" or not start_local:
                where = "on this machine" if target == "auto" else f"at {address} ({str(exc).splitlines()[0]})"
                raise BackendUnavailableError(f"no Ray cluster is running {where}; start one with `ray start "
                                              "--head` or give --address HOST:6379") from None
    resources = {k: v for k, v in (("num_cpus", num_cpus), ("num_gpus", num_gpus)) if v is not None}
    ray.init(address="local", include_dashboard=False, _node_ip_address="127.0.0.1", **resources, **quiet)
    return Connection(ray, _gcs_address(ray), started=True)


def _gcs_address(ray) -> str:
    try:
        return str(ray.get_runtime_context().gcs_address)
    except Exception:  # Ray Client sessions have no GCS address of their own  # noqa: BLE001
        return "ray-client"
