"""A Prometheus ``/metrics`` endpoint for running pipelines (text exposition format 0.0.4)."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

from ..errors import ConfigError

__all__ = ["MetricsServer", "V6Server", "families", "http_server", "parse_listen", "quantiles", "render_metrics"]

_METRICS = [
    ("streamsr_frames_in_total", "counter", "Frames decoded.", lambda s: s.frames_in),
    ("streamsr_frames_out_total", "counter", "Frames encoded.", lambda s: s.frames_out),
    ("streamsr_frames_dropped_total", "counter", "Frames dropped to keep latency bounded.", lambda s: s.dropped),
    ("streamsr_reconnects_total", "counter", "Times the input came back after dropping.", lambda s: s.reconnects),
    ("streamsr_connect_failures_total", "counter", "Failed connection attempts of a live input.",
     lambda s: s.connect_failures),
    ("streamsr_up", "gauge", "1 while the input delivers frames, 0 while connecting or reconnecting.",
     lambda s: int(s.state == "running")),
]

#: tile reuse, for the cameras that reuse tiles
_REUSE = [
    ("streamsr_reuse_frames_total", "counter", "Frames tile reuse decided on.", lambda s: s.reuse["frames"]),
    ("streamsr_reuse_whole_frames_total", "counter", "Frames run whole (a refresh or a scene cut).",
     lambda s: s.reuse["whole_frames"]),
    ("streamsr_reuse_recomputed_ratio", "gauge", "Mean fraction of tiles recomputed per frame, recent frames.",
     lambda s: s.reuse["recomputed_mean"] or 0.0),
    ("streamsr_reuse_recomputed_p95_ratio", "gauge", "95th percentile of the fraction of tiles recomputed.",
     lambda s: s.reuse["recomputed_p95"] or 0.0),
    ("streamsr_reuse_network_pixels_saved_ratio", "gauge", "Whole-frame network pixels over those reuse ran.",
     lambda s: s.reuse["network_pixels_saved"] or 1.0),
]


def label(value: str) -> str:
    """A Prometheus label value, escaped."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(values: dict[str, str]) -> str:
    return ",".join(f'{key}="{label(value)}"' for key, value in values.items())


def families(metrics: list[tuple], rows: list, labels: Callable[[object], dict[str, str]]) -> list[str]:
    """Prometheus families: for each ``(name, kind, help, get)`` of ``metrics`` its HELP and TYPE
    lines and a sample per row of ``rows`` whose ``get(row)`` is not None, labelled ``labels(row)``."""
    lines = []
    for name, kind, help_text, get in metrics:
        lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{{{_labels(labels(r))}}} {v}" for r in rows if (v := get(r)) is not None]
    return lines


