"""Which links may be followed or shown: http(s) only.

Archive pages are data from elsewhere. A ``javascript:`` or ``data:`` link in one must never
be fetched, stored as provenance, or rendered as a live link in our pages.
"""

from __future__ import annotations

from urllib.parse import urlsplit

__all__ = ["http_url", "is_http_url"]


def is_http_url(url: str | None) -> bool:
    if not url:
        return False
    parts = urlsplit(url.strip())
    return parts.scheme.lower() in ("http", "https") and bool(parts.netloc)


def http_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL, else None."""
    return url.strip() if url and is_http_url(url) else None
