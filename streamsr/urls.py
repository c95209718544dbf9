"""Helpers for inputs and outputs named by URL: which are live, and hiding their credentials."""

from __future__ import annotations

import re
from pathlib import PurePosixPath

__all__ = ["is_hls", "is_live_input", "is_url", "mask_credentials", "url_scheme"]

#: greedy: a raw '@' in a password; a "'" is legal there too (RFC 3986), so only '/', '"' and
#: white space end the credentials (a quoted URL in FFmpeg's words ends at a '/' or a space first)
_CREDENTIALS = re.compile(r"([a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s\"]+@")
_LIVE_SCHEMES = {"rtsp", "rtsps", "rtmp", "rtmps", "srt", "udp", "rtp", "tcp"}


#: secrets some cameras and SRT take in the query string (``?usr=admin&pwd=...``, ``passphrase=``)
_QUERY_SECRETS = re.compile(r"([?&;](?:password|passwd|pwd|pass|passphrase|token|secret|key|auth)=)[^&;\s'\"]*",
                            re.IGNORECASE)


def mask_credentials(text: str) -> str:
    """Replace ``user:password@`` in every URL inside ``text`` by ``***@``, and the values of
    query parameters that carry secrets (``pwd=``, ``passphrase=``, ``token=`` ...) by ``***``.

    Args:
        text: any message, FFmpeg's own included (they quote the URL).
    """
    return _QUERY_SECRETS.sub(r"\1***", _CREDENTIALS.sub(r"\1***@", text))


def url_scheme(target: str) -> str | None:
    """The lower-case scheme of a URL, or None for a path."""
    m = re.match(r"([a-zA-Z][a-zA-Z0-9+.-]*)://", target)
    return m.group(1).lower() if m else None


def is_url(target: str) -> bool:
    """True for ``scheme://...``."""
    return url_scheme(target) is not None


def is_hls(target: str) -> bool:
    """An HLS playlist over HTTP(S): a live input delivered in bursts of whole segments."""
    return url_scheme(target) in ("http", "https") and PurePosixPath(target.split("?")[0]).suffix.lower() == ".m3u8"


def is_live_input(target: str) -> bool:
    """Whether an input is a live stream by default: network stream protocols, HLS playlists
    over HTTP, and V4L2 devices. Files (and plain HTTP downloads) are not."""
    scheme = url_scheme(target)
    if scheme in _LIVE_SCHEMES:
        return True
    return is_hls(target) or target.startswith("/dev/video")