def quantiles(name: str, help_text: str, rows: list, labels: Callable[[object], dict[str, str]],
              latency: Callable[[object], dict]) -> list[str]:
    """A gauge family of latency quantiles in seconds (p50, p95 and the maximum of each row's
    ``latency(row)`` summary, in ms as :class:`~streamsr.pipeline.stats.LatencyStats` gives them)."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} gauge"]
    for r in rows:
        summary = latency(r)
        for q, key in (("0.5", "p50_ms"), ("0.95", "p95_ms"), ("1", "max_ms")):
            if summary[key] is not None:
                lines.append(f"{name}{{{_labels({**labels(r), 'quantile': q})}}} {summary[key] / 1000:.4f}")
    return lines


def render_metrics(snapshots: list) -> str:
    """Prometheus text for a list of :class:`~streamsr.pipeline.job.JobSnapshot`: per camera, and
    per remote inference server and model the jobs use (their snapshots' ``remote``).

    Args:
        snapshots: the jobs' snapshots.
    """
    camera = lambda s: {"camera": s.name}
    lines = families(_METRICS, snapshots, camera)
    lines += quantiles("streamsr_latency_seconds", "Capture-to-encode latency over recent frames.", snapshots,
                       camera, lambda s: s.latency)
    lines += families(_REUSE, [s for s in snapshots if getattr(s, "reuse", None)], camera)
    return "\n".join(lines + _remote_lines(_remotes(snapshots))) + "\n"


def _remotes(snapshots: list) -> list[dict]:
    """The remote backends the jobs use, each once: the cameras of a hub share one backend, so their
    snapshots carry the same client's stats (the latest view, the one with the most requests, is kept)."""
    seen: dict[tuple[str, str], dict] = {}
    for s in snapshots:
        for r in s.remote:
            key = (r["url"], r["model"])
            if key not in seen or r["requests"] >= seen[key]["requests"]:
                seen[key] = r
    return list(seen.values())


def _remote_lines(remotes: list[dict]) -> list[str]:
    """Remote inference (Triton): requests, failures, request latency and the server's queue time."""
    if not remotes:
        return []
    metrics = [("streamsr_remote_requests_total", "counter", "Inference requests answered by the server.",
                lambda r: r["requests"]),
               ("streamsr_remote_failures_total", "counter", "Inference requests that failed and were sent again.",
                lambda r: r["failures"]),
               ("streamsr_remote_server_queue_seconds", "gauge", "Mean time a request waited in the server's queue.",
                lambda r: None if r["server"].get("queue_ms") is None else r["server"]["queue_ms"] / 1000)]
    server = lambda r: {"url": r["url"], "model": r["model"]}
    return families(metrics, remotes, server) + quantiles(
        "streamsr_remote_request_seconds", "Request round-trip time over recent requests.", remotes, server,
        lambda r: r["request_latency"])


def parse_listen(value: str, option: str = "--metrics-port") -> tuple[str, int]:
    """``PORT`` (localhost) or ``HOST:PORT`` (``[::1]:PORT`` for IPv6) → (host, port).

    Args:
        value: the option's value.
        option: its name, for the message.

    Raises:
        ConfigError: not a port number.
    """
    host, _, port = str(value).rpartition(":")
    try:
        number = int(port)
    except ValueError:
        raise ConfigError(f"{option} wants PORT or HOST:PORT, got {value!r}") from None
    if not 0 <= number <= 65535:
        raise ConfigError(f"{option} {number} is not a port number")
    return host.strip("[]") or "127.0.0.1", number


class V6Server(ThreadingHTTPServer):
    """An HTTP server on an IPv6 address."""

    address_family = socket.AF_INET6


def http_server(host: str, port: int, handler) -> ThreadingHTTPServer:
    """A threading HTTP server bound to ``host`` (IPv4 or IPv6) and ``port``; OSError if it can't."""
    return (V6Server if ":" in host else ThreadingHTTPServer)((host, port), handler)


class BackgroundServer:
    """An HTTP server on a daemon thread, started and stopped as a context manager.

    Args:
        server: the bound server.
        name: the thread's name.
    """

    def __init__(self, server: ThreadingHTTPServer, name: str):
        self._server = server
        self.port = server.server_address[1]
        self._thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class MetricsServer(BackgroundServer):
    """Serves ``/metrics`` on a daemon thread; a context manager.

    Args:
        host, port: where to listen (port 0 picks a free one; see :attr:`port`).
        handles: callable returning the run handles to report (their snapshots are rendered).
        render: instead of ``handles``, a callable returning the whole Prometheus text.
        name: the thread's name.

    Raises:
        ConfigError: the port cannot be bound.
    """

    def __init__(self, host: str, port: int, handles: Callable[[], list] | None = None, *,
                 render: Callable[[], str] | None = None, name: str = "streamsr-metrics"):
        text = render or (lambda: render_metrics([h.snapshot() for h in handles()]))

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = text().encode()
                try:
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain; version=0.0.4")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (ConnectionError, TimeoutError):
                    pass  # the scraper went away: nothing to say, and never a traceback on the run's terminal

            def log_message(self, *args):  # library code never prints
                return

        try:
            server = http_server(host, port, Handler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
        super().__init__(server, name)
