"""Local web pages, served by streamsr itself and working offline.

- ``streamsr preview``: compare two renderings of a clip frame by frame (wipe, side by side,
  zoom, metrics against a reference) — :class:`Preview`, :func:`preview_server`;
- ``streamsr run --ui-port``: a live wall of camera tiles — :func:`dashboard_server`.

The pages (HTML, JavaScript, CSS) ship in ``streamsr/ui/assets``; the server is the standard
library's (see :mod:`streamsr.ui.http` for why), so the pages need nothing beyond streamsr's own
dependencies.
"""

from .dashboard import Snapshots, dashboard_server
from .http import PageServer, parse_listen
from .preview import VIEWS, Preview, preview_server

__all__ = ["VIEWS", "PageServer", "Preview", "Snapshots", "dashboard_server", "parse_listen", "preview_server"]
